#!/usr/bin/env bash
# Scaling figures: how throughput changes with 1..4 workers (1 server) and
# 1..4 servers (1 worker), for
#   ps:    freshet_ps_bench, dim 16, 4096 uniform keys per request, pull and
#          push (--seconds each), 100k rows per table;
#   train: freshet_train on the synthetic shop, one epoch (DeepFM, async).
# Plus one ps run with Zipf(1.1) keys on 4 servers: how hot keys spread over
# the shards once each request is deduplicated.
#
# Every rank is a process on THIS machine: with more ranks than cores the
# runs are oversubscribed (the output says so) and measure CPU sharing, not
# a cluster. The load average before each run is printed beside it, since
# other work on the machine changes the figures.
# Prints a table; the last line is one JSON object with every figure.
#
# usage: tools/scaling_bench.sh [--seconds=S] [--max=N]   (default 1 s, N = 4)
#   (after tools/build.sh; freshet_train and freshet_ps_bench must be built)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=1
max=4
for a in "$@"; do
  case "$a" in
    --seconds=*) seconds=${a#--seconds=} ;;
    --max=*) max=${a#--max=} ;;
    *) echo "usage: $0 [--seconds=S] [--max=N]" >&2; exit 2 ;;
  esac
done
for b in freshet_train freshet_ps_bench; do
  [ -x "build/bin/$b" ] || { echo "scaling_bench: build/bin/$b missing; run tools/build.sh" >&2; exit 1; }
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cores=$(nproc)

config() {  # config S W -> path of a cluster config with S servers, W workers
  local f="$tmp/s$1w$2.pbtxt"
  cat >"$f" <<EOF
name: "scale-$1s$2w"
roles { role: SERVER count: $1 }
roles { role: WORKER count: $2 }
transport { request_timeout_ms: 120000 }
EOF
  echo "$f"
}
load() { cut -d' ' -f1 /proc/loadavg; }
num() { grep -oE "\"$2\":[0-9.e+-]+" <<<"$1" | head -1 | cut -d: -f2; }

# Training data (the synthetic shop) is generated once, outside the timing.
data=out/synthetic
if [ ! -s "$data/train.examples" ]; then
  echo "scaling_bench: generating the synthetic shop into $data (once)"
  launch/mpirun.sh -np 2 build/bin/freshet_train --task=synthetic --work_dir="$data" \
    --cluster_config="$(config 1 1)" --max_steps=1 --save=false >/dev/null
fi

echo "scaling_bench: $cores cores; runs with more ranks than $cores are oversubscribed"
printf "%-6s %7s %7s %5s %6s %14s %14s %12s %9s\n" bench servers workers ranks load \
  "pull keys/s" "push keys/s" "train ex/s" "oversub"
json='{"bench":"scaling","cores":'$cores',"runs":['
sep=
run_ps() {  # run_ps S W [extra flags]
  local s=$1 w=$2; shift 2
  local l line
  l=$(load)
  line=$(launch/mpirun.sh -np $((s + w)) build/bin/freshet_ps_bench --cluster_config="$(config "$s" "$w")" \
           --dims=16 --keys_per_request=4096 --keyspace=100000 --seconds="$seconds" \
           --memory_rows= "$@" 2>/dev/null | grep '^{' | tail -1)
  [ -n "$line" ] || { echo "scaling_bench: freshet_ps_bench failed at $s servers, $w workers" >&2; exit 1; }
  local pull push
  pull=$(grep -oE '\{"op":"pull"[^}]*\}' <<<"$line")
  push=$(grep -oE '\{"op":"push"[^}]*\}' <<<"$line")
  printf "%-6s %7d %7d %5d %6s %14.0f %14.0f %12s %9s\n" ps "$s" "$w" $((s + w)) "$l" \
    "$(num "$pull" keys_per_s)" "$(num "$push" keys_per_s)" - "$([ $((s + w)) -gt "$cores" ] && echo yes || echo no)"
  json+="$sep{\"bench\":\"ps\",\"servers\":$s,\"workers\":$w,\"load\":$l,\"zipf\":$(num "$line" zipf),\"pull_keys_per_s\":$(num "$pull" keys_per_s),\"push_keys_per_s\":$(num "$push" keys_per_s),\"pull_ms_per_request\":$(num "$pull" ms_per_request),\"unique_fraction\":$(awk -v u="$(num "$pull" unique_per_request)" 'BEGIN { printf "%.4f", u / 4096 }'),\"max_shard_share\":$(num "$pull" max_shard_share)}"
  sep=,
}
run_train() {  # run_train S W
  local s=$1 w=$2 l line
  l=$(load)
  line=$(launch/mpirun.sh -np $((s + w)) build/bin/freshet_train --task=synthetic --work_dir="$data" \
           --cluster_config="$(config "$s" "$w")" --epochs=1 --save=false 2>/dev/null |
         grep '^{' | tail -1)
  [ -n "$line" ] || { echo "scaling_bench: freshet_train failed at $s servers, $w workers" >&2; exit 1; }
  printf "%-6s %7d %7d %5d %6s %14s %14s %12.0f %9s\n" train "$s" "$w" $((s + w)) "$l" - - \
    "$(num "$line" examples_per_s)" "$([ $((s + w)) -gt "$cores" ] && echo yes || echo no)"
  local split
  split=$(grep -oE '"time_split_worker0_s":\{[^}]*\}' <<<"$line")
  json+="$sep{\"bench\":\"train\",\"servers\":$s,\"workers\":$w,\"load\":$l,\"examples_per_s\":$(num "$line" examples_per_s),\"holdout_auc\":$(num "$line" holdout_auc),$split}"
  sep=,
}

for w in $(seq 1 "$max"); do run_ps 1 "$w"; done
for s in $(seq 2 "$max"); do run_ps "$s" 1; done
run_ps "$max" 1 --zipf=1.1
for w in $(seq 1 "$max"); do run_train 1 "$w"; done
for s in $(seq 2 "$max"); do run_train "$s" 1; done
echo "(ps keys/s count requested keys; with Zipf keys only the unique ones reach a server)"
echo "$json],\"load_after\":$(load)}"
