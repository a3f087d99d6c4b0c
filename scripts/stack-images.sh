#!/usr/bin/env bash
# Local stand-ins for the stack's upstream images, built with podman, for machines that cannot pull
# from a container registry (our CI). Each is built only when missing:
#
#   docker.io/library/debian:bookworm-slim     Debian 12 minbase (mmdebstrap, from the host's apt
#                                              sources), slimmed as the upstream image is
#   docker.io/library/rust:1-bookworm          the host's Rust toolchain on that base
#   localhost/log-pipeline/tansu:0.6.0         tansu, the Kafka-protocol broker of `make test`
#   localhost/log-pipeline/prometheus:debian   Debian's prometheus package
#   localhost/log-pipeline/garage:2.5.0        garage, the object store of `make test-scale`
#                                              (for the compose profile "scale")
#
# The first two keep the upstream names so that the Dockerfile builds unchanged (podman uses a
# local image before pulling); docker-compose.local-images.yml names the others.
#
#   scripts/stack-images.sh ensure   build the missing ones
#   scripts/stack-images.sh remove   remove them all (and so let podman pull the upstream ones)
#
# Run it through `scripts/stack.sh local-images` (or `up`), which sets podman up for this host.
# Needs podman, mmdebstrap, the host's Rust toolchain, and tansu and garage (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
RUST_IMAGE=docker.io/library/rust:1-bookworm
TANSU_IMAGE=localhost/log-pipeline/tansu:0.6.0
PROMETHEUS_IMAGE=localhost/log-pipeline/prometheus:debian
GARAGE_IMAGE=localhost/log-pipeline/garage:2.5.0
# The host's apt sources, so that the images' apt reaches the same mirror the host does.
DEBIAN_SOURCES=${DEBIAN_SOURCES:-/etc/apt/sources.list.d/debian.sources}
export PATH="$HOME/.cargo/bin:$PATH"

note() { echo "stack-images.sh: $*" >&2; }

# Build contexts live in here, removed on exit.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stack-images.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# A new empty build context directory named $1.
new_context() {
    mkdir "$WORK/$1"
    echo "$WORK/$1"
}

# Like the upstream image (debuerreotype's "slim" variant): no man pages, docs or translations,
# and apt keeps neither downloaded packages nor its binary caches in image layers.
build_debian() {
    local context rootfs
    context=$(new_context debian)
    rootfs=$context/rootfs.tar
    [[ -f $DEBIAN_SOURCES ]] || DEBIAN_SOURCES=http://deb.debian.org/debian
    if ! timeout 900 mmdebstrap --variant=minbase --quiet \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --aptopt='Dir::Cache::pkgcache ""' --aptopt='Dir::Cache::srcpkgcache ""' \
        --aptopt='Acquire::Languages "none"' \
        --aptopt='DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; }' \
        --aptopt='APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; }' \
        bookworm "$rootfs" "$DEBIAN_SOURCES" >"$context/mmdebstrap.log" 2>&1; then
        tail -n 40 "$context/mmdebstrap.log" >&2
        note "mmdebstrap failed (its log's end above)"
        return 1
    fi
    timeout 300 podman import --quiet \
        --change 'CMD ["bash"]' \
        --change 'LABEL org.opencontainers.image.description="log-pipeline stand-in for debian:bookworm-slim, made locally by scripts/stack-images.sh"' \
        "$rootfs" "$DEBIAN_IMAGE" >/dev/null
}

# The active toolchain of the host (bin, lib, libexec, etc; not its documentation), and the host's
# local CA certificates (see rust.Containerfile).
build_rust() {
    local context sysroot
    context=$(new_context rust)
    sysroot=$(rustc --print sysroot)
    mkdir -p "$context/toolchain" "$context/ca"
    tar -C "$sysroot" -c bin lib libexec etc | tar -C "$context/toolchain" -x
    if [[ -d /usr/local/share/ca-certificates ]]; then
        cp -a /usr/local/share/ca-certificates/. "$context/ca/"
    fi
    build_image "$RUST_IMAGE" local-images/rust.Containerfile "$context" \
        --build-arg "TOOLCHAIN=$(basename "$sysroot")"
}

build_tansu() {
    local context
    context=$(new_context tansu)
    bash scripts/kafka-local.sh install
    cp "$(command -v tansu)" local-images/kafka-topics "$context/"
    build_image "$TANSU_IMAGE" local-images/tansu.Containerfile "$context"
}

build_garage() {
    local context
    context=$(new_context garage)
    bash scripts/garage-local.sh install
    cp "$(command -v garage)" "$context/"
    build_image "$GARAGE_IMAGE" local-images/garage.Containerfile "$context"
}

build_prometheus() {
    build_image "$PROMETHEUS_IMAGE" local-images/prometheus.Containerfile "$(new_context prometheus)"
}

# $1 image, $2 Containerfile, $3 context, then extra `podman build` arguments.
build_image() {
    local image=$1 containerfile=$2 context=$3
    shift 3
    timeout 1200 podman build --quiet --format docker --tag "$image" --file "$containerfile" "$@" "$context" >/dev/null
}

# $1 image, $2 the function that builds it: builds it unless podman has it.
ensure_image() {
    local image=$1 builder=$2 started=$SECONDS
    podman image exists "$image" && return 0
    note "building the stand-in $image"
    "$builder"
    note "built $image in $((SECONDS - started)) s"
}

case ${1:-} in
    ensure)
        ensure_image "$DEBIAN_IMAGE" build_debian
        ensure_image "$RUST_IMAGE" build_rust
        ensure_image "$TANSU_IMAGE" build_tansu
        ensure_image "$PROMETHEUS_IMAGE" build_prometheus
        ensure_image "$GARAGE_IMAGE" build_garage
        ;;
    remove)
        # Untag: images built on them (log-pipeline:local) keep their layers.
        for image in "$DEBIAN_IMAGE" "$RUST_IMAGE" "$TANSU_IMAGE" "$PROMETHEUS_IMAGE" "$GARAGE_IMAGE"; do
            if podman image exists "$image"; then podman untag "$image" "$image"; fi
        done
        ;;
    *)
        echo "usage: $0 ensure|remove" >&2
        exit 2
        ;;
esac
