#!/usr/bin/env bash
# Starts what Skiff has so far — the API server, on the embedded store — in
# the background, with its data, certificates and log under .skiff/. Running
# it again while the server runs says so and changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

data=.skiff
pidfile=$data/apiserver.pid
port=${SKIFF_PORT:-6443}
mkdir -p "$data"

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "Skiff is already up (skiff-apiserver pid $(cat "$pidfile"))."
else
    bin=${CARGO_TARGET_DIR:-target}/release/skiff-apiserver
    [ -x "$bin" ] || { echo "build first: make build" >&2; exit 1; }
    nohup "$bin" --data-dir "$data/apiserver" --secure-port "$port" >"$data/apiserver.log" 2>&1 &
    echo $! >"$pidfile"
    echo -n "starting skiff-apiserver on :$port "
    for _ in $(seq 100); do
        if [ -f "$data/apiserver/admin.kubeconfig" ] &&
            KUBECONFIG="$data/apiserver/admin.kubeconfig" kubectl get --raw /readyz >/dev/null 2>&1; then
            break
        fi
        kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo; echo "skiff-apiserver exited; see $data/apiserver.log" >&2; exit 1; }
        echo -n .
        sleep 0.2
    done
    echo " ready"
fi
echo
echo "Use the cluster with kubectl:"
echo "  export KUBECONFIG=$PWD/$data/apiserver/admin.kubeconfig"
echo "  kubectl get namespaces"
