#!/usr/bin/env bash
# Training throughput on generated data (the synthetic shop): LR and DeepFM,
# 1 and 2 workers (one parameter server), one epoch, with each worker's time
# split into read/parse, pull (waiting), compute, push and all-reduce.
# Prints a table; the last line is one JSON object with every figure.
#
# usage: tools/train_bench.sh   (after tools/build.sh; run from anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf "%-7s %7s %12s %12s %7s %7s %8s %7s %9s\n" model workers "ex/s total" "ex/s/worker" \
  read pull compute push allreduce
json='{"bench":"train","data":"synthetic","runs":['
sep=
for model in lr deepfm; do
  for workers in 1 2; do
    line=$(launch/mpirun.sh -np $((workers + 1)) build/bin/freshet_train --task=synthetic \
             --cluster_config=cluster-configs/bench-1s${workers}w.pbtxt --model=$model \
             --epochs=1 --save=false --work_dir=out/synthetic 2>/dev/null | grep '^{' | tail -1)
    get() { echo "$line" | grep -oE "\"$1\":[0-9.]+" | head -1 | cut -d: -f2; }
    eps=$(get examples_per_s)
    per=$(echo "$eps / $workers" | bc -l)
    split=$(echo "$line" | grep -oE '"time_split_worker0_s":\{[^}]*\}')
    sv() { echo "$split" | grep -oE "\"$1\":[0-9.]+" | cut -d: -f2; }
    printf "%-7s %7d %12.0f %12.0f %6.2fs %6.2fs %7.2fs %6.2fs %8.2fs\n" $model $workers "$eps" "$per" \
      "$(sv read)" "$(sv pull)" "$(sv compute)" "$(sv push)" "$(sv allreduce)"
    json+="$sep{\"model\":\"$model\",\"workers\":$workers,\"examples_per_s\":$eps,\"examples_per_s_per_worker\":$(printf %.0f "$per"),\"holdout_auc\":$(get holdout_auc),$split}"
    sep=,
  done
done
echo "$json]}"
