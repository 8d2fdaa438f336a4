#include "model/layered_model.h"

#include <glog/logging.h>

#include <Eigen/Core>
#include <algorithm>
#include <random>

#include "model/internal/gemm.h"

namespace freshet {
namespace {

using MatMap = Eigen::Map<Eigen::MatrixXf>;
using ConstMatMap = Eigen::Map<const Eigen::MatrixXf>;

bool Has(const proto::ModelConfig& c, proto::ModelConfig::Interaction what) {
  for (int i = 0; i < c.interactions_size(); ++i) {
    if (c.interactions(i) == what) return true;
  }
  return false;
}

std::vector<int> AttentionHidden(const proto::ModelConfig& c) {
  std::vector<int> h(c.attention().hidden().begin(), c.attention().hidden().end());
  if (h.empty()) h.push_back(32);
  return h;
}

int SlotIndex(const ModelShape& shape, const std::string& name) {
  for (int s = 0; s < static_cast<int>(shape.slot_names.size()); ++s) {
    if (shape.slot_names[s] == name) return s;
  }
  return -1;
}

// Pools rows (dim k, key j at rows + j * k) of slot keys [lo, hi) into dst.
void Pool(const float* rows, uint32_t lo, uint32_t hi, int k, bool mean, float* dst) {
  std::fill(dst, dst + k, 0.f);
  if (lo == hi) return;
  for (uint32_t key = lo; key < hi; ++key) {
    const float* row = rows + static_cast<size_t>(key) * k;
    for (int j = 0; j < k; ++j) dst[j] += row[j];
  }
  if (mean && hi - lo > 1) {
    const float inv = 1.f / static_cast<float>(hi - lo);
    for (int j = 0; j < k; ++j) dst[j] *= inv;
  }
}

// Spreads a pooled vector's gradient g (dim k) to keys [lo, hi) of grads.
void Spread(const float* g, uint32_t lo, uint32_t hi, int k, bool mean, float* grads) {
  if (lo == hi) return;
  const float scale = mean ? 1.f / static_cast<float>(hi - lo) : 1.f;
  for (uint32_t key = lo; key < hi; ++key) {
    float* dst = grads + static_cast<size_t>(key) * k;
    for (int j = 0; j < k; ++j) dst[j] = g[j] * scale;
  }
}

}  // namespace

double LayeredModel::CountDenseParams(const proto::ModelConfig& c, const ModelShape& shape) {
  double n = c.first_order() ? 1.0 + shape.num_dense : 0.0;
  double d0 = shape.num_dense;
  int k_att = 0;
  for (int s = 0; s < shape.num_slots; ++s) {
    d0 += shape.slot_dims[s];
    if (c.has_attention() && shape.slot_names[s] == c.attention().sequence_slot()) {
      k_att = shape.slot_dims[s];
    }
  }
  if (c.has_attention()) {
    double w = 4.0 * k_att;
    for (int h : AttentionHidden(c)) {
      n += w * h + h;
      w = h;
    }
    n += w + 1;
  }
  const double L = std::max(0, c.cross_layers());
  n += L * (d0 * d0 + d0);
  double w = d0;
  for (int h : c.hidden()) {
    n += w * h + h;
    w = h;
  }
  if (L > 0 && c.hidden_size() > 0 && c.cross_mode() == proto::ModelConfig::PARALLEL) w += d0;
  if (L > 0 || c.hidden_size() > 0) {
    if (c.heads_size() == 0) {
      n += w + 1;
    } else {
      for (const proto::HeadConfig& head : c.heads()) {
        double t = w;
        for (int h : head.hidden()) {
          n += t * h + h;
          t = h;
        }
        n += t + 1;
      }
    }
  }
  return n;
}

LayeredModel::LayeredModel(const proto::ModelConfig& config, ModelShape shape)
    : CpuModel(std::move(shape), config.dense_learning_rate()), l2_(config.dense_l2()) {
  internal::LimitBlasThreads();
  ns_ = shape_.num_slots;
  nd_ = shape_.num_dense;
  first_order_ = config.first_order();
  fm_on_ = Has(config, proto::ModelConfig::FM);
  ffm_on_ = Has(config, proto::ModelConfig::FFM);
  stacked_ = config.cross_mode() == proto::ModelConfig::STACKED;
  CHECK_EQ(static_cast<int>(shape_.slot_dims.size()), ns_);
  slot_off_.assign(ns_, -1);
  for (int s = 0; s < ns_; ++s) {
    if (shape_.slot_dims[s] <= 0) continue;
    slot_off_[s] = emb_width_;
    emb_width_ += shape_.slot_dims[s];
    ++num_emb_slots_;
    fm_k_ = shape_.slot_dims[s];
  }
  d0_ = emb_width_ + nd_;

  // Layers and their parameter blocks, in layout order.
  size_t off = first_order_ ? 1 + static_cast<size_t>(nd_) : 0;
  if (config.has_attention()) {
    att_seq_ = SlotIndex(shape_, config.attention().sequence_slot());
    att_query_ = SlotIndex(shape_, config.attention().query_slot());
    CHECK_GE(att_seq_, 0);
    CHECK_GE(att_query_, 0);
    att_ = std::make_unique<layers::TargetAttention>(shape_.slot_dims[att_seq_],
                                                     AttentionHidden(config));
    att_off_ = off;
    off += att_->NumParams();
  }
  if (config.cross_layers() > 0) {
    cross_ = std::make_unique<layers::CrossNet>(d0_, config.cross_layers());
    cross_off_ = off;
    off += cross_->NumParams();
  }
  int head_in = d0_;
  if (config.hidden_size() > 0) {
    std::vector<int> widths{d0_};
    widths.insert(widths.end(), config.hidden().begin(), config.hidden().end());
    mlp_ = std::make_unique<layers::Mlp>(widths, /*relu_last=*/true);
    mlp_off_ = off;
    off += mlp_->NumParams();
    head_in = config.hidden(config.hidden_size() - 1);
    if (cross_ != nullptr && !stacked_) head_in += d0_;
  }
  if (cross_ != nullptr || mlp_ != nullptr) {
    // One tower per head; without `heads` one linear head (width 1).
    const int towers = std::max(1, config.heads_size());
    for (int k = 0; k < towers; ++k) {
      std::vector<int> widths{head_in};
      if (config.heads_size() > 0) {
        const auto& hidden = config.heads(k).hidden();
        widths.insert(widths.end(), hidden.begin(), hidden.end());
      }
      widths.push_back(1);
      towers_.push_back(std::make_unique<layers::Mlp>(widths, /*relu_last=*/false));
      tower_off_.push_back(off);
      off += towers_.back()->NumParams();
    }
    num_heads_ = towers;
  }
  if (fm_on_) fm_ = std::make_unique<layers::FmLayer>(num_emb_slots_, fm_k_);
  if (ffm_on_) {
    ffm_k_ = shape_.ffm_dim / ns_;
    ffm_ = std::make_unique<layers::FfmLayer>(ns_, ffm_k_);
  }
  ResetDenseParams(off);
  CHECK_EQ(static_cast<double>(off), CountDenseParams(config, shape_));

  std::mt19937_64 rng(config.seed());
  if (att_ != nullptr) att_->Init(&rng, params_.data() + att_off_);
  if (cross_ != nullptr) cross_->Init(&rng, params_.data() + cross_off_);
  if (mlp_ != nullptr) mlp_->Init(&rng, params_.data() + mlp_off_);
  for (size_t k = 0; k < towers_.size(); ++k)
    towers_[k]->Init(&rng, params_.data() + tower_off_[k]);
}

void LayeredModel::Forward(const ModelInput& in, float* logits) {
  internal::CheckInput(shape_, in, /*needs_emb=*/false, /*needs_wide=*/first_order_);
  const EncodedBatch& b = *in.batch;
  const int n = b.size;
  last_batch_ = in.batch;
  batch_size_ = n;
  for (int s = 0; s < ns_; ++s) {
    if (b.keys[s].empty()) continue;
    if (slot_off_[s] >= 0) {
      CHECK(s < static_cast<int>(in.emb.size()) && in.emb[s] != nullptr) << "emb of slot " << s;
    }
    if (ffm_on_) CHECK(s < static_cast<int>(in.ffm.size()) && in.ffm[s] != nullptr) << "ffm " << s;
  }

  if (first_order_) {
    internal::FirstOrderForward(shape_, in, params_.data(), logits);
  } else {
    std::fill(logits, logits + n, 0.f);
  }
  part_.resize(n);

  // x0: pooled slot embeddings, then dense features.
  const size_t D = static_cast<size_t>(d0_);
  if (d0_ > 0 && (fm_on_ || !towers_.empty() || att_ != nullptr)) {
    x0_.resize(D * n);
    for (int i = 0; i < n; ++i) {
      std::copy(b.dense.data() + static_cast<size_t>(i) * nd_,
                b.dense.data() + static_cast<size_t>(i + 1) * nd_, x0_.data() + i * D + emb_width_);
    }
    for (int s = 0; s < ns_; ++s) {
      if (slot_off_[s] < 0 || s == att_seq_) continue;
      const int k = shape_.slot_dims[s];
      const bool mean = shape_.pooling[s] == proto::MEAN;
      const uint32_t* off = b.offsets[s].data();
      for (int i = 0; i < n; ++i) {
        Pool(in.emb[s], off[i], off[i + 1], k, mean, x0_.data() + i * D + slot_off_[s]);
      }
    }
    if (att_ != nullptr) {
      att_->Forward(params_.data() + att_off_, in.emb[att_seq_], b.offsets[att_seq_].data(), n,
                    x0_.data() + slot_off_[att_query_], d0_,
                    shape_.pooling[att_seq_] == proto::MEAN, x0_.data() + slot_off_[att_seq_], d0_);
    }
  }

  if (fm_ != nullptr) {
    fm_->Forward(x0_.data(), d0_, n, part_.data());
    for (int i = 0; i < n; ++i) logits[i] += part_[i];
  }

  if (ffm_ != nullptr) {
    const size_t w = static_cast<size_t>(ffm_->width());
    const int fd = shape_.ffm_dim;
    ffm_p_.resize(w * n);
    for (int s = 0; s < ns_; ++s) {
      const bool mean = shape_.pooling[s] == proto::MEAN;
      const uint32_t* off = b.offsets[s].data();
      for (int i = 0; i < n; ++i) {
        Pool(in.ffm[s], off[i], off[i + 1], fd, mean,
             ffm_p_.data() + i * w + static_cast<size_t>(s) * fd);
      }
    }
    ffm_->Forward(ffm_p_.data(), n, part_.data());
    for (int i = 0; i < n; ++i) logits[i] += part_[i];
  }

  if (!towers_.empty()) {
    const float* h = x0_.data();
    if (stacked_ || mlp_ == nullptr || cross_ == nullptr) {
      if (cross_ != nullptr) h = cross_->Forward(params_.data() + cross_off_, h, n);
      if (mlp_ != nullptr) h = mlp_->Forward(params_.data() + mlp_off_, h, n);
    } else {
      const float* c = cross_->Forward(params_.data() + cross_off_, x0_.data(), n);
      const float* m = mlp_->Forward(params_.data() + mlp_off_, x0_.data(), n);
      const int wm = mlp_->out();
      const int wh = d0_ + wm;
      h_.resize(static_cast<size_t>(wh) * n);
      MatMap H(h_.data(), wh, n);
      H.topRows(d0_) = ConstMatMap(c, d0_, n);
      H.bottomRows(wm) = ConstMatMap(m, wm, n);
      h = h_.data();
    }
    // Every head: the shared parts (first order, FM, FFM) plus its tower.
    for (int k = 1; k < num_heads_; ++k) std::copy(logits, logits + n, logits + k * n);
    for (int k = 0; k < num_heads_; ++k) {
      const float* out = towers_[k]->Forward(params_.data() + tower_off_[k], h, n);
      float* z = logits + static_cast<size_t>(k) * n;
      for (int i = 0; i < n; ++i) z[i] += out[i];
    }
  }
}

void LayeredModel::Backward(const ModelInput& in, const float* dlogits, SparseGrads* grads,
                            float* dense_grad) {
  CHECK(in.batch == last_batch_ && in.batch->size == batch_size_)
      << "Backward must follow Forward on the same batch";
  const EncodedBatch& b = *in.batch;
  const int n = b.size;
  const size_t D = static_cast<size_t>(d0_);

  // The shared parts' logit is in every head's: their gradient is the sum.
  const float* dshared = dlogits;
  if (num_heads_ > 1) {
    dshared_.assign(dlogits, dlogits + n);
    for (int k = 1; k < num_heads_; ++k) {
      const float* d = dlogits + static_cast<size_t>(k) * n;
      for (int i = 0; i < n; ++i) dshared_[i] += d[i];
    }
    dshared = dshared_.data();
  }

  if (first_order_) {
    internal::FirstOrderBackward(shape_, in, dshared, params_.data(), l2_, &grads->wide,
                                 dense_grad);
  } else {
    grads->wide.clear();
  }

  const bool need_x0 = d0_ > 0 && (fm_on_ || !towers_.empty() || att_ != nullptr);
  if (need_x0) {
    dx0_.assign(D * n, 0.f);
  }
  if (!towers_.empty()) {
    const int hw = towers_[0]->in();
    dh_.resize(static_cast<size_t>(hw) * n);
    towers_[0]->Backward(params_.data() + tower_off_[0], dlogits, l2_, dense_grad + tower_off_[0],
                         dh_.data());
    if (num_heads_ > 1) {
      dtower_.resize(static_cast<size_t>(hw) * n);
      MatMap dH(dh_.data(), hw, n);
      for (int k = 1; k < num_heads_; ++k) {
        towers_[k]->Backward(params_.data() + tower_off_[k], dlogits + static_cast<size_t>(k) * n,
                             l2_, dense_grad + tower_off_[k], dtower_.data());
        dH += ConstMatMap(dtower_.data(), hw, n);
      }
    }
    MatMap dX0(dx0_.data(), d0_, n);
    dmid_.resize(std::max<size_t>(D, static_cast<size_t>(hw)) * n);
    if (mlp_ != nullptr && cross_ != nullptr && !stacked_) {
      // h = [c; m]: split the head's input gradient (h_ is free again).
      const int wm = mlp_->out();
      h_.resize(std::max<size_t>(D, static_cast<size_t>(wm)) * n);
      MatMap(h_.data(), wm, n) = ConstMatMap(dh_.data(), hw, n).bottomRows(wm);
      mlp_->Backward(params_.data() + mlp_off_, h_.data(), l2_, dense_grad + mlp_off_,
                     dmid_.data());
      dX0 += ConstMatMap(dmid_.data(), d0_, n);
      MatMap(h_.data(), d0_, n) = ConstMatMap(dh_.data(), hw, n).topRows(d0_);
      cross_->Backward(params_.data() + cross_off_, h_.data(), l2_, dense_grad + cross_off_,
                       dmid_.data());
      dX0 += ConstMatMap(dmid_.data(), d0_, n);
    } else {
      const float* g = dh_.data();
      if (mlp_ != nullptr) {
        mlp_->Backward(params_.data() + mlp_off_, g, l2_, dense_grad + mlp_off_, dmid_.data());
        g = dmid_.data();
      }
      if (cross_ != nullptr) {
        // dmid_ may hold the cross output's gradient: copy before reuse.
        h_.assign(g, g + D * n);
        cross_->Backward(params_.data() + cross_off_, h_.data(), l2_, dense_grad + cross_off_,
                         dmid_.data());
        g = dmid_.data();
      }
      dX0 += ConstMatMap(g, d0_, n);
    }
  }
  if (fm_ != nullptr) fm_->Backward(x0_.data(), d0_, n, dshared, dx0_.data());

  // Embedding grads.
  if (!need_x0) {
    grads->emb.clear();
  } else {
    grads->emb.resize(ns_);
  }
  for (int s = 0; s < static_cast<int>(grads->emb.size()); ++s) {
    std::vector<float>& g = grads->emb[s];
    if (slot_off_[s] < 0) {
      g.clear();
      continue;
    }
    g.resize(b.keys[s].size() * static_cast<size_t>(shape_.slot_dims[s]));
  }
  if (att_ != nullptr) {
    // The query's gradient lands in dx0 before the query slot is spread.
    att_->Backward(params_.data() + att_off_, dx0_.data() + slot_off_[att_seq_], d0_, l2_,
                   dense_grad + att_off_, grads->emb[att_seq_].data(),
                   dx0_.data() + slot_off_[att_query_], d0_);
  }
  if (need_x0) {
    for (int s = 0; s < ns_; ++s) {
      if (slot_off_[s] < 0 || s == att_seq_) continue;
      const int k = shape_.slot_dims[s];
      const bool mean = shape_.pooling[s] == proto::MEAN;
      const uint32_t* off = b.offsets[s].data();
      float* g = grads->emb[s].data();
      for (int i = 0; i < n; ++i) {
        Spread(dx0_.data() + i * D + slot_off_[s], off[i], off[i + 1], k, mean, g);
      }
    }
  }

  if (ffm_ != nullptr) {
    const size_t w = static_cast<size_t>(ffm_->width());
    const int fd = shape_.ffm_dim;
    dffm_p_.resize(w * n);
    ffm_->Backward(ffm_p_.data(), n, dshared, dffm_p_.data());
    grads->ffm.resize(ns_);
    for (int s = 0; s < ns_; ++s) {
      std::vector<float>& g = grads->ffm[s];
      g.resize(b.keys[s].size() * static_cast<size_t>(fd));
      const bool mean = shape_.pooling[s] == proto::MEAN;
      const uint32_t* off = b.offsets[s].data();
      for (int i = 0; i < n; ++i) {
        Spread(dffm_p_.data() + i * w + static_cast<size_t>(s) * fd, off[i], off[i + 1], fd, mean,
               g.data());
      }
    }
  } else {
    grads->ffm.clear();
  }
}

}  // namespace freshet
