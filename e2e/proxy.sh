#!/usr/bin/env bash
# skiff-proxy end to end, as a binary: skiff-apiserver, real kubectl, and
# skiff-proxy writing real iptables rules inside a network namespace made
# here (never the host's own tables), with HTTP servers in two more
# namespaces and a client namespace, joined by veth pairs.
#
#   e2e/proxy.sh
#
# Needs root, iproute2, iptables, conntrack, python3, curl and kubectl.
# Prints one line per check and closes with "N passed, M failed".
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "e2e/proxy.sh needs root (it creates network namespaces)" >&2; exit 1; }
for tool in ip iptables-save iptables-restore conntrack python3 curl kubectl; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install iproute2 iptables conntrack python3 curl; kubectl)" >&2; exit 1; }
done
(cd "$root" && cargo build -q -p skiff-apiserver -p skiff-proxy) || { echo "building failed" >&2; exit 1; }
# Binaries land where cargo puts them (CARGO_TARGET_DIR if set).
bin=${CARGO_TARGET_DIR:-$root/target}/debug

passed=0
failed=0
work=$(mktemp -d /tmp/skiff-proxy-e2e.XXXX)
id=$$
node=skpe$id-node; ep1=skpe$id-ep1; ep2=skpe$id-ep2; cli=skpe$id-cli
pids=()
proxy_pid=
cleanup() {
    [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    # (What runs inside the namespaces goes with them: $! of a backgrounded
    # shell function is the subshell, not the server it started.)
    for ns in $node $ep1 $ep2 $cli; do ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null; done
    wait 2>/dev/null
    for ns in $node $ep1 $ep2 $cli; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$work"
}
[ -n "${SKIFF_E2E_KEEP:-}" ] || trap cleanup EXIT

ok()   { passed=$((passed + 1)); echo "ok    proxy: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL  proxy: $1"; [ -n "${2:-}" ] && echo "$2" | sed 's/^/      /' | head -20; }
check() {
    local what=$1; shift
    local out
    if out=$("$@" 2>&1); then ok "$what"; else fail "$what" "$out"; fi
}
expect() {
    local what=$1 pattern=$2; shift 2
    local out
    out=$("$@" 2>&1)
    if echo "$out" | grep -Eq -- "$pattern"; then ok "$what"; else fail "$what" "$out"; fi
}
until_ok() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && { "$@"; return 1; }
        sleep 0.3
    done
}
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
get() { in_ns "$1" curl -sS --max-time 3 "$2"; }
refused() { get "$1" "$2" >/dev/null 2>&1; [ $? -eq 7 ]; }

# The network: node <-> ep1, ep2, client.
for ns in $node $ep1 $ep2 $cli; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
in_ns $node sysctl -qw net.ipv4.ip_forward=1
n=1
for peer in $ep1 $ep2 $cli; do
    ip link add "skpe${id}a$n" netns $node type veth peer name "skpe${id}b$n" netns "$peer"
    ip -n $node addr add "10.202.$n.1/24" dev "skpe${id}a$n"; ip -n $node link set "skpe${id}a$n" up
    ip -n "$peer" addr add "10.202.$n.2/24" dev "skpe${id}b$n"; ip -n "$peer" link set "skpe${id}b$n" up
    ip -n "$peer" route add default via "10.202.$n.1"
    n=$((n + 1))
done
ip -n $node route add default via 10.202.3.2
for i in 1 2; do
    mkdir -p "$work/www$i"; echo "ep$i" >"$work/www$i/index.html"
    ns=$ep1; [ $i = 2 ] && ns=$ep2
    in_ns "$ns" python3 -m http.server 8080 --bind "10.202.$i.2" --directory "$work/www$i" >/dev/null 2>&1 &
    pids+=($!)
done

port=$((20000 + RANDOM % 20000))
"$bin/skiff-apiserver" --data-dir "$work/api" --secure-port "$port" --service-cluster-ip-range 10.96.0.0/12 \
    >"$work/apiserver.log" 2>&1 &
pids+=($!)
export KUBECONFIG=$work/api/admin.kubeconfig
until_ok 30 kubectl get --raw /readyz || { echo "the API server did not come up" >&2; cat "$work/apiserver.log" >&2; exit 1; }

healthz=$((20000 + RANDOM % 20000)); metrics=$((healthz + 1))
cat >"$work/proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $KUBECONFIG
hostnameOverride: e2e-node
clusterCIDR: 10.244.0.0/16
mode: iptables
healthzBindAddress: 127.0.0.1:$healthz
metricsBindAddress: 127.0.0.1:$metrics
iptables:
  masqueradeBit: 14
  minSyncPeriod: 200ms
  syncPeriod: 3s
YAML
start_proxy() {
    "$bin/skiff-proxy" --config "$work/proxy.yaml" --netns $node >>"$work/proxy.log" 2>&1 &
    proxy_pid=$!
}

expect "--help lists kube-proxy's flags" "iptables-min-sync-period" "$bin/skiff-proxy" --help
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.100.20
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30090}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
  annotations: {endpoints.kubernetes.io/last-change-trigger-time: "2026-01-01T00:00:00Z"}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: [10.202.1.2]
  conditions: {ready: true}
- addresses: [10.202.2.2]
  conditions: {ready: true}
YAML
start_proxy
check "/healthz answers 200 after the first sync" until_ok 20 curl -sf "http://127.0.0.1:$healthz/healthz"
expect "/healthz reports lastUpdated and nodeEligible" '"lastUpdated": "20.*"nodeEligible": true' curl -s "http://127.0.0.1:$healthz/healthz"
check "/livez answers 200" curl -sf "http://127.0.0.1:$healthz/livez"
expect "route_localnet is set in the node's namespace" "^1$" in_ns $node sysctl -n net.ipv4.conf.all.route_localnet

seen=""
for _ in $(seq 1 30); do seen="$seen $(get $node http://10.96.100.20/ 2>/dev/null)"; done
expect "the cluster IP reaches both endpoints" "ep1.*ep2|ep2.*ep1" echo "$seen"
expect "the node port answers another host" "^ep[12]$" get $cli http://10.202.3.1:30090/
expect "the node port answers on the node's localhost" "^ep[12]$" get $node http://127.0.0.1:30090/
expect "/metrics has the rules count" 'kubeproxy_sync_proxy_rules_iptables_total\{table="nat"\} [1-9]' curl -s "http://127.0.0.1:$metrics/metrics"
expect "/metrics has the sync latency histogram" 'kubeproxy_sync_proxy_rules_duration_seconds_count [1-9]' curl -s "http://127.0.0.1:$metrics/metrics"

kubectl patch endpointslice web-1 --type=json -p '[{"op":"replace","path":"/endpoints","value":[]}]' >/dev/null
check "with no endpoints the cluster IP refuses connections" until_ok 10 refused $node http://10.96.100.20/
check "with no endpoints the node port refuses connections" refused $cli http://10.202.3.1:30090/
now=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
kubectl patch endpointslice web-1 --type=json -p '[{"op":"replace","path":"/endpoints","value":[{"addresses":["10.202.2.2"],"conditions":{"ready":true}}]},
    {"op":"replace","path":"/metadata/annotations/endpoints.kubernetes.io~1last-change-trigger-time","value":"'"$now"'"}]' >/dev/null
check "an endpoint coming back is reachable" until_ok 10 sh -c "ip netns exec $node curl -s --max-time 2 http://10.96.100.20/ | grep -q ep2"
expect "/metrics has network programming latency (trigger time to rules applied)" \
    'kubeproxy_network_programming_duration_seconds_bucket\{le="1.0"\} [1-9]' curl -s "http://127.0.0.1:$metrics/metrics"

kill -9 "$proxy_pid"; wait "$proxy_pid" 2>/dev/null
expect "rules keep working while the proxy is down" "^ep2$" get $node http://10.96.100.20/
start_proxy
check "the restarted proxy syncs" until_ok 20 curl -sf "http://127.0.0.1:$healthz/healthz"
sleep 1
dups=$(in_ns $node iptables-save | awk '/^\*/{t=$0} /^(-A|:KUBE)/{print t" "$0}' | sort | uniq -d)
check "a restart leaves no duplicate chains or rules" test -z "$dups"
expect "and the service still works" "^ep2$" get $node http://10.96.100.20/

in_ns $node iptables -t nat -F KUBE-SERVICES
check "the periodic resync repairs a flushed KUBE-SERVICES" until_ok 10 sh -c "ip netns exec $node curl -s --max-time 2 http://10.96.100.20/ | grep -q ep2"

kill "$proxy_pid"; wait "$proxy_pid" 2>/dev/null; proxy_pid=
check "--cleanup exits cleanly" "$bin/skiff-proxy" --cleanup --netns $node
check "--cleanup removes every KUBE chain and jump" sh -c "! ip netns exec $node iptables-save | grep -q KUBE-"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
