#!/usr/bin/env bash
# Stop the daemons tests/cluster/start-slurm.sh started (by their pid files), newest first.
# Safe to call twice or when nothing was started. With --purge, also delete the state folder.
set -uo pipefail

DIR=${GZMORPH_SLURM_DIR:-/tmp/gzmorph-slurm}
RUN=$DIR/run
export SLURM_CONF=$DIR/etc/slurm.conf

stop() {  # stop NAME: SIGTERM the pid in run/NAME.pid, wait up to 15 s, then SIGKILL
    local pidfile=$RUN/$1.pid pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile" 2>/dev/null)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "stop-slurm: $1 ($pid) ignored SIGTERM, killing" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
        echo "stop-slurm: stopped $1 ($pid)" >&2
    fi
    rm -f "$pidfile"
}

if [ -d "$RUN" ]; then
    # jobs still running on the node would outlive slurmd: cancel them first
    if [ -f "$RUN/slurmctld.pid" ] && command -v scancel >/dev/null; then
        timeout 10 scancel --user="$(id -un)" >/dev/null 2>&1 || true
    fi
    for d in slurmd slurmctld slurmdbd mariadbd munged; do stop "$d"; done
    if [ -f "$RUN/linked-conf" ]; then  # our /etc/slurm/slurm.conf symlink, nothing else
        link=$(cat "$RUN/linked-conf")
        [ -L "$link" ] && [ "$(readlink "$link")" = "$DIR/etc/slurm.conf" ] && rm -f "$link"
        rm -f "$RUN/linked-conf"
    fi
    if [ -f "$RUN/cgroup-mounted" ]; then
        umount /sys/fs/cgroup/systemd 2>/dev/null; umount /sys/fs/cgroup 2>/dev/null
        rm -f "$RUN/cgroup-mounted"
    fi
fi
if [ "${1:-}" = "--purge" ]; then
    rm -rf "$DIR" "$DIR.apt.log"
fi
exit 0
