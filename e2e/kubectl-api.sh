#!/usr/bin/env bash
# Drives real, unmodified kubectl through a realistic sequence against
# skiff-apiserver, on the embedded store and on a real etcd.
#
#   e2e/kubectl-api.sh [embedded|etcd|both]     (default: both)
#
# Needs: kubectl (preinstalled), etcd (apt-get install etcd-server) for the
# etcd run, and the skiff-apiserver binary (built here if missing).
# Prints one line per check and closes with "N passed, M failed".
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
backends=${1:-both}
[ "$backends" = both ] && backends="embedded etcd"

command -v kubectl >/dev/null || { echo "kubectl is not installed (expected at /usr/bin/kubectl)" >&2; exit 1; }
python3 -c 'import kubernetes' 2>/dev/null || { echo "the Kubernetes Python client is missing: scripts/install-prereqs.sh installs it" >&2; exit 1; }
# Binaries land where cargo puts them (CARGO_TARGET_DIR if set).
bin="${CARGO_TARGET_DIR:-$root/target}/debug/skiff-apiserver"
(cd "$root" && cargo build -q -p skiff-apiserver) || { echo "building skiff-apiserver failed" >&2; exit 1; }

passed=0
failed=0
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

ok()   { passed=$((passed + 1)); echo "ok    $backend: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL  $backend: $1"; [ -n "${2:-}" ] && echo "$2" | sed 's/^/      /' | head -20; }

# check DESCRIPTION COMMAND...: passes when the command succeeds.
check() {
    local what=$1; shift
    local out
    if out=$("$@" 2>&1); then ok "$what"; else fail "$what" "$out"; fi
}

# expect DESCRIPTION PATTERN COMMAND...: passes when the output matches.
expect() {
    local what=$1 pattern=$2; shift 2
    local out
    out=$("$@" 2>&1)
    if echo "$out" | grep -Eq -- "$pattern"; then ok "$what"; else fail "$what" "$out"; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start_etcd() {
    command -v etcd >/dev/null || { echo "etcd is not installed: apt-get install etcd-server" >&2; exit 1; }
    local client peer
    client=$(free_port); peer=$(free_port)
    etcd --name e2e --data-dir "$work/etcd" \
        --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "e2e=http://127.0.0.1:$peer" >"$work/etcd.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$client/health', timeout=1)" >/dev/null 2>&1 && break
        sleep 0.1
    done
    etcd_url="http://127.0.0.1:$client"
}

run_suite() {
    backend=$1
    local data="$work/$backend" port extra=()
    port=$(free_port)
    if [ "$backend" = etcd ]; then
        start_etcd
        extra=(--etcd-servers "$etcd_url")
    fi
    "$bin" --data-dir "$data" --secure-port "$port" --bind-address 127.0.0.1 "${extra[@]}" >"$work/$backend-apiserver.log" 2>&1 &
    pids+=($!)
    export KUBECONFIG="$data/admin.kubeconfig"
    for _ in $(seq 100); do
        [ -f "$KUBECONFIG" ] && kubectl get --raw /readyz >/dev/null 2>&1 && break
        sleep 0.1
    done
    local k=(kubectl)

    expect "version reports server v1.33 without a skew warning" 'Server Version: v1\.33' "${k[@]}" version
    if "${k[@]}" version 2>&1 | grep -qi warning; then fail "no version skew warning" "$("${k[@]}" version 2>&1)"; else ok "no version skew warning"; fi
    expect "api-resources lists pods with short name po" '^pods +po +v1 +true +Pod' "${k[@]}" api-resources
    expect "api-resources lists deployments in apps/v1" '^deployments +deploy +apps/v1 +true +Deployment' "${k[@]}" api-resources
    check "create namespace" "${k[@]}" create namespace shop
    expect "the new namespace is Active" '^shop +Active' "${k[@]}" get namespace shop

    cat >"$work/app.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: shop
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
  namespace: shop
type: Opaque
stringData:
  password: s3cret
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: skiff/testhost:1
        ports:
        - containerPort: 8080
        env:
        - name: GREETING
          valueFrom:
            configMapKeyRef:
              name: web-config
              key: greeting
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
EOF
    expect "apply -f a multi-document file creates all four" 'deployment.apps/web created' "${k[@]}" apply -f "$work/app.yaml"
    sed -i 's/greeting: hello/greeting: hi/; s/replicas: 2/replicas: 3/' "$work/app.yaml"
    expect "apply again after an edit configures what changed" 'deployment.apps/web configured' "${k[@]}" apply -f "$work/app.yaml"
    expect "the edit reached the ConfigMap" '^hi$' "${k[@]}" -n shop get configmap web-config -o 'jsonpath={.data.greeting}'
    expect "apply a third time is unchanged" 'configmap/web-config unchanged' "${k[@]}" apply -f "$work/app.yaml"
    expect "get deployments prints upstream's columns" '^NAME +READY +UP-TO-DATE +AVAILABLE +AGE' "${k[@]}" -n shop get deployments
    expect "get -o wide adds CONTAINERS IMAGES SELECTOR" 'CONTAINERS +IMAGES +SELECTOR' "${k[@]}" -n shop get deployments -o wide
    expect "get service shows its ClusterIP column" '^web +ClusterIP ' "${k[@]}" -n shop get service web
    expect "get -o yaml" 'kind: Deployment' "${k[@]}" -n shop get deployment web -o yaml
    expect "get -o json" '"replicas": 3' "${k[@]}" -n shop get deployment web -o json
    expect "get -o jsonpath" '^skiff/testhost:1$' "${k[@]}" -n shop get deployment web -o 'jsonpath={.spec.template.spec.containers[0].image}'
    expect "get across all namespaces" 'shop +web-config' "${k[@]}" get configmaps -A

    # get -w receives an event.
    "${k[@]}" -n shop get configmaps -w --output-watch-events >"$work/watch.out" 2>&1 &
    local watcher=$!
    sleep 1
    "${k[@]}" -n shop create configmap watched --from-literal=a=b >/dev/null 2>&1
    for _ in $(seq 50); do grep -q 'ADDED.*watched' "$work/watch.out" && break; sleep 0.1; done
    kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null
    expect "get -w receives the ADDED event" 'ADDED +watched' cat "$work/watch.out"

    check "label" "${k[@]}" -n shop label deployment web tier=front
    expect "label selector finds it" '^web ' "${k[@]}" -n shop get deployments -l tier=front
    check "annotate" "${k[@]}" -n shop annotate deployment web owner=team-a
    expect "the annotation is there" '^team-a$' "${k[@]}" -n shop get deployment web -o 'jsonpath={.metadata.annotations.owner}'
    check "patch --type=strategic" "${k[@]}" -n shop patch deployment web --type=strategic -p '{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"skiff/testhost:2"}]}}}}'
    expect "strategic patch merged the container by name" '^skiff/testhost:2 8080$' "${k[@]}" -n shop get deployment web -o 'jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}'
    check "patch --type=merge" "${k[@]}" -n shop patch configmap web-config --type=merge -p '{"data":{"extra":"1"}}'
    check "patch --type=json" "${k[@]}" -n shop patch deployment web --type=json -p '[{"op":"replace","path":"/spec/replicas","value":5}]'
    expect "json patch set replicas" '^5$' "${k[@]}" -n shop get deployment web -o 'jsonpath={.spec.replicas}'
    expect "scale" 'scaled' "${k[@]}" -n shop scale deployment web --replicas=2
    expect "scale reached spec.replicas" '^2$' "${k[@]}" -n shop get deployment web -o 'jsonpath={.spec.replicas}'

    cat >"$work/ssa.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: ssa
  namespace: shop
data:
  a: "1"
EOF
    expect "apply --server-side creates" 'serverside-applied' "${k[@]}" apply --server-side -f "$work/ssa.yaml"
    sed -i 's/a: "1"/a: "2"/' "$work/ssa.yaml"
    expect "apply --server-side again updates" 'serverside-applied' "${k[@]}" apply --server-side -f "$work/ssa.yaml"
    expect "server-side apply recorded its manager" '"manager": "kubectl"' "${k[@]}" -n shop get configmap ssa -o json --show-managed-fields
    expect "apply --server-side on a client-side-applied object" 'serverside-applied' "${k[@]}" apply --server-side --force-conflicts -f "$work/app.yaml"

    expect "explain pod.spec" 'FIELDS' "${k[@]}" explain pod.spec

    # A write with a stale resourceVersion: 409, nothing changed.
    local stale
    stale=$("${k[@]}" -n shop get configmap web-config -o json)
    "${k[@]}" -n shop patch configmap web-config --type=merge -p '{"data":{"bump":"1"}}' >/dev/null
    expect "a stale resourceVersion gets 409 Conflict" 'the object has been modified' \
        bash -c "echo '$(echo "$stale" | tr -d "'")' | kubectl replace -f -"

    cat >"$work/bad.yaml" <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: bad
  namespace: shop
spec:
  containers:
  - name: web
EOF
    expect "an invalid pod is refused naming the field" 'spec.containers\[0\].image: Required value' "${k[@]}" apply -f "$work/bad.yaml"
    expect "an unknown field is refused with its path" 'unknown field "spec.replicaz"' \
        bash -c "kubectl -n shop create -f - <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: typo}
spec:
  replicaz: 1
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec: {containers: [{name: c, image: i}]}
EOF"

    expect "delete --cascade=background" 'deleted' "${k[@]}" -n shop delete configmap watched --cascade=background
    expect "delete --cascade=orphan marks the orphan finalizer" 'deleted' "${k[@]}" -n shop delete deployment web --cascade=orphan --wait=false
    expect "delete --cascade=foreground" 'deleted' "${k[@]}" -n shop delete secret web-secret --cascade=foreground --wait=false
    check "delete namespace (it terminates)" "${k[@]}" delete namespace shop --wait=false
    expect "a terminating namespace refuses new objects" 'being terminated' "${k[@]}" -n shop create configmap late --from-literal=a=b

    # A CustomResourceDefinition: served at once, validated, printed with its
    # columns, patched, watched, and deleted with its objects.
    cat >"$work/crd.yaml" <<'YAML'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [color]
            properties:
              color: {type: string, enum: [red, blue]}
              size: {type: integer, minimum: 0, default: 1}
    additionalPrinterColumns:
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Size, type: integer, jsonPath: .spec.size}
YAML
    widget() { printf 'apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: %s}\nspec: {color: %s}\n' "$1" "$2"; }
    check "create a CRD" "${k[@]}" apply -f "$work/crd.yaml"
    check "the CRD becomes Established" "${k[@]}" wait --for condition=established --timeout=10s crd/widgets.example.com
    expect "api-resources lists the new kind" '^widgets +wd +example.com/v1 +true +Widget' "${k[@]}" api-resources
    widget w1 red >"$work/w1.yaml"
    widget bad pink >"$work/bad-widget.yaml"
    expect "create a custom resource" 'widget.example.com/w1 created' "${k[@]}" create -f "$work/w1.yaml"
    expect "get prints the printer columns" '^w1 +red +1$' "${k[@]}" get widgets
    expect "get by short name with a header" '^NAME +COLOR +SIZE$' "${k[@]}" get wd
    check "patch a custom resource" "${k[@]}" patch widget w1 --type=merge -p '{"spec":{"size":4}}'
    expect "the patch landed" '^4$' "${k[@]}" get widget w1 -o 'jsonpath={.spec.size}'
    expect "an invalid custom resource is refused naming the field" 'spec.color: Unsupported value: "pink"' \
        "${k[@]}" create -f "$work/bad-widget.yaml"
    "${k[@]}" get widgets -w --output-watch-events >"$work/wwatch.out" 2>&1 &
    local wwatcher=$!
    sleep 1
    "${k[@]}" patch widget w1 --type=merge -p '{"spec":{"color":"blue"}}' >/dev/null 2>&1
    for _ in $(seq 50); do grep -q 'MODIFIED.*w1' "$work/wwatch.out" && break; sleep 0.1; done
    kill "$wwatcher" 2>/dev/null; wait "$wwatcher" 2>/dev/null
    expect "get -w sees the custom resource change" 'MODIFIED +w1 +blue' cat "$work/wwatch.out"
    check "delete the CRD" "${k[@]}" delete -f "$work/crd.yaml" --timeout=20s
    expect "its kind is no longer served" "doesn't have a resource type|could not find the requested resource" "${k[@]}" get widgets

    # A service account's token: it can do what its Role allows, and nothing
    # more; kubectl auth can-i and real requests agree.
    check "create a namespace for the robot" "${k[@]}" create namespace robots
    check "create a service account" "${k[@]}" -n robots create serviceaccount robot
    check "create a Role that reads pods" "${k[@]}" -n robots create role pod-reader --verb=get,list,watch --resource=pods
    check "bind it to the service account" "${k[@]}" -n robots create rolebinding robot-reads --role=pod-reader --serviceaccount=robots:robot
    local token
    token=$("${k[@]}" -n robots create token robot 2>&1)
    expect "kubectl create token issues a JWT" '^eyJ' echo "$token"
    # A kubeconfig with the cluster but no client certificate: the token alone.
    python3 - "$KUBECONFIG" "$work/robot.kubeconfig" "$token" <<'PY'
import sys
src, dst, token = sys.argv[1:]
out, skip = [], False
for line in open(src):
    if line.strip().startswith(("client-certificate-data:", "client-key-data:")):
        continue
    out.append(line)
    if line.strip() == "user:":
        out.append(f"    token: {token}\n")
open(dst, "w").write("".join(out))
PY
    local robot=(kubectl --kubeconfig "$work/robot.kubeconfig")
    expect "the token authenticates as the service account" 'system:serviceaccount:robots:robot' "${robot[@]}" auth whoami
    expect "can-i list pods in its namespace: yes" '^yes$' "${robot[@]}" auth can-i list pods -n robots
    expect "can-i delete pods: no" '^no$' "${robot[@]}" auth can-i delete pods -n robots
    expect "can-i list pods elsewhere: no" '^no$' "${robot[@]}" auth can-i list pods -n default
    expect "listing pods in its namespace works" 'No resources found' "${robot[@]}" -n robots get pods
    expect "listing secrets is refused with 403" 'Forbidden.*cannot list resource "secrets"' "${robot[@]}" -n robots get secrets
    expect "creating pods is refused with 403" 'Forbidden.*cannot create resource "pods"' "${robot[@]}" -n robots run x --image=skiff/testhost:1
    expect "impersonation answers for the impersonated user" '^no$' "${k[@]}" auth can-i get secrets -n robots --as system:serviceaccount:robots:robot
    expect "a tampered token is unauthorized" 'Unauthorized|must be logged in' \
        kubectl --kubeconfig "$work/robot.kubeconfig" --token "${token}x" get pods -n robots

    # A ResourceQuota refuses the pod over it.
    check "create a quota of one pod" "${k[@]}" -n robots create quota one-pod --hard=pods=1
    expect "the first pod is admitted" 'pod/p1 created' "${k[@]}" -n robots run p1 --image=skiff/testhost:1
    expect "the second pod is refused by the quota" 'exceeded quota: one-pod, requested: pods=1, used: pods=1, limited: pods=1' \
        "${k[@]}" -n robots run p2 --image=skiff/testhost:1

    # The official Python client, against the same server.
    local py
    py=$(python3 "$here/python_client.py" "$KUBECONFIG" 2>&1)
    echo "$py" | grep -E '^(ok|FAIL|      )' | sed "s/python:/$backend: python:/"
    local counts
    counts=$(echo "$py" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
    if [ -z "$counts" ]; then
        fail "the Python client suite ran" "$py"
    else
        passed=$((passed + $(echo "$counts" | cut -d' ' -f1)))
        failed=$((failed + $(echo "$counts" | cut -d' ' -f3)))
    fi
}

for b in $backends; do run_suite "$b"; done
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
