#!/usr/bin/env bash
# `make test`: every test of `cargo test --lib --tests`, including those plain `cargo test` leaves
# out because they need something external (marked `#[ignore = "needs ...: make test"]`): starts a
# Kafka-protocol broker (tansu) for the v2 tests, runs them all, stops it. Sets
# LOG_PIPELINE_TEST_EXTERNAL=1, which lets tests reach the broker and the programs below
# (tests/api/support/external.rs). The tests that need Prometheus, promtool or Go fail without them
# (installed by .ci/run, or `apt-get install -y prometheus golang-go`). The dashboard test drives
# Debian's Chromium with playwright-core (tests/browser, installed here with `npm ci`) against the
# release binary, built here and exported as LOG_PIPELINE_TEST_RELEASE_BIN. Runs as any user (the
# tests that need root are in the fault suite). Extra arguments go to `cargo test` (e.g. a test
# name filter; after a `--`, to the test binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
export KAFKA_LOCAL_STATE=${KAFKA_LOCAL_STATE:-$(mktemp -d)}
trap 'scripts/kafka-local.sh stop' EXIT
# Not `eval "$(...)"`: a failed start would eval an empty string and carry on without a broker.
exports=$(scripts/kafka-local.sh start) || { echo "test.sh: the Kafka broker did not start" >&2; exit 1; }
eval "$exports"
: "${LOG_PIPELINE_TEST_KAFKA:?test.sh: the broker start printed no address}"
if [ ! -f tests/browser/node_modules/playwright-core/package.json ]; then
    npm ci --prefix tests/browser --no-audit --no-fund
fi
LOG_PIPELINE_TEST_RELEASE_BIN=$(bash scripts/release-binary.sh) ||
    { echo "test.sh: the release binary did not build" >&2; exit 1; }
export LOG_PIPELINE_TEST_RELEASE_BIN
export LOG_PIPELINE_TEST_EXTERNAL=1
# --include-ignored goes to the test binaries: after the caller's own `--` if they gave one.
harness=(-- --include-ignored)
for arg in "$@"; do [[ $arg == -- ]] && harness=(--include-ignored); done
cargo test --locked --lib --tests "$@" "${harness[@]}"
