#!/usr/bin/env bash
# Installs what building and testing Skiff needs on Debian 12, and says what it
# installs. Safe to run again: it installs only what is missing.
#
#   protobuf-compiler  protoc, for etcd-client's build
#   etcd-server        a real etcd, for the store's etcd backend and its tests
#   python3-pip        to install the official Kubernetes Python client, one of
#                      the real clients the end-to-end tests drive
#   kubernetes (PyPI)  that client, at the version matching Kubernetes 1.33
#   containerd, runc   the container runtime the kubelet drives over CRI
#                      (tests start private instances: scripts/containerd.sh)
#   containernetworking-plugins  CNI bridge, host-local, portmap (/usr/lib/cni)
#   iptables, conntrack          for the proxy and CNI
#   busybox-static, umoci        to build the test images (scripts/build-images.sh)
#   skopeo, docker-registry      to serve images from a local registry
#   openssl, curl, iproute2      the kubelet e2e signs a node certificate,
#                                requests pods and removes its bridge
set -euo pipefail

python_client() {
    if python3 -c 'import kubernetes' 2>/dev/null; then
        return
    fi
    echo "prerequisites: installing the Kubernetes Python client (pip: kubernetes==33.1.0)"
    python3 -m pip install --quiet 'kubernetes==33.1.0' ||
        python3 -m pip install --quiet --break-system-packages 'kubernetes==33.1.0'
}

packages=(protobuf-compiler etcd-server
    containerd runc containernetworking-plugins iptables conntrack
    busybox-static umoci skopeo docker-registry openssl curl iproute2)
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "prerequisites: all present (${packages[*]})"
    python_client
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
python_client
