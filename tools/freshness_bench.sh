#!/usr/bin/env bash
# Freshness and serving benchmark on the local cluster:
#   1. starts freshet_serve on the job's export directory and polls its GET
#      /model every 20 ms, logging each newly loaded version: its load time,
#      and its two freshness clocks: ingest_wall_ms (when a worker read the
#      newest event it includes) and label_wall_ms (when the newest label it
#      includes became known; docs/METRICS.md "Freshness");
#   2. runs the training job (synthetic shop, default 1 s export interval)
#      while a wrk load generator sends /score requests on loopback;
#   3. reports read-to-servable latency p50/p99 (freshness_p50_ms/_p99_ms):
#      an event read at t is servable at the load time L of the first
#      version whose ingest_wall_ms covers t. Events are taken as uniformly
#      spread between consecutive clock values (constant read rate), so each
#      reload contributes latencies L - t over its interval, weighted by
#      length; and label-known-to-servable (label_freshness_p50_ms/_p99_ms),
#      the same computation over label_wall_ms. The headline figures are the
#      steady state (intervals between two deltas, events read once serving
#      had a model); the read-to-servable p99
#      over every interval, full snapshots included, is printed beside them;
#   4. serving throughput and latency from wrk, export bytes/s and delta sizes.
#   5. at scale: --table_rows=N makes the servers pre-fill the embedding
#      table with N generated rows (freshet_train --prefill_rows) before
#      training, so exports, serving loads and serving memory are measured
#      against an N-row model while training updates a small part of it;
#   6. serving memory (resident bytes against the bytes of keys + weights it
#      serves, both from GET /model), the time each new version took to
#      apply, the exporter's per-delta times, and /score latency while
#      deltas are applied (during training) and idle (after it).
# Prints a summary; the last line is one JSON object.
#
#   7. --durability=SYNC|ASYNC (export.durability, default SYNC): whether
#      a publish fsyncs before serving sees it, or a background thread
#      fsyncs after (the JSON's durable_lag_ms_p99: how long after).
#   8. periodic full snapshots (--export_full_interval_s=S, a freshet_train
#      flag; default 60 s) come from --full_source=COMPACT (the default:
#      compacted by the exporter beside the deltas) or SERVERS (collected
#      from the servers; deltas wait); freshness_p99_ms_with_fulls shows
#      what they cost.
#
# usage: tools/freshness_bench.sh [--table_rows=N] [--interval_s=1] [--storage=FP32|FP16]
#                                 [--epochs=3] [--full_source=COMPACT|SERVERS]
#                                 [--durability=SYNC|ASYNC]
#                                 [extra freshet_train flags]   (after tools/build.sh)
#        FRESHET_BENCH_LOAD=0 tools/freshness_bench.sh   measures freshness without the
#        wrk load (on 2 cores the load generator competes with training)
#        FRESHET_BENCH_PIN=1 tools/freshness_bench.sh   serving side (freshet_serve,
#        wrk, the /model poller) on core 0, the training job on the other
#        cores (taskset; needs 2 or more)
#        FRESHET_BENCH_SERVE_FLAGS="--poll_ms=50 ..."   extra freshet_serve flags
#        FRESHET_BENCH_SCORE_DELAY_MS=2   paced /score load: each of wrk's 2
#        connections waits 2 ms between requests (default 0: as fast as it can)
#        FRESHET_BENCH_IDLE_SETTLE_S=N   seconds between the end of training
#        and the idle /score load (default 30 from 10M rows, else 0: the box
#        stalls for a while after the training ranks free their memory)
# On 2 cores the /score latency during training includes the CPU the 5
# training ranks take; the idle figure has the box to itself. With
# FRESHET_BENCH_PIN=1 both figures have core 0 to themselves, so their
# ratio is what applying deltas costs scoring (a serving machine of its
# own); training then has one core less, so its freshness figures are not
# those of an unpinned run.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
table_rows=0
interval=1
storage=FP32
epochs=3
full_source=COMPACT
durability=SYNC
extra=()
for a in "$@"; do
  case "$a" in
    --table_rows=*) table_rows=${a#*=} ;;
    --interval_s=*) interval=${a#*=} ;;
    --storage=*) storage=${a#*=} ;;
    --epochs=*) epochs=${a#*=} ;;
    --full_source=*) full_source=${a#*=} ;;
    --durability=*) durability=${a#*=} ;;
    *) extra+=("$a") ;;
  esac
done
pin_serve=(); pin_train=(); pinned=false
if [ "${FRESHET_BENCH_PIN:-0}" = 1 ]; then
  cores=$(nproc)
  [ "$cores" -ge 2 ] || { echo "freshness_bench: FRESHET_BENCH_PIN=1 needs 2 or more cores ($cores here)" >&2; exit 2; }
  command -v taskset >/dev/null || { echo "freshness_bench: FRESHET_BENCH_PIN=1 needs taskset (util-linux)" >&2; exit 2; }
  pin_serve=(taskset -c 0); pin_train=(taskset -c "1-$((cores - 1))"); pinned=true
fi
work=out/freshness
rm -rf "$work/export" "$work/model" "$work/loads.tsv" "$work/versions.tsv"
mkdir -p "$work"
[ -f "$work/train.examples" ] || build/bin/freshet_gen --out_dir="$work" >/dev/null
# The synthetic job, with the embedding table's storage as asked.
job="$work/job.pbtxt"
sed "s/^    dim: 8$/    dim: 8\n    storage: $storage/" cluster-configs/jobs/synthetic.pbtxt >"$job"
echo "export { full_source: $full_source durability: $durability }" >>"$job"

"${pin_serve[@]}" build/bin/freshet_serve --export_dir="$work/export" --port=0 ${FRESHET_BENCH_SERVE_FLAGS:-} >"$work/serve.log" 2>&1 &
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
# Paced load: each connection waits this long between requests (wrk's
# delay() hook), about 2 x 1000 / ms requests a second at most; 0 (the
# default) sends as fast as serving answers, which on 2 cores takes about
# half of both from training and the exporter.
score_delay_ms=${FRESHET_BENCH_SCORE_DELAY_MS:-0}
if [ "$score_delay_ms" != 0 ]; then
  printf 'function delay()\n  return %s\nend\n' "$score_delay_ms" >>"$work/score.lua"
fi

# Poll /model: one line per newly served version (loaded_ms version ingest_ms
# created_ms apply_ms incremental rss_bytes served_bytes label_ms
# rss_anon_bytes).
field() { echo "$1" | grep -oE "\"$2\":[0-9.a-z]+" | head -1 | cut -d: -f2; }
# One process on one keep-alive connection: a curl and a few greps per poll
# (the script's first poller) spawned ~250 processes a second, which on 2
# cores took CPU from the very serving and training it measured.
python3 - "$port" "$work/loads.tsv" <<'PY' &
import http.client, re, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
keys = ("loaded_unix_ms", "version", "ingest_wall_ms", "created_unix_ms", "load_ms",
        "incremental", "rss_bytes", "served_bytes", "label_wall_ms", "rss_anon_bytes")
def field(text, key):  # the first "key":value, as field() above
    m = re.search('"%s":([0-9.a-z]+)' % key, text)
    return m.group(1) if m else ""
conn, last = None, None
with open(out, "a") as f:
    while True:
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/model")
            r = conn.getresponse()
            text = r.read().decode("utf-8", "replace")
            v = field(text, "version") if r.status == 200 else ""
            if v and v != last:
                last = v
                f.write("\t".join(field(text, k) for k in keys) + "\n")
                f.flush()
        except (OSError, http.client.HTTPException):
            conn = None
        time.sleep(0.02)
PY
poller=$!
[ "$pinned" = false ] || taskset -a -p -c "1-$((cores - 1))" $poller >/dev/null

start=$(date +%s.%N)
"${pin_train[@]}" launch/mpirun.sh -np 5 build/bin/freshet_train --task=synthetic --job_config="$job" \
  --work_dir="$work" --epochs="$epochs" --export_interval_s="$interval" \
  --prefill_rows="$table_rows" --save=false "${extra[@]}" >"$work/train.log" 2>&1 &
train=$!
# Load starts once the first model is served (before that /score is 503).
for _ in $(seq 1 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/model")" = 200 ] && break
  sleep 0.05
done
# (wrk itself in the background, not a subshell: SIGINT must reach it.)
if [ "${FRESHET_BENCH_LOAD:-1}" = 1 ]; then
  "${pin_serve[@]}" wrk -t1 -c2 -d3600s --latency -s "$work/score.lua" "http://127.0.0.1:$port/score" >"$work/wrk.txt" 2>&1 &
  wrk=$!
fi
wait $train
train_s=$(echo "$(date +%s.%N) - $start" | bc)
sleep 1
[ -z "$wrk" ] || kill -INT $wrk 2>/dev/null || true
[ -z "$wrk" ] || wait $wrk 2>/dev/null || true
# Idle means nothing left to load: wait (up to 30 min) until serving has
# the final version LATEST names, the end-of-training full snapshot, whose
# load takes a minute or more at 100M rows (measured idle before it, the
# /score load shared the box with that load).
final_v=$(sed -n 's/^manifest-0*\([0-9][0-9]*\)\.pb$/\1/p' "$work/export/LATEST" 2>/dev/null || true)
wait_start=$(date +%s.%N)
if [ -n "$final_v" ]; then
  for _ in $(seq 1 36000); do
    v=$(field "$(curl -s "http://127.0.0.1:$port/model" || true)" version)
    [ -n "$v" ] && [ "$v" -ge "$final_v" ] && break
    sleep 0.05
  done
fi
final_load_wait_s=$(echo "$(date +%s.%N) - $wait_start" | bc)
printf "serving had the final version %s %.1f s after training ended\n" "${final_v:-?}" "$final_load_wait_s"
# And let the box settle: on this VM, for 10-20 s after processes free
# ~10 GB (the 5 training ranks at 100M rows), every process stalls (a
# standalone freshet_serve's idle /score p99 went from 0.9 ms to 21-25 ms
# after a python process freed 10 GB, with the guest's CPUs idle).
idle_settle_s=${FRESHET_BENCH_IDLE_SETTLE_S:-$([ "$table_rows" -ge 10000000 ] && echo 30 || echo 0)}
sleep "$idle_settle_s"
kill $poller 2>/dev/null || true
grep -E '^exporter:|holdout AUC|prefilled' "$work/train.log" || true
# Idle: the same load with no training and no new versions.
: >"$work/wrk_idle.txt"
[ "${FRESHET_BENCH_LOAD:-1}" = 1 ] &&
  "${pin_serve[@]}" wrk -t1 -c2 -d5s --latency -s "$work/score.lua" "http://127.0.0.1:$port/score" >"$work/wrk_idle.txt" 2>&1
final_model=$(curl -s "http://127.0.0.1:$port/model" || true)

# Freshness from the load log (loaded_ms, and the clock in column `col`:
# 3 ingest_ms, read -> servable; 9 label_ms, label known -> servable; column
# 6 says whether the version was an incremental load). Steady state
# (steady=1): the intervals between two consecutive incremental versions;
# the intervals that end at or start from a full snapshot (the chain's start,
# the periodic fulls every export.full_interval_s, and the one after
# training) are left out, and so are the events read before serving had a
# model at all (an interval that starts before the first load: the start,
# when the servers' first full is collected and loaded); steady=0 takes
# every interval ("with fulls", the start included).
latency_awk='
  { L[NR] = $1; W[NR] = $col; I[NR] = ($6 == "true") }
  END {
    m = 0
    for (k = 2; k <= NR; k++) {
      if (W[k] <= W[k - 1]) continue
      if (steady && !(I[k] && I[k - 1])) continue
      if (steady && W[k - 1] < L[1]) continue
      len = W[k] - W[k - 1]
      for (j = 0; j < 50; j++) {            # 50 evenly spaced events in the interval
        t = W[k - 1] + (j + 0.5) * len / 50
        lat[++m] = L[k] - t; wt[m] = len / 50
      }
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
    printf "%d\t%.0f\t%.0f\n", NR, p50, p99
  }'
# Every version serving loaded, from its log (one machine-readable line per
# load: model_watcher.cc), in loads.tsv's columns (RSS columns 0): the
# /model poller above can miss versions on a busy box (a poll takes up to
# ~0.7 s there), which would stretch the intervals; it stays for RSS.
grep -oE '\[version=[0-9]+ loaded_unix_ms=[0-9]+ ingest_wall_ms=-?[0-9]+ label_wall_ms=-?[0-9]+ load_ms=[0-9.e+-]+ incremental=(true|false)\]' \
  "$work/serve.log" | tr -d '[]' | awk '{
    for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    printf "%s\t%s\t%s\t0\t%s\t%s\t0\t0\t%s\t0\n", f["loaded_unix_ms"], f["version"],
      f["ingest_wall_ms"], f["load_ms"], f["incremental"], f["label_wall_ms"] }' >"$work/versions.tsv"
awk -F'\t' -v col=3 -v steady=1 "$latency_awk" "$work/versions.tsv" >"$work/fresh.tsv"
read -r _ p50_all p99_all < <(awk -F'\t' -v col=3 -v steady=0 "$latency_awk" "$work/versions.tsv")
read -r loads p50 p99 _ <"$work/fresh.tsv"
awk -F'\t' -v col=9 -v steady=1 "$latency_awk" "$work/versions.tsv" >"$work/label_fresh.tsv"
read -r _ label50 label99 _ <"$work/label_fresh.tsv"
touch "$work/wrk.txt"
rps=$(grep -oE 'Requests/sec: +[0-9.]+' "$work/wrk.txt" | grep -oE '[0-9.]+$' || echo 0)
lat50=$(grep -E '^ +50%' "$work/wrk.txt" | awk '{print $2}' || true)
lat99=$(grep -E '^ +99%' "$work/wrk.txt" | awk '{print $2}' || true)
non2xx=$(grep -oE 'Non-2xx or 3xx responses: [0-9]+' "$work/wrk.txt" | grep -oE '[0-9]+$' || echo 0)
export_bytes=$(du -sb "$work/export" | cut -f1)
deltas=$(ls "$work/export" | grep -c '^delta-' || true)
delta_avg=$(ls -l "$work/export" | awk '/delta-/{s+=$5; n++} END{printf "%.0f", n ? s/n : 0}')
# wrk latency "1.23ms" / "850.00us" / "1.02s" -> ms
to_ms() { echo "$1" | awk '/us$/{sub("us","");printf "%.3f",$1/1000;next} /ms$/{sub("ms","");printf "%.3f",$1;next} /s$/{sub("s","");printf "%.3f",$1*1000;next} {print 0}'; }
score99=$(to_ms "$(grep -E '^ +99%' "$work/wrk.txt" | awk '{print $2}' || true)")
score99_idle=$(to_ms "$(grep -E '^ +99%' "$work/wrk_idle.txt" | awk '{print $2}' || true)")
# Exporter: "deltas: p50 X ms, p99 Y ms, Z rows on average"
exp_line=$(grep -E '^exporter: [0-9]+ full' "$work/train.log" | tail -1)
export50=$(echo "$exp_line" | grep -oE 'p50 [0-9.]+' | cut -d' ' -f2)
export99=$(echo "$exp_line" | grep -oE 'p99 [0-9.]+' | cut -d' ' -f2)
durable_line=$(grep -E '^exporter: durable \(ASYNC\)' "$work/train.log" | tail -1 || true)
durable99=$(echo "$durable_line" | grep -oE 'p99 [0-9.]+' | cut -d' ' -f2 || true)
delta_rows=$(echo "$exp_line" | grep -oE '[0-9.]+ rows on average' | cut -d' ' -f1)
# Serving: apply time of incremental versions (p99), resident bytes (max over
# versions after the first full load, and at the end) and served bytes.
apply99=$(awk -F'\t' '$6=="true"{print $5}' "$work/versions.tsv" | sort -g |
  awk '{a[NR]=$1} END{if(NR==0){print 0}else{i=int(0.99*NR);if(i<1)i=1;print a[i]}}')
# While deltas are applied: the largest resident size seen after an
# incremental load. A full load (a new chain) builds the new model beside the
# serving one and reads the file whole: its peak is reported apart.
rss_max=$(awk -F'\t' '$6=="true" && $7>m{m=$7} END{print m+0}' "$work/loads.tsv")
served_at_max=$(awk -F'\t' '$6=="true" && $7>m{m=$7;s=$8} END{print s+0}' "$work/loads.tsv")
# The anonymous part of it (heap and mapped data, not the binary's and the
# shared libraries' pages, about 12 MB here whatever the model size).
rss_anon_max=$(awk -F'\t' '$6=="true" && $10>m{m=$10} END{print m+0}' "$work/loads.tsv")
rss_full=$(awk -F'\t' '$6!="true" && $7>m{m=$7} END{print m+0}' "$work/loads.tsv")
rss_end=$(field "$final_model" rss_bytes); rss_end=${rss_end:-0}
served_end=$(field "$final_model" served_bytes); served_end=${served_end:-0}
echo "training ${train_s}s; freshet_serve loaded $loads versions"
echo "read-to-servable latency (between deltas): p50 ${p50} ms, p99 ${p99} ms ($interval s export interval); every interval, fulls included: p50 ${p50_all} ms, p99 ${p99_all} ms"
echo "label-known-to-servable latency (between deltas): p50 ${label50} ms, p99 ${label99} ms"
echo "serving /score (10 examples/request, 2 connections): ${rps} req/s, latency p50 ${lat50}, p99 ${lat99}, non-2xx ${non2xx}"
echo "export directory (retained files): ${export_bytes} bytes, ${deltas} deltas kept, ${delta_avg} bytes per delta"
echo "exporter deltas: p50 ${export50} ms, p99 ${export99} ms, ${delta_rows} rows on average ($interval s interval)"
echo "serving: incremental apply p99 ${apply99} ms; resident ${rss_max} bytes at most while applying deltas (${rss_anon_max} of them anonymous; serving ${served_at_max} bytes of keys + weights then), ${rss_full} after a full load, ${rss_end} at the end (${served_end} served); /score p99 ${score99} ms during training, ${score99_idle} ms idle"
printf '{"bench":"freshness","commit":"%s","table_rows":%s,"storage":"%s","interval_s":%s,"full_source":"%s","durability":"%s","durable_lag_ms_p99":%s,"pinned":%s,"score_delay_ms":%s,"train_s":%.1f,"versions_loaded":%d,"freshness_p50_ms":%s,"freshness_p99_ms":%s,"freshness_p99_ms_with_fulls":%s,"label_freshness_p50_ms":%s,"label_freshness_p99_ms":%s,"export_ms_p50":%s,"export_ms_p99":%s,"delta_rows_avg":%s,"serve_apply_ms_p99":%s,"serve_rss_bytes":%s,"serve_rss_anon_bytes":%s,"served_model_bytes":%s,"serve_rss_bytes_full_load":%s,"serve_rss_bytes_end":%s,"served_model_bytes_end":%s,"score_p99_ms":%s,"score_p99_ms_idle":%s,"final_load_wait_s":%.1f,"idle_settle_s":%s,"serve_rps":%s,"serve_non_2xx":%s,"export_bytes_retained":%s,"delta_bytes_avg":%s}\n' \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$table_rows" "$storage" "$interval" "$full_source" "$durability" "${durable99:-0}" "$pinned" "$score_delay_ms" \
  "$train_s" "$loads" "$p50" "$p99" "$p99_all" "$label50" "$label99" "${export50:-0}" "${export99:-0}" "${delta_rows:-0}" \
  "${apply99:-0}" "$rss_max" "$rss_anon_max" "$served_at_max" "$rss_full" "$rss_end" "$served_end" "${score99:-0}" \
  "${score99_idle:-0}" "$final_load_wait_s" "$idle_settle_s" "$rps" "$non2xx" "$export_bytes" "$delta_avg"
