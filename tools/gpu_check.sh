#!/usr/bin/env bash
# The GPU checks and figures of docs/GPU.md, on a machine with a CUDA GPU and
# a built tree (tools/build.sh found nvcc; or a bundle from
# tools/gpu_bundle.sh installed first). Runs, in order (PHASES picks):
#   tests  ctest: every gpu-labelled test and the GPU-adjacent ones
#   e2e    ctest gpu_train_e2e (GPU worker vs CPU worker holdout AUC)
#   bench  freshet_gpu_bench at batch 4k/16k/64k for gpu, gpu:tf32, gpu:bf16
#          (1 PS rank), gpu with 4 PS ranks, with the dense all-reduce in
#          GPU memory and through host memory, and the CPU worker
#   train  the synthetic job on the local cluster (--device=gpu and cpu) and
#          on 4 servers + 1 GPU worker (dense all-reduce on device and host)
# Logs go to OUT_DIR (default ./gpu-check-out); the summary to stdout.
# Expect several minutes per phase group; where one command may run only ~10
# minutes, run PHASES="tests e2e bench" and PHASES=train as two commands.
# usage: tools/gpu_check.sh [OUT_DIR]        PHASES="tests bench" tools/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT_DIR=${1:-gpu-check-out}
mkdir -p "$OUT_DIR"
PHASES=${PHASES:-tests e2e bench train}
T0=$(date +%s)
log() { echo "=== [$(($(date +%s) - T0))s] $*"; }
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
BIN=build/bin
MPIRUN="mpirun --oversubscribe --bind-to none"
CTEST=$(command -v ctest || ls /opt/*/.venv/bin/ctest /usr/local/bin/ctest 2> /dev/null | head -1)
if [ -z "$CTEST" ] && [[ "$PHASES" == *test* || "$PHASES" == *e2e* ]]; then
  echo "gpu_check: no ctest on this machine (install cmake, or PHASES=\"bench train\")" >&2
  exit 1
fi
if ! nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT_DIR/gpu.txt" 2>&1; then
  echo "gpu_check: nvidia-smi failed: the GPU tests will skip and the GPU benches exit 77"
fi
# Two ranks on one GPU (the NCCL refusal test, gpu_train_e2e's second case)
# need the Default compute mode.
nvidia-smi -q 2> /dev/null | grep -i "compute mode" >> "$OUT_DIR/gpu.txt"
cat "$OUT_DIR/gpu.txt"

# 4 CPU parameter servers + 1 GPU worker: the PS side of one GPU's worker.
GPU_CFG="$OUT_DIR/gpu-4s1w.pbtxt"
cat > "$GPU_CFG" <<'P'
name: "gpu-4s1w"
roles { role: SERVER count: 4 }
roles { role: WORKER count: 1 }
transport { request_timeout_ms: 60000 max_inflight_requests: 16 }
server { handler_threads: 2 partitions: 64 }
P
# 8 servers: how far more CPU parameter servers lift one GPU worker.
GPU_CFG8="$OUT_DIR/gpu-8s1w.pbtxt"
sed -e 's/gpu-4s1w/gpu-8s1w/' -e 's/role: SERVER count: 4/role: SERVER count: 8/' "$GPU_CFG" > "$GPU_CFG8"
has() { [[ " $PHASES " == *" $1 "* ]]; }

if has tests; then
  log "ctest: gpu tests and GPU-adjacent tests"
  (cd build && timeout 240 "$CTEST" -j4 -V \
    -R '^(gpu_plan_test|model_factory_test|gpu_model_test|nccl_collective_mpi_1r|nccl_collective_mpi_2r|worker_collective_test|worker_collective_mpi_2r|device_select_e2e|dense_reduce_test)$') \
    > "$OUT_DIR/ctest_unit.log" 2>&1
  grep -E "Test +#|tests passed|\[  (FAILED|SKIPPED) \]|precision|max rel" "$OUT_DIR/ctest_unit.log" | head -60
fi
if has e2e; then
  log "ctest: gpu_train_e2e"
  (cd build && timeout 200 "$CTEST" -V -R '^gpu_train_e2e$') > "$OUT_DIR/ctest_e2e.log" 2>&1
  grep -E "Test +#|tests passed|holdout AUC|\[  (FAILED|SKIPPED|     OK) \]" "$OUT_DIR/ctest_e2e.log" | head -20
fi
bench() {  # name np config args...
  local name=$1 np=$2 cfg=$3
  shift 3
  log "bench $name"
  timeout 120 $MPIRUN -np "$np" $BIN/freshet_gpu_bench --cluster_config="$cfg" "$@" \
    > "$OUT_DIR/bench_$name.log" 2>&1
  echo "rc=$?"
  grep -v '^[IWE][0-9]' "$OUT_DIR/bench_$name.log" | tail -6
}
if has bench; then
  sizes=4096,16384,65536
  bench gpu_1s 2 cluster-configs/bench-1s1w.pbtxt --device=gpu --batch_sizes=$sizes
  bench gpu_tf32_1s 2 cluster-configs/bench-1s1w.pbtxt --device=gpu:tf32 --batch_sizes=$sizes
  bench gpu_bf16_1s 2 cluster-configs/bench-1s1w.pbtxt --device=gpu:bf16 --batch_sizes=$sizes
  bench gpu_4s 5 "$GPU_CFG" --device=gpu --batch_sizes=$sizes
  bench gpu_4s_hostreduce 5 "$GPU_CFG" --device=gpu --batch_sizes=$sizes --dense_allreduce_on_device=false
  bench cpu_4s 5 "$GPU_CFG" --device=cpu --batch_sizes=4096,65536 --steps=5 --warmup=1
  bench gpu_8s 9 "$GPU_CFG8" --device=gpu --batch_sizes=65536 --steps=10
fi
train() {  # name np args...
  local name=$1 np=$2
  shift 2
  log "train $name"
  timeout 150 launch/mpirun.sh -np "$np" $BIN/freshet_train --task=synthetic --save=false \
    --work_dir="$OUT_DIR/work-$name" "$@" > "$OUT_DIR/train_$name.log" 2>&1
  echo "rc=$?"
  grep -E "workers run on" "$OUT_DIR/train_$name.log" | head -1
  tail -1 "$OUT_DIR/train_$name.log"
}
if has train; then
  train local_gpu 5 --device=gpu
  train local_cpu 5 --device=cpu
  train 4s1w_gpu 5 --device=gpu --cluster_config="$GPU_CFG"
  train 4s1w_gpu_hostreduce 5 --device=gpu --cluster_config="$GPU_CFG" --dense_allreduce_on_device=false
  train 4s1w_cpu 5 --device=cpu --cluster_config="$GPU_CFG"
fi
log "done"
