#!/usr/bin/env bash
# `make test`: starts a Kafka-protocol broker (tansu) for the v2 tests, runs every test, stops it.
# The Kafka tests read the broker from LOG_PIPELINE_TEST_KAFKA; under CI they fail if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export KAFKA_LOCAL_STATE=${KAFKA_LOCAL_STATE:-$(mktemp -d)}
trap 'scripts/kafka-local.sh stop' EXIT
eval "$(scripts/kafka-local.sh start)"
cargo test --locked --lib --tests "$@"
