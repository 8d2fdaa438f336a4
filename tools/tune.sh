#!/usr/bin/env bash
# A small hyper-parameter search on the validation split (issue 15, part 2):
# every combination of sparse learning rate (every table's optimizer), dense
# learning rate and embedding dim is trained on a local cluster
# (launch/mpirun.sh -np 5 with cluster-configs/local.pbtxt: 2 servers, 2
# asynchronous workers, an exporter) with data.validation_fraction and
# early stopping, so each trial also picks its number of passes. The trial
# with the best validation metric wins; the chosen job config (its learning
# rates and dim, epochs = its best pass, no validation split: the final job
# trains on all of train) is written to --out.
#
# The holdout is never used for a choice: the trials' holdout figures go to
# the trials log only, never into the ranking or onto the screen.
#
# usage: tools/tune.sh --task=retail-purchase [--out=FILE] [--job_config=FILE]
#          [--sparse_lr="0.02 0.05 0.1"] [--dense_lr="0.001 0.003"] [--dims="8 16"]
#          [--max_epochs=6] [--patience=1] [--fraction=0.1] [--metric=auc]
#          [--np=5] [--cluster_config=FILE] [-- extra freshet_train flags]
# (after tools/build.sh). An empty list ("") keeps the job's value.
# Trials log: <work_dir>/tune/trials.jsonl (one JSON line per trial).
set -euo pipefail
cd "$(dirname "$0")/.."

task=""
out=""
job=""
sparse_lr="0.02 0.05 0.1"
dense_lr="0.001 0.003"
dims="8 16"
max_epochs=6
patience=1
fraction=0.1
metric=auc
np=5
cluster=cluster-configs/local.pbtxt
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --task=*) task="${1#*=}" ;;
    --out=*) out="${1#*=}" ;;
    --job_config=*) job="${1#*=}" ;;
    --sparse_lr=*) sparse_lr="${1#*=}" ;;
    --dense_lr=*) dense_lr="${1#*=}" ;;
    --dims=*) dims="${1#*=}" ;;
    --max_epochs=*) max_epochs="${1#*=}" ;;
    --patience=*) patience="${1#*=}" ;;
    --fraction=*) fraction="${1#*=}" ;;
    --metric=*) metric="${1#*=}" ;;
    --np=*) np="${1#*=}" ;;
    --cluster_config=*) cluster="${1#*=}" ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "tune.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$task" ] || { echo "tune.sh: --task is required (see --help)" >&2; exit 2; }
case "$metric" in auc|gauc|logloss) ;; *) echo "tune.sh: --metric must be auc, gauc or logloss" >&2; exit 2 ;; esac
[ -n "$job" ] || job="cluster-configs/jobs/$task.pbtxt"
[ -n "$out" ] || out="out/$task/tune/$task.pbtxt"
bin=build/bin/freshet_train
[ -x "$bin" ] || { echo "tune.sh: $bin missing: run tools/build.sh first" >&2; exit 2; }
logdir="out/$task/tune"
mkdir -p "$logdir" "$(dirname "$out")"
trials="$logdir/trials.jsonl"
: >"$trials"

# Empty lists keep the job's value (one trial value "keep").
[ -n "$sparse_lr" ] || sparse_lr=keep
[ -n "$dense_lr" ] || dense_lr=keep
[ -n "$dims" ] || dims=keep
flag() {  # flag NAME VALUE: the override flag, or nothing for "keep"
  [ "$2" = keep ] || printf -- '--%s=%s' "$1" "$2"
}
get() { echo "$2" | grep -oE "\"$1\":-?[0-9.eE+-]+" | head -1 | cut -d: -f2; }

echo "tune.sh: task $task, job $job, validation: last $fraction of train by time," \
     "early stopping on $metric (patience $patience, at most $max_epochs passes)"
printf "%-6s %-10s %-10s %-5s %-6s %-9s %-9s %-9s %s\n" trial sparse_lr dense_lr dim passes \
  "best" "val_auc" "val_ll" "$metric"
best_value=""
best_args=()
best_pass=0
best_desc=""
n=0
for s in $sparse_lr; do
  for d in $dense_lr; do
    for k in $dims; do
      n=$((n + 1))
      args=()
      for f in "$(flag sparse_learning_rate "$s")" "$(flag dense_learning_rate "$d")" \
               "$(flag embedding_dim "$k")"; do
        [ -n "$f" ] && args+=("$f")
      done
      line=$(launch/mpirun.sh -np "$np" "$bin" --cluster_config="$cluster" --task="$task" \
               --job_config="$job" "${args[@]}" --epochs="$max_epochs" \
               --validation_fraction="$fraction" --early_stopping_patience="$patience" \
               --early_stopping_metric="$metric" --save=false "${extra[@]}" 2>/dev/null | grep '^{' | tail -1 || true)
      if [ -z "$line" ]; then
        echo "tune.sh: trial $n (${args[*]}) failed; rerun it by hand to see why" >&2
        continue
      fi
      echo "{\"trial\":$n,\"args\":\"${args[*]}\",\"result\":$line}" >>"$trials"
      pass=$(get best_pass "$line")
      value=$(get "validation_$metric" "$line")
      printf "%-6s %-10s %-10s %-5s %-6s %-9s %-9s %-9s %s\n" "$n" "$s" "$d" "$k" \
        "$(get passes "$line")" "$pass" "$(get validation_auc "$line")" \
        "$(get validation_logloss "$line")" "$value"
      [ -n "$value" ] || continue
      better=0
      if [ -z "$best_value" ]; then
        better=1
      elif [ "$metric" = logloss ]; then
        better=$(awk -v a="$value" -v b="$best_value" 'BEGIN { print (a < b) ? 1 : 0 }')
      else
        better=$(awk -v a="$value" -v b="$best_value" 'BEGIN { print (a > b) ? 1 : 0 }')
      fi
      if [ "$better" = 1 ]; then
        best_value=$value
        best_args=("${args[@]}")
        best_pass=$pass
        best_desc="trial $n: sparse_lr $s, dense_lr $d, dim $k, $pass passes"
      fi
    done
  done
done
[ -n "$best_value" ] || { echo "tune.sh: no trial succeeded" >&2; exit 1; }
echo "tune.sh: chosen $best_desc (validation $metric $best_value)"
# The chosen job: the winner's settings, epochs = its best pass, trained on
# all of train (no validation split, no early stopping).
tmp=$(mktemp)
"$bin" --task="$task" --job_config="$job" "${best_args[@]}" --epochs="$best_pass" \
  --validation_fraction=0 --early_stopping_patience=0 --write_job="$tmp"
{
  echo "# Chosen by tools/tune.sh on the validation split of $task (the last $fraction of"
  echo "# train by time; the holdout is never used for a choice): $best_desc,"
  echo "# validation $metric $best_value. $n trials over sparse_lr {$sparse_lr} x dense_lr"
  echo "# {$dense_lr} x dim {$dims}, early stopping on $metric (patience $patience,"
  echo "# at most $max_epochs passes); cluster $cluster, $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
  cat "$tmp"
} >"$out"
rm -f "$tmp"
echo "tune.sh: wrote $out (trials: $trials)"
