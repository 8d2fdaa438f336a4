#!/usr/bin/env bash
# Installs the Debian packages freshet needs to build, test and run.
# Idempotent: installs only what is missing, and runs `apt-get update` once,
# only when something must be installed. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  openmpi-bin libopenmpi-dev          # MPI launcher and library
  protobuf-compiler libprotobuf-dev   # configs and wire headers
  libgoogle-glog-dev libgflags-dev    # logging, command-line flags
  libgtest-dev libgmock-dev           # tests
  libeigen3-dev libopenblas-dev       # CPU dense math
  libcpp-httplib-dev nlohmann-json3-dev  # serving tier: HTTP server, JSON
  wrk curl                            # serving load benchmark, main job demo
  bc procps                           # test scripts
  gnuplot-nox                         # PNG plots (tools/plot, launch/realtime_demo.sh)
  clang libclang-rt-dev               # fuzz targets: clang + libFuzzer/ASan/UBSan runtimes (tools/fuzz.sh)
  clang-format clang-tools            # static checks: formatting, thread-safety analysis (tools/check_static.sh)
  ccache                              # sanitizer and fuzz builds reuse objects (tools/sanitize.sh, fuzz.sh)
)

missing=()
for p in "${PACKAGES[@]}"; do
  [[ $p == \#* ]] && continue
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "bootstrap: all ${#PACKAGES[@]} Debian packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "bootstrap: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "bootstrap: done"
