#include <cuda_bf16.h>

#include "common/cuda_util.h"
#include "model/gpu/internal/kernels.h"

namespace freshet {
namespace gpu_internal {
namespace {

constexpr int kThreads = 256;

// Blocks for n threads; n > 0.
unsigned Blocks(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

__global__ void BuildInputKernel(PlanView p, const float* rows_emb, const float* dense, float* x) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= static_cast<int64_t>(p.n) * p.in0) return;
  const int i = static_cast<int>(t / p.in0), c = static_cast<int>(t % p.in0);
  x[t] = InputElement(p, rows_emb, dense, i, c);
}

__global__ void FirstOrderFmKernel(PlanView p, const float* rows_wide, const float* params,
                                   const float* dense, const float* x, float* fm_sum,
                                   float* logits) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= p.n) return;
  const float fo = FirstOrder(p, rows_wide, params, dense, i);
  logits[i] = fo + FmTerm(p, x, fm_sum, i);
}

__global__ void BiasActKernel(float* z, const float* bias, int rows, int64_t total, bool relu) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < total) BiasActElement(z, bias, rows, t, relu);
}

__global__ void ToBf16Kernel(const float* src, __nv_bfloat16* dst, int64_t n) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < n) dst[t] = __float2bfloat16_rn(src[t]);
}

__global__ void AddKernel(float* dst, const float* src, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) dst[i] += src[i];
}

__global__ void ReluMaskKernel(float* dh, const float* h, int64_t n) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < n) ReluMaskElement(dh, h, t);
}

__global__ void FillKernel(float* dst, float value, int64_t n) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < n) dst[t] = value;
}

__global__ void PooledGradKernel(PlanView p, const float* x, const float* fm_sum,
                                 const float* dlogits, float* dx) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int width = p.num_slots * p.emb_dim;
  if (t >= static_cast<int64_t>(p.n) * width) return;
  const int i = static_cast<int>(t / width), c = static_cast<int>(t % width);
  const int s = c / p.emb_dim, j = c % p.emb_dim;
  // Reads dx[at] and writes it: each element is owned by one thread.
  dx[static_cast<int64_t>(i) * p.in0 + c] = PooledGrad(p, x, dx, fm_sum, dlogits, i, s, j);
}

__global__ void RowGradKernel(PlanView p, uint32_t num_rows, const float* pooled_grad,
                              const float* dlogits, float* row_emb, float* row_wide) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int k1 = p.emb_dim + 1;  // k embedding components, then the wide weight
  if (t >= static_cast<int64_t>(num_rows) * k1) return;
  const uint32_t u = static_cast<uint32_t>(t / k1);
  const int j = static_cast<int>(t % k1);
  if (j < p.emb_dim) {
    row_emb[static_cast<int64_t>(u) * p.emb_dim + j] = EmbRowGrad(p, pooled_grad, u, j);
  } else {
    row_wide[u] = WideRowGrad(p, dlogits, u);
  }
}

}  // namespace

Status LaunchBuildInput(const PlanView& p, const float* rows_emb, const float* dense, float* x,
                        cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(p.n) * p.in0;
  if (n == 0) return Status::OK();
  BuildInputKernel<<<Blocks(n), kThreads, 0, stream>>>(p, rows_emb, dense, x);
  FRESHET_CUDA_RETURN(cudaGetLastError());
  return Status::OK();
}

Status LaunchFirstOrderFm(const PlanView& p, const float* rows_wide, const float* params,
                          const float* dense, const float* x, float* fm_sum, float* logits,
                          cudaStream_t stream) {
  if (p.n == 0) return Status::OK();
  FirstOrderFmKernel<<<Blocks(p.n), kThreads, 0, stream>>>(p, rows_wide, params, dense, x, fm_sum,
                                                           logits);
  FRESHET_CUDA_RETURN(cudaGetLastError());
  return Status::OK();
}

Status LaunchBiasAct(float* z, const float* bias, int rows, int cols, bool relu,
                     cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(rows) * cols;
  if (total == 0) return Status::OK();
  BiasActKernel<<<Blocks(total), kThreads, 0, stream>>>(z, bias, rows, total, relu);
  FRESHET_CUDA_RETURN(cudaGetLastError());
  return Status::OK();
}

Status LaunchAdd(float* dst, const float* src, int n, cudaStream_t stream) {
  if (n == 0) return Status::OK();
  AddKernel<<<Blocks(n), kThreads, 0, stream>>>(dst, src, n);
  FRESHET_CUDA_RETURN(cudaGetLastError());
  return Status::OK();
}

Status LaunchReluMask(float* dh, const float* h, int64_t n, cudaStream_t stream) {
  if (n == 0) return Status::OK();
  ReluMaskKernel<<<Blocks(n), kThreads, 0, stream>>>(dh, h, n);
  FRESHET_CUDA_RETURN(cudaGetLastError());
  return Status::OK();
}

Status LaunchFill(float* dst, float value, int64_t n, cudaStream_t stream) {
  if (n == 0) return Status::OK();
  FillKernel<<<Blocks(n), kThreads, 0, stream>>>(dst, value, n);
  FRESHET_CUDA_RETURN(cudaGetLastError());
  return Status::OK();
}

Status LaunchToBf16(const float* src, uint16_t* dst, int64_t n, cudaStream_t stream) {
  if (n == 0) return Status::OK();
  ToBf16Kernel<<<Blocks(n), kThreads, 0, stream>>>(src, reinterpret_cast<__nv_bfloat16*>(dst), n);
  FRESHET_CUDA_RETURN(cudaGetLastError());
  return Status::OK();
}

Status LaunchPooledGrad(const PlanView& p, const float* x, const float* fm_sum,
                        const float* dlogits, float* dx, cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(p.n) * p.num_slots * p.emb_dim;
  if (n == 0) return Status::OK();
  PooledGradKernel<<<Blocks(n), kThreads, 0, stream>>>(p, x, fm_sum, dlogits, dx);
  FRESHET_CUDA_RETURN(cudaGetLastError());
  return Status::OK();
}

Status LaunchRowGrads(const PlanView& p, uint32_t num_rows, const float* pooled_grad,
                      const float* dlogits, float* row_emb, float* row_wide, cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(num_rows) * (p.emb_dim + 1);
  if (n == 0) return Status::OK();
  RowGradKernel<<<Blocks(n), kThreads, 0, stream>>>(p, num_rows, pooled_grad, dlogits, row_emb,
                                                    row_wide);
  FRESHET_CUDA_RETURN(cudaGetLastError());
  return Status::OK();
}

}  // namespace gpu_internal
}  // namespace freshet
