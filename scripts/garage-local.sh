#!/usr/bin/env bash
# A local S3-compatible object store: Garage (Deuxfleurs, crates.io), one node, for the
# `storage.backend: s3` tests and for trying it by hand. Garage is AGPL: it runs as its own
# process and is never linked into log-pipeline.
#
#   scripts/garage-local.sh start [PORT]  install if missing, start a single node in the background
#                                         (S3 API on PORT, default a free port), create the bucket
#                                         `logs` and a key allowed on it, and print
#                                         `export LOG_PIPELINE_TEST_S3_*=...` and `AWS_*` lines to eval
#   scripts/garage-local.sh kill          kill -9 the node (a crash), keeping its state
#   scripts/garage-local.sh restart       start the node again on its state (same ports, metadata,
#                                         data, bucket and key) and print the same lines
#   scripts/garage-local.sh stop          stop the node started with `start`
#   scripts/garage-local.sh install       just install garage (~16-22 min on 2 cores, once per machine)
#
# State (metadata, data, config, log) lives in $GARAGE_LOCAL_STATE (default /tmp/log-pipeline-garage)
# and is wiped by `start`. With GARAGE_KEY_ID and GARAGE_SECRET_KEY set (Garage's format: `GK` and
# 24 hex digits, 64 hex digits), `start` imports that key instead of creating a new one: a store
# started afresh (its storage lost) then takes the credentials its clients already have.
set -euo pipefail

GARAGE_VERSION=2.5.0
STATE_DIR=${GARAGE_LOCAL_STATE:-${TMPDIR:-/tmp}/log-pipeline-garage}
BUCKET=${GARAGE_BUCKET:-logs}
export PATH="$HOME/.cargo/bin:$PATH"

install_garage() {
    if command -v garage >/dev/null 2>&1 && garage --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
        return
    fi
    echo "installing garage $GARAGE_VERSION (takes ~16-22 minutes on 2 cores, once per machine)" >&2
    cargo install garage --version "$GARAGE_VERSION" --locked >&2
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

g() { garage -c "$STATE_DIR/garage.toml" "$@"; }

# Starts the node of $STATE_DIR/garage.toml in the background; prints its pid.
launch() {
    nohup garage -c "$STATE_DIR/garage.toml" server >>"$STATE_DIR/garage.log" 2>&1 &
    echo $! >"$STATE_DIR/garage.pid"
    echo $!
}

# Whether the node of the pid file runs (a killed node's zombie, not yet reaped, does not).
running() {
    local state
    [[ -f "$STATE_DIR/garage.pid" ]] || return 1
    state=$(ps -o stat= -p "$(cat "$STATE_DIR/garage.pid")") || return 1
    [[ "$state" != Z* ]]
}

# Waits until the S3 API of the node (pid $2) accepts connections on port $1.
wait_s3() {
    local port=$1 pid=$2
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { echo "garage exited during start-up; its log:" >&2; cat "$STATE_DIR/garage.log" >&2; exit 1; }
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
        sleep 0.1
    done
    echo "garage's S3 API did not accept connections on 127.0.0.1:$port within 10 s" >&2
    exit 1
}

# The S3 port of the node's configuration.
s3_port() {
    awk -F'"' '/^\[s3_api\]/ { s3 = 1 } s3 && /^api_bind_addr/ { split($2, a, ":"); print a[2]; exit }' "$STATE_DIR/garage.toml"
}

# The `export` lines a client evals: endpoint, bucket, the node's pid, the key.
print_exports() {
    local port=$1 pid=$2 key_id secret
    key_id=$(awk '/Key ID:/ { print $3 }' "$STATE_DIR/key.txt")
    secret=$(awk '/Secret key:/ { print $3 }' "$STATE_DIR/key.txt")
    [[ -n "$key_id" && -n "$secret" ]] || { echo "cannot read the key garage created:" >&2; cat "$STATE_DIR/key.txt" >&2; exit 1; }
    echo "garage started: S3 API http://127.0.0.1:$port, bucket $BUCKET (pid $pid, log $STATE_DIR/garage.log)" >&2
    echo "export LOG_PIPELINE_TEST_S3_ENDPOINT=http://127.0.0.1:$port"
    echo "export LOG_PIPELINE_TEST_S3_BUCKET=$BUCKET"
    echo "export LOG_PIPELINE_TEST_GARAGE_PID=$pid"
    echo "export AWS_ACCESS_KEY_ID=$key_id"
    echo "export AWS_SECRET_ACCESS_KEY=$secret"
    echo "export AWS_REGION=garage"
}

case "${1:-}" in
    install)
        install_garage
        ;;
    start)
        install_garage
        if running; then
            echo "a node started by this script is already running (pid $(cat "$STATE_DIR/garage.pid"))" >&2
            exit 1
        fi
        rm -rf "$STATE_DIR"
        mkdir -p "$STATE_DIR/meta" "$STATE_DIR/data"
        s3_port=${2:-$(free_port)}
        rpc_port=$(free_port)
        admin_port=$(free_port)
        cat >"$STATE_DIR/garage.toml" <<EOF
metadata_dir = "$STATE_DIR/meta"
data_dir = "$STATE_DIR/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(openssl rand -hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
admin_token = "$(openssl rand -hex 16)"
EOF
        pid=$(launch)
        node=""
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || { echo "garage exited during start-up; its log:" >&2; cat "$STATE_DIR/garage.log" >&2; exit 1; }
            node=$(g node id -q 2>/dev/null | cut -d@ -f1) && [[ -n "$node" ]] && break
            sleep 0.1
        done
        [[ -n "$node" ]] || { echo "garage did not answer within 10 s" >&2; exit 1; }
        # The RPC listener may come up a moment after `node id` answers.
        for _ in $(seq 1 100); do
            g layout assign -z dc1 -c 1G "$node" >/dev/null 2>&1 && break
            sleep 0.1
        done
        g layout apply --version 1 >/dev/null
        g bucket create "$BUCKET" >/dev/null
        if [[ -n "${GARAGE_KEY_ID:-}" ]]; then
            g key import -n log-pipeline --yes "$GARAGE_KEY_ID" "${GARAGE_SECRET_KEY:?GARAGE_SECRET_KEY goes with GARAGE_KEY_ID}" >/dev/null
        else
            g key create log-pipeline >/dev/null
        fi
        g bucket allow --read --write --owner "$BUCKET" --key log-pipeline >/dev/null
        g key info log-pipeline --show-secret >"$STATE_DIR/key.txt"
        # The S3 API answers once the layout is applied.
        wait_s3 "$s3_port" "$pid"
        print_exports "$s3_port" "$pid"
        ;;
    kill)
        running || { echo "no node started by this script is running" >&2; exit 1; }
        kill -9 "$(cat "$STATE_DIR/garage.pid")"
        for _ in $(seq 1 50); do running || break; sleep 0.1; done
        echo "garage killed (pid $(cat "$STATE_DIR/garage.pid")); its state is kept in $STATE_DIR" >&2
        ;;
    restart)
        [[ -f "$STATE_DIR/garage.toml" && -f "$STATE_DIR/key.txt" ]] || { echo "no node was started in $STATE_DIR" >&2; exit 1; }
        if running; then
            echo "the node is still running (pid $(cat "$STATE_DIR/garage.pid"))" >&2
            exit 1
        fi
        pid=$(launch)
        port=$(s3_port)
        wait_s3 "$port" "$pid"
        print_exports "$port" "$pid"
        ;;
    stop)
        if [[ -f "$STATE_DIR/garage.pid" ]]; then
            pid=$(cat "$STATE_DIR/garage.pid")
            kill -CONT "$pid" 2>/dev/null || true
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$STATE_DIR/garage.pid"
            echo "garage stopped (pid $pid)" >&2
        fi
        ;;
    *)
        echo "usage: $0 start [PORT]|kill|restart|stop|install" >&2
        exit 2
        ;;
esac
