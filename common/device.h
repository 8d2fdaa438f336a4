// Device selection for worker ranks: which processor runs the model math
// ("cpu", or a GPU with a GEMM precision), how many CUDA devices this process
// sees, and which one a rank drives (by its local rank on the node).
//
// Spelling of a device (JobConfig.device, freshet_train --device):
//   ""  or "cpu"   the CPU model (OpenBLAS/Eigen GEMMs)
//   "gpu"          the CUDA model, fp32 GEMMs (the default precision)
//   "gpu:tf32"     the CUDA model, TF32 tensor-core GEMMs (fp32 storage)
//   "gpu:bf16"     the CUDA model, bf16 tensor-core GEMMs (fp32 storage)
// Asking for a GPU where the binary was built without CUDA, or where CUDA
// finds no device, is an error (FailedPrecondition / Unavailable), never a
// silent fallback to the CPU.
//
// Thread safety: free functions, safe to call from any thread.
#pragma once

#include <string>

#include "common/status.h"

namespace freshet {

enum class DeviceKind { kCpu, kGpu };

// Precision of the GPU model's GEMMs. Storage, pooling, FM, loss and the
// optimizer stay fp32 in every mode; only the MLP GEMMs change.
enum class GemmPrecision {
  kFp32,  // fp32 FMA (CUBLAS_COMPUTE_32F, default math mode: no tensor cores)
  kTf32,  // tensor cores, inputs rounded to TF32 (10-bit mantissa)
  kBf16,  // tensor cores, inputs rounded to bf16 (7-bit mantissa)
};

struct DeviceSpec {
  DeviceKind kind = DeviceKind::kCpu;
  GemmPrecision precision = GemmPrecision::kFp32;
  // The canonical spelling ("cpu", "gpu", "gpu:tf32", "gpu:bf16").
  std::string ToString() const;
};

// Parses a device spelling (see above). InvalidArgument names the bad text.
StatusOr<DeviceSpec> ParseDevice(const std::string& text);

// True when this binary was compiled with the CUDA parts (FRESHET_WITH_CUDA).
bool BuiltWithCuda();
// True when it was also compiled with NCCL.
bool BuiltWithNccl();

// Number of CUDA devices visible to this process. FailedPrecondition when
// the binary has no CUDA; Unavailable (with CUDA's reason) when the driver
// reports none or cannot be loaded. Never returns 0.
StatusOr<int> CudaDeviceCount();

// This process's rank among the processes on its node, from the launcher's
// environment: OMPI_COMM_WORLD_LOCAL_RANK (Open MPI), SLURM_LOCALID (srun),
// MPI_LOCALRANKID (MPICH/Intel MPI), in that order; 0 when none is set.
// InvalidArgument when the variable is set but not a non-negative integer.
StatusOr<int> LocalRankFromEnv();

// The CUDA device ordinal this rank drives: local rank modulo the number of
// visible devices (so PS ranks sharing the node do not push workers off the
// end). Errors as CudaDeviceCount / LocalRankFromEnv.
StatusOr<int> SelectLocalGpu();

}  // namespace freshet
