#!/usr/bin/env bash
# Stop the daemons .ci/slurm-up.sh started, by their pids.
V=${1:?state directory printed by slurm-up.sh}
for pid in "$V/run/slurmd.pid" "$V/run/slurmctld.pid" /run/munge/munged.pid; do
  [ -s "$pid" ] && kill "$(cat "$pid")" 2>/dev/null
done
exit 0
