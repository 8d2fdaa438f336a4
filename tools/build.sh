#!/usr/bin/env bash
# Configures and builds freshet into build/ (Release). Extra arguments go to
# CMake, e.g. tools/build.sh -DFRESHET_WITH_CUDA=OFF. Full log: build.log.
# FRESHET_BUILD_TARGETS="a b" builds only those targets (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
launcher=()
if command -v ccache >/dev/null; then
  # Compiler cache (installed by tools/bootstrap.sh); paths relative to the
  # checkout, so every clone (CI) shares it.
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
echo "build: configuring and compiling with $jobs jobs (log: build.log)"
if ! cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" "$@" >build.log 2>&1 ||
   ! cmake --build build -j "$jobs" ${FRESHET_BUILD_TARGETS:+--target $FRESHET_BUILD_TARGETS} \
       >>build.log 2>&1; then
  grep -E 'error|Error' build.log | head -40
  echo "build: FAILED (see build.log)"
  exit 1
fi
grep -E '^-- freshet:' build.log || true
echo "build: binaries in build/bin/: $(ls build/bin | tr '\n' ' ')"
