#!/bin/sh
# Patroni's post_init (patroni.yml): runs once, on the member that bootstraps
# the cluster, before any replica exists. Creates the role and database every
# Mayfly service's MAYFLY_DATABASE_URL names, with the password compose gives
# (MAYFLY_POSTGRES_PASSWORD). $1 is the superuser's connection url, Patroni's
# pgpass holds its password. Safe to run again: Patroni retries a failed
# bootstrap from scratch, and a half-done one must not stop the next.
set -eu
url=$1
: "${MAYFLY_POSTGRES_PASSWORD:?the mayfly role needs a password (MAYFLY_POSTGRES_PASSWORD)}"

# psql quotes the password itself (:'password'), whatever characters it holds.
# pg_monitor: /api/cluster reads each replica's state in pg_stat_replication.
psql "$url" -v ON_ERROR_STOP=1 -q -v password="$MAYFLY_POSTGRES_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE mayfly' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mayfly') \gexec
ALTER ROLE mayfly LOGIN PASSWORD :'password';
GRANT pg_monitor TO mayfly;
SELECT 'CREATE DATABASE mayfly OWNER mayfly'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mayfly') \gexec
SQL
