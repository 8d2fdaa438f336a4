#include "model/layers/mlp.h"

#include <glog/logging.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

namespace freshet {
namespace layers {
namespace {

using MatMap = Eigen::Map<Eigen::MatrixXf>;
using ConstMatMap = Eigen::Map<const Eigen::MatrixXf>;
using VecMap = Eigen::Map<Eigen::VectorXf>;
using ConstVecMap = Eigen::Map<const Eigen::VectorXf>;

}  // namespace

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
    ConstMatMap W(params + L.w, L.out, L.in);
    ConstVecMap bias(params + L.b, L.out);
    ConstMatMap H(h, L.in, n);
    MatMap Z(act_[l].data(), L.out, n);
    Z.noalias() = W * H;
    Z.colwise() += bias;
    if (L.relu) Z = Z.cwiseMax(0.f);
    h = act_[l].data();
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
    MatMap g(grad_a_.data(), layers_.back().out, n);
    g = ConstMatMap(dy, layers_.back().out, n)
            .cwiseProduct((ConstMatMap(act_.back().data(), layers_.back().out, n).array() > 0.f)
                              .cast<float>()
                              .matrix());
    dz = grad_a_.data();
  }
  for (size_t l = layers_.size(); l-- > 0;) {
    const Layer& L = layers_[l];
    const float* h = l == 0 ? x_ : act_[l - 1].data();
    ConstMatMap H(h, L.in, n);
    ConstMatMap dZ(dz, L.out, n);
    ConstMatMap W(params + L.w, L.out, L.in);
    MatMap dW(dparams + L.w, L.out, L.in);
    VecMap db(dparams + L.b, L.out);
    dW.noalias() = dZ * H.transpose();
    if (l2 != 0) dW += l2 * W;
    db = dZ.rowwise().sum();
    if (l == 0) {
      if (dx != nullptr) {
        MatMap dX(dx, L.in, n);
        dX.noalias() = W.transpose() * dZ;
      }
    } else {
      float* next = dz == grad_a_.data() ? grad_b_.data() : grad_a_.data();
      MatMap dH(next, L.in, n);
      dH.noalias() = W.transpose() * dZ;
      if (layers_[l - 1].relu) dH.array() *= (H.array() > 0.f).cast<float>();
      dz = next;
    }
  }
}

}  // namespace layers
}  // namespace freshet
