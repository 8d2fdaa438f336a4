#include "model/gpu/internal/dense_schedule.h"

#include <algorithm>

#include "model/gpu/internal/device_math.h"

namespace freshet {
namespace gpu_internal {

Status MlpForward(DenseOps& ops, const std::vector<MlpLayer>& layers, const float* params,
                  const float* x, int n, const std::vector<float*>& act, float* logits) {
  const float* h = x;
  for (size_t l = 0; l < layers.size(); ++l) {
    const MlpLayer& L = layers[l];
    float* z = act[l];
    FRESHET_RETURN_IF_ERROR(
        ops.Gemm(false, false, L.out, n, L.in, params + L.w, L.out, h, L.in, z, L.out));
    FRESHET_RETURN_IF_ERROR(ops.BiasAct(z, params + L.b, L.out, n, /*relu=*/l + 1 < layers.size()));
    h = z;
  }
  if (layers.empty()) return Status::OK();
  return ops.Add(logits, h, n);
}

Status DenseBackward(DenseOps& ops, const std::vector<MlpLayer>& layers, int num_dense, float l2,
                     const float* params, const float* dense, const float* x,
                     const std::vector<float*>& act, const float* dlogits, int n,
                     const DenseScratch& scratch, float* dx, float* dgrad) {
  FRESHET_RETURN_IF_ERROR(ops.Fill(scratch.ones, 1.f, n));
  // First order: dbias = sum dlogits; dw_dense = dense^T dlogits + l2 w.
  FRESHET_RETURN_IF_ERROR(ops.Gemv(1, n, dlogits, 1, scratch.ones, dgrad));
  if (num_dense > 0) {
    FRESHET_RETURN_IF_ERROR(ops.Gemv(num_dense, n, dense, num_dense, dlogits, dgrad + 1));
    if (l2 != 0) FRESHET_RETURN_IF_ERROR(ops.Axpy(num_dense, l2, params + 1, dgrad + 1));
  }
  // MLP, top down; dz = dLoss/dz_l (out_l x n).
  const float* dz = dlogits;
  for (size_t l = layers.size(); l-- > 0;) {
    const MlpLayer& L = layers[l];
    const float* h = l == 0 ? x : act[l - 1];
    // dW_l = dz h^T (+ l2 W_l); db_l = dz 1.
    FRESHET_RETURN_IF_ERROR(
        ops.Gemm(false, true, L.out, L.in, n, dz, L.out, h, L.in, dgrad + L.w, L.out));
    if (l2 != 0) FRESHET_RETURN_IF_ERROR(ops.Axpy(L.out * L.in, l2, params + L.w, dgrad + L.w));
    FRESHET_RETURN_IF_ERROR(ops.Gemv(L.out, n, dz, L.out, scratch.ones, dgrad + L.b));
    // dh = W_l^T dz, masked by layer l-1's ReLU.
    float* next = l == 0 ? dx : (dz == scratch.ga ? scratch.gb : scratch.ga);
    FRESHET_RETURN_IF_ERROR(
        ops.Gemm(true, false, L.in, n, L.out, params + L.w, L.out, dz, L.out, next, L.in));
    if (l > 0) FRESHET_RETURN_IF_ERROR(ops.ReluMask(next, h, static_cast<int64_t>(L.in) * n));
    dz = next;
  }
  return Status::OK();
}

Status HostDenseOps::Gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
                          const float* b, int ldb, float* c, int ldc) {
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      double sum = 0;
      for (int p = 0; p < k; ++p) {
        const float av =
            trans_a ? a[p + static_cast<int64_t>(i) * lda] : a[i + static_cast<int64_t>(p) * lda];
        const float bv =
            trans_b ? b[j + static_cast<int64_t>(p) * ldb] : b[p + static_cast<int64_t>(j) * ldb];
        sum += static_cast<double>(av) * bv;
      }
      c[i + static_cast<int64_t>(j) * ldc] = static_cast<float>(sum);
    }
  }
  return Status::OK();
}

Status HostDenseOps::Gemv(int rows, int cols, const float* a, int lda, const float* x, float* y) {
  for (int i = 0; i < rows; ++i) {
    double sum = 0;
    for (int j = 0; j < cols; ++j)
      sum += static_cast<double>(a[i + static_cast<int64_t>(j) * lda]) * x[j];
    y[i] = static_cast<float>(sum);
  }
  return Status::OK();
}

Status HostDenseOps::Axpy(int n, float alpha, const float* x, float* y) {
  for (int i = 0; i < n; ++i) y[i] += alpha * x[i];
  return Status::OK();
}

Status HostDenseOps::BiasAct(float* z, const float* bias, int rows, int cols, bool relu) {
  const int64_t total = static_cast<int64_t>(rows) * cols;
  for (int64_t t = 0; t < total; ++t) BiasActElement(z, bias, rows, t, relu);
  return Status::OK();
}

Status HostDenseOps::Add(float* dst, const float* src, int n) {
  for (int i = 0; i < n; ++i) dst[i] += src[i];
  return Status::OK();
}

Status HostDenseOps::ReluMask(float* dh, const float* h, int64_t n) {
  for (int64_t t = 0; t < n; ++t) ReluMaskElement(dh, h, t);
  return Status::OK();
}

Status HostDenseOps::Fill(float* dst, float value, int64_t n) {
  std::fill(dst, dst + n, value);
  return Status::OK();
}

}  // namespace gpu_internal
}  // namespace freshet
