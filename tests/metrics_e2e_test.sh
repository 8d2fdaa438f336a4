#!/usr/bin/env bash
# Metrics end to end: a short freshet_train job under mpirun (2 servers, 2
# workers, 1 exporter: cluster-configs/local.pbtxt) with every rank's
# /metrics endpoint on a test port and metrics logs in the test's work dir.
#
# Asserts:
#   - while training runs, every rank's endpoint answers Prometheus text with
#     its rank and role labels and its role's metrics, and the counters that
#     show progress (server keys pulled, worker examples, exporter bytes
#     received) grow between two scrapes;
#   - afterwards each rank's JSON log exists, every line is a flat JSON
#     object with unix_ms (non-decreasing), uptime_s and the right rank and
#     role, the last line has the role's fields (the trainer's appear once
#     data preparation is over), the workers' last lines count every example,
#     and the status lines in the job's output are plain (not a live line);
#   - tools/plot turns the logs into non-empty PNG files.
#
# usage: tests/metrics_e2e_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
bin=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
out="$bin/../test-out/metrics_e2e"
rm -rf "$out"
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

fail() {
  echo "FAIL: $*" >&2
  [ -f "$out/train.log" ] && tail -20 "$out/train.log" >&2
  exit 1
}

# A base port unlikely to collide with other jobs on this machine: 5 free
# consecutive ports starting at a pseudo-random offset, below the kernel's
# ephemeral range (outgoing connections of the tests running beside this one,
# e.g. MPI's TCP links, take ports from that range without listening on
# them, so a free-looking port there can be taken before the rank binds it:
# seen once in CI).
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
eph_low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "${eph_low:-0}" -gt 12000 ] 2>/dev/null || eph_low=32768
span=$((eph_low - 10 - 10000))
base=""
for try in $(seq 1 50); do
  p=$((10000 + (RANDOM * 7 + $$ + try * 101) % span))
  ok=1
  for r in 0 1 2 3 4; do port_free $((p + r)) || ok=0; done
  if [ "$ok" = 1 ]; then base=$p; break; fi
done
[ -n "$base" ] || fail "no 5 free consecutive ports found"
echo "metrics_e2e: ranks serve /metrics on 127.0.0.1:$base..$((base + 4)), work dir $out"

# Small batches make the job last long enough to scrape it twice.
cd "$src"
mpirun --oversubscribe --bind-to none -np 5 "$bin/freshet_train" \
  --task=synthetic --cluster_config=cluster-configs/local.pbtxt --work_dir="$out" \
  --epochs=2 --batch_size=64 --save=false \
  --metrics_port="$base" --metrics_dir="$out/metrics" >"$out/train.log" 2>&1 &
job=$!
trap 'kill $job 2>/dev/null || true' EXIT

scrape() {  # scrape RANK FILE: GET /metrics with a deadline
  curl -sf --max-time 5 "http://127.0.0.1:$(($base + $1))/metrics" -o "$2"
}
value() {  # value FILE METRIC_NAME: the sample of that name (any labels)
  awk -v m="$2" '$1 ~ "^" m "(\\{|$)" { print $2; found = 1; exit } END { if (!found) exit 1 }' "$1"
}

# Wait (deadline 300 s: data generation comes first) for worker 0 to train.
deadline=$((SECONDS + 300))
while true; do
  kill -0 $job 2>/dev/null || fail "the job ended before training was seen on /metrics"
  if scrape 2 "$out/w0.prom" 2>/dev/null && [ "$(value "$out/w0.prom" freshet_train_steps_total || echo 0)" -gt 20 ]; then
    break
  fi
  [ $SECONDS -lt $deadline ] || fail "worker 0 did not train within 300 s"
  sleep 0.2
done

declare -A role=([0]=server [1]=server [2]=worker [3]=worker [4]=exporter)
declare -A must=(
  [server]="freshet_table_rows freshet_table_bytes freshet_server_keys_pulled_total freshet_server_pull_seconds_count freshet_server_push_p99_seconds freshet_staleness_waiting_pulls freshet_transport_bytes_sent_total"
  [worker]="freshet_train_examples_total freshet_train_loss freshet_train_auc freshet_pull_seconds_count freshet_pull_p50_seconds freshet_push_p99_seconds freshet_pull_bytes_in_total freshet_push_bytes_out_total freshet_transport_bytes_received_total"
  [exporter]="freshet_export_lag_seconds freshet_export_freshness_seconds freshet_export_rows_total freshet_transport_bytes_received_total")
declare -A grows=([server]=freshet_server_keys_pulled_total [worker]=freshet_train_examples_total
                  [exporter]=freshet_transport_bytes_received_total)
for r in 0 1 2 3 4; do
  scrape $r "$out/a$r.prom" || fail "rank $r: no answer on port $((base + r))"
  grep -q "^# TYPE freshet_" "$out/a$r.prom" || fail "rank $r: no Prometheus TYPE lines"
  grep -q "{rank=\"$r\",role=\"${role[$r]}\"}" "$out/a$r.prom" || fail "rank $r: labels missing"
  for m in ${must[${role[$r]}]}; do
    value "$out/a$r.prom" "$m" >/dev/null || fail "rank $r (${role[$r]}): no $m"
  done
done
sleep 2
for r in 0 1 2 3 4; do
  scrape $r "$out/b$r.prom" || fail "rank $r: no answer to the second scrape (job over too soon?)"
  m=${grows[${role[$r]}]}
  a=$(value "$out/a$r.prom" "$m"); b=$(value "$out/b$r.prom" "$m")
  [ "$b" -gt "$a" ] || fail "rank $r: $m did not grow in 2 s ($a -> $b)"
  echo "metrics_e2e: rank $r (${role[$r]}): $m $a -> $b"
done

wait $job || fail "freshet_train failed"
trap - EXIT
trained=$(grep -o '"train_examples":[0-9]*' "$out/train.log" | head -1 | cut -d: -f2)
[ -n "$trained" ] || fail "no final JSON line in train.log"

# The logs: flat JSON objects, one per line, with the role's fields.
declare -A fields=([server]="table_rows server_keys_pulled_per_s server_pull_p99_ms"
                   [worker]="train_loss train_auc train_examples_per_s pull_p50_ms pull_p99_ms push_p99_ms"
                   [exporter]="export_lag_seconds export_freshness_seconds export_rows")
examples=0
for r in 0 1 2 3 4; do
  f="$out/metrics/metrics-rank$r.jsonl"
  [ -s "$f" ] || fail "no metrics log $f"
  awk -v r="$r" -v role="${role[$r]}" -v want="${fields[${role[$r]}]}" -v f="$f" '
    {
      if ($0 !~ /^\{("[a-z0-9_]+":(-?[0-9][0-9.e+-]*|"[a-z]+"),)*"[a-z0-9_]+":(-?[0-9][0-9.e+-]*|"[a-z]+")\}$/) {
        printf "%s:%d: not a flat JSON object: %s\n", f, NR, $0; bad = 1; exit 1
      }
      if (index($0, "\"rank\":" r ",\"role\":\"" role "\"") == 0) {
        printf "%s:%d: rank/role fields wrong\n", f, NR; bad = 1; exit 1
      }
      if (index($0, "\"unix_ms\":") != 2 || index($0, "\"uptime_s\":") == 0) {
        printf "%s:%d: no unix_ms first or no uptime_s\n", f, NR; bad = 1; exit 1
      }
      lastline = $0
      match($0, /"unix_ms":[0-9]+/); t = substr($0, RSTART + 10, RLENGTH - 10) + 0
      if (t < last) { printf "%s:%d: unix_ms went back\n", f, NR; bad = 1; exit 1 }
      last = t
    }
    END {
      if (bad) exit 1
      if (NR < 3) { printf "%s: only %d lines\n", f, NR; exit 1 }
      n = split(want, W, " ")
      for (i = 1; i <= n; i++) if (index(lastline, "\"" W[i] "\":") == 0) {
        printf "%s: last line has no field %s\n", f, W[i]; exit 1
      }
    }' "$f" ||
    fail "metrics log of rank $r"
  if [ "${role[$r]}" = worker ]; then
    n=$(tail -1 "$f" | grep -o '"train_examples":[0-9]*' | cut -d: -f2)
    examples=$((examples + n))
  fi
done
# train_examples (this worker's) summed over workers: the job's total.
[ "$examples" -eq "$trained" ] ||
  fail "workers' final train_examples sum to $examples; the job trained $trained"
if grep -q $'\r' "$out/train.log"; then fail "live status line (\\r) in a log file"; fi
grep -q '^train  epoch 1  step' "$out/train.log" || fail "no plain status lines in train.log"
echo "metrics_e2e: logs OK ($(cat "$out"/metrics/*.jsonl | wc -l) lines), workers' examples $examples"

"$src/tools/plot" "$out/metrics" -o "$out/plots" || fail "tools/plot failed"
for p in dashboard training throughput latency freshness tables time_split; do
  png="$out/plots/$p.png"
  [ -s "$png" ] || fail "no $png"
  [ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "$png is not a PNG"
  [ "$(stat -c %s "$png")" -gt 10000 ] || fail "$png is suspiciously small (empty plot?)"
done
echo "metrics_e2e: PASS"
