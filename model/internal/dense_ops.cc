#include "model/internal/dense_ops.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

namespace freshet {
namespace internal {

void CheckInput(const ModelShape& shape, const ModelInput& in, bool needs_emb, bool needs_wide) {
  CHECK(in.batch != nullptr) << "ModelInput.batch not set";
  const EncodedBatch& b = *in.batch;
  CHECK_EQ(b.num_slots(), shape.num_slots) << "batch slots do not match the model";
  CHECK_EQ(b.num_dense, shape.num_dense) << "batch dense features do not match the model";
  CHECK_EQ(static_cast<int>(b.offsets.size()), shape.num_slots);
  CHECK_EQ(b.dense.size(), static_cast<size_t>(b.size) * static_cast<size_t>(b.num_dense));
  if (needs_wide) {
    CHECK_EQ(static_cast<int>(in.wide.size()), shape.num_slots) << "one wide pointer per slot";
  }
  if (needs_emb) {
    CHECK_EQ(static_cast<int>(in.emb.size()), shape.num_slots) << "one emb pointer per slot";
  }
  for (int s = 0; s < shape.num_slots; ++s) {
    CHECK_EQ(b.offsets[s].size(), static_cast<size_t>(b.size) + 1) << "slot " << s;
    CHECK_EQ(b.offsets[s].back(), b.keys[s].size()) << "slot " << s;
    if (!b.keys[s].empty()) {
      if (needs_wide) CHECK(in.wide[s] != nullptr) << "slot " << s;
      if (needs_emb) CHECK(in.emb[s] != nullptr) << "slot " << s;
    }
  }
}

void FirstOrderForward(const ModelShape& shape, const ModelInput& in, const float* params,
                       float* logits) {
  const EncodedBatch& b = *in.batch;
  const int n = b.size;
  const int nd = b.num_dense;
  const float* w_dense = params + 1;
  for (int i = 0; i < n; ++i) {
    const float* x = b.dense.data() + static_cast<size_t>(i) * nd;
    float z = params[0];
    for (int d = 0; d < nd; ++d) z += w_dense[d] * x[d];
    logits[i] = z;
  }
  for (int s = 0; s < shape.num_slots; ++s) {
    const uint32_t* off = b.offsets[s].data();
    const float* w = in.wide[s];
    const bool mean = shape.pooling[s] == proto::MEAN;
    for (int i = 0; i < n; ++i) {
      const uint32_t lo = off[i], hi = off[i + 1];
      if (lo == hi) continue;
      float sum = 0;
      for (uint32_t k = lo; k < hi; ++k) sum += w[k];
      logits[i] += mean ? sum / static_cast<float>(hi - lo) : sum;
    }
  }
}

void FirstOrderBackward(const ModelShape& shape, const ModelInput& in, const float* dlogits,
                        const float* params, float l2, std::vector<std::vector<float>>* wide_grads,
                        float* dparams) {
  const EncodedBatch& b = *in.batch;
  const int n = b.size;
  const int nd = b.num_dense;
  double dbias = 0;
  for (int i = 0; i < n; ++i) dbias += dlogits[i];
  dparams[0] = static_cast<float>(dbias);
  float* dw = dparams + 1;
  for (int d = 0; d < nd; ++d) dw[d] = 0;
  for (int i = 0; i < n; ++i) {
    const float g = dlogits[i];
    const float* x = b.dense.data() + static_cast<size_t>(i) * nd;
    for (int d = 0; d < nd; ++d) dw[d] += g * x[d];
  }
  if (l2 != 0) {
    for (int d = 0; d < nd; ++d) dw[d] += l2 * params[1 + d];
  }

  wide_grads->resize(shape.num_slots);
  for (int s = 0; s < shape.num_slots; ++s) {
    std::vector<float>& g = (*wide_grads)[s];
    g.resize(b.keys[s].size());
    const uint32_t* off = b.offsets[s].data();
    const bool mean = shape.pooling[s] == proto::MEAN;
    for (int i = 0; i < n; ++i) {
      const uint32_t lo = off[i], hi = off[i + 1];
      if (lo == hi) continue;
      const float v = mean ? dlogits[i] / static_cast<float>(hi - lo) : dlogits[i];
      for (uint32_t k = lo; k < hi; ++k) g[k] = v;
    }
  }
}

DenseAdam::DenseAdam(size_t n, float lr) : lr_(lr > 0 ? lr : 0.001f), m_(n, 0.f), v_(n, 0.f) {}

std::vector<float> DenseAdam::State() const {
  std::vector<float> s(2 + m_.size() + v_.size());
  std::memcpy(s.data(), &t_, sizeof(t_));
  std::copy(m_.begin(), m_.end(), s.begin() + 2);
  std::copy(v_.begin(), v_.end(), s.begin() + 2 + static_cast<std::ptrdiff_t>(m_.size()));
  return s;
}

bool DenseAdam::SetState(const std::vector<float>& s) {
  if (s.size() != 2 + m_.size() + v_.size()) return false;
  std::memcpy(&t_, s.data(), sizeof(t_));
  std::copy(s.begin() + 2, s.begin() + 2 + static_cast<std::ptrdiff_t>(m_.size()), m_.begin());
  std::copy(s.begin() + 2 + static_cast<std::ptrdiff_t>(m_.size()), s.end(), v_.begin());
  return true;
}

void DenseAdam::Step(float* params, const float* grad) {
  ++t_;
  const double c1 = 1.0 - std::pow(kBeta1, static_cast<double>(t_));
  const double c2 = 1.0 - std::pow(kBeta2, static_cast<double>(t_));
  const float step = static_cast<float>(lr_ / c1);
  const float inv_c2 = static_cast<float>(1.0 / c2);
  const float b1 = static_cast<float>(kBeta1), b2 = static_cast<float>(kBeta2);
  const float eps = static_cast<float>(kEpsilon);
  const size_t n = m_.size();
  for (size_t j = 0; j < n; ++j) {
    const float g = grad[j];
    m_[j] = b1 * m_[j] + (1 - b1) * g;
    v_[j] = b2 * v_[j] + (1 - b2) * g * g;
    params[j] -= step * m_[j] / (std::sqrt(v_[j] * inv_c2) + eps);
  }
}

}  // namespace internal
}  // namespace freshet
