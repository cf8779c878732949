#!/usr/bin/env bash
# `skiffctl up / status / down` end to end, with real kubectl: a single-node
# cluster in a fresh data directory on ports, a bridge and CIDRs of its own
# (so it never meets a cluster the user runs), a Deployment of the test
# image, SIGKILL of every component in turn, `down` leaving nothing behind,
# and `up` again bringing the objects back.
#
#   e2e/cluster.sh
#
# Needs root, containerd, runc, the CNI plugins, umoci and busybox-static
# (scripts/install-prereqs.sh installs them all) and kubectl.
# Prints one line per check and closes with "N passed, M failed, K skipped".
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
for tool in kubectl containerd runc ctr umoci curl iptables-save python3 busybox; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed: run scripts/install-prereqs.sh" >&2; exit 1; }
done
for plugin in bridge host-local portmap; do
    [ -x "/usr/lib/cni/$plugin" ] || { echo "the CNI plugin $plugin is missing (apt-get install containernetworking-plugins)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run as root (containerd, CNI and iptables need it)" >&2; exit 1; }
(cd "$root" && cargo build -q -p skiff-ctl -p skiff-apiserver -p skiff-controllers -p skiff-scheduler \
    -p skiff-kubelet -p skiff-proxy -p skiff-dns) || { echo "building failed" >&2; exit 1; }
bin=${CARGO_TARGET_DIR:-$root/target}/debug
"$root/scripts/build-images.sh" "$root/.skiff/images" >/dev/null || { echo "building the test images failed" >&2; exit 1; }

# Short paths: containerd's socket paths must stay under 108 bytes.
work=$(mktemp -d /tmp/skiff-cl.XXXX)
# Below the ephemeral range (32768-60999): a client socket there could
# hold a port a component is about to listen on.
base=$((20000 + RANDOM % 12000))
bridge=skcl$((RANDOM % 10000))
cluster_cidr=10.248.0.0/16
service_cidr=10.98.0.0/16
dns_ip=10.98.0.10
dns_port=$((base + 9))
node=skiff-e2e-cluster
skiffctl() { "$bin/skiffctl" "$@"; }
up_flags=(--data-dir "$work" --images-dir "$root/.skiff/images" --node-name "$node"
    --secure-port "$base" --controller-manager-port $((base + 1)) --scheduler-port $((base + 2))
    --kubelet-port $((base + 3)) --proxy-healthz-port $((base + 4)) --proxy-metrics-port $((base + 5))
    --dns-port "$dns_port" --dns-health-port $((base + 6)) --dns-ready-port $((base + 7))
    --dns-metrics-port $((base + 8)) --cni-bridge "$bridge" --cluster-cidr "$cluster_cidr"
    --service-cluster-ip-range "$service_cidr" --cluster-dns "$dns_ip"
    --eviction-hard 'memory.available<100Mi,nodefs.available<512Mi' --timeout 180)

# keep_logs: after a failure, the components' logs are worth keeping.
keep_logs() {
    if [ "$failed" -gt 0 ] && [ -d "$work/logs" ]; then
        local keep
        keep=$(mktemp -d /tmp/skiff-cl-logs.XXXX)
        cp -r "$work/logs/." "$keep/" && echo "the components' logs are in $keep"
    fi
}
cleanup() {
    keep_logs
    skiffctl down --purge --data-dir "$work" >/dev/null 2>&1 || {
        echo "skiffctl down failed; $work is kept" >&2
        return
    }
    rm -rf "$work"
}
[ -n "${SKIFF_E2E_KEEP:-}" ] || trap cleanup EXIT

. "$root/e2e/lib.sh"
# pid_of COMPONENT: its pid in the supervisor's state file.
pid_of() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["components"][sys.argv[2]].get("pid") or "")' "$work/state.json" "$1"
}
# restarted COMPONENT OLD_PID: it runs again, under another pid.
restarted() {
    local p
    p=$(pid_of "$1") && [ -n "$p" ] && [ "$p" != "$2" ] && kill -0 "$p"
}
state_of() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["components"][sys.argv[2]]["status"])' "$work/state.json" "$1"
}
# leftovers: what a stopped cluster must not leave (processes, mounts,
# bridge, iptables rules naming its CIDRs); prints them and fails if any.
leftovers() {
    local found=0 p args
    for p in /proc/[0-9]*; do
        args=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
        case "$args" in
        *"$work/"*) echo "process ${p#/proc/}: $args"; found=1 ;;
        esac
    done
    if awk -v d="$work/" 'index($5, d) == 1' /proc/self/mountinfo | grep -q .; then
        echo "mounts:"; awk -v d="$work/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo; found=1
    fi
    if [ -e "/sys/class/net/$bridge" ]; then echo "bridge $bridge"; found=1; fi
    if iptables-save | grep -E -- "${cluster_cidr%.0.0/16}\.|${service_cidr%.0.0/16}\." | grep -q .; then
        echo "iptables:"; iptables-save | grep -E -- "${cluster_cidr%.0.0/16}\.|${service_cidr%.0.0/16}\."; found=1
    fi
    for uid in ${pod_uids:-}; do
        if ls -d /sys/fs/cgroup/*/kubepods/pod"$uid" /sys/fs/cgroup/*/kubepods/*/pod"$uid" 2>/dev/null | grep -q .; then
            echo "cgroup of pod $uid"; found=1
        fi
    done
    return $found
}
# diagnose: what the cluster says when a workload check fails.
diagnose() {
    kubectl get pods -o wide 2>&1 | head -10
    kubectl get events --sort-by=.lastTimestamp 2>&1 | tail -8
    tail -n 5 "$work/logs/scheduler.log" "$work/logs/kubelet.log" 2>&1
}

export KUBECONFIG=$work/admin.kubeconfig

# 1. Up: every component starts, the node is Ready, kubectl works.
out=$(skiffctl up "${up_flags[@]}" 2>&1)
if [ $? -eq 0 ]; then ok "skiffctl up starts the cluster"; else fail "skiffctl up starts the cluster" "$out"; echo "$passed passed, $failed failed"; exit 1; fi
expect "up says how to use the cluster" "export KUBECONFIG=$work/admin.kubeconfig" echo "$out"
check "the kubeconfig is at <data-dir>/admin.kubeconfig" test -s "$work/admin.kubeconfig"
check "node is Ready" kubectl wait "node/$node" --for=condition=Ready --timeout=60s
check "skiffctl status: every component healthy" skiffctl status --data-dir "$work"
expect "status is a table with pids and restarts" 'kubelet +\| [0-9]+ +\| 0 ' skiffctl status --data-dir "$work"
for f in containerd apiserver controller-manager scheduler kubelet; do
    check "logs/$f.log is written" test -s "$work/logs/$f.log"
done
expect "containerd runs on its own socket under the data dir" "$work/containerd/containerd.sock" sh -c "tr '\0' ' ' </proc/$(pid_of containerd)/cmdline; cat $work/containerd/config.toml"
expect "containerd's config handles the oom_score_adj trap" 'restrict_oom_score_adj = true' cat "$work/containerd/config.toml"
sup=$(cat "$work/supervisor.pid")
expect "a second up says it is already up" 'already up' skiffctl up "${up_flags[@]}"
check "and changes nothing (same supervisor, same apiserver)" test "$(cat "$work/supervisor.pid")" = "$sup"
expect "kube-dns Service has the cluster DNS IP" "^$dns_ip 53/UDP 53/TCP\$" kubectl -n kube-system get svc kube-dns -o 'jsonpath={.spec.clusterIP} {.spec.ports[0].port}/{.spec.ports[0].protocol} {.spec.ports[1].port}/{.spec.ports[1].protocol}'
expect "kube-dns endpoints point at the node on the DNS port" "^[0-9.]+ $dns_port\$" kubectl -n kube-system get endpointslice -l kubernetes.io/service-name=kube-dns -o 'jsonpath={.items[0].endpoints[0].addresses[0]} {.items[0].ports[0].port}'

# 2. A Deployment of the test image becomes available; logs and exec work.
kubectl create deployment web --image=skiff.local/testhost:1.0 --replicas=3 --port=8080 -- /testhost netexec --http-port=8080 >/dev/null
check "Deployment web (3 replicas) rolls out" kubectl rollout status deploy/web --timeout=120s || diagnose
pod=$(kubectl get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
expect "kubectl logs reads a replica's output" 'Serving HTTP on .*8080' kubectl logs "$pod"
expect "kubectl exec runs in a replica" "^$pod\$" kubectl exec "$pod" -- /bin/cat /proc/sys/kernel/hostname
ip=$(kubectl get pod "$pod" -o jsonpath='{.status.podIP}')
expect "the pod's IP is in the cluster CIDR" "^${cluster_cidr%.0.0/16}\\." echo "$ip"
expect "the pod IP answers HTTP" "^$pod\$" curl -s --max-time 5 "http://$ip:8080/hostname"
kubectl expose deploy web --port=80 --target-port=8080 >/dev/null
cip=$(kubectl get svc web -o jsonpath='{.spec.clusterIP}')
check "the Service's ClusterIP reaches a replica (skiff-proxy)" until_ok 30 sh -c "curl -s --max-time 2 http://$cip/hostname | grep -q '^web-'"
node_ip=$(kubectl get node "$node" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
check "skiff-dns answers on the node's address" until_ok 30 busybox nslookup -port="$dns_port" "web.default.svc.cluster.local" "$node_ip"
check "a pod resolves a Service through kube-dns" until_ok 30 kubectl exec "$pod" -- nslookup web.default.svc.cluster.local

# 3. The user's journey (issue 9): Services by IP, NodePort and name; a
# rolling update and its undo; logs -f, port-forward, cp; a Job and a
# CronJob; a DaemonSet; a StatefulSet keeping its data; ConfigMaps and
# Secrets; kubectl top; skiffctl as the client.
kubectl create cronjob tick --image=skiff.local/testhost:1.0 --schedule='* * * * *' -- /bin/true >/dev/null
check "requests to the ClusterIP reach all three replicas" until_ok 60 sh -c "for i in \$(seq 40); do curl -s --max-time 2 http://$cip/hostname; echo; done | sort -u | grep -c '^web-' | grep -qx 3"
kubectl expose deploy web --type=NodePort --name=web-np --port=80 --target-port=8080 >/dev/null
np=$(kubectl get svc web-np -o jsonpath='{.spec.ports[0].nodePort}')
check "the NodePort answers on the node's address" until_ok 30 sh -c "curl -s --max-time 2 http://$node_ip:$np/hostname | grep -q '^web-'"
# (busybox-static's wget crashes in these images; its nc resolves through
# the pod's resolv.conf as any client would.)
check "a pod reaches the Service by its DNS name" until_ok 30 sh -c "kubectl exec '$pod' -- sh -c 'printf \"GET /hostname HTTP/1.0\\r\\n\\r\\n\" | nc -w 2 web.default.svc.cluster.local 80' | grep -q '^web-'"
check "kubectl top nodes reads the metrics API" until_ok 60 sh -c "kubectl top node --no-headers | grep -Eq '^$node +[0-9]+m +[0-9]+% +[0-9]+Mi'"
expect "skiffctl get lists the replicas" '^web-.* Running' "$bin/skiffctl" --kubeconfig "$work/admin.kubeconfig" get pods -l app=web

# A rolling update with a readiness probe and a preStop pause: no request
# through the Service fails while it runs; `rollout undo` goes back.
kubectl apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: roll}
spec:
  replicas: 3
  selector: {matchLabels: {app: roll}}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: roll}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: web
        image: skiff.local/testhost:1.0
        args: [netexec, --http-port=8080]
        env: [{name: VERSION, value: "1"}]
        readinessProbe: {httpGet: {path: /hostname, port: 8080}, periodSeconds: 1}
        lifecycle: {preStop: {exec: {command: [/bin/sleep, "3"]}}}
---
apiVersion: v1
kind: Service
metadata: {name: roll}
spec:
  selector: {app: roll}
  ports: [{port: 80, targetPort: 8080}]
YAML
check "Deployment roll rolls out" kubectl rollout status deploy/roll --timeout=120s || diagnose
rip=$(kubectl get svc roll -o jsonpath='{.spec.clusterIP}')
until_ok 30 curl -sf --max-time 2 "http://$rip/hostname" >/dev/null
errors=$work/roll-errors
: >"$errors"
( while [ ! -e "$work/roll-done" ]; do curl -sf --max-time 2 "http://$rip/hostname" >/dev/null || echo x >>"$errors"; sleep 0.1; done ) &
loop=$!
# The new version is the test image under a second tag (no registry here).
ctr --address "$work/containerd/containerd.sock" -n k8s.io images tag --force \
    skiff.local/testhost:1.0 skiff.local/testhost:1.1 >/dev/null
kubectl set image deploy/roll web=skiff.local/testhost:1.1 >/dev/null
check "the rolling update to a new image tag completes" kubectl rollout status deploy/roll --timeout=180s || diagnose
touch "$work/roll-done"; wait $loop
check "no request failed during the rolling update" test ! -s "$errors"
# (The old pods may still be in their preStop pause for a few seconds.)
check "then only replicas of the new tag are left" until_ok 30 \
    sh -c "test \"\$(kubectl get pods -l app=roll -o jsonpath='{.items[*].spec.containers[0].image}')\" = 'skiff.local/testhost:1.1 skiff.local/testhost:1.1 skiff.local/testhost:1.1'"
check "rollout undo returns to the first image" sh -c "kubectl rollout undo deploy/roll >/dev/null && kubectl rollout status deploy/roll --timeout=180s >/dev/null && kubectl get deploy roll -o jsonpath='{.spec.template.spec.containers[0].image}' | grep -qx skiff.local/testhost:1.0"

# logs -f, port-forward, cp.
expect "kubectl logs -f follows a replica" 'Serving HTTP' timeout 5 kubectl logs -f "$pod"
kubectl port-forward "pod/$pod" $((base + 10)):8080 >"$work/pf.log" 2>&1 &
pf=$!
check "kubectl port-forward reaches the pod" until_ok 20 sh -c "curl -s --max-time 2 http://127.0.0.1:$((base + 10))/hostname | grep -qx $pod"
kill $pf 2>/dev/null; wait $pf 2>/dev/null
echo "copied by kubectl cp" >"$work/cp-src"
check "kubectl cp copies a file into a pod" sh -c "kubectl cp '$work/cp-src' '$pod:/tmp/cp-dst' && kubectl exec '$pod' -- cat /tmp/cp-dst | grep -qx 'copied by kubectl cp'"

# A Job and a CronJob.
kubectl apply -f - >/dev/null <<YAML
apiVersion: batch/v1
kind: Job
metadata: {name: five}
spec:
  completions: 5
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: skiff.local/testhost:1.0, command: [/bin/sh, -c, "sleep 1"]}]
YAML
check "a Job with completions 5, parallelism 2 completes" kubectl wait --for=condition=complete job/five --timeout=180s || diagnose
expect "and ran five pods" '^5$' kubectl get job five -o jsonpath='{.status.succeeded}'

# A DaemonSet; a StatefulSet whose claim keeps its data across a pod deletion.
kubectl apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: everywhere}
spec:
  selector: {matchLabels: {app: everywhere}}
  template:
    metadata: {labels: {app: everywhere}}
    spec:
      containers: [{name: c, image: skiff.local/testhost:1.0, args: [sleep, infinity]}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: c
        image: skiff.local/testhost:1.0
        args: [sleep, infinity]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Mi}}
YAML
check "the DaemonSet runs a pod on the node" kubectl rollout status ds/everywhere --timeout=120s || diagnose
check "the StatefulSet's pod runs with its claim bound" kubectl rollout status sts/db --timeout=120s || diagnose
expect "the claim was provisioned by the default StorageClass" '^Bound standard$' kubectl get pvc data-db-0 -o 'jsonpath={.status.phase} {.spec.storageClassName}'
kubectl exec db-0 -- /bin/sh -c 'echo kept > /data/file' >/dev/null
old_uid=$(kubectl get pod db-0 -o jsonpath='{.metadata.uid}')
kubectl delete pod db-0 --wait=false >/dev/null
check "the StatefulSet recreates its pod" until_ok 120 sh -c "[ \"\$(kubectl get pod db-0 -o jsonpath='{.metadata.uid} {.status.phase}' 2>/dev/null)\" != '' ] && kubectl get pod db-0 -o jsonpath='{.metadata.uid} {.status.phase}' | grep -v '$old_uid' | grep -q Running"
check "and the data is still there" until_ok 60 sh -c "kubectl exec db-0 -- cat /data/file | grep -qx kept"

# A ConfigMap and a Secret as env and volume; a ConfigMap update reaches
# the file.
kubectl create configmap settings --from-literal=greeting=hello >/dev/null
kubectl create secret generic creds --from-literal=password=s3cret >/dev/null
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: consumer}
spec:
  containers:
  - name: c
    image: skiff.local/testhost:1.0
    args: [sleep, infinity]
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: settings, key: greeting}}}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
    volumeMounts:
    - {name: settings, mountPath: /etc/settings}
    - {name: creds, mountPath: /etc/creds}
  volumes:
  - {name: settings, configMap: {name: settings}}
  - {name: creds, secret: {secretName: creds}}
YAML
check "the consumer pod runs" kubectl wait --for=condition=Ready pod/consumer --timeout=120s || diagnose
expect "ConfigMap and Secret reach the environment" '^hello s3cret$' kubectl exec consumer -- /bin/sh -c 'echo $GREETING $PASSWORD'
expect "and the volumes" '^hello s3cret$' kubectl exec consumer -- /bin/sh -c 'echo $(cat /etc/settings/greeting) $(cat /etc/creds/password)'
kubectl create configmap settings --from-literal=greeting=updated --dry-run=client -o yaml | kubectl apply -f - >/dev/null 2>&1
check "a ConfigMap update reaches the mounted file" until_ok 120 sh -c "kubectl exec consumer -- cat /etc/settings/greeting | grep -qx updated"
check "the CronJob fired and its Job completed" until_ok 120 sh -c "kubectl get jobs -o jsonpath='{range .items[*]}{.metadata.ownerReferences[0].name} {.status.succeeded}{\"\\n\"}{end}' | grep -q '^tick 1$'"

# 4. SIGKILL of each component in turn: the supervisor restarts it and the
# cluster carries on.
for c in containerd apiserver controller-manager scheduler kubelet proxy dns; do
    old=$(pid_of "$c")
    if [ -z "$old" ]; then skip "SIGKILL of $c" "not running ($(state_of "$c"))"; continue; fi
    kill -9 "$old"
    # 90 s: a component that exited shortly before (the controller manager
    # and scheduler exit when the API server is gone and they lose their
    # lease) restarts after a longer back-off delay.
    check "after SIGKILL of $c it runs again under a new pid" until_ok 90 restarted "$c" "$old"
    check "after SIGKILL of $c every component is healthy again" until_ok 60 skiffctl status --data-dir "$work"
    case $c in
    containerd | kubelet)
        check "after SIGKILL of $c the replicas still run (exec)" until_ok 30 kubectl exec "$pod" -- /bin/true ;;
    apiserver)
        check "after SIGKILL of the apiserver kubectl works" until_ok 30 kubectl get deploy web ;;
    scheduler)
        kubectl scale deploy web --replicas=4 >/dev/null
        check "after SIGKILL of the scheduler a new replica is scheduled and runs" kubectl rollout status deploy/web --timeout=90s || diagnose ;;
    controller-manager)
        kubectl scale deploy web --replicas=3 >/dev/null
        check "after SIGKILL of the controller manager scaling down works" until_ok 90 sh -c "[ \"\$(kubectl get rs -l app=web -o jsonpath='{.items[0].status.replicas}')\" = 3 ]" ;;
    esac
done
expect "status counts the restarts" 'apiserver +\| [0-9]+ +\| 1 ' skiffctl status --data-dir "$work"
check "Deployment web is still available" kubectl rollout status deploy/web --timeout=60s

# 4b. The same kills while one rollout runs: 6 replicas rolled to the new
# tag one pod at a time (each counting only after 10 s ready), every
# component SIGKILLed in turn during it. The rollout completes with 6 pods
# of the new tag, and the new ReplicaSet's SuccessfulCreate events name no
# pod beyond them: nothing lost, nothing created twice.
kubectl apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: steady}
spec:
  replicas: 6
  minReadySeconds: 10
  selector: {matchLabels: {app: steady}}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: steady}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: skiff.local/testhost:1.0
        args: [netexec, --http-port=8080]
        readinessProbe: {httpGet: {path: /hostname, port: 8080}, periodSeconds: 1}
YAML
check "Deployment steady (6 replicas) rolls out" kubectl rollout status deploy/steady --timeout=180s || diagnose
kubectl set image deploy/steady web=skiff.local/testhost:1.1 >/dev/null
killed=()
for c in controller-manager kubelet scheduler apiserver containerd proxy dns; do
    old=$(pid_of "$c")
    [ -n "$old" ] || continue
    kill -9 "$old"
    killed+=("$c")
    until_ok 90 restarted "$c" "$old"
    sleep 2
done
# (--watch=false answers at once; the API server may still be starting.)
until_ok 30 kubectl get deploy steady
expect "every component was killed while the rollout was still under way" \
    '^controller-manager kubelet scheduler apiserver containerd proxy dns: Waiting for' \
    sh -c "echo \"${killed[*]}: \$(kubectl rollout status deploy/steady --watch=false)\""
check "the rollout completes through the kills" kubectl rollout status deploy/steady --timeout=300s || diagnose
six_new=$(echo skiff.local/testhost:1.1{,,,,,})
check "then exactly 6 pods, all of the new tag, are left" until_ok 60 \
    sh -c "test \"\$(kubectl get pods -l app=steady -o jsonpath='{.items[*].spec.containers[0].image}')\" = '$six_new'"
expect "one ReplicaSet per template" '^2$' sh -c "kubectl get rs -l app=steady -o name | wc -l"
created_beyond() {
    kubectl get events -o json | python3 -c '
import json, subprocess, sys
rs = subprocess.run(["kubectl", "get", "rs", "-l", "app=steady", "-o", "json"], capture_output=True, text=True, check=True)
new = [r["metadata"]["name"] for r in json.loads(rs.stdout)["items"] if r["spec"]["replicas"] == 6]
pods = subprocess.run(["kubectl", "get", "pods", "-l", "app=steady", "-o", "jsonpath={.items[*].metadata.name}"], capture_output=True, text=True, check=True).stdout.split()
created = [e["message"].split(": ", 1)[1] for e in json.load(sys.stdin)["items"]
           if e.get("reason") == "SuccessfulCreate" and e.get("involvedObject", {}).get("name") in new]
extra = sorted(set(created) - set(pods))
print("new ReplicaSet", new, "created", len(created), "pods; not among the 6 left:", extra)
sys.exit(1 if len(new) != 1 or extra or len(created) != len(set(created)) else 0)
'
}
check "no pod of the new ReplicaSet was created twice or replaced" created_beyond

pod_uids=$(kubectl get pods -l app=web -o jsonpath='{.items[*].metadata.uid}')
# 5. Down removes everything: processes, containers, mounts, bridge, rules.
out=$(skiffctl down --data-dir "$work" 2>&1)
if [ $? -eq 0 ]; then ok "skiffctl down"; else fail "skiffctl down" "$out"; fi
check "no process (containerd shims included), mount, bridge, pod cgroup or iptables rule of the cluster is left" leftovers
check "the data survives down (without --purge)" test -s "$work/apiserver/admin.kubeconfig"
expect "status says the supervisor is not running" 'not running' skiffctl status --data-dir "$work"

# 6. Up again: the objects come back and run.
out=$(skiffctl up "${up_flags[@]}" 2>&1)
if [ $? -eq 0 ]; then ok "skiffctl up again"; else fail "skiffctl up again" "$out"; fi
check "node is Ready again" kubectl wait "node/$node" --for=condition=Ready --timeout=60s
check "Deployment web is available again" kubectl rollout status deploy/web --timeout=120s
check "kube-dns Service is still there" kubectl -n kube-system get svc kube-dns

# 7. down --purge deletes the data directory.
keep_logs
out=$(skiffctl down --purge --data-dir "$work" 2>&1)
if [ $? -eq 0 ]; then ok "skiffctl down --purge"; else fail "skiffctl down --purge" "$out"; fi
check "the data directory is gone" test ! -e "$work"
check "nothing of the cluster is left" leftovers

echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
