#!/usr/bin/env bash
# Start a throw-away single-node Slurm cluster (with accounting and two fake GPUs) for the
# cluster tests. Needs root on Debian/Ubuntu; installs munge, Slurm, slurmdbd and MariaDB from
# the distribution's packages when they are missing. Idempotent: daemons already started by
# an earlier call are left running.
#
#   tests/cluster/start-slurm.sh          # then: export SLURM_CONF=/tmp/gzmorph-slurm/etc/slurm.conf
#   tests/cluster/stop-slurm.sh           # stops exactly what this script started
#
# Everything lives under $GZMORPH_SLURM_DIR (default /tmp/gzmorph-slurm): configs in etc/,
# pid files in run/, logs in log/, the MariaDB data in mysql/. Nothing under /etc is changed
# except a symlink /etc/slurm/slurm.conf -> etc/slurm.conf (for srun inside jobs; only when
# no slurm.conf is there, removed by the stop script); clients find the cluster via SLURM_CONF.
# Partition "debug", account "ci", cluster "gzmorph"; ports from GZMORPH_SLURM_PORT (default 6917:
# slurmctld, +1 slurmd, +2 slurmdbd, +3 MariaDB).
set -euo pipefail

DIR=${GZMORPH_SLURM_DIR:-/tmp/gzmorph-slurm}
PORT=${GZMORPH_SLURM_PORT:-6917}
CLUSTER=gzmorph
ACCOUNT=ci
PARTITION=debug
NODE=$(hostname -s)
ETC=$DIR/etc RUN=$DIR/run LOG=$DIR/log
export SLURM_CONF=$ETC/slurm.conf

say() { echo "start-slurm: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (installs packages, runs slurmd)"
command -v dpkg >/dev/null && command -v apt-get >/dev/null || die "needs a Debian/Ubuntu system (apt-get, dpkg)"

# --- packages --------------------------------------------------------------------------------
PKGS=(munge slurm-client slurmctld slurmd slurmdbd slurm-wlm-mysql-plugin mariadb-server procps)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    # keep apt from starting the services itself (on hosts with an init system)
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    trap '[ $own_policy = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq >"$DIR.apt.log" 2>&1 || { mkdir -p "$DIR"; cat "$DIR.apt.log" >&2; die "apt-get update failed"; }
    apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >>"$DIR.apt.log" 2>&1 \
        || { tail -20 "$DIR.apt.log" >&2; die "apt-get install failed"; }
    [ $own_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
    trap - EXIT
fi

mkdir -p "$ETC" "$RUN" "$LOG" "$DIR/spool/ctld" "$DIR/spool/d" "$DIR/gpus"
chmod 755 "$DIR"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND until it succeeds
wait_for() {
    local secs=$1 what=$2; shift 2
    for _ in $(seq $((secs * 4))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    die "$what did not come up within ${secs}s (logs in $LOG)"
}

# --- munge -----------------------------------------------------------------------------------
MUNGE_SOCKET=/run/munge/munge.socket.2
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then mungekey --create --force --keyfile=/etc/munge/munge.key
    else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; fi
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
fi
if munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; then
    say "munged already running"
else
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge 2>/dev/null || true
    # as the munge user when it exists (munged dislikes running as root)
    if id munge >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged --pid-file="$RUN/munged.pid" 2>"$LOG/munged.err" \
            || /usr/sbin/munged --force --pid-file="$RUN/munged.pid" 2>>"$LOG/munged.err"
    else
        /usr/sbin/munged --force --pid-file="$RUN/munged.pid" 2>"$LOG/munged.err"
    fi
    wait_for 10 munged sh -c "munge -n -S $MUNGE_SOCKET | unmunge -S $MUNGE_SOCKET"
    [ -f "$RUN/munged.pid" ] || pgrep -n -x munged >"$RUN/munged.pid"
fi

# --- MariaDB (own data folder and port, as root) ---------------------------------------------
DB_PORT=$((PORT + 3))
DB_SOCK=$RUN/mysqld.sock
if ! alive "$RUN/mariadbd.pid"; then
    if [ ! -d "$DIR/mysql/mysql" ]; then
        mariadb-install-db --user=root --datadir="$DIR/mysql" --auth-root-authentication-method=socket \
            --skip-test-db >"$LOG/mariadb-install.log" 2>&1 || { tail -20 "$LOG/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    nohup mariadbd --no-defaults --user=root --datadir="$DIR/mysql" --socket="$DB_SOCK" \
        --port="$DB_PORT" --bind-address=127.0.0.1 --pid-file="$RUN/mariadbd.pid" \
        --log-error="$LOG/mariadbd.log" --innodb-buffer-pool-size=64M --skip-name-resolve \
        >/dev/null 2>&1 </dev/null &
    wait_for 30 MariaDB mariadb --no-defaults -S "$DB_SOCK" -u root -e "select 1"
    wait_for 10 "MariaDB pid file" test -s "$RUN/mariadbd.pid"
fi
DB_PASS=gzmorph-slurm
mariadb --no-defaults -S "$DB_SOCK" -u root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL

# --- Slurm configuration ---------------------------------------------------------------------
# The node is declared bigger than the machine (SlurmdParameters=config_overrides): 8 CPUs and
# 64 GB, so that the workflow's real per-rule threads/mem_mb fit; the tiny test data need little.
read -r REALCPUS REALMEM < <(slurmd -C | awk '{for(i=1;i<=NF;i++){split($i,a,"="); if(a[1]=="CPUs")c=a[2]; if(a[1]=="RealMemory")m=a[2]}} END{print c, m}')
CPUS=$(( REALCPUS > 8 ? REALCPUS : 8 ))
MEM=$(( REALMEM * 9 / 10 > 65536 ? REALMEM * 9 / 10 : 65536 ))
ln -sfn /dev/null "$DIR/gpus/nvidia0"
ln -sfn /dev/null "$DIR/gpus/nvidia1"

cat >"$ETC/slurm.conf" <<EOF
# written by tests/cluster/start-slurm.sh
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
SlurmdParameters=config_overrides
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$((PORT + 2))
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
AccountingStorageEnforce=associations
MinJobAge=300
ReturnToService=2
DefMemPerCPU=256
KillWait=5
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM Gres=gpu:2 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
cat >"$ETC/gres.conf" <<EOF
AutoDetect=off
NodeName=$NODE Name=gpu File=$DIR/gpus/nvidia[0-1]
EOF
cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=$((PORT + 2))
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chmod 600 "$ETC/slurmdbd.conf"

# Clients find the cluster through SLURM_CONF, but the slurm-jobstep plugin starts each rule's
# `srun` with every SLURM_* variable removed: srun then reads /etc/slurm/slurm.conf. Link it to
# ours (removed again by stop-slurm.sh); never replace a real one.
SYS_CONF=/etc/slurm/slurm.conf
if [ -L "$SYS_CONF" ] && [ "$(readlink "$SYS_CONF")" = "$ETC/slurm.conf" ]; then
    :
elif [ -e "$SYS_CONF" ] || [ -L "$SYS_CONF" ]; then
    die "$SYS_CONF exists and is not ours: this machine has a Slurm configuration already"
else
    mkdir -p /etc/slurm
    ln -s "$ETC/slurm.conf" "$SYS_CONF"
fi
echo "$SYS_CONF" >"$RUN/linked-conf"

# slurmd refuses to start when nothing is mounted at /sys/fs/cgroup
if ! mountpoint -q /sys/fs/cgroup 2>/dev/null && [ -z "$(ls -A /sys/fs/cgroup 2>/dev/null)" ]; then
    mount -t tmpfs -o size=1m cgroup_root /sys/fs/cgroup
    mkdir -p /sys/fs/cgroup/systemd
    mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
    touch "$RUN/cgroup-mounted"
fi

# --- daemons: slurmdbd -> (associations) -> slurmctld -> slurmd ------------------------------
if ! alive "$RUN/slurmdbd.pid"; then  # reads slurmdbd.conf next to $SLURM_CONF
    slurmdbd 2>>"$LOG/slurmdbd.err" || die "slurmdbd failed (see $LOG/slurmdbd.log)"
fi
wait_for 30 slurmdbd sacctmgr -n list cluster
wait_for 5 "slurmdbd pid file" test -s "$RUN/slurmdbd.pid"
sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" Description=gzmorph-tests Organization=gzmorph >/dev/null 2>&1 || true
sacctmgr -i add user root account="$ACCOUNT" cluster="$CLUSTER" >/dev/null 2>&1 || true
sacctmgr -n -P list assoc user=root account="$ACCOUNT" format=account | grep -qx "$ACCOUNT" \
    || die "could not register account $ACCOUNT for root"

if ! alive "$RUN/slurmctld.pid"; then
    slurmctld -f "$ETC/slurm.conf" 2>>"$LOG/slurmctld.err" || die "slurmctld failed (see $LOG/slurmctld.log)"
fi
wait_for 30 slurmctld scontrol ping
if ! alive "$RUN/slurmd.pid"; then
    slurmd -f "$ETC/slurm.conf" 2>>"$LOG/slurmd.err" || die "slurmd failed (see $LOG/slurmd.log)"
fi
wait_for 5 "slurmd pid file" test -s "$RUN/slurmd.pid"

node_idle() { sinfo -h -N -o '%t' | grep -qE '^(idle|mix|alloc)$'; }
idle=0
for _ in $(seq 120); do node_idle && { idle=1; break; }; sleep 0.25; done
if [ $idle = 0 ]; then
    # a node left drained/down by an earlier run: bring it back
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
    wait_for 20 "an idle node" node_idle
fi
say "cluster '$CLUSTER' up: partition $PARTITION, account $ACCOUNT, node $NODE (declared $CPUS CPUs, ${MEM} MB, 2 fake GPUs; state in $DIR)"
echo "export SLURM_CONF=$SLURM_CONF"
