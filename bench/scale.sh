#!/usr/bin/env bash
# v2 with storage.backend: s3 on 1, 2 and 3 instances of one consumer group, one bucket of a local
# Garage node, a local tansu broker: hey POSTs 1000-record JSON batches spread over the instances
# (CONCURRENCY clients in all), and the script prints, per instance count, the acknowledged and the
# durable records/s (from the first POST until logs_ingested_total of all instances reaches every
# acknowledged record, i.e. every record is in an object of the bucket).
#
# Everything (clients, instances, broker, object store) shares this machine's cores, so the curve
# says what one machine does, not how the design scales across machines.
#
# Usage: bash bench/scale.sh     Knobs (env): DURATION=15s CONCURRENCY=48 RECORDS=1000 INSTANCES="1 2 3"
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-15s}"
CONCURRENCY="${CONCURRENCY:-48}"
RECORDS="${RECORDS:-1000}"
INSTANCES="${INSTANCES:-1 2 3}"

TMP="$(mktemp -d)"
export KAFKA_LOCAL_STATE="$TMP/kafka" GARAGE_LOCAL_STATE="$TMP/garage"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  scripts/kafka-local.sh stop 2>/dev/null || true
  scripts/garage-local.sh stop 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

command -v hey >/dev/null || { apt-get update -qq && apt-get install -y -qq hey; }
BIN=$(bash scripts/release-binary.sh)
eval "$(scripts/kafka-local.sh start)"
eval "$(scripts/garage-local.sh start)"
python3 bench/gen_payload.py --format json --records "$RECORDS" --out "$TMP/batch.json" >&2

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
metric() { curl -s "127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { printf "%d\n", $2; f=1 } END { if (!f) print 0 }'; }
lag_series() { curl -s "127.0.0.1:$1/metrics" | grep -c '^kafka_consumer_lag{' || true; }

printf '%-10s %-16s %-22s %-20s %-12s\n' instances "POST req/s" "acknowledged rec/s" "durable rec/s" "objects"
for n in $INSTANCES; do
  topic="scale-$n-$(date +%s)"
  ports=()
  PIDS=()
  for i in $(seq 1 "$n"); do
    port=$(free_port)
    dir="$TMP/$topic-$i"
    mkdir -p "$dir"
    cat >"$dir/config.yaml" <<YAML
version: 2
server: { addr: "127.0.0.1:$port" }
storage:
  logsDir: "$dir/logs"
  analyticsDir: "$dir/analytics"
  backend: s3
  s3: { endpoint: "$LOG_PIPELINE_TEST_S3_ENDPOINT", bucket: "$LOG_PIPELINE_TEST_S3_BUCKET", prefix: "$topic", region: garage }
kafka: { brokers: ["$LOG_PIPELINE_TEST_KAFKA"], topic: "$topic", deadLetterTopic: "$topic.dlq", groupID: "$topic", partitions: 6 }
YAML
    "$BIN" --config "$dir/config.yaml" 2>"$dir/server.log" &
    PIDS+=($!)
    ports+=("$port")
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 300); do
      [[ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$port/ready")" == 200 ]] && break
      sleep 0.1
    done
  done
  # Every partition owned by someone before the clock starts.
  for _ in $(seq 1 600); do
    total=0
    for port in "${ports[@]}"; do total=$((total + $(lag_series "$port"))); done
    ((total >= 6)) && break
    sleep 0.1
  done
  start=$(date +%s.%N)
  per=$((CONCURRENCY / n))
  hey_pids=()
  for port in "${ports[@]}"; do
    hey -z "$DURATION" -c "$per" -m POST -T application/json -D "$TMP/batch.json" \
      "http://127.0.0.1:$port/logs" >"$TMP/hey-$topic-$port.txt" &
    hey_pids+=($!)
  done
  wait "${hey_pids[@]}"
  posted=$(date +%s.%N)
  accepted=0
  reqs=0
  for port in "${ports[@]}"; do
    a=$(awk '$1 == "[202]" { print $2 }' "$TMP/hey-$topic-$port.txt")
    accepted=$((accepted + ${a:-0}))
    reqs=$(echo "$reqs + $(awk '$1 == "Requests/sec:" { print $2 }' "$TMP/hey-$topic-$port.txt")" | bc)
  done
  expected=$((accepted * RECORDS))
  while :; do
    stored=0
    for port in "${ports[@]}"; do stored=$((stored + $(metric "$port" logs_ingested_total))); done
    ((stored >= expected)) && break
    (($(echo "$(date +%s.%N) - $posted > 300" | bc))) && { echo "timeout waiting for the consumers" >&2; exit 1; }
    sleep 0.05
  done
  done_at=$(date +%s.%N)
  objects=0
  for port in "${ports[@]}"; do objects=$((objects + $(metric "$port" 'object_store_objects_written_total{kind="records"}'))); done
  printf '%-10s %-16s %-22s %-20s %-12s\n' "$n" "$reqs" "$(echo "$expected / ($posted - $start)" | bc)" \
    "$(echo "$expected / ($done_at - $start)" | bc)" "$objects"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
  PIDS=()
done
