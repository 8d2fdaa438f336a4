#include "model/deepfm_model.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "model/internal/gemm.h"

namespace freshet {
namespace {

// Layer widths in_0 -> hidden... -> 1.
std::vector<int> Widths(const ModelShape& shape, const std::vector<int>& hidden) {
  std::vector<int> w;
  w.push_back(shape.num_slots * shape.emb_dim + shape.num_dense);
  for (int h : hidden) w.push_back(h);
  w.push_back(1);
  return w;
}

}  // namespace

size_t DeepFmModel::CountDenseParams(const ModelShape& shape, const std::vector<int>& hidden) {
  const std::vector<int> w = Widths(shape, hidden);
  size_t n = 1 + static_cast<size_t>(shape.num_dense);
  for (size_t l = 0; l + 1 < w.size(); ++l) {
    n += static_cast<size_t>(w[l]) * static_cast<size_t>(w[l + 1]) + static_cast<size_t>(w[l + 1]);
  }
  return n;
}

DeepFmModel::DeepFmModel(const proto::ModelConfig& config, ModelShape shape)
    : CpuModel(std::move(shape), config.dense_learning_rate()),
      l2_(config.dense_l2()),
      in0_(shape_.num_slots * shape_.emb_dim + shape_.num_dense),
      mlp_(Widths(shape_, std::vector<int>(config.hidden().begin(), config.hidden().end())),
           /*relu_last=*/false),
      mlp_off_(1 + static_cast<size_t>(shape_.num_dense)) {
  CHECK_GT(shape_.emb_dim, 0);
  ResetDenseParams(CountDenseParams(shape_, {config.hidden().begin(), config.hidden().end()}));
  internal::LimitBlasThreads();
  CHECK_EQ(mlp_off_ + mlp_.NumParams(), params_.size());
  std::mt19937_64 rng(config.seed());
  mlp_.Init(&rng, params_.data() + mlp_off_);
}

void DeepFmModel::Forward(const ModelInput& in, float* logits) {
  internal::CheckInput(shape_, in, /*needs_emb=*/true);
  const EncodedBatch& b = *in.batch;
  const int n = b.size;
  const int k = shape_.emb_dim;
  const int ns = shape_.num_slots;
  const int nd = shape_.num_dense;
  const size_t in0 = static_cast<size_t>(in0_);
  last_batch_ = in.batch;
  batch_size_ = n;

  // MLP input x (in0 x n, column i = example i): pooled embeddings, dense.
  x_.resize(in0 * n);
  for (int i = 0; i < n; ++i) {
    float* col = x_.data() + i * in0;
    std::fill(col, col + static_cast<size_t>(ns) * k, 0.f);
    std::copy(b.dense.data() + static_cast<size_t>(i) * nd,
              b.dense.data() + static_cast<size_t>(i + 1) * nd, col + static_cast<size_t>(ns) * k);
  }
  for (int s = 0; s < ns; ++s) {
    const uint32_t* off = b.offsets[s].data();
    const float* emb = in.emb[s];
    const bool mean = shape_.pooling[s] == proto::MEAN;
    for (int i = 0; i < n; ++i) {
      const uint32_t lo = off[i], hi = off[i + 1];
      if (lo == hi) continue;
      float* e = x_.data() + i * in0 + static_cast<size_t>(s) * k;
      for (uint32_t key = lo; key < hi; ++key) {
        const float* row = emb + static_cast<size_t>(key) * k;
        for (int j = 0; j < k; ++j) e[j] += row[j];
      }
      if (mean && hi - lo > 1) {
        const float inv = 1.f / static_cast<float>(hi - lo);
        for (int j = 0; j < k; ++j) e[j] *= inv;
      }
    }
  }

  // First order.
  internal::FirstOrderForward(shape_, in, params_.data(), logits);

  // FM second order: 0.5 * sum_j ((sum_s e_sj)^2 - sum_s e_sj^2).
  fm_sum_.resize(static_cast<size_t>(k) * n);
  for (int i = 0; i < n; ++i) {
    const float* col = x_.data() + i * in0;
    float* sum = fm_sum_.data() + static_cast<size_t>(i) * k;
    std::fill(sum, sum + k, 0.f);
    float sq = 0;
    for (int s = 0; s < ns; ++s) {
      const float* e = col + static_cast<size_t>(s) * k;
      for (int j = 0; j < k; ++j) {
        sum[j] += e[j];
        sq += e[j] * e[j];
      }
    }
    float sum2 = 0;
    for (int j = 0; j < k; ++j) sum2 += sum[j] * sum[j];
    logits[i] += 0.5f * (sum2 - sq);
  }

  // MLP: a_l = relu(W_l a_{l-1} + b_l), linear output layer.
  const float* out = mlp_.Forward(params_.data() + mlp_off_, x_.data(), n);
  for (int i = 0; i < n; ++i) logits[i] += out[i];
}

void DeepFmModel::Backward(const ModelInput& in, const float* dlogits, SparseGrads* grads,
                           float* dense_grad) {
  CHECK(in.batch == last_batch_ && in.batch->size == batch_size_)
      << "Backward must follow Forward on the same batch";
  const EncodedBatch& b = *in.batch;
  const int n = b.size;
  const int k = shape_.emb_dim;
  const int ns = shape_.num_slots;
  const size_t in0 = static_cast<size_t>(in0_);

  // First order: bias, w_dense, wide grads.
  internal::FirstOrderBackward(shape_, in, dlogits, params_.data(), l2_, &grads->wide, dense_grad);

  // MLP, top down; dx_ = dLoss/dx.
  dx_.resize(in0 * n);
  mlp_.Backward(params_.data() + mlp_off_, dlogits, l2_, dense_grad + mlp_off_, dx_.data());

  // Embedding grads: dLoss/de_{i,s} = dx + dlogit_i * (sum_t e_{i,t} - e_{i,s}),
  // spread to the slot's keys (divided by the key count for MEAN).
  grads->emb.resize(ns);
  for (int s = 0; s < ns; ++s) {
    std::vector<float>& g = grads->emb[s];
    g.resize(b.keys[s].size() * k);
    const uint32_t* off = b.offsets[s].data();
    const bool mean = shape_.pooling[s] == proto::MEAN;
    for (int i = 0; i < n; ++i) {
      const uint32_t lo = off[i], hi = off[i + 1];
      if (lo == hi) continue;
      const size_t at = i * in0 + static_cast<size_t>(s) * k;
      const float* e = x_.data() + at;
      const float* dx = dx_.data() + at;
      const float* sum = fm_sum_.data() + static_cast<size_t>(i) * k;
      const float scale = mean ? 1.f / static_cast<float>(hi - lo) : 1.f;
      const float gl = dlogits[i];
      float* dst = g.data() + static_cast<size_t>(lo) * k;
      for (int j = 0; j < k; ++j) dst[j] = (dx[j] + gl * (sum[j] - e[j])) * scale;
      for (uint32_t key = lo + 1; key < hi; ++key) {
        std::copy(dst, dst + k, g.data() + static_cast<size_t>(key) * k);
      }
    }
  }
}

}  // namespace freshet
