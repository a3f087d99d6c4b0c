# log-pipeline: developer workflow. `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
# Runs the release binary, built first if needed: cargo finds it wherever the target directory is
# (target/, CARGO_TARGET_DIR, a target-dir in a cargo config), and on Unix it execs the binary, so
# Ctrl-C and signals reach log-pipeline itself.
RUN_RELEASE := $(CARGO) run --release --locked --quiet --bin log-pipeline --

.DEFAULT_GOAL := help
.PHONY: help build run run-v1 run-v2 test test-faults test-scale fmt lint bench bench-ingest bench-analytics bench-v2 bench-scale bench-properties bench-idempotency bench-decode bench-sites kafka-local test-client bench-client
.PHONY: stack-up stack-down stack-clean stack-test scale-up scale-down infra-up infra-down kafka-topic loadtest-v1 loadtest-v2 check-ops

help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-28s %s\n", $$1, $$2}'

build: ## Build the release binary and print where it is (target/release/log-pipeline by default)
	@bash scripts/release-binary.sh

run: ## Run v1 with the built-in defaults (:8082, ./logs, ./analytics)
	$(RUN_RELEASE)

run-v1: ## Run v1 with config/examples/config.v1.local.yaml (:8082)
	$(RUN_RELEASE) --config config/examples/config.v1.local.yaml

run-v2: ## Run v2 (Kafka mode) with config/examples/config.v2.local.yaml (:8083; start `make kafka-local` first)
	$(RUN_RELEASE) --config config/examples/config.v2.local.yaml

test: ## Run every test, the #[ignore]d ones too, as any user (starts a local tansu broker for the Kafka tests, stops it afterwards); plain `cargo test` runs those that need only Rust
	bash scripts/test.sh

test-faults: ## The fault suite against the release binary (kill -9, paused broker, full disk, hostile clients) and the API scenarios that need root; prints a summary table. Needs root
	bash scripts/test-faults.sh

test-scale: ## The scale suite: instances sharing one bucket (Garage): kill -9 rounds, a paused store, keyed retries across instances, log-pipeline ship; prints a summary table
	bash scripts/test-scale.sh

test-client: ## The Node.js client (clients/node): npm ci, its lint (tsc) and its tests (node --test, ~65 s) against the release binary
	bin=$$(bash scripts/release-binary.sh) && cd clients/node && npm ci --no-audit --no-fund && npm run lint && LOG_PIPELINE_BIN=$$bin npm test

kafka-local: ## Run a local Kafka-protocol broker (tansu) on 127.0.0.1:19092, installing it if missing
	bash scripts/kafka-local.sh run 19092

fmt: ## Format the code
	$(CARGO) fmt

lint: ## Check formatting, clippy, the code's documentation (warnings are errors) and the docs' relative links and anchors
	$(CARGO) fmt --check
	bash scripts/check-links.sh --self-test
	bash scripts/check-links.sh
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --test faults --test scale -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --no-deps --document-private-items

doc: ## The code's documentation, private items included (target/doc/log_pipeline/index.html)
	$(CARGO) doc --locked --no-deps --document-private-items

bench: bench-ingest bench-analytics bench-v2 bench-scale bench-properties bench-idempotency bench-decode bench-sites bench-client ## Every benchmark

bench-ingest: ## Ingest throughput side by side: a do-nothing axum ceiling, the original (ORIGINAL_BIN=...) and ours (fsync always), hey -c 50
	bash bench/ingest.sh

bench-analytics: ## Analytics: full build of a 7M-line hour file, then a pass after appending 1%
	$(CARGO) bench --locked --bench analytics

bench-v2: ## v2 end to end: hey -c 50, 1000-record batches, tansu broker; records/s POST to durable file, vs the broker alone (bench/broker.rs)
	bash bench/v2.sh

bench-scale: ## v2 with storage.backend: s3 on 1, 2 and 3 instances (local Garage and tansu): the throughput curve
	bash bench/scale.sh

bench-sites: ## Fair share: site B at its normal rate alone, then while site A floods at 10x its limit (429s); B's records/s and p99 side by side
	bash bench/sites.sh

bench-idempotency: ## Idempotency-Key: ingest with and without keys side by side, replays, key-index memory
	$(CARGO) bench --locked --bench idempotency

bench-decode: ## Decoders alone, in process: ns per record at each ingest shape, with and without fast paths
	$(CARGO) bench --locked --bench decode

bench-client: ## The Node.js client: middleware ns/request, a host's p99 under hey -c 50 with and without it, records/s into the service (BENCH_SECONDS=10, ROUNDS=2)
	bin=$$(bash scripts/release-binary.sh) && cd clients/node && npm ci --no-audit --no-fund && LOG_PIPELINE_BIN=$$bin npm run bench

bench-properties: ## Decoder and line-format properties (tests/properties) with CASES=100000 cases in all
	$(CARGO) bench --locked --bench properties

# ---- Docker stack (docker-compose.yml) with Docker or podman (scripts/stack.sh picks;
# docs/operations/docker-stack.md). STACK_ENGINE=docker|podman, STACK_LOCAL_IMAGES=1|0.

stack-up: ## Build the image and start the stack: kafka, kafka-init, prometheus (:9090), app-v1 (:8082), app-v2 (:8083)
	bash scripts/stack.sh up

stack-down: ## Stop and remove the stack's containers (keeps ./data and the Kafka volume)
	bash scripts/stack.sh down

stack-clean: ## Stop the stack and delete its data (./data/v1, ./data/v2, the Kafka volume)
	bash scripts/stack.sh clean

stack-test: ## Build and run the stack with podman and check it end to end (scripts/stack-test.sh; CI runs it)
	bash scripts/stack-test.sh

scale-up: ## After stack-up: three v2 instances on one bucket (profile scale): garage (S3 :3900), app-s3-1..3 (:8091-8093)
	bash scripts/stack.sh scale-up

scale-down: ## Stop and remove garage and app-s3-1..3 (keeps the garage-data volume)
	bash scripts/stack.sh scale-down

infra-up: ## Start only kafka (localhost:19092), kafka-init and prometheus (:9090)
	bash scripts/stack.sh infra-up

infra-down: ## Stop and remove kafka, kafka-init and prometheus
	bash scripts/stack.sh infra-down

kafka-topic: ## Create topic TOPIC (default logs; PARTITIONS, default 3) in the stack's Kafka if missing
	bash scripts/stack.sh kafka-topic

check-ops: ## Validate docker-compose.yml, prometheus/ (config, alert rules and their tests) and the Dockerfile (offline)
	bash scripts/check-ops-files.sh

# ---- Load tests (hey). Knobs, as make variables or env (make exports command-line variables to the
# recipe, and TOKEN then never appears in the echoed command): N=2000 C=50
# BODY=testdata/sample_logs.json URL= TOKEN= CONTENT_TYPE= (defaults in scripts/loadtest.sh)

loadtest-v1: ## hey: N POSTs of BODY, C at a time, to v1 on :8082 (start it first, e.g. `make run`)
	bash scripts/loadtest.sh v1

loadtest-v2: ## hey: N POSTs of BODY, C at a time, to v2 on :8083 (start it first, e.g. `make run-v2`)
	bash scripts/loadtest.sh v2

# ---- Profiling (docs/operations/profiling.md). Every target reads or writes profiles/ (PROFILE_DIR):
# cpu_<v>.prof and heap_<v>.prof are gzipped pprof, goroutine_<v>.prof is a tokio task dump (text).
# capture-profile-* writes them at Ctrl-C; profile-{cpu,heap,goroutine}-* fetch the same file names
# from a running `make profile-run-*`. PROFILE_SECONDS=30: length of a live CPU profile.
.PHONY: capture-profile-v1 capture-profile-v2 profile-run-v1 profile-run-v2
.PHONY: profile-cpu-v1 profile-cpu-v2 profile-heap-v1 profile-heap-v2 profile-goroutine-v1 profile-goroutine-v2
.PHONY: profile-ui-cpu-v1 profile-ui-cpu-v2 profile-ui-cpu-compare profile-ui-heap-compare profile-ui-goroutine-compare

PROFILE_DIR ?= profiles
PROFILE_SECONDS ?= 30
# Where the pprof web UIs listen; `PPROF_HOST=0.0.0.0` to reach them from another machine.
PPROF_HOST ?= localhost
PROFILE_PORT_v1 := 6060
PROFILE_PORT_v2 := 6061

# $(call fetch-profile,KIND,VERSION,ROUTE): GET /debug/pprof/ROUTE of `make profile-run-VERSION`
# into $(PROFILE_DIR)/KIND_VERSION.prof; on an error answer, print it and keep the old file.
define fetch-profile
@mkdir -p $(PROFILE_DIR)
@part=$(PROFILE_DIR)/.$(1)_$(2).part; \
if curl -sS --fail-with-body -o $$part "http://localhost:$(PROFILE_PORT_$(2))/debug/pprof/$(3)"; then \
  mv $$part $(PROFILE_DIR)/$(1)_$(2).prof && echo "wrote $(PROFILE_DIR)/$(1)_$(2).prof"; \
else status=$$?; cat $$part 2>/dev/null; echo; rm -f $$part; \
  echo "is \`make profile-run-$(2)\` running?"; exit $$status; fi
endef

# $(call pprof-ui,PORT,PROFILE [,-diff_base=BASE]): go tool pprof's web UI on PORT.
define pprof-ui
@command -v go >/dev/null || { echo "go tool pprof needs Go: sudo apt-get install golang-go"; exit 1; }
@for file in $(2) $(patsubst -diff_base=%,%,$(3)); do test -f $$file || { \
  echo "no $$file: run \`make capture-profile-vN\` (whole run) or \`make profile-cpu-vN\` / \`profile-heap-vN\` (live) first"; \
  exit 1; }; done
go tool pprof -http=$(PPROF_HOST):$(1) $(3) $(2)
endef

capture-profile-v1: ## v1 (config.v1.local.yaml, :8082) with PROFILE_CAPTURE=1 until Ctrl-C: profiles/{cpu,heap,goroutine}_v1.prof
	PROFILE_CAPTURE=1 PROFILE_NAME=v1 PROFILE_DIR=$(PROFILE_DIR) $(RUN_RELEASE) --config config/examples/config.v1.local.yaml

capture-profile-v2: ## v2 (config.v2.local.yaml, :8083) with PROFILE_CAPTURE=1 until Ctrl-C: profiles/{cpu,heap,goroutine}_v2.prof
	PROFILE_CAPTURE=1 PROFILE_NAME=v2 PROFILE_DIR=$(PROFILE_DIR) $(RUN_RELEASE) --config config/examples/config.v2.local.yaml

profile-run-v1: ## v1 (:8082) with PROFILE_ENABLED=1: /debug/pprof/ on :6060
	PROFILE_ENABLED=1 PROFILE_ADDR=127.0.0.1:$(PROFILE_PORT_v1) $(RUN_RELEASE) --config config/examples/config.v1.local.yaml

profile-run-v2: ## v2 (:8083) with PROFILE_ENABLED=1: /debug/pprof/ on :6061
	PROFILE_ENABLED=1 PROFILE_ADDR=127.0.0.1:$(PROFILE_PORT_v2) $(RUN_RELEASE) --config config/examples/config.v2.local.yaml

profile-cpu-v1: ## CPU profile of PROFILE_SECONDS (30) from profile-run-v1 into profiles/cpu_v1.prof
	$(call fetch-profile,cpu,v1,profile?seconds=$(PROFILE_SECONDS))

profile-cpu-v2: ## CPU profile of PROFILE_SECONDS (30) from profile-run-v2 into profiles/cpu_v2.prof
	$(call fetch-profile,cpu,v2,profile?seconds=$(PROFILE_SECONDS))

profile-heap-v1: ## Heap profile from profile-run-v1 into profiles/heap_v1.prof
	$(call fetch-profile,heap,v1,heap)

profile-heap-v2: ## Heap profile from profile-run-v2 into profiles/heap_v2.prof
	$(call fetch-profile,heap,v2,heap)

profile-goroutine-v1: ## Task dump from profile-run-v1 into profiles/goroutine_v1.prof
	$(call fetch-profile,goroutine,v1,goroutine)

profile-goroutine-v2: ## Task dump from profile-run-v2 into profiles/goroutine_v2.prof
	$(call fetch-profile,goroutine,v2,goroutine)

profile-ui-cpu-v1: ## go tool pprof web UI on :8085 for profiles/cpu_v1.prof (needs golang-go)
	$(call pprof-ui,8085,$(PROFILE_DIR)/cpu_v1.prof)

profile-ui-cpu-v2: ## go tool pprof web UI on :8086 for profiles/cpu_v2.prof
	$(call pprof-ui,8086,$(PROFILE_DIR)/cpu_v2.prof)

profile-ui-cpu-compare: ## pprof UI on :8087: cpu_v2 against cpu_v1 (-diff_base)
	$(call pprof-ui,8087,$(PROFILE_DIR)/cpu_v2.prof,-diff_base=$(PROFILE_DIR)/cpu_v1.prof)

profile-ui-heap-compare: ## pprof UI on :8088: heap_v2 against heap_v1 (-diff_base)
	$(call pprof-ui,8088,$(PROFILE_DIR)/heap_v2.prof,-diff_base=$(PROFILE_DIR)/heap_v1.prof)

profile-ui-goroutine-compare: ## Task dumps are text, which pprof cannot open (no UI on :8089): diff -u v1 v2
	@echo "goroutine_*.prof are tokio task dumps (text); go tool pprof cannot open them, so no UI on :8089. diff -u:"
	@diff -u $(PROFILE_DIR)/goroutine_v1.prof $(PROFILE_DIR)/goroutine_v2.prof; status=$$?; [ $$status -le 1 ]
