#!/usr/bin/env bash
# The README's quality table: every task with LR and DeepFM on the local
# cluster (cluster-configs/local.pbtxt, 2 servers + 2 workers), holdout
# metrics from worker 0's final JSON line. Prints a Markdown table.
#
# usage: tools/quality_table.sh   (after tools/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
echo "| task | model | holdout AUC | logloss | GAUC | reference | train ex/s |"
echo "|---|---|---|---|---|---|---|"
for task in synthetic taobao-conversion retail-purchase talkingdata-ctr; do
  for model in lr deepfm; do
    line=$(launch/mpirun.sh -np 5 build/bin/freshet_train --task=$task --model=$model \
             --save=false 2>/dev/null | grep '^{' | tail -1)
    get() { echo "$line" | grep -oE "\"$1\":[0-9.]+" | head -1 | cut -d: -f2; }
    ref=()
    [ -n "$(get holdout_oracle_auc)" ] && ref+=("oracle AUC $(get holdout_oracle_auc)")
    [ -n "$(get popularity_baseline_auc)" ] && ref+=("item-popularity AUC $(get popularity_baseline_auc)")
    [ -n "$(get hr_at_10)" ] && ref+=("HR@10 $(get hr_at_10), NDCG@10 $(get ndcg_at_10)")
    ref=$(IFS=';'; echo "${ref[*]:-}" | sed 's/;/; /g')
    printf "| %s | %s | %.4f | %.4f | %s | %s | %.0f |\n" $task $model "$(get holdout_auc)" \
      "$(get holdout_logloss)" "$(get holdout_gauc)" "$ref" "$(get examples_per_s)"
  done
done
