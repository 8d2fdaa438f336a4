#!/usr/bin/env bash
# The README's quality table: every task with LR and DeepFM (a task's
# <task>-lr.pbtxt / -deepfm.pbtxt job where one is tuned for that model,
# else the task's job with --model=), the retail-purchase layered jobs
# (DCN-v2, DIN attention, field-aware FM) and taobao's ESMM job, on
# the local cluster (cluster-configs/local.pbtxt, 2 servers + 2
# asynchronous workers), holdout metrics from worker 0's final JSON line.
# Each job's settings are its config's (cluster-configs/jobs/), chosen on a
# validation split, never on the holdout. Prints a Markdown table, then the
# commit it ran on.
#
# usage: tools/quality_table.sh   (after tools/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
echo "| task | job | holdout AUC | logloss | GAUC | reference | train ex/s |"
echo "|---|---|---|---|---|---|---|"
run() {  # task, label, freshet_train flags...
  local task=$1 label=$2 line ref=() ratio
  shift 2
  line=$(launch/mpirun.sh -np 5 build/bin/freshet_train --task="$task" "$@" \
           --save=false 2>/dev/null | grep '^{' | tail -1)
  get() { echo "$line" | grep -oE "\"$1\":[0-9.]+" | head -1 | cut -d: -f2; }
  if [ -n "$(get holdout_oracle_auc)" ]; then
    # Chance-adjusted: the share of the oracle's lift over chance reached.
    ratio=$(echo "($(get holdout_auc) - 0.5) / ($(get holdout_oracle_auc) - 0.5)" | bc -l)
    ref+=("oracle AUC $(get holdout_oracle_auc) (reached $(printf '%.3f' "$ratio") of its lift over chance)")
  fi
  [ -n "$(get popularity_baseline_auc)" ] && ref+=("item-popularity AUC $(get popularity_baseline_auc)")
  [ -n "$(get hr_at_10)" ] && ref+=("HR@10 $(get hr_at_10), NDCG@10 $(get ndcg_at_10)")
  if [[ "$line" == *'"heads":'* ]]; then  # multi-task: every head's holdout AUC
    ref+=("$(echo "$line" | python3 -c '
import json, sys
heads = json.loads(sys.stdin.read())["heads"]
print(", ".join("head %s AUC %.4f%s" % (n, h["auc"], " (pCVR on clicked: %.4f)" %
      h["conditional_auc"] if "conditional_auc" in h else "") for n, h in heads.items()))')")
  fi
  ref=$(IFS=';'; echo "${ref[*]:-}" | sed 's/;/; /g')
  printf "| %s | %s | %.4f | %.4f | %s | %s | %.0f |\n" "$task" "$label" "$(get holdout_auc)" \
    "$(get holdout_logloss)" "$(get holdout_gauc)" "$ref" "$(get examples_per_s)"
}
for task in synthetic taobao-conversion retail-purchase talkingdata-ctr; do
  for model in lr deepfm; do
    if [ -f "cluster-configs/jobs/$task-$model.pbtxt" ]; then  # a job tuned for that model
      run "$task" "$model ($task-$model.pbtxt)" --job_config="cluster-configs/jobs/$task-$model.pbtxt"
    else
      run "$task" "$model" --model="$model"
    fi
  done
done
for kind in dcn din ffm; do
  run retail-purchase "$kind (retail-purchase-$kind.pbtxt)" \
    --job_config="cluster-configs/jobs/retail-purchase-$kind.pbtxt"
done
# Issue 15: asynchronous training within 0.002 AUC of synchronous.
run retail-purchase "deepfm, synchronous (--staleness=0)" --staleness=0
# Multi-task (ESMM) jobs: every head's holdout AUC in the reference column.
run synthetic "esmm (synthetic-esmm.pbtxt)" --job_config=cluster-configs/jobs/synthetic-esmm.pbtxt
run synthetic "din-dcn (synthetic-din-dcn.pbtxt)" --job_config=cluster-configs/jobs/synthetic-din-dcn.pbtxt
run taobao-conversion "esmm (taobao-conversion-esmm.pbtxt)" \
  --job_config=cluster-configs/jobs/taobao-conversion-esmm.pbtxt
# taobao-conversion's holdout has about 1,000 positives: the DeepFM job
# again with the model's and the embedding table's seeds 2 and 3 (seed 1
# is its row above).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for seed in 2 3; do
  sed "s/seed: 1\b/seed: $seed/g" cluster-configs/jobs/taobao-conversion.pbtxt > "$tmp/seed$seed.pbtxt"
  run taobao-conversion "deepfm, seed $seed" --job_config="$tmp/seed$seed.pbtxt"
done
# The synthetic DIN + DCN job's share of the oracle's lift moves by about
# 0.001 between seeds, as much as its margin over issue 15's 0.97: seeds 2
# and 3 too.
for seed in 2 3; do
  sed "s/seed: 1\b/seed: $seed/g" cluster-configs/jobs/synthetic-din-dcn.pbtxt > "$tmp/din-dcn$seed.pbtxt"
  run synthetic "din-dcn, seed $seed" --job_config="$tmp/din-dcn$seed.pbtxt"
done
echo
echo "measured at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo ' (with local changes)')"
