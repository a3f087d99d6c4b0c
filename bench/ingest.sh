#!/usr/bin/env bash
# Ingest benchmark: POST /logs throughput, latency and memory per batch shape, side by side in
# one run with the original Go service and with this machine's HTTP ceiling, with a correctness
# check (every acknowledged record is counted and on disk).
#
# For each shape (json100, json1000, csv100), one after the other on the same payload:
#   ceiling   a do-nothing axum server (bench/ceiling.rs): reads the body, answers 202;
#   original  the original Go service (ORIGINAL_BIN, its defaults: no fsync), if given;
#   ours      log-pipeline (fsync $FSYNC).
# Each is started fresh on 127.0.0.1 with an empty temporary logs dir, warmed up with
# `hey -n 200 -c 10`, then loaded with `hey -z $DURATION -c $CONCURRENCY`. Afterwards:
#   - ours: logs_ingested_total (/metrics) must equal records x 202 responses (warm-up included),
#     and so must the lines in <logs>/*/*.log.json (before and after shutdown);
#   - original: its lines after shutdown must equal records x 202 responses;
# otherwise MISMATCH is printed and the script exits 1. Peak RSS is VmHWM from /proc/PID/status.
# The report gives our records/s as a ratio of the original's (target >= 5x), p99 against the
# original's (target: below), peak RSS (target <= 32 MB) and req/s as a share of the ceiling.
# Without ORIGINAL_BIN, the original's figures recorded below (GO_RECS, GO_P99) are shown instead.
#
# Usage: bash bench/ingest.sh            (from any directory)
# Knobs (env):
#   DURATION=15s       hey -z duration of the measured run
#   CONCURRENCY=50     hey -c
#   SHAPES="json100 json1000 csv100"   subset, space- or comma-separated
#   FSYNC=always       always|interval|never, written to a temp config as storage.fsync
#   EXTRA_ARGS=""      extra server flags (word-split), e.g. "--sites-file sites.yaml"
#   AUTH_KEY=""        send `Authorization: Bearer $AUTH_KEY` (a site's ingest key, with a sites file)
#   KEEP_TMP=1         keep the temp dir (payloads, server logs, hey output, written logs)
#   ORIGINAL_BIN=path  the original's binary (built by ../shared/tools/original/build.sh)
#   LOG_PIPELINE_BIN=path  measure this build of ours instead of the tree's release binary (to
#                      compare two commits in one sitting; the ceiling still comes from the tree)
#   TARGETS="ceiling original ours"   subset, in this order
#   ROUNDS=1           rounds per shape; round r runs the targets in that order rotated r-1 times (with
#                      3 rounds of 3 targets, each target runs once first, once second, once last),
#                      and the report gives each target's median (peak RSS: the highest)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-15s}"
CONCURRENCY="${CONCURRENCY:-50}"
SHAPES="${SHAPES:-json100 json1000 csv100}"
FSYNC="${FSYNC:-always}"
EXTRA_ARGS="${EXTRA_ARGS:-}"
KEEP_TMP="${KEEP_TMP:-0}"
ORIGINAL_BIN="${ORIGINAL_BIN:-}"
TARGETS="${TARGETS:-ceiling original ours}"
ROUNDS="${ROUNDS:-1}"
BASE_PORT=18090

die() { echo "ingest.sh: error: $*" >&2; exit 1; }

case "$FSYNC" in always|interval|never) ;; *) die "FSYNC must be always, interval or never (got '$FSYNC')" ;; esac
[[ "$CONCURRENCY" =~ ^[1-9][0-9]*$ ]] || die "CONCURRENCY must be a positive integer (got '$CONCURRENCY')"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
read -r -a EXTRA <<<"$EXTRA_ARGS"
AUTH=()
[[ -n "${AUTH_KEY:-}" ]] && AUTH=(-H "Authorization: Bearer $AUTH_KEY")
SHAPES="${SHAPES//,/ }"
read -r -a SHAPE_LIST <<<"$SHAPES"
[[ ${#SHAPE_LIST[@]} -gt 0 ]] || die "SHAPES is empty"
for s in "${SHAPE_LIST[@]}"; do
  case "$s" in json100|json1000|csv100) ;; *) die "unknown shape '$s' (json100, json1000, csv100)" ;; esac
done
read -r -a TARGET_LIST <<<"${TARGETS//,/ }"
for t in "${TARGET_LIST[@]}"; do
  case "$t" in ceiling|original|ours) ;; *) die "unknown target '$t' (ceiling, original, ours)" ;; esac
done
if [[ -z "$ORIGINAL_BIN" ]]; then
  TARGET_LIST=($(printf '%s\n' "${TARGET_LIST[@]}" | grep -vx original || true))
elif [[ ! -x "$ORIGINAL_BIN" ]]; then
  die "ORIGINAL_BIN=$ORIGINAL_BIN is not an executable"
fi

# --- processes we start, killed by PID on exit -----------------------------------------------
SERVER_PID=""
HEY_PID=""
TMP=""
cleanup() {
  local rc=$?
  if [[ -n "$HEY_PID" ]] && kill -0 "$HEY_PID" 2>/dev/null; then
    kill "$HEY_PID" 2>/dev/null || true
    wait "$HEY_PID" 2>/dev/null || true
  fi
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ -n "$TMP" && -d "$TMP" ]]; then
    # Kept on failure for debugging (server logs, hey output, stored lines); not when interrupted.
    if [[ "$KEEP_TMP" == 1 || ( $rc -ne 0 && $rc -ne 130 && $rc -ne 143 ) ]]; then
      echo "ingest.sh: temp files kept in $TMP" >&2
    else
      rm -rf "$TMP"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools ------------------------------------------------------------------------------------
if ! command -v hey >/dev/null 2>&1; then
  echo "hey not found; installing it with apt-get" >&2
  SUDO=""
  [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1 && SUDO=sudo
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y hey || die "could not install hey"
fi
command -v curl >/dev/null 2>&1 || die "curl is required"
command -v python3 >/dev/null 2>&1 || die "python3 is required"

echo "== cargo build --release" >&2
if [[ -n "${LOG_PIPELINE_BIN:-}" ]]; then
  BIN="$LOG_PIPELINE_BIN"   # another build of ours (e.g. before a change), measured the same way
  [[ -x "$BIN" ]] || die "LOG_PIPELINE_BIN=$BIN is not an executable"
  TREE_BIN=$(bash scripts/release-binary.sh) || die "cargo build --release failed"
else
  BIN=$(bash scripts/release-binary.sh) || die "cargo build --release failed"
  TREE_BIN="$BIN"
fi
cargo build --release --locked --example ceiling >&2 || die "cargo build --release --example ceiling failed"
CEILING_BIN="$(dirname "$TREE_BIN")/examples/ceiling"
[[ -x "$CEILING_BIN" ]] || die "no ceiling binary at $CEILING_BIN"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/ingest-bench.XXXXXX")"

# --- payloads ---------------------------------------------------------------------------------
shape_records() { case "$1" in json100|csv100) echo 100 ;; json1000) echo 1000 ;; esac; }
shape_format() { case "$1" in json*) echo json ;; csv*) echo csv ;; esac; }
shape_ctype() { case "$1" in json*) echo application/json ;; csv*) echo text/csv ;; esac; }
shape_file() { case "$1" in json*) echo "$TMP/$1.json" ;; csv*) echo "$TMP/$1.csv" ;; esac; }

for s in "${SHAPE_LIST[@]}"; do
  python3 bench/gen_payload.py --format "$(shape_format "$s")" --records "$(shape_records "$s")" \
    --out "$(shape_file "$s")"
done

# --- helpers ----------------------------------------------------------------------------------
port_is_free() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

pick_port() { # pick_port START: first free port from START
  local p=$1
  while ! port_is_free "$p"; do
    p=$((p + 1))
    [[ $p -lt $(($1 + 200)) ]] || die "no free port in $1..$p"
  done
  echo "$p"
}

metric() { # metric PORT NAME: value of an unlabelled metric (integer), 0 if absent
  curl -fsS --max-time 10 "http://127.0.0.1:$1/metrics" \
    | awk -v name="$2" '$1 == name { printf "%.0f\n", $2; found = 1 } END { if (!found) print 0 }'
}

# hey summary parsers (hey prints "  Requests/sec:\t123.4", "  99% in 0.0123 secs",
# "  [202]\t1234 responses" and "  [3]\tPost ...: error" under "Error distribution:").
hey_field() { awk -v key="$2" '$1 == key { print $2; exit }' "$1"; }
hey_pct_ms() {
  awk -v pct="$2%" '$1 == pct && $2 == "in" { printf "%.1f\n", $3 * 1000; found = 1; exit }
                    END { if (!found) print "n/a" }' "$1"
}
hey_status() { # hey_status FILE CODE: number of responses with that status
  awk -v code="[$2]" '$1 == code && $3 == "responses" { n += $2 } END { print n + 0 }' "$1"
}
hey_non202() { # "[503]=12 [err]=3" or empty
  awk '
    /^Status code distribution:/ { sec = "status"; next }
    /^Error distribution:/ { sec = "error"; next }
    /^[^ \t]/ { sec = "" }
    sec == "status" && $1 ~ /^\[[0-9]+\]$/ && $1 != "[202]" { printf "%s=%s ", $1, $2 }
    sec == "error" && $1 ~ /^\[[0-9]+\]$/ { errs += substr($1, 2, length($1) - 2) }
    END { if (errs) printf "[errors]=%d ", errs }' "$1"
}
hey_non202_count() {
  awk '
    /^Status code distribution:/ { sec = "status"; next }
    /^Error distribution:/ { sec = "error"; next }
    /^[^ \t]/ { sec = "" }
    sec == "status" && $1 ~ /^\[[0-9]+\]$/ && $1 != "[202]" { n += $2 }
    sec == "error" && $1 ~ /^\[[0-9]+\]$/ { n += substr($1, 2, length($1) - 2) }
    END { print n + 0 }' "$1"
}

count_lines() { # lines in every hour file under DIR
  find "$1" -name '*.log.json' -type f -exec cat {} + | wc -l
}

check_lines_parse() { # sample the head and tail of every hour file: each line is a full record
  python3 - "$1" <<'PY'
import collections, glob, json, sys
bad = 0
for f in glob.glob(sys.argv[1] + "/*/*.log.json"):
    with open(f, "rb") as fh:
        head = [fh.readline() for _ in range(500)]
        fh.seek(0, 2); size = fh.tell(); fh.seek(max(0, size - 200_000))
        tail = fh.read().split(b"\n")[1:]
    for line in [l for l in head if l] + [l for l in tail if l]:
        try:
            r = json.loads(line)
            assert list(r) == ["timestamp", "path", "userAgent"], list(r)
        except Exception as e:
            bad += 1
            if bad <= 3: print(f"bad line in {f}: {line[:200]!r}: {e}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

wait_healthy() { # wait_healthy PORT LOG
  local port=$1 log=$2
  for _ in $(seq 300); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      local rc=0; wait "$SERVER_PID" || rc=$?; SERVER_PID=""
      echo "ingest.sh: error: server exited (status $rc) before becoming healthy; its stderr:" >&2
      cat "$log" >&2
      exit 1
    fi
    if curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "ingest.sh: error: server not healthy on 127.0.0.1:$port after 30s; its stderr:" >&2
  cat "$log" >&2
  exit 1
}

stop_server() { # SIGTERM, wait up to 40 s (shutdownTimeout defaults to 30 s), report the exit
  local log=$1 rc=0
  kill -TERM "$SERVER_PID"
  for _ in $(seq 400); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "WARNING: server did not exit 40s after SIGTERM; killing it" >&2
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  if [[ $rc -ne 0 ]]; then
    echo "WARNING: server exited with status $rc after SIGTERM; last stderr lines:" >&2
    tail -n 20 "$log" >&2
  fi
}

# --- run --------------------------------------------------------------------------------------
start_server() { # start_server TARGET PORT DIR: starts it in the background as SERVER_PID
  local target=$1 port=$2 dir=$3
  case "$target" in
    ceiling)
      "$CEILING_BIN" "127.0.0.1:$port" >"$dir/server.stdout" 2>"$dir/server.log" & ;;
    original)
      # It reads its settings from a YAML file only (its flags are ignored); defaults otherwise.
      printf 'version: 1\nserver:\n  addr: "127.0.0.1:%s"\nstorage:\n  logsDir: "%s"\n  analyticsDir: "%s"\n' \
        "$port" "$dir/logs" "$dir/analytics" >"$dir/original.yaml"
      "$ORIGINAL_BIN" -config "$dir/original.yaml" >"$dir/server.stdout" 2>"$dir/server.log" & ;;
    ours)
      printf 'storage:\n  fsync: %s\n' "$FSYNC" >"$dir/config.yaml"
      # Unset the env overrides so the flags and the temp config alone decide (e.g. no stray auth).
      env -u LOG_PIPELINE_CONFIG -u PIPELINE_VERSION -u HTTP_ADDR -u LOGS_DIR -u ANALYTICS_DIR \
          -u AGGREGATION_INTERVAL -u KAFKA_BROKERS -u LOG_PIPELINE_TOKENS \
          "$BIN" --config "$dir/config.yaml" --addr "127.0.0.1:$port" \
          --logs-dir "$dir/logs" --analytics-dir "$dir/analytics" ${EXTRA[@]+"${EXTRA[@]}"} \
          >"$dir/server.stdout" 2>"$dir/server.log" & ;;
  esac
  SERVER_PID=$!
}

runs() { # ROUND/TARGET for every run of a shape: round r runs TARGET_LIST rotated r-1 times
  local n=${#TARGET_LIST[@]} round slot
  for ((round = 1; round <= ROUNDS; round++)); do
    for ((slot = 0; slot < n; slot++)); do echo "$round/${TARGET_LIST[$(( (slot + round - 1) % n ))]}"; done
  done
}

declare -A R_REQS R_RECS R_P50 R_P99 R_RSS R_NON202 R_COMMITS R_PERGROUP
i=0
for s in "${SHAPE_LIST[@]}"; do
  records=$(shape_records "$s")
  ctype=$(shape_ctype "$s")
  payload=$(shape_file "$s")
  for run in $(runs); do
    round=${run%%/*} t=${run#*/}
    k="$s/$t/$round"
    dir="$TMP/run-$s-$t-$round"
    mkdir -p "$dir/logs" "$dir/analytics"
    port=$(pick_port $((BASE_PORT + i)))
    i=$((i + 1))
    url="http://127.0.0.1:$port/logs"

    echo "== $s, $t (round $round of $ROUNDS): 127.0.0.1:$port, $records records/request ($(wc -c <"$payload") bytes)" >&2
    start_server "$t" "$port" "$dir"
    wait_healthy "$port" "$dir/server.log"

    # Warm-up (its 202s count towards the expected totals).
    hey -n 200 -c 10 -m POST -T "$ctype" ${AUTH[@]+"${AUTH[@]}"} -D "$payload" "$url" >"$dir/hey-warmup.txt" 2>&1 &
    HEY_PID=$!; wait "$HEY_PID"; HEY_PID=""
    warm_ok=$(hey_status "$dir/hey-warmup.txt" 202)
    [[ $t == ours ]] && commits_before=$(metric "$port" store_commits_total)

    echo "   hey -z $DURATION -c $CONCURRENCY ..." >&2
    hey -z "$DURATION" -c "$CONCURRENCY" -m POST -T "$ctype" ${AUTH[@]+"${AUTH[@]}"} -D "$payload" "$url" >"$dir/hey.txt" 2>&1 &
    HEY_PID=$!; wait "$HEY_PID"; HEY_PID=""

    rss_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status")
    if [[ $t == ours ]]; then
      ingested=$(metric "$port" logs_ingested_total)
      commits_after=$(metric "$port" store_commits_total)
      lines_live=$(count_lines "$dir/logs")
    fi

    ok=$(hey_status "$dir/hey.txt" 202)
    non202=$(hey_non202_count "$dir/hey.txt")
    non202_detail=$(hey_non202 "$dir/hey.txt")
    warm_non202=$(hey_non202 "$dir/hey-warmup.txt")
    total_secs=$(hey_field "$dir/hey.txt" "Total:")
    reqs=$(hey_field "$dir/hey.txt" "Requests/sec:")
    expected=$(( records * (warm_ok + ok) ))

    stop_server "$dir/server.log"

    [[ -n "$warm_non202" ]] && echo "   warm-up non-202: $warm_non202" >&2
    [[ -n "$non202_detail" ]] && echo "   non-202 responses: $non202_detail" >&2
    if [[ $ok -eq 0 ]]; then
      echo "MISMATCH: $k: no 202 responses in the measured run; hey output:" >&2
      cat "$dir/hey.txt" >&2
      exit 1
    fi
    if [[ $t != ceiling ]]; then
      lines_after=$(count_lines "$dir/logs")
      # The original has no such counter and never fsyncs: its lines are counted after shutdown.
      seen="lines after shutdown=$lines_after"
      bad=$((lines_after != expected))
      if [[ $t == ours ]]; then
        seen="logs_ingested_total=$ingested, lines before shutdown=$lines_live, $seen"
        bad=$((bad || ingested != expected || lines_live != expected))
      fi
      if ((bad)); then
        echo "MISMATCH: $k: expected $expected records ($records x ($warm_ok warm-up + $ok measured) 202s); $seen" >&2
        exit 1
      fi
      if ! check_lines_parse "$dir/logs"; then
        echo "MISMATCH: $k: stored lines are not well-formed records" >&2
        exit 1
      fi
      echo "   ok: $expected records acknowledged, $lines_after lines on disk" >&2
    fi

    R_REQS[$k]=$(awk -v r="$reqs" 'BEGIN { printf "%.0f", r }')
    R_RECS[$k]=$(awk -v ok="$ok" -v n="$records" -v t="$total_secs" 'BEGIN { printf "%.0f", ok * n / t }')
    R_P50[$k]=$(hey_pct_ms "$dir/hey.txt" 50)
    R_P99[$k]=$(hey_pct_ms "$dir/hey.txt" 99)
    R_RSS[$k]=$(awk -v k="$rss_kb" 'BEGIN { printf "%.1f", k / 1024 }')
    R_NON202[$k]=$non202
    R_COMMITS[$k]=""; R_PERGROUP[$k]=""
    if [[ $t == ours ]]; then
      commits=$((commits_after - commits_before))
      R_COMMITS[$k]=$commits
      R_PERGROUP[$k]=$(awk -v ok="$ok" -v n="$records" -v c="$commits" \
                         'BEGIN { if (c > 0) printf "%.0f", ok * n / c; else print "n/a" }')
    fi
    [[ "$KEEP_TMP" == 1 ]] || rm -rf "$dir/logs" # can be GBs; keep the disk bounded between runs
    # What this server left unwritten (the original never syncs) is written now, not during the
    # next one's measurement.
    sync
  done
done

# --- each target's figures over its rounds ----------------------------------------------------
median() { # FORMAT: the median of the numbers on stdin, printed with FORMAT; nothing if none
  sort -g | awk -v f="$1\n" '{ v[NR] = $1 } END {
    if (NR) printf f, (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
over_rounds() { # ARRAY-NAME KEY: the values of its rounds, one per line
  local -n values=$1
  for ((round = 1; round <= ROUNDS; round++)); do [[ -n "${values[$2/$round]}" ]] && echo "${values[$2/$round]}"; done
  return 0
}
for s in "${SHAPE_LIST[@]}"; do
  for t in "${TARGET_LIST[@]}"; do
    k="$s/$t"
    for name in R_REQS R_RECS R_P50 R_P99 R_COMMITS R_PERGROUP; do
      format="%.0f"
      [[ $name == R_P50 || $name == R_P99 ]] && format="%.1f"
      declare -n agg=$name
      agg[$k]=$(over_rounds "$name" "$k" | median "$format")
      unset -n agg
    done
    R_RSS[$k]=$(over_rounds R_RSS "$k" | sort -g | tail -1)
    R_NON202[$k]=$(over_rounds R_NON202 "$k" | awk '{ n += $1 } END { print n + 0 }')
  done
done

# --- report -----------------------------------------------------------------------------------
echo
echo "ingest, side by side: fsync=$FSYNC (ours; the original never syncs) duration=$DURATION" \
     "rounds=$ROUNDS concurrency=$CONCURRENCY cores=$(nproc)${EXTRA_ARGS:+ extra_args='$EXTRA_ARGS'}"
fmt="%-9s %-9s %-6s %10s %12s %8s %8s %8s %8s %9s %13s\n"
printf "$fmt" shape server round "req/s" "records/s" "p50 ms" "p99 ms" "RSS MB" non-202 commits "records/group"
for s in "${SHAPE_LIST[@]}"; do
  for t in "${TARGET_LIST[@]}"; do
    rounds=$(seq "$ROUNDS")
    ((ROUNDS > 1)) && rounds="$rounds median"
    for round in $rounds; do
      k="$s/$t/$round"
      [[ $round == median ]] && k="$s/$t"
      printf "$fmt" "$s" "$t" "$round" "${R_REQS[$k]}" "${R_RECS[$k]}" "${R_P50[$k]}" "${R_P99[$k]}" \
        "${R_RSS[$k]}" "${R_NON202[$k]}" "${R_COMMITS[$k]}" "${R_PERGROUP[$k]}"
    done
  done
done

has() { printf '%s\n' "${TARGET_LIST[@]}" | grep -qx "$1"; }
has ours || exit 0
declare -A GO_RECS GO_P99
if has original; then
  source_note="measured in this run"
  for s in "${SHAPE_LIST[@]}"; do GO_RECS[$s]=${R_RECS[$s/original]}; GO_P99[$s]=${R_P99[$s/original]}; done
else
  # No ORIGINAL_BIN: the original's figures of an earlier run (2026-11-29, same machine kind).
  source_note="NOT measured in this run: figures recorded in bench/ingest.sh"
  GO_RECS=([json100]=146000 [json1000]=187000 [csv100]=159000)
  GO_P99=([json100]=67 [json1000]=361 [csv100]=46)
fi
echo
((ROUNDS > 1)) && source_note="$source_note; medians of $ROUNDS rounds, peak RSS the highest"
echo "ours vs the original ($source_note): targets records/s >= 5x, p99 below the original's, peak RSS <= 32 MB"
fmt2="%-9s %12s %12s %7s %5s %8s %8s %5s %7s %5s %14s\n"
printf "$fmt2" shape "records/s" "orig rec/s" ratio ">=5x" "p99 ms" "orig p99" "below" "RSS MB" "<=32" "req/s/ceiling"
for s in "${SHAPE_LIST[@]}"; do
  ours=${R_RECS[$s/ours]} go=${GO_RECS[$s]}
  ratio=$(awk -v a="$ours" -v b="$go" 'BEGIN { printf "%.2fx", a / b }')
  rec_ok=$(awk -v a="$ours" -v b="$go" 'BEGIN { print (a >= 5 * b) ? "yes" : "NO" }')
  p99_ok=$(awk -v a="${R_P99[$s/ours]}" -v b="${GO_P99[$s]}" 'BEGIN { print (a + 0 < b + 0) ? "yes" : "NO" }')
  rss_ok=$(awk -v a="${R_RSS[$s/ours]}" 'BEGIN { print (a <= 32) ? "yes" : "NO" }')
  share="n/a"
  has ceiling && share=$(awk -v a="${R_REQS[$s/ours]}" -v b="${R_REQS[$s/ceiling]}" 'BEGIN { printf "%.0f%%", 100 * a / b }')
  printf "$fmt2" "$s" "$ours" "$go" "$ratio" "$rec_ok" "${R_P99[$s/ours]}" "${GO_P99[$s]}" "$p99_ok" \
    "${R_RSS[$s/ours]}" "$rss_ok" "$share"
done
