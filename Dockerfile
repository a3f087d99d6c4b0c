# log-pipeline container image.
#
#   docker build -t log-pipeline .
#   docker run --rm -p 8082:8082 log-pipeline                  # v1 with config.v1.docker.yaml
#   mkdir -p data && docker run --rm -p 8082:8082 -v "$PWD/data:/data" --user "$(id -u):$(id -g)" log-pipeline
#                                                               # the same, files in ./data (yours)
#
# The default CMD loads config/examples/config.v1.docker.yaml (data under /data); pass another
# `--config` (or flags/env, see `log-pipeline --help`) to change it. docker-compose.yml runs both
# pipeline versions with Kafka and Prometheus.
#
# Builds with BuildKit (Docker 23 and later by default; DOCKER_BUILDKIT=1 before that) and with
# podman/buildah (`podman build --format docker`: the OCI format drops the HEALTHCHECK).

# ---- build ---------------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder

# The rdkafka crate builds librdkafka from source (./configure + make) and links zlib found through
# pkg-config; zstd and jemalloc are built by their -sys crates with the same C toolchain.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, against stub sources: this step (librdkafka and every crate, the slow part)
# runs again only when Cargo.toml, Cargo.lock or .cargo/ change, not on every source edit. The
# cache mount keeps target/ between builds, so that even then only the dependencies that changed
# are compiled again; target/ is therefore in no layer, and the step that builds the binary copies
# it out. sharing=locked: two builds at once (compose builds each service that has `build:`) take
# turns. One cache mount per step: buildah 1.28 (Debian 12's podman) hangs on a locked one
# beside another.
COPY Cargo.toml Cargo.lock ./
# Build settings (rustflags: tokio_unstable for task dumps) must be the same for the stub build and
# the real one, or the real build compiles every dependency again.
COPY .cargo ./.cargo
RUN --mount=type=cache,target=/src/target,sharing=locked \
    mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# The real sources (.dockerignore lets only the build inputs through). touch: COPY keeps the
# files' mtimes, which can be older than the stub build, and cargo would then keep the stubs.
COPY . .
# The commit for `--version` and log_pipeline_build_info (build.rs): the context has no .git, so it
# comes as a build argument (scripts/stack.sh passes `git rev-parse --short=12 HEAD`); `unknown`
# without one. Declared here, after the dependencies' step, so a new commit rebuilds only the crate.
ARG GIT_COMMIT=unknown
RUN --mount=type=cache,target=/src/target,sharing=locked \
    touch src/main.rs src/lib.rs \
    && GIT_COMMIT="$GIT_COMMIT" cargo build --release --locked \
    && install -m 0755 target/release/log-pipeline /usr/local/bin/log-pipeline

# ---- runtime -------------------------------------------------------------------------------------
FROM debian:bookworm-slim

# The binary's shared libraries (libz, libgcc_s, libm, libc) are part of bookworm-slim and the
# HEALTHCHECK needs only bash. The CA certificates are for storage.backend: s3 (HTTPS to the
# bucket; the S3 client will not even start without a CA store, whatever the endpoint's scheme).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed non-root uid/gid so that bind-mounted data directories can be chowned to it on the host.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app \
    && mkdir -p /data/logs /data/analytics \
    && chown -R app:app /data

COPY --from=builder /usr/local/bin/log-pipeline /usr/local/bin/log-pipeline
# Config stays root-owned: the service only reads it.
COPY config /app/config

WORKDIR /app
USER app

# 8082: v1 HTTP API, 8083: v2 HTTP API, 6060: profiling listener (when enabled).
EXPOSE 8082 8083 6060

# Liveness probe with bash alone: GET /health over /dev/tcp, healthy when the answer is 200. PORT
# is only the port probed here; set it to the port the service listens on (server.addr /
# HTTP_ADDR) when that is not 8082, e.g. PORT=8083 for the v2 example config.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-8082} && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && read -r status <&3 && [[ $status == *' 200 '* ]]"]

ENTRYPOINT ["log-pipeline"]
CMD ["--config", "/app/config/examples/config.v1.docker.yaml"]
