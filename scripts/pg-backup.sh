#!/bin/sh
# Backups of the PostgreSQL tier (issue 9): base backups with pg_basebackup and
# a WAL archive that every Patroni member of scripts/patroni-ha.sh feeds
# (archive_command below), and a restore to a point in time into a fresh,
# standalone PostgreSQL. Everything runs as `postgres` (PostgreSQL refuses root).
#
#   scripts/pg-backup.sh backup DIR        a base backup of the topology in DIR (from its
#                                          primary; a replica if none answers), verified
#                                          with pg_verifybackup; prints its name
#   scripts/pg-backup.sh list DIR          the base backups, the archive, and the window a
#                                          restore can reach
#   scripts/pg-backup.sh restore DIR TIME INTO [DATABASE]
#                                          a new PostgreSQL in INTO (which must not exist or be
#                                          empty), recovered to TIME (recovery_target_time; any
#                                          form `date -d` reads, e.g. 2025-01-31T12:00:00Z) from
#                                          the newest base backup that ended before TIME and the
#                                          archive (`latest`: all the archive holds), on a spare
#                                          loopback port; prints
#                                          MAYFLY_DATABASE_URL (also in INTO/mayfly.env)
#   scripts/pg-backup.sh stop-restored INTO
#                                          stops the server `restore` started
#   scripts/pg-backup.sh prune DIR KEEP    keeps the newest KEEP base backups and the WAL they
#                                          need; removes older ones
#   scripts/pg-backup.sh archive-wal ARCHIVE PATH NAME
#   scripts/pg-backup.sh restore-wal ARCHIVE NAME PATH
#                                          PostgreSQL's archive_command and restore_command
#
# DIR is a topology of scripts/patroni-ha.sh (its backups are in the BACKUP_DIR
# its topology file names), or a backup directory itself (one holding base/ and
# wal/, e.g. copied to another machine after the topology was lost).
#
# A restore holds Mayfly's deletions of unknown blobs: in every database of
# the restored server that holds Mayfly's tables (control, leases,
# schema_migrations) it records the control document `orphan-hold`, so the
# replication manager deletes none of the blobs uploaded after TIME (which the
# restored metadata does not know)
# until an operator says so (`mayfly orphans`, docs/replication.md).
set -eu

usage() {
  echo "usage: $0 backup|list DIR, restore DIR TIME INTO [DATABASE], stop-restored INTO, prune DIR KEEP" >&2
  exit 2
}
[ $# -ge 2 ] || usage
cmd=$1
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
me=pg-backup
scripts=$(cd "$(dirname "$0")" && pwd)
. "$scripts/ha-lib.sh"

# ---- the archive (run by PostgreSQL, as postgres) ---------------------------

# archive_command: gzip the segment into ARCHIVE, fsynced, under its name only
# once it is whole (a hard link fails if the name exists: two members archiving
# the same segment at once cannot both win). A segment archived already with
# the same contents (another member had it too) is success; different contents
# is a failure PostgreSQL retries and logs, never an overwrite.
archive_wal() {
  archive=$1; path=$2; name=$3
  dest="$archive/$name.gz"
  if [ ! -f "$dest" ]; then
    tmp="$archive/.$name.$$.tmp"
    gzip -3 -c "$path" > "$tmp"
    sync "$tmp"
    if ln "$tmp" "$dest" 2>/dev/null; then
      rm -f "$tmp"
      sync "$archive"
      return 0
    fi
    rm -f "$tmp"
  fi
  gzip -dc "$dest" | cmp -s - "$path" && return 0
  say "$name is in the archive already with other contents; not overwritten"
  return 1
}

# restore_command: a missing file is an ordinary answer (PostgreSQL probes for
# timeline history files that do not exist)
restore_wal() {
  archive=$1; name=$2; path=$3
  [ -f "$archive/$name.gz" ] || return 1
  gzip -dc "$archive/$name.gz" > "$path"
}

# ---- where the backups are ---------------------------------------------------

# sets bdir (holding base/ and wal/) from DIR, and loads the topology when there is one
find_backups() {
  dir=$(cd "$1" 2>/dev/null && pwd) || die "$1 is no directory"
  topology=0
  if [ -f "$dir/topology" ]; then
    load_topology
    topology=1
    bdir=$BACKUP_DIR
  elif [ -d "$dir/backups/base" ]; then
    bdir=$dir/backups
  else
    bdir=$dir
  fi
  [ -d "$bdir/base" ] && [ -d "$bdir/wal" ] || die "$1 holds no topology of patroni-ha.sh and no backups (base/ and wal/)"
}

# the port of a member that answers as the primary (Patroni's REST API), else of a streaming replica
source_port() {
  for n in 1 2 3; do
    eval "rest=\$PG${n}_REST_PORT port=\$PG${n}_PORT"
    curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$rest/primary" 2>/dev/null && { echo "$port pg$n"; return; }
  done
  for n in 1 2 3; do
    eval "rest=\$PG${n}_REST_PORT port=\$PG${n}_PORT"
    curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$rest/replica" 2>/dev/null && { echo "$port pg$n"; return; }
  done
  return 1
}

info() { sed -n "s/^$2=//p" "$bdir/base/$1.info"; }
# the base backups' names, oldest first (they are UTC times, so they sort)
backups() { for f in "$bdir"/base/*.info; do [ -f "$f" ] && basename "$f" .info; done; }
utc() { date -u -d "@$1" '+%Y-%m-%d %H:%M:%S.%3NZ'; }

# ---- commands ----------------------------------------------------------------

backup() {
  find_backups "$1"
  [ $topology = 1 ] || die "$1 holds no running topology to back up"
  src=$(source_port) || die "no member of the topology in $dir answers"
  port=${src% *}; member=${src#* }
  name=$(date -u +%Y%m%dT%H%M%SZ)
  [ -e "$bdir/base/$name" ] && { sleep 1; name=$(date -u +%Y%m%dT%H%M%SZ); }
  partial="$bdir/base/.$name.partial"
  start=$(date +%s)
  # -X stream: the WAL the backup needs to be consistent travels with it, so a
  # backup restores even before the archive has that WAL
  if ! as_postgres "$pg_bin/pg_basebackup" -h 127.0.0.1 -p "$port" -U replicator -D "$partial" \
    -X stream -c fast -l "mayfly $name" -d "application_name=pg-backup"; then
    rm -rf "$partial"
    die "pg_basebackup from $member (127.0.0.1:$port) failed"
  fi
  # later than the backup's end record, which a restore target must follow
  end=$(date +%s.%N)
  as_postgres "$pg_bin/pg_verifybackup" -q "$partial" || { rm -rf "$partial"; die "the backup does not verify against its manifest; removed"; }
  start_wal=$(sed -n 's/^START WAL LOCATION: .* (file \([0-9A-F]*\))$/\1/p' "$partial/backup_label")
  cat > "$bdir/base/.$name.info" <<EOF
start=$start
end=$end
start_wal=$start_wal
source=$member 127.0.0.1:$port
bytes=$(du -sb "$partial" | cut -f1)
EOF
  chown postgres: "$bdir/base/.$name.info"
  mv "$partial" "$bdir/base/$name"
  mv "$bdir/base/.$name.info" "$bdir/base/$name.info"
  say "base backup $name from $member in $(( ${end%.*} - start )) s, verified"
  echo "$name"
}

list() {
  find_backups "$1"
  echo "base backups in $bdir/base:"
  oldest_end=""
  for b in $(backups); do
    [ -n "$oldest_end" ] || oldest_end=$(info "$b" end)
    printf '  %s  started %s  finished %s  %6s MiB  from %s\n' "$b" "$(utc "$(info "$b" start)")" "$(utc "$(info "$b" end)")" \
      $(( $(info "$b" bytes) / 1048576 )) "$(info "$b" source)"
  done
  [ -n "$oldest_end" ] || echo "  (none: scripts/pg-backup.sh backup DIR takes one)"
  segments=$(find "$bdir/wal" -maxdepth 1 -name '*.gz' ! -name '*.history.gz' | wc -l)
  newest=$(ls -t "$bdir/wal" | grep -v '^\.' | head -1 || true)
  echo "WAL archive $bdir/wal: $segments files, $(du -sh "$bdir/wal" | cut -f1)${newest:+, newest ${newest%.gz} archived $(utc "$(stat -c %Y "$bdir/wal/$newest")")}"
  if [ -n "$oldest_end" ]; then
    echo "a restore reaches any time from $(utc "$oldest_end") (the oldest backup's end) to the last commit in the archive;"
    echo "commits still in the primary's current WAL segment are archived when it fills or within archive_timeout (60 s)"
  fi
}

# asks the source's primary to close its WAL segment and waits (up to 10 s)
# until it is archived, so that a restore of a live cluster reaches the last
# commits; a cluster that is gone restores from what the archive holds
archive_now() {
  [ $topology = 1 ] || return 0
  src=$(source_port) || { say "no member answers: restoring from what the archive holds"; return 0; }
  wal=$(as_postgres "$pg_bin/psql" -h 127.0.0.1 -p "${src% *}" -U postgres -d postgres -XAtq \
    -c "SELECT CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_walfile_name(pg_switch_wal()) END" 2>/dev/null) || wal=""
  [ -n "$wal" ] || { say "no primary answers: restoring from what the archive holds"; return 0; }
  i=0
  until [ -f "$bdir/wal/$wal.gz" ]; do
    i=$((i + 1))
    [ $i -ge 100 ] && { say "WAL $wal is not archived after 10 s (see the members' logs); restoring from what the archive holds"; return 0; }
    sleep 0.1
  done
}

# `pg_controldata`'s value of a setting the primary had: a server replaying its
# WAL needs at least as much of each
control_setting() { as_postgres "$pg_bin/pg_controldata" -D "$into/data" | sed -n "s/^$1 setting: *//p"; }

restore() {
  [ $# -ge 3 ] || usage
  find_backups "$1"
  target_time=$2
  into=$3
  database=${4:-}
  if [ "$target_time" = latest ]; then
    target=$(date -u '+%s.%N')
    pg_target="the end of the archive"
    recovery_target=""
  else
    target=$(date -u -d "$target_time" '+%s.%N' 2>/dev/null) || die "cannot read the time $target_time"
    pg_target=$(date -u -d "@$target" '+%Y-%m-%d %H:%M:%S.%6N+00')
    recovery_target="recovery_target_time = '$pg_target'"
  fi
  chosen=""
  for b in $(backups); do
    awk -v e="$(info "$b" end)" -v t="$target" 'BEGIN { exit !(e < t) }' && chosen=$b
  done
  if [ -z "$chosen" ]; then
    first=$(backups | head -1)
    [ -n "$first" ] || die "there is no base backup in $bdir/base"
    die "no base backup finished before $pg_target: the oldest finished at $(utc "$(info "$first" end)")"
  fi
  if [ -e "$into" ] && [ -n "$(ls -A "$into")" ]; then die "$into is not empty: restore into a new directory"; fi
  case "$into" in *[!A-Za-z0-9/._+-]*) die "the directory may hold only letters, digits and / . _ + -" ;; esac
  if [ -z "$database" ] && [ -f "$dir/mayfly.env" ]; then
    database=$(sed -n 's|^MAYFLY_DATABASE_URL=.*/\([^/?]*\).*$|\1|p' "$dir/mayfly.env")
  fi
  database=${database:-postgres}
  began=$(date +%s.%N)
  archive_now
  mkdir -p "$into"
  into=$(cd "$into" && pwd)
  chown postgres: "$into"
  chmod 700 "$into"
  as_postgres cp -a "$bdir/base/$chosen" "$into/data"
  # what Patroni kept in the data directory is not this server's: its settings
  # (ports, sockets, archive_command into the same archive, a synchronous
  # standby that does not exist) are replaced by the ones below
  rm -f "$into/data/postmaster.pid" "$into/data/postmaster.opts" "$into/data/patroni.dynamic.json" "$into/data/standby.signal" \
    "$into/data/postgresql.auto.conf"
  port=$(pick_ports 1)
  as_postgres sh -c "cat > '$into/data/postgresql.conf'" <<EOF
# written by scripts/pg-backup.sh restore: base backup $chosen, recovered to $pg_target
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$into'
max_connections = $(control_setting max_connections)
max_worker_processes = $(control_setting max_worker_processes)
max_wal_senders = $(control_setting max_wal_senders)
max_prepared_transactions = $(control_setting max_prepared_xacts)
max_locks_per_transaction = $(control_setting max_locks_per_xact)
wal_level = replica
hot_standby = on
# standalone: no archiving into the archive it restores from, no synchronous standby to wait for
archive_mode = off
synchronous_standby_names = ''
restore_command = 'sh $scripts/pg-backup.sh restore-wal $bdir/wal %f %p'
$recovery_target
recovery_target_action = 'promote'
recovery_target_timeline = 'latest'
EOF
  as_postgres sh -c "printf '%s\n' 'local all all trust' 'host all all 127.0.0.1/32 trust' 'host replication all 127.0.0.1/32 trust' > '$into/data/pg_hba.conf'"
  as_postgres touch "$into/data/recovery.signal"
  as_postgres "$pg_bin/pg_ctl" -D "$into/data" -l "$into/postgres.log" -W -s start
  # recovery ends with a promotion; a target the archive does not reach ends the server instead
  i=0
  until [ "$(as_postgres "$pg_bin/psql" -h "$into" -p "$port" -U postgres -d postgres -XAtq -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do
    i=$((i + 1))
    if [ ! -f "$into/data/postmaster.pid" ] && [ $i -gt 20 ]; then
      tail -5 "$into/postgres.log" >&2
      die "the restored server stopped (log: $into/postgres.log; remove $into before trying again). A time after the last commit in the archive is never reached: see scripts/pg-backup.sh list, or restore to latest"
    fi
    [ $i -ge 6000 ] && die "recovery did not finish within 10 minutes (log: $into/postgres.log)"
    sleep 0.1
  done
  took=$(echo "$(date +%s.%N) $began" | awk '{ printf "%.1f", $1 - $2 }')
  hold_orphans
  stopped_at=$(sed -n 's/.*LOG:  *recovery stopping \(.*\)$/\1/p' "$into/postgres.log" | tail -1)
  say "restored base backup $chosen to $pg_target in $took s on 127.0.0.1:$port${stopped_at:+ (recovery stopped $stopped_at)}"
  echo "MAYFLY_DATABASE_URL=postgres://postgres@127.0.0.1:$port/$database" | tee "$into/mayfly.env"
}

# Mayfly's replication manager holds, instead of deleting, the blobs a restored
# (older) metadata store does not know (docs/replication.md)
hold_orphans() {
  detail="restored to $pg_target from base backup $chosen"
  since=$(date -u '+%Y-%m-%dT%H:%M:%S.%3NZ')
  for db in $(as_postgres "$pg_bin/psql" -h "$into" -p "$port" -U postgres -d postgres -XAtq \
    -c "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate"); do
    as_postgres "$pg_bin/psql" -h "$into" -p "$port" -U postgres -d "$db" -XAtq -v ON_ERROR_STOP=1 \
      -v value="{\"reason\":\"restored\",\"since\":\"$since\",\"detail\":\"$detail\"}" <<'EOF' >/dev/null
SELECT to_regclass('public.control') IS NOT NULL AND to_regclass('public.leases') IS NOT NULL
  AND to_regclass('public.schema_migrations') IS NOT NULL AS mayfly \gset
\if :mayfly
INSERT INTO control AS c (name, value, version, updated_at) VALUES ('orphan-hold', :'value', 1, now())
ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, version = c.version + 1, updated_at = EXCLUDED.updated_at;
\endif
EOF
  done
}

stop_restored() {
  into=$(cd "$1" 2>/dev/null && pwd) || exit 0
  [ -f "$into/data/postmaster.pid" ] || exit 0
  as_postgres "$pg_bin/pg_ctl" -D "$into/data" -m fast -s -t 30 stop || as_postgres "$pg_bin/pg_ctl" -D "$into/data" -m immediate -s stop
}

prune() {
  [ $# -eq 2 ] || usage
  find_backups "$1"
  keep=$2
  case $keep in '' | *[!0-9]* | 0) die "KEEP is a number of base backups, at least 1" ;; esac
  total=$(backups | wc -l)
  [ "$total" -gt "$keep" ] || { say "$total base backups, none pruned"; return 0; }
  for b in $(backups | head -n $((total - keep))); do
    rm -rf "${bdir:?}/base/$b" "$bdir/base/$b.info"
    say "removed base backup $b"
  done
  oldest=$(backups | head -1)
  as_postgres "$pg_bin/pg_archivecleanup" -x .gz "$bdir/wal" "$(info "$oldest" start_wal)"
  say "removed the WAL older than base backup $oldest"
}

case $cmd in
archive-wal) [ $# -eq 4 ] || usage; archive_wal "$2" "$3" "$4" ;;
restore-wal) [ $# -eq 4 ] || usage; restore_wal "$2" "$3" "$4" ;;
backup) backup "$2" ;;
list) list "$2" ;;
restore) shift; restore "$@" ;;
stop-restored) stop_restored "$2" ;;
prune) shift; prune "$@" ;;
*) usage ;;
esac
