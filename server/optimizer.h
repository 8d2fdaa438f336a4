// Server-side optimizers, applied to one row at a time when a gradient is
// pushed. Each optimizer keeps StateDim(dim) floats of per-row state next to
// the row's weights (see embedding_table.h for the row layout).
//
//   SGD:      w -= lr * g                                   state: none
//   Adagrad:  a += g^2; w -= lr * g / (sqrt(a) + eps)       state: a[dim]
//             a starts at initial_accumulator.
//   Adam:     lazy/sparse Adam. t = the row's update count + 1;
//             m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//             w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
//                                                           state: m[dim], v[dim]
//   FTRL:     FTRL-proximal per coordinate (McMahan et al. 2013, Algorithm 1):
//             sigma = (sqrt(n + g^2) - sqrt(n)) / alpha; z += g - sigma w;
//             n += g^2; w = |z| <= l1 ? 0
//                 : -(z - sign(z) l1) / ((beta + sqrt(n)) / alpha + l2)
//                                                           state: z[dim], n[dim]
// Clipping: when clip_norm > 0, a gradient row whose L2 norm exceeds clip_norm
// is scaled to norm clip_norm before the update.
//
// Thread safety: immutable after Create(); Apply() may run concurrently on
// different rows. The caller serializes updates to one row.
#pragma once

#include <cstdint>
#include <memory>

#include "common/proto/table.pb.h"
#include "common/status.h"

namespace freshet {

class Optimizer {
 public:
  // REQUIRES: cfg passed ValidateTableConfig (defaults filled).
  static StatusOr<std::unique_ptr<Optimizer>> Create(const proto::OptimizerConfig& cfg);
  virtual ~Optimizer() = default;

  // Floats of per-row state for a row of `dim` weights.
  virtual int StateDim(int dim) const = 0;
  // Writes the initial state of a new row.
  virtual void InitState(float* state, int dim) const = 0;
  // Applies gradient `grad` (dim floats) to weights `w` and `state`.
  // `updates_before` is how many updates this row received before this one.
  void Apply(float* w, float* state, const float* grad, int dim, uint32_t updates_before) const;

 protected:
  explicit Optimizer(float clip_norm) : clip_norm_(clip_norm) {}
  virtual void Update(float* w, float* state, const float* grad, int dim,
                      uint32_t updates_before) const = 0;

 private:
  const float clip_norm_;
};

}  // namespace freshet
