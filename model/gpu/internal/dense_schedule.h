// The dense half of the GPU DeepFM as a schedule of BLAS-level and
// element-wise steps over an abstract executor (DenseOps): the MLP forward
// (a GEMM, then bias + ReLU, per layer) and the backward of the first-order
// dense weights and the MLP (GEMMs for dW and dX, GEMVs against a ones
// vector for the biases, the ReLU mask). The GPU model runs it with cuBLAS
// and its kernels (gpu_deepfm_model.cc); gpu_plan_test.cc runs the very same
// schedule with HostDenseOps (plain loops) on the CPU and compares it with
// DeepFmModel with nonzero MLP weights, so every GEMM's transposes, sizes
// and leading dimensions are checked on machines without a GPU.
//
// Layouts are column-major, as cuBLAS and the CPU model use:
//   x       in0 x n   MLP input (pooled embeddings, then dense features)
//   act[l]  out_l x n layer l's output (post-ReLU for hidden layers)
//   params  the dense parameters (DeepFmModel's layout: bias, w_dense, then
//           per layer W_l (out_l x in_l) and b_l)
//
// Thread safety: the functions are reentrant; a DenseOps is not.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/status.h"

namespace freshet {
namespace gpu_internal {

struct MlpLayer {
  int in = 0, out = 0;
  size_t w = 0, b = 0;  // offsets of W_l and b_l in the dense parameters
};

// What the schedule needs from a device. Pointers are the device's.
class DenseOps {
 public:
  virtual ~DenseOps() = default;
  // C (m x n) = op(A) op(B), alpha 1, beta 0; op(A) is m x k.
  virtual Status Gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
                      const float* b, int ldb, float* c, int ldc) = 0;
  // y (rows) = A x for a column-major rows x cols A with leading dim lda.
  virtual Status Gemv(int rows, int cols, const float* a, int lda, const float* x, float* y) = 0;
  // y += alpha x, n floats.
  virtual Status Axpy(int n, float alpha, const float* x, float* y) = 0;
  // z[o + r*rows] += bias[o] over rows x cols, then ReLU if relu.
  virtual Status BiasAct(float* z, const float* bias, int rows, int cols, bool relu) = 0;
  // dst[i] += src[i], i < n.
  virtual Status Add(float* dst, const float* src, int n) = 0;
  // dh[t] = 0 where !(h[t] > 0), t < n.
  virtual Status ReluMask(float* dh, const float* h, int64_t n) = 0;
  // dst[t] = value, t < n.
  virtual Status Fill(float* dst, float value, int64_t n) = 0;
};

// act[l] = act_l(W_l act[l-1] + b_l) (act[-1] = x; ReLU except on the last
// layer, whose width is 1), then logits[i] += act.back()[i].
// REQUIRES: act.size() == layers.size(), act[l] holds out_l * n floats.
Status MlpForward(DenseOps& ops, const std::vector<MlpLayer>& layers, const float* params,
                  const float* x, int n, const std::vector<float*>& act, float* logits);

// Scratch of DenseBackward: ones (n floats), ga and gb (max width * n each).
struct DenseScratch {
  float* ones = nullptr;
  float* ga = nullptr;
  float* gb = nullptr;
};

// The gradient of the mean loss w.r.t. the dense parameters that sit in the
// first-order term (bias, w_dense: dense is the n x num_dense row-major
// feature matrix) and in the MLP, written to dgrad (the parameters' layout;
// dense_l2 * w added for w_dense and every W_l), and dLoss/dx to dx (in0 x n).
Status DenseBackward(DenseOps& ops, const std::vector<MlpLayer>& layers, int num_dense, float l2,
                     const float* params, const float* dense, const float* x,
                     const std::vector<float*>& act, const float* dlogits, int n,
                     const DenseScratch& scratch, float* dx, float* dgrad);

// DenseOps over host memory with plain loops (the reference for tests).
class HostDenseOps final : public DenseOps {
 public:
  Status Gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
              const float* b, int ldb, float* c, int ldc) override;
  Status Gemv(int rows, int cols, const float* a, int lda, const float* x, float* y) override;
  Status Axpy(int n, float alpha, const float* x, float* y) override;
  Status BiasAct(float* z, const float* bias, int rows, int cols, bool relu) override;
  Status Add(float* dst, const float* src, int n) override;
  Status ReluMask(float* dh, const float* h, int64_t n) override;
  Status Fill(float* dst, float value, int64_t n) override;
};

}  // namespace gpu_internal
}  // namespace freshet
