#include "model/layers/attention.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>

namespace freshet {
namespace layers {
namespace {

std::vector<int> Widths(int k, const std::vector<int>& hidden) {
  std::vector<int> w{4 * k};
  w.insert(w.end(), hidden.begin(), hidden.end());
  w.push_back(1);
  return w;
}

}  // namespace

TargetAttention::TargetAttention(int k, const std::vector<int>& hidden)
    : k_(k), mlp_(Widths(k, hidden), /*relu_last=*/false) {
  CHECK_GT(k, 0);
}

void TargetAttention::Forward(const float* params, const float* rows, const uint32_t* offsets,
                              int n, const float* q, int q_stride, bool mean, float* out,
                              int out_stride) {
  rows_ = rows;
  offsets_ = offsets;
  q_ = q;
  n_ = n;
  q_stride_ = q_stride;
  mean_ = mean;
  const int k = k_;
  const size_t total = n > 0 ? offsets[n] - offsets[0] : 0;
  const uint32_t base = n > 0 ? offsets[0] : 0;
  u_.resize(4 * static_cast<size_t>(k) * total);
  for (int i = 0; i < n; ++i) {
    const float* qi = q + static_cast<size_t>(i) * q_stride;
    for (uint32_t j = offsets[i]; j < offsets[i + 1]; ++j) {
      const float* e = rows + static_cast<size_t>(j) * k;
      float* u = u_.data() + static_cast<size_t>(j - base) * 4 * k;
      for (int d = 0; d < k; ++d) {
        u[d] = e[d];
        u[k + d] = qi[d];
        u[2 * k + d] = e[d] - qi[d];
        u[3 * k + d] = e[d] * qi[d];
      }
    }
  }
  a_.resize(total);
  if (total > 0) {
    const float* s = mlp_.Forward(params, u_.data(), static_cast<int>(total));
    for (size_t j = 0; j < total; ++j) a_[j] = 1.f / (1.f + std::exp(-s[j]));
  }
  for (int i = 0; i < n; ++i) {
    float* o = out + static_cast<size_t>(i) * out_stride;
    std::fill(o, o + k, 0.f);
    const uint32_t lo = offsets[i], hi = offsets[i + 1];
    if (lo == hi) continue;
    for (uint32_t j = lo; j < hi; ++j) {
      const float* e = rows + static_cast<size_t>(j) * k;
      const float a = a_[j - base];
      for (int d = 0; d < k; ++d) o[d] += a * e[d];
    }
    if (mean && hi - lo > 1) {
      const float inv = 1.f / static_cast<float>(hi - lo);
      for (int d = 0; d < k; ++d) o[d] *= inv;
    }
  }
}

void TargetAttention::Backward(const float* params, const float* dout, int out_stride, float l2,
                               float* dparams, float* drows, float* dq, int q_stride) {
  const int n = n_, k = k_;
  const uint32_t* offsets = offsets_;
  const size_t total = n > 0 ? offsets[n] - offsets[0] : 0;
  const uint32_t base = n > 0 ? offsets[0] : 0;
  ds_.resize(total);
  for (int i = 0; i < n; ++i) {
    const uint32_t lo = offsets[i], hi = offsets[i + 1];
    if (lo == hi) continue;
    const float c = mean_ ? 1.f / static_cast<float>(hi - lo) : 1.f;
    const float* g = dout + static_cast<size_t>(i) * out_stride;
    for (uint32_t j = lo; j < hi; ++j) {
      const float* e = rows_ + static_cast<size_t>(j) * k;
      float* de = drows + static_cast<size_t>(j) * k;
      const float a = a_[j - base];
      float da = 0;
      for (int d = 0; d < k; ++d) {
        de[d] = a * c * g[d];
        da += c * g[d] * e[d];
      }
      ds_[j - base] = da * a * (1.f - a);
    }
  }
  if (total == 0) {
    std::fill(dparams, dparams + mlp_.NumParams(), 0.f);
    return;
  }
  du_.resize(4 * static_cast<size_t>(k) * total);
  mlp_.Backward(params, ds_.data(), l2, dparams, du_.data());
  for (int i = 0; i < n; ++i) {
    const float* qi = q_ + static_cast<size_t>(i) * q_stride_;
    float* dqi = dq + static_cast<size_t>(i) * q_stride;
    for (uint32_t j = offsets[i]; j < offsets[i + 1]; ++j) {
      const float* e = rows_ + static_cast<size_t>(j) * k;
      float* de = drows + static_cast<size_t>(j) * k;
      const float* du = du_.data() + static_cast<size_t>(j - base) * 4 * k;
      for (int d = 0; d < k; ++d) {
        de[d] += du[d] + du[2 * k + d] + du[3 * k + d] * qi[d];
        dqi[d] += du[k + d] - du[2 * k + d] + du[3 * k + d] * e[d];
      }
    }
  }
}

}  // namespace layers
}  // namespace freshet
