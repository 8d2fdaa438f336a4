// Dense layers over a batch, shared by the CPU models: an MLP, DCN-v2 cross
// layers, FM and field-aware FM, DIN target attention (one header each).
//
// Conventions of every layer in model/layers/:
//   - Activations are column-major float matrices of width x n (column i is
//     example i), as Eigen::Map<MatrixXf> sees them; GEMMs go through
//     internal::Gemm (model/internal/gemm.h: cblas_sgemm when the build found
//     OpenBLAS, else Eigen), with the transposes as BLAS flags, never copies.
//   - A layer does not own its parameters: Forward/Backward take a pointer to
//     its NumParams() floats inside the model's flat dense vector, and
//     Backward writes its gradient to the same offsets of the dense gradient
//     (overwriting, never accumulating). Init() draws them.
//   - Scratch buffers are members, resized per batch: once sized for the
//     largest batch, Forward/Backward allocate nothing.
//   - Backward REQUIRES that Forward on the same inputs was the layer's last
//     call, and that the inputs Forward read are still alive and unchanged.
//
// Thread safety: a layer is not thread-safe (one per model, one model per
// thread).
#pragma once

#include <cstddef>
#include <random>
#include <vector>

namespace freshet {
namespace layers {

// Glorot-uniform fill of n = fan_in * fan_out floats:
//   w = (2u - 1) * sqrt(6 / (fan_in + fan_out)),  u = (rng() >> 11) * 2^-53
// drawn in storage order (DeepFmModel's initialization; no
// implementation-defined std distribution, so bit-identical everywhere).
void GlorotUniform(std::mt19937_64* rng, int fan_in, int fan_out, float* w);

// Mlp: widths[0] -> widths[1] -> ... -> widths[L], each layer
// y = act(W_l x + b_l), act = ReLU except for the last layer when
// relu_last is false (then linear).
//
// Parameters, for l = 0 .. L-1 (in_l = widths[l], out_l = widths[l + 1]):
//   W_l  out_l * in_l floats, column-major (W_l[o + r * out_l]: input r ->
//        output o), Glorot-uniform
//   b_l  out_l floats, zero
// L2: Backward adds l2 * W_l to each weight's gradient (not to biases).
class Mlp {
 public:
  // REQUIRES: widths.size() >= 2, every width > 0.
  Mlp(std::vector<int> widths, bool relu_last);

  int in() const { return widths_.front(); }
  int out() const { return widths_.back(); }
  size_t NumParams() const { return num_params_; }
  // Draws W_l layer by layer (storage order); zeroes the biases.
  void Init(std::mt19937_64* rng, float* params) const;

  // x: in() x n, kept (not copied) for Backward. Returns out() x n, owned by
  // the layer and valid until the next Forward.
  const float* Forward(const float* params, const float* x, int n);
  // dy: out() x n. Writes NumParams() floats to dparams and, when dx is not
  // null, in() x n floats to dx.
  void Backward(const float* params, const float* dy, float l2, float* dparams, float* dx);

 private:
  struct Layer {
    int in = 0, out = 0;
    size_t w = 0, b = 0;  // offsets in params
    bool relu = false;
  };
  std::vector<int> widths_;
  std::vector<Layer> layers_;
  size_t num_params_ = 0;
  const float* x_ = nullptr;
  int n_ = 0;
  std::vector<std::vector<float>> act_;  // per layer: out_l x n
  std::vector<float> grad_a_, grad_b_;   // backprop ping-pong
};

}  // namespace layers
}  // namespace freshet
