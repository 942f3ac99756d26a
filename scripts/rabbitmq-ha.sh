#!/bin/sh
# The RabbitMQ tier of the roadmap on one machine, from Debian's
# rabbitmq-server 3.10: three brokers of one cluster on spare loopback ports,
# with an epmd of their own, everything (config, data, logs, pid files, the
# Erlang cookie) under DIR. The brokers run as `rabbitmq`; DIR is handed to
# that user.
#
#   scripts/rabbitmq-ha.sh start DIR      start the three brokers and cluster them; prints MAYFLY_AMQP_URL
#   scripts/rabbitmq-ha.sh stop DIR       end what `start` (and `start-member`) started, nothing else
#   scripts/rabbitmq-ha.sh status DIR     JSON: each broker's number, name, port, pid, alive, running in the cluster
#   scripts/rabbitmq-ha.sh start-member DIR N
#                                         start broker N again (after a kill -9): it rejoins
#                                         the cluster from its own data and catches up
#   scripts/rabbitmq-ha.sh leader DIR QUEUE
#                                         the broker leading quorum queue QUEUE (vhost /):
#                                         prints its number and node name, e.g. `2 rabbit-2@localhost`
#
# DIR/mayfly.env holds MAYFLY_AMQP_URL, the three brokers comma-separated
# (DESIGN §6: a process connects to one that answers and moves on when it
# fails). DIR/topology lists the ports and node names. Loopback only, the
# guest user (RabbitMQ lets it in from loopback): a topology to try failover
# on, not to expose.
#
# Timings on these machines (2 cores): a cold start takes 20-26 s (the three
# brokers boot at once in 15-17 s, about 5 CPU-seconds each; then brokers 2
# and 3 join broker 1 in 5-7 s; INFRA-NOTES has 17-18 s), 40-50 s while
# other tests load the machine (load average 16); start-member 7-14 s.
# Every rabbitmqctl call costs most of a CPU-second (it boots an Erlang VM).
#
# What it took (../shared/INFRA-NOTES.md): Debian's /usr/sbin/rabbitmq-server
# wrapper forces /var/lib/rabbitmq and its cookie, so this runs
# /usr/lib/rabbitmq/bin/rabbitmq-server with a shared HOME (one
# .erlang.cookie) and per-broker RABBITMQ_* variables; RABBITMQ_CONF_ENV_FILE
# points away from the machine's /etc/rabbitmq/rabbitmq-env.conf (which names
# the machine's own broker) and RABBITMQ_ENABLED_PLUGINS_FILE to no plugins;
# our own epmd on a spare port (ERL_EPMD_PORT), because 4369 belongs to the
# machine's broker, which this never touches; Erlang's distribution bound to
# 127.0.0.1; `+sbwt none` (no busy-waiting schedulers on 2 cores); ping before
# await_startup; --formatter json for everything parsed here.
set -eu

usage() {
  echo "usage: $0 start|stop|status DIR, start-member DIR N, or leader DIR QUEUE" >&2
  exit 2
}
[ $# -ge 2 ] || usage
cmd=$1
dir=$2
bin=/usr/lib/rabbitmq/bin
plugins=$(ls -d /usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins 2>/dev/null | sort -V | tail -1)
epmd_bin=/usr/bin/epmd
cluster_name=${RABBITMQ_HA_CLUSTER_NAME:-mayfly}

me=rabbitmq-ha
. "$(dirname "$0")/ha-lib.sh"

[ -d "$dir" ] && dir=$(cd "$dir" && pwd)

as_rabbitmq() { (cd / && exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups -- "$@"); }

node_of() { echo "rabbit-$1@localhost"; }
amqp_port() { eval "echo \$AMQP_${1}_PORT"; }
dist_port() { eval "echo \$DIST_${1}_PORT"; }

# what the brokers and the CLI share: the cookie's HOME, our epmd, no trace of the machine's broker's settings
common_env() {
  export HOME="$dir/home"
  export ERL_EPMD_PORT="$EPMD_PORT"
  export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
  export RABBITMQ_PLUGINS_DIR="$dir/plugins"
}

# a rabbitmqctl / rabbitmq-diagnostics / rabbitmq-queues call on broker $1; the
# CLI's own Erlang node takes an ephemeral loopback port (min = max = 0)
cli() { # n program args…
  n=$1; program=$2; shift 2
  (
    common_env
    export RABBITMQ_CTL_DIST_PORT_MIN=0 RABBITMQ_CTL_DIST_PORT_MAX=0
    export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    as_rabbitmq "$bin/$program" -q -n "$(node_of "$n")" "$@"
  )
}

# the pid file's process is still the one we started: the beam's command line
# names DIR's HOME (-home), the launcher's environment names DIR; epmd's names its port
ours() { # pidfile
  pid_alive "$1" || return 1
  pid=$(cat "$1")
  { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null | grep -q -- "-home $dir/home \|-port $EPMD_PORT " ||
    { tr '\0' '\n' < "/proc/$pid/environ"; } 2>/dev/null | grep -qx "RABBITMQ_PID_FILE=$dir/rabbit-[123].pid"
}

broker_config() { # n
  cat <<EOF
listeners.tcp.1 = 127.0.0.1:$(amqp_port "$1")
cluster_name = $cluster_name
log.console = false
log.file.level = info
EOF
}

# broker $1 in the background; the launcher (Debian's rabbitmq-server script,
# which stops the beam on TERM) in DIR/rabbit-N.launcher.pid, the beam itself
# in DIR/rabbit-N.pid (RabbitMQ writes it); output to DIR/rabbit-N.out
spawn_broker() { # n
  n=$1
  (
    common_env
    export RABBITMQ_NODENAME="$(node_of "$n")"
    export RABBITMQ_NODE_PORT="$(amqp_port "$n")"
    export RABBITMQ_DIST_PORT="$(dist_port "$n")"
    export RABBITMQ_MNESIA_BASE="$dir/rabbit-$n/mnesia"
    export RABBITMQ_LOG_BASE="$dir/rabbit-$n/log"
    export RABBITMQ_PID_FILE="$dir/rabbit-$n.pid"
    export RABBITMQ_CONFIG_FILE="$dir/rabbit-$n.conf"
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+sbwt none +sbwtdcpu none +sbwtdio none -kernel inet_dist_use_interface {127,0,0,1}"
    cd /
    exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups -- "$bin/rabbitmq-server" >> "$dir/rabbit-$n.out" 2>&1
  ) &
  echo $! > "$dir/rabbit-$n.launcher.pid"
}

# the same CLI call on brokers $1 and $2 at once
both() { # n m program args…
  a=$1; b=$2; shift 2
  cli "$a" "$@" >/dev/null &
  first=$!
  cli "$b" "$@" >/dev/null || die "$* failed on rabbit-$b (see $dir/rabbit-$b/log)"
  wait "$first" || die "$* failed on rabbit-$a (see $dir/rabbit-$a/log)"
}

pings() { cli "$1" rabbitmq-diagnostics -t 2 ping >/dev/null 2>&1; }
listens() { ss -Htln "sport = :$1" | grep -q .; }
# up: the node answers (ping), then the rabbit application finished booting.
# Its AMQP port opens near the end of the boot: polling that first is free,
# while every ping boots an Erlang VM of its own, CPU the booting brokers need
wait_broker() { # n
  wait_for "rabbit-$1's AMQP port" 1200 listens "$(amqp_port "$1")"
  wait_for "rabbit-$1 to answer ping" 100 pings "$1"
  cli "$1" rabbitmqctl -t 120 await_startup >/dev/null || die "rabbit-$1 did not boot (see $dir/rabbit-$1/log)"
}

# running nodes of the cluster as broker $1 sees them, one a line
running_nodes() { cli "$1" rabbitmqctl -t 5 cluster_status --formatter json 2>/dev/null | jq -r '.running_nodes[]'; }
# any broker that answers sees all three running
all_running() {
  for n in 1 2 3; do
    nodes=$(running_nodes "$n") || continue
    [ "$(echo "$nodes" | grep -c '^rabbit-[123]@localhost$')" = 3 ] && return 0
    return 1
  done
  return 1
}
member_running() { # n: a broker that answers sees broker n running
  for m in 1 2 3; do
    [ "$m" = "$1" ] && continue
    nodes=$(running_nodes "$m") || continue
    echo "$nodes" | grep -qx "$(node_of "$1")" && return 0
  done
  return 1
}

stop_processes() {
  for n in 1 2 3; do
    if ours "$dir/rabbit-$n.pid"; then kill -TERM "$(cat "$dir/rabbit-$n.pid")" 2>/dev/null || true
    elif ours "$dir/rabbit-$n.launcher.pid"; then kill -TERM "$(cat "$dir/rabbit-$n.launcher.pid")" 2>/dev/null || true
    fi
  done
  for name in rabbit-1 rabbit-2 rabbit-3 rabbit-1.launcher rabbit-2.launcher rabbit-3.launcher epmd; do
    # epmd last: a broker that stops unregisters from it
    [ "$name" = epmd ] && ours "$dir/epmd.pid" && kill -TERM "$(cat "$dir/epmd.pid")" 2>/dev/null
    i=0
    while ours "$dir/$name.pid" && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
    if ours "$dir/$name.pid"; then kill -KILL "$(cat "$dir/$name.pid")" 2>/dev/null || true; fi
    rm -f "$dir/$name.pid"
  done
}

case $cmd in
start)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ -f "$dir/topology" ] && die "$dir already holds a topology: stop it first, or give another directory"
  [ -x "$bin/rabbitmq-server" ] && [ -n "$plugins" ] || die "rabbitmq-server is missing (sh scripts/install-system-deps.sh)"
  command -v jq >/dev/null || die "jq is missing"
  started=$(date +%s)
  base=$(pick_ports 7)
  cat > "$dir/topology" <<EOF
EPMD_PORT=$base
AMQP_1_PORT=$((base + 1))
AMQP_2_PORT=$((base + 2))
AMQP_3_PORT=$((base + 3))
DIST_1_PORT=$((base + 4))
DIST_2_PORT=$((base + 5))
DIST_3_PORT=$((base + 6))
NODE_1=$(node_of 1)
NODE_2=$(node_of 2)
NODE_3=$(node_of 3)
EOF
  load_topology
  rm -rf "$dir/home" "$dir/plugins" "$dir/rabbit-1" "$dir/rabbit-2" "$dir/rabbit-3"
  mkdir -p "$dir/home"
  # one cookie for the brokers and the CLI: 32 random letters, readable by rabbitmq alone
  tr -dc 'A-Z' < /dev/urandom | head -c 32 > "$dir/home/.erlang.cookie"
  chmod 400 "$dir/home/.erlang.cookie"
  chmod 700 "$dir/home"
  : > "$dir/rabbitmq-env.conf"
  echo '[].' > "$dir/enabled_plugins"
  # the broker's own applications and libraries, none of Debian's optional
  # plugins: a boot reads every plugin of its plugins directory, and without
  # them a broker boots on 4.9 CPU-seconds instead of 6.4 (three at once: in
  # 11.7 s instead of 17.6). The code still loads from Debian's directory.
  mkdir -p "$dir/plugins"
  for app in "$plugins"/*-*; do
    case ${app##*/} in rabbitmq_prelaunch-* | rabbit-* | rabbit_common-*) ;; rabbitmq_*) continue ;; esac
    ln -s "$app" "$dir/plugins/"
  done
  for n in 1 2 3; do
    broker_config "$n" > "$dir/rabbit-$n.conf"
    mkdir -p "$dir/rabbit-$n"
  done
  chown -R rabbitmq: "$dir"
  (exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups -- "$epmd_bin" -port "$EPMD_PORT" -address 127.0.0.1 > "$dir/epmd.log" 2>&1) &
  echo $! > "$dir/epmd.pid"
  wait_for "epmd on port $EPMD_PORT" 50 sh -c "ss -Htln 'sport = :$EPMD_PORT' | grep -q ."
  for n in 1 2 3; do spawn_broker "$n"; done
  for n in 1 2 3; do
    wait_broker "$n" &
    eval "waiter_$n=\$!"
  done
  for n in 1 2 3; do eval "wait \$waiter_$n" || die "rabbit-$n did not come up (see $dir/rabbit-$n.out and $dir/rabbit-$n/log)"; done
  say "booted after $(( $(date +%s) - started )) s"
  # brokers 2 and 3 join broker 1: both stop their application at once, then
  # join and start again one after the other (two starting at once failed:
  # node_not_running)
  both 2 3 rabbitmqctl stop_app
  for n in 2 3; do
    cli "$n" rabbitmqctl join_cluster "$(node_of 1)" >/dev/null || die "rabbit-$n could not join rabbit-1 (see $dir/rabbit-$n/log)"
    cli "$n" rabbitmqctl start_app >/dev/null || die "rabbit-$n did not start again in the cluster (see $dir/rabbit-$n/log)"
  done
  wait_for "all three brokers running in one cluster" 300 all_running
  cat > "$dir/mayfly.env" <<EOF
MAYFLY_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_1_PORT,amqp://guest:guest@127.0.0.1:$AMQP_2_PORT,amqp://guest:guest@127.0.0.1:$AMQP_3_PORT
EOF
  say "brokers $NODE_1 127.0.0.1:$AMQP_1_PORT, $NODE_2 :$AMQP_2_PORT, $NODE_3 :$AMQP_3_PORT (epmd :$EPMD_PORT), one cluster, up in $(( $(date +%s) - started )) s"
  cat "$dir/mayfly.env"
  ;;
stop)
  [ -f "$dir/topology" ] || exit 0
  load_topology
  # a frozen broker cannot stop: let it run so that TERM reaches it
  for name in rabbit-1 rabbit-2 rabbit-3 epmd; do ours "$dir/$name.pid" && kill -CONT "$(cat "$dir/$name.pid")" 2>/dev/null || true; done
  stop_processes
  rm -f "$dir/topology"
  ;;
status)
  load_topology
  running=""
  for n in 1 2 3; do
    ours "$dir/rabbit-$n.pid" && running=$(running_nodes "$n") && break
  done
  for n in 1 2 3; do
    pid=null; alive=false
    [ -f "$dir/rabbit-$n.pid" ] && pid=$(cat "$dir/rabbit-$n.pid")
    ours "$dir/rabbit-$n.pid" && alive=true
    in=false
    echo "$running" | grep -qx "$(node_of "$n")" && in=true
    printf '{"number":%s,"name":"%s","port":%s,"pid":%s,"alive":%s,"running_in_cluster":%s}\n' "$n" "$(node_of "$n")" "$(amqp_port "$n")" "$pid" "$alive" "$in"
  done | jq -s --argjson epmd "$EPMD_PORT" '{brokers: ., epmd_port: $epmd}'
  ;;
start-member)
  [ $# -eq 3 ] || usage
  n=$3
  case $n in 1 | 2 | 3) ;; *) die "the broker is 1, 2 or 3, not $n" ;; esac
  load_topology
  ours "$dir/rabbit-$n.pid" && die "rabbit-$n runs already (pid $(cat "$dir/rabbit-$n.pid"))"
  # it finds the cluster in its own data (mnesia) and catches up with its quorum queues
  ours "$dir/epmd.pid" || die "the topology's epmd is not running: stop and start it all"
  rm -f "$dir/rabbit-$n.pid"
  spawn_broker "$n"
  wait_broker "$n"
  wait_for "rabbit-$n back in the cluster" 300 member_running "$n"
  say "rabbit-$n runs again in the cluster"
  ;;
leader)
  [ $# -eq 3 ] || usage
  queue=$3
  load_topology
  # Ra's own view from every member (quorum_status), asked of any broker that answers
  for n in 1 2 3; do
    ours "$dir/rabbit-$n.pid" || continue
    json=$(cli "$n" rabbitmq-queues -t 5 quorum_status "$queue" --formatter json 2>/dev/null) || continue
    node=$(echo "$json" | jq -r '[.[] | select(."Raft State" == "leader")][0]."Node Name" // empty')
    [ -n "$node" ] || continue
    case $node in
    rabbit-[123]@localhost) num=${node#rabbit-}; echo "${num%%@*} $node"; exit 0 ;;
    esac
  done
  die "no broker names a leader of quorum queue $queue"
  ;;
*) usage ;;
esac
