// The element-wise math of the GPU DeepFM, as __host__ __device__ functions
// over raw arrays: the CUDA kernels (kernels.cu) call them per thread, and
// gpu_plan_test.cc calls the very same functions on the CPU and compares them
// with the CPU DeepFmModel. Each function mirrors the CPU model's operation
// order (model/deepfm_model.cc, internal/dense_ops.cc), so on the CPU
// the results are bit-identical.
//
// Layouts (all column-major as in the CPU model):
//   x      [n][in0]   MLP input: slot s's pooled embedding at s*k, then the
//                     dense features at num_slots*k (in0 = num_slots*k + nd)
//   fm_sum [n][k]     sum over slots of the pooled embeddings
//   rows_emb [num_rows][k], rows_wide [num_rows]: pulled rows (BatchPlan)
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define FRESHET_HD __host__ __device__ __forceinline__
#else
#define FRESHET_HD inline
#endif

namespace freshet {
namespace gpu_internal {

// Pointers into one batch's plan (device pointers in kernels, host pointers
// in tests); see BatchPlan.
struct PlanView {
  int n = 0, num_slots = 0, emb_dim = 0, num_dense = 0, in0 = 0;
  const uint32_t* offsets = nullptr;      // [num_slots * (n + 1)]
  const uint32_t* occ_row = nullptr;      // [num_occ]
  const uint32_t* row_slot = nullptr;     // [num_rows]
  const uint32_t* row_occ_off = nullptr;  // [num_rows + 1]
  const uint32_t* occ_example = nullptr;  // [num_occ]
  const float* occ_count = nullptr;       // [num_occ]
  const uint8_t* mean = nullptr;          // [num_slots] 1: MEAN pooling
};

// x[i*in0 + c]: column c of example i's MLP input (pooled embedding or a
// dense feature).
FRESHET_HD float InputElement(const PlanView& p, const float* rows_emb, const float* dense, int i,
                              int c) {
  const int k = p.emb_dim;
  if (c >= p.num_slots * k)
    return dense[static_cast<int64_t>(i) * p.num_dense + (c - p.num_slots * k)];
  const int s = c / k, j = c % k;
  const uint32_t lo = p.offsets[static_cast<int64_t>(s) * (p.n + 1) + i];
  const uint32_t hi = p.offsets[static_cast<int64_t>(s) * (p.n + 1) + i + 1];
  float e = 0.f;
  for (uint32_t o = lo; o < hi; ++o) e += rows_emb[static_cast<int64_t>(p.occ_row[o]) * k + j];
  if (p.mean[s] && hi - lo > 1) e *= 1.f / static_cast<float>(hi - lo);
  return e;
}

// First-order logit of example i: bias + w_dense . dense_i + pooled wide
// weights. params = [bias, w_dense...].
FRESHET_HD float FirstOrder(const PlanView& p, const float* rows_wide, const float* params,
                            const float* dense, int i) {
  float z = params[0];
  const float* x = dense + static_cast<int64_t>(i) * p.num_dense;
  for (int d = 0; d < p.num_dense; ++d) z += params[1 + d] * x[d];
  for (int s = 0; s < p.num_slots; ++s) {
    const uint32_t lo = p.offsets[static_cast<int64_t>(s) * (p.n + 1) + i];
    const uint32_t hi = p.offsets[static_cast<int64_t>(s) * (p.n + 1) + i + 1];
    if (lo == hi) continue;
    float sum = 0.f;
    for (uint32_t o = lo; o < hi; ++o) sum += rows_wide[p.occ_row[o]];
    z += p.mean[s] ? sum / static_cast<float>(hi - lo) : sum;
  }
  return z;
}

// FM second-order term of example i from its MLP input column; writes the
// slot sum to fm_sum[i*k .. +k).
FRESHET_HD float FmTerm(const PlanView& p, const float* x, float* fm_sum, int i) {
  const int k = p.emb_dim;
  const float* col = x + static_cast<int64_t>(i) * p.in0;
  float* sum = fm_sum + static_cast<int64_t>(i) * k;
  for (int j = 0; j < k; ++j) sum[j] = 0.f;
  float sq = 0.f;
  for (int s = 0; s < p.num_slots; ++s) {
    const float* e = col + s * k;
    for (int j = 0; j < k; ++j) {
      sum[j] += e[j];
      sq += e[j] * e[j];
    }
  }
  float sum2 = 0.f;
  for (int j = 0; j < k; ++j) sum2 += sum[j] * sum[j];
  return 0.5f * (sum2 - sq);
}

// dLoss/d(pooled embedding) of example i, slot s, component j, before the
// MEAN division: dx (from the MLP) + dlogit * (fm_sum - e).
FRESHET_HD float PooledGrad(const PlanView& p, const float* x, const float* dx, const float* fm_sum,
                            const float* dlogits, int i, int s, int j) {
  const int64_t at = static_cast<int64_t>(i) * p.in0 + s * p.emb_dim + j;
  return dx[at] + dlogits[i] * (fm_sum[static_cast<int64_t>(i) * p.emb_dim + j] - x[at]);
}

// Summed gradient of embedding row u, component j: over the row's
// occurrences c (in order), pooled_grad[example(c), slot(u), j] / count(c)
// (as multiplication by the reciprocal, like the CPU model). pooled_grad has
// the layout of x (PooledGrad written in place of dx).
FRESHET_HD float EmbRowGrad(const PlanView& p, const float* pooled_grad, uint32_t u, int j) {
  const int s = static_cast<int>(p.row_slot[u]);
  float g = 0.f;
  for (uint32_t c = p.row_occ_off[u]; c < p.row_occ_off[u + 1]; ++c) {
    const float scale = 1.f / p.occ_count[c];
    g += pooled_grad[static_cast<int64_t>(p.occ_example[c]) * p.in0 + s * p.emb_dim + j] * scale;
  }
  return g;
}

// Summed gradient of wide row u: over its occurrences, dlogit / count.
FRESHET_HD float WideRowGrad(const PlanView& p, const float* dlogits, uint32_t u) {
  float g = 0.f;
  for (uint32_t c = p.row_occ_off[u]; c < p.row_occ_off[u + 1]; ++c) {
    g += dlogits[p.occ_example[c]] / p.occ_count[c];
  }
  return g;
}

// Element t of a rows x cols column-major z: z += bias[row], then ReLU if
// relu (the MLP's bias and activation).
FRESHET_HD void BiasActElement(float* z, const float* bias, int rows, int64_t t, bool relu) {
  float v = z[t] + bias[t % rows];
  if (relu) v = v > 0.f ? v : 0.f;
  z[t] = v;
}

// Element t of the ReLU derivative: dh[t] = 0 where the activation h[t] was
// not positive.
FRESHET_HD void ReluMaskElement(float* dh, const float* h, int64_t t) {
  if (!(h[t] > 0.f)) dh[t] = 0.f;
}

}  // namespace gpu_internal
}  // namespace freshet
