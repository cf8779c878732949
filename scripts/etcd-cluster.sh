#!/usr/bin/env bash
# A local etcd cluster of several members, for tests that run Skiff on etcd
# as a highly available deployment would (Debian's etcd-server, v3 API).
#
#   scripts/etcd-cluster.sh start <dir> [members]   start (default 3 members);
#                                                   prints the client URLs, comma-separated
#   scripts/etcd-cluster.sh urls <dir>              the client URLs again
#   scripts/etcd-cluster.sh kill <dir> <i>          SIGKILL member i (0-based)
#   scripts/etcd-cluster.sh restart <dir> <i>       start member i again on its data
#   scripts/etcd-cluster.sh stop <dir>              stop every member
#
# Ports come from ETCD_BASE_PORT (default 23790): member i serves clients on
# base+2i and peers on base+2i+1, on 127.0.0.1.
set -euo pipefail

cmd=${1:?usage: etcd-cluster.sh start|urls|kill|restart|stop <dir> ...}
dir=${2:?the cluster directory}
base=${ETCD_BASE_PORT:-23790}

command -v etcd >/dev/null || { echo "etcd is not installed: apt-get install etcd-server" >&2; exit 1; }

members() { cat "$dir/members"; }
client_port() { echo $((base + 2 * $1)); }
peer_port() { echo $((base + 2 * $1 + 1)); }

initial_cluster() {
    local n=$1 i out=""
    for ((i = 0; i < n; i++)); do
        out+="${out:+,}m$i=http://127.0.0.1:$(peer_port "$i")"
    done
    echo "$out"
}

urls() {
    local n i out=""
    n=$(members)
    for ((i = 0; i < n; i++)); do
        out+="${out:+,}http://127.0.0.1:$(client_port "$i")"
    done
    echo "$out"
}

# Starts member $1 of $2; `new` or `existing` cluster state.
start_member() {
    local i=$1 n=$2 state=$3
    etcd --name "m$i" --data-dir "$dir/m$i" \
        --listen-client-urls "http://127.0.0.1:$(client_port "$i")" \
        --advertise-client-urls "http://127.0.0.1:$(client_port "$i")" \
        --listen-peer-urls "http://127.0.0.1:$(peer_port "$i")" \
        --initial-advertise-peer-urls "http://127.0.0.1:$(peer_port "$i")" \
        --initial-cluster "$(initial_cluster "$n")" \
        --initial-cluster-state "$state" \
        --initial-cluster-token skiff-etcd-cluster \
        >>"$dir/m$i.log" 2>&1 &
    echo $! >"$dir/m$i.pid"
}

# Every member answers /health with a leader elected.
healthy() {
    local n i
    n=$(members)
    for ((i = 0; i < n; i++)); do
        curl -fsS "http://127.0.0.1:$(client_port "$i")/health" 2>/dev/null | grep -q '"health":"true"' || return 1
    done
}

case $cmd in
start)
    n=${3:-3}
    mkdir -p "$dir"
    echo "$n" >"$dir/members"
    for ((i = 0; i < n; i++)); do start_member "$i" "$n" new; done
    for _ in $(seq 150); do
        healthy && { urls; exit 0; }
        sleep 0.2
    done
    echo "the etcd cluster did not become healthy; see $dir/m*.log" >&2
    exit 1
    ;;
urls) urls ;;
kill)
    i=${3:?member index}
    kill -9 "$(cat "$dir/m$i.pid")" 2>/dev/null || true
    ;;
restart)
    i=${3:?member index}
    start_member "$i" "$(members)" existing
    ;;
stop)
    for pid in "$dir"/m*.pid; do
        [ -f "$pid" ] || continue
        kill "$(cat "$pid")" 2>/dev/null || true
    done
    for pid in "$dir"/m*.pid; do
        [ -f "$pid" ] || continue
        for _ in $(seq 50); do kill -0 "$(cat "$pid")" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$(cat "$pid")" 2>/dev/null || true
        rm -f "$pid"
    done
    ;;
*)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
