#!/usr/bin/env bash
# The docker-compose stack (docker-compose.yml), for the Makefile's stack-* / infra-* / kafka-topic
# targets:
#
#   scripts/stack.sh up           build the image, start everything (kafka, kafka-init, prometheus,
#                                 app-v1, app-v2)
#   scripts/stack.sh down         stop and remove the containers; keep ./data and the Kafka volume
#   scripts/stack.sh clean        like down, and delete ./data and the Kafka volume
#   scripts/stack.sh infra-up     start only kafka, kafka-init and prometheus
#   scripts/stack.sh infra-down   stop and remove only those
#   scripts/stack.sh kafka-topic  create TOPIC (default logs) with PARTITIONS (default 3) in the
#                                 compose broker, if missing
#
# Uses `docker compose` (v2) when present, else `docker-compose` (v1). Fails with an explanation
# when no Docker engine is reachable.
set -euo pipefail
cd "$(dirname "$0")/.."

INFRA=(kafka kafka-init prometheus)
DATA_DIRS=(data/v1/logs data/v1/analytics data/v2/logs data/v2/analytics)

die() { echo "stack.sh: $*" >&2; exit 1; }

compose_cmd() {
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        COMPOSE=(docker-compose)
    else
        die "neither \`docker compose\` nor \`docker-compose\` is installed (Debian: apt-get install docker-compose)."
    fi
}

# Without an engine, compose fails with a long Python traceback (v1) or a socket error; say plainly
# what is missing and what works without Docker. $1: that hint (may be empty).
require_engine() {
    local hint=$1 err line
    if ! command -v docker >/dev/null 2>&1; then
        echo "stack.sh: the docker CLI is not installed, so no Docker engine can be reached." >&2
    elif ! err=$(docker info 2>&1 >/dev/null); then
        echo "stack.sh: no Docker engine is reachable: $(tail -n 1 <<<"$err")" >&2
        echo "stack.sh: (is dockerd running, and DOCKER_HOST / the socket right?)" >&2
    else
        return 0
    fi
    if [[ -n $hint ]]; then
        while IFS= read -r line; do echo "stack.sh: $line" >&2; done <<<"$hint"
    fi
    exit 1
}

NO_DOCKER_HINT="Without Docker: \`make run\` runs v1 on :8082; \`make kafka-local\`, then \`make run-v2\`, runs v2 on :8083."

# The app containers write the bind-mounted ./data directories. Created by the daemon they would be
# root-owned and unwritable for a non-root container, so create them here and run the containers as
# their owner: the invoking user, or the image's `app` user (10001) when invoked as root.
prepare_data_dirs() {
    mkdir -p "${DATA_DIRS[@]}"
    if [[ $(id -u) -eq 0 ]]; then
        chown -R 10001:10001 data/v1 data/v2
        export APP_UID=10001 APP_GID=10001
    else
        export APP_UID APP_GID
        APP_UID=$(id -u)
        APP_GID=$(id -g)
    fi
}

action=${1:-}
case "$action" in
    up)
        compose_cmd
        require_engine "$NO_DOCKER_HINT"
        prepare_data_dirs
        "${COMPOSE[@]}" up -d --build
        "${COMPOSE[@]}" ps
        echo "app-v1 http://127.0.0.1:8082  app-v2 http://127.0.0.1:8083  prometheus http://127.0.0.1:9090  kafka localhost:19092" >&2
        ;;
    down)
        compose_cmd
        require_engine ""
        "${COMPOSE[@]}" down --remove-orphans
        ;;
    clean)
        compose_cmd
        require_engine ""
        "${COMPOSE[@]}" down --remove-orphans --volumes
        # The files may belong to uid 10001 (see prepare_data_dirs); a non-root user may need sudo.
        rm -rf data/v1 data/v2
        ;;
    infra-up)
        compose_cmd
        require_engine "Without Docker: \`make kafka-local\` runs a Kafka-protocol broker on 127.0.0.1:19092."
        "${COMPOSE[@]}" up -d "${INFRA[@]}"
        "${COMPOSE[@]}" ps
        ;;
    infra-down)
        compose_cmd
        require_engine ""
        "${COMPOSE[@]}" rm --stop --force "${INFRA[@]}"
        ;;
    kafka-topic)
        topic=${TOPIC:-logs}
        partitions=${PARTITIONS:-3}
        compose_cmd
        require_engine "No topic needs creating by hand, though: log-pipeline v2 creates its topic
(kafka.topic, kafka.partitions) and its dead-letter topic at start-up when they are missing.
Without Docker, \`make kafka-local\` runs a Kafka-protocol broker on 127.0.0.1:19092 for \`make run-v2\`."
        "${COMPOSE[@]}" exec -T kafka kafka-topics --bootstrap-server kafka:9092 --create \
            --if-not-exists --topic "$topic" --partitions "$partitions" --replication-factor 1
        "${COMPOSE[@]}" exec -T kafka kafka-topics --bootstrap-server kafka:9092 --describe --topic "$topic"
        ;;
    *)
        echo "usage: $0 up|down|clean|infra-up|infra-down|kafka-topic" >&2
        exit 2
        ;;
esac
