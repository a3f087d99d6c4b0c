#!/usr/bin/env bash
# Load test a running log-pipeline with hey: N POSTs of one batch file, C at a time.
#
#   scripts/loadtest.sh v1|v2      (make loadtest-v1 / make loadtest-v2)
#
# Knobs (env, or make variables: `make loadtest-v1 N=500 C=10`):
#   N=2000                          requests in total
#   C=50                            concurrent requests
#   BODY=testdata/sample_logs.json  the batch posted by every request
#   CONTENT_TYPE                    default from BODY's extension: .csv text/csv,
#                                   .ndjson/.jsonl application/x-ndjson, else application/json
#   URL                             default http://127.0.0.1:8082/logs (v1), :8083 (v2)
#   TOKEN                           sent as `Authorization: Bearer TOKEN` when auth is on
#
# It checks the service answers /health first, prints hey's summary, and exits 1 unless every
# response was 202 (so it doubles as a smoke test under load).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "loadtest.sh: $*" >&2; exit 1; }

case "${1:-}" in
    v1) port=8082 start_hint="\`make run\` (or \`make run-v1\`, or \`make stack-up\`)" ;;
    v2) port=8083 start_hint="\`make kafka-local\` and \`make run-v2\` (or \`make stack-up\`)" ;;
    *) echo "usage: $0 v1|v2" >&2; exit 2 ;;
esac

# Empty values (make passes every knob, set or not) mean "default".
N=${N:-2000}
C=${C:-50}
BODY=${BODY:-testdata/sample_logs.json}
URL=${URL:-http://127.0.0.1:$port/logs}
TOKEN=${TOKEN:-}

[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer (got '$N')"
[[ $C =~ ^[1-9][0-9]*$ ]] || die "C must be a positive integer (got '$C')"
# hey refuses -n below -c; each of the C workers sends N/C requests.
(( N >= C )) || die "N ($N) must be at least C ($C)"
[[ -f $BODY ]] || die "BODY file not found: $BODY"
if [[ -z ${CONTENT_TYPE:-} ]]; then
    case "$BODY" in
        *.csv) CONTENT_TYPE=text/csv ;;
        *.ndjson | *.jsonl) CONTENT_TYPE=application/x-ndjson ;;
        *) CONTENT_TYPE=application/json ;;
    esac
fi

if ! command -v hey >/dev/null 2>&1; then
    echo "loadtest.sh: hey not found; installing it with apt-get" >&2
    sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    "${sudo[@]}" apt-get update -qq || true
    "${sudo[@]}" apt-get install -y -qq hey >/dev/null || die "could not install hey (apt-get install hey)"
fi
command -v curl >/dev/null 2>&1 || die "curl is required"

# scheme://host:port of URL, for the health probe.
base=$(sed -E 's#^([A-Za-z][A-Za-z0-9+.-]*://[^/]+).*#\1#' <<<"$URL")
if ! curl -fsS --max-time 3 -o /dev/null "$base/health" 2>/dev/null; then
    die "nothing healthy answers $base/health, so there is nothing to load. Start log-pipeline $1 first: $start_hint, or point URL= at it."
fi

headers=()
[[ -n $TOKEN ]] && headers=(-H "Authorization: Bearer $TOKEN")

echo "== hey -n $N -c $C -m POST -T $CONTENT_TYPE -D $BODY $URL" >&2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
hey -n "$N" -c "$C" -m POST -T "$CONTENT_TYPE" "${headers[@]}" -D "$BODY" "$URL" | tee "$out"

# hey lists `[status]  count responses` under "Status code distribution:" and transport errors
# under "Error distribution:".
accepted=$(awk '/^[ \t]*\[202\]/ { n += $2 } END { print n + 0 }' "$out")
other=$(awk '/^Status code distribution:/ { s = 1; next } /^[^ \t]/ { s = 0 } s && /^[ \t]*\[[0-9]+\]/ && !/\[202\]/ { n += $2 } END { print n + 0 }' "$out")
errors=$(awk '/^Error distribution:/ { s = 1; next } /^[^ \t]/ { s = 0 } s && /^[ \t]*\[[0-9]+\]/ { gsub(/[][]/, "", $1); n += $1 } END { print n + 0 }' "$out")
if [[ $other -ne 0 || $errors -ne 0 || $accepted -eq 0 ]]; then
    die "$accepted responses were 202, $other had another status, $errors failed without one (see above; /ready and the server log say why)"
fi
echo "loadtest.sh: all $accepted responses were 202 Accepted" >&2
