#!/usr/bin/env bash
# Start a real single-node SLURM (Debian's slurm-wlm, no accounting database) with two fake GPUs.
# Recipe: shared/notes/local-slurm.md. Prints the state directory; .ci/slurm-down.sh DIR stops it.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null; then
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi
[ -s /etc/munge/munge.key ] || { mungekey -c -f; chown munge:munge /etc/munge/munge.key; }
mkdir -p /run/munge && chown munge:munge /run/munge
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
munge -n | unmunge >/dev/null
V=$(mktemp -d /tmp/kvstudy-slurm.XXXX)
mkdir -p "$V"/{state/ctld,state/d,log,run}
H=$(hostname -s)
mknod "$V/fakegpu0" c 1 3
mknod "$V/fakegpu1" c 1 3
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=$H
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$V/state/ctld
SlurmdSpoolDir=$V/state/d
SlurmctldPidFile=$V/run/slurmctld.pid
SlurmdPidFile=$V/run/slurmd.pid
SlurmctldLogFile=$V/log/slurmctld.log
SlurmdLogFile=$V/log/slurmd.log
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=300
KillWait=5
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
NodeName=$H CPUs=$(nproc) RealMemory=18000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
cat > /etc/slurm/gres.conf <<CONF
AutoDetect=off
NodeName=$H Name=gpu File=$V/fakegpu[0-1]
CONF
slurmctld
slurmd
for _ in $(seq 150); do [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break; sleep 0.2; done
[ "$(sinfo -h -o %T)" = idle ] || { echo "SLURM did not come up" >&2; cat "$V"/log/*.log >&2; exit 1; }
echo "$V"
