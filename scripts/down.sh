#!/usr/bin/env bash
# Stops what scripts/up.sh started. `--purge` also deletes .skiff/ (data,
# certificates, logs).
set -euo pipefail
cd "$(dirname "$0")/.."
pidfile=.skiff/apiserver.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"
    echo "stopped skiff-apiserver"
else
    echo "Skiff is not running"
fi
rm -f "$pidfile"
if [ "${1:-}" = "--purge" ]; then
    rm -rf .skiff
    echo "removed .skiff/"
fi
