#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, -DFRESHET_FUZZ=ON: the
# whole tree instrumented with ASan + UBSan + coverage) into build-fuzz/ and
# runs each for N seconds (default 30) from its seed corpus
# (tests/fuzz/corpus/<target>/). Fails on the first crash, sanitizer report,
# out-of-memory (> 2 GiB RSS or one malloc > 1 GiB) or slow input (> 10 s);
# libFuzzer's crash-* / oom-* / timeout-* reproducer is left in
# build-fuzz/findings/<target>/ and its log in build-fuzz/fuzz-<target>.log.
#
#   tools/fuzz.sh [--seconds N] [target ...]   (default: every target, one after another)
#   build-fuzz/bin/<target> build-fuzz/findings/<target>/crash-...   # reproduce one
#
# New inputs found are kept in build-fuzz/corpus/<target>/ (not in the repo);
# copy a small interesting one into tests/fuzz/corpus/<target>/ to keep it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=30
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --seconds=*) seconds="${1#*=}"; shift ;;
    -h|--help) sed -n 2,14p "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/*_fuzz.cc; do targets+=("$(basename "$f" .cc)"); done
fi

launcher=()
if command -v ccache >/dev/null; then
  # Paths relative to the checkout, so every clone (CI) shares the cache.
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
echo "fuzz: building ${targets[*]} into build-fuzz/ (log: build-fuzz.log)"
if ! cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
       -DFRESHET_FUZZ=ON -DFRESHET_WITH_CUDA=OFF "${launcher[@]}" >build-fuzz.log 2>&1 ||
   ! cmake --build build-fuzz -j "$(nproc 2>/dev/null || echo 2)" --target "${targets[@]}" \
       >>build-fuzz.log 2>&1; then
  grep -E 'error|Error' build-fuzz.log | head -40
  echo "fuzz: build FAILED (see build-fuzz.log)"
  exit 1
fi

export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:allocator_may_return_null=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
export GLOG_minloglevel=3   # parsers may log bad records; keep the output readable
failed=()
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t" "build-fuzz/findings/$t"
  seeds="tests/fuzz/corpus/$t"
  [ -d "$seeds" ] || seeds=""
  log="build-fuzz/fuzz-$t.log"
  start=$(date +%s)
  if build-fuzz/bin/"$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -malloc_limit_mb=1024 -max_len=65536 -print_final_stats=1 \
       -artifact_prefix="build-fuzz/findings/$t/" "build-fuzz/corpus/$t" $seeds >"$log" 2>&1; then
    execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1)
    echo "fuzz: $t ok ($(( $(date +%s) - start )) s, ${execs:-?} inputs, ${cov:-cov: ?})"
  else
    echo "fuzz: $t FAILED (log: $log; reproducer in build-fuzz/findings/$t/):"
    grep -E 'ERROR|FUZZ_CHECK|runtime error|SUMMARY|Test unit written' "$log" | head -8
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds} s without a finding"
