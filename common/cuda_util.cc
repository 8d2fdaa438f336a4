#include "common/cuda_util.h"

#include <string>

namespace freshet {
namespace {

Status LibError(const char* lib, const std::string& what, const char* expr, const char* file,
                int line) {
  return Internal(std::string(lib) + " error " + what + " in " + expr + " at " + file + ":" +
                  std::to_string(line));
}

}  // namespace

Status CudaError(cudaError_t rc, const char* expr, const char* file, int line) {
  return LibError("CUDA", std::string(cudaGetErrorName(rc)) + " (" + cudaGetErrorString(rc) + ")",
                  expr, file, line);
}

Status CublasError(cublasStatus_t rc, const char* expr, const char* file, int line) {
  return LibError("cuBLAS",
                  std::string(cublasGetStatusName(rc)) + " (" + cublasGetStatusString(rc) + ")",
                  expr, file, line);
}

#ifdef FRESHET_HAVE_NCCL
Status NcclError(ncclResult_t rc, const char* expr, const char* file, int line) {
  std::string what = std::string(ncclGetErrorString(rc));
  const char* last = ncclGetLastError(nullptr);
  if (last != nullptr && *last != '\0') what += ": " + std::string(last);
  return LibError("NCCL", what, expr, file, line);
}
#endif

}  // namespace freshet
