#!/usr/bin/env bash
# Fair share between sites: site B sends at its normal rate, alone and then while site A floods at
# ten times its limit, side by side in one run (`make bench-sites`).
#
# Two sites, each limited to RATE records/s with a burst of 2 x RATE (the sites file of the run):
#   alone   B sends 100-record JSON batches at B_SHARE of its limit (hey -q, fixed rate);
#   flood   the same B, while A sends the same batches at FLOOD x its own limit.
# Each phase runs a fresh server (v1, fsync always) on an empty logs directory, ROUNDS times,
# alternating (alone, flood, alone, flood, ...). After each phase the server is stopped and the
# lines under each site's root (logs/sites/<id>/) are counted: they must equal 100 x the 202
# answers its hey got (nothing refused is stored, nothing acknowledged is lost), B must get no
# refusal, and in the flood phase A must get 429s; otherwise MISMATCH and exit 1.
#
# Report: B's acknowledged records/s and p99 in each phase (medians over the rounds), their ratios
# (targets: B's records/s with the flood >= 90% of alone, its p99 <= 2x alone's), and A's answers.
#
# Usage: bash bench/sites.sh     Knobs (env): DURATION=10s ROUNDS=2 RATE=5000 B_SHARE=0.6 FLOOD=10
#   LOG_PIPELINE_BIN=<path> (measure this build instead of the tree's release binary), KEEP_TMP=1
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-2}"
RATE="${RATE:-5000}"
B_SHARE="${B_SHARE:-0.6}"
FLOOD="${FLOOD:-10}"
KEEP_TMP="${KEEP_TMP:-0}"
RECORDS=100

die() { echo "sites.sh: error: $*" >&2; exit 1; }
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
[[ "$RATE" =~ ^[1-9][0-9]*$ ]] || die "RATE must be a positive integer (got '$RATE')"
command -v hey >/dev/null || die "hey is required (apt-get install hey)"
command -v curl >/dev/null || die "curl is required"

SERVER_PID=""
HEY_PIDS=()
TMP="$(mktemp -d "${TMPDIR:-/tmp}/sites-bench.XXXXXX")"
cleanup() {
  local rc=$?
  for pid in "${HEY_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  stop_server
  if [[ "$KEEP_TMP" == 1 || ( $rc -ne 0 && $rc -ne 130 && $rc -ne 143 ) ]]; then
    echo "sites.sh: temp files kept in $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -n "${LOG_PIPELINE_BIN:-}" ]]; then
  BIN="$LOG_PIPELINE_BIN"
  [[ -x "$BIN" ]] || die "LOG_PIPELINE_BIN=$BIN is not an executable"
else
  BIN=$(bash scripts/release-binary.sh) || die "cargo build --release failed"
fi

PAYLOAD="$TMP/json100.json"
python3 bench/gen_payload.py --format json --records "$RECORDS" --out "$PAYLOAD"

cat >"$TMP/sites.yaml" <<EOF
sites:
  - id: site-a
    name: Site A (flooding)
    ingestKeys: [bench-a-ingest]
    limits: { recordsPerSecond: $RATE, burst: $((2 * RATE)) }
  - id: site-b
    name: Site B
    ingestKeys: [bench-b-ingest]
    limits: { recordsPerSecond: $RATE, burst: $((2 * RATE)) }
EOF

# hey -q is per worker: C workers at Q requests/s each send C x Q x 100 records/s.
B_WORKERS=5
B_QPS=$(python3 -c "print(max(1, round($RATE * $B_SHARE / $RECORDS / $B_WORKERS)))")
A_WORKERS=20
A_QPS=$(python3 -c "print(max(1, round($RATE * $FLOOD / $RECORDS / $A_WORKERS)))")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_server() { # start_server DIR
  local dir=$1 port
  port=$(free_port)
  cat >"$dir/config.yaml" <<EOF
server:
  addr: "127.0.0.1:$port"
storage:
  logsDir: "$dir/logs"
  analyticsDir: "$dir/analytics"
sites:
  file: "$TMP/sites.yaml"
EOF
  "$BIN" --config "$dir/config.yaml" >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && { PORT=$port; return; }
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited: $(tail -5 "$dir/server.log")"
    sleep 0.1
  done
  die "the server was not ready in 10 s"
}

hey_status() { awk -v code="[$2]" '$1 == code && $3 == "responses" { n += $2 } END { print n + 0 }' "$1"; }
hey_total_s() { awk '$1 == "Total:" { print $2; exit }' "$1"; }
hey_p99_ms() { awk '$1 == "99%" && $2 == "in" { printf "%.1f\n", $3 * 1000; exit }' "$1"; }
hey_others() { # every answer that is neither 202 nor 429, and transport errors
  awk '/^Status code distribution:/ { s = 1; next } /^Error distribution:/ { s = 2; next }
       /^[^ \t]/ { s = 0 }
       s == 1 && $1 ~ /^\[[0-9]+\]$/ && $1 != "[202]" && $1 != "[429]" { n += $2 }
       s == 2 && $1 ~ /^\[[0-9]+\]$/ { n += substr($1, 2, length($1) - 2) }
       END { print n + 0 }' "$1"
}
lines_of() { # lines stored under a site's root
  if [[ -d "$1" ]]; then find "$1" -name '*.log.json' -type f -exec cat {} + | wc -l; else echo 0; fi
}

run_hey() { # run_hey OUT KEY WORKERS QPS
  hey -z "$DURATION" -c "$3" -q "$4" -m POST -T application/json \
    -H "Authorization: Bearer $2" -D "$PAYLOAD" "http://127.0.0.1:$PORT/logs" >"$1" 2>&1 &
  HEY_PIDS+=($!)
}

RESULTS="$TMP/results.tsv"
: >"$RESULTS"
phase() { # phase NAME ROUND
  local name=$1 round=$2 dir="$TMP/$1-$2"
  mkdir -p "$dir"
  start_server "$dir"
  echo "== $name, round $round: B at $((B_WORKERS * B_QPS * RECORDS)) records/s$( [[ $name == flood ]] && echo ", A at $((A_WORKERS * A_QPS * RECORDS)) records/s") (limits $RATE/s each)" >&2
  HEY_PIDS=()
  run_hey "$dir/b.txt" bench-b-ingest "$B_WORKERS" "$B_QPS"
  [[ $name == flood ]] && run_hey "$dir/a.txt" bench-a-ingest "$A_WORKERS" "$A_QPS"
  for pid in "${HEY_PIDS[@]}"; do wait "$pid"; done
  HEY_PIDS=()
  stop_server
  local b_ok b_429 b_other b_lines b_secs b_p99 a_ok=0 a_429=0 a_other=0 a_lines
  b_ok=$(hey_status "$dir/b.txt" 202); b_429=$(hey_status "$dir/b.txt" 429)
  b_other=$(hey_others "$dir/b.txt"); b_secs=$(hey_total_s "$dir/b.txt"); b_p99=$(hey_p99_ms "$dir/b.txt")
  b_lines=$(lines_of "$dir/logs/sites/site-b")
  a_lines=$(lines_of "$dir/logs/sites/site-a")
  if [[ $name == flood ]]; then
    a_ok=$(hey_status "$dir/a.txt" 202); a_429=$(hey_status "$dir/a.txt" 429); a_other=$(hey_others "$dir/a.txt")
  fi
  local root_lines
  root_lines=$(find "$dir/logs" -maxdepth 2 -name '*.log.json' -type f | wc -l)
  [[ $b_lines -eq $((b_ok * RECORDS)) ]] || die "MISMATCH: B got $b_ok x 202 ($((b_ok * RECORDS)) records) but $b_lines lines are under its root"
  [[ $a_lines -eq $((a_ok * RECORDS)) ]] || die "MISMATCH: A got $a_ok x 202 ($((a_ok * RECORDS)) records) but $a_lines lines are under its root"
  [[ $b_429 -eq 0 && $b_other -eq 0 ]] || die "MISMATCH: B was refused ($b_429 x 429, $b_other others)"
  [[ $root_lines -eq 0 ]] || die "MISMATCH: $root_lines hour files outside the sites' roots"
  [[ $name == alone || $a_429 -gt 0 ]] || die "MISMATCH: A flooded at ${FLOOD}x its limit and got no 429"
  echo "   ok: B $b_ok x 202 = $b_lines lines; A $a_ok x 202 = $a_lines lines, $a_429 x 429, $a_other others" >&2
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$round" \
    "$(python3 -c "print(round($b_ok * $RECORDS / $b_secs))")" "$b_p99" "$a_ok" "$a_429" "$a_other" "$a_lines" >>"$RESULTS"
}

for round in $(seq "$ROUNDS"); do
  phase alone "$round"
  phase flood "$round"
done

python3 - "$RESULTS" "$RATE" "$FLOOD" "$DURATION" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
rate, flood, duration = sys.argv[2], sys.argv[3], sys.argv[4]
print(f"sites, side by side: limits {rate} records/s per site, A floods at {flood}x, {duration} per phase, cores=2")
print(f"{'phase':<7}{'round':>6}{'B records/s':>13}{'B p99 ms':>10}{'A 202':>8}{'A 429':>8}{'A other':>9}{'A lines':>9}")
for r in rows:
    print(f"{r[0]:<7}{r[1]:>6}{r[2]:>13}{r[3]:>10}{r[4]:>8}{r[5]:>8}{r[6]:>9}{r[7]:>9}")
def med(phase, col):
    return statistics.median(float(r[col]) for r in rows if r[0] == phase)
alone_rate, flood_rate = med("alone", 2), med("flood", 2)
alone_p99, flood_p99 = med("alone", 3), med("flood", 3)
ratio, p99_ratio = flood_rate / alone_rate, flood_p99 / alone_p99
print(f"B's records/s with A flooding / alone: {flood_rate:.0f} / {alone_rate:.0f} = {ratio:.3f} (target >= 0.90: {'met' if ratio >= 0.9 else 'NOT met'})")
print(f"B's p99 with A flooding / alone: {flood_p99:.1f} / {alone_p99:.1f} ms = {p99_ratio:.2f}x (target <= 2x: {'met' if p99_ratio <= 2 else 'NOT met'})")
PY
