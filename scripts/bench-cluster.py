#!/usr/bin/env python3
"""The whole single-node cluster's benchmark (issue 9), on release binaries:

- time from `skiffctl up` to a Ready node (and DNS answering), in a fresh
  data directory on ports and CIDRs of its own;
- each component's resident memory (VmRSS) and the total, beside k3s's
  published figures (server about 1.6 GB, agent about 275 MB: k3s is not
  installed here, so they cannot be measured in the same run);
- pod startup of 30 pods created at once: from the create request to the
  pod's Ready condition as a watch with the official Python client sees it,
  p50/p99 beside upstream's SLO (5 s p99);
- API call latency under upstream's SLO load of 20 changes/s (ConfigMap
  updates for 30 s), p50/p99 beside the SLO (1 s p99 for mutating calls),
  with a 20-changes/s-free baseline measured first in the same run.

    scripts/bench-cluster.py [target-dir]     (default: target)

Needs root, the prerequisites of `make up`, `make images`, and the Python
client (scripts/install-prereqs.sh installs it).
"""

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from kubernetes import client, config, watch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.path.join(TARGET, "release")
COMPONENTS = ["containerd", "apiserver", "controller-manager", "scheduler", "kubelet", "proxy", "dns"]


def percentile(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, int(round(p / 100.0 * len(values) + 0.5)) - 1))
    return values[k]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def up(work):
    base = 20000 + random.randrange(10000)
    flags = [
        "--data-dir", work, "--images-dir", os.path.join(ROOT, ".skiff", "images"),
        "--node-name", "skiff-bench", "--secure-port", str(base),
        "--controller-manager-port", str(base + 1), "--scheduler-port", str(base + 2),
        "--kubelet-port", str(base + 3), "--proxy-healthz-port", str(base + 4),
        "--proxy-metrics-port", str(base + 5), "--dns-port", str(base + 9),
        "--dns-health-port", str(base + 6), "--dns-ready-port", str(base + 7),
        "--dns-metrics-port", str(base + 8), "--cni-bridge", f"skbn{random.randrange(1000)}",
        "--cluster-cidr", "10.247.0.0/16", "--service-cluster-ip-range", "10.97.0.0/16",
        "--cluster-dns", "10.97.0.10", "--eviction-hard", "memory.available<100Mi,nodefs.available<1%",
    ]
    start = time.monotonic()
    subprocess.run([os.path.join(BIN, "skiffctl"), "up", *flags], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def pod_startup(api, n=30):
    ns = "bench"
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    # The service account controller makes `default` first: pods wait for it.
    for _ in range(100):
        try:
            api.read_namespaced_service_account("default", ns)
            break
        except client.ApiException:
            time.sleep(0.1)
    created = {}
    ready = {}
    done = threading.Event()

    def follow():
        w = watch.Watch()
        for ev in w.stream(api.list_namespaced_pod, ns, timeout_seconds=180):
            p = ev["object"]
            conds = p.status.conditions or []
            if any(c.type == "Ready" and c.status == "True" for c in conds) and p.metadata.name not in ready:
                ready[p.metadata.name] = time.monotonic()
                if len(ready) == n:
                    done.set()
                    w.stop()

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    time.sleep(0.5)
    for i in range(n):
        name = f"startup-{i}"
        body = client.V1Pod(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PodSpec(containers=[client.V1Container(
                name="c", image="skiff.local/testhost:1.0", args=["sleep", "infinity"])]),
        )
        created[name] = time.monotonic()
        api.create_namespaced_pod(ns, body)
    done.wait(180)
    latencies = [ready[k] - created[k] for k in created if k in ready]
    return latencies, len(latencies) == n


def api_latency(api, rate, seconds):
    ns = "default"
    names = [f"load-{i}" for i in range(20)]
    for name in names:
        try:
            api.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"v": "0"}))
        except client.ApiException:
            pass
    latencies = []
    deadline = time.monotonic() + seconds
    i = 0
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        name = names[i % len(names)]
        start = time.monotonic()
        api.patch_namespaced_config_map(name, ns, {"data": {"v": str(i)}})
        latencies.append(time.monotonic() - start)
        i += 1
        if rate:
            next_at += 1.0 / rate
            time.sleep(max(0.0, next_at - time.monotonic()))
    return latencies


def main():
    if not os.path.exists(os.path.join(BIN, "skiffctl")):
        sys.exit(f"build first: cargo build --release (no {BIN}/skiffctl)")
    work = tempfile.mkdtemp(prefix="skiff-bench.", dir="/tmp")
    try:
        took = up(work)
        print(f"skiffctl up to a Ready node (DNS answering): {took:.1f} s")
        config.load_kube_config(os.path.join(work, "admin.kubeconfig"))
        api = client.CoreV1Api()

        time.sleep(5)
        with open(os.path.join(work, "state.json")) as f:
            state = json.load(f)
        total = 0.0
        print("\nresident memory (VmRSS), idle:")
        for c in COMPONENTS:
            pid = state["components"].get(c, {}).get("pid")
            if pid:
                m = rss_mib(pid)
                total += m
                print(f"  {c:20} {m:7.1f} MiB")
        print(f"  {'total':20} {total:7.1f} MiB   (goal < 200 MB; k3s published: server ~1.6 GB, agent ~275 MB)")

        latencies, complete = pod_startup(api)
        print(f"\npod startup, 30 pods created at once: p50 {statistics.median(latencies):.2f} s, "
              f"p99 {percentile(latencies, 99):.2f} s ({len(latencies)}/30 Ready{'' if complete else ', INCOMPLETE'}); "
              "upstream SLO p99 <= 5 s")

        baseline = api_latency(api, 0, 5)
        loaded = api_latency(api, 20, 30)
        print(f"\nAPI mutating call latency, back to back (anchor): p50 {statistics.median(baseline) * 1000:.1f} ms, "
              f"p99 {percentile(baseline, 99) * 1000:.1f} ms")
        print(f"API mutating call latency at 20 changes/s for 30 s: p50 {statistics.median(loaded) * 1000:.1f} ms, "
              f"p99 {percentile(loaded, 99) * 1000:.1f} ms; upstream SLO p99 <= 1 s")
    finally:
        subprocess.run([os.path.join(BIN, "skiffctl"), "down", "--purge", "--data-dir", work],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
