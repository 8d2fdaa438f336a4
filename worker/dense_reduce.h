// DenseReducer: the workers' all-reduce of their dense gradients, each
// weighted (the trainer: by the worker's example count), with a few scalars
// summed alongside (example count, loss, "still has data").
//
// Two paths, the same sums:
//   host   Backward writes the dense gradient to host memory; the reducer
//          scales it, appends the scalars and calls Collective::AllReduceSum
//          (MPI; NCCL stages host data through the device and back).
//   device The model keeps its dense gradient on the GPU
//          (Model::device_dense_gradient()) and the collective sums device
//          memory (Collective::sums_on_device(): NCCL). The model scales it
//          in place and appends the scalars there, NCCL sums it, and one D2H
//          copy brings the sum back: no host round trip of the gradient
//          before the all-reduce.
// The device path is taken when both sides offer it and `allow_device`
// (freshet_train --dense_allreduce_on_device; on by default).
//
// Per step: Backward(..., backward_dense_out()), then Reduce.
//
// Thread safety: one thread (the trainer's), as Model and Collective.
#pragma once

#include <cstddef>
#include <vector>

#include "common/collective.h"
#include "common/status.h"
#include "model/model.h"

namespace freshet {

class DenseReducer {
 public:
  // Not owned; both outlive the reducer.
  DenseReducer(Model* model, Collective* collective, bool allow_device);

  bool on_device() const { return device_ != nullptr; }
  // What Backward's dense_grad argument must be: the host buffer
  // (NumDenseParams() floats) on the host path, null on the device path.
  float* backward_dense_out() { return on_device() ? nullptr : host_grad_.data(); }

  // Collective: sums over the workers of `weight` times this worker's dense
  // gradient from the last Backward (weight 0: this worker contributes
  // zeros, also when it ran no Backward), then of extra[0..n_extra), into
  // out[0 .. NumDenseParams() + n_extra).
  Status Reduce(float weight, const float* extra, size_t n_extra, float* out);

 private:
  Collective* collective_;
  DeviceDenseGradient* device_ = nullptr;
  size_t num_dense_;
  std::vector<float> host_grad_;  // the host path's Backward output
};

}  // namespace freshet
