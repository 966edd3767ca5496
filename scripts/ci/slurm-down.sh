#!/usr/bin/env bash
# Stop what scripts/ci/slurm-up.sh started, by pid file (never by process name).
# Adapted from the shared recipe slurm-single-node-stop.sh.
#   sudo scripts/ci/slurm-down.sh [--purge]    # --purge also deletes SLURM_BASE
#   SLURM_KEEP_MUNGE=1 leaves munged running.
set -uo pipefail
BASE=${SLURM_BASE:-/tmp/slurm-ci}
export SLURM_CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}

stop_pid() {  # stop_pid NAME PIDFILE: SIGTERM, then wait up to 15 s
  local pid; [ -f "$2" ] || return 0
  pid=$(cat "$2")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then echo "slurm-single-node: $1 ($pid) still running" >&2
    else echo "slurm-single-node: stopped $1 ($pid)" >&2; fi
  fi
  rm -f "$2"
}

# Cancel jobs first: slurmstepd and the job's processes would outlive slurmd.
if [ -f "$BASE/run/slurmctld.pid" ] && scontrol ping >/dev/null 2>&1; then
  jobs=$(squeue -h -o %A | sort -u)
  if [ -n "$jobs" ]; then
    # shellcheck disable=SC2086 # one word per job id
    scancel $jobs
    for _ in $(seq 60); do [ -z "$(squeue -h -t R,CG -o %A)" ] && break; sleep 0.25; done
  fi
fi
stop_pid slurmd    "$BASE/run/slurmd.pid"
stop_pid slurmctld "$BASE/run/slurmctld.pid"
stop_pid slurmdbd  "$BASE/run/slurmdbd.pid"      # only with SLURM_ACCOUNTING=1
stop_pid mariadbd  "$BASE/mysql/mariadb.pid"     # idem
[ "${SLURM_KEEP_MUNGE:-0}" = 1 ] || stop_pid munged /run/munge/munged.pid

if [ "${1:-}" = --purge ] && [ -d "$BASE/state" ]; then rm -rf "$BASE"; fi
