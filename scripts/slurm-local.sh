#!/usr/bin/env bash
# A single-node Slurm on this machine, for the Slurm launcher's test (never started by
# `make test` on its own: CI calls it, and a user may).
#
#   scripts/slurm-local.sh install   apt-get the Debian packages (root)
#   scripts/slurm-local.sh start     start munged, slurmctld and slurmd (root); prints nothing else
#   scripts/slurm-local.sh stop      stop exactly the daemons `start` started, remove its state
#   scripts/slurm-local.sh status    exit 0 when a controller answers
#
# Daemons run from a private directory (/tmp/moerec-slurm): configuration, state, logs and
# pid files, so nothing of an existing Slurm set-up is touched. `start` refuses to run when
# daemons it started earlier are still alive.
set -euo pipefail

DIR=${MOEREC_SLURM_DIR:-/tmp/moerec-slurm}
CONF=$DIR/slurm.conf
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))

die() { echo "slurm-local: $*" >&2; exit 1; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # file, seconds
    for _ in $(seq 1 $(( $2 * 10 ))); do [ -s "$1" ] && return 0; sleep 0.1; done
    return 1
}

case "${1:-}" in
install)
    [ "$(id -u)" = 0 ] || die "install needs root"
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
    fi
    ;;
start)
    [ "$(id -u)" = 0 ] || die "start needs root"
    command -v slurmctld >/dev/null || die "Slurm is not installed (scripts/slurm-local.sh install)"
    for p in "$DIR/slurmctld.pid" "$DIR/slurmd.pid"; do
        alive "$p" && die "daemons from an earlier start are alive ($p); run scripts/slurm-local.sh stop first"
    done
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    # munged refuses to run as root, and wants its directories owned by munge.
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0711 /var/lib/munge
    install -d -o munge -g munge -m 0700 /var/log/munge
    [ -f /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
    if ! pgrep -x munged >/dev/null; then
        runuser -u munge -- /usr/sbin/munged
        touch "$DIR/munged.started"
    fi
    cat > "$CONF" <<EOF
ClusterName=moerec
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
MinJobAge=3600
MailProg=/bin/true
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    # Absolute configuration path: the daemons chdir when they fork.
    slurmctld -f "$CONF"
    wait_for "$DIR/slurmctld.pid" 20 || die "slurmctld did not start (see $DIR/log/slurmctld.log)"
    slurmd -f "$CONF" -N localhost
    wait_for "$DIR/slurmd.pid" 20 || die "slurmd did not start (see $DIR/log/slurmd.log)"
    for _ in $(seq 1 100); do
        if SLURM_CONF=$CONF sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "export SLURM_CONF=$CONF"
            exit 0
        fi
        sleep 0.2
    done
    die "the node did not come up (see $DIR/log)"
    ;;
stop)
    for p in "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; do
        if alive "$p"; then
            pid=$(cat "$p"); kill "$pid"
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    if [ -f "$DIR/munged.started" ]; then pkill -x munged || true; fi
    rm -rf "$DIR"
    ;;
status)
    SLURM_CONF=${SLURM_CONF:-$CONF} scontrol ping 2>/dev/null | grep -q "UP"
    ;;
*)
    echo "usage: $0 install|start|stop|status" >&2
    exit 2
    ;;
esac
