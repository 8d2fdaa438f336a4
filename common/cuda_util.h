// CUDA, cuBLAS and NCCL checked calls, in the shape of FRESHET_MPI_RETURN
// (common/mpi_util.h) and HugeCTR's HCTR_LIB_THROW, returning instead of
// throwing:
//
//   FRESHET_CUDA_RETURN(cudaMemcpyAsync(...));
//   FRESHET_CUBLAS_RETURN(cublasSgemm(...));
//   FRESHET_NCCL_RETURN(ncclAllReduce(...));
//
// On failure the enclosing function returns an INTERNAL Status naming the
// library's error name and string, the expression, and file:line. After a
// kernel launch, FRESHET_CUDA_RETURN(cudaGetLastError()) reports a bad
// launch configuration. Only for CUDA-enabled targets (the header includes
// the CUDA runtime); NCCL's macro exists when FRESHET_HAVE_NCCL is defined.
//
// Thread safety: the macros and functions are reentrant.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "common/status.h"

#ifdef FRESHET_HAVE_NCCL
#include <nccl.h>
#endif

namespace freshet {

Status CudaError(cudaError_t rc, const char* expr, const char* file, int line);
Status CublasError(cublasStatus_t rc, const char* expr, const char* file, int line);
#ifdef FRESHET_HAVE_NCCL
Status NcclError(ncclResult_t rc, const char* expr, const char* file, int line);
#endif

}  // namespace freshet

#define FRESHET_CUDA_RETURN(expr)                                               \
  do {                                                                          \
    const cudaError_t _freshet_cuda_rc = (expr);                                \
    if (_freshet_cuda_rc != cudaSuccess)                                        \
      return ::freshet::CudaError(_freshet_cuda_rc, #expr, __FILE__, __LINE__); \
  } while (0)

#define FRESHET_CUBLAS_RETURN(expr)                                                 \
  do {                                                                              \
    const cublasStatus_t _freshet_cublas_rc = (expr);                               \
    if (_freshet_cublas_rc != CUBLAS_STATUS_SUCCESS)                                \
      return ::freshet::CublasError(_freshet_cublas_rc, #expr, __FILE__, __LINE__); \
  } while (0)

#ifdef FRESHET_HAVE_NCCL
#define FRESHET_NCCL_RETURN(expr)                                               \
  do {                                                                          \
    const ncclResult_t _freshet_nccl_rc = (expr);                               \
    if (_freshet_nccl_rc != ncclSuccess)                                        \
      return ::freshet::NcclError(_freshet_nccl_rc, #expr, __FILE__, __LINE__); \
  } while (0)
#endif
