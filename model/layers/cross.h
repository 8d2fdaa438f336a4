// CrossNet: DCN-v2 cross layers (Wang et al. 2021), full-rank:
//   x_{l+1} = x_0 * (W_l x_l + b_l) + x_l        (* elementwise)
// for l = 0 .. L-1 over d-dim columns; the output is x_L (d x n).
//
// Parameters, for l = 0 .. L-1: W_l (d * d floats, column-major as in Mlp,
// Glorot-uniform), then b_l (d floats, zero). L2 as in Mlp (weights only).
// Conventions (parameters, scratch, Forward/Backward): model/layers/mlp.h.
#pragma once

#include <cstddef>
#include <random>
#include <vector>

namespace freshet {
namespace layers {

class CrossNet {
 public:
  // REQUIRES: dim > 0, num_layers > 0.
  CrossNet(int dim, int num_layers);

  int dim() const { return dim_; }
  size_t NumParams() const;
  void Init(std::mt19937_64* rng, float* params) const;

  // x0: dim x n, kept for Backward. Returns x_L (dim x n), owned by the
  // layer, valid until the next Forward.
  const float* Forward(const float* params, const float* x0, int n);
  // dy: dim x n. Writes NumParams() floats to dparams and dim x n to dx0.
  void Backward(const float* params, const float* dy, float l2, float* dparams, float* dx0);

 private:
  int dim_, num_layers_;
  const float* x0_ = nullptr;
  int n_ = 0;
  std::vector<std::vector<float>> x_;  // x_1 .. x_L (x_0 is the input)
  std::vector<std::vector<float>> z_;  // z_l = W_l x_l + b_l
  std::vector<float> g_, dz_;          // dLoss/dx_l, dLoss/dz_l
};

}  // namespace layers
}  // namespace freshet
