#!/usr/bin/env bash
# A real SLURM cluster on this machine, and a freshet job through it:
#   1. installs slurm-wlm and munge if missing (apt-get update only if needed),
#   2. starts a private munged, slurmctld and slurmd (as root, ports and state
#      under a temp dir; a one-node cluster: this host, its cores and memory),
#   3. submits launch/slurm/submit.sh --cluster_config=cluster-configs/slurm-1node.pbtxt
#      --task=synthetic --epochs=1 (5 ranks on 1 node: sbatch -N1, 2 tasks;
#      mpirun --oversubscribe -np 5 with freshet_ranks' rankfile inside),
#   4. waits for it and checks its output: it trained (the final JSON line has
#      holdout_auc > 0.8) and, once enabled below, exported (LATEST exists),
#   5. stops exactly the daemons it started (trap on exit) and removes the
#      temp dir, so it can run again at once.
# usage: tests/slurm_test.sh [BIN_DIR]   (default: <repo>/build/bin; ctest
#        passes its build dir's bin). Exits 77 (skipped) when not root or
#        SLURM cannot be installed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin_dir=$(cd "${1:-$repo/build/bin}" && pwd)
# The job must also have exported (LATEST in its export directory).
check_export=${FRESHET_SLURM_CHECK_EXPORT:-1}
t0=$SECONDS
log() { echo "slurm_test [$((SECONDS - t0))s]: $*"; }
fail() { echo "slurm_test: FAIL: $*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then echo "slurm_test: skipped (needs root)"; exit 77; fi
for b in freshet_train freshet_ranks; do
  [ -x "$bin_dir/$b" ] || fail "$bin_dir/$b missing (build it first)"
done

# ---- 1. packages
if ! command -v slurmctld > /dev/null || ! command -v slurmd > /dev/null ||
   ! command -v sbatch > /dev/null || ! command -v munged > /dev/null; then
  log "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends slurm-wlm munge > /dev/null 2>&1 || {
    apt-get update > /dev/null && apt-get install -y --no-install-recommends slurm-wlm munge > /dev/null
  } || { echo "slurm_test: skipped (cannot install slurm-wlm/munge)"; exit 77; }
fi

tmp=$(mktemp -d /tmp/freshet-slurm-test.XXXXXX)
pids=()
job=
cleanup() {
  local rc=$?
  set +e
  if [ -n "$job" ] && [ -n "$(squeue -h -j "$job" 2> /dev/null)" ]; then
    log "cancelling job $job"
    scancel "$job"
    for _ in $(seq 30); do [ -z "$(squeue -h -j "$job" 2> /dev/null)" ] && break; sleep 1; done
  fi
  # Stop the daemons this run started, newest first, by PID only.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2> /dev/null
    for _ in $(seq 50); do kill -0 "${pids[i]}" 2> /dev/null || break; sleep 0.2; done
    kill -9 "${pids[i]}" 2> /dev/null
    wait "${pids[i]}" 2> /dev/null
  done
  if [ "$rc" -ne 0 ]; then
    for f in "$tmp"/*.log "$tmp"/job-*.out; do
      [ -f "$f" ] && { echo "---- $f (last 40 lines)"; tail -40 "$f"; }
    done
  fi
  rm -rf "$tmp"
  log "done (rc $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Ports nobody listens on.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    (echo > "/dev/tcp/127.0.0.1/$p") 2> /dev/null || { echo "$p"; return; }
  done
}
host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.8 }' /proc/meminfo)
ctld_port=$(free_port)
slurmd_port=$(free_port)
while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
mkdir -p "$tmp"/{state,spool,munge,work}

# ---- 2. daemons: munged (own socket and key), slurmctld, slurmd
dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 700 "$tmp/munge"; chmod 400 "$tmp/munge/munge.key"
munged --foreground --force --key-file="$tmp/munge/munge.key" \
  --socket="$tmp/munge/munge.socket" --pid-file="$tmp/munge/munged.pid" \
  --seed-file="$tmp/munge/munged.seed" --log-file="$tmp/munged.log" > /dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$tmp/munge/munge.socket" ] && break; sleep 0.1; done
munge --socket="$tmp/munge/munge.socket" -n | unmunge --socket="$tmp/munge/munge.socket" > /dev/null ||
  fail "munged does not answer on $tmp/munge/munge.socket"

cat > "$tmp/slurm.conf" <<CONF
# one-node test cluster written by tests/slurm_test.sh
ClusterName=freshettest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
AuthInfo=socket=$tmp/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MinJobAge=600
SlurmdTimeout=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=freshet Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$tmp/slurm.conf
slurmctld -D -c -f "$SLURM_CONF" > "$tmp/slurmctld.out.log" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$host" > "$tmp/slurmd.out.log" 2>&1 &
pids+=($!)
log "slurmctld (port $ctld_port) and slurmd (port $slurmd_port) started; waiting for $host to be idle"
state=
for i in $(seq 120); do
  state=$(sinfo -h -n "$host" -o %T 2> /dev/null | head -1 || true)
  [ "$state" = idle ] && break
  if [ "$i" = 30 ]; then scontrol update NodeName="$host" State=RESUME 2> /dev/null || true; fi
  for p in "${pids[@]}"; do kill -0 "$p" 2> /dev/null || fail "a daemon (pid $p) exited"; done
  sleep 0.5
done
[ "$state" = idle ] || fail "node $host is '$state', not idle, after 60 s"
log "node $host idle ($cpus CPUs, ${mem_mb} MB)"

# ---- 3. the job
submit=("$repo/launch/slurm/submit.sh" --cluster_config="$repo/cluster-configs/slurm-1node.pbtxt"
        --bin_dir="$bin_dir" --time=15 --partition=freshet --requeue
        --output="$tmp/job-%j.out" --job_name=freshet-slurm-test
        --task=synthetic --epochs=1 --work_dir="$tmp/work")
script=$("${submit[@]}" --dry-run)
grep -qx '#SBATCH --nodes=1' <<< "$script" || fail "script does not ask for 1 node:"$'\n'"$script"
grep -qx "#SBATCH --ntasks-per-node=2" <<< "$script" || fail "script does not ask for 2 tasks:"$'\n'"$script"
if grep -q -- '--gpus-per-node' <<< "$script"; then fail "CPU-only config asks for GPUs"; fi
# Restarts (docs/RELIABILITY.md, "Recovery"): requeue appends to one output
# file; --supervise runs the job under launch/supervise.sh, and a restart
# restores the newest checkpoint of --checkpoint_dir (--resume).
grep -qx '#SBATCH --requeue' <<< "$script" || fail "--requeue: no #SBATCH --requeue"
grep -qx '#SBATCH --open-mode=append' <<< "$script" || fail "--requeue: no --open-mode=append"
grep -qx 'supervise=-1' <<< "$script" || fail "not --supervise, yet the script supervises"
sup_script=$("${submit[@]}" --supervise=2 --checkpoint_dir="$tmp/ckpt" --dry-run)
grep -qx 'supervise=2' <<< "$sup_script" || fail "--supervise=2 not in the script"
grep -q -- '--max_restarts="$supervise"' <<< "$sup_script" || fail "--supervise: supervise.sh not called"
grep -q 'restore=(--resume)' <<< "$sup_script" || fail "a restart does not add --resume"
job=$("${submit[@]}")
[[ "$job" =~ ^[0-9]+$ ]] || fail "submit.sh printed '$job', not a job id"
log "submitted job $job"

# ---- 4. wait and check
deadline=$((SECONDS + 900))
while [ -n "$(squeue -h -j "$job" 2> /dev/null)" ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "job $job still running after 900 s"
  sleep 2
done
out=$tmp/job-$job.out
info=$(scontrol show job "$job" 2> /dev/null || true)
job_state=$(grep -o 'JobState=[A-Z_]*' <<< "$info" | head -1)
exit_code=$(grep -o ' ExitCode=[0-9:]*' <<< "$info" | head -1)
log "job $job ended: $job_state$exit_code"
[ -f "$out" ] || fail "no job output $out"
[ "$job_state" = JobState=COMPLETED ] || { cat "$out"; fail "job $job: $job_state$exit_code"; }
grep -q '^rank  role' "$out" || fail "job output lacks the rank table"
[ "$(grep -c ': as the config places it$' "$out")" = 5 ] || fail "not all 5 ranks passed freshet_ranks --check"
json=$(grep '^{"job"' "$out" | tail -1)
[ -n "$json" ] || { cat "$out"; fail "job output has no final JSON line"; }
auc=$(grep -o '"holdout_auc":[0-9.eE+-]*' <<< "$json" | cut -d: -f2)
awk -v a="${auc:-0}" 'BEGIN { exit !(a > 0.8) }' || fail "holdout_auc ${auc:-missing} <= 0.8"
log "trained: holdout AUC $auc"
if [ "$check_export" = 1 ]; then
  export_dir=$(sed -n 's/^exporter: .* to \(.*\) (slowest.*/\1/p' "$out" | tail -1)
  [ -n "$export_dir" ] || export_dir=$tmp/work/export
  [ -s "$export_dir/LATEST" ] || fail "no LATEST in the export dir $export_dir"
  log "exported: $export_dir/LATEST names $(cat "$export_dir/LATEST")"
else
  log "export check off (set FRESHET_SLURM_CHECK_EXPORT=1 or check_export=1 above)"
fi
log "PASS"
