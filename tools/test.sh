#!/usr/bin/env bash
# The test command: set up (Debian packages), build, static checks
# (tools/check_static.sh: clang-format, clang -Wthread-safety), run every test with
# CTest (unit, conformance, and multi-process tests under mpirun), then the
# hostile-input steps (docs/RELIABILITY.md): the wire/server/snapshot/PS
# tests again under ASan + UBSan (tools/sanitize.sh --quick, build-asan/) and every fuzz target for
# FRESHET_FUZZ_SECONDS (default 30) s (tools/fuzz.sh, build-fuzz/).
# Extra arguments go to ctest, e.g. tools/test.sh -L mpi; then only that
# ctest selection runs. FRESHET_TEST_SANITIZE=0 / FRESHET_TEST_FUZZ=0 skip
# a hostile-input step, FRESHET_TEST_STATIC=0 the static checks.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/bootstrap.sh
tools/build.sh
# Formatting and clang's thread-safety analysis (FRESHET_TEST_STATIC=0 skips).
if [ "${FRESHET_TEST_STATIC:-1}" != 0 ]; then
  start=$(date +%s)
  tools/check_static.sh
  echo "test: static checks took $(( $(date +%s) - start )) s"
fi
# Open MPI refuses to run as root without these.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
(cd build && ctest --output-on-failure --timeout 600 -j "$(nproc 2>/dev/null || echo 2)" "$@")
[ $# -eq 0 ] || exit 0
if [ "${FRESHET_TEST_SANITIZE:-1}" != 0 ]; then
  start=$(date +%s)
  tools/sanitize.sh --quick
  echo "test: sanitizer step took $(( $(date +%s) - start )) s"
fi
if [ "${FRESHET_TEST_FUZZ:-1}" != 0 ]; then
  start=$(date +%s)
  tools/fuzz.sh --seconds "${FRESHET_FUZZ_SECONDS:-30}"
  echo "test: fuzz step took $(( $(date +%s) - start )) s"
fi
