# shellcheck shell=bash
# Sourced by scripts/stack.sh and scripts/stack-test.sh (not run): the podman settings some hosts
# need and podman's defaults lack, both seen on our CI machines:
# - without CAP_SYS_RESOURCE podman cannot give containers its default rlimits ("error setting
#   rlimits ... operation not permitted", and podman-compose then waits for good): use the host's
#   own hard limits, nproc at most kernel.pid_max (above it this host refuses it too);
# - crun refuses hosts with hybrid cgroups v1 ("cgroups in hybrid mode not supported"): use runc.

# Unless CONTAINERS_CONF is set already, writes the settings this host needs (if any) to a temporary
# containers.conf and exports CONTAINERS_CONF naming it. The caller deletes "$PODMAN_HOST_CONF".
use_podman_host_settings() {
    PODMAN_HOST_CONF=""
    [[ -z ${CONTAINERS_CONF:-} ]] || return 0
    local conf="" cap_eff nofile nproc pid_max
    cap_eff=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
    if ((((0x$cap_eff >> 24) & 1) == 0)); then
        nofile=$(ulimit -Hn)
        nproc=$(ulimit -Hu)
        pid_max=$(cat /proc/sys/kernel/pid_max)
        if [[ $nproc == unlimited ]] || ((nproc > pid_max)); then
            nproc=$pid_max
        fi
        conf+=$'[containers]\n'
        conf+="default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"$'\n'
    fi
    if [[ $(stat -fc %T /sys/fs/cgroup) == tmpfs && $(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null) == cgroup2fs ]]; then
        if ! command -v runc >/dev/null 2>&1; then
            echo "podman: this host has hybrid cgroups, which crun refuses: install runc (apt-get install runc)" >&2
            return 1
        fi
        conf+=$'[engine]\nruntime = "runc"\n'
    fi
    [[ -n $conf ]] || return 0
    PODMAN_HOST_CONF=$(mktemp "${TMPDIR:-/tmp}/containers.conf.XXXXXX")
    printf '%s' "$conf" >"$PODMAN_HOST_CONF"
    export CONTAINERS_CONF=$PODMAN_HOST_CONF
}
