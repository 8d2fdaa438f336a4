#!/usr/bin/env bash
# Random-rank-kill fault injection (docs/RELIABILITY.md, "Recovery").
#
# A small freshet_train job (synthetic shop from freshet_gen, DeepFM, the
# cluster-configs/local.pbtxt layout: 2 servers, 2 workers, exporter;
# checkpoints every 50 steps) runs under launch/supervise.sh, restarting with
# `--resume` (newest complete checkpoint, exact input cut) and writing the
# trained-input ledger (--input_ledger_dir). Each trial SIGKILLs one random
# rank (server, worker or exporter; found by its OMPI_COMM_WORLD_RANK in
# /proc/<pid>/environ) at a random time: one trial in five during start-up
# (before the first trained batch), the others at a uniformly random point of
# the training phase (from the first trained batch to 80% of the way to the
# baseline's last trained batch; a trial whose kill had no effect is rerun
# with the kill at half the time). Each trial checks:
#   - the kill landed (in the first run or the rerun): a trial without one
#     fails, and the summary prints how many of the trials' kills landed;
#   - the job recovers by itself: supervise.sh exits 0 within its restart
#     limit, and its report of the failed attempt names the killed rank;
#   - the job trains synchronously (--staleness=0; FRESHET_FAULT_STALENESS
#     overrides): recovery is the same as for an asynchronous job, but the
#     AUC no longer depends on how the 2 cores are shared (asynchronous
#     baselines differed by 0.0073 while CI ran other tests beside them);
#   - the final holdout AUC is within the tolerance of the mean of the
#     uninterrupted baseline runs (default two). Default 0.0035: six
#     uninterrupted runs of this job, when it still trained asynchronously
#     (a9ce550, before c3f240e made it synchronous; the 2-core box), spread
#     0.8418-0.8442, a standard deviation of 0.00085, so a
#     trial against the mean of two baselines differs by about 0.0010 (1 sd)
#     from noise alone and 0.0035 is 3.4 sd (about 1 false alarm in 150
#     runs of 10 trials). A restore that loses state costs more than that;
#     lost or repeated records are the ledgers' check (below). The two
#     baselines' difference, the run-to-run noise, is reported and must be
#     below the tolerance, or the AUC check could not tell anything;
#   - a freshet_serve following the export dir through every attempt never
#     refused a snapshot (no "rejected export" in its log), still loaded new
#     versions after the kill, ends on the exporter's final version, and
#     `freshet_snapshot verify --all` passes on the export dir;
#   - records: the ledgers of all attempts (tests/ledger_check.py against the
#     baseline's) show 0 records skipped and every record exactly once in the
#     final model; the duplicates (records trained by a killed attempt after
#     the checkpoint the next attempt restored) are counted and reported.
#
# usage: tests/fault_injection_test.sh BIN_DIR SOURCE_DIR
# env: FRESHET_FAULT_TRIALS (default 10), FRESHET_FAULT_SEED (default: from
#      the clock; printed, so a failing trial can be replayed),
#      FRESHET_FAULT_REQUESTS (data size, default 30000 requests = 240k train
#      impressions, 469 steps: about 2 s of training, 10 s a run),
#      FRESHET_FAULT_BASELINES (uninterrupted runs, default 2; 2 or more also
#      measure the run-to-run noise), FRESHET_FAULT_AUC_TOLERANCE (default
#      0.0035), FRESHET_FAULT_OUT (default BIN_DIR/../test-out/fault_injection).
# Prints a table of the trials and, last, one JSON line.
set -uo pipefail
bin=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
cd "$src"  # freshet_train finds cluster-configs/jobs/<task>.pbtxt from here
out=${FRESHET_FAULT_OUT:-$bin/../test-out/fault_injection}
trials=${FRESHET_FAULT_TRIALS:-10}
seed=${FRESHET_FAULT_SEED:-$(( $(date +%s) % 1000000 ))}
requests=${FRESHET_FAULT_REQUESTS:-30000}
baselines=${FRESHET_FAULT_BASELINES:-2}
tolerance=${FRESHET_FAULT_AUC_TOLERANCE:-0.0035}
epochs=1
ckpt_every=50   # steps
batch=256       # examples per worker and step
staleness=${FRESHET_FAULT_STALENESS:-0}
max_restarts=3
RANDOM=$seed
# shellcheck source=tests/fault_lib.sh
source "$src/tests/fault_lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

rm -rf "$out"
mkdir -p "$out"
fail_total=0
current_tag=
serve_pid=
cleanup() {
  [ -z "$current_tag" ] || fault_kill_job "$current_tag"
  [ -z "$serve_pid" ] || kill "$serve_pid" 2>/dev/null
}
trap cleanup EXIT
die() { echo "fault_injection: FAIL: $*" >&2; exit 1; }

echo "fault_injection: $trials trials, seed $seed (FRESHET_FAULT_SEED=$seed replays), out $out"
"$bin/freshet_gen" --out_dir="$out/data" --requests="$requests" > "$out/gen.log" 2>&1 ||
  { cat "$out/gen.log"; die "freshet_gen failed"; }
tail -1 "$out/gen.log"
cfg=$out/cluster.pbtxt
fault_cluster_config "$src" "$cfg" 10000

help=$("$bin/freshet_train" --help 2>&1)
for flag in resume input_ledger_dir; do
  grep -qE -- "-$flag \(" <<< "$help" || die "freshet_train has no --$flag"
done

# One attempt of the job in work dir $1 (run by supervise.sh; the tag in
# FRESHET_FAULT_TAG marks its ranks): --resume restores the newest complete
# checkpoint (exact input cut) or starts fresh; every worker appends what it
# trains to <work>/ledger (--input_ledger_dir) for ledger_check.py.
cat > "$out/attempt.sh" <<SCRIPT
#!/usr/bin/env bash
work=\$1
exec "$src/launch/mpirun.sh" -np 5 -x FRESHET_FAULT_TAG "$bin/freshet_train" \\
  --task=synthetic --cluster_config="$cfg" --work_dir="\$work" --epochs=$epochs \\
  --batch_size=$batch --staleness=$staleness --save=false \\
  --checkpoint_dir="\$work/ckpt" --checkpoint_interval_steps=$ckpt_every \\
  --heartbeat_silence_s=5 --metrics_port=0 --resume --input_ledger_dir="\$work/ledger"
SCRIPT
chmod +x "$out/attempt.sh"

# A fresh work dir $1 with the generated data (the task finds it there).
new_work() {
  rm -rf "$1"  # a rerun trial starts from nothing (no checkpoints, no ledgers)
  mkdir -p "$1"
  ln -s "$out/data/train.examples" "$1/train.examples"
  ln -s "$out/data/holdout.examples" "$1/holdout.examples"
}

# Runs the supervised job in $1; kills rank $2 (none: -1) $3 seconds after
# the start ($4 = start) or after the first trained batch ($4 = train).
# Sets: job_rc, job_s, train_s (first trained batch, s after the start),
# kill_done (1/0), kill_s, loads_before_kill.
run_job() {
  local work=$1 victim=$2 at=$3 phase=${4:-start} t0 pid now ref
  new_work "$work"
  current_tag="fault-$$-$(basename "$work")"
  "$bin/freshet_serve" --export_dir="$work/export" --port=0 --poll_ms=50 > "$work/serve.log" 2>&1 &
  serve_pid=$!
  t0=$(date +%s.%N)
  FRESHET_FAULT_TAG=$current_tag "$src/launch/supervise.sh" --max_restarts=$max_restarts \
    --backoff_s=0.5 --cluster_config="$cfg" -- "$out/attempt.sh" "$work" \
    > "$work/supervise.log" 2>&1 &
  local sup=$!
  kill_done=0; kill_s=0; loads_before_kill=0; train_s=
  while kill -0 "$sup" 2>/dev/null; do
    now=$(date +%s.%N)
    if [ -z "$train_s" ] && grep -qs '^b ' "$work"/ledger/worker-*.ledger; then
      train_s=$(printf '%.1f' "$(echo "$now - $t0" | bc)")
    fi
    ref=$t0
    if [ "$phase" = train ]; then ref=${train_s:+$(echo "$t0 + $train_s" | bc)}; fi
    if [ "$victim" -ge 0 ] && [ "$kill_done" = 0 ] && [ -n "$ref" ] &&
       [ "$(echo "$now - $ref >= $at" | bc)" = 1 ]; then
      pid=$(fault_rank_pid "$current_tag" "$victim")
      if [ -n "$pid" ]; then
        loads_before_kill=$(grep -c 'serving model version' "$work/serve.log")
        kill -9 "$pid"
        kill_done=1
        kill_s=$(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)")
        echo "  killed rank $victim (pid $pid) at $kill_s s" >> "$work/events.log"
      elif [ "$(echo "$now - $ref >= $at + 20" | bc)" = 1 ]; then
        victim=-1  # never found (the job ended first)
      fi
    fi
    if [ "$(echo "$now - $t0 > 300" | bc)" = 1 ]; then
      echo "  supervised job still running after 300 s: killed" >> "$work/events.log"
      kill "$sup" 2>/dev/null; fault_kill_job "$current_tag"
    fi
    sleep 0.1
  done
  wait "$sup"
  job_rc=$?
  job_s=$(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)")
  # When the last batch was trained (the ledgers' last write), s after the start.
  local last=0 f m
  for f in "$work"/ledger/worker-*.ledger; do
    [ -f "$f" ] || continue
    m=$(date -r "$f" +%s.%N)
    [ "$(echo "$m > $last" | bc)" = 1 ] && last=$m
  done
  train_end_s=$(printf '%.1f' "$(echo "$last - $t0" | bc)")
  sleep 0.3  # serve picks up the last version (it polls every 50 ms)
  kill "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null
  serve_pid=
  current_tag=
}

role_of() {  # rank -> "server 0" etc. (local.pbtxt: 0-1 servers, 2-3 workers, 4 exporter)
  case $1 in 0|1) echo "server $1" ;; 2|3) echo "worker $(($1 - 2))" ;; 4) echo "exporter 0" ;; *) echo "-" ;; esac
}

# ---- Baseline: uninterrupted runs (two: their difference is the noise) ----
base_auc=(); base_s=(); base_train_s=(); base_train_end_s=()
for ((b = 1; b <= baselines; b++)); do
  run_job "$out/baseline-$b" -1 0
  [ "$job_rc" = 0 ] || { tail -30 "$out/baseline-$b/supervise.log"; die "baseline run $b failed"; }
  grep -q '"restarts":0' "$out/baseline-$b/supervise.log" || die "baseline run $b needed a restart"
  base_auc+=("$(fault_json_field "$out/baseline-$b/supervise.log" holdout_auc)")
  base_s+=("$job_s")
  [ -n "$train_s" ] || die "baseline run $b: no trained batch in its ledger"
  base_train_s+=("$train_s")
  base_train_end_s+=("$train_end_s")
  echo "baseline run $b: holdout AUC ${base_auc[-1]}, $job_s s (training from $train_s s to $train_end_s s)"
done
baseline=$(printf '%.5f' "$(printf '%s\n' "${base_auc[@]}" | awk '{ s += $1 } END { print s / NR }')")
echo "baseline: mean holdout AUC of $baselines uninterrupted run(s) $baseline"
noise=null
if [ "$baselines" -ge 2 ]; then
  noise=$(printf '%.5f' "$(echo "d = ${base_auc[0]} - ${base_auc[1]}; if (d < 0) d = -d; d" | bc -l)")
  echo "baseline: run-to-run noise |AUC1 - AUC2| = $noise (tolerance $tolerance)"
  if [ "$(echo "$noise > $tolerance" | bc -l)" = 1 ]; then
    die "the noise of uninterrupted runs ($noise) exceeds the tolerance $tolerance: the AUC check would be meaningless"
  fi
fi
# Kill times (tenths of a second): start-up kills in [0.3 s, first trained
# batch); training kills from the first to 80% of the way to the last
# trained batch (the baseline's ledgers); a trial whose kill had no effect
# (the job or the rank had finished) is rerun with the kill at half the time.
start_max_ds=$(printf '%.0f' "$(echo "${base_train_s[0]} * 10" | bc -l)")
[ "$start_max_ds" -ge 4 ] || start_max_ds=4
train_max_ds=$(printf '%.0f' "$(echo "(${base_train_end_s[0]} - ${base_train_s[0]}) * 8" | bc -l)")
[ "$train_max_ds" -ge 5 ] || train_max_ds=5

# ---- Trials -----------------------------------------------------------------
rows=()
deltas=(); recoveries=()
dup_total=0; skip_total=0; kills_training=0; kills_landed=0; unnamed_startup=0
passed=0
for ((t = 1; t <= trials; t++)); do
  work=$out/trial-$t
  victim=$((RANDOM % 5))
  r=$RANDOM  # here: $RANDOM inside $(...) would not advance this shell's sequence
  # (bc's % is not an integer remainder at scale 1: shell arithmetic here)
  if [ $((RANDOM % 5)) = 0 ]; then
    phase=start; at_ds=$((3 + r % (start_max_ds - 3)))
  else
    phase=train; at_ds=$((r % train_max_ds))
  fi
  at=$(echo "scale=1; $at_ds / 10" | bc)
  run_job "$work" "$victim" "$at" "$phase"
  restarts=$(grep -o '"restarts":[0-9]*' "$work/supervise.log" | tail -1 | cut -d: -f2)
  if [ "$kill_done" = 0 ] || { [ "$job_rc" = 0 ] && [ "${restarts:-0}" = 0 ]; }; then
    # The job ended before the kill time, or the killed rank had already
    # finished its work (runs vary): a trial without an effective kill
    # proves nothing, so run it again with the kill at half the time.
    at=$(echo "scale=1; $at_ds / 20" | bc)
    echo "  trial $t: the kill had no effect (the job or the rank had finished); again with the kill at $at s" >&2
    run_job "$work" "$victim" "$at" "$phase"
  fi
  problems=()
  restarts=$(grep -o '"restarts":[0-9]*' "$work/supervise.log" | tail -1 | cut -d: -f2)
  auc=$(fault_json_field "$work/supervise.log" holdout_auc)
  [ "$job_rc" = 0 ] || problems+=("supervised job exited $job_rc")
  # A trial whose kill never landed (not even in the rerun) tested nothing:
  # it fails rather than counting as a survived kill.
  [ "$kill_done" = 1 ] || problems+=("the kill never landed (rank $victim was not found alive, even in the rerun at $at s)")
  if [ "$kill_done" = 1 ]; then
    # The supervisor names the killed rank in its report of attempt 1. One
    # exception: a rank killed while mpirun was still launching the job
    # (start-up kills) is sometimes reported by Open MPI 4.1 only as "1
    # process returned a non-zero exit code", naming no rank (seen once in
    # CI; tests/supervise_test.sh knows the same short form); supervise.sh
    # can then name none ("died on signal 9" / "no rank named"), which is
    # accepted for start-up kills only and counted in the summary.
    if ! grep -q "attempt 1/.* failed .*rank $victim[ )]" "$work/supervise.log"; then
      if [ "$phase" = start ] &&
         grep -qE "attempt 1/.* failed .*(the command died on signal 9|no rank named in its output)" \
           "$work/supervise.log" &&
         grep -q "a non-zero exit code. Per user-direction" "$work/supervise.log"; then
        unnamed_startup=$((unnamed_startup + 1))
      else
        problems+=("supervise.sh did not name rank $victim")
      fi
    fi
    [ "${restarts:-0}" -ge 1 ] || problems+=("no restart after the kill")
  fi
  # AUC against the baseline.
  if [ -n "$auc" ]; then
    d=$(echo "d = $auc - $baseline; if (d < 0) d = -d; d" | bc -l)
    deltas+=("$d")
    [ "$(echo "$d <= $tolerance" | bc -l)" = 1 ] || problems+=("AUC $auc is $d from the baseline")
  else
    d=nan; problems+=("no final AUC")
  fi
  # Serving: no refusal, new versions after the kill, ends on the final one.
  rejected=$(grep -c 'rejected export' "$work/serve.log")
  loads=$(grep -c 'serving model version' "$work/serve.log")
  [ "$rejected" = 0 ] || problems+=("freshet_serve refused $rejected snapshot(s)")
  if [ "$kill_done" = 1 ] && [ "$loads" -le "$loads_before_kill" ]; then
    problems+=("freshet_serve loaded no version after the kill")
  fi
  final_v=$("$bin/freshet_snapshot" info "$work/export" 2>/dev/null | grep -E '^version +[0-9]+' | grep -oE '[0-9]+')
  last_loaded=$(grep -oE 'serving model version [0-9]+' "$work/serve.log" | tail -1 | grep -oE '[0-9]+$')
  [ -n "$final_v" ] && [ "$final_v" = "$last_loaded" ] ||
    problems+=("freshet_serve ends on version ${last_loaded:-none}, the export's latest is ${final_v:-none}")
  "$bin/freshet_snapshot" verify --all "$work/export" > "$work/verify.log" 2>&1 ||
    problems+=("freshet_snapshot verify --all failed (see $work/verify.log)")
  # Records, when the ledgers exist.
  dup=-; skipped=-
  if true; then
    python3 "$src/tests/ledger_check.py" "$work/ledger" --baseline="$out/baseline-1/ledger" \
      > "$work/ledger_check.log" 2>&1 || problems+=("ledger check failed (see $work/ledger_check.log)")
    dup=$(fault_json_field "$work/ledger_check.log" duplicated)
    skipped=$(fault_json_field "$work/ledger_check.log" skipped)
  fi
  if [ "$kill_done" = 1 ]; then recoveries+=("$job_s"); kills_landed=$((kills_landed + 1)); fi
  if [ ${#problems[@]} -eq 0 ]; then result=ok; passed=$((passed + 1)); else result=FAIL; fail_total=1; fi
  when=none
  if [ "$kill_done" = 1 ]; then
    # kill_s is from the launch; a training kill also shows its offset.
    when="$kill_s"; [ "$phase" = train ] && when="$kill_s(t+$at)"
    [ "$phase" = train ] && kills_training=$((kills_training + 1))
  fi
  dup_total=$((dup_total + ${dup:-0})); skip_total=$((skip_total + ${skipped:-0}))
  rows+=("$(printf '%5d  %-16s %12s %8s %10s %8s %8s %8s %7s %6s  %s' "$t" \
    "$([ "$kill_done" = 1 ] && echo "rank $victim $(role_of "$victim" | tr ' ' '_')" || echo "none(ended)")" \
    "$when" "${restarts:--}" "$dup" "$skipped" "${auc:--}" "$(printf '%.4f' "$d" 2>/dev/null || echo nan)" \
    "$job_s" "$loads" "$result")")
  echo "${rows[-1]}"
  for p in "${problems[@]}"; do echo "         - $p"; done
  if [ ${#problems[@]} -gt 0 ]; then
    echo "         (log: $work/supervise.log; last lines:)"; tail -8 "$work/supervise.log" | sed 's/^/           /'
  fi
done

echo
echo "fault injection: $kills_landed of $trials kills landed"
[ "$unnamed_startup" = 0 ] ||
  echo "fault injection: $unnamed_startup start-up kill(s) where mpirun named no rank (accepted, see the check's comment)"
echo "fault injection: $trials trials, seed $seed, baseline AUC $baseline (noise $noise), baseline run ${base_s[0]} s"
printf '%5s  %-16s %12s %8s %10s %8s %8s %8s %7s %6s  %s\n' trial killed at_s restarts duplicated skipped auc "|dAUC|" total_s loads result
for r in "${rows[@]}"; do echo "$r"; done
max_delta=$(printf '%s\n' "${deltas[@]:-0}" | sort -g | tail -1)
mean_total=$(printf '%s\n' "${recoveries[@]:-0}" | awk '{s += $1; n++} END {printf "%.1f", n ? s / n : 0}')
echo "{\"trials\":$trials,\"passed\":$passed,\"seed\":$seed,\"baseline_auc\":$baseline,\"baseline_noise\":$noise,\"max_auc_delta\":$(printf '%.5f' "${max_delta:-0}"),\"baseline_s\":${base_s[0]},\"mean_killed_trial_s\":$mean_total,\"records_duplicated_total\":$dup_total,\"records_skipped_total\":$skip_total,\"kills_landed\":$kills_landed,\"kills_during_training\":$kills_training,\"startup_kills_unnamed_by_mpirun\":$unnamed_startup}"
exit $fail_total
