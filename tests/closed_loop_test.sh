#!/usr/bin/env bash
# The closed loop in CI: a short launch/realtime_demo.sh run with the
# real-time arm and the frozen arm only, on the same simulated traffic,
# asserting (--check) that real-time training's CTR after the warm-up beats
# the model frozen after the warm-up by a margin (FRESHET_CLOSED_LOOP_MIN_LIFT,
# default 10%; README "The closed loop" has measured lifts), and its expected CTR
# beats the frozen model's.
# usage: tests/closed_loop_test.sh SOURCE_DIR BIN_DIR [OUT_DIR]
set -euo pipefail
src=$1
bin=$(cd "$2" && pwd)
out=${3:-$(mktemp -d /tmp/freshet_closed_loop.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$src"
launch/realtime_demo.sh --no_build --bin_dir="$bin" --out="$out" \
  --arms=realtime,frozen --seconds="${FRESHET_CLOSED_LOOP_SECONDS:-45}" --warmup=12 --check \
  --min_lift_pct="${FRESHET_CLOSED_LOOP_MIN_LIFT:-10}"

# The event contract end to end (docs/EVENT_FORMAT.md): training read every
# impression the simulator wrote, joined exactly its clicks, and found no
# bad line, orphan reaction or mismatch.
for arm in realtime frozen; do
  sim=$(tail -1 "$out/$arm/sim.log")
  imps=$(grep -oE '"impressions":[0-9]+' <<<"$sim" | cut -d: -f2)
  clicks=$(grep -oE '"clicks":[0-9]+' <<<"$sim" | cut -d: -f2)
  join=$(grep -E '^stream join \(all workers\)' "$out/$arm/train.log" | tail -1)
  read -r t_imp t_joined t_bad t_orphan t_mismatched < <(
    sed -E 's/.* imp ([0-9]+) joined ([0-9]+) .* orphan ([0-9]+) mismatched ([0-9]+) .* bad lines ([0-9]+).*/\1 \2 \5 \3 \4/' <<<"$join")
  echo "closed_loop_test: $arm: sim $imps impressions, $clicks clicks; training: $join"
  if [ "$t_imp" != "$imps" ] || [ "$t_joined" != "$clicks" ] || [ "$t_bad" != 0 ] ||
     [ "$t_orphan" != 0 ] || [ "$t_mismatched" != 0 ]; then
    echo "closed_loop_test: FAILED: $arm: training's stream counts do not match the simulator's" >&2
    exit 1
  fi
done
echo "closed_loop_test: PASSED"
