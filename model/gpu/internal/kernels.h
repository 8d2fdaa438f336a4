// Launchers of the GPU DeepFM's CUDA kernels (kernels.cu). Each enqueues one
// kernel on `stream` (one thread per output element; the math is in
// device_math.h) and returns the launch error, if any, as a Status naming
// the kernel, file and line. Pointers are device pointers; PlanView's too.
//
// Thread safety: reentrant; ordering is the stream's.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/status.h"
#include "model/gpu/internal/device_math.h"

namespace freshet {
namespace gpu_internal {

// x[i*in0 + c] = InputElement(...) for every example i and column c.
Status LaunchBuildInput(const PlanView& p, const float* rows_emb, const float* dense, float* x,
                        cudaStream_t stream);
// logits[i] = FirstOrder(...) + FmTerm(...); fills fm_sum.
Status LaunchFirstOrderFm(const PlanView& p, const float* rows_wide, const float* params,
                          const float* dense, const float* x, float* fm_sum, float* logits,
                          cudaStream_t stream);
// z[o + r*rows] += bias[o] over a rows x cols matrix, then ReLU if relu.
Status LaunchBiasAct(float* z, const float* bias, int rows, int cols, bool relu,
                     cudaStream_t stream);
// dst[i] += src[i], i < n.
Status LaunchAdd(float* dst, const float* src, int n, cudaStream_t stream);
// dh[t] = h[t] > 0 ? dh[t] : 0, t < n (the ReLU derivative).
Status LaunchReluMask(float* dh, const float* h, int64_t n, cudaStream_t stream);
// dst[t] = value, t < n.
Status LaunchFill(float* dst, float value, int64_t n, cudaStream_t stream);
// dst[t] = src[t] rounded to bfloat16 (to nearest, ties to even), t < n;
// dst holds n bfloat16 values (uint16_t bit patterns).
Status LaunchToBf16(const float* src, uint16_t* dst, int64_t n, cudaStream_t stream);
// dx[i*in0 + s*k + j] = PooledGrad(...) for the embedding columns (in place).
Status LaunchPooledGrad(const PlanView& p, const float* x, const float* fm_sum,
                        const float* dlogits, float* dx, cudaStream_t stream);
// row_emb[u*k + j] = EmbRowGrad(...), row_wide[u] = WideRowGrad(...).
Status LaunchRowGrads(const PlanView& p, uint32_t num_rows, const float* pooled_grad,
                      const float* dlogits, float* row_emb, float* row_wide, cudaStream_t stream);

}  // namespace gpu_internal
}  // namespace freshet
