#!/bin/sh
# Debian packages the test suite and the benchmark use beside Node.js:
#   docker-compose  parses docker-compose.yml statically (no Docker engine here)
#   nginx           the single-copy WebDAV baseline of `npm run bench`
#   strace          test/fault/durability.test.ts watches a storage node's
#                   fsync, rename and 201 in its system calls
#   redis-sentinel  the Sentinels of scripts/redis-ha.sh (the Redis tier's
#                   tests and the benchmark's Redis phase)
#   patroni, etcd-server  scripts/patroni-ha.sh: three PostgreSQL members
#                   under Patroni, with etcd (the PostgreSQL tier's tests)
#   haproxy         scripts/patroni-ha.sh: one address in front of the primary
#   rabbitmq-server scripts/rabbitmq-ha.sh: three brokers of one cluster (the
#                   RabbitMQ tier's tests); also the machine's own broker on
#                   5672 that the plain integration tests use
#   jq              scripts/patroni-ha.sh and scripts/rabbitmq-ha.sh read JSON with it
# Installs only what is missing; does nothing where all is present.
set -eu
missing=""
command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
[ -x /usr/sbin/nginx ] || missing="$missing nginx-light"
command -v strace >/dev/null 2>&1 || missing="$missing strace"
command -v redis-sentinel >/dev/null 2>&1 || missing="$missing redis-sentinel"
[ -x /usr/bin/patroni ] || missing="$missing patroni"
command -v etcd >/dev/null 2>&1 || missing="$missing etcd-server"
command -v haproxy >/dev/null 2>&1 || missing="$missing haproxy"
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing="$missing rabbitmq-server"
command -v jq >/dev/null 2>&1 || missing="$missing jq"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: please install:$missing (Debian packages)" >&2
  exit 1
fi
echo "install-system-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
