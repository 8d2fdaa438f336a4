#include "common/device.h"

#include <cerrno>
#include <cstdlib>

#ifdef FRESHET_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace freshet {

std::string DeviceSpec::ToString() const {
  if (kind == DeviceKind::kCpu) return "cpu";
  switch (precision) {
    case GemmPrecision::kFp32:
      return "gpu";
    case GemmPrecision::kTf32:
      return "gpu:tf32";
    case GemmPrecision::kBf16:
      return "gpu:bf16";
  }
  return "gpu";
}

StatusOr<DeviceSpec> ParseDevice(const std::string& text) {
  DeviceSpec spec;
  if (text.empty() || text == "cpu") return spec;
  spec.kind = DeviceKind::kGpu;
  if (text == "gpu" || text == "gpu:fp32") return spec;
  if (text == "gpu:tf32") {
    spec.precision = GemmPrecision::kTf32;
    return spec;
  }
  if (text == "gpu:bf16") {
    spec.precision = GemmPrecision::kBf16;
    return spec;
  }
  return InvalidArgument("device: '" + text +
                         "' is not one of cpu, gpu, gpu:fp32, gpu:tf32, gpu:bf16");
}

bool BuiltWithCuda() {
#ifdef FRESHET_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

bool BuiltWithNccl() {
#ifdef FRESHET_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

StatusOr<int> CudaDeviceCount() {
#ifdef FRESHET_HAVE_CUDA
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) {
    return Unavailable(std::string("no usable CUDA device: cudaGetDeviceCount: ") +
                       cudaGetErrorName(rc) + ": " + cudaGetErrorString(rc));
  }
  if (count <= 0) return Unavailable("no usable CUDA device: cudaGetDeviceCount found 0");
  return count;
#else
  return FailedPrecondition(
      "device gpu: this binary was built without CUDA (configure with nvcc on the PATH and "
      "-DFRESHET_WITH_CUDA=ON)");
#endif
}

StatusOr<int> LocalRankFromEnv() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"}) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') continue;
    char* end = nullptr;
    errno = 0;
    const long r = std::strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || r < 0 || r > 1 << 20) {
      return InvalidArgument(std::string(name) + "='" + v + "' is not a local rank");
    }
    return static_cast<int>(r);
  }
  return 0;
}

StatusOr<int> SelectLocalGpu() {
  FRESHET_ASSIGN_OR_RETURN(int count, CudaDeviceCount());
  FRESHET_ASSIGN_OR_RETURN(int local, LocalRankFromEnv());
  return local % count;
}

}  // namespace freshet
