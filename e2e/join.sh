#!/usr/bin/env bash
# `skiffctl join` end to end: a real two-node cluster on this one machine.
# `skiffctl up` starts the server in a fresh data directory; the second
# "machine" is a network namespace joined to the host by a veth pair, in
# which `skiffctl join` gets the kubelet's certificate with the bootstrap
# token (CSR, approved and signed by the controller manager) and runs
# containerd, the kubelet and the proxy. A pod pinned to the joined node
# runs there; kubectl logs and exec reach it (API server → kubelet over the
# veth); `down --purge` of the node leaves nothing of it behind.
#
#   e2e/join.sh
#
# Pod-to-pod traffic between the two nodes is not covered: nothing routes
# one node's pod CIDR to the other (no overlay, no host routes), as on two
# machines without a network plugin.
#
# The second machine shares this one's filesystem, processes and cgroups.
# What must not be shared is kept apart: each node has its own data
# directory (containerd's root, state, sockets, runc root and shim
# sockets, the kubelet's root, CNI configuration and IPAM data), its own
# bridge, and its own pod CIDR (allocated by the controller manager). Both
# kubelets put pods under the same cgroup root (/kubepods): pod cgroups are
# named by pod UID, and each kubelet (and `down`) removes only its own.
# The node's processes run in a mount namespace of its own with this
# network namespace's /sys (so /sys/class/net shows its bridge) and the
# host's cgroup hierarchies mounted again under it.
#
# Needs root, containerd, runc, the CNI plugins, umoci and busybox-static
# (scripts/install-prereqs.sh installs them all), kubectl, openssl and
# util-linux's unshare and nsenter.
# Prints one line per check and closes with "N passed, M failed, K skipped".
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
for tool in kubectl containerd runc ctr umoci curl iptables-save python3 busybox openssl unshare nsenter ip; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed: run scripts/install-prereqs.sh" >&2; exit 1; }
done
for plugin in bridge host-local portmap; do
    [ -x "/usr/lib/cni/$plugin" ] || { echo "the CNI plugin $plugin is missing (apt-get install containernetworking-plugins)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run as root (containerd, CNI, iptables and network namespaces need it)" >&2; exit 1; }
(cd "$root" && cargo build -q -p skiff-ctl -p skiff-apiserver -p skiff-controllers -p skiff-scheduler \
    -p skiff-kubelet -p skiff-proxy -p skiff-dns) || { echo "building failed" >&2; exit 1; }
bin=${CARGO_TARGET_DIR:-$root/target}/debug
images=$root/.skiff/images
"$root/scripts/build-images.sh" "$images" >/dev/null || { echo "building the test images failed" >&2; exit 1; }

# Short paths: containerd's socket paths must stay under 108 bytes.
work=$(mktemp -d /tmp/skiff-jn.XXXX)
sdir=$work/server
ndir=$work/node
# Below the ephemeral range (32768-60999): a client socket there could
# hold a port a component is about to listen on.
base=$((20000 + RANDOM % 12000))
n=$((RANDOM % 10000))
netns=skiff-jn$n
host_if=skjh$n
node_if=skjn$n
octet=$((RANDOM % 250 + 1))
host_ip=10.203.$octet.1
node_ip=10.203.$octet.2
server_bridge=skjs$n
node_bridge=skjb$n
cluster_cidr=10.247.0.0/16
service_cidr=10.97.0.0/16
dns_ip=10.97.0.10
server=skiff-e2e-join-server
node=skiff-e2e-join-node
cidr_rules="${cluster_cidr%.0.0/16}\.|${service_cidr%.0.0/16}\."
eviction='memory.available<100Mi,nodefs.available<512Mi'
skiffctl() { "$bin/skiffctl" "$@"; }
up_flags=(--data-dir "$sdir" --images-dir "$images" --node-name "$server"
    --secure-port "$base" --controller-manager-port $((base + 1)) --scheduler-port $((base + 2))
    --kubelet-port $((base + 3)) --proxy-healthz-port $((base + 4)) --proxy-metrics-port $((base + 5))
    --dns-port $((base + 9)) --dns-health-port $((base + 6)) --dns-ready-port $((base + 7))
    --dns-metrics-port $((base + 8)) --cni-bridge "$server_bridge" --cluster-cidr "$cluster_cidr"
    --service-cluster-ip-range "$service_cidr" --cluster-dns "$dns_ip"
    --eviction-hard "$eviction" --timeout 180)
# The node's kubelet and proxy keep upstream's ports: they listen in the
# node's own network namespace.
node_flags=(--data-dir "$ndir" --images-dir "$images" --node-name "$node"
    --cni-bridge "$node_bridge" --eviction-hard "$eviction" --timeout 120)
cluster_flags=(--cluster-cidr "$cluster_cidr" --cluster-dns "$dns_ip")

# The second machine: a process holding the node's mount namespace, in the
# node's network namespace; on_node runs a command there.
machine=
made_netns=
on_node() { nsenter -t "$machine" -m -n -- "$@"; }
start_machine() {
    ip netns add "$netns" || return 1
    made_netns=1
    ip link add "$host_if" type veth peer name "$node_if" &&
        ip link set "$node_if" netns "$netns" &&
        ip addr add "$host_ip/30" dev "$host_if" &&
        ip link set "$host_if" up &&
        ip -n "$netns" addr add "$node_ip/30" dev "$node_if" &&
        ip -n "$netns" link set "$node_if" up &&
        ip -n "$netns" link set lo up &&
        ip -n "$netns" route add default via "$host_ip" || return 1
    mkdir "$work/cgroup"
    # A sysfs mounted from inside the namespace shows its network devices;
    # it hides the cgroup hierarchies mounted below /sys, so they are bound
    # back. (Private: nothing mounted here reaches the host.)
    unshare --mount --propagation private nsenter --net="/run/netns/$netns" sh -c "
        mount --rbind /sys/fs/cgroup '$work/cgroup' &&
        mount -t sysfs sysfs /sys &&
        mount --rbind '$work/cgroup' /sys/fs/cgroup &&
        umount -l '$work/cgroup' &&
        exec sleep infinity" >"$work/machine.log" 2>&1 &
    machine=$!
    ls /sys/fs/cgroup >"$work/cgroups"
    until_ok 10 on_node sh -c "test -e /sys/class/net/$node_if && ls /sys/fs/cgroup | cmp -s - '$work/cgroups'"
}
stop_machine() {
    if [ -n "$machine" ]; then kill "$machine" 2>/dev/null; wait "$machine" 2>/dev/null; fi
    machine=
    # (The veth goes with the namespace.)
    [ -n "$made_netns" ] && ip netns del "$netns" 2>/dev/null
    made_netns=
}

# keep_logs DIR...: after a failure, the components' logs are worth
# keeping (called before each data directory is purged).
kept=
keep_logs() {
    [ "$failed" -gt 0 ] || return 0
    local d
    for d in "$@"; do
        [ -d "$work/$d/logs" ] || continue
        if [ -z "$kept" ]; then
            kept=$(mktemp -d /tmp/skiff-jn-logs.XXXX)
            echo "the components' logs are in $kept"
        fi
        mkdir -p "$kept/$d" && cp -r "$work/$d/logs/." "$kept/$d/"
    done
}
cleanup() {
    keep_logs server node
    local ok=1
    if [ -n "$machine" ] && [ -d "$ndir" ]; then
        on_node "$bin/skiffctl" down --purge --data-dir "$ndir" >/dev/null 2>&1 || ok=
    fi
    if [ -d "$sdir" ]; then skiffctl down --purge --data-dir "$sdir" >/dev/null 2>&1 || ok=; fi
    stop_machine
    if [ -z "$ok" ]; then echo "skiffctl down failed; $work is kept" >&2; return; fi
    rm -rf "$work"
}
[ -n "${SKIFF_E2E_KEEP:-}" ] || trap cleanup EXIT

. "$root/e2e/lib.sh"
summary() {
    echo
    echo "$passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
}
# pid_of DIR COMPONENT: its pid in that data directory's state file.
pid_of() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["components"][sys.argv[2]].get("pid") or "")' "$1/state.json" "$2"
}
# same_netns PID: whether PID runs in the node's network namespace.
same_netns() {
    [ -n "$1" ] && [ "$(stat -L -c %i "/proc/$1/ns/net")" = "$(stat -L -c %i "/run/netns/$netns")" ]
}
# leftovers DIR BRIDGE WHERE: what a stopped node must not leave: processes
# naming DIR, mounts under it (in the host's mount namespace and in the
# node's), the bridge, iptables rules naming the cluster's CIDRs or made by
# the proxy or CNI, and the cgroups of the pods in $pod_uids. WHERE is
# "host" or "node": whose network namespace to look in.
leftovers() {
    local dir=$1 bridge=$2 where=$3 found=0 p args in=() rules
    [ "$where" = node ] && in=(on_node)
    for p in /proc/[0-9]*; do
        args=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
        case "$args" in
        *"$dir/"*) echo "process ${p#/proc/}: $args"; found=1 ;;
        esac
    done
    for p in /proc/self ${machine:+/proc/$machine}; do
        if awk -v d="$dir/" 'index($5, d) == 1' "$p/mountinfo" | grep -q .; then
            echo "mounts:"; awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' "$p/mountinfo"; found=1
        fi
    done
    if "${in[@]}" test -e "/sys/class/net/$bridge"; then echo "bridge $bridge"; found=1; fi
    if [ "$where" = node ]; then
        # The node's namespace had no rules before the node ran there.
        rules=$(on_node iptables-save | grep -E -- '^-A|^:(KUBE|CNI)-')
    else
        rules=$(iptables-save | grep -E -- "$cidr_rules")
    fi
    if [ -n "$rules" ]; then echo "iptables:"; echo "$rules"; found=1; fi
    for uid in ${pod_uids:-}; do
        if ls -d /sys/fs/cgroup/*/kubepods/pod"$uid" /sys/fs/cgroup/*/kubepods/*/pod"$uid" 2>/dev/null | grep -q .; then
            echo "cgroup of pod $uid"; found=1
        fi
    done
    return $found
}
# diagnose: what the cluster and the node say when a check fails.
diagnose() {
    kubectl get nodes -o wide 2>&1 | head -5
    kubectl get pods -o wide 2>&1 | head -10
    kubectl get events --sort-by=.lastTimestamp 2>&1 | tail -8
    tail -n 8 "$ndir/logs/supervisor.log" "$ndir/logs/kubelet.log" 2>&1
}

export KUBECONFIG=$sdir/admin.kubeconfig

# 1. The second machine, then the server. The veth comes first: the API
# server's certificate names the host's addresses as it starts.
if ! start_machine >"$work/start-machine.log" 2>&1; then
    fail "the node's network namespace and veth are set up" "$(cat "$work/start-machine.log" "$work/machine.log")"; summary; exit 1
fi
ok "the node's network namespace ($netns, $node_ip) and veth ($host_if, $host_ip) are set up"
out=$(skiffctl up "${up_flags[@]}" 2>&1)
if [ $? -eq 0 ]; then ok "skiffctl up starts the server"; else fail "skiffctl up starts the server" "$out"; summary; exit 1; fi
join_line=$(echo "$out" | grep '^Join another machine: skiffctl join ')
token=$(echo "$join_line" | sed -n 's/.* --token \([^ ]*\).*/\1/p')
ca=$(echo "$join_line" | sed -n 's/.* --certificate-authority \([^ ]*\).*/\1/p')
expect "up prints a join command with the data dir's bootstrap token and CA" "^$(cat "$sdir/join-token" 2>/dev/null) $sdir/" echo "$token $ca"
expect "and with the cluster's CIDR and DNS address (not the defaults)" " ${cluster_flags[*]}\$" echo "$join_line"
expect "the token's Secret is a bootstrap token in kube-system" '^bootstrap.kubernetes.io/token$' \
    kubectl -n kube-system get secret "bootstrap-token-${token%%.*}" -o jsonpath='{.type}'
check "the token may read the cluster CA from kube-public (join without --certificate-authority)" \
    until_ok 30 sh -c "kubectl --kubeconfig /dev/null --server 'https://$host_ip:$base' --certificate-authority '$ca' \
        --token '$token' -n kube-public get configmap kube-root-ca.crt -o jsonpath='{.data.ca\\.crt}' | cmp -s - '$ca'"
expect "the API server's certificate names the host's veth address" "IP Address:$host_ip(,|\$)" \
    openssl x509 -in "$sdir/apiserver/pki/apiserver.crt" -noout -ext subjectAltName

# 2. Join from the node's namespace with the command up printed, at the
# host's veth address.
read -ra printed <<<"${join_line#Join another machine: skiffctl join }"
for i in "${!printed[@]}"; do
    [ "$i" -gt 0 ] && [ "${printed[i - 1]}" = --server ] && printed[i]=https://$host_ip:$base
done
out=$(on_node "$bin/skiffctl" join "${printed[@]}" "${node_flags[@]}" 2>&1)
if [ $? -eq 0 ]; then ok "skiffctl join starts the node"; else fail "skiffctl join starts the node" "$out"; diagnose; summary; exit 1; fi
for c in containerd kubelet proxy; do
    check "the node's $c runs in the node's network namespace" same_netns "$(pid_of "$ndir" "$c")"
done
# (Its shims' sockets are named after containerd's address, so they are
# its own too: the leftover checks after `down` look for them.)
check "the node's containerd keeps its root, state, socket and runc root under the node's data dir" \
    python3 - "$ndir/containerd" <<'PY'
import re, sys
d = sys.argv[1]
text = open(d + "/config.toml").read()
for key, want in [("root", d + "/root"), ("state", d + "/state"), ("address", d + "/containerd.sock"), ("Root", d + "/runc")]:
    if not re.search(r'(?m)^\s*%s = "%s"$' % (key, re.escape(want)), text):
        sys.exit("no %s = %s in %s/config.toml" % (key, want, d))
PY
expect "the images were imported into the node's containerd" 'skiff.local/testhost:1.0' \
    ctr --address "$ndir/containerd/containerd.sock" -n k8s.io images ls -q

# 3. The kubelet's certificate: bootstrap token → CSR → approved and signed.
csr=$(kubectl get csr -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' | grep "^node-csr-$node-" | head -1)
check "a CSR node-csr-$node-… was created" test -n "$csr"
expect "the CSR is for the kubelet client signer" '^kubernetes.io/kube-apiserver-client-kubelet$' \
    kubectl get csr "$csr" -o jsonpath='{.spec.signerName}'
expect "the CSR was sent with the bootstrap token (user system:bootstrap:<id>, group system:bootstrappers)" \
    "^system:bootstrap:${token%%.*} .*system:bootstrappers( |\$)" \
    kubectl get csr "$csr" -o jsonpath='{.spec.username} {.spec.groups[*]}'
expect "the CSR asks for CN=system:node:$node, O=system:nodes" "O ?= ?system:nodes, CN ?= ?system:node:$node\$" \
    sh -c "kubectl get csr '$csr' -o jsonpath='{.spec.request}' | base64 -d | openssl req -noout -subject"
expect "the CSR is Approved,Issued" ' Approved,Issued$' kubectl get csr "$csr" --no-headers
grep 'client-certificate-data:' "$ndir/kubelet.kubeconfig" | awk '{print $2}' | base64 -d >"$work/kubelet.crt"
expect "the kubelet's client certificate is system:node:$node in system:nodes" \
    "O ?= ?system:nodes, CN ?= ?system:node:$node\$" openssl x509 -in "$work/kubelet.crt" -noout -subject
check "and the cluster CA signed it" openssl verify -CAfile "$ca" "$work/kubelet.crt"

# 4. The node: Ready, at its veth address, with a pod CIDR of its own.
check "node $node is Ready" kubectl wait "node/$node" --for=condition=Ready --timeout=60s || diagnose
expect "its InternalIP is the node's veth address" "^$node_ip\$" \
    kubectl get node "$node" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}'
node_cidr=$(kubectl get node "$node" -o jsonpath='{.spec.podCIDR}')
server_cidr=$(kubectl get node "$server" -o jsonpath='{.spec.podCIDR}')
expect "its pod CIDR is in the cluster CIDR, not the server's" "^${cluster_cidr%.0.0/16}\\.[0-9]+\\.0/24 $server_cidr\$" \
    sh -c "[ '$node_cidr' != '$server_cidr' ] && echo '$node_cidr $server_cidr'"
expect "the node's CNI configuration hands out that pod CIDR on its own bridge" "^$node_bridge $node_cidr\$" \
    python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["plugins"][0]; print(p["bridge"], p["ipam"]["ranges"][0][0]["subnet"])' \
    "$ndir/containerd/cni/net.d/10-skiff.conflist"
# (status asks 127.0.0.1, so it runs in the node's namespace.)
out=$(on_node "$bin/skiffctl" status --data-dir "$ndir" 2>&1)
if [ $? -eq 0 ]; then ok "skiffctl status (in the node) says every component is healthy"; else fail "skiffctl status (in the node) says every component is healthy" "$out"; fi
# status_rows TEXT: "<component> <state> <health's first word> " per row.
status_rows() {
    echo "$1" | awk -F '|' '/^\| (containerd|kubelet|proxy) / { gsub(/ /, "", $2); gsub(/ /, "", $5); split($6, h, " "); printf "%s %s %s ", $2, $5, h[1] }'
}
expect "its table has containerd, the kubelet and the proxy running and healthy" \
    '^containerd running ok kubelet running ok proxy running ok $' status_rows "$out"

# 5. A pod pinned to the node, and one on the server.
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: on-node, labels: {app: on-node}}
spec:
  nodeSelector: {kubernetes.io/hostname: $node}
  containers:
  - {name: web, image: skiff.local/testhost:1.0, args: [netexec, --http-port=8080]}
---
apiVersion: v1
kind: Pod
metadata: {name: on-server}
spec:
  nodeName: $server
  containers:
  - {name: c, image: skiff.local/testhost:1.0, args: [sleep, infinity]}
---
apiVersion: v1
kind: Service
metadata: {name: on-node}
spec:
  selector: {app: on-node}
  ports: [{port: 80, targetPort: 8080}]
YAML
check "the pod pinned to $node runs" kubectl wait --for=condition=Ready pod/on-node --timeout=90s || diagnose
check "the pod on the server runs" kubectl wait --for=condition=Ready pod/on-server --timeout=90s || diagnose
expect "the pinned pod was scheduled to $node" "^$node\$" kubectl get pod on-node -o jsonpath='{.spec.nodeName}'
pod_ip=$(kubectl get pod on-node -o jsonpath='{.status.podIP}')
expect "its IP is in the node's pod CIDR" "^${node_cidr%.0/24}\\.[0-9]+\$" echo "$pod_ip"
expect "kubectl logs reads its output (API server → kubelet on $node)" 'Serving HTTP on .*8080' kubectl logs on-node
expect "kubectl exec runs in it" '^on-node$' kubectl exec on-node -- /bin/cat /proc/sys/kernel/hostname
expect "its IP answers HTTP inside the node's namespace" '^on-node$' on_node curl -s --max-time 5 "http://$pod_ip:8080/hostname"
cip=$(kubectl get svc on-node -o jsonpath='{.spec.clusterIP}')
check "the node's proxy sends the Service's ClusterIP to it (inside the node's namespace)" \
    until_ok 30 sh -c "nsenter -t $machine -m -n curl -s --max-time 2 http://$cip/hostname | grep -qx on-node"
uid=$(kubectl get pod on-node -o jsonpath='{.metadata.uid}')
check "its cgroup is under the host's /kubepods (named by its UID)" ls -d "/sys/fs/cgroup/memory/kubepods/besteffort/pod$uid"

# 6. The node's Lease is renewed.
lease() { kubectl -n kube-node-lease get lease "$node" -o jsonpath='{.spec.holderIdentity} {.spec.renewTime}'; }
first=$(lease)
expect "the node's Lease in kube-node-lease is held by $node" "^$node " echo "$first"
check "and renewed (within 25 s: every 10 s)" until_ok 25 sh -c "[ \"\$(kubectl -n kube-node-lease get lease '$node' -o jsonpath='{.spec.holderIdentity} {.spec.renewTime}')\" != '$first' ]"

# 7. A second join changes nothing.
sup=$(cat "$ndir/supervisor.pid")
expect "a second join says it is already up" 'already up' on_node "$bin/skiffctl" join --server "https://$host_ip:$base" \
    --token "$token" --certificate-authority "$ca" "${cluster_flags[@]}" "${node_flags[@]}"
check "and changes nothing (same supervisor, same kubelet)" sh -c "[ \"\$(cat '$ndir/supervisor.pid')\" = $sup ] && kill -0 $(pid_of "$ndir" kubelet)"

# 8. down --purge of the node leaves nothing of it; the server's pod runs on.
pod_uids=$uid
keep_logs node
out=$(on_node "$bin/skiffctl" down --purge --data-dir "$ndir" 2>&1)
if [ $? -eq 0 ]; then ok "skiffctl down --purge of the node"; else fail "skiffctl down --purge of the node" "$out"; fi
check "the node's data directory is gone" test ! -e "$ndir"
check "no process (shims included), mount, bridge, pod cgroup or iptables rule of the node is left" \
    leftovers "$ndir" "$node_bridge" node
check "the server's pod still runs (exec)" kubectl exec on-server -- /bin/true

# 9. Joining again from scratch, without --certificate-authority: the CA
# comes from kube-public (the server unverified), the Node is the same.
out=$(on_node "$bin/skiffctl" join --server "https://$host_ip:$base" --token "$token" "${cluster_flags[@]}" "${node_flags[@]}" 2>&1)
if [ $? -eq 0 ]; then ok "skiffctl join again, without --certificate-authority"; else fail "skiffctl join again, without --certificate-authority" "$out"; diagnose; fi
check "the CA it fetched is the cluster's" cmp "$ndir/ca.crt" "$ca"
check "node $node is Ready again" kubectl wait "node/$node" --for=condition=Ready --timeout=60s
expect "with the pod CIDR it had" "^$node_cidr\$" kubectl get node "$node" -o jsonpath='{.spec.podCIDR}'
# (Its status may still say Ready from before: exec asks the kubelet.)
check "the pod bound to it runs again (exec)" until_ok 90 kubectl exec on-node -- /bin/true || diagnose
keep_logs node
out=$(on_node "$bin/skiffctl" down --purge --data-dir "$ndir" 2>&1)
if [ $? -eq 0 ]; then ok "skiffctl down --purge of the node again"; else fail "skiffctl down --purge of the node again" "$out"; fi
check "nothing of the node is left again" leftovers "$ndir" "$node_bridge" node
check "the Node can then be deleted" sh -c "kubectl delete node '$node' >/dev/null && ! kubectl get node '$node' 2>/dev/null"

# 10. down --purge of the server; then the namespace and veth go.
pod_uids="$uid $(kubectl get pod on-server -o jsonpath='{.metadata.uid}')"
keep_logs server
out=$(skiffctl down --purge --data-dir "$sdir" 2>&1)
if [ $? -eq 0 ]; then ok "skiffctl down --purge of the server"; else fail "skiffctl down --purge of the server" "$out"; fi
check "nothing of the server is left" leftovers "$sdir" "$server_bridge" host
stop_machine
check "the node's network namespace and the veth are gone" sh -c "! ip netns list | grep -qw '$netns' && ! ip link show '$host_if' 2>/dev/null"

summary
