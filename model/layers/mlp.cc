#include "model/layers/mlp.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>

#include "model/internal/gemm.h"

namespace freshet {
namespace layers {

void GlorotUniform(std::mt19937_64* rng, int fan_in, int fan_out, float* w) {
  const double limit = std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
  const size_t n = static_cast<size_t>(fan_in) * static_cast<size_t>(fan_out);
  for (size_t j = 0; j < n; ++j) {
    const double u = static_cast<double>((*rng)() >> 11) * 0x1.0p-53;  // [0, 1)
    w[j] = static_cast<float>((2.0 * u - 1.0) * limit);
  }
}

Mlp::Mlp(std::vector<int> widths, bool relu_last) : widths_(std::move(widths)) {
  CHECK_GE(widths_.size(), 2u);
  size_t off = 0;
  for (size_t l = 0; l + 1 < widths_.size(); ++l) {
    CHECK_GT(widths_[l], 0);
    CHECK_GT(widths_[l + 1], 0);
    Layer L;
    L.in = widths_[l];
    L.out = widths_[l + 1];
    L.w = off;
    L.b = off + static_cast<size_t>(L.in) * static_cast<size_t>(L.out);
    off = L.b + static_cast<size_t>(L.out);
    L.relu = l + 2 < widths_.size() || relu_last;
    layers_.push_back(L);
  }
  num_params_ = off;
  act_.resize(layers_.size());
}

void Mlp::Init(std::mt19937_64* rng, float* params) const {
  for (const Layer& L : layers_) {
    GlorotUniform(rng, L.in, L.out, params + L.w);
    std::fill(params + L.b, params + L.b + L.out, 0.f);
  }
}

const float* Mlp::Forward(const float* params, const float* x, int n) {
  x_ = x;
  n_ = n;
  const float* h = x;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    act_[l].resize(static_cast<size_t>(L.out) * n);
    float* z = act_[l].data();
    // Z = W H (out x n), then one pass adding the bias and, for ReLU layers,
    // clamping.
    internal::Gemm(false, false, L.out, n, L.in, 1.f, params + L.w, L.out, h, L.in, 0.f, z, L.out);
    const float* bias = params + L.b;
    for (int i = 0; i < n; ++i) {
      float* col = z + static_cast<size_t>(i) * L.out;
      if (L.relu) {
        for (int o = 0; o < L.out; ++o) col[o] = std::max(col[o] + bias[o], 0.f);
      } else {
        for (int o = 0; o < L.out; ++o) col[o] += bias[o];
      }
    }
    h = z;
  }
  return h;
}

void Mlp::Backward(const float* params, const float* dy, float l2, float* dparams, float* dx) {
  const int n = n_;
  size_t max_width = 1;
  for (const Layer& L : layers_) {
    max_width = std::max({max_width, static_cast<size_t>(L.out), static_cast<size_t>(L.in)});
  }
  grad_a_.resize(max_width * n);
  grad_b_.resize(max_width * n);
  // dz: dLoss/d(pre-activation) of layer l.
  const float* dz = dy;
  if (layers_.back().relu) {
    const size_t size = static_cast<size_t>(layers_.back().out) * n;
    const float* a = act_.back().data();
    for (size_t j = 0; j < size; ++j) grad_a_[j] = a[j] > 0.f ? dy[j] : 0.f;
    dz = grad_a_.data();
  }
  for (size_t l = layers_.size(); l-- > 0;) {
    const Layer& L = layers_[l];
    const float* h = l == 0 ? x_ : act_[l - 1].data();
    const float* w = params + L.w;
    float* dw = dparams + L.w;
    float* db = dparams + L.b;
    // dW = dZ H^T (out x in), db = row sums of dZ.
    internal::Gemm(false, true, L.out, L.in, n, 1.f, dz, L.out, h, L.in, 0.f, dw, L.out);
    if (l2 != 0) {
      const size_t nw = static_cast<size_t>(L.out) * static_cast<size_t>(L.in);
      for (size_t j = 0; j < nw; ++j) dw[j] += l2 * w[j];
    }
    std::fill(db, db + L.out, 0.f);
    for (int i = 0; i < n; ++i) {
      const float* col = dz + static_cast<size_t>(i) * L.out;
      for (int o = 0; o < L.out; ++o) db[o] += col[o];
    }
    // dH = W^T dZ (in x n); through the ReLU of layer l - 1.
    if (l == 0) {
      if (dx != nullptr) {
        internal::Gemm(true, false, L.in, n, L.out, 1.f, w, L.out, dz, L.out, 0.f, dx, L.in);
      }
    } else {
      float* next = dz == grad_a_.data() ? grad_b_.data() : grad_a_.data();
      internal::Gemm(true, false, L.in, n, L.out, 1.f, w, L.out, dz, L.out, 0.f, next, L.in);
      if (layers_[l - 1].relu) {
        const size_t size = static_cast<size_t>(L.in) * n;
        // A select, not a branch: the signs are random, and it vectorizes.
        for (size_t j = 0; j < size; ++j) next[j] = h[j] > 0.f ? next[j] : 0.f;
      }
      dz = next;
    }
  }
}

}  // namespace layers
}  // namespace freshet
