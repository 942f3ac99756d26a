#!/bin/sh
# The PostgreSQL tier of the roadmap on one machine, from Debian's packages:
# one etcd and three Patroni members of PostgreSQL 15 with
# synchronous_mode: true, on spare loopback ports, everything (configs, data,
# logs, pid files) under DIR. PostgreSQL refuses root: the members run as
# `postgres` (DIR is handed to that user).
#
#   scripts/patroni-ha.sh start DIR     start it all; prints MAYFLY_DATABASE_URL
#   scripts/patroni-ha.sh stop DIR      end what `start` started, nothing else
#   scripts/patroni-ha.sh status DIR    each member: role, state, lag (Patroni's /cluster)
#   scripts/patroni-ha.sh start-member DIR N
#                                       start member N's Patroni again (after a kill); it
#                                       rejoins as a replica, rewinding an orphaned primary
#   scripts/patroni-ha.sh reinit-member DIR N
#                                       member N copied afresh from the leader (one that
#                                       could not rejoin: a failed rewind, say)
#   scripts/patroni-ha.sh switchover DIR
#                                       a planned switchover to the synchronous standby
#   scripts/patroni-ha.sh maintenance DIR on|off
#                                       Patroni's pause: no failover, and no member touched
#                                       (a replica's replay stays paused by hand, say)
#
# With Debian's haproxy installed, HAProxy on HAPROXY_PORT (DIR/topology)
# forwards to whichever member Patroni's REST API calls primary: the one-url
# alternative for clients without multi-host urls.
# DIR/mayfly.env holds MAYFLY_DATABASE_URL in libpq's multi-host form (the
# three members; Mayfly writes only to the one that accepts writes). DIR/topology
# lists the ports. Loopback only, trust authentication: a topology to try
# failover on, not to expose.
#
# Every member archives its WAL (archive_mode: always, so nothing is missing
# after a failover) into DIR/backups/wal, or PATRONI_HA_BACKUP_DIR/wal:
# scripts/pg-backup.sh takes base backups there and restores to a point in
# time (docs/ha.md, "Backups").
#
# What bit us (../shared/INFRA-NOTES.md, and the chaos run): Patroni talks to
# etcd's v2 API (`etcd:`, etcd started with --enable-v2), not `etcd3:`. With
# etcd3, Patroni 3.0.2 renews a leader key by writing it unconditionally from
# its cached view: a leader frozen past the ttl woke, wrote the key back and
# demoted the member just promoted, whose acknowledged writes were rewound.
# The v2 client renews with a compare-and-swap on its own name. Also: pg_hba
# lines for replication from 127.0.0.1, `primary_start_timeout: 0` (or a
# killed postmaster is restarted in place), one unix socket directory per
# member, Debian's /usr/bin/patroni, and loop_wait + 2 × retry_timeout ≤ ttl
# (10 here).
set -eu

usage() {
  echo "usage: $0 start|stop|status|switchover DIR, start-member|reinit-member DIR N, or maintenance DIR on|off" >&2
  exit 2
}
[ $# -ge 2 ] || usage
cmd=$1
dir=$2
scope=${PATRONI_HA_SCOPE:-mayfly}
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)

me=patroni-ha
scripts=$(cd "$(dirname "$0")" && pwd)
. "$scripts/ha-lib.sh"

# the pid file's process is still the one we started: its command line names DIR
ours() { pid_alive "$1" && tr '\0' ' ' < "/proc/$(cat "$1")/cmdline" | grep -q -- "$dir/"; }

# in the background, logging to $1; the pid recorded in $2 is the program's own (exec, no shell in between)
spawn_as_postgres() {
  log=$1; pidfile=$2; shift 2
  (exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@" > "$log" 2>&1) &
  echo $! > "$pidfile"
}

# one address that reaches the primary, for clients that take one url: Patroni's
# REST /primary is the check, and a member marked down loses its sessions
# (INFRA-NOTES: without on-marked-down shutdown-sessions they stay on the old primary)
haproxy_config() {
  cat <<EOF
global
  maxconn 500
defaults
  mode tcp
  timeout connect 2s
  timeout client 30m
  timeout server 30m
  timeout check 1s
listen postgres
  bind 127.0.0.1:$HAPROXY_PORT
  option httpchk GET /primary
  http-check expect status 200
  default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
  server pg1 127.0.0.1:$PG1_PORT check port $PG1_REST_PORT
  server pg2 127.0.0.1:$PG2_PORT check port $PG2_REST_PORT
  server pg3 127.0.0.1:$PG3_PORT check port $PG3_REST_PORT
EOF
}

member_config() { # n pg-port rest-port
  n=$1
  cat <<EOF
scope: $scope
name: pg$n
restapi:
  listen: 127.0.0.1:$3
  connect_address: 127.0.0.1:$3
etcd:
  host: 127.0.0.1:$ETCD_CLIENT_PORT
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 2
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    primary_start_timeout: 0
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
        wal_log_hints: "on"
        # every member archives what it has (a standby too: a segment the dead
        # primary had not archived yet is archived by the replicas that got it);
        # pg-backup.sh accepts the same segment twice; a quiet database still
        # archives once a minute, which bounds what losing every member loses
        archive_mode: "always"
        archive_command: "sh $scripts/pg-backup.sh archive-wal $BACKUP_DIR/wal %p %f"
        archive_timeout: 60
  initdb:
  - encoding: UTF8
  - data-checksums
postgresql:
  listen: 127.0.0.1:$2
  connect_address: 127.0.0.1:$2
  data_dir: $dir/pg$n/data
  bin_dir: $pg_bin
  pgpass: $dir/pg$n/pgpass
  authentication:
    replication:
      username: replicator
      password: replicator
    superuser:
      username: postgres
      password: postgres
    rewind:
      username: postgres
      password: postgres
  parameters:
    unix_socket_directories: $dir/pg$n
  # a replica copied afresh (a reinit) starts at once: pg_basebackup's
  # default spread checkpoint took minutes on a primary under load
  basebackup:
  - checkpoint: fast
  pg_hba:
  - local all all trust
  - host replication replicator 127.0.0.1/32 trust
  - host all all 127.0.0.1/32 trust
EOF
}

# a leader running, and both replicas streaming, one of them the synchronous standby
healthy() {
  json=$(patroni_cluster "$PG1_REST_PORT" || patroni_cluster "$PG2_REST_PORT" || patroni_cluster "$PG3_REST_PORT") || return 1
  [ "$(echo "$json" | jq '[.members[] | select(.role == "leader" and .state == "running")] | length')" = 1 ] &&
    [ "$(echo "$json" | jq '[.members[] | select(.role != "leader" and (.state == "streaming" or .state == "running"))] | length')" = 2 ] &&
    [ "$(echo "$json" | jq '[.members[] | select(.role == "sync_standby")] | length')" -ge 1 ]
}

case $cmd in
start)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ -f "$dir/topology" ] && die "$dir already holds a topology: stop it first, or give another directory"
  [ -n "$pg_bin" ] || die "PostgreSQL is missing (sh scripts/install-system-deps.sh)"
  command -v etcd >/dev/null && [ -x /usr/bin/patroni ] || die "etcd or patroni is missing (sh scripts/install-system-deps.sh)"
  base=$(pick_ports 9)
  backups=${PATRONI_HA_BACKUP_DIR:-$dir/backups}
  case "$dir$backups$scripts" in *[!A-Za-z0-9/._+-]*) die "the directories may hold only letters, digits and / . _ + - (they go into archive_command)" ;; esac
  cat > "$dir/topology" <<EOF
SCOPE=$scope
BACKUP_DIR=$backups
ETCD_CLIENT_PORT=$base
ETCD_PEER_PORT=$((base + 1))
PG1_PORT=$((base + 2))
PG2_PORT=$((base + 3))
PG3_PORT=$((base + 4))
PG1_REST_PORT=$((base + 5))
PG2_REST_PORT=$((base + 6))
PG3_REST_PORT=$((base + 7))
HAPROXY_PORT=$((base + 8))
EOF
  load_topology
  chown postgres: "$dir"
  mkdir -p "$dir/etcd"
  chown postgres: "$dir/etcd"
  mkdir -p "$BACKUP_DIR/wal" "$BACKUP_DIR/base"
  chown postgres: "$BACKUP_DIR" "$BACKUP_DIR/wal" "$BACKUP_DIR/base"
  chmod 700 "$BACKUP_DIR"
  spawn_as_postgres "$dir/etcd.log" "$dir/etcd.pid" etcd --name e1 --data-dir "$dir/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "e1=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new --enable-v2=true
  wait_for "etcd to answer" 100 sh -c "curl -fsS --max-time 1 http://127.0.0.1:$ETCD_CLIENT_PORT/health >/dev/null 2>&1"
  for n in 1 2 3; do
    eval "pg_port=\$PG${n}_PORT rest_port=\$PG${n}_REST_PORT"
    mkdir -p "$dir/pg$n"
    member_config "$n" "$pg_port" "$rest_port" > "$dir/pg$n.yml"
    chown -R postgres: "$dir/pg$n" "$dir/pg$n.yml"
    chmod 700 "$dir/pg$n"
    spawn_as_postgres "$dir/pg$n.log" "$dir/pg$n.pid" /usr/bin/patroni "$dir/pg$n.yml"
    # the first member bootstraps alone; the others join it as replicas
    [ "$n" = 1 ] && wait_for "pg1 to bootstrap as leader" 600 sh -c "curl -fsS --max-time 1 http://127.0.0.1:$rest_port/primary >/dev/null 2>&1"
  done
  wait_for "a leader and two streaming replicas, one synchronous" 900 healthy
  if command -v haproxy >/dev/null; then
    haproxy_config > "$dir/haproxy.cfg"
    spawn_as_postgres "$dir/haproxy.log" "$dir/haproxy.pid" haproxy -db -f "$dir/haproxy.cfg"
    wait_for "HAProxy to reach the primary" 100 sh -c "pg_isready -q -h 127.0.0.1 -p $HAPROXY_PORT -t 1"
  fi
  cat > "$dir/mayfly.env" <<EOF
MAYFLY_DATABASE_URL=postgres://postgres@127.0.0.1:$PG1_PORT,127.0.0.1:$PG2_PORT,127.0.0.1:$PG3_PORT/postgres
EOF
  say "members 127.0.0.1:$PG1_PORT :$PG2_PORT :$PG3_PORT (REST :$PG1_REST_PORT :$PG2_REST_PORT :$PG3_REST_PORT), etcd :$ETCD_CLIENT_PORT, HAProxy to the primary :$HAPROXY_PORT"
  cat "$dir/mayfly.env"
  ;;
stop)
  [ -f "$dir/topology" ] || exit 0
  # HAProxy and Patroni first (each Patroni stops its PostgreSQL), etcd last
  for name in haproxy pg1 pg2 pg3 etcd; do
    ours "$dir/$name.pid" && kill -TERM "$(cat "$dir/$name.pid")" 2>/dev/null || true
  done
  for name in haproxy pg1 pg2 pg3 etcd; do
    i=0
    while ours "$dir/$name.pid" && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
    if ours "$dir/$name.pid"; then kill -KILL "$(cat "$dir/$name.pid")" 2>/dev/null || true; fi
    rm -f "$dir/$name.pid"
  done
  # a postmaster left behind by a killed Patroni (an orphan primary) is ours too: its data directory is under DIR
  for n in 1 2 3; do
    pidfile="$dir/pg$n/data/postmaster.pid"
    [ -f "$pidfile" ] || continue
    pid=$(head -1 "$pidfile")
    if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$dir/pg$n/data"; then
      as_postgres "$pg_bin/pg_ctl" -D "$dir/pg$n/data" -m immediate stop >/dev/null 2>&1 || kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -f "$dir/topology"
  ;;
status)
  load_topology
  patroni_cluster "$PG1_REST_PORT" || patroni_cluster "$PG2_REST_PORT" || patroni_cluster "$PG3_REST_PORT" || die "no member answers"
  echo
  ;;
start-member)
  [ $# -eq 3 ] || usage
  n=$3
  case $n in 1|2|3) ;; *) die "the member is 1, 2 or 3, not $n" ;; esac
  dir=$(cd "$dir" && pwd)
  load_topology
  ours "$dir/pg$n.pid" && die "pg$n's Patroni runs already (pid $(cat "$dir/pg$n.pid"))"
  spawn_as_postgres "$dir/pg$n.log.$(date +%s)" "$dir/pg$n.pid" /usr/bin/patroni "$dir/pg$n.yml"
  eval "rest_port=\$PG${n}_REST_PORT"
  wait_for "pg$n's Patroni to answer" 300 sh -c "curl -fsS --max-time 1 http://127.0.0.1:$rest_port/health >/dev/null 2>&1 || curl -sS --max-time 1 -o /dev/null http://127.0.0.1:$rest_port/patroni"
  ;;
switchover)
  load_topology
  json=$(patroni_cluster "$PG1_REST_PORT" || patroni_cluster "$PG2_REST_PORT" || patroni_cluster "$PG3_REST_PORT") || die "no member answers"
  leader=$(echo "$json" | jq -r '.members[] | select(.role == "leader") | .name')
  candidate=$(echo "$json" | jq -r '[.members[] | select(.role == "sync_standby")][0].name')
  [ -n "$leader" ] && [ "$candidate" != null ] || die "no leader and synchronous standby to switch between"
  as_postgres /usr/bin/patronictl -c "$dir/pg1.yml" switchover --leader "$leader" --candidate "$candidate" --force >/dev/null
  say "switched over from $leader to $candidate"
  ;;
reinit-member)
  [ $# -eq 3 ] || usage
  n=$3
  case $n in 1|2|3) ;; *) die "the member is 1, 2 or 3, not $n" ;; esac
  load_topology
  as_postgres /usr/bin/patronictl -c "$dir/pg1.yml" reinit "$SCOPE" "pg$n" --force --wait >/dev/null
  say "pg$n is a fresh copy of the leader"
  ;;
maintenance)
  [ $# -eq 3 ] || usage
  load_topology
  case $3 in on) what=pause ;; off) what=resume ;; *) usage ;; esac
  as_postgres /usr/bin/patronictl -c "$dir/pg1.yml" "$what" --wait >/dev/null
  say "cluster management ${what}d"
  ;;
*) usage ;;
esac
