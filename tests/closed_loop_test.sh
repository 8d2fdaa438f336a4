#!/usr/bin/env bash
# The closed loop in CI: a short launch/realtime_demo.sh run with the
# real-time arm and the frozen arm only, on the same simulated traffic,
# asserting (--check) that real-time training's CTR after the warm-up beats
# the model frozen after the warm-up (realized and expected CTR both).
# usage: tests/closed_loop_test.sh SOURCE_DIR BIN_DIR [OUT_DIR]
set -euo pipefail
src=$1
bin=$(cd "$2" && pwd)
out=${3:-$(mktemp -d /tmp/freshet_closed_loop.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$src"
launch/realtime_demo.sh --no_build --bin_dir="$bin" --out="$out" \
  --arms=realtime,frozen --seconds="${FRESHET_CLOSED_LOOP_SECONDS:-45}" --warmup=12 --check
