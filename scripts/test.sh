#!/usr/bin/env bash
# `make test`: starts a Kafka-protocol broker (tansu) for the v2 tests, runs every test, stops it.
# The Kafka tests read the broker from LOG_PIPELINE_TEST_KAFKA and fail without one; so do the
# tests that need Prometheus, promtool or Go (installed by .ci/run, or `apt-get install -y
# prometheus golang-go`). The dashboard test drives Debian's Chromium with playwright-core
# (tests/browser, installed here with `npm ci`) against the release binary, built here and exported
# as LOG_PIPELINE_TEST_RELEASE_BIN. Extra arguments go to `cargo test` (e.g. a test name filter).
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
cargo test --locked --lib --tests "$@"
