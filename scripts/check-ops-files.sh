#!/usr/bin/env bash
# Validates the ops files without a Docker engine (`make check-ops`; run by .ci/run):
#   - docker-compose.yml: `docker-compose config -q` (offline schema + interpolation check), and
#     `docker compose config -q` too when the v2 plugin is installed;
#   - prometheus.yml: `promtool check config`; prometheus/alerts.yml: `promtool check
#     rules`, and its unit tests prometheus/alerts.test.yml: `promtool test rules`;
#   - Dockerfile: hadolint when installed, and in any case that it has USER, HEALTHCHECK, EXPOSE;
#   - every config file named in Dockerfile/docker-compose.yml as /app/config/... exists in config/.
# docker-compose and promtool are installed with apt when missing. Fails on the first problem.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "check-ops-files.sh: FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

apt_install() {
    echo "check-ops-files.sh: installing $* with apt-get" >&2
    local sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    "${sudo[@]}" apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
        || die "could not install $* with apt-get"
}

command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
command -v promtool >/dev/null 2>&1 || apt_install prometheus

# `config` reads only the files; it never contacts the engine.
docker-compose -f docker-compose.yml config -q || die "docker-compose.yml (docker-compose $(docker-compose version --short))"
ok "docker-compose.yml (docker-compose $(docker-compose version --short) config)"
if docker compose version >/dev/null 2>&1; then
    docker compose -f docker-compose.yml config -q || die "docker-compose.yml (docker compose v2)"
    ok "docker-compose.yml (docker compose $(docker compose version --short) config)"
fi

# promtool $1 $2 FILE: prints promtool's output only when it fails.
promtool_ok() {
    local out
    if ! out=$(promtool "$@" 2>&1); then
        echo "$out" >&2
        die "$3 (promtool $1 $2)"
    fi
    ok "$3 (promtool $1 $2)"
}
promtool_ok check config prometheus.yml
promtool_ok check rules prometheus/alerts.yml
promtool_ok test rules prometheus/alerts.test.yml

if command -v hadolint >/dev/null 2>&1; then
    hadolint Dockerfile || die "Dockerfile (hadolint)"
    ok "Dockerfile (hadolint)"
else
    echo "skip: hadolint not installed; only the Dockerfile sanity checks below"
fi
for instr in FROM USER HEALTHCHECK EXPOSE ENTRYPOINT CMD; do
    grep -Eq "^${instr}[[:space:]]" Dockerfile || die "Dockerfile has no $instr instruction"
done
# The runtime user must not be root (the last USER wins).
user=$(awk '/^USER[[:space:]]/ { u = $2 } END { print u }' Dockerfile)
[[ $user != root && $user != 0 && $user != 0:* ]] || die "Dockerfile runs as root (USER $user)"
ok "Dockerfile has FROM, USER ($user), HEALTHCHECK, EXPOSE, ENTRYPOINT, CMD"

# A COPY from the build context fails the build if its source is missing or .dockerignored. Our
# .dockerignore is an allow-list (`*`, then `!name` per top-level entry), so check both.
allow=$(sed -nE 's#^!/?([^/]+)/?$#\1#p' .dockerignore)
grep -q '^\*$' .dockerignore || die ".dockerignore is expected to be an allow-list starting with '*'"
while read -r -a words; do
    srcs=("${words[@]:1:${#words[@]}-2}")   # drop COPY and the destination
    for src in "${srcs[@]}"; do
        [[ $src == --* || $src == . ]] && continue
        [[ -e $src ]] || die "Dockerfile copies $src, which does not exist"
        top=${src%%/*}
        grep -qxF "$top" <<<"$allow" || die "Dockerfile copies $src, but .dockerignore does not allow $top"
    done
done < <(grep -E '^COPY[[:space:]]' Dockerfile | grep -v -- '--from=')
ok "every file the Dockerfile copies from the context exists and passes .dockerignore"

# The original's image failed at start for want of a config; make sure ours point at real files.
refs=$(grep -ohE '/app/config/[A-Za-z0-9_./-]+\.ya?ml' Dockerfile docker-compose.yml | sort -u)
[[ -n $refs ]] || die "no /app/config/... file referenced in Dockerfile or docker-compose.yml"
for ref in $refs; do
    [[ -f ${ref#/app/} ]] || die "$ref is referenced but ${ref#/app/} does not exist"
done
ok "referenced configs exist: ${refs//$'\n'/ }"
