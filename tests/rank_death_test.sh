#!/usr/bin/env bash
# A rank of a real freshet_train job (cluster-configs/local.pbtxt layout: 2
# servers, 2 workers, exporter; plain mpirun, launch/mpirun.sh) dies
# (SIGKILL) or hangs (SIGSTOP) while training. The job must end by itself,
# non-zero, within a bound, and its output must name the rank:
#   kill worker/exporter: mpirun ends the job at once ("process rank R ...
#       exited on signal 9"); bound 30 s;
#   killrec worker: SIGKILL under mpirun --enable-recovery (mpirun leaves
#       the survivors running): the other worker's all-reduce sees the dead
#       worker's heartbeat go silent and fails naming it, bound 30 s. It
#       then calls MPI_Abort, which under --enable-recovery does not end the
#       other ranks (Open MPI 4.1: "PMIX ERROR: BAD-PARAM"), and the servers
#       and the exporter wait for the end of the job without a deadline (a
#       known gap, docs/RELIABILITY.md): the test ends the job itself once
#       the worker is named. The launch scripts use plain mpirun.
#   stop worker: the other worker's all-reduce sees its heartbeat go silent
#       (--heartbeat_silence_s=3) and fails naming it ("worker 1 (rank 3 ...
#       dead or hung"); bound 30 s;
#   stop exporter: training goes on (nothing waits on the exporter) until
#       worker 0's end-of-job EXPORT_FINAL request meets its deadline (the
#       10 s transport deadline + export.full_timeout_s, 5 s here) naming
#       "exporter 0 (rank 4)"; bound: the rest of the training + 60 s.
#
# usage: tests/rank_death_test.sh BIN_DIR SOURCE_DIR kill|killrec|stop worker|exporter
set -uo pipefail
bin=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
cd "$src"  # freshet_train finds cluster-configs/jobs/<task>.pbtxt from here
mode=$3
role=$4
recovery=()
case "$mode" in
  kill) signal=KILL ;;
  killrec) signal=KILL; recovery=(--enable-recovery) ;;
  stop) signal=STOP ;;
  *) echo "mode: kill, killrec or stop" >&2; exit 2 ;;
esac
case "$role" in worker) victim=3 ;; exporter) victim=4 ;; *) echo "role: worker or exporter" >&2; exit 2 ;; esac
out=$bin/../test-out/rank_death_${mode}_$role
rm -rf "$out"
mkdir -p "$out"
# shellcheck source=tests/fault_lib.sh
source "$src/tests/fault_lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export FRESHET_FAULT_TAG="death-$$"
job=
trap '[ -z "$job" ] || kill "$job" 2>/dev/null; fault_kill_job "$FRESHET_FAULT_TAG"' EXIT
fail() { echo "FAIL: $*" >&2; tail -30 "$out/train.log" >&2; exit 1; }

"$bin/freshet_gen" --out_dir="$out/work" --requests=40000 > "$out/gen.log" 2>&1 ||
  { cat "$out/gen.log"; fail "freshet_gen failed"; }
fault_cluster_config "$src" "$out/cluster.pbtxt" 10000
"$src/launch/mpirun.sh" "${recovery[@]}" -np 5 -x FRESHET_FAULT_TAG "$bin/freshet_train" --task=synthetic \
  --cluster_config="$out/cluster.pbtxt" --work_dir="$out/work" --epochs=4 --save=false \
  --heartbeat_silence_s=3 --export_full_timeout_s=5 --metrics_port=0 > "$out/train.log" 2>&1 &
job=$!

# Training has begun once both workers publish heartbeats; then 2 s more.
for _ in $(seq 1 600); do
  [ -f "$out/work/heartbeats/heartbeat-rank2" ] && [ -f "$out/work/heartbeats/heartbeat-rank3" ] && break
  kill -0 "$job" 2>/dev/null || fail "the job ended before training began"
  sleep 0.1
done
sleep 2
pid=$(fault_rank_pid "$FRESHET_FAULT_TAG" "$victim") || fail "rank $victim not found"
kill -0 "$job" 2>/dev/null || fail "the job ended before the signal (make it longer)"
echo "sending SIG$signal to $role (rank $victim, pid $pid)"
kill -s "$signal" "$pid"
start=$(date +%s.%N)
bound=30
[ "$mode/$role" != stop/exporter ] || bound=240
case "$mode/$role" in
  kill/*) pattern="process rank $victim with PID [0-9]* on node .* exited on signal 9" ;;
  killrec/worker|stop/worker) pattern="worker 1 \(rank 3, pid $pid .*dead or hung|dead or hung.*worker 1 \(rank 3, pid $pid" ;;
  stop/exporter) pattern="EXPORT_FINAL request to exporter 0 \(rank 4\) got no response" ;;
esac
while kill -0 "$job" 2>/dev/null; do
  if [ "$mode" = killrec ] && grep -qE "$pattern" "$out/train.log"; then
    echo "the worker was named after $(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)") s; ending the job (MPI_Abort does not under --enable-recovery)"
    kill "$job" 2>/dev/null; fault_kill_job "$FRESHET_FAULT_TAG"
    break
  fi
  if [ "$(echo "$(date +%s.%N) - $start > $bound" | bc)" = 1 ]; then
    fail "job still running $bound s after SIG$signal to rank $victim (hung)"
  fi
  sleep 0.2
done
wait "$job"
rc=$?
job=
elapsed=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
echo "job exited with status $rc, $elapsed s after SIG$signal to rank $victim"
[ "$rc" -ne 0 ] || [ "$mode" = killrec ] || fail "the job exited 0 after losing rank $victim"
grep -E "$pattern" "$out/train.log" | head -2 | cut -c1-400
grep -qE "$pattern" "$out/train.log" || fail "the output does not name rank $victim ($pattern)"
echo "{\"mode\":\"$mode\",\"role\":\"$role\",\"rank\":$victim,\"exit\":$rc,\"seconds_to_end\":$elapsed}"
echo "PASS: the job ended $elapsed s after SIG$signal, naming rank $victim"
