#!/usr/bin/env bash
# Builds freshet with AddressSanitizer + UndefinedBehaviorSanitizer
# (-DFRESHET_SANITIZE=address,undefined, the default compiler) into
# build-asan/ and runs the unit and conformance tests and the fast
# multi-process MPI tests under them. Any report fails the run:
# halt_on_error=1 for both, UB made fatal at compile time
# (-fno-sanitize-recover), leaks checked (LeakSanitizer) with the
# suppressions in tools/sanitizers/lsan.supp (leaks inside Open MPI and
# other system libraries we do not build; each entry says why).
#
#   tools/sanitize.sh            # build + ctest -L unit -LE e2e, + ps_mpi_parity
#   tools/sanitize.sh --quick    # the CI subset (what tools/test.sh runs, see below)
#   tools/sanitize.sh -R serving # extra arguments go to ctest instead of the default selection
#
# Not run under the sanitizers: the end-to-end tests (train_e2e_test,
# serve_e2e_test, the kill/hang and SLURM tests), which start many
# processes and take minutes even without instrumentation, and
# CrashSafetyTest.SigkillWhilePublishing* (SYNC and ASYNC durability), whose
# fork-and-SIGKILL schedule (a kill every 0-90 ms) assumes uninstrumented
# speed: an ASan child rarely publishes before it is killed. Both run in the
# normal ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
# Full run: every test binary labelled unit (the whole tree).
targets="all"
unit_regex=""
if [ "${1:-}" = "--quick" ]; then
  # The CI subset (tools/test.sh): the wire codec, transport, server, snapshot
  # and PS client/conformance tests and the MPI parity runs. It skips the
  # data, model, trainer and serving libraries, about half the ASan build
  # and 5 minutes of instrumented test time.
  shift
  targets="common_test ps_wire_test export_test server_test worker_test ps_conformance_test
           freshet_ps_mpi_driver file_io_test exporter_fault_test"
  unit_regex="^(common_test|ps_wire_test|export_test|server_test|worker_test|ps_conformance_test|file_io_test|exporter_fault_test)$"
fi
launcher=()
if command -v ccache >/dev/null; then
  # Paths relative to the checkout, so every clone (CI) shares the cache.
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
echo "sanitize: building the tests with ASan + UBSan into build-asan/ (log: build-asan.log)"
if ! cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
       -DFRESHET_SANITIZE=address,undefined -DFRESHET_WITH_CUDA=OFF "${launcher[@]}" \
       >build-asan.log 2>&1 ||
   ! cmake --build build-asan -j "$jobs" --target $targets >>build-asan.log 2>&1; then
  grep -E 'error|Error' build-asan.log | head -40
  echo "sanitize: build FAILED (see build-asan.log)"
  exit 1
fi

supp="$PWD/tools/sanitizers"
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:${ASAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export GTEST_FILTER="${GTEST_FILTER:--CrashSafetyTest.SigkillWhilePublishing*}"
cd build-asan
if [ $# -gt 0 ]; then
  ctest --output-on-failure --timeout 900 "$@"
else
  # Unit tests that start MPI in-process: Open MPI's leaks (below) make
  # leak checking useless there; they run with ASan and UBSan only.
  mpi_units="^(collective_test|worker_collective_test|nccl_collective_test)$"
  ctest --output-on-failure --timeout 900 -j "$jobs" -L unit -LE e2e ${unit_regex:+-R "$unit_regex"} \
    -E "$mpi_units"
  if [ -z "$unit_regex" ]; then
    ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" \
      ctest --output-on-failure --timeout 900 -R "$mpi_units"
  fi
  # Open MPI's leaks are in MCA plugins it dlclose()s at MPI_Finalize, so
  # their stacks read "<unknown module>" and no suppression can name them:
  # leak checking is off for the mpirun tests only (ASan and UBSan stay on).
  ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" \
    ctest --output-on-failure --timeout 900 -R ps_mpi_parity
fi
echo "sanitize: clean (ASan + UBSan + LSan)"
