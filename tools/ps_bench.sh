#!/usr/bin/env bash
# The parameter-server throughput grid of issue 16: 1 server + 1 worker,
# 1M-row Adagrad tables of dim 16 and 64 (both loaded at once), push and pull
# of 1,024 / 16,384 / 65,536 uniform keys per request, one request in flight
# (--pipeline=1) and four (--pipeline=4), against the tables and against
# --table=none (the transport alone), over MPI's shared memory and over its
# TCP path (--mca btl tcp,self, what a multi-node job uses). Prints one table
# of Mkeys/s (payload GB/s, dim x 4 bytes per key, in brackets), medians over
# PS_BENCH_REPS runs of each configuration (the configurations alternate
# within a rep, so load on a shared box hits them alike), next to the ps-lite
# figures issue 16 measured on the 2-core box, and the targets:
#   p1 (table)  >= 2 x ps-lite storing (shm), >= ps-lite storing (tcp)
#   none (p1, shm) >= ps-lite ack-only; pulls of dim 64 x >= 16,384 keys
#                  >= 3 GB/s of payload
#   p4 (table)  push dim 16 x 16,384 >= 10 Mkeys/s, pull >= 25 Mkeys/s
# Last line: one JSON object with every median.
#
# usage: tools/ps_bench.sh            (after tools/build.sh)
#   PS_BENCH_REPS=3        runs per configuration (default 1)
#   PS_BENCH_SECONDS=1     timed seconds per case (default 1)
#   PS_BENCH_BIN=path      another freshet_ps_bench binary (A/B runs)
#   PS_BENCH_CONFIG=path   another cluster config (default bench-1s1w.pbtxt)
#   PS_BENCH_TRANSPORTS="shm tcp"  PS_BENCH_TABLES="table none"  PS_BENCH_PIPELINES="1 4"
#   PS_BENCH_KEYSPACE=1000000      rows per table
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${PS_BENCH_BIN:-build/bin/freshet_ps_bench}
config=${PS_BENCH_CONFIG:-cluster-configs/bench-1s1w.pbtxt}
reps=${PS_BENCH_REPS:-1}
secs=${PS_BENCH_SECONDS:-1}
transports=${PS_BENCH_TRANSPORTS:-shm tcp}
tables=${PS_BENCH_TABLES:-table none}
pipelines=${PS_BENCH_PIPELINES:-1 4}
keyspace=${PS_BENCH_KEYSPACE:-1000000}
[ -x "$bin" ] || { echo "ps_bench.sh: no $bin (run tools/build.sh)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for rep in $(seq 1 "$reps"); do
  for tr in $transports; do
    mca=()
    [ "$tr" = tcp ] && mca=(--mca btl tcp,self)
    for table in $tables; do
      for p in $pipelines; do
        out=$tmp/$tr-$table-p$p-$rep.json
        echo "ps_bench.sh: rep $rep/$reps $tr table=$table pipeline=$p" >&2
        if ! launch/mpirun.sh -np 2 "${mca[@]}" "$bin" \
            --cluster_config="$config" --dims=16,64 \
            --keys_per_request=1024,16384,65536 --keyspace="$keyspace" --memory_rows= \
            --seconds="$secs" --pipeline="$p" --table="$table" >"$tmp/log" 2>&1; then
          echo "ps_bench.sh: $tr table=$table pipeline=$p failed:" >&2
          tail -20 "$tmp/log" >&2
          exit 1
        fi
        grep '^{"bench":"ps"' "$tmp/log" | tail -1 >"$out"
      done
    done
  done
done
python3 - "$tmp" "$bin" "$reps" <<'EOF'
import glob, json, os, statistics, sys
tmp, binary, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
# ps-lite 15b8adf over ZeroMQ/TCP, 1 server + 1 worker, 1M keys, issue 16
# (Mkeys/s): (storing with Adagrad, ack only).
pslite = {
    ("push", 16, 1024): (0.81, 4.43), ("push", 16, 16384): (1.54, 40.0),
    ("push", 16, 65536): (2.79, 41.6), ("push", 64, 1024): (0.60, 4.11),
    ("push", 64, 16384): (0.94, 10.9), ("push", 64, 65536): (1.14, 8.56),
    ("pull", 16, 1024): (2.59, 3.54), ("pull", 16, 16384): (5.06, 26.5),
    ("pull", 16, 65536): (6.34, 28.7), ("pull", 64, 1024): (1.18, 3.26),
    ("pull", 64, 16384): (2.84, 8.28), ("pull", 64, 65536): (2.96, 7.02),
}
runs = {}  # (transport, table, pipeline) -> case key -> [(keys/s, GB/s, faults/req)]
for path in sorted(glob.glob(os.path.join(tmp, "*.json"))):
    tr, table, p, _ = os.path.basename(path)[:-5].split("-")
    with open(path) as f:
        text = f.read().strip()
    if not text:
        continue
    for c in json.loads(text)["cases"]:
        key = (c["op"], c["dim"], c["keys_per_request"])
        runs.setdefault((tr, table, p), {}).setdefault(key, []).append(
            (c["keys_per_s"] / 1e6, c["gb_per_s"],
             max(c["faults_per_request"], c.get("server_faults_per_request", 0))))
cols = sorted(runs, key=lambda k: (k[0] != "shm", k[1] != "table", k[2]))
med = {col: {key: tuple(statistics.median(v[i] for v in vals) for i in range(3))
             for key, vals in runs[col].items()} for col in cols}
print(f"freshet_ps_bench grid: 1 server + 1 worker, 1M-row Adagrad tables (dims 16 and 64 "
      f"loaded together), uniform keys; Mkeys/s (payload GB/s), median of {reps} run(s); "
      f"{binary}")
head = ["op", "dim", "keys/req"] + [f"{t} {tb} {p}" for t, tb, p in cols] + \
       ["ps-lite storing", "ps-lite ack"]
rows = []
fails = []
for key in sorted(pslite, key=lambda k: (k[0] != "push", k[1], k[2])):
    row = [key[0], str(key[1]), f"{key[2]:,}"]
    for col in cols:
        m = med[col].get(key)
        row.append("-" if m is None else f"{m[0]:.2f} ({m[1]:.2f})")
    store, ack = pslite[key]
    row += [f"{store:.2f}", f"{ack:.2f}"]
    rows.append(row)
    for t in ("shm", "tcp"):
        # Shared memory: twice ps-lite; MPI's TCP path: at least ps-lite.
        factor = 2 if t == "shm" else 1
        m = med.get((t, "table", "p1"), {}).get(key)
        if m and m[0] < factor * store:
            fails.append(f"{t} table p1 {key[0]} {key[1]}x{key[2]}: {m[0]:.2f} < {factor} x {store}")
        m = med.get((t, "none", "p1"), {}).get(key)
        if m and t == "shm" and m[0] < ack:
            fails.append(f"{t} none p1 {key[0]} {key[1]}x{key[2]}: {m[0]:.2f} < ack-only {ack}")
    if key[0] == "pull" and key[1] == 64 and key[2] >= 16384:
        # Large pulls through the transport alone, one in flight: >= 3 GB/s
        # of payload over shared memory.
        m = med.get(("shm", "none", "p1"), {}).get(key)
        if m and m[1] < 3.0:
            fails.append(f"shm none p1 pull 64x{key[2]}: {m[1]:.2f} GB/s < 3")
    if key[1] == 16 and key[2] == 16384:
        m = med.get(("shm", "table", "p4"), {}).get(key)
        goal = 10.0 if key[0] == "push" else 25.0
        if m and m[0] < goal:
            fails.append(f"shm table p4 {key[0]} 16x16384: {m[0]:.2f} < {goal}")
widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
fmt = lambda r: "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
print(fmt(head))
for r in rows:
    print(fmt(r))
worst = max((m[2] for col in med.values() for m in col.values()), default=0)
print(f"minor page faults per request (worker or server): at most {worst:.1f} in any cell")
print("targets missed: " + ("none" if not fails else str(len(fails))))
for f in fails:
    print("  " + f)
out = {"bench": "ps_grid", "reps": reps, "binary": binary, "cells": [
    {"transport": t, "table": tb, "pipeline": int(p[1:]), "op": k[0], "dim": k[1],
     "keys_per_request": k[2], "mkeys_per_s": round(m[0], 3), "gb_per_s": round(m[1], 4),
     "faults_per_request": round(m[2], 2)}
    for (t, tb, p), col in med.items() for k, m in sorted(col.items())]}
print(json.dumps(out, separators=(",", ":")))
EOF
