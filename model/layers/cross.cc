#include "model/layers/cross.h"

#include <glog/logging.h>

#include <Eigen/Core>

#include "model/layers/mlp.h"

namespace freshet {
namespace layers {
namespace {

using MatMap = Eigen::Map<Eigen::MatrixXf>;
using ConstMatMap = Eigen::Map<const Eigen::MatrixXf>;
using VecMap = Eigen::Map<Eigen::VectorXf>;
using ConstVecMap = Eigen::Map<const Eigen::VectorXf>;

}  // namespace

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
  const size_t d = static_cast<size_t>(dim_);
  ConstMatMap X0(x0, dim_, n);
  const float* xl = x0;
  for (int l = 0; l < num_layers_; ++l) {
    const float* w = params + static_cast<size_t>(l) * (d * d + d);
    ConstMatMap W(w, dim_, dim_);
    ConstVecMap b(w + d * d, dim_);
    z_[l].resize(d * n);
    x_[l].resize(d * n);
    MatMap Z(z_[l].data(), dim_, n);
    Z.noalias() = W * ConstMatMap(xl, dim_, n);
    Z.colwise() += b;
    MatMap X(x_[l].data(), dim_, n);
    X = X0.cwiseProduct(Z) + ConstMatMap(xl, dim_, n);
    xl = x_[l].data();
  }
  return xl;
}

void CrossNet::Backward(const float* params, const float* dy, float l2, float* dparams,
                        float* dx0) {
  const int n = n_;
  const size_t d = static_cast<size_t>(dim_);
  ConstMatMap X0(x0_, dim_, n);
  g_.assign(dy, dy + d * n);
  dz_.resize(d * n);
  MatMap G(g_.data(), dim_, n);
  MatMap dZ(dz_.data(), dim_, n);
  MatMap dX0(dx0, dim_, n);
  dX0.setZero();
  for (int l = num_layers_; l-- > 0;) {
    const float* w = params + static_cast<size_t>(l) * (d * d + d);
    float* dw = dparams + static_cast<size_t>(l) * (d * d + d);
    ConstMatMap W(w, dim_, dim_);
    const float* xl = l == 0 ? x0_ : x_[l - 1].data();
    ConstMatMap Xl(xl, dim_, n);
    // G = dLoss/dx_{l+1}.
    dZ = G.cwiseProduct(X0);
    dX0 += G.cwiseProduct(ConstMatMap(z_[l].data(), dim_, n));
    MatMap dW(dw, dim_, dim_);
    dW.noalias() = dZ * Xl.transpose();
    if (l2 != 0) dW += l2 * W;
    VecMap(dw + d * d, dim_) = dZ.rowwise().sum();
    G.noalias() += W.transpose() * dZ;  // dLoss/dx_l (residual + through z)
  }
  dX0 += G;  // x_0 is the input itself
}

}  // namespace layers
}  // namespace freshet
