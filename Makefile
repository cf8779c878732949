# Skiff: the two commands a newcomer needs are `make up` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: up down prereqs build test bench lint fmt images

## up: install what is missing, build, and start the API server (the part of
## the cluster that exists so far) with its data under .skiff/.
up: prereqs build
	scripts/up.sh

## down: stop it (`make down PURGE=1` also deletes .skiff/).
down:
	scripts/down.sh $(if $(PURGE),--purge,)

prereqs:
	scripts/install-prereqs.sh

build:
	$(CARGO) build --release --workspace

## test: every crate's unit and integration tests (etcd is started by the
## tests), then real kubectl against the API server on both stores.
test:
	$(CARGO) test --workspace
	e2e/kubectl-api.sh both
	e2e/kubelet.sh

## bench: the store benchmark (embedded, etcd backend, raw etcd-client), then
## the API server benchmark (both stores, beside raw store creates; the
## open-files limit is raised for the 1,000-watcher fan-out), the cost of
## authentication and RBAC, the kubelet's (pod startup on a real
## containerd, memory, hollow nodes), and the scheduler's (upstream's
## scheduler_perf workloads at 5,000 nodes, beside the bind ceiling).
bench: prereqs
	$(CARGO) bench -p skiff-store --bench store
	ulimit -n "$$(ulimit -Hn)" && $(CARGO) bench -p skiff-apiserver --bench api
	$(CARGO) test --release -p skiff-apiserver --test authn --test rbac -- --ignored --nocapture costs_little
	$(CARGO) build --release -p skiff-apiserver -p skiff-kubelet
	scripts/build-images.sh
	$(CARGO) bench -p skiff-kubelet --bench kubelet
	ulimit -n "$$(ulimit -Hn)" && SKIFF_BENCH_NODES=5000 SKIFF_BENCH_PODS=10000 $(CARGO) bench -p skiff-scheduler --bench scheduler

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## images: the test images (skiff.local/pause:3.10, skiff.local/testhost:1.0)
## as OCI archives in .skiff/images/, built from scratch with umoci.
images:
	scripts/build-images.sh
