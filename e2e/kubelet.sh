#!/usr/bin/env bash
# The kubelet end to end: a real containerd (private, started here with its
# own config), skiff-apiserver and skiff-kubelet, driven with real kubectl.
# Pods have spec.nodeName set, so no scheduler is needed.
#
#   e2e/kubelet.sh
#
# Needs root, containerd, runc, the CNI plugins, umoci and busybox-static
# (scripts/install-prereqs.sh installs them all) and kubectl.
# Prints one line per check and closes with "N passed, M failed".
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
for tool in kubectl containerd runc umoci curl skopeo docker-registry; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed: run scripts/install-prereqs.sh" >&2; exit 1; }
done
[ -x /usr/lib/cni/bridge ] || { echo "the CNI plugins are missing (apt-get install containernetworking-plugins)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl is not installed (apt-get install openssl)" >&2; exit 1; }
(cd "$root" && cargo build -q -p skiff-apiserver -p skiff-kubelet -p skiff-controllers) || { echo "building failed" >&2; exit 1; }
# Binaries land where cargo puts them (CARGO_TARGET_DIR if set).
bin=${CARGO_TARGET_DIR:-$root/target}/debug
"$root/scripts/build-images.sh" "$root/.skiff/images" >/dev/null || { echo "building the test images failed" >&2; exit 1; }

backend=kubelet
passed=0
failed=0
# Short paths: containerd's socket paths must stay under 108 bytes.
work=$(mktemp -d /tmp/skiff-e2e.XXXX)
ctr_dir=$work/ctr
pids=()
kubelet_pid=
cleanup() {
    [ -n "$kubelet_pid" ] && kill "$kubelet_pid" 2>/dev/null
    if [ -n "${KUBECONFIG:-}" ]; then kubectl delete pods --all --grace-period=1 --timeout=20s >/dev/null 2>&1; fi
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    "$root/scripts/containerd.sh" stop "$ctr_dir" >/dev/null 2>&1
    ip link del skiffe2e0 2>/dev/null
    rm -rf "$work"
}
[ -n "${SKIFF_E2E_KEEP:-}" ] || trap cleanup EXIT

ok()   { passed=$((passed + 1)); echo "ok    $backend: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL  $backend: $1"; [ -n "${2:-}" ] && echo "$2" | sed 's/^/      /' | head -20; }
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
# until_ok SECONDS COMMAND...: retries the command until it succeeds.
until_ok() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && { "$@"; return 1; }
        sleep 0.5
    done
}
jp() { kubectl get pod "$1" -o "jsonpath=$2"; }
# pod_containers UID: the ids of the pod's containers in containerd (fails if ctr does).
pod_containers() { ctr --address "$ctr_dir/containerd.sock" -n k8s.io containers ls -q "labels.\"io.kubernetes.pod.uid\"==$1"; }

"$root/scripts/containerd.sh" start "$ctr_dir" >/dev/null || { echo "containerd did not start; see $ctr_dir/containerd.log" >&2; exit 1; }
"$root/scripts/containerd.sh" import "$root/.skiff/images/pause.tar" "$root/.skiff/images/testhost.tar" "$ctr_dir" >/dev/null

port=$((20000 + RANDOM % 20000))
"$bin/skiff-apiserver" --data-dir "$work/api" --secure-port "$port" >"$work/apiserver.log" 2>&1 &
pids+=($!)
export KUBECONFIG=$work/api/admin.kubeconfig
until_ok 30 kubectl get --raw /readyz || { echo "the API server did not come up" >&2; cat "$work/apiserver.log" >&2; exit 1; }
# The controller manager publishes kube-root-ca.crt, which every pod's
# service-account volume projects.
"$bin/skiff-controller-manager" --kubeconfig "$KUBECONFIG" --root-ca-file "$work/api/pki/ca.crt" \
    --secure-port 0 >"$work/controller-manager.log" 2>&1 &
pids+=($!)

# The kubelet runs as the node, not as an admin: a client certificate for
# system:node:e2e-node in group system:nodes, signed by the cluster CA, so the
# Node authorizer decides what it may read.
pki=$work/api/pki
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/node.key" \
    -subj "/O=system:nodes/CN=system:node:e2e-node" -out "$work/node.csr" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' >"$work/node.ext"
openssl x509 -req -in "$work/node.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 1 \
    -extfile "$work/node.ext" -out "$work/node.crt" 2>/dev/null
node_kubeconfig=$work/node.kubeconfig
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
KUBECONFIG=$node_kubeconfig kubectl config set-cluster skiff --server="$server" --certificate-authority="$pki/ca.crt" --embed-certs >/dev/null
KUBECONFIG=$node_kubeconfig kubectl config set-credentials node --client-certificate="$work/node.crt" --client-key="$work/node.key" --embed-certs >/dev/null
KUBECONFIG=$node_kubeconfig kubectl config set-context node --cluster=skiff --user=node >/dev/null
KUBECONFIG=$node_kubeconfig kubectl config use-context node >/dev/null
check "kube-root-ca.crt is published by the controller manager" until_ok 20 kubectl get configmap kube-root-ca.crt

mkdir -p "$work/manifests"
# Upstream's default nodefs.available<10% would evict the test's pods on a
# build machine whose disk is nearly full of build output; eviction itself is
# tested in crates/kubelet/tests/fake_runtime.rs.
start_kubelet() {
    "$bin/skiff-kubelet" --kubeconfig "$node_kubeconfig" \
        --container-runtime-endpoint "unix://$ctr_dir/containerd.sock" \
        --hostname-override e2e-node --root-dir "$work/kubelet" --pod-logs-dir "$ctr_dir/pod-logs" \
        --cni-conf-dir "$ctr_dir/cni/net.d" --cni-bridge skiffe2e0 --pod-cidr 10.250.0.0/24 \
        --eviction-hard 'memory.available<100Mi,nodefs.available<512Mi' \
        --pod-manifest-path "$work/manifests" --client-ca-file "$work/api/pki/ca.crt" --port $((port + 1)) >>"$work/kubelet.log" 2>&1 &
    kubelet_pid=$!
}
start_kubelet

# 1. The node registers, goes Ready, and renews its lease.
check "node registers and becomes Ready" until_ok 30 kubectl wait node/e2e-node --for=condition=Ready --timeout=1s
expect "node reports capacity and runtime" 'containerd://.*pods=110' kubectl get node e2e-node -o 'jsonpath={.status.nodeInfo.containerRuntimeVersion} pods={.status.capacity.pods}'
check "node lease exists" kubectl -n kube-node-lease get lease e2e-node

# 2. A pod with nodeName runs, gets an IP and answers HTTP; readiness flips.
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: e2e-node
  containers:
  - name: web
    image: skiff.local/testhost:1.0
    args: ["netexec", "--http-port=8080"]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1, failureThreshold: 1}
YAML
check "pod reaches Ready" kubectl wait pod/web --for=condition=Ready --timeout=60s
ip=$(jp web '{.status.podIP}')
expect "pod IP answers HTTP with its hostname" '^web$' curl -s --max-time 5 "http://$ip:8080/hostname"
expect "status carries qosClass, hostIP and a containerd id" 'BestEffort .+ containerd://' jp web '{.status.qosClass} {.status.hostIP} {.status.containerStatuses[0].containerID}'
curl -s --max-time 5 "http://$ip:8080/fail-readyz" >/dev/null
check "failing readiness probe makes the pod unready" kubectl wait pod/web --for=condition=Ready=false --timeout=20s
curl -s --max-time 5 "http://$ip:8080/set-readyz?status=200" >/dev/null
check "passing readiness probe makes it ready again" kubectl wait pod/web --for=condition=Ready --timeout=20s
expect "kubectl logs reads the container's output" '^Serving HTTP on .*8080' sh -c "kubectl logs web | head -1"
expect "kubectl logs --tail=2 gives two lines" '^2$' sh -c "kubectl logs web --tail=2 | wc -l"
expect "kubectl logs -f follows new output" 'GET /echo[?]msg=x 200' sh -c "(sleep 2; curl -s 'http://$ip:8080/echo?msg=x' >/dev/null) & timeout 5 kubectl logs -f web --tail=1; true"
expect "kubectl exec runs a command in the container" '^web$' kubectl exec web -- /bin/cat /proc/sys/kernel/hostname
expect "kubectl exec -i passes stdin through" '^piped$' sh -c "echo piped | kubectl exec -i web -- /bin/cat"
expect "nodes/proxy reaches the kubelet's /stats/summary" '"podRef":\{"name":"web"' kubectl get --raw /api/v1/nodes/e2e-node/proxy/stats/summary
kubectl port-forward pod/web "$((port + 2)):8080" >"$work/port-forward.log" 2>&1 &
pf=$!
check "kubectl port-forward reaches the pod" until_ok 15 sh -c "curl -s --max-time 2 http://127.0.0.1:$((port + 2))/hostname | grep -qx web"
kill $pf 2>/dev/null
check "kubectl cp copies a file out of the container" sh -c "kubectl cp web:/etc/hosts '$work/copied-hosts' && grep -q web '$work/copied-hosts'"
expect "events record Created and Started" 'Created.*Started|Started.*Created' sh -c "kubectl get events --field-selector involvedObject.name=web -o jsonpath='{.items[*].reason}'"

# 3. Init containers first; env from a ConfigMap; a Secret volume's content.
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {GREETING: hello-from-configmap}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: hunter2}
---
apiVersion: v1
kind: Pod
metadata: {name: setup}
spec:
  nodeName: e2e-node
  restartPolicy: Never
  initContainers:
  - name: first
    image: skiff.local/testhost:1.0
    command: ["/bin/sh", "-c", "echo from-init > /work/marker"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: skiff.local/testhost:1.0
    command: ["/bin/sh", "-c", "cat /work/marker; echo G=$GREETING; cat /secret/password; echo; echo host=$KUBERNETES_SERVICE_HOST"]
    env:
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: settings, key: GREETING}}
    volumeMounts:
    - {name: work, mountPath: /work}
    - {name: creds, mountPath: /secret}
  volumes:
  - {name: work, emptyDir: {}}
  - {name: creds, secret: {secretName: creds}}
YAML
check "pod with an init container completes" until_ok 60 sh -c "[ \"\$(kubectl get pod setup -o jsonpath='{.status.phase}')\" = Succeeded ]"
log=$(cat "$ctr_dir"/pod-logs/default_setup_*/main/0.log 2>&1)
expect "init container ran first (its file is there)" 'from-init' echo "$log"
expect "env from a ConfigMap reaches the container" 'G=hello-from-configmap' echo "$log"
expect "a Secret volume's file has the secret's value" 'hunter2' echo "$log"
expect "service environment variables are set" 'host=10\.0\.0\.1' echo "$log"
init_end=$(jp setup '{.status.initContainerStatuses[0].state.terminated.finishedAt}')
main_start=$(jp setup '{.status.containerStatuses[0].state.terminated.startedAt}')
check "main container started after the init container finished" test -n "$init_end" -a -n "$main_start" -a \( "$main_start" \> "$init_end" -o "$main_start" = "$init_end" \)

# An updated ConfigMap reaches the mounted file of a running pod.
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata: {name: live-config}
data: {mode: first}
---
apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  nodeName: e2e-node
  containers:
  - name: c
    image: skiff.local/testhost:1.0
    args: ["netexec", "--http-port=8080"]
    volumeMounts: [{name: config, mountPath: /config}]
  volumes: [{name: config, configMap: {name: live-config}}]
YAML
check "configMap volume pod runs" kubectl wait pod/reader --for=condition=Ready --timeout=60s
expect "the mounted file has the ConfigMap's value" '^first$' kubectl exec reader -- /bin/cat /config/mode
kubectl patch configmap live-config --type merge -p '{"data":{"mode":"second"}}' >/dev/null
check "an updated ConfigMap reaches the mounted file" until_ok 40 sh -c "kubectl exec reader -- /bin/cat /config/mode | grep -qx second"

# Static pods from --pod-manifest-path, mirrored into the API.
cat >"$work/manifests/static-web.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: static-web}
spec:
  containers:
  - {name: web, image: skiff.local/testhost:1.0, args: ["netexec", "--http-port=8080"]}
YAML
check "a static pod's mirror pod appears and runs" until_ok 60 sh -c "[ \"\$(kubectl get pod static-web-e2e-node -o jsonpath='{.status.phase}')\" = Running ]"
expect "the mirror pod is marked and owned by the node" 'Node/e2e-node [0-9a-f]+' kubectl get pod static-web-e2e-node -o "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.metadata.annotations.kubernetes\.io/config\.mirror}"
kubectl delete pod static-web-e2e-node --wait=false >/dev/null 2>&1
sleep 1
check "a deleted mirror pod comes back" until_ok 30 kubectl get pod static-web-e2e-node
rm "$work/manifests/static-web.yaml"
check "removing the manifest removes the mirror pod" until_ok 40 sh -c "! kubectl get pod static-web-e2e-node"

# Resources become cgroup limits under the QoS hierarchy; the security
# context, a memory-backed emptyDir and a postStart hook take effect.
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: limited}
spec:
  nodeName: e2e-node
  securityContext: {runAsUser: 1000, runAsGroup: 3000}
  containers:
  - name: c
    image: skiff.local/testhost:1.0
    args: ["netexec", "--http-port=8080"]
    resources: {limits: {cpu: 250m, memory: 64Mi}}
    securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}
    lifecycle: {postStart: {exec: {command: ["/bin/sh", "-c", "echo started > /scratch/hook"]}}}
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes: [{name: scratch, emptyDir: {medium: Memory}}]
YAML
check "limited pod runs" kubectl wait pod/limited --for=condition=Ready --timeout=60s
uid=$(jp limited '{.metadata.uid}')
expect "limits make it Guaranteed" '^Guaranteed$' jp limited '{.status.qosClass}'
cid=$(jp limited '{.status.containerStatuses[0].containerID}'); cid=${cid#containerd://}
expect "the memory limit is the container's cgroup limit" '^67108864$' cat "/sys/fs/cgroup/memory/kubepods/pod$uid/$cid/memory.limit_in_bytes"
expect "the CPU limit is its CFS quota" '^25000$' cat "/sys/fs/cgroup/cpu/kubepods/pod$uid/$cid/cpu.cfs_quota_us"
expect "runAsUser and runAsGroup apply" '^1000 3000$' kubectl exec limited -- /bin/sh -c 'echo $(id -u) $(id -g)'
expect "the root filesystem is read-only" 'Read-only file system' kubectl exec limited -- /bin/sh -c 'touch /x 2>&1; true'
expect "a Memory emptyDir is a tmpfs" 'tmpfs /scratch' kubectl exec limited -- /bin/sh -c 'grep " /scratch " /proc/mounts'
expect "the postStart hook ran" '^started$' kubectl exec limited -- /bin/cat /scratch/hook
kubectl delete pod limited --wait=false >/dev/null

# Images pulled for real through CRI PullImage, from a local registry
# (Debian's docker-registry) the test image is pushed to with skopeo.
rport=$((port + 3))
mkdir -p "$work/registry"
cat >"$work/registry.yml" <<YAML
version: 0.1
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$rport}
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
until_ok 20 curl -sf "http://127.0.0.1:$rport/v2/" >/dev/null
check "the test image is pushed to the local registry" skopeo copy --quiet --dest-tls-verify=false \
    "oci-archive:$root/.skiff/images/testhost.tar" "docker://127.0.0.1:$rport/skiff/testhost:1.0"
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: pulled}
spec:
  nodeName: e2e-node
  containers:
  - {name: c, image: "127.0.0.1:$rport/skiff/testhost:1.0", imagePullPolicy: Always, args: ["netexec", "--http-port=8080"]}
---
apiVersion: v1
kind: Pod
metadata: {name: unpullable}
spec:
  nodeName: e2e-node
  containers:
  - {name: c, image: "127.0.0.1:$rport/skiff/missing:1.0"}
YAML
check "a pod whose image is pulled from the registry runs" kubectl wait pod/pulled --for=condition=Ready --timeout=60s
expect "the pull is recorded as an event" 'Successfully pulled image' sh -c "kubectl get events --field-selector involvedObject.name=pulled,reason=Pulled -o jsonpath='{.items[*].message}'"
check "an image missing from the registry shows ErrImagePull or ImagePullBackOff" until_ok 30 sh -c "kubectl get pod unpullable -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}' | grep -Eq 'ErrImagePull|ImagePullBackOff'"
kubectl delete pod pulled unpullable --wait=false >/dev/null

# 4. A crashing container backs off with growing delays.
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  nodeName: e2e-node
  containers:
  - {name: c, image: skiff.local/testhost:1.0, args: ["exit", "3"]}
YAML
check "crashing container reaches CrashLoopBackOff" until_ok 40 sh -c "kubectl get pod crasher -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}' | grep -q CrashLoopBackOff"
expect "last state records exit code 3" '^3$' jp crasher '{.status.containerStatuses[0].lastState.terminated.exitCode}'
# Restart times: 0 s, then 10 s, then 20 s apart (upstream's backoff).
started=()
deadline=$((SECONDS + 60))
while [ ${#started[@]} -lt 3 ] && [ $SECONDS -lt $deadline ]; do
    n=$(jp crasher '{.status.containerStatuses[0].restartCount}')
    if [ -n "$n" ] && { [ ${#started[@]} -eq 0 ] || [ "$n" != "${last_n:-}" ]; }; then
        started+=("$SECONDS"); last_n=$n
    fi
    sleep 0.5
done
if [ ${#started[@]} -ge 3 ]; then
    gap1=$((started[1] - started[0])); gap2=$((started[2] - started[1]))
    if [ $gap2 -gt $gap1 ] && [ $gap1 -ge 8 ]; then ok "restart delays grow ($gap1 s, then $gap2 s)"; else fail "restart delays grow" "gaps $gap1 s, $gap2 s"; fi
else
    fail "restart delays grow" "saw only ${#started[@]} restarts in 60 s"
fi

# 5. A failing liveness probe restarts the container.
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  nodeName: e2e-node
  containers:
  - name: c
    image: skiff.local/testhost:1.0
    args: ["netexec", "--http-port=8080"]
    livenessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1, failureThreshold: 2}
YAML
check "liveness pod runs" kubectl wait pod/live --for=condition=Ready --timeout=60s
curl -s --max-time 5 "http://$(jp live '{.status.podIP}'):8080/fail-healthz" >/dev/null
check "failing liveness probe restarts the container" until_ok 30 sh -c "[ \"\$(kubectl get pod live -o jsonpath='{.status.containerStatuses[0].restartCount}')\" -ge 1 ]"
expect "Killing event names the liveness probe" 'failed liveness probe' sh -c "kubectl get events --field-selector involvedObject.name=live,reason=Killing -o jsonpath='{.items[*].message}'"

# 6. Killing and restarting the kubelet loses nothing and duplicates nothing.
web_uid=$(jp web '{.metadata.uid}')
web_containers() { pod_containers "$web_uid" | sort; }
before=$(web_containers)
restarts=$(jp web '{.status.containerStatuses[0].restartCount}')
kill -9 "$kubelet_pid"; wait "$kubelet_pid" 2>/dev/null
start_kubelet
sleep 5
check "after a kubelet restart the pod is still Ready" kubectl wait pod/web --for=condition=Ready --timeout=30s
after=$(web_containers)
if [ -n "$before" ] && [ "$before" = "$after" ]; then ok "the pod's containers are the same ones, none added or lost"; else fail "the pod's containers survive a kubelet restart" "before: $before
after: $after"; fi
expect "restart count unchanged" "^${restarts:-missing}\$" jp web '{.status.containerStatuses[0].restartCount}'

# 7. Deletion: graceful within the grace period, and everything is removed.
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  nodeName: e2e-node
  terminationGracePeriodSeconds: 3
  automountServiceAccountToken: false
  containers:
  - {name: c, image: skiff.local/testhost:1.0, args: ["sleep", "infinity", "--ignore-sigterm"]}
YAML
check "stubborn pod runs" until_ok 60 sh -c "[ \"\$(kubectl get pod stubborn -o jsonpath='{.status.phase}')\" = Running ]"
uid=$(jp stubborn '{.metadata.uid}')
t0=$SECONDS
kubectl delete pod stubborn --timeout=30s >/dev/null 2>&1
took=$((SECONDS - t0))
if [ $took -ge 2 ] && [ $took -le 10 ]; then ok "a container ignoring SIGTERM is killed after its 3 s grace period (took $took s)"; else fail "grace period honoured" "deletion took $took s"; fi
sleep 1
if left=$(pod_containers "$uid" 2>&1) && [ -z "$left" ]; then ok "its containers and sandbox are gone"; else fail "its containers and sandbox are gone" "$left"; fi
check "its pod cgroup is gone" sh -c "! ls -d /sys/fs/cgroup/*/kubepods/*/pod$uid /sys/fs/cgroup/*/kubepods/pod$uid 2>/dev/null | grep -q ."
check "its volumes directory is gone" test ! -e "$work/kubelet/pods/$uid"

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
