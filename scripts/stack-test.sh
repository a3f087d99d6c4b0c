#!/usr/bin/env bash
# `make stack-test` (run by .ci/run): builds and runs the Docker stack for real, with podman and
# podman-compose, through scripts/stack.sh as `make stack-up` does (so with the local stand-ins of
# docker-compose.local-images.yml where no registry can be reached), and checks from the host what
# a user of the stack relies on:
#
#   1. the image: built from the Dockerfile, runs as a non-root user, its HEALTHCHECK passes;
#   2. batches POSTed to app-v1 (:8082) and app-v2 (:8083) are stored, each record exactly once, in
#      ./data/v1/logs and ./data/v2/logs, in files owned by the user the apps run as;
#   3. Prometheus scrapes both apps (targets up, logs_ingested_total counts what was posted) and
#      has loaded the alerting rules;
#   4. `podman stop` (SIGTERM) while batches are being posted: each app exits 0 within the grace
#      period, and every record answered 202 is stored exactly once (v2: once it runs again);
#   5. `make stack-down`, then `make stack-up`: the containers go, the data and the Kafka volume
#      stay, and the apps serve the same data (analytics included) and store new batches (v2 too,
#      although the stand-in broker lost its topic: the consumer must notice);
#   6. `make scale-up` (the compose profile "scale"): three v2 instances, app-s3-1..3, in one
#      consumer group with one bucket of the stack's Garage; batches POSTed to all three are in the
#      bucket exactly once (listed and read back over the S3 API), and each instance's
#      /analytics/hours counts all of them; `make scale-down` removes just those containers;
#   7. `make stack-clean`: the containers, ./data/v1, ./data/v2 and the volumes are gone.
#
# Every step has a deadline; on exit everything the test created (containers, pod, network,
# volume, data) is removed; the images stay for the next run. It runs as its own compose project
# and refuses to start when ./data/v1 or ./data/v2 exist or the ports are taken, rather than
# delete or disturb a stack of yours.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/podman-host.sh
source scripts/podman-host.sh

export COMPOSE_PROJECT_NAME=log-pipeline-stack-test STACK_ENGINE=podman
PROJECT=$COMPOSE_PROJECT_NAME
PORTS=(8082 8083 9090 8091 8092 8093 3900)
V1=http://127.0.0.1:8082
V2=http://127.0.0.1:8083
S3_APPS=(http://127.0.0.1:8091 http://127.0.0.1:8092 http://127.0.0.1:8093)
S3=http://127.0.0.1:3900
# The example key docker-compose.yml gives Garage and the app-s3 instances.
S3_KEY=$(awk '/GARAGE_DEFAULT_ACCESS_KEY:/ { print $3 }' docker-compose.yml)
S3_SECRET=$(awk '/GARAGE_DEFAULT_SECRET_KEY:/ { print $3 }' docker-compose.yml)
PROMETHEUS=http://127.0.0.1:9090
# The user the app containers run as (scripts/stack.sh): the image's `app` when run by root.
if [[ $(id -u) -eq 0 ]]; then APP_OWNER=10001:10001; else APP_OWNER=$(id -u):$(id -g); fi
# One timestamp for every record: one hour file per app.
STAMP=$(date -u +%Y-%m-%dT%H:%M:%SZ)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stack-test.XXXXXX")
PASSED=0
POSTERS=()
# Set once preflight found no stack and no data of anyone else's: from then on, the test owns them.
OWNS_STACK=0
STARTED=$SECONDS

say() { echo "stack-test: $*" >&2; }
pass() { PASSED=$((PASSED + 1)); echo "ok $PASSED - $*"; }
fail() { echo "not ok - $*"; exit 1; }

# ---- the stack's containers ----------------------------------------------------------------------

# The container of compose service $1 (running or not).
container_of() {
    timeout 30 podman ps -a --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n 1
}

project_containers() {
    timeout 30 podman ps -a --filter "label=com.docker.compose.project=$PROJECT" --format '{{.Names}}'
}

# scripts/stack.sh ACTION, as `make stack-ACTION` runs it, with a deadline (STACK_UP_TIMEOUT for up:
# a cold build takes ~10 minutes on 2 cores).
stack() {
    local deadline=300
    [[ $1 == up ]] && deadline=${STACK_UP_TIMEOUT:-2400}
    timeout "$deadline" bash scripts/stack.sh "$1" || fail "scripts/stack.sh $1 (exit $?)"
}

# Polls command "$@" every second until it succeeds or $1 seconds pass.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}

answers_200() { [[ $(curl -s -o /dev/null -m 5 -w '%{http_code}' "$1") == 200 ]]; }

wait_ready() {
    wait_until 180 answers_200 "$V1/ready" || fail "app-v1 not ready within 180 s"
    wait_until 180 answers_200 "$V2/ready" || fail "app-v2 not ready within 180 s"
}

# ---- posting batches and reading the files back --------------------------------------------------

# Posts batch $2 (records /stack-test/$2/1..$3) to the app at $1; on 202, appends "$2 $3" to $4.
post_batch() {
    local url=$1 id=$2 count=$3 acked=$4 body status i
    body="["
    for ((i = 1; i <= count; i++)); do
        body+="{\"timestamp\":\"$STAMP\",\"path\":\"/stack-test/$id/$i\",\"userAgent\":\"stack-test\"},"
    done
    body="${body%,}]"
    status=$(curl -s -o /dev/null -m 20 -w '%{http_code}' -X POST "$url/logs" \
        -H 'Content-Type: application/json' --data-binary "$body") || true
    if [[ $status == 202 ]]; then echo "$id $count" >>"$acked"; fi
}

# Like post_batch, with an Idempotency-Key, tried again (same key and body, as docs/api.md tells
# clients) until answered 202, at most 10 times: a batch is acknowledged once however often it
# was sent, and stored once.
post_keyed_batch() {
    local url=$1 id=$2 count=$3 acked=$4 body status i try
    body="["
    for ((i = 1; i <= count; i++)); do
        body+="{\"timestamp\":\"$STAMP\",\"path\":\"/stack-test/$id/$i\",\"userAgent\":\"stack-test\"},"
    done
    body="${body%,}]"
    for ((try = 1; try <= 10; try++)); do
        status=$(curl -s -o /dev/null -m 20 -w '%{http_code}' -X POST "$url/logs" \
            -H 'Content-Type: application/json' -H "Idempotency-Key: stack-test-$id" \
            --data-binary "$body") || true
        if [[ $status == 202 ]]; then echo "$id $count" >>"$acked"; return; fi
        say "batch $id to $url answered $status (try $try); sending it again with its key"
        sleep 1
    done
}

# Posts batches to $1, named $2-1, $2-2, ..., until the file $3 exists.
post_until_told() {
    local url=$1 prefix=$2 stop=$3 acked=$4 n=0
    while [[ ! -e $stop ]]; do
        n=$((n + 1))
        post_batch "$url" "$prefix-$n" 20 "$acked"
    done
}

# The paths of every record answered 202 (in $1), sorted.
acked_paths() {
    local id count i
    while read -r id count; do
        for ((i = 1; i <= count; i++)); do echo "/stack-test/$id/$i"; done
    done <"$1" | sort
}

# The paths of every stored test record under logs directory $1, sorted, duplicates kept.
stored_paths() {
    find "$1" -name '*.log.json' -exec cat {} + | { grep -o '"path":"/stack-test/[^"]*"' || true; } \
        | cut -d'"' -f4 | sort
}

# GET $1 (a path and query below the bucket "logs") from the stack's Garage, signed.
s3_get() {
    curl -sf -m 10 --aws-sigv4 "aws:amz:garage:s3" --user "$S3_KEY:$S3_SECRET" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$S3/logs$1"
}

# The paths of every stored test record in the bucket (prefix stack/ of config.v2.s3.docker.yaml),
# sorted, duplicates kept.
bucket_paths() {
    local listing key
    listing=$(s3_get '?list-type=2&prefix=stack%2Flogs%2F') || return 1
    [[ $listing == *'<IsTruncated>false</IsTruncated>'* ]] || { say "more than 1000 objects"; return 1; }
    for key in $(grep -o '<Key>[^<]*</Key>' <<<"$listing" | sed 's/<[^>]*>//g'); do
        s3_get "/$key" || return 1
    done | { grep -o '"path":"/stack-test/[^"]*"' || true; } | cut -d'"' -f4 | sort
}

# True when every acked record ($2) is stored exactly once under $1 (a logs directory, or
# "bucket"); says what is wrong otherwise.
stored_exactly_once() {
    local logs=$1 acked=$2 missing duplicated
    if [[ $logs == bucket ]]; then
        bucket_paths >"$WORK/stored" || { REPORT="the bucket cannot be read"; return 1; }
    else
        stored_paths "$logs" >"$WORK/stored"
    fi
    acked_paths "$acked" >"$WORK/expected"
    missing=$(comm -23 "$WORK/expected" <(uniq "$WORK/stored") | wc -l)
    duplicated=$(uniq -d "$WORK/stored" | wc -l)
    REPORT="$(wc -l <"$WORK/expected") acknowledged, $(wc -l <"$WORK/stored") stored, $missing missing, $duplicated stored twice"
    ((missing == 0 && duplicated == 0))
}

# Waits (v2: the consumer writes after Kafka acknowledged) until the records are all stored.
check_stored() {
    local name=$1 logs=$2 acked=$3
    wait_until "${4:-60}" stored_exactly_once "$logs" "$acked" || fail "$name: $REPORT"
    pass "$name: $REPORT"
}

# Every file and directory under $1 belongs to the apps' user.
check_owner() {
    local others
    others=$(find "$1" ! -user "${APP_OWNER%:*}" -o ! -group "${APP_OWNER#*:}" | head -n 5)
    [[ -z $others ]] || fail "not owned by $APP_OWNER: $others"
    [[ -n $(find "$1" -name '*.log.json') ]] || fail "no hour file under $1"
    pass "every file under $1 belongs to $APP_OWNER, the apps' user"
}

# ---- Prometheus ----------------------------------------------------------------------------------

# Python reads Prometheus's JSON answers: $1 the API path, $2 a Python expression over `data`.
prometheus_says() {
    curl -sf -m 5 "$PROMETHEUS$1" | python3 -c "import json, sys; data = json.load(sys.stdin)['data']; sys.exit(0 if ($2) else 1)"
}

both_targets_up() {
    prometheus_says /api/v1/targets \
        "sorted(t['labels']['pipeline_version'] for t in data['activeTargets'] if t['health'] == 'up') == ['1', '2']"
}

# logs_ingested_total of each app at least what was stored in its files.
ingested_counted() {
    local v1 v2
    v1=$(acked_paths "$WORK/v1.acked" | wc -l)
    v2=$(acked_paths "$WORK/v2.acked" | wc -l)
    prometheus_says '/api/v1/query?query=logs_ingested_total' \
        "{r['metric']['pipeline_version']: float(r['value'][1]) for r in data['result']}.get('1', -1) >= $v1 and {r['metric']['pipeline_version']: float(r['value'][1]) for r in data['result']}.get('2', -1) >= $v2"
}

rules_loaded() {
    prometheus_says /api/v1/rules \
        "[len(g['rules']) for g in data['groups'] if g['name'] == 'log-pipeline'] == [$(grep -c -- '- alert:' prometheus/alerts.yml)]"
}

# The analytics of app $1 count every record stored in $2 (after an aggregation pass).
analytics_match_files() {
    local stored
    stored=$(find "$2" -name '*.log.json' -exec cat {} + | wc -l)
    curl -sf -m 5 "$1/analytics/hours" | python3 -c "import json, sys; sys.exit(0 if sum(h['totalRequests'] for h in json.load(sys.stdin)['hours']) == $stored else 1)"
}

# /analytics/hours of the app at $1 counts $2 records in all.
analytics_total_is() {
    curl -sf -m 5 "$1/analytics/hours" | python3 -c "import json, sys; sys.exit(0 if sum(h['totalRequests'] for h in json.load(sys.stdin)['hours']) == $2 else 1)"
}

# ---- the steps -----------------------------------------------------------------------------------

preflight() {
    local port
    for dir in data/v1 data/v2; do
        [[ ! -e $dir ]] || fail "$dir exists: the test would delete it (make stack-clean first, or move it)"
    done
    for port in "${PORTS[@]}"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then fail "port $port is taken (a stack or service of yours?)"; fi
    done
    [[ -z $(project_containers) ]] || fail "containers of compose project $PROJECT exist: podman rm -f them first"
    command -v podman-compose >/dev/null || fail "podman-compose is not on PATH (see .ci/run)"
}

check_image() {
    local image=localhost/log-pipeline:local user size
    user=$(timeout 30 podman image inspect --format '{{.Config.User}}' "$image")
    [[ -n $user && $user != root && $user != 0 ]] || fail "the image runs as '$user'"
    [[ $(podman inspect --format '{{.Config.User}}' "$(container_of app-v1)") == "$APP_OWNER" ]] \
        || fail "app-v1 does not run as $APP_OWNER"
    timeout 30 podman healthcheck run "$(container_of app-v1)" >/dev/null || fail "HEALTHCHECK of app-v1"
    timeout 30 podman healthcheck run "$(container_of app-v2)" >/dev/null || fail "HEALTHCHECK of app-v2 (PORT=8083)"
    size=$(timeout 30 podman image inspect --format '{{.Size}}' "$image")
    pass "image $image: user $user, HEALTHCHECK healthy in both apps, $((size / 1000000)) MB"
}

post_and_check() {
    local i
    for i in $(seq 1 10); do
        post_batch "$V1" "v1-$i" 50 "$WORK/v1.acked"
        post_batch "$V2" "v2-$i" 50 "$WORK/v2.acked"
    done
    [[ $(wc -l <"$WORK/v1.acked") == 10 && $(wc -l <"$WORK/v2.acked") == 10 ]] \
        || fail "not every batch was answered 202 (v1: $(wc -l <"$WORK/v1.acked"), v2: $(wc -l <"$WORK/v2.acked") of 10)"
    pass "20 batches of 50 records answered 202 by app-v1 and app-v2"
    check_stored "v1 files" data/v1/logs "$WORK/v1.acked"
    check_stored "v2 files" data/v2/logs "$WORK/v2.acked"
    check_owner data/v1/logs
    check_owner data/v2/logs
}

check_prometheus() {
    wait_until 60 both_targets_up || fail "Prometheus: app targets not both up within 60 s"
    pass "Prometheus: targets app-v1 and app-v2 up"
    wait_until 60 ingested_counted || fail "Prometheus: logs_ingested_total below what was stored after 60 s"
    pass "Prometheus: logs_ingested_total of each app counts its stored records"
    wait_until 30 rules_loaded || fail "Prometheus: the log-pipeline alert rules are not loaded"
    pass "Prometheus: the $(grep -c -- '- alert:' prometheus/alerts.yml) alert rules of prometheus/alerts.yml are loaded"
}

# podman stop (SIGTERM, then SIGKILL after 40 s) the app of service $1 at $2 while two clients
# send it batches: it must exit 0 on its own. Then start it again: every record it answered 202 to
# must be stored exactly once (v2: acknowledged means in Kafka, and the restarted consumer stores
# what the stopped one had not).
check_sigterm() {
    local service=$1 url=$2 version=${1#app-} container started code exited
    container=$(container_of "$service")
    rm -f "$WORK/stop"
    post_until_told "$url" "$version-sigterm-a" "$WORK/stop" "$WORK/$version.acked" &
    POSTERS+=($!)
    post_until_told "$url" "$version-sigterm-b" "$WORK/stop" "$WORK/$version.acked" &
    POSTERS+=($!)
    sleep 2
    started=$(date +%s.%N)
    timeout 60 podman stop -t 40 "$container" >/dev/null || fail "podman stop $container"
    touch "$WORK/stop"
    wait "${POSTERS[@]}"
    POSTERS=()
    code=$(podman inspect --format '{{.State.ExitCode}}' "$container")
    [[ $code == 0 ]] || fail "$service exited $code after SIGTERM"
    exited=$(podman inspect --format '{{.State.FinishedAt}}' "$container")
    exited=$(date -d "${exited% UTC}" +%s.%N)
    pass "$service: SIGTERM while posting, exit status 0 after $(awk -v a="$exited" -v b="$started" 'BEGIN { printf "%.1f", a - b }') s"
    timeout 60 podman start "$container" >/dev/null || fail "podman start $container"
    wait_until 180 answers_200 "$url/ready" || fail "$service not ready within 180 s of its start"
    check_stored "$version files after the stop and a start" "data/$version/logs" "$WORK/$version.acked"
}

check_restart() {
    find data/v1/logs data/v2/logs -name '*.log.json' -exec md5sum {} + | sort >"$WORK/before"
    stack down
    [[ -z $(project_containers) ]] || fail "containers left after stack down: $(project_containers | tr '\n' ' ')"
    timeout 30 podman volume exists "${PROJECT}_kafka-data" || fail "stack down removed the Kafka volume"
    find data/v1/logs data/v2/logs -name '*.log.json' -exec md5sum {} + | sort | cmp -s - "$WORK/before" \
        || fail "stack down changed the data files"
    pass "make stack-down: containers removed; ./data and the Kafka volume kept"
    stack up
    wait_ready
    check_stored "v1 files after a restart" data/v1/logs "$WORK/v1.acked" 0
    check_stored "v2 files after a restart" data/v2/logs "$WORK/v2.acked" 0
    wait_until 90 analytics_match_files "$V1" data/v1/logs || fail "v1 analytics do not count the stored records"
    wait_until 90 analytics_match_files "$V2" data/v2/logs || fail "v2 analytics do not count the stored records"
    pass "after the restart, /analytics/hours of each app counts every stored record"
    post_batch "$V1" v1-after-restart 50 "$WORK/v1.acked"
    post_batch "$V2" v2-after-restart 50 "$WORK/v2.acked"
    check_stored "v1 takes new batches after a restart" data/v1/logs "$WORK/v1.acked" 30
    check_stored "v2 takes new batches after a restart" data/v2/logs "$WORK/v2.acked"
}

check_scale() {
    local url i n=0 records written
    stack scale-up
    for url in "${S3_APPS[@]}"; do
        wait_until 180 answers_200 "$url/ready" || fail "$url not ready within 180 s"
    done
    pass "make scale-up: garage and app-s3-1..3 started and ready"
    for i in $(seq 1 5); do
        for url in "${S3_APPS[@]}"; do
            n=$((n + 1))
            post_keyed_batch "$url" "s3-$n" 50 "$WORK/s3.acked"
        done
    done
    [[ $(wc -l <"$WORK/s3.acked") == 15 ]] || fail "not every batch was answered 202 by app-s3-1..3 ($(wc -l <"$WORK/s3.acked") of 15)"
    pass "15 batches of 50 records answered 202, 5 by each of app-s3-1..3"
    check_stored "one bucket, three instances" bucket "$WORK/s3.acked" 90
    records=$(acked_paths "$WORK/s3.acked" | wc -l)
    for url in "${S3_APPS[@]}"; do
        wait_until 60 analytics_total_is "$url" "$records" || fail "$url/analytics/hours does not count the $records records in the bucket"
    done
    written=$(for url in "${S3_APPS[@]}"; do
        curl -sf -m 5 "$url/metrics" | awk '/^object_store_objects_written_total\{kind="records"\}/ { printf "%d ", $2 }'
    done)
    pass "each of app-s3-1..3 answers /analytics/hours with all $records records (records objects written per instance: $written)"
    stack scale-down
    for service in garage app-s3-1 app-s3-2 app-s3-3; do
        [[ -z $(container_of "$service") ]] || fail "make scale-down left $service"
    done
    [[ -n $(container_of app-v1) ]] || fail "make scale-down removed app-v1"
    pass "make scale-down: garage and app-s3-1..3 removed, the rest of the stack kept"
}

check_clean() {
    stack clean
    [[ -z $(project_containers) ]] || fail "containers left after stack clean"
    if timeout 30 podman volume exists "${PROJECT}_kafka-data"; then fail "stack clean left the Kafka volume"; fi
    if timeout 30 podman volume exists "${PROJECT}_garage-data"; then fail "stack clean left the Garage volume"; fi
    [[ ! -e data/v1 && ! -e data/v2 ]] || fail "stack clean left ./data/v1 or ./data/v2"
    pass "make stack-clean: containers, ./data/v1, ./data/v2, the Kafka and Garage volumes removed"
}

# On any exit: stop the posters, show the containers' logs if something failed, remove all the
# test made but the images.
clean_up() {
    local status=$? container
    trap - EXIT
    set +e
    [[ ${#POSTERS[@]} -eq 0 ]] || kill "${POSTERS[@]}" 2>/dev/null
    if ((status != 0 && OWNS_STACK)); then
        for container in $(project_containers); do
            echo "---- podman logs --tail 40 $container" >&2
            timeout 30 podman logs --tail 40 "$container" >&2
        done
        timeout 300 bash scripts/stack.sh clean >/dev/null 2>&1
        for container in $(project_containers); do timeout 60 podman rm -f "$container" >/dev/null; done
        timeout 60 podman pod rm -f "pod_$PROJECT" >/dev/null 2>&1
        timeout 60 podman network rm -f "${PROJECT}_default" >/dev/null 2>&1
        timeout 60 podman volume rm -f "${PROJECT}_kafka-data" "${PROJECT}_garage-data" >/dev/null 2>&1
        rm -rf data/v1 data/v2
    fi
    ((status == 0)) || echo "stack-test: $PASSED passed, 1 failed"
    rm -rf "$WORK"
    rm -f "$PODMAN_HOST_CONF"
    exit "$status"
}

trap clean_up EXIT
use_podman_host_settings
preflight
OWNS_STACK=1
say "building and starting the stack (scripts/stack.sh up)"
stack up
pass "make stack-up: image built, stack started in $((SECONDS - STARTED)) s"
wait_ready
check_image
post_and_check
check_prometheus
check_sigterm app-v1 "$V1"
check_sigterm app-v2 "$V2"
check_restart
check_scale
check_clean
say "done in $((SECONDS - STARTED)) s"
echo "stack-test: $PASSED passed, 0 failed"
