#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for tests and CI (run as root).
#
#   scripts/slurm_local.sh start [DIR]   # munged + slurmctld + slurmd; waits until the node is idle
#   scripts/slurm_local.sh stop  [DIR]   # stops slurmd and slurmctld (munged is left running)
#   scripts/slurm_local.sh install       # apt-get install slurm-wlm munge when they are missing
#
# State, spool, logs and slurm.conf live in DIR (default: $NORMBENCH_SLURM_DIR or
# /tmp/normbench-slurm). Client commands need SLURM_CONF=DIR/slurm.conf; `start` prints the
# export line. Exit status 0 when the cluster is up; otherwise the last line says why.
set -euo pipefail

cmd=${1:-}
dir=${2:-${NORMBENCH_SLURM_DIR:-/tmp/normbench-slurm}}
conf="$dir/slurm.conf"

die() { echo "slurm_local: $*" >&2; exit 1; }

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "slurm-wlm and munge are not installed and installing them needs root"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0  # already running
    fi
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key --force
        else create-munge-key -f; fi
    fi
    chown -R munge:munge /etc/munge && chmod 700 /etc/munge && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 755 /run/munge
    if id munge >/dev/null 2>&1 && command -v runuser >/dev/null; then
        runuser -u munge -- /usr/sbin/munged || /usr/sbin/munged --force
    else
        /usr/sbin/munged --force
    fi
    for _ in $(seq 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "munged did not start (see /var/log/munge/munged.log)"
}

write_conf() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc --all)
    mem=$(free -m | awk '/^Mem:/ {print int($2 * 0.9)}')
    mkdir -p "$dir/state" "$dir/spool"
    cat > "$conf" <<CONF
# Written by scripts/slurm_local.sh: a one-node cluster on $host.
ClusterName=normbench
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=${NORMBENCH_SLURMCTLD_PORT:-6817}
SlurmdPort=${NORMBENCH_SLURMD_PORT:-6818}
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
JobRequeue=1
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
KillWait=5
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

stop() {
    for daemon in slurmd slurmctld; do
        local pidfile="$dir/$daemon.pid"
        if [ -s "$pidfile" ]; then
            local pid; pid=$(cat "$pidfile")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$pidfile"
        fi
    done
}

start() {
    [ "$(id -u)" = 0 ] || die "starting Slurm needs root (slurmd runs jobs as their users)"
    command -v slurmctld >/dev/null || die "slurmctld not found; run: $0 install"
    stop
    start_munge
    write_conf
    export SLURM_CONF="$conf"
    /usr/sbin/slurmctld -c -f "$conf" || die "slurmctld did not start (see $dir/slurmctld.log)"
    /usr/sbin/slurmd -c -f "$conf" || die "slurmd did not start (see $dir/slurmd.log)"
    for _ in $(seq 150); do
        state=$(sinfo -h -N -o %t 2>/dev/null | head -1 || true)
        if [ "$state" = idle ]; then
            echo "export SLURM_CONF=$conf"
            return 0
        fi
        sleep 0.2
    done
    die "the node did not become idle (state: ${state:-none}); see $dir/slurmctld.log and $dir/slurmd.log"
}

case "$cmd" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 install|start|stop [DIR]" >&2; exit 2 ;;
esac
