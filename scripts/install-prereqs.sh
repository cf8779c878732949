#!/usr/bin/env bash
# Installs what building and testing Skiff needs on Debian 12, and says what it
# installs. Safe to run again: it installs only what is missing.
#
#   protobuf-compiler  protoc, for etcd-client's build
#   etcd-server        a real etcd, for the store's etcd backend and its tests
set -euo pipefail

packages=(protobuf-compiler etcd-server)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "prerequisites: all present (${packages[*]})"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "prerequisites: missing ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
fi

echo "prerequisites: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts etcd as a service on install; Skiff's tests start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl stop etcd || true
fi
