#!/usr/bin/env bash
# The closed loop on one machine: simulated shop users (freshet_shop_sim) ask
# freshet_serve to rank their candidates, react to what they are shown, and
# their events stream into a freshet cluster (mpirun: servers, workers, an
# exporter) training continuously; the exporter publishes the model every
# second and freshet_serve follows it. The same simulated traffic (seed) is
# run once per arm, one arm after the other:
#   realtime  (a) serving loads every new export (real-time training);
#   frozen    (b) serving stops loading models --warmup seconds after the
#                 first one (the model frozen after a warm-up);
#   periodic  (c) like (a) during the warm-up, then serving loads a new model
#                 at most every --period_sim_s simulated seconds (a coarse
#                 retraining cadence: the same continuously trained model,
#                 published only that often).
# It prints CTR and purchase rate over simulated time per arm, the lift of
# (a) over (b) and (c) after the warm-up, and the freshness of the served
# model (p50/p99 of freshness_at_load_seconds from GET /model), and writes
# PNG plots (gnuplot) and the raw data into --out. Last line: JSON.
#
# usage: launch/realtime_demo.sh [--seconds=90] [--arms=realtime,frozen,periodic]
#          [--out=out/realtime_demo] [--speed=20] [--rate=10] [--warmup=20]
#          [--drift_period_s=240] [--trending_boost=2.0] [--trending_share=0.25]
#          [--period_sim_s=600] [--seed=1] [--explore=0.05]
#          [--check] [--min_lift_pct=0] [--no_build] [--bin_dir=build/bin]
#   --seconds   wall seconds of traffic per arm (default 90: ~6 min in all)
#   --warmup    wall seconds after which (b) freezes; the lift is measured
#               on the traffic after it
#   --check     exit 1 unless (a)'s CTR after the warm-up beats (b)'s (and
#               (c)'s when run) by at least --min_lift_pct percent, and its
#               expected CTR beats theirs: the closed-loop test
#               (tests/closed_loop_test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=90
arms=realtime,frozen,periodic
out=out/realtime_demo
speed=20
rate=10
warmup=20
drift=240
period_sim=600
seed=1
explore=0.05
boost=2.0
share=0.25
check=0
min_lift=0
build=1
bin=build/bin
config=cluster-configs/local.pbtxt
job=cluster-configs/jobs/realtime-demo.pbtxt
for a in "$@"; do
  case "$a" in
    --seconds=*) seconds=${a#*=} ;;
    --arms=*) arms=${a#*=} ;;
    --out=*) out=${a#*=} ;;
    --speed=*) speed=${a#*=} ;;
    --rate=*) rate=${a#*=} ;;
    --warmup=*) warmup=${a#*=} ;;
    --drift_period_s=*) drift=${a#*=} ;;
    --period_sim_s=*) period_sim=${a#*=} ;;
    --seed=*) seed=${a#*=} ;;
    --explore=*) explore=${a#*=} ;;
    --trending_boost=*) boost=${a#*=} ;;
    --trending_share=*) share=${a#*=} ;;
    --cluster_config=*) config=${a#*=} ;;
    --job_config=*) job=${a#*=} ;;
    --check) check=1 ;;
    --min_lift_pct=*) min_lift=${a#*=} ;;
    --no_build) build=0 ;;
    --bin_dir=*) bin=${a#*=} ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "realtime_demo: unknown argument $a (see --help)" >&2; exit 2 ;;
  esac
done
for v in seconds speed rate warmup drift period_sim seed explore boost share min_lift; do
  if ! [[ ${!v} =~ ^[0-9]+([.][0-9]+)?$ ]]; then
    echo "realtime_demo: --${v} must be a non-negative number, got '${!v}'" >&2; exit 2
  fi
done
if [ "$(echo "$warmup >= $seconds" | bc)" = 1 ]; then
  echo "realtime_demo: --warmup ($warmup) must be shorter than --seconds ($seconds)" >&2; exit 2
fi

if [ "$build" = 1 ]; then
  tools/bootstrap.sh
  FRESHET_BUILD_TARGETS="freshet_train freshet_serve freshet_ranks freshet_shop_sim" tools/build.sh
fi
for b in freshet_train freshet_serve freshet_ranks freshet_shop_sim; do
  [ -x "$bin/$b" ] || { echo "realtime_demo: $bin/$b is missing (build it first)" >&2; exit 2; }
done
[ -f "$job" ] || { echo "realtime_demo: job config $job not found" >&2; exit 2; }

np=$("$bin/freshet_ranks" --cluster_config="$config")
workers=$("$bin/freshet_ranks" --cluster_config="$config" --table | grep -c worker || true)
[ "$workers" -ge 1 ] || { echo "realtime_demo: $config has no worker" >&2; exit 2; }
warmup_sim=$(echo "$warmup * $speed" | bc)
period_wall=$(echo "scale=3; $period_sim / $speed" | bc)
mkdir -p "$out"
echo "realtime demo: arms $arms, $seconds s each (x$speed: $(echo "$seconds * $speed / 60" | bc) simulated minutes), $rate requests per simulated second, trend shifts every $drift simulated s"
echo "  cluster $config ($np ranks, $workers workers), job $job, output $out"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# Waits (up to $2 s) for file $1 to contain pattern $3.
wait_for() {
  local deadline=$((SECONDS + $2))
  until grep -q "$3" "$1" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then return 1; fi
    sleep 0.1
  done
}

# Runs one arm: $1 = name, the rest = extra freshet_serve flags.
run_arm() {
  local arm=$1; shift
  local d=$out/$arm
  rm -rf "$d"
  mkdir -p "$d"
  echo
  echo "== arm $arm: freshet_serve $*"
  "$bin/freshet_serve" --export_dir="$d/export" --port=0 --poll_ms=100 "$@" >"$d/serve.log" 2>&1 &
  local serve_pid=$!
  pids+=("$serve_pid")
  if ! wait_for "$d/serve.log" 20 'listening on'; then
    echo "realtime_demo: freshet_serve did not start (see $d/serve.log)" >&2; exit 1
  fi
  local port
  port=$(grep -oE 'listening on http://[0-9.]+:[0-9]+' "$d/serve.log" | grep -oE '[0-9]+$')
  mkdir -p "$d/stream"
  launch/mpirun.sh -np "$np" "$bin/freshet_train" --cluster_config="$config" \
    --job_config="$job" --work_dir="$d" --stream_dir="$d/stream" >"$d/train.log" 2>&1 &
  local train_pid=$!
  pids+=("$train_pid")
  # The served model, 4 times a second: version, freshness at load.
  (
    while kill -0 "$serve_pid" 2>/dev/null; do
      curl -s -m 1 "http://127.0.0.1:$port/model" 2>/dev/null | tr -d '\n' || true
      echo
      sleep 0.25
    done
  ) >"$d/model.jsonl" &
  local poll_pid=$!
  pids+=("$poll_pid")

  "$bin/freshet_shop_sim" --serve_url="http://127.0.0.1:$port" --stream_dir="$d/stream" \
    --job_config="$job" --seconds="$seconds" --speed="$speed" --rate="$rate" --seed="$seed" \
    --drift_period_s="$drift" --trending_boost="$boost" --trending_share="$share" --warmup_s="$warmup_sim" --interval_s=60 \
    --explore="$explore" --partitions="$workers" --metrics_file="$d/metrics.tsv" \
    >"$d/sim.log" 2>"$d/sim.err" || {
      echo "realtime_demo: freshet_shop_sim failed (see $d/sim.err)" >&2; tail -5 "$d/sim.err" >&2
      exit 1
    }
  sed -n '1,4p' "$d/sim.log" | sed 's/^/  /'
  # The stream has ended (_END): training drains it and exits.
  local deadline=$((SECONDS + 120))
  while kill -0 "$train_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
  if kill -0 "$train_pid" 2>/dev/null; then
    # An arm whose training never drained measured a model that stopped
    # learning at some unknown point: its figures mean nothing.
    echo "realtime_demo: training did not finish within 120 s of the stream's end (see $d/train.log)" >&2
    kill "$train_pid" 2>/dev/null || true
    tail -5 "$d/train.log" >&2
    exit 1
  elif ! wait "$train_pid"; then
    echo "realtime_demo: training failed (see $d/train.log)" >&2; tail -5 "$d/train.log" >&2; exit 1
  fi
  kill "$poll_pid" "$serve_pid" 2>/dev/null || true
  wait "$poll_pid" "$serve_pid" 2>/dev/null || true
  # Freshness of each version served (the first time /model showed it).
  awk '{
      if (!match($0, /"version":[0-9]+/)) next
      v = substr($0, RSTART + 10, RLENGTH - 10)
      if (!match($0, /"freshness_at_load_seconds":[-0-9.e+]+/)) next
      f = substr($0, RSTART + 28, RLENGTH - 28)
      if (!seen[v]++) print v, f
    }' "$d/model.jsonl" >"$d/freshness.txt"
  echo "  models served: $(grep -c 'serving model version' "$d/serve.log" || true) loads; $(wc -l <"$d/freshness.txt") versions seen with freshness"
}

IFS=, read -r -a arm_list <<<"$arms"
for arm in "${arm_list[@]}"; do
  case "$arm" in
    realtime) run_arm realtime ;;
    frozen) run_arm frozen --freeze_after_s="$warmup" ;;
    periodic) run_arm periodic --min_reload_interval_s="$period_wall" --reload_interval_after_s="$warmup" ;;
    *) echo "realtime_demo: unknown arm '$arm' (realtime, frozen, periodic)" >&2; exit 2 ;;
  esac
done

# ---- Report -------------------------------------------------------------------
# A field of the sim's summary JSON (its last line).
sim_json() { tail -1 "$out/$1/sim.log" | grep -oE "\"$2\":[-0-9.e+]+" | head -1 | cut -d: -f2; }
percentile() {  # $1 = file of numbers, $2 = p in [0, 100]
  sort -g "$1" | awk -v p="$2" '{v[NR] = $1} END {
    if (NR == 0) { print "nan"; exit }
    i = int(p / 100 * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; print v[i] }'
}

echo
echo "CTR (clicks / impressions) per simulated minute; '*' = before the end of the warm-up"
printf "%8s" "sim_min"
for arm in "${arm_list[@]}"; do printf "  %10s %9s" "$arm" "buy_rate"; done
printf "  %8s %8s\n" "oracle" "trending"
rows=$(awk 'NR > 1' "$out/${arm_list[0]}/metrics.tsv" | wc -l)
for ((r = 2; r <= rows + 1; r++)); do
  sim_s=$(awk -v r="$r" 'NR == r {print $1}' "$out/${arm_list[0]}/metrics.tsv")
  mark=" "
  if [ "$(echo "$sim_s <= $warmup_sim" | bc)" = 1 ]; then mark="*"; fi
  printf "%7.1f%s" "$(echo "$sim_s / 60" | bc -l)" "$mark"
  for arm in "${arm_list[@]}"; do
    awk -v r="$r" 'NR == r {printf "  %10.4f %9.4f", $8, $9}' "$out/$arm/metrics.tsv"
  done
  awk -v r="$r" 'NR == r {printf "  %8.4f %8s\n", $11, $14}' "$out/${arm_list[0]}/metrics.tsv"
done

echo
printf "%-10s %10s %10s %12s %10s %8s %8s\n" arm CTR buy_rate expected_CTR oracle_CTR requests cold
for arm in "${arm_list[@]}"; do
  printf "%-10s %10.4f %10.4f %12.4f %10.4f %8d %8d\n" "$arm" \
    "$(sim_json "$arm" ctr_after_warmup)" "$(sim_json "$arm" purchase_rate_after_warmup)" \
    "$(sim_json "$arm" expected_ctr_after_warmup)" "$(sim_json "$arm" oracle_ctr_after_warmup)" \
    "$(sim_json "$arm" requests)" "$(sim_json "$arm" cold_requests)"
done
echo "(after the warm-up: simulated time > $warmup_sim s)"

json="{\"seconds_per_arm\": $seconds, \"speed\": $speed, \"rate\": $rate, \"warmup_s\": $warmup"
lift_fail=0
for arm in "${arm_list[@]}"; do
  json="$json, \"ctr_$arm\": $(sim_json "$arm" ctr_after_warmup), \"purchase_rate_$arm\": $(sim_json "$arm" purchase_rate_after_warmup), \"expected_ctr_$arm\": $(sim_json "$arm" expected_ctr_after_warmup)"
done
if [[ " ${arm_list[*]} " == *" realtime "* ]]; then
  a_ctr=$(sim_json realtime ctr_after_warmup)
  a_exp=$(sim_json realtime expected_ctr_after_warmup)
  a_buy=$(sim_json realtime purchase_rate_after_warmup)
  for other in frozen periodic; do
    [[ " ${arm_list[*]} " == *" $other "* ]] || continue
    o_ctr=$(sim_json "$other" ctr_after_warmup)
    o_exp=$(sim_json "$other" expected_ctr_after_warmup)
    o_buy=$(sim_json "$other" purchase_rate_after_warmup)
    lift=$(echo "scale=6; ($a_ctr / $o_ctr - 1) * 100" | bc -l)
    lift_exp=$(echo "scale=6; ($a_exp / $o_exp - 1) * 100" | bc -l)
    lift_buy=$(echo "scale=6; ($a_buy / $o_buy - 1) * 100" | bc -l)
    printf "lift of realtime over %-8s: CTR %+.1f%%, expected CTR %+.1f%%, purchase rate %+.1f%%\n" \
      "$other" "$lift" "$lift_exp" "$lift_buy"
    json="$json, \"ctr_lift_pct_over_$other\": $lift, \"expected_ctr_lift_pct_over_$other\": $lift_exp, \"purchase_rate_lift_pct_over_$other\": $lift_buy"
    if [ "$(echo "$lift >= $min_lift && $a_ctr > $o_ctr && $a_exp > $o_exp" | bc -l)" != 1 ]; then
      lift_fail=1
    fi
  done
  f="$out/realtime/freshness.txt"
  awk '{print $2}' "$f" >"$out/realtime/freshness_values.txt"
  n=$(wc -l <"$out/realtime/freshness_values.txt")
  p50=$(percentile "$out/realtime/freshness_values.txt" 50)
  p99=$(percentile "$out/realtime/freshness_values.txt" 99)
  echo "freshness of the served model (realtime arm; loaded_unix_ms - ingest_wall_ms over $n versions): p50 ${p50} s, p99 ${p99} s"
  json="$json, \"freshness_p50_s\": $p50, \"freshness_p99_s\": $p99, \"freshness_versions\": $n"
fi

# ---- Plots --------------------------------------------------------------------
if command -v gnuplot >/dev/null; then
  plot_lines() {  # $1 = column, $2 = title, $3 = file
    local cmd="" sep=""
    for arm in "${arm_list[@]}"; do
      cmd="$cmd$sep'$out/$arm/metrics.tsv' using (\$1/60):$1 with linespoints title '$arm'"
      sep=", "
    done
    if [ "$1" = 8 ] || [ "$1" = 10 ]; then
      cmd="$cmd, '$out/${arm_list[0]}/metrics.tsv' using (\$1/60):11 with lines dashtype 2 title 'oracle (expected)'"
    fi
    gnuplot <<EOF
set terminal pngcairo size 900,500 noenhanced
set output '$3'
set datafile separator '\t'
set key autotitle columnhead outside
set title '$2 per simulated minute (warm-up ends at $(printf '%.1f' "$(echo "$warmup_sim / 60" | bc -l)") min)'
set xlabel 'simulated minutes'
set grid
set arrow from $(echo "$warmup_sim / 60" | bc -l),graph 0 to $(echo "$warmup_sim / 60" | bc -l),graph 1 nohead dashtype 3
plot $cmd
EOF
  }
  plot_lines 8 "CTR" "$out/ctr.png"
  plot_lines 10 "expected CTR (true P(click) of what was shown)" "$out/expected_ctr.png"
  plot_lines 9 "purchase rate" "$out/purchase_rate.png"
  if [ -s "$out/realtime/freshness_values.txt" ]; then
    sort -g "$out/realtime/freshness_values.txt" | awk '{print $1, NR}' >"$out/realtime/freshness_cdf.txt"
    gnuplot <<EOF
set terminal pngcairo size 900,500 noenhanced
set output '$out/freshness.png'
set title 'freshness of each served model version (realtime arm): p50 $p50 s, p99 $p99 s'
set xlabel 'seconds from ingestion by training to serving'
set ylabel 'share of versions'
set grid
stats '$out/realtime/freshness_cdf.txt' using 2 nooutput
plot '$out/realtime/freshness_cdf.txt' using 1:(\$2/STATS_max) with steps title 'CDF'
EOF
  fi
  echo "plots: $(ls "$out"/*.png | tr '\n' ' ')"
else
  echo "plots: skipped (gnuplot not installed; tools/bootstrap.sh installs gnuplot-nox)"
fi

echo "$json}"
if [ "$check" = 1 ] && [ "$lift_fail" = 1 ]; then
  echo "realtime_demo: CHECK FAILED: the real-time arm's CTR after the warm-up does not beat the others by ${min_lift}% (or its expected CTR does not beat theirs)" >&2
  exit 1
fi
