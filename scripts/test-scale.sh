#!/usr/bin/env bash
# `make test-scale`: the scale suite (tests/scale/) against the release binary: several instances
# in one consumer group writing to one bucket (storage.backend: s3) of a local Garage node, with a
# local tansu broker. Installs Garage and tansu if missing (cargo install, once per machine) and the
# browser driver's packages, then prints the summary table (one row per scenario). Extra arguments
# go to the test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export KAFKA_LOCAL_STATE=${KAFKA_LOCAL_STATE:-$(mktemp -d)}
export GARAGE_LOCAL_STATE=${GARAGE_LOCAL_STATE:-$(mktemp -d)}
summary=$(mktemp)
export LOG_PIPELINE_FAULT_SUMMARY=$summary
# The suite uses the broker (and the bucket) through tests/api/support/external.rs, which allows
# that only with this set.
export LOG_PIPELINE_TEST_EXTERNAL=1
trap 'scripts/kafka-local.sh stop; scripts/garage-local.sh stop; rm -f "$summary"' EXIT
exports=$(scripts/kafka-local.sh start) || { echo "test-scale.sh: the Kafka broker did not start" >&2; exit 1; }
eval "$exports"
exports=$(scripts/garage-local.sh start) || { echo "test-scale.sh: Garage did not start" >&2; exit 1; }
eval "$exports"
# The keyed scenario looks at the dashboard in a real browser (tests/browser, as `make test`).
if [ ! -f tests/browser/node_modules/playwright-core/package.json ]; then
    npm ci --prefix tests/browser --no-audit --no-fund
fi
status=0
# One scenario at a time: the paused-store scenario pauses the store every scenario shares.
cargo test --release --locked --test scale -- --test-threads=1 --nocapture "$@" || status=$?
bash scripts/fault-table.sh "$summary"
exit $status
