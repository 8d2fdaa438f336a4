// TargetAttention: DIN-style pooling (Zhou et al. 2018) of a sequence slot's
// key embeddings e_j (dim k) against a query vector q_i (the candidate
// item's pooled embedding, dim k) of the same example i:
//   u_j  = [e_j, q_i, e_j - q_i, e_j * q_i]            (4k floats)
//   a_j  = sigmoid(MLP(u_j))      MLP: 4k -> hidden (ReLU) -> 1 (linear)
//   out_i = c_i * sum_{j in example i} a_j e_j
// with c_i = 1 (SUM) or 1 / (keys of example i) (MEAN); 0 for no keys. The
// weights are sigmoids, not a softmax over the sequence (DIN keeps the
// weights unnormalized so the sequence's intensity survives; the sigmoid
// bounds each one to (0, 1), and a_j == 1 would be the slot's plain
// pooling). The MLP runs as one batch over all keys of the batch.
//
// Parameters: those of Mlp({4k, hidden..., 1}, relu_last = false) (see
// model/layers/mlp.h), in the same layout. Conventions: model/layers/mlp.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "model/layers/mlp.h"

namespace freshet {
namespace layers {

class TargetAttention {
 public:
  // REQUIRES: k > 0, hidden widths > 0.
  TargetAttention(int k, const std::vector<int>& hidden);

  int k() const { return k_; }
  size_t NumParams() const { return mlp_.NumParams(); }
  void Init(std::mt19937_64* rng, float* params) const { mlp_.Init(rng, params); }

  // rows: the sequence keys' embeddings, key j at rows + j * k; example i
  // owns keys offsets[i] .. offsets[i + 1]. q_i at q + i * q_stride. Writes
  // out_i (k floats) at out + i * out_stride. rows, offsets and q are kept
  // for Backward.
  void Forward(const float* params, const float* rows, const uint32_t* offsets, int n,
               const float* q, int q_stride, bool mean, float* out, int out_stride);
  // dout_i at dout + i * out_stride. Writes NumParams() floats to dparams,
  // d rows (offsets[n] * k floats, same layout as rows) to drows, and ADDS
  // d q_i to dq + i * q_stride.
  void Backward(const float* params, const float* dout, int out_stride, float l2, float* dparams,
                float* drows, float* dq, int q_stride);

  // The attention weights a_j of the last Forward, one per key.
  const std::vector<float>& weights() const { return a_; }

 private:
  int k_;
  Mlp mlp_;
  const float* rows_ = nullptr;
  const uint32_t* offsets_ = nullptr;
  const float* q_ = nullptr;
  int n_ = 0, q_stride_ = 0;
  bool mean_ = false;
  std::vector<float> u_;        // 4k x T
  std::vector<float> a_;        // T
  std::vector<float> ds_, du_;  // T, 4k x T
};

}  // namespace layers
}  // namespace freshet
