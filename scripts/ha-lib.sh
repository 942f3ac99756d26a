# Shared by scripts/redis-ha.sh and scripts/patroni-ha.sh (sourced, not run):
# messages, spare loopback ports, bounded waits, pid files, the topology file.
# The caller sets `me` (its name in messages) and `dir` (the state directory).

say() { echo "$me: $*" >&2; }
die() { say "$*"; exit 1; }

# a port nobody listens on, below the kernel's ephemeral range (32768+), so
# that no outgoing connection takes it between our check and the bind
port_is_free() { [ -z "$(ss -Htln "sport = :$1" 2>/dev/null)" ]; }
# the first of $1 (at most 10) consecutive free ports
pick_ports() {
  tries=0
  while [ $tries -lt 50 ]; do
    tries=$((tries + 1))
    base=$(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 1200 * 10 + 20000 ))
    ok=1
    i=0
    while [ $i -lt "$1" ]; do port_is_free $((base + i)) || { ok=0; break; }; i=$((i + 1)); done
    [ $ok = 1 ] && { echo "$base"; return; }
  done
  die "no $1 free consecutive ports found"
}

# waits up to $2 tenths of a second for the command "$3…" to succeed
wait_for() {
  what=$1; tenths=$2; shift 2
  i=0
  until "$@"; do
    i=$((i + 1))
    [ $i -ge "$tenths" ] && die "timed out waiting for $what (logs in $dir)"
    sleep 0.1
  done
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

load_topology() {
  [ -f "$dir/topology" ] || die "$dir holds no topology (run start first)"
  # shellcheck disable=SC1091
  . "$dir/topology"
}

# PostgreSQL refuses root: its programs run as `postgres` (from /, which that user may enter)
as_postgres() { (cd / && exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"); }

# Patroni's /cluster from the member whose REST API is on port $1
patroni_cluster() { curl -fsS --max-time 1 "http://127.0.0.1:$1/cluster" 2>/dev/null; }
