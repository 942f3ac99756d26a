#!/bin/sh
# The Redis tier of the roadmap on one machine, from Debian's redis-server and
# redis-sentinel: a master and two replicas, three Sentinels, on spare
# loopback ports, everything (configs, logs, pid files) under DIR.
#
#   scripts/redis-ha.sh start DIR         start it all; prints the MAYFLY_* lines (again on the
#                                         same ports when every process of DIR's topology is down)
#   scripts/redis-ha.sh stop DIR          end what `start` (or `restart`) started, nothing else
#   scripts/redis-ha.sh status DIR        each process: pid, alive, role
#   scripts/redis-ha.sh restart DIR NAME  start a stopped redis-N again, as a
#                                         replica of the current master
#
# DIR/mayfly.env holds MAYFLY_REDIS_SENTINELS and MAYFLY_REDIS_MASTER_NAME
# for every Mayfly process (`set -a; . DIR/mayfly.env; set +a`). DIR/topology
# lists the ports. Nothing is persisted (a cache and leases): a node that
# restarts comes back as a replica of the current master and copies it, never
# as an empty master (../shared/INFRA-NOTES.md).
#
# Timings: Sentinel calls a master down after 1000 ms without an answer
# (REDIS_HA_DOWN_AFTER_MS) and a new master accepts writes about 2.2 s after
# a kill -9 on these machines; quorum 2 of 3.
set -eu

usage() {
  echo "usage: $0 start|stop|status DIR | restart DIR redis-N" >&2
  exit 2
}
[ $# -ge 2 ] || usage
cmd=$1
dir=$2
master_name=${REDIS_HA_MASTER_NAME:-mayfly}
down_after=${REDIS_HA_DOWN_AFTER_MS:-1000}
failover_timeout=${REDIS_HA_FAILOVER_TIMEOUT_MS:-5000}
sentinel_bin=$(command -v redis-sentinel || true)
[ -n "$sentinel_bin" ] || sentinel_bin="redis-server"

me=redis-ha
. "$(dirname "$0")/ha-lib.sh"

ask() { port=$1; shift; redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null; }

# the pid file's process is still the one we started: Redis titles itself
# "redis-server 127.0.0.1:<port>" (Sentinel too, with " [sentinel]")
ours() { # pidfile port
  pid_alive "$1" && tr '\0' ' ' < "/proc/$(cat "$1")/cmdline" | grep -q "127.0.0.1:$2"
}

redis_port() { eval "echo \$REDIS_${1#redis-}_PORT"; }
port_of() { # redis-N or sentinel-N
  case $1 in
  redis-*) redis_port "$1" ;;
  sentinel-*) eval "echo \$SENTINEL_${1#sentinel-}_PORT" ;;
  esac
}

# what every process of the topology is told: its port, loopback, a daemon with its files under DIR
process_conf() { # name port
  mkdir -p "$dir/$1"
  echo "port $2"
  echo "bind 127.0.0.1"
  echo "daemonize yes"
  echo "pidfile $dir/$1.pid"
  echo "logfile $dir/$1.log"
  echo "dir $dir/$1"
}

start_redis() { # name port [master-port]
  name=$1; port=$2
  {
    process_conf "$name" "$port"
    echo 'save ""'
    echo "appendonly no"
    # replicas answer reads of stale data while resyncing; Mayfly writes only to the master
    echo "replica-serve-stale-data yes"
    if [ $# -ge 3 ]; then echo "replicaof 127.0.0.1 $3"; fi
  } > "$dir/$name.conf"
  redis-server "$dir/$name.conf" || die "$name did not start (see $dir/$name.log)"
  wait_for "$name to answer" 50 sh -c "[ \"\$(redis-cli -h 127.0.0.1 -p $port ping 2>/dev/null)\" = PONG ]"
}

start_sentinel() { # name port master-port
  name=$1; port=$2
  {
    process_conf "$name" "$port"
    echo "sentinel monitor $master_name 127.0.0.1 $3 2"
    echo "sentinel down-after-milliseconds $master_name $down_after"
    echo "sentinel failover-timeout $master_name $failover_timeout"
    echo "sentinel parallel-syncs $master_name 1"
  } > "$dir/$name.conf"
  if [ "$sentinel_bin" = redis-server ]; then
    redis-server "$dir/$name.conf" --sentinel
  else
    "$sentinel_bin" "$dir/$name.conf"
  fi || die "$name did not start (see $dir/$name.log)"
}

sentinel_field() { # port field: a field of SENTINEL MASTER
  ask "$1" SENTINEL MASTER "$master_name" | awk -v f="$2" 'NR % 2 == 1 { k = $0 } NR % 2 == 0 && k == f { print; exit }'
}
sentinel_ready() { # port: sees the master up, both replicas and both other Sentinels
  flags=$(sentinel_field "$1" flags)
  [ "$flags" = master ] && [ "$(sentinel_field "$1" num-slaves)" = 2 ] && [ "$(sentinel_field "$1" num-other-sentinels)" = 2 ]
}
replicas_online() { # port of the master
  [ "$(ask "$1" INFO replication | grep -c 'state=online')" = 2 ]
}

case $cmd in
start)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  command -v redis-server >/dev/null || die "redis-server is missing (sh scripts/install-system-deps.sh)"
  if [ -f "$dir/topology" ]; then
    # every process gone (killed, the machine restarted): the same ports again, so that clients find it
    load_topology
    for name in redis-1 redis-2 redis-3 sentinel-1 sentinel-2 sentinel-3; do
      ours "$dir/$name.pid" "$(port_of "$name")" && die "$name of $dir is running: stop it first, or give another directory"
    done
    base=$REDIS_1_PORT
  else
    base=$(pick_ports 6)
  fi
  cat > "$dir/topology" <<EOF
MASTER_NAME=$master_name
REDIS_1_PORT=$base
REDIS_2_PORT=$((base + 1))
REDIS_3_PORT=$((base + 2))
SENTINEL_1_PORT=$((base + 3))
SENTINEL_2_PORT=$((base + 4))
SENTINEL_3_PORT=$((base + 5))
EOF
  load_topology
  start_redis redis-1 "$REDIS_1_PORT"
  start_redis redis-2 "$REDIS_2_PORT" "$REDIS_1_PORT"
  start_redis redis-3 "$REDIS_3_PORT" "$REDIS_1_PORT"
  # Sentinel fails over only to a replica it has seen in sync
  wait_for "both replicas in sync" 100 replicas_online "$REDIS_1_PORT"
  start_sentinel sentinel-1 "$SENTINEL_1_PORT" "$REDIS_1_PORT"
  start_sentinel sentinel-2 "$SENTINEL_2_PORT" "$REDIS_1_PORT"
  start_sentinel sentinel-3 "$SENTINEL_3_PORT" "$REDIS_1_PORT"
  # Sentinels find each other through hello messages on the master, every 2 s
  for p in "$SENTINEL_1_PORT" "$SENTINEL_2_PORT" "$SENTINEL_3_PORT"; do
    wait_for "the Sentinel on port $p to see the master, 2 replicas and 2 Sentinels" 150 sentinel_ready "$p"
  done
  cat > "$dir/mayfly.env" <<EOF
MAYFLY_REDIS_SENTINELS=127.0.0.1:$SENTINEL_1_PORT,127.0.0.1:$SENTINEL_2_PORT,127.0.0.1:$SENTINEL_3_PORT
MAYFLY_REDIS_MASTER_NAME=$master_name
EOF
  say "master 127.0.0.1:$REDIS_1_PORT, replicas :$REDIS_2_PORT :$REDIS_3_PORT, Sentinels :$SENTINEL_1_PORT :$SENTINEL_2_PORT :$SENTINEL_3_PORT"
  cat "$dir/mayfly.env"
  ;;
stop)
  [ -f "$dir/topology" ] || exit 0
  load_topology
  names="sentinel-1 sentinel-2 sentinel-3 redis-1 redis-2 redis-3"
  for name in $names; do
    ours "$dir/$name.pid" "$(port_of "$name")" && kill -TERM "$(cat "$dir/$name.pid")" 2>/dev/null || true
  done
  for name in $names; do
    i=0
    while ours "$dir/$name.pid" "$(port_of "$name")" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    if ours "$dir/$name.pid" "$(port_of "$name")"; then kill -KILL "$(cat "$dir/$name.pid")" 2>/dev/null || true; fi
    rm -f "$dir/$name.pid"
  done
  rm -f "$dir/topology"
  ;;
status)
  load_topology
  for n in 1 2 3; do
    port=$(redis_port "redis-$n")
    state=down
    ours "$dir/redis-$n.pid" "$port" && state="pid $(cat "$dir/redis-$n.pid"), $(ask "$port" ROLE | head -1)"
    echo "redis-$n 127.0.0.1:$port $state"
  done
  for n in 1 2 3; do
    port=$(eval "echo \$SENTINEL_${n}_PORT")
    state=down
    if ours "$dir/sentinel-$n.pid" "$port"; then
      state="pid $(cat "$dir/sentinel-$n.pid"), master $(ask "$port" SENTINEL GET-MASTER-ADDR-BY-NAME "$master_name" | paste -sd: -) ($(sentinel_field "$port" flags))"
    fi
    echo "sentinel-$n 127.0.0.1:$port $state"
  done
  ;;
restart)
  [ $# -ge 3 ] || usage
  load_topology
  name=$3
  case $name in redis-1 | redis-2 | redis-3) ;; *) die "restart takes redis-1, redis-2 or redis-3" ;; esac
  port=$(redis_port "$name")
  ours "$dir/$name.pid" "$port" && die "$name is running"
  master=""
  for p in "$SENTINEL_1_PORT" "$SENTINEL_2_PORT" "$SENTINEL_3_PORT"; do
    master=$(ask "$p" SENTINEL GET-MASTER-ADDR-BY-NAME "$master_name" | tail -1) && [ -n "$master" ] && break
  done
  [ -n "$master" ] || die "no Sentinel answers: cannot tell which master $name should follow"
  # Sentinel may not have failed over yet (the kill was too recent): then this
  # node is still the master on record, and comes back empty. Refuse.
  [ "$master" = "$port" ] && die "$name is still the master on record; wait for the failover (down-after ${down_after} ms)"
  start_redis "$name" "$port" "$master"
  ;;
*) usage ;;
esac
