#!/usr/bin/env bash
# Cluster DNS end to end: skiff-apiserver and the skiff-dns binary, objects
# made with real kubectl, names asked on the wire (UDP and TCP) by a small
# Python client (dig is not on these machines). Forwarding goes to a stub
# upstream started here, so no internet is needed.
#
#   e2e/dns.sh
#
# Needs kubectl, curl and python3. Prints one line per check and closes
# with "N passed, M failed".
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
for tool in kubectl curl python3; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
(cd "$root" && cargo build -q -p skiff-apiserver -p skiff-dns) || { echo "building failed" >&2; exit 1; }
bin=${CARGO_TARGET_DIR:-$root/target}/debug

passed=0
failed=0
work=$(mktemp -d /tmp/skiff-dns-e2e.XXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
[ -n "${SKIFF_E2E_KEEP:-}" ] || trap cleanup EXIT

ok()   { passed=$((passed + 1)); echo "ok    dns: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL  dns: $1"; [ -n "${2:-}" ] && echo "$2" | sed 's/^/      /' | head -20; }
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
        sleep 0.2
    done
}

# A DNS client and a stub upstream in one small Python program:
#   dnsq.py ask SERVER PORT NAME TYPE [tcp]  → "RCODE" then one line per answer
#   dnsq.py stub PORT                         → answers every A with 192.0.2.53
cat >"$work/dnsq.py" <<'EOF'
import random, socket, struct, sys
TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "TXT": 16, "AAAA": 28, "SRV": 33}
NAMES = {v: k for k, v in TYPES.items()}
RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN"}
def qname(name):
    return b"".join(bytes([len(l)]) + l.encode() for l in name.split(".") if l) + b"\0"
def read_name(msg, i):
    labels = []
    while True:
        n = msg[i]
        if n & 0xC0 == 0xC0:
            labels.append(read_name(msg, ((n & 0x3F) << 8) | msg[i + 1])[0]); return ".".join(labels), i + 2
        i += 1
        if n == 0: return ".".join(labels) + ".", i
        labels.append(msg[i:i + n].decode()); i += n
def ask(server, port, name, rtype, tcp):
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname(name) + struct.pack(">HH", TYPES[rtype], 1)
    if tcp:
        s = socket.create_connection((server, port), timeout=3); s.sendall(struct.pack(">H", len(q)) + q)
        n = struct.unpack(">H", s.recv(2))[0]; msg = b""
        while len(msg) < n: msg += s.recv(n - len(msg))
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.sendto(q, (server, port)); msg = s.recv(65535)
    rcode, an = msg[3] & 15, struct.unpack(">H", msg[6:8])[0]
    print(RCODES.get(rcode, rcode))
    i = read_name(msg, 12)[1] + 4
    for _ in range(an):
        owner, i = read_name(msg, i)
        t, _, ttl, ln = struct.unpack(">HHIH", msg[i:i + 10]); i += 10; rd = msg[i:i + ln]
        if t == 1: v = socket.inet_ntoa(rd)
        elif t == 28: v = socket.inet_ntop(socket.AF_INET6, rd)
        elif t in (5, 12): v = read_name(msg, i)[0]
        elif t == 33: v = "%d %s" % (struct.unpack(">H", rd[4:6])[0], read_name(msg, i + 6)[0])
        elif t == 16: v = rd[1:].decode()
        else: v = rd.hex()
        print(NAMES.get(t, t), ttl, v); i += ln
def stub(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", port))
    while True:
        q, peer = s.recvfrom(4096)
        end = read_name(q, 12)[1]; t = struct.unpack(">H", q[end:end + 2])[0]
        ans = (b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton("192.0.2.53")) if t == 1 else b""
        s.sendto(q[:2] + b"\x81\x80" + q[4:6] + struct.pack(">HHH", 1 if ans else 0, 0, 0) + q[12:end + 4] + ans, peer)
if sys.argv[1] == "ask": ask(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], len(sys.argv) > 6)
else: stub(int(sys.argv[2]))
EOF

api_port=$((20000 + RANDOM % 20000))
dns_port=$((api_port + 1))
stub_port=$((api_port + 2))
"$bin/skiff-apiserver" --data-dir "$work/api" --secure-port "$api_port" >"$work/apiserver.log" 2>&1 &
pids+=($!)
export KUBECONFIG=$work/api/admin.kubeconfig
until_ok 60 kubectl get --raw /readyz || { echo "the API server did not start; see $work/apiserver.log" >&2; exit 1; }
python3 "$work/dnsq.py" stub "$stub_port" &
pids+=($!)
echo "nameserver 127.0.0.1#$stub_port" >"$work/resolv.conf"
"$bin/skiff-dns" --kubeconfig "$KUBECONFIG" --dns-address "127.0.0.1:$dns_port" \
    --health-address "127.0.0.1:$((api_port + 3))" --ready-address "127.0.0.1:$((api_port + 4))" \
    --metrics-address "127.0.0.1:$((api_port + 5))" --resolv-conf "$work/resolv.conf" >"$work/dns.log" 2>&1 &
pids+=($!)
q() { python3 "$work/dnsq.py" ask 127.0.0.1 "$dns_port" "$@"; }

until_ok 20 curl -sf "http://127.0.0.1:$((api_port + 4))/ready" || fail "/ready turns 200" "$(cat "$work/dns.log")"
expect "/health answers OK" '^OK$' curl -sf "http://127.0.0.1:$((api_port + 3))/health"

kubectl create namespace shop >/dev/null
kubectl -n shop create service clusterip web --tcp=80:8080 >/dev/null
kubectl -n shop create service externalname ext --external-name db.example.test >/dev/null
kubectl -n shop apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-1, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- {addresses: [10.244.0.5], hostname: db-0, conditions: {ready: true}}
- {addresses: [10.244.0.6], conditions: {ready: false}}
EOF
web_ip=$(kubectl -n shop get service web -o jsonpath='{.spec.clusterIP}')
until_ok 5 sh -c "python3 $work/dnsq.py ask 127.0.0.1 $dns_port db.shop.svc.cluster.local A | grep -q 10.244.0.5"

for proto in udp tcp; do
    t=; [ $proto = tcp ] && t=tcp
    expect "$proto: Service A is its ClusterIP" "^A 30 $web_ip\$" q web.shop.svc.cluster.local A $t
    expect "$proto: headless A lists only ready endpoints" '^A 30 10.244.0.5$' q db.shop.svc.cluster.local A $t
    expect "$proto: endpoint hostname" '^A 30 10.244.0.5$' q db-0.db.shop.svc.cluster.local A $t
    expect "$proto: SRV of a ClusterIP Service" '^SRV 30 80 web.shop.svc.cluster.local.$' q _80-8080._tcp.web.shop.svc.cluster.local SRV $t
    expect "$proto: SRV of a headless Service" '^SRV 30 5432 db-0.db.shop.svc.cluster.local.$' q _pg._tcp.db.shop.svc.cluster.local SRV $t
    rev=$(echo "$web_ip" | awk -F. '{print $4"."$3"."$2"."$1".in-addr.arpa"}')
    expect "$proto: PTR of a ClusterIP" '^PTR 30 web.shop.svc.cluster.local.$' q "$rev" PTR $t
    expect "$proto: ExternalName is a CNAME" '^CNAME 30 db.example.test.$' q ext.shop.svc.cluster.local A $t
    expect "$proto: pod A" '^A 30 10.244.7.8$' q 10-244-7-8.shop.pod.cluster.local A $t
    expect "$proto: NXDOMAIN for a missing Service" '^NXDOMAIN$' q nope.shop.svc.cluster.local A $t
    expect "$proto: dns-version" '^TXT 30 1.1.0$' q dns-version.cluster.local TXT $t
done
expect "other names go to the upstream" '^A 60 192.0.2.53$' q www.example.test A

kubectl -n shop patch endpointslice db-1 --type=json \
    -p '[{"op": "replace", "path": "/endpoints/1/conditions/ready", "value": true}]' >/dev/null
start=$(date +%s%N)
if until_ok 1 sh -c "python3 $work/dnsq.py ask 127.0.0.1 $dns_port db.shop.svc.cluster.local A | grep -q 10.244.0.6"; then
    ok "a newly ready endpoint is served within a second ($(( ($(date +%s%N) - start) / 1000000 )) ms)"
else
    fail "a newly ready endpoint is served within a second"
fi
expect "metrics count requests by type" 'coredns_dns_requests_total\{proto="udp",type="A"\}' \
    curl -sf "http://127.0.0.1:$((api_port + 5))/metrics"

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
