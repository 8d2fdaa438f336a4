#!/usr/bin/env bash
# Freshness and serving benchmark on the local cluster:
#   1. starts freshet_serve on the job's export directory and polls its GET
#      /model every 20 ms, logging each newly loaded version: its load time,
#      and the ingestion time of the newest event it includes;
#   2. runs the training job (synthetic shop, default 1 s export interval)
#      while a wrk load generator sends /score requests on loopback;
#   3. reports event-to-servable latency p50/p99: an event ingested at t is
#      servable at the load time L of the first version whose ingestion
#      watermark covers t. Events are taken as uniformly spread between
#      consecutive watermarks (constant ingestion rate), so each reload
#      contributes latencies L - t over its interval, weighted by length;
#   4. serving throughput and latency from wrk, export bytes/s and delta sizes.
# Prints a summary; the last line is one JSON object.
#
# usage: tools/freshness_bench.sh [extra freshet_train flags]   (after tools/build.sh)
#        FRESHET_BENCH_LOAD=0 tools/freshness_bench.sh   measures freshness without the
#        wrk load (on 2 cores the load generator competes with training)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=out/freshness
rm -rf "$work/export" "$work/model" "$work/loads.tsv"
mkdir -p "$work"
[ -f "$work/train.examples" ] || build/bin/freshet_gen --out_dir="$work" >/dev/null

build/bin/freshet_serve --export_dir="$work/export" --port=0 >"$work/serve.log" 2>&1 &
serve=$!
wrk=""; poller=""
trap 'kill $serve $wrk $poller 2>/dev/null || true' EXIT
port=""
for _ in $(seq 1 100); do
  port=$(grep -oE 'listening on http://[0-9.]+:[0-9]+' "$work/serve.log" | grep -oE '[0-9]+$' || true)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "freshet_serve did not start:"; cat "$work/serve.log"; exit 1; }

# wrk: 2 connections posting a 10-example /score request, for the job's duration.
body=$(tools/examples_to_json.sh "$work/holdout.examples" 10)
cat >"$work/score.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA

# Poll /model: one line per newly served version (load_ms version ingest_ms created_ms).
(
  set +e +o pipefail
  last=""
  while true; do
    m=$(curl -s "http://127.0.0.1:$port/model" || true)
    v=$(echo "$m" | grep -oE '"version":[0-9]+' | cut -d: -f2)
    if [ -n "$v" ] && [ "$v" != "$last" ]; then
      last=$v
      printf '%s\t%s\t%s\t%s\n' "$(echo "$m" | grep -oE '"loaded_unix_ms":[0-9]+' | cut -d: -f2)" "$v" \
        "$(echo "$m" | grep -oE '"ingest_wall_ms":[0-9]+' | cut -d: -f2)" \
        "$(echo "$m" | grep -oE '"created_unix_ms":[0-9]+' | cut -d: -f2)" >>"$work/loads.tsv"
    fi
    sleep 0.02
  done
) &
poller=$!

start=$(date +%s.%N)
launch/mpirun.sh -np 5 build/bin/freshet_train --task=synthetic --work_dir="$work" \
  --save=false "$@" >"$work/train.log" 2>&1 &
train=$!
# Load starts once the first model is served (before that /score is 503).
for _ in $(seq 1 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/model")" = 200 ] && break
  sleep 0.05
done
[ "${FRESHET_BENCH_LOAD:-1}" = 1 ] && wrk -t1 -c2 -d600s --latency -s "$work/score.lua" "http://127.0.0.1:$port/score" >"$work/wrk.txt" 2>&1 &
wrk=$!
wait $train
train_s=$(echo "$(date +%s.%N) - $start" | bc)
sleep 1
kill -INT $wrk 2>/dev/null || true
wait $wrk 2>/dev/null || true
kill $poller 2>/dev/null || true
grep -E '^exporter:|holdout AUC' "$work/train.log" || true

# Freshness from the load log: load_ms version ingest_ms created_ms watermark
awk -F'\t' '
  { L[NR] = $1; W[NR] = $3; C[NR] = $4 }
  END {
    m = 0
    for (k = 2; k <= NR; k++) {
      if (W[k] <= W[k - 1]) continue
      len = W[k] - W[k - 1]
      for (j = 0; j < 50; j++) {            # 50 evenly spaced events in the interval
        t = W[k - 1] + (j + 0.5) * len / 50
        lat[++m] = L[k] - t; wt[m] = len / 50
      }
      pub[++np] = L[k] - C[k]
    }
    # weighted percentiles (insertion sort is fine for a few thousand points)
    for (i = 2; i <= m; i++) { x = lat[i]; y = wt[i]; j = i - 1
      while (j > 0 && lat[j] > x) { lat[j + 1] = lat[j]; wt[j + 1] = wt[j]; j-- }
      lat[j + 1] = x; wt[j + 1] = y }
    total = 0; for (i = 1; i <= m; i++) total += wt[i]
    acc = 0; p50 = p99 = 0
    for (i = 1; i <= m; i++) { acc += wt[i]
      if (!p50 && acc >= 0.5 * total) p50 = lat[i]
      if (!p99 && acc >= 0.99 * total) p99 = lat[i] }
    printf "%d\t%.0f\t%.0f\t%d\n", NR, p50, p99, np
  }' "$work/loads.tsv" >"$work/fresh.tsv"
read -r loads p50 p99 _ <"$work/fresh.tsv"
touch "$work/wrk.txt"
rps=$(grep -oE 'Requests/sec: +[0-9.]+' "$work/wrk.txt" | grep -oE '[0-9.]+$' || echo 0)
lat50=$(grep -E '^ +50%' "$work/wrk.txt" | awk '{print $2}' || true)
lat99=$(grep -E '^ +99%' "$work/wrk.txt" | awk '{print $2}' || true)
non2xx=$(grep -oE 'Non-2xx or 3xx responses: [0-9]+' "$work/wrk.txt" | grep -oE '[0-9]+$' || echo 0)
export_bytes=$(du -sb "$work/export" | cut -f1)
deltas=$(ls "$work/export" | grep -c '^delta-' || true)
delta_avg=$(ls -l "$work/export" | awk '/delta-/{s+=$5; n++} END{printf "%.0f", n ? s/n : 0}')
echo "training ${train_s}s; freshet_serve loaded $loads versions"
echo "event-to-servable latency: p50 ${p50} ms, p99 ${p99} ms (1 s export interval)"
echo "serving /score (10 examples/request, 2 connections): ${rps} req/s, latency p50 ${lat50}, p99 ${lat99}, non-2xx ${non2xx}"
echo "export directory (retained files): ${export_bytes} bytes, ${deltas} deltas kept, ${delta_avg} bytes per delta"
printf '{"bench":"freshness","train_s":%.1f,"versions_loaded":%d,"freshness_p50_ms":%s,"freshness_p99_ms":%s,"serve_rps":%s,"serve_latency_p50":"%s","serve_latency_p99":"%s","serve_non_2xx":%s,"export_bytes_retained":%s,"delta_bytes_avg":%s}\n' \
  "$train_s" "$loads" "$p50" "$p99" "$rps" "$lat50" "$lat99" "$non2xx" "$export_bytes" "$delta_avg"
