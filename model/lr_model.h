// LrModel: logistic regression over pooled first-order slot weights and
// dense features. Built by Model::Create for ModelConfig.kind == LR.
//
//   logit_i = bias + sum_s pool_s(wide weights of slot s's keys in example i)
//                  + sum_d w_d * dense_i[d]
// pool_s is SUM or MEAN (shape.pooling[s]); an empty slot contributes 0.
//
// Dense parameters (NumDenseParams() = 1 + num_dense floats):
//   [0]              bias
//   [1 .. num_dense] w_dense, the dense-feature weights
// all initialized to 0.
//
// Sparse input: ModelInput.wide only (emb is ignored); Backward fills
// SparseGrads.wide and leaves SparseGrads.emb empty (size 0).
//
// L2: config.dense_l2 adds dense_l2 * w_d to the gradient of each w_d (not to
// the bias) in Backward, i.e. dense_grad is the gradient of
// mean loss + 0.5 * dense_l2 * |w_dense|^2.
//
// Thread safety: not thread-safe (see Model).
#pragma once

#include <string>
#include <vector>

#include "model/internal/dense_ops.h"
#include "model/model.h"

namespace freshet {

class LrModel final : public internal::CpuModel {
 public:
  // REQUIRES: config and shape validated by Model::Create.
  LrModel(const proto::ModelConfig& config, ModelShape shape);

  void Forward(const ModelInput& in, float* logits) override;
  void Backward(const ModelInput& in, const float* dlogits, SparseGrads* grads,
                float* dense_grad) override;

 private:
  float l2_;
  const EncodedBatch* last_batch_ = nullptr;  // of the last Forward, checked by Backward
};

}  // namespace freshet
