#!/usr/bin/env bash
# A single-node Slurm cluster on this machine for the Slurm backend tests (docs/slurm.md).
#
#   tests/slurm_cluster.sh up|down|status [STATE_DIR]     (default /tmp/foldwatch-slurm)
#
# `up` is idempotent: it installs the Debian packages when root and missing, writes its own
# munge key and slurm.conf under STATE_DIR, starts munged, slurmctld and slurmd directly (no
# systemd), waits until the node is idle and prints `SLURM_CONF=<path>`. Everything it
# creates lives under STATE_DIR; `down` stops only the daemons whose pid files are there.
# When it cannot start a cluster it says why on stderr and exits 1 (the tests skip with it).
set -u

ACTION=${1:-status}
DIR=${2:-${FOLDWATCH_SLURM_DIR:-/tmp/foldwatch-slurm}}
CONF="$DIR/slurm.conf"
# Non-default ports so a real Slurm on this machine (if any) is never touched.
CTLD_PORT=${FOLDWATCH_SLURM_PORT:-16817}
SLURMD_PORT=$((CTLD_PORT + 1))
PACKAGES="slurmctld slurmd slurm-client munge"

die() { echo "slurm_cluster: cannot start a Slurm cluster: $*" >&2; exit 1; }

alive() {  # pid file -> is that process alive?
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

have_binaries() {
    command -v munged >/dev/null && command -v slurmctld >/dev/null &&
        command -v slurmd >/dev/null && command -v sbatch >/dev/null
}

install_packages() {
    have_binaries && return 0
    [ "$(id -u)" = 0 ] || die "the packages ($PACKAGES) are not installed and this is not root"
    command -v apt-get >/dev/null || die "the packages ($PACKAGES) are missing and there is no apt-get"
    echo "slurm_cluster: installing $PACKAGES" >&2
    # Serialised with other installers on this machine (flock), quiet unless it fails.
    local log="$DIR/apt.log"
    if ! flock /tmp/apt.lock sh -c "DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends $PACKAGES" >"$log" 2>&1; then
        flock /tmp/apt.lock sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends $PACKAGES" >>"$log" 2>&1 ||
            die "apt-get install $PACKAGES failed (no network?); see $log"
    fi
    have_binaries || die "installed $PACKAGES but the daemons are still not on PATH"
}

write_conf() {
    local host cpus mem
    host=$(hostname -s)
    # The node as slurmd sees it: real CPUs and memory.
    cpus=$(slurmd -C 2>/dev/null | sed -n 's/.* CPUs=\([0-9]*\).*/\1/p')
    mem=$(slurmd -C 2>/dev/null | sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p')
    cpus=${cpus:-$(nproc)}
    mem=${mem:-1024}
    cat >"$CONF.tmp" <<EOF
# Written by tests/slurm_cluster.sh: a one-node test cluster, state under $DIR.
ClusterName=foldwatch
SlurmctldHost=$host
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge.socket
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in a container: track processes by parent pid, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
# No slurmdbd: sacct has nothing to read (the backend copes, docs/slurm.md).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# Finished jobs leave squeue/scontrol quickly; scancel's SIGTERM->SIGKILL gap is short.
MinJobAge=30
KillWait=5
InactiveLimit=0
Waittime=0
# Time limits are enforced every few seconds so a --time=1 job ends on time.
OverTimeLimit=0
MessageTimeout=20
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

start_munge() {
    alive "$DIR/munged.pid" && return 0
    if [ ! -s "$DIR/munge.key" ]; then
        mungekey --create --keyfile="$DIR/munge.key" >/dev/null 2>&1 ||
            dd if=/dev/urandom of="$DIR/munge.key" bs=1 count=1024 status=none
        chmod 600 "$DIR/munge.key"
    fi
    munged --force --socket="$DIR/munge.socket" --key-file="$DIR/munge.key" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/munged.log" \
        --seed-file="$DIR/munged.seed" 2>>"$DIR/munged.err" ||
        die "munged did not start: $(tail -n 3 "$DIR/munged.err" "$DIR/munged.log" 2>/dev/null)"
}

wait_for() {  # seconds, command...: poll until the command succeeds
    local limit=$1; shift
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $end ] && return 1
        sleep 0.5
    done
}

node_ready() {
    local st
    st=$(SLURM_CONF="$CONF" sinfo -h -N -o '%t' 2>/dev/null | head -n 1)
    case "$st" in idle|mix|alloc|idle\*) [ "$st" != "idle*" ] ;; *) return 1 ;; esac
}

up() {
    mkdir -p "$DIR" || die "cannot create $DIR"
    chmod 755 "$DIR"
    install_packages
    [ "$(id -u)" = 0 ] || { alive "$DIR/slurmctld.pid" && node_ready && { echo "SLURM_CONF=$CONF"; return 0; }
        die "the daemons need root (slurmd runs jobs as their users) and this is not root"; }
    mkdir -p "$DIR/ctld" "$DIR/spool"
    if ! alive "$DIR/slurmctld.pid" || ! alive "$DIR/slurmd.pid"; then
        write_conf
    fi
    start_munge
    if ! alive "$DIR/slurmctld.pid"; then
        # -i: ignore state a killed controller left behind (a fresh test cluster every time).
        SLURM_CONF="$CONF" slurmctld -i 2>>"$DIR/slurmctld.err" ||
            die "slurmctld did not start: $(tail -n 5 "$DIR/slurmctld.log" "$DIR/slurmctld.err" 2>/dev/null)"
    fi
    wait_for 30 env SLURM_CONF="$CONF" scontrol ping ||
        die "slurmctld does not answer: $(tail -n 5 "$DIR/slurmctld.log" 2>/dev/null)"
    if ! alive "$DIR/slurmd.pid"; then
        SLURM_CONF="$CONF" slurmd 2>>"$DIR/slurmd.err" ||
            die "slurmd did not start: $(tail -n 5 "$DIR/slurmd.log" "$DIR/slurmd.err" 2>/dev/null)"
    fi
    if ! wait_for 60 node_ready; then
        # A node left DOWN/DRAIN by an earlier run: bring it back once.
        SLURM_CONF="$CONF" scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1
        wait_for 30 node_ready ||
            die "the node never became idle: $(SLURM_CONF="$CONF" sinfo -N -h 2>&1) $(tail -n 5 "$DIR/slurmd.log")"
    fi
    echo "SLURM_CONF=$CONF"
}

down() {
    local name pid
    if [ -f "$CONF" ] && alive "$DIR/slurmctld.pid"; then
        SLURM_CONF="$CONF" scancel --full --signal=KILL --user="$(id -un)" >/dev/null 2>&1
    fi
    for name in slurmd slurmctld munged; do
        if alive "$DIR/$name.pid"; then
            pid=$(cat "$DIR/$name.pid")      # read once: munged removes its pid file itself
            kill "$pid" 2>/dev/null
            wait_for 20 sh -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null
        fi
        rm -f "$DIR/$name.pid"
    done
    echo "slurm_cluster: stopped (state kept in $DIR)"
}

status() {
    local ok=0 name
    for name in munged slurmctld slurmd; do
        if alive "$DIR/$name.pid"; then echo "$name: running (pid $(cat "$DIR/$name.pid"))"
        else echo "$name: not running"; ok=1; fi
    done
    if [ $ok = 0 ]; then
        SLURM_CONF="$CONF" sinfo -N
        echo "SLURM_CONF=$CONF"
    fi
    return $ok
}

case "$ACTION" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status [STATE_DIR]" >&2; exit 2 ;;
esac
