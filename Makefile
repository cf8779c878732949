# Skiff: the two commands a newcomer needs are `make up` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: up down prereqs build test bench lint fmt

## up: install what is missing, build. (Later: start a single-node cluster.)
up: prereqs build
	@echo "Skiff is built: binaries are in target/release/."
	@echo "(Starting a cluster arrives with skiffctl up; see the README.)"

## down: stop the cluster (nothing runs yet).
down:
	@echo "nothing to stop: no cluster component runs yet"

prereqs:
	scripts/install-prereqs.sh

build:
	$(CARGO) build --release --workspace

## test: every crate's unit and integration tests (etcd is started by the tests).
test:
	$(CARGO) test --workspace

## bench: the store benchmark (embedded, etcd backend, raw etcd-client).
bench: prereqs
	$(CARGO) bench -p skiff-store --bench store

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
