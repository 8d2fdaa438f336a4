#include "worker/dense_reduce.h"

#include <algorithm>

namespace freshet {

DenseReducer::DenseReducer(Model* model, Collective* collective, bool allow_device)
    : collective_(collective), num_dense_(model->NumDenseParams()) {
  if (allow_device && collective->sums_on_device()) device_ = model->device_dense_gradient();
  if (device_ == nullptr) host_grad_.assign(num_dense_, 0.f);
}

Status DenseReducer::Reduce(float weight, const float* extra, size_t n_extra, float* out) {
  const size_t n = num_dense_ + n_extra;
  if (device_ != nullptr) {
    void* stream = nullptr;
    FRESHET_ASSIGN_OR_RETURN(float* staged,
                             device_->StageDenseGradient(weight, extra, n_extra, &stream));
    FRESHET_RETURN_IF_ERROR(collective_->AllReduceSumOnDevice(staged, n, stream));
    return device_->FetchDenseGradient(out, n);
  }
  if (weight == 0.f) {
    std::fill(out, out + num_dense_, 0.f);
  } else {
    for (size_t i = 0; i < num_dense_; ++i) out[i] = host_grad_[i] * weight;
  }
  std::copy(extra, extra + n_extra, out + num_dense_);
  return collective_->AllReduceSum(out, n);
}

}  // namespace freshet
