#!/usr/bin/env bash
# `make test-faults`: the fault suite (tests/faults/) against the release binary as a child
# process, with a local tansu broker for the v2 scenarios; then prints the summary table (one row
# per scenario). Needs root: the disk-full scenario mounts a small tmpfs, and so do the API's
# root-only scenarios kept here (a failed rollback, with `chattr +a`; read-only directories).
# Extra arguments go to the test binary (e.g. a scenario name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "test-faults.sh: the disk-full, rollback and read-only scenarios mount a tmpfs: run as root" >&2; exit 1; }
export KAFKA_LOCAL_STATE=${KAFKA_LOCAL_STATE:-$(mktemp -d)}
summary=$(mktemp)
export LOG_PIPELINE_FAULT_SUMMARY=$summary
# The suite uses the broker (and the bucket) through tests/api/support/external.rs, which allows
# that only with this set.
export LOG_PIPELINE_TEST_EXTERNAL=1
trap 'scripts/kafka-local.sh stop; rm -f "$summary"' EXIT
exports=$(scripts/kafka-local.sh start) || { echo "test-faults.sh: the Kafka broker did not start" >&2; exit 1; }
eval "$exports"
status=0
# One scenario at a time: each loads the machine on its own and measures what it sees.
cargo test --release --locked --test faults -- --test-threads=1 --nocapture "$@" || status=$?
bash scripts/fault-table.sh "$summary"
exit $status
