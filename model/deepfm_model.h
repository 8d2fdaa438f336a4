// DeepFmModel: DeepFM (Guo et al. 2017) over pooled slot embeddings and dense
// features. Built by Model::Create for ModelConfig.kind == DEEPFM.
//
// With e_{i,s} = pool_s(embeddings of slot s's keys in example i) (dim k =
// shape.emb_dim; SUM or MEAN; zero for an empty slot):
//   logit_i = first_order_i                                 (as LrModel)
//           + 0.5 * sum_j ((sum_s e_{i,s,j})^2 - sum_s e_{i,s,j}^2)   (FM)
//           + MLP([e_{i,1}, ..., e_{i,S}, dense_i])
// The MLP has ReLU hidden layers of widths config.hidden and a linear output
// of width 1. Its input width is in_0 = num_slots * emb_dim + num_dense.
//
// Dense parameters: one contiguous float vector, in this order:
//   [0]                bias
//   [1 .. num_dense]   w_dense (first-order dense-feature weights)
//   then for each layer l = 0 .. L-1 (L = hidden.size() + 1), widths
//   in_l -> out_l (out_{L-1} = 1):
//     W_l  out_l * in_l floats, column-major out_l x in_l
//          (W_l[o + r * out_l] is the weight from input r to output o)
//     b_l  out_l floats
// W_l is Glorot-uniform: W = (2u - 1) * sqrt(6 / (in_l + out_l)) with
// u = (r >> 11) * 2^-53 for successive draws r of a std::mt19937_64 seeded
// with config.seed (layer by layer, in storage order); bias, w_dense and every
// b_l start at 0. Same seed -> bit-identical parameters on every worker and
// platform (no implementation-defined std distributions are involved).
//
// Sparse input: ModelInput.wide (dim 1) and ModelInput.emb (dim emb_dim) for
// every slot; Backward fills SparseGrads.wide and SparseGrads.emb.
//
// L2: config.dense_l2 is added in Backward as dense_l2 * w to the gradient of
// every weight (w_dense and every W_l), never to biases: dense_grad is the
// gradient of mean loss + 0.5 * dense_l2 * (|w_dense|^2 + sum_l |W_l|^2).
//
// Performance: the MLP (layers::Mlp) runs as batch-level GEMMs over
// column-major (width x batch) activation matrices, cblas_sgemm when the build
// found OpenBLAS (model/internal/gemm.h), with no explicit transposes and the
// bias and ReLU in one pass; scratch buffers are members, resized per batch,
// so Forward/Backward allocate only when the batch grows. The first CPU model
// (DeepFmModel or LayeredModel) sets OpenBLAS to one thread per call unless
// the environment sets OPENBLAS_NUM_THREADS (process-wide; one model per
// thread is the intended parallelism). tools/dense_bench.cc measures it
// against cblas_sgemm alone.
//
// Thread safety: not thread-safe (see Model).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "model/internal/dense_ops.h"
#include "model/layers/mlp.h"
#include "model/model.h"

namespace freshet {

class DeepFmModel final : public internal::CpuModel {
 public:
  // REQUIRES: config and shape validated by Model::Create (emb_dim > 0,
  // hidden widths > 0).
  DeepFmModel(const proto::ModelConfig& config, ModelShape shape);

  void Forward(const ModelInput& in, float* logits) override;
  void Backward(const ModelInput& in, const float* dlogits, SparseGrads* grads,
                float* dense_grad) override;

  // Number of dense parameters DeepFmModel would have; for validation.
  static size_t CountDenseParams(const ModelShape& shape, const std::vector<int>& hidden);

 private:
  float l2_;
  int in0_;             // MLP input width
  layers::Mlp mlp_;     // in0 -> hidden... -> 1, ReLU hidden layers
  size_t mlp_off_ = 0;  // offset of the MLP's W_0 in params_

  // Per-batch scratch (Forward keeps what Backward needs).
  const EncodedBatch* last_batch_ = nullptr;
  int batch_size_ = 0;
  std::vector<float> x_;       // in0 x B: pooled embeddings, then dense
  std::vector<float> fm_sum_;  // k x B: sum_s e_{i,s}
  std::vector<float> dx_;      // in0 x B: dLoss/dx
};

}  // namespace freshet
