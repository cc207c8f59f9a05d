#!/usr/bin/env bash
# A single-node SLURM test cluster on this machine (controller and compute node on one
# host, no systemd): the cluster tests/test_slurm.py and profiles/slurm-test run against.
#
#   .ci/slurm/start.sh [STATE_DIR]     # default $DISTILLAB_SLURM_STATE or /tmp/distillab-slurm
#   .ci/slurm/stop.sh  [STATE_DIR]     # stops exactly the daemons this script started
#
# Installs slurmctld, slurmd, slurm-client and munge from the distribution's packages when
# missing (no slurmdbd: without accounting `sacct` fails, so the profile polls with
# `squeue`), writes /etc/slurm/slurm.conf with the node's real CPUs and memory, two
# partitions on the one node (`cpu`, the default, and `gpu`) and two fake GPUs (gres
# backed by /dev/null and /dev/zero, so `--gpus=N` jobs schedule and get CUDA_VISIBLE_DEVICES), then
# starts munged, slurmctld and slurmd in the background, their PIDs in STATE_DIR/*.pid,
# and waits for the node to be idle. Idempotent: a second start finds it running.
# Needs root (or passwordless sudo). Facts and traps: ../shared/notes/snakemake_slurm.md.
set -euo pipefail

STATE=${1:-${DISTILLAB_SLURM_STATE:-/tmp/distillab-slurm}}
WAIT_S=${DISTILLAB_SLURM_WAIT_S:-120}   # until the node is idle, then again for a test job
N_GPUS=${DISTILLAB_SLURM_FAKE_GPUS:-2}
MARK="# written by distillab .ci/slurm/start.sh (test cluster)"

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        exec sudo -n DISTILLAB_SLURM_WAIT_S="$WAIT_S" DISTILLAB_SLURM_FAKE_GPUS="$N_GPUS" \
            bash "$0" "$STATE"
    fi
    echo "start.sh: the SLURM test cluster needs root (it installs packages, writes" \
         "/etc/slurm and starts daemons as root); run it as root or with passwordless sudo." >&2
    exit 2
fi

alive() {  # alive NAME: the daemon whose PID this script recorded still runs
    local f="$STATE/$1.pid" p
    [ -s "$f" ] || return 1
    p=$(cat "$f")
    [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' <"/proc/$p/cmdline" | grep -q "$1"
}

node_idle() { sinfo -h -N -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; }

diagnose() {
    echo "---- sinfo -R / scontrol show node" >&2
    sinfo -R 2>&1 | head -20 >&2 || true
    scontrol show node 2>&1 | head -30 >&2 || true
    for f in "$STATE"/munged.out "$STATE"/slurmctld.out "$STATE"/slurmd.out \
             /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log; do
        [ -s "$f" ] || continue
        echo "---- tail $f" >&2
        tail -n 25 "$f" >&2
    done
}

mkdir -p "$STATE"
if alive munged && alive slurmctld && alive slurmd && node_idle; then
    echo "SLURM test cluster already running (state $STATE):"
    sinfo
    exit 0
fi
for d in slurmd slurmctld munged; do
    if alive "$d"; then
        echo "start.sh: $d from an earlier start is running but the cluster does not answer;" \
             "stopping it first" >&2
        bash "$(dirname "$0")/stop.sh" "$STATE"
        break
    fi
done
for d in slurmctld slurmd; do
    if pgrep -x "$d" >/dev/null; then
        echo "start.sh: a $d this script did not start is running (pid $(pgrep -x "$d" | head -1));" \
             "stop it or use that cluster directly." >&2
        exit 1
    fi
done

# --- packages -------------------------------------------------------------------------
pkgs=(slurmctld slurmd slurm-client munge)
if ! { [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && [ -x /usr/sbin/munged ] && command -v sinfo >/dev/null; }; then
    t0=$(date +%s)
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >"$STATE/apt.log" 2>&1; then
        apt-get update -qq >>"$STATE/apt.log" 2>&1
        apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >>"$STATE/apt.log" 2>&1 || {
            tail -n 30 "$STATE/apt.log" >&2; echo "start.sh: apt-get install ${pkgs[*]} failed" >&2; exit 1; }
    fi
    echo "== apt: ${pkgs[*]} installed in $(( $(date +%s) - t0 )) s"
fi

# --- configuration --------------------------------------------------------------------
if [ -e /etc/slurm/slurm.conf ] && ! grep -qxF "$MARK" /etc/slurm/slurm.conf; then
    echo "start.sh: /etc/slurm/slurm.conf exists and was not written by this script;" \
         "refusing to overwrite a real cluster's configuration." >&2
    exit 1
fi
HOST=$(hostname -s)
# The node's real layout (slurmd -C) so slurmd registers without a mismatch; memory: 90%.
LAYOUT=$(slurmd -C 2>/dev/null | head -1 | grep -oE '(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=[0-9]+' | tr '\n' ' ' || true)
[ -n "$LAYOUT" ] || LAYOUT="CPUs=$(nproc)"
MEM=$(( $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) * 9 / 10 ))

mkdir -p /etc/slurm /run/munge /run/slurm /var/lib/slurm/slurmctld /var/log/slurm "$STATE/spool"
chown munge:munge /run/munge
chown slurm:slurm /run/slurm /var/lib/slurm/slurmctld /var/log/slurm
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create 2>/dev/null || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi

# Fake GPUs: slurmd wants a character device per GPU (it sets CUDA_VISIBLE_DEVICES from
# the index); /dev/null and /dev/zero stand in for the first two, more are nodes in STATE.
if [ "$N_GPUS" -gt 0 ]; then
    { echo "$MARK"; echo "AutoDetect=off"
      for i in $(seq 0 $((N_GPUS - 1))); do
          case $i in
              0) dev=/dev/null ;;
              1) dev=/dev/zero ;;
              *) dev="$STATE/fakegpu$i"; [ -c "$dev" ] || mknod "$dev" c 1 3 ;;
          esac
          echo "NodeName=$HOST Name=gpu Type=fake File=$dev"
      done; } >/etc/slurm/gres.conf
    GRES="GresTypes=gpu"; NODE_GRES="Gres=gpu:fake:$N_GPUS"
else
    rm -f /etc/slurm/gres.conf; GRES=""; NODE_GRES=""
fi

cat >/etc/slurm/slurm.conf <<CONF
$MARK
ClusterName=distillab-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmdSpoolDir=$STATE/spool
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# No accounting: sacct fails, so the Snakemake profile polls with squeue, which sees a
# finished job for MinJobAge seconds (the plugin wants >= 3x its first poll interval).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
# cancelled jobs: SIGKILL 5 s after SIGTERM (default 30 s)
KillWait=5
$GRES
NodeName=$HOST NodeAddr=127.0.0.1 $LAYOUT RealMemory=$MEM $NODE_GRES State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST MaxTime=INFINITE State=UP
CONF

# --- daemons --------------------------------------------------------------------------
launch() {  # launch NAME CMD...: in the background, its own session, PID recorded
    local name=$1; shift
    setsid nohup "$@" >"$STATE/$name.out" 2>&1 </dev/null &
    echo $! >"$STATE/$name.pid"
}
t0=$(date +%s)
alive munged || launch munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.2; done
munge -n </dev/null >/dev/null 2>&1 || { echo "start.sh: munged did not come up" >&2; diagnose; exit 1; }
# -c: a clean controller state (no jobs left over from an earlier start)
launch slurmctld /usr/sbin/slurmctld -D -c
launch slurmd /usr/sbin/slurmd -D

deadline=$(( $(date +%s) + WAIT_S ))
until node_idle; do
    for d in munged slurmctld slurmd; do
        alive "$d" || { echo "start.sh: $d exited" >&2; diagnose; exit 1; }
    done
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "start.sh: the node is not idle after ${WAIT_S}s" >&2; diagnose; exit 1
    fi
    sleep 0.3
done
# One real job through both partitions (also proves munge auth between the daemons).
if ! out=$(timeout "$WAIT_S" srun -p gpu --gpus=1 -t 1 printenv CUDA_VISIBLE_DEVICES 2>&1); then
    echo "start.sh: a test job did not run: $out" >&2; diagnose; exit 1
fi
echo "== SLURM test cluster up in $(( $(date +%s) - t0 )) s (state $STATE; test job saw CUDA_VISIBLE_DEVICES=$out)"
sinfo -o "%P %a %D %T %c %m %G"
