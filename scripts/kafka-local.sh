#!/usr/bin/env bash
# A local Kafka-protocol broker (tansu, from crates.io) for machines without Docker.
#
#   scripts/kafka-local.sh run [PORT]    install if missing, run in the foreground (default 19092,
#                                        what config/examples/config.v2.local.yaml expects)
#   scripts/kafka-local.sh start [PORT]  install if missing, start in the background on PORT (default:
#                                        a free port), wait until it accepts connections, and print
#                                        `export LOG_PIPELINE_TEST_KAFKA=127.0.0.1:PORT` lines to eval
#   scripts/kafka-local.sh stop          stop the broker started with `start`
#   scripts/kafka-local.sh install       just install tansu
#
# tansu keeps topics in memory: a restart loses them (log-pipeline recreates its topics).
set -euo pipefail

TANSU_VERSION=0.6.0
STATE_DIR=${KAFKA_LOCAL_STATE:-${TMPDIR:-/tmp}/log-pipeline-kafka}
export PATH="$HOME/.cargo/bin:$PATH"

# dynostore: the memory:// storage engine (without it tansu refuses to start); libsql: the
# sqlite:// engine, which keeps topics across a restart (the fault suite's broker restarts).
TANSU_FEATURES=dynostore,libsql
# `tansu --version` does not say which features it was built with; this file does.
FEATURES_MARK=${CARGO_HOME:-$HOME/.cargo}/.tansu-$TANSU_VERSION-features

install_tansu() {
    if command -v tansu >/dev/null 2>&1 && tansu --version 2>/dev/null | grep -q "$TANSU_VERSION" &&
        [[ "$(cat "$FEATURES_MARK" 2>/dev/null)" == "$TANSU_FEATURES" ]]; then
        return
    fi
    echo "installing tansu $TANSU_VERSION with $TANSU_FEATURES (takes ~12-16 minutes on 2 cores, once per machine)" >&2
    cargo install tansu --version "$TANSU_VERSION" --locked --features "$TANSU_FEATURES" >&2
    echo "$TANSU_FEATURES" >"$FEATURES_MARK"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() {
    local port=$1 pid=$2
    for _ in $(seq 1 200); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "tansu exited during start-up; its log:" >&2
            cat "$STATE_DIR/tansu.log" >&2
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "tansu did not accept connections on 127.0.0.1:$port within 20 s" >&2
    return 1
}

broker_args() {
    local port=$1
    echo broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/
}

case "${1:-run}" in
    install)
        install_tansu
        ;;
    run)
        install_tansu
        port=${2:-19092}
        echo "tansu listening on 127.0.0.1:$port (Ctrl-C to stop)" >&2
        # shellcheck disable=SC2046
        exec tansu $(broker_args "$port")
        ;;
    start)
        install_tansu
        mkdir -p "$STATE_DIR"
        if [[ -f "$STATE_DIR/tansu.pid" ]] && kill -0 "$(cat "$STATE_DIR/tansu.pid")" 2>/dev/null; then
            echo "a broker started by this script is already running (pid $(cat "$STATE_DIR/tansu.pid"))" >&2
            exit 1
        fi
        port=${2:-$(free_port)}
        # shellcheck disable=SC2046
        nohup tansu $(broker_args "$port") >"$STATE_DIR/tansu.log" 2>&1 &
        pid=$!
        echo "$pid" >"$STATE_DIR/tansu.pid"
        wait_for_port "$port" "$pid"
        echo "tansu started: 127.0.0.1:$port (pid $pid, log $STATE_DIR/tansu.log)" >&2
        echo "export LOG_PIPELINE_TEST_KAFKA=127.0.0.1:$port"
        echo "export LOG_PIPELINE_TEST_TANSU=$(command -v tansu)"
        ;;
    stop)
        if [[ -f "$STATE_DIR/tansu.pid" ]]; then
            pid=$(cat "$STATE_DIR/tansu.pid")
            kill -CONT "$pid" 2>/dev/null || true
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$STATE_DIR/tansu.pid"
            echo "tansu stopped (pid $pid)" >&2
        fi
        ;;
    *)
        echo "usage: $0 run|start|stop|install [PORT]" >&2
        exit 2
        ;;
esac
