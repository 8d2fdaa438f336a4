#!/usr/bin/env bash
# The test command: set up (Debian packages), build, run every test with
# CTest (unit, conformance, and multi-process tests under mpirun).
# Extra arguments go to ctest, e.g. tools/test.sh -L mpi.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/bootstrap.sh
tools/build.sh
# Open MPI refuses to run as root without these.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd build
ctest --output-on-failure --timeout 600 -j "$(nproc 2>/dev/null || echo 2)" "$@"
