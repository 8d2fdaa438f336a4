#include "model/layers/cross.h"

#include <glog/logging.h>

#include <algorithm>

#include "model/internal/gemm.h"
#include "model/layers/mlp.h"

namespace freshet {
namespace layers {

CrossNet::CrossNet(int dim, int num_layers) : dim_(dim), num_layers_(num_layers) {
  CHECK_GT(dim, 0);
  CHECK_GT(num_layers, 0);
  x_.resize(num_layers);
  z_.resize(num_layers);
}

size_t CrossNet::NumParams() const {
  const size_t d = static_cast<size_t>(dim_);
  return static_cast<size_t>(num_layers_) * (d * d + d);
}

void CrossNet::Init(std::mt19937_64* rng, float* params) const {
  const size_t d = static_cast<size_t>(dim_);
  for (int l = 0; l < num_layers_; ++l) {
    float* w = params + static_cast<size_t>(l) * (d * d + d);
    GlorotUniform(rng, dim_, dim_, w);
    std::fill(w + d * d, w + d * d + d, 0.f);
  }
}

const float* CrossNet::Forward(const float* params, const float* x0, int n) {
  x0_ = x0;
  n_ = n;
  const int d = dim_;
  const size_t dd = static_cast<size_t>(d);
  const float* xl = x0;
  for (int l = 0; l < num_layers_; ++l) {
    const float* w = params + static_cast<size_t>(l) * (dd * dd + dd);
    const float* b = w + dd * dd;
    z_[l].resize(dd * n);
    x_[l].resize(dd * n);
    float* z = z_[l].data();
    float* x = x_[l].data();
    // Z = W x_l (+ b below); x_{l+1} = x_0 * Z + x_l, in one pass.
    internal::Gemm(false, false, d, n, d, 1.f, w, d, xl, d, 0.f, z, d);
    for (int i = 0; i < n; ++i) {
      const size_t at = static_cast<size_t>(i) * dd;
      for (int j = 0; j < d; ++j) {
        z[at + j] += b[j];
        x[at + j] = x0[at + j] * z[at + j] + xl[at + j];
      }
    }
    xl = x;
  }
  return xl;
}

void CrossNet::Backward(const float* params, const float* dy, float l2, float* dparams,
                        float* dx0) {
  const int n = n_;
  const int d = dim_;
  const size_t dd = static_cast<size_t>(d);
  const size_t size = dd * n;
  g_.assign(dy, dy + size);
  dz_.resize(size);
  float* g = g_.data();
  float* dz = dz_.data();
  std::fill(dx0, dx0 + size, 0.f);
  for (int l = num_layers_; l-- > 0;) {
    const float* w = params + static_cast<size_t>(l) * (dd * dd + dd);
    float* dw = dparams + static_cast<size_t>(l) * (dd * dd + dd);
    float* db = dw + dd * dd;
    const float* xl = l == 0 ? x0_ : x_[l - 1].data();
    const float* z = z_[l].data();
    // G = dLoss/dx_{l+1}: dZ = G * x_0, dx_0 += G * Z.
    for (size_t j = 0; j < size; ++j) {
      dz[j] = g[j] * x0_[j];
      dx0[j] += g[j] * z[j];
    }
    // dW = dZ x_l^T, db = row sums of dZ.
    internal::Gemm(false, true, d, d, n, 1.f, dz, d, xl, d, 0.f, dw, d);
    if (l2 != 0) {
      for (size_t j = 0; j < dd * dd; ++j) dw[j] += l2 * w[j];
    }
    std::fill(db, db + d, 0.f);
    for (int i = 0; i < n; ++i) {
      const float* col = dz + static_cast<size_t>(i) * dd;
      for (int j = 0; j < d; ++j) db[j] += col[j];
    }
    // G = dLoss/dx_l = G (residual) + W^T dZ.
    internal::Gemm(true, false, d, n, d, 1.f, w, d, dz, d, 1.f, g, d);
  }
  for (size_t j = 0; j < size; ++j) dx0[j] += g[j];  // x_0 is the input itself
}

}  // namespace layers
}  // namespace freshet
