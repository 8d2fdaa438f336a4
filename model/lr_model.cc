#include "model/lr_model.h"

#include <glog/logging.h>

namespace freshet {

LrModel::LrModel(const proto::ModelConfig& config, ModelShape shape)
    : CpuModel(std::move(shape), config.dense_learning_rate()), l2_(config.dense_l2()) {
  ResetDenseParams(1 + static_cast<size_t>(shape_.num_dense));
}

void LrModel::Forward(const ModelInput& in, float* logits) {
  internal::CheckInput(shape_, in, /*needs_emb=*/false);
  internal::FirstOrderForward(shape_, in, params_.data(), logits);
  last_batch_ = in.batch;
}

void LrModel::Backward(const ModelInput& in, const float* dlogits, SparseGrads* grads,
                       float* dense_grad) {
  CHECK(in.batch == last_batch_) << "Backward must follow Forward on the same batch";
  internal::FirstOrderBackward(shape_, in, dlogits, params_.data(), l2_, &grads->wide, dense_grad);
  grads->emb.clear();
}

}  // namespace freshet
