// Pieces shared by the CPU models (LrModel, DeepFmModel, LayeredModel): the first-order
// (wide) part of the logit, the Adam optimizer of the dense parameters, and
// CpuModel, their common base (the dense parameters and that optimizer).
//
// Thread safety: free functions are reentrant; DenseAdam and CpuModel are
// not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/model.h"

namespace freshet {
namespace internal {

// Checks that `in` matches `shape`: one wide pointer per slot (unless
// needs_wide is false), one emb pointer per slot when needs_emb, batch with
// the shape's slots and dense features. CHECK-fails otherwise (a programmer
// error).
void CheckInput(const ModelShape& shape, const ModelInput& in, bool needs_emb,
                bool needs_wide = true);

// First-order part of the logit, written (not added) to logits[0..size):
//   logits[i] = params[0] + sum_s pool_s(wide of slot s, example i)
//               + sum_d params[1 + d] * dense[i][d]
// where pool_s is the sum or the mean of the slot's keys' weights (0 for an
// empty slot). `params` points at 1 + num_dense floats: [bias, w_dense...].
void FirstOrderForward(const ModelShape& shape, const ModelInput& in, const float* params,
                       float* logits);

// Gradients of the first-order part. `dlogits` as in Model::Backward.
// Resizes (*wide_grads)[s] to the slot's key count and fills it; writes
// 1 + num_dense floats to dparams: [dbias, dw_dense + l2 * w_dense...].
void FirstOrderBackward(const ModelShape& shape, const ModelInput& in, const float* dlogits,
                        const float* params, float l2, std::vector<std::vector<float>>* wide_grads,
                        float* dparams);

// Adam (Kingma & Ba 2015) with bias correction, over a flat float vector:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  t += 1
//   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
class DenseAdam {
 public:
  // lr <= 0 -> 0.001.
  DenseAdam(size_t n, float lr);
  // REQUIRES: params and grad hold the n floats given at construction.
  void Step(float* params, const float* grad);
  int64_t steps() const { return t_; }
  // The state as 2 + 2n floats: the step count's 8 bytes, then m, then v
  // (checkpoints). SetState takes what State returned; false (and no
  // change) on a size mismatch.
  std::vector<float> State() const;
  bool SetState(const std::vector<float>& state);

  static constexpr double kBeta1 = 0.9;
  static constexpr double kBeta2 = 0.999;
  static constexpr double kEpsilon = 1e-8;

 private:
  float lr_;
  int64_t t_ = 0;
  std::vector<float> m_, v_;
};

// The Model methods every CPU model implements alike: its dense parameters
// are one flat fp32 vector (params_, which the model lays its layers out
// in) updated by one DenseAdam. The GPU model keeps its own on the device.
class CpuModel : public Model {
 public:
  size_t NumDenseParams() const override { return params_.size(); }
  float* dense_params() override { return params_.data(); }
  void ApplyDenseGradient(const float* grad) override { adam_.Step(params_.data(), grad); }
  std::vector<float> DenseOptimizerState() const override { return adam_.State(); }
  Status SetDenseOptimizerState(const std::vector<float>& state) override {
    return adam_.SetState(state) ? Status::OK()
                                 : InvalidArgument("dense optimizer state has " +
                                                   std::to_string(state.size()) + " floats");
  }

 protected:
  CpuModel(ModelShape shape, float dense_lr)
      : Model(std::move(shape)), dense_lr_(dense_lr), adam_(0, dense_lr) {}
  // Sizes the dense parameters to n zeros, with a fresh optimizer over them
  // (the constructors call it once they know n, then initialize params_).
  void ResetDenseParams(size_t n) {
    params_.assign(n, 0.f);
    adam_ = DenseAdam(n, dense_lr_);
  }

  std::vector<float> params_;

 private:
  float dense_lr_;
  DenseAdam adam_;
};

}  // namespace internal
}  // namespace freshet
