# Skiff: the two commands a newcomer needs are `make up` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: up down status prereqs build test bench lint fmt images

# make's builds are one-shot: incremental compilation's caches would only
# help an edit-compile loop, and on this workspace they take 10-25 GB of
# disk, enough to push a build machine's disk under the kubelet's eviction
# threshold. CARGO_INCREMENTAL=1 make ... brings them back.
export CARGO_INCREMENTAL ?= 0

SKIFFCTL = $(or $(CARGO_TARGET_DIR),target)/release/skiffctl

## up: install what is missing (apt), build the release binaries and the
## images, and start a single-node cluster with `skiffctl up` (data,
## certificates and logs under .skiff/; kubeconfig .skiff/admin.kubeconfig).
up: prereqs build images
	$(SKIFFCTL) up

## down: stop it and remove its pods, networks and iptables rules
## (`make down PURGE=1` also deletes .skiff/).
down:
	$(SKIFFCTL) down $(if $(PURGE),--purge,)

## status: each component's health.
status:
	$(SKIFFCTL) status

prereqs:
	scripts/install-prereqs.sh

build:
	$(CARGO) build --release --workspace

## test: every crate's unit and integration tests (etcd is started by the
## tests), then the end-to-end suites: real kubectl against the API server
## on both stores, the kubelet on a real containerd, the proxy on real
## iptables in network namespaces, cluster DNS, and a whole cluster brought
## up by skiffctl and driven by kubectl (on the embedded store, and on a
## 3-member etcd cluster losing a member midway), and a second node joining
## it with skiffctl join from a network namespace.
test:
	$(CARGO) test --workspace
	@df -h . | awk 'NR == 2 { print "disk before the end-to-end suites: " $$4 " free of " $$2 }'
	e2e/kubectl-api.sh both
	e2e/kubelet.sh
	e2e/proxy.sh
	e2e/dns.sh
	e2e/cluster.sh
	e2e/cluster-etcd.sh
	e2e/join.sh

## bench: the store benchmark (embedded, etcd backend, raw etcd-client), then
## the API server benchmark (both stores, beside raw store creates; the
## open-files limit is raised for the 1,000-watcher fan-out), the cost of
## authentication and RBAC, the kubelet's (pod startup on a real
## containerd, memory, hollow nodes), and the scheduler's (upstream's
## scheduler_perf workloads at 5,000 nodes, beside the bind ceiling), the
## proxy's (1,000 Services, 10,000 endpoints: sync times, network programming
## latency), cluster DNS's (queries/s beside the host's resolver), the
## controllers' (beside the API server's write ceiling), and the whole
## cluster's (skiffctl up to Ready, memory, pod startup, API latency at 20
## changes/s).
bench: prereqs
	$(CARGO) bench -p skiff-store --bench store
	ulimit -n "$$(ulimit -Hn)" && $(CARGO) bench -p skiff-apiserver --bench api
	$(CARGO) test --release -p skiff-apiserver --test integration -- --ignored --nocapture costs_little
	$(CARGO) build --release -p skiff-apiserver -p skiff-kubelet
	scripts/build-images.sh
	$(CARGO) bench -p skiff-kubelet --bench kubelet
	ulimit -n "$$(ulimit -Hn)" && SKIFF_BENCH_NODES=5000 SKIFF_BENCH_PODS=10000 $(CARGO) bench -p skiff-scheduler --bench scheduler
	$(CARGO) bench -p skiff-proxy --bench sync
	$(CARGO) bench -p skiff-dns --bench dns_qps
	$(CARGO) bench -p skiff-controllers --bench cluster
	$(CARGO) build --release -p skiff-ctl -p skiff-apiserver -p skiff-controllers -p skiff-scheduler -p skiff-kubelet -p skiff-proxy -p skiff-dns
	scripts/bench-cluster.py

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## images: the test images (skiff.local/pause:3.10, skiff.local/testhost:1.0)
## as OCI archives in .skiff/images/, built from scratch with umoci.
images:
	scripts/build-images.sh
