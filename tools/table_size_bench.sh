#!/usr/bin/env bash
# Table size vs model quality under feature admission and TTL eviction
# (docs/TABLES.md). Trains taobao-conversion and retail-purchase with the
# single-process reference trainer (freshet_train --local: same tables and
# optimizers as the servers) once per setting, every table of the job given
# the setting:
#   base           no admission, no eviction
#   admit=1,2,5    admission.min_count (1 = admit at once, with the sketch off)
#   ttl=1h,1d      eviction.ttl_s in event time (3600, 86400)
# and prints holdout AUC, table rows and bytes, keys held back and rows
# evicted. Last line: one JSON object with every figure.
#
# usage: tools/table_size_bench.sh [tasks...]   (after tools/build.sh)
#   TABLE_BENCH_MAX_STEPS=N   stop each run after N steps (0: full epochs)
#   TABLE_BENCH_EPOCHS=N      passes over train (default 1: a stream's one
#                             pass; TTLs act in event time, which a later
#                             pass replays, so one pass shows them cleanly)
#   TABLE_BENCH_STORAGE=FP16  also set storage (FP32, FP16, BF16) on every table
#
# tools/table_size_bench.sh memory   bytes per row of one filled dim-16
#   Adagrad table (64 partitions, as a server's), allocated and resident, for
#   fp32, fp16 and bf16 weights, against the payload (key + weights + fp32
#   accumulators), with freshet_table_bench. Issue 16's bound: resident
#   <= payload + 16 bytes (152 at fp32) at 10M rows.
#   TABLE_BENCH_ROWS=10000000 rows (default 10M)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = memory ]; then
  rows=${TABLE_BENCH_ROWS:-10000000}
  [ -x build/bin/freshet_table_bench ] || { echo "table_size_bench: build freshet_table_bench" >&2; exit 1; }
  printf "%-8s %10s %16s %16s %10s %12s\n" storage rows allocated_B/row resident_B/row payload overhead
  json="{\"bench\":\"table_memory\",\"rows\":$rows,\"runs\":["
  first=1
  for st in FP32 FP16 BF16; do
    line=$(build/bin/freshet_table_bench --rows="$rows" --dims=16 --ops= --storage="$st" 2>/dev/null |
             grep -o '{"dim":16,"op":"memory"[^}]*}')
    get() { echo "$line" | grep -oE "\"$1\":[0-9.eE+-]+" | cut -d: -f2; }
    alloc=$(get bytes_per_row); res=$(get resident_bytes_per_row); pay=$(get payload_bytes_per_row)
    printf "%-8s %10d %16.1f %16.1f %10.0f %12.1f\n" "$st" "$rows" "$alloc" "$res" "$pay" \
      "$(echo "$res - $pay" | bc -l)"
    [ $first -eq 1 ] || json+=","
    first=0
    json+="{\"storage\":\"$st\",\"bytes_per_row\":$alloc,\"resident_bytes_per_row\":$res,"
    json+="\"payload_bytes_per_row\":$pay}"
  done
  echo "$json]}"
  exit 0
fi
tasks=("$@")
[ ${#tasks[@]} -eq 0 ] && tasks=(taobao-conversion retail-purchase)
max_steps=${TABLE_BENCH_MAX_STEPS:-0}
epochs=${TABLE_BENCH_EPOCHS:-1}
storage=${TABLE_BENCH_STORAGE:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
settings=("base:" "admit=1:admission { min_count: 1 }" "admit=2:admission { min_count: 2 }"
          "admit=5:admission { min_count: 5 }" "ttl=1h:eviction { ttl_s: 3600 }"
          "ttl=1d:eviction { ttl_s: 86400 }")
json="{\"bench\":\"table_size\",\"max_steps\":$max_steps,\"epochs\":$epochs,\"storage\":\"${storage:-FP32}\",\"runs\":["
first=1
printf "%-18s %-8s %10s %12s %14s %14s %12s %10s\n" task setting holdout_auc table_rows \
  table_bytes held_back_push evicted_ttl train_s
for task in "${tasks[@]}"; do
  src=cluster-configs/jobs/$task.pbtxt
  [ -f "$src" ] || { echo "table_size_bench: no job config $src" >&2; exit 1; }
  for s in "${settings[@]}"; do
    name=${s%%:*}
    extra=${s#*:}
    [ -n "$storage" ] && extra="$extra storage: $storage"
    job=$tmp/$task-$name.pbtxt
    # Every table: insert the setting after its optimizer line.
    awk -v extra="$extra" '{print} /^ *optimizer *\{.*\} *$/ && extra != "" {print "    " extra}' \
      "$src" >"$job"
    start=$(date +%s.%N)
    out=$(build/bin/freshet_train --local --task="$task" --job_config="$job" --save=false \
            --max_steps="$max_steps" --epochs="$epochs" 2>"$tmp/err") || {
      echo "table_size_bench: $task $name failed:" >&2; tail -5 "$tmp/err" >&2; exit 1; }
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    tables=$(echo "$out" | grep '^tables: ' | tail -1 | sed 's/^tables: //')
    result=$(echo "$out" | grep -o '{.*}' | tail -1)
    getj() { echo "$1" | grep -oE "\"$2\":-?[0-9.eE+-]+" | head -1 | cut -d: -f2; }
    auc=$(getj "$result" holdout_auc)
    rows=$(getj "$tables" table_rows)
    bytes=$(getj "$tables" table_bytes)
    held=$(getj "$tables" held_back_pushes)
    ttl=$(getj "$tables" evicted_ttl)
    printf "%-18s %-8s %10.4f %12d %14d %14d %12d %10.1f\n" "$task" "$name" "$auc" "$rows" \
      "$bytes" "$held" "$ttl" "$secs"
    [ $first -eq 1 ] || json+=","
    first=0
    json+="{\"task\":\"$task\",\"setting\":\"$name\",\"holdout_auc\":$auc,\"table_rows\":$rows,"
    json+="\"table_bytes\":$bytes,\"held_back_pushes\":$held,\"evicted_ttl\":$ttl,"
    json+="\"train_s\":$(printf %.1f "$secs")}"
  done
done
echo "$json]}"
