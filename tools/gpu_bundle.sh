#!/usr/bin/env bash
# Carries a CUDA build of freshet to a GPU machine that has the NVIDIA
# driver and the CUDA libraries (cuBLAS, NCCL) but none of the Debian
# packages freshet runs with (Open MPI, protobuf, glog, gflags, OpenBLAS),
# e.g. a cloud GPU image. Then tools/gpu_check.sh runs there.
#
#   tools/gpu_bundle.sh pack DIR      on the build machine, after tools/build.sh
#                                     with CUDA: DIR gets the GPU-related
#                                     binaries, the build's CTest files, the
#                                     Open MPI runtime and every library they
#                                     link (not glibc, the driver, cuBLAS, NCCL)
#   tools/gpu_bundle.sh install DIR   on the GPU machine, as root, in a
#                                     checkout of the same commit: Open MPI
#                                     under /usr (Debian's paths, which it has
#                                     compiled in), the libraries under
#                                     /opt/freshet-runtime (ldconfig), the
#                                     binaries into build/bin; the CTest files
#                                     name the build machine's checkout path,
#                                     which is linked to this checkout
# The build machine's glibc must not be newer than the GPU machine's
# (Debian 12 builds need glibc >= 2.34). DIR is about 40 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
dir=${2:-}
[ -n "$mode" ] && [ -n "$dir" ] || { sed -n '2,22p' "$0"; exit 2; }
BINS="gpu_model_test gpu_plan_test model_factory_test nccl_collective_test gpu_train_e2e_test
      worker_collective_test dense_reduce_test freshet_train freshet_gpu_bench"
OMPI_PKGS="libopenmpi3 openmpi-bin openmpi-common libpmix2 libhwloc15 libevent-2.1-7
           libevent-core-2.1-7 libevent-pthreads-2.1-7 libfabric1 libucx0"

pack() {
  grep -q '^FRESHET_WITH_CUDA:BOOL=ON' build/CMakeCache.txt ||
    { echo "gpu_bundle: build/ is not a CUDA build (tools/build.sh with nvcc)" >&2; exit 1; }
  rm -rf "$dir"
  mkdir -p "$dir/bin" "$dir/lib"
  for b in $BINS; do cp "build/bin/$b" "$dir/bin/" && strip "$dir/bin/$b"; done
  dpkg -L $OMPI_PKGS | sort -u | while read -r f; do
    if [ ! -d "$f" ] && { [ -f "$f" ] || [ -L "$f" ]; }; then echo "${f#/}"; fi
  done > "$dir/ompi.files"
  tar -C / -czf "$dir/ompi-root.tar.gz" --no-recursion -T "$dir/ompi.files"
  find build -name CTestTestfile.cmake > "$dir/ctest.files"
  tar -czf "$dir/ctest-files.tar.gz" -T "$dir/ctest.files"
  pwd > "$dir/source_dir"
  local elfs
  elfs=$(sed 's|^|/|' "$dir/ompi.files" | while read -r p; do
    [ -f "$p" ] && file -L "$p" | grep -q ELF && echo "$p"; done; ls "$dir"/bin/*)
  for e in $elfs; do ldd "$e" 2>/dev/null | awk '/=> \//{print $3}'; done | sort -u |
    while read -r l; do
      n=$(basename "$l")
      case "$n" in
        libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | ld-linux* | libresolv.so* | \
          libutil.so* | libanl.so* | libcuda.so* | libcublas* | libnccl* | libnvidia*) ;;
        *) cp -L "$l" "$dir/lib/$n" ;;
      esac
    done
  tar -C "$dir" -czf "$dir/lib.tar.gz" lib
  rm -rf "$dir/lib"
  du -sh "$dir"
}

install() {
  [ "$(id -u)" -eq 0 ] || { echo "gpu_bundle install: run as root" >&2; exit 1; }
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  # Open MPI opens its ssh/rsh launcher even for a one-node job: with
  # neither installed, point it at a program that exists.
  local no_rsh=0
  if ! command -v ssh > /dev/null && ! command -v rsh > /dev/null; then
    no_rsh=1
    export OMPI_MCA_plm_rsh_agent
    OMPI_MCA_plm_rsh_agent=$(type -P false)
  fi
  # A machine with its own working Open MPI (libmpi.so.40: 4.x or 5.x) keeps
  # it: unpacking ours over it mixes two builds (ldconfig links each soname
  # to the higher-numbered file, so their libopen-rte met our plugins, and
  # mpirun crashed in PMIx). Otherwise ours goes under /usr, and ldconfig -X
  # keeps the soname links the bundle carries.
  local -a ldconfig=(ldconfig)
  if command -v mpirun > /dev/null && ldconfig -p | grep -q 'libmpi\.so\.40 ' &&
    timeout 60 mpirun --oversubscribe -np 2 true > /dev/null 2>&1; then
    echo "gpu_bundle: using this machine's Open MPI: $(mpirun --version 2>&1 | head -1)"
  else
    if command -v mpirun > /dev/null; then
      echo "gpu_bundle: this machine's mpirun ($(command -v mpirun)) fails; installing the bundle's"
    fi
    tar -C / -xzf "$dir/ompi-root.tar.gz"
    ln -sfn /usr/bin/mpirun.openmpi /usr/bin/mpirun
    ln -sfn /usr/bin/mpiexec.openmpi /usr/bin/mpiexec
    ldconfig=(ldconfig -X)
  fi
  [ -e /usr/bin/mpiexec ] || ln -sfn "$(command -v mpiexec)" /usr/bin/mpiexec
  if [ $no_rsh -eq 1 ]; then
    local conf_file
    conf_file=$(dirname "$(readlink -f "$(command -v mpirun)")")/../etc/openmpi-mca-params.conf
    for f in /etc/openmpi/openmpi-mca-params.conf "$conf_file"; do
      [ -f "$f" ] || continue
      grep -q '^plm_rsh_agent' "$f" || printf '\nplm_rsh_agent = %s\n' "$OMPI_MCA_plm_rsh_agent" >> "$f"
    done
  fi
  local rt=/opt/freshet-runtime conf=/etc/ld.so.conf.d/000-freshet-runtime.conf
  rm -rf "$rt" "$conf"
  mkdir -p "$rt/shadowed"
  tar -C "$rt" -xzf "$dir/lib.tar.gz"
  "${ldconfig[@]}"
  # The machine's own copy of a library wins (its other programs need it,
  # often newer); ours only fills gaps, or replaces one too old for us.
  local have n
  have=$(ldconfig -p | awk 'NR > 1 {print $1}' | sort -u)
  for f in "$rt"/lib/*; do
    n=$(basename "$f")
    if grep -qxF "$n" <<< "$have"; then mv "$f" "$rt/shadowed/"; fi
  done
  local cuda_dirs
  cuda_dirs=$(find /usr /opt -xdev \( -name 'libcublas.so.13' -o -name 'libcublasLt.so.13' \
    -o -name 'libnccl.so.2' \) 2>/dev/null | xargs -r -n1 dirname | sort -u)
  {
    echo "$rt/lib"
    echo /usr/lib/x86_64-linux-gnu/openmpi/lib
    echo "$cuda_dirs"
    for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do [ -d "$d" ] && echo "$d"; done
  } > "$conf"
  "${ldconfig[@]}"
  mkdir -p build/bin
  tar -xzf "$dir/ctest-files.tar.gz"
  cp "$dir"/bin/* build/bin/
  # A system library too old for our binaries ("version ... not found"):
  # ours comes back for it.
  local old
  old=$(for b in build/bin/*; do ldd "$b" 2>&1; done |
    sed -n "s|^[^:]*: \([^:]*\): version .* not found.*|\1|p" | xargs -r -n1 basename | sort -u)
  for n in $old; do
    if [ -e "$rt/shadowed/$n" ]; then
      echo "gpu_bundle: the machine's $n is too old; using the bundle's"
      mv "$rt/shadowed/$n" "$rt/lib/"
    fi
  done
  "${ldconfig[@]}"
  local src
  src=$(cat "$dir/source_dir")
  if [ "$src" != "$(pwd)" ] && [ ! -e "$src" ]; then
    mkdir -p "$(dirname "$src")"
    ln -sfn "$(pwd)" "$src"
  fi
  local missing=0
  for b in build/bin/*; do
    if ldd "$b" 2>&1 | grep -q "not found"; then
      echo "$b:"
      ldd "$b" 2>&1 | grep "not found"
      missing=1
    fi
  done
  [ $missing -eq 0 ] && echo "gpu_bundle: installed; every binary finds its libraries"
  if timeout 60 mpirun --oversubscribe -np 2 true; then
    echo "gpu_bundle: mpirun -np 2 runs"
  else
    echo "gpu_bundle: mpirun -np 2 true fails"
    missing=1
  fi
  return $missing
}

case "$mode" in
  pack) pack ;;
  install) install ;;
  *) echo "gpu_bundle: mode is pack or install, got '$mode'" >&2; exit 2 ;;
esac
