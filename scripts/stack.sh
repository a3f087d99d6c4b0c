#!/usr/bin/env bash
# The docker-compose stack (docker-compose.yml), for the Makefile's stack-* / infra-* / kafka-topic
# targets and for scripts/stack-test.sh:
#
#   scripts/stack.sh up            build the image, start everything (kafka, kafka-init, prometheus,
#                                  app-v1, app-v2)
#   scripts/stack.sh down          stop and remove the containers; keep ./data and the Kafka volume
#   scripts/stack.sh clean         like down, and delete ./data and the Kafka volume
#   scripts/stack.sh infra-up      start only kafka, kafka-init and prometheus
#   scripts/stack.sh infra-down    stop and remove only those
#   scripts/stack.sh kafka-topic   create TOPIC (default logs) with PARTITIONS (default 3) in the
#                                  compose broker, if missing
#   scripts/stack.sh local-images  build the stand-in images (scripts/stack-images.sh) if missing
#   scripts/stack.sh scale-up      after up: also start the profile "scale", garage and
#                                  app-s3-1..3, three v2 instances writing to one bucket
#   scripts/stack.sh scale-down    stop and remove only those; keep the garage-data volume
#
# down and clean take the profile "scale" down too.
# Engine: Docker when its engine answers (`docker compose` v2, else `docker-compose` v1), else
# podman with podman-compose; STACK_ENGINE=docker|podman forces one. With podman, the upstream
# images are replaced by local stand-ins (docker-compose.local-images.yml) when
# STACK_LOCAL_IMAGES=1, or, unset, when the registry cannot be reached. Every compose call has a
# deadline (STACK_TIMEOUT, default 1800 s): podman-compose can wait for good on a container that
# cannot start.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/podman-host.sh
source scripts/podman-host.sh
PODMAN_HOST_CONF=""
trap 'rm -f "$PODMAN_HOST_CONF"' EXIT

INFRA=(kafka kafka-init prometheus)
SCALE=(garage app-s3-1 app-s3-2 app-s3-3)
DATA_DIRS=(data/v1/logs data/v1/analytics data/v2/logs data/v2/analytics)
COMPOSE_FILES=(-f docker-compose.yml)
LOCAL_IMAGES_FILE=docker-compose.local-images.yml
# One upstream image, pulled to learn whether the registry can be reached.
PROBE_IMAGE=docker.io/prom/prometheus:latest

die() { echo "stack.sh: $*" >&2; exit 1; }
note() { echo "stack.sh: $*" >&2; }

docker_engine_answers() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

# Sets ENGINE (docker|podman) and COMPOSE (the compose command, with its -f files).
select_engine() {
    ENGINE=${STACK_ENGINE:-}
    if [[ -z $ENGINE ]]; then
        if docker_engine_answers; then
            ENGINE=docker
        elif command -v podman >/dev/null 2>&1; then
            ENGINE=podman
        else
            explain_no_engine
        fi
    fi
    case $ENGINE in
        docker)
            docker_engine_answers || explain_no_engine
            if docker compose version >/dev/null 2>&1; then
                COMPOSE=(docker compose)
            elif command -v docker-compose >/dev/null 2>&1; then
                COMPOSE=(docker-compose)
                # v1 builds with the classic builder unless told to use the docker CLI (BuildKit),
                # which the Dockerfile's cache mounts need.
                export COMPOSE_DOCKER_CLI_BUILD=1 DOCKER_BUILDKIT=1
            else
                die "Docker is running but neither \`docker compose\` nor \`docker-compose\` is installed (Debian: apt-get install docker-compose)."
            fi
            ;;
        podman)
            command -v podman >/dev/null 2>&1 || die "STACK_ENGINE=podman but podman is not installed (Debian: apt-get install podman)."
            command -v podman-compose >/dev/null 2>&1 \
                || die "podman-compose is not on PATH: python3 -m venv /opt/podman-compose && /opt/podman-compose/bin/pip install 'podman-compose==1.6.*', then add /opt/podman-compose/bin to PATH."
            COMPOSE=(podman-compose)
            # Image builds in Docker's format: the OCI format has no HEALTHCHECK.
            export BUILDAH_FORMAT=docker
            use_podman_host_settings
            ;;
        *)
            die "STACK_ENGINE must be docker or podman, not '$ENGINE'"
            ;;
    esac
    COMPOSE+=("${COMPOSE_FILES[@]}")
}

# Without an engine, say plainly what is missing and what works without one.
explain_no_engine() {
    if ! command -v docker >/dev/null 2>&1; then
        note "neither Docker nor podman is installed."
    else
        note "no Docker engine is reachable: $(docker info 2>&1 >/dev/null | tail -n 1)"
        note "(is dockerd running, and DOCKER_HOST / the socket right?) podman is not installed either."
    fi
    note "Without containers: \`make run\` runs v1 on :8082; \`make kafka-local\`, then \`make run-v2\`, runs v2 on :8083."
    if [[ $action == kafka-topic ]]; then
        note "No topic needs creating by hand, though: log-pipeline v2 creates its topic (kafka.topic,"
        note "kafka.partitions) and its dead-letter topic at start-up when they are missing."
    fi
    exit 1
}

# With podman: use the stand-ins (and build them if missing) when asked to, or when the registry
# cannot be reached. With Docker, the upstream images always.
choose_images() {
    local local_images=${STACK_LOCAL_IMAGES:-}
    if [[ $ENGINE == docker ]]; then
        [[ $local_images != 1 ]] || die "STACK_LOCAL_IMAGES=1 works with podman only (scripts/stack-images.sh builds with podman)"
        return 0
    fi
    if [[ -z $local_images ]]; then
        if podman image exists "$PROBE_IMAGE" || timeout 300 podman pull --quiet "$PROBE_IMAGE" >/dev/null 2>&1; then
            local_images=0
        else
            note "the container registry cannot be reached ($PROBE_IMAGE): using the local stand-ins of $LOCAL_IMAGES_FILE (STACK_LOCAL_IMAGES=0 to refuse)"
            local_images=1
        fi
    fi
    if [[ $local_images == 1 ]]; then
        bash scripts/stack-images.sh ensure
        COMPOSE+=(-f "$LOCAL_IMAGES_FILE")
    fi
}

# Compose with a deadline. Not on a terminal, timeout signals compose's whole process group (its
# podman children too); on a terminal, --foreground lets Ctrl-C reach compose.
compose() {
    local foreground=()
    [[ -t 0 ]] && foreground=(--foreground)
    timeout "${foreground[@]}" "${STACK_TIMEOUT:-1800}" "${COMPOSE[@]}" "$@"
}

# The app containers write the bind-mounted ./data directories. Created by the engine they would be
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
        select_engine
        choose_images
        prepare_data_dirs
        # One build: both app services run the image, and podman-compose would build it twice at
        # once. `up` then finds it (and, with Docker, does not rebuild it). The build context has
        # no .git: the commit for `--version` and log_pipeline_build_info comes as an argument.
        commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
        compose build --build-arg "GIT_COMMIT=$commit" app-v1
        compose up -d
        compose ps
        echo "app-v1 http://127.0.0.1:8082  app-v2 http://127.0.0.1:8083  prometheus http://127.0.0.1:9090  kafka localhost:19092" >&2
        ;;
    down)
        select_engine
        COMPOSE+=(--profile scale)
        compose down --remove-orphans
        ;;
    clean)
        select_engine
        COMPOSE+=(--profile scale)
        compose down --remove-orphans --volumes
        # The files may belong to uid 10001 (see prepare_data_dirs); a non-root user may need sudo.
        rm -rf data/v1 data/v2
        ;;
    infra-up)
        select_engine
        choose_images
        compose up -d "${INFRA[@]}"
        compose ps
        ;;
    infra-down)
        select_engine
        if [[ $ENGINE == podman ]]; then
            compose down "${INFRA[@]}"   # podman-compose has no `rm`
        else
            compose rm --stop --force "${INFRA[@]}"
        fi
        ;;
    kafka-topic)
        topic=${TOPIC:-logs}
        partitions=${PARTITIONS:-3}
        select_engine
        compose exec -T kafka kafka-topics --bootstrap-server kafka:9092 --create \
            --if-not-exists --topic "$topic" --partitions "$partitions" --replication-factor 1
        compose exec -T kafka kafka-topics --bootstrap-server kafka:9092 --describe --topic "$topic"
        ;;
    scale-up)
        select_engine
        choose_images
        prepare_data_dirs
        COMPOSE+=(--profile scale)
        "$ENGINE" image inspect log-pipeline:local >/dev/null 2>&1 || compose build app-v1
        compose up -d "${SCALE[@]}"
        compose ps
        echo "app-s3-1 http://127.0.0.1:8091  app-s3-2 http://127.0.0.1:8092  app-s3-3 http://127.0.0.1:8093  garage (S3) http://127.0.0.1:3900" >&2
        ;;
    scale-down)
        select_engine
        COMPOSE+=(--profile scale)
        if [[ $ENGINE == podman ]]; then
            compose down "${SCALE[@]}"
        else
            compose rm --stop --force "${SCALE[@]}"
        fi
        ;;
    local-images)
        STACK_ENGINE=podman select_engine
        bash scripts/stack-images.sh ensure
        ;;
    *)
        echo "usage: $0 up|down|clean|infra-up|infra-down|kafka-topic|scale-up|scale-down|local-images" >&2
        exit 2
        ;;
esac
