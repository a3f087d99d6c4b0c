#!/usr/bin/env bash
# `make test-faults`: the fault suite (tests/faults/) against the release binary as a child
# process, with a local tansu broker for the v2 scenarios; then prints the summary table (one row
# per scenario). Needs root: the disk-full scenario mounts a small tmpfs. Extra arguments go to
# the test binary (e.g. a scenario name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "test-faults.sh: the disk-full scenario mounts a tmpfs: run as root" >&2; exit 1; }
export KAFKA_LOCAL_STATE=${KAFKA_LOCAL_STATE:-$(mktemp -d)}
summary=$(mktemp)
export LOG_PIPELINE_FAULT_SUMMARY=$summary
trap 'scripts/kafka-local.sh stop; rm -f "$summary"' EXIT
exports=$(scripts/kafka-local.sh start) || { echo "test-faults.sh: the Kafka broker did not start" >&2; exit 1; }
eval "$exports"
status=0
# One scenario at a time: each loads the machine on its own and measures what it sees.
cargo test --release --locked --test faults -- --test-threads=1 --nocapture "$@" || status=$?
bash scripts/fault-table.sh "$summary"
exit $status
