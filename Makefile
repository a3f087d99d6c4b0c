# log-pipeline: developer workflow. `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
BIN := target/release/log-pipeline

.DEFAULT_GOAL := help
.PHONY: help build run run-v1 run-v2 test fmt lint bench bench-ingest bench-analytics kafka-local

help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## Build the release binary (target/release/log-pipeline)
	$(CARGO) build --release --locked

run: build ## Run v1 with the built-in defaults (:8082, ./logs, ./analytics)
	$(BIN)

run-v1: build ## Run v1 with config/examples/config.v1.local.yaml (:8082)
	$(BIN) --config config/examples/config.v1.local.yaml

run-v2: build ## Run v2 (Kafka mode) with config/examples/config.v2.local.yaml (:8083; start `make kafka-local` first)
	$(BIN) --config config/examples/config.v2.local.yaml

test: ## Run every test (starts a local tansu broker for the Kafka tests, stops it afterwards)
	bash scripts/test.sh

kafka-local: ## Run a local Kafka-protocol broker (tansu) on 127.0.0.1:19092, installing it if missing
	bash scripts/kafka-local.sh run 19092

fmt: ## Format the code
	$(CARGO) fmt

lint: ## Check formatting and clippy (warnings are errors)
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

bench: bench-ingest bench-analytics ## Every benchmark

bench-ingest: ## Ingest throughput: release build, hey -c 50, fsync always, vs the original's figures
	bash bench/ingest.sh

bench-analytics: ## Analytics: full build of a 7M-line hour file, then a pass after appending 1%
	$(CARGO) bench --locked --bench analytics
