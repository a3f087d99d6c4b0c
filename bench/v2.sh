#!/usr/bin/env bash
# v2 (Kafka mode) end-to-end benchmark: hey -c 50 POSTing 1000-record batches to log-pipeline v2,
# with a tansu broker on the same machine.
#
# Prints: POST req/s and p50/p99 (each 202 = the broker acknowledged all 1000 records), records/s
# acknowledged, records/s from the first POST until every acknowledged record is durably in the hour
# files (logs_ingested_total and the lines on disk both reach it), and the server's peak RSS.
# Then it checks that every acknowledged record is on disk exactly once (line counts).
#
# Then, against the same broker, bench/broker.rs sends the same number of the same records through
# a producer and a consumer set up exactly as ours, with no HTTP and no files, and the script
# prints our durable rate as a share of the broker alone's (target >= 70%).
#
# Usage: bash bench/v2.sh     Knobs (env): DURATION=15s CONCURRENCY=50 RECORDS=1000 KEEP_TMP=1
#   FETCH_MAX_BYTES=<bytes> (kafka.fetchMaxBytes, for ours and the broker alone; default 4 MiB)
#   LOG_PIPELINE_BIN=<path> (measure this build of ours instead of the tree's release binary)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-15s}"
CONCURRENCY="${CONCURRENCY:-50}"
RECORDS="${RECORDS:-1000}"
FETCH_MAX_BYTES="${FETCH_MAX_BYTES:-4194304}"
KEEP_TMP="${KEEP_TMP:-0}"

TMP="$(mktemp -d)"
export KAFKA_LOCAL_STATE="$TMP/kafka"
SERVER_PID=""
cleanup() {
  [[ -n "$SERVER_PID" ]] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  scripts/kafka-local.sh stop 2>/dev/null || true
  [[ "$KEEP_TMP" == 1 ]] && echo "kept $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT

command -v hey >/dev/null || { apt-get update -qq && apt-get install -y -qq hey; }
# LOG_PIPELINE_BIN: another build of ours (e.g. before a change), to compare two in one sitting.
BIN=${LOG_PIPELINE_BIN:-$(bash scripts/release-binary.sh)}
cargo bench --locked --no-run --bench broker >&2

eval "$(scripts/kafka-local.sh start)"
python3 bench/gen_payload.py --format json --records "$RECORDS" --out "$TMP/batch.json" >&2

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$TMP/config.yaml" <<EOF
version: 2
server: { addr: "127.0.0.1:$PORT" }
storage: { logsDir: "$TMP/logs", analyticsDir: "$TMP/analytics", fsync: always }
kafka: { brokers: ["$LOG_PIPELINE_TEST_KAFKA"], topic: bench, deadLetterTopic: bench.dlq, groupID: bench, fetchMaxBytes: $FETCH_MAX_BYTES }
EOF
"$BIN" --config "$TMP/config.yaml" 2>"$TMP/server.log" &
SERVER_PID=$!

metric() { curl -s "127.0.0.1:$PORT/metrics" | awk -v n="$1" '$1 == n { printf "%d\n", $2; f=1 } END { if (!f) print 0 }'; }
for _ in $(seq 1 300); do
  [[ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$PORT/ready")" == 200 ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; exit 1; }
  sleep 0.1
done
# Wait until the consumer has joined the group, so the measurement is not a join delay.
for _ in $(seq 1 300); do
  curl -s "127.0.0.1:$PORT/metrics" | grep -q '^kafka_consumer_lag{' && break
  sleep 0.1
done

start=$(date +%s.%N)
hey -z "$DURATION" -c "$CONCURRENCY" -m POST -T application/json -D "$TMP/batch.json" \
  "http://127.0.0.1:$PORT/logs" >"$TMP/hey.txt"
posted=$(date +%s.%N)
accepted=$(awk '$1 == "[202]" { print $2 }' "$TMP/hey.txt")
accepted=${accepted:-0}
expected=$((accepted * RECORDS))
while (($(metric logs_ingested_total) < expected)); do
  sleep 0.05
  (($(echo "$(date +%s.%N) - $posted > 300" | bc))) && { echo "timeout waiting for the consumers" >&2; exit 1; }
done
stored=$(date +%s.%N)
rss_kb=$(awk '/VmHWM/ { print $2 }' "/proc/$SERVER_PID/status")

kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""
on_disk=$(cat "$TMP"/logs/*/*.log.json | wc -l)
# Every acknowledged record exactly once: each distinct line of the payload appears `accepted` times.
counts=$(cat "$TMP"/logs/*/*.log.json | sort | uniq -c | awk '{ print $1 }' | sort -u | tr '\n' ' ')

reqs=$(awk '$1 == "Requests/sec:" { print $2 }' "$TMP/hey.txt")
p50=$(awk '$1 == "50%" { printf "%.1f", $3 * 1000 }' "$TMP/hey.txt")
p99=$(awk '$1 == "99%" { printf "%.1f", $3 * 1000 }' "$TMP/hey.txt")
non202=$(awk '/^  \[[0-9]+\]/ && $1 != "[202]" { n += $2 } END { print n + 0 }' "$TMP/hey.txt")
produce_rate=$(echo "$expected / ($posted - $start)" | bc)
e2e_rate=$(echo "$expected / ($stored - $start)" | bc)
lag=$(echo "$stored - $posted" | bc)

echo "log-pipeline v2 end to end: hey -z $DURATION -c $CONCURRENCY, $RECORDS-record JSON batches, fsync always, tansu on 127.0.0.1"
printf '%-34s %s\n' "POST req/s" "$reqs" "POST p50 / p99 ms" "$p50 / $p99" "non-202 responses" "$non202" \
  "records acknowledged" "$expected" "acknowledged records/s" "$produce_rate" \
  "durable records/s (POST → file)" "$e2e_rate" "consumer tail after last POST (s)" "$lag" \
  "peak RSS MB" "$((rss_kb / 1024))" "lines on disk" "$on_disk" "copies per distinct line" "$counts"
[[ "$on_disk" == "$expected" && "$counts" == "$accepted " ]] || { echo "MISMATCH: every acknowledged record must be on disk exactly once" >&2; exit 1; }

echo
echo "== the broker alone (bench/broker.rs): $expected records, our client settings, no HTTP, no files" >&2
BROKER="$LOG_PIPELINE_TEST_KAFKA" PAYLOAD="$TMP/batch.json" TOTAL="$expected" FETCH_MAX_BYTES="$FETCH_MAX_BYTES" \
  cargo bench --locked --bench broker 2>"$TMP/broker.log" >"$TMP/broker.txt" \
  || { cat "$TMP/broker.log" "$TMP/broker.txt" >&2; exit 1; }
cat "$TMP/broker.txt"
alone=$(awk '/^broker alone end-to-end records\/s:/ { print $NF }' "$TMP/broker.txt")
share=$(echo "scale=1; 100 * $e2e_rate / $alone" | bc)
echo "ours durable / broker alone end to end: $share% (target >= 70%: $( (($(echo "$share >= 70" | bc))) && echo met || echo NOT met ))"
