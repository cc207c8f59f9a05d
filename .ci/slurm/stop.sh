#!/usr/bin/env bash
# Stop the SLURM test cluster of .ci/slurm/start.sh: cancel its jobs, then end the daemons
# that start.sh recorded in STATE_DIR/*.pid (slurmd, slurmctld, munged), by PID and only
# those: SIGTERM, then SIGKILL after 10 s.
#   .ci/slurm/stop.sh [STATE_DIR]     # default $DISTILLAB_SLURM_STATE or /tmp/distillab-slurm
set -uo pipefail

STATE=${1:-${DISTILLAB_SLURM_STATE:-/tmp/distillab-slurm}}

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        exec sudo -n bash "$0" "$STATE"
    fi
    echo "stop.sh: needs root (the daemons run as root/slurm/munge); run it as root or with" \
         "passwordless sudo." >&2
    exit 2
fi

pid_of() {  # pid_of NAME: the recorded PID, if it still is that daemon
    local f="$STATE/$1.pid" p
    [ -s "$f" ] || return 1
    p=$(cat "$f")
    [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' <"/proc/$p/cmdline" | grep -q "$1" && echo "$p"
}

if [ ! -d "$STATE" ]; then
    echo "stop.sh: no state dir $STATE: nothing to stop"; exit 0
fi

# Jobs first, while slurmctld and slurmd still run, so no job process is left behind.
if pid_of slurmctld >/dev/null && pid_of slurmd >/dev/null; then
    jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
        echo "== cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null
        for _ in $(seq 60); do
            [ -z "$(squeue -h -t PD,R,CG,CF,S -o %i 2>/dev/null)" ] && break; sleep 0.5
        done
    fi
fi

for d in slurmd slurmctld munged; do
    if p=$(pid_of "$d"); then
        kill "$p" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$p" 2>/dev/null; then
            echo "stop.sh: $d (pid $p) ignored SIGTERM; SIGKILL" >&2
            kill -9 "$p" 2>/dev/null
        fi
        echo "== stopped $d (pid $p)"
    fi
    rm -f "$STATE/$d.pid"
done
