#include "server/optimizer.h"

#include <cmath>
#include <vector>

namespace freshet {
namespace {

class Sgd final : public Optimizer {
 public:
  Sgd(const proto::SgdConfig& c, float clip_norm) : Optimizer(clip_norm), lr_(c.learning_rate()) {}

  int StateDim(int dim) const override { return 0; }
  void InitState(float* state, int dim) const override {}

 protected:
  void Update(float* w, float* state, const float* g, int dim,
              uint32_t updates_before) const override {
    for (int i = 0; i < dim; ++i) w[i] -= lr_ * g[i];
  }

 private:
  const float lr_;
};

// state = a[dim].
class Adagrad final : public Optimizer {
 public:
  Adagrad(const proto::AdagradConfig& c, float clip_norm)
      : Optimizer(clip_norm),
        lr_(c.learning_rate()),
        initial_accumulator_(c.initial_accumulator()),
        eps_(c.epsilon()) {}

  int StateDim(int dim) const override { return dim; }
  void InitState(float* state, int dim) const override {
    for (int i = 0; i < dim; ++i) state[i] = initial_accumulator_;
  }

 protected:
  void Update(float* w, float* a, const float* g, int dim, uint32_t updates_before) const override {
    for (int i = 0; i < dim; ++i) {
      a[i] += g[i] * g[i];
      w[i] -= lr_ * g[i] / (std::sqrt(a[i]) + eps_);
    }
  }

 private:
  const float lr_;
  const float initial_accumulator_;
  const float eps_;
};

// state = m[dim], v[dim].
class Adam final : public Optimizer {
 public:
  Adam(const proto::AdamConfig& c, float clip_norm)
      : Optimizer(clip_norm),
        lr_(c.learning_rate()),
        b1_(c.beta1()),
        b2_(c.beta2()),
        eps_(c.epsilon()) {}

  int StateDim(int dim) const override { return 2 * dim; }
  void InitState(float* state, int dim) const override {
    for (int i = 0; i < 2 * dim; ++i) state[i] = 0.0f;
  }

 protected:
  void Update(float* w, float* state, const float* g, int dim,
              uint32_t updates_before) const override {
    float* m = state;
    float* v = state + dim;
    // Lazy Adam: the step count is the row's own update count.
    const double t = static_cast<double>(updates_before) + 1.0;
    const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(b1_), t));
    const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(b2_), t));
    for (int i = 0; i < dim; ++i) {
      m[i] = b1_ * m[i] + (1.0f - b1_) * g[i];
      v[i] = b2_ * v[i] + (1.0f - b2_) * g[i] * g[i];
      w[i] -= lr_ * (m[i] / bc1) / (std::sqrt(v[i] / bc2) + eps_);
    }
  }

 private:
  const float lr_;
  const float b1_;
  const float b2_;
  const float eps_;
};

// state = z[dim], n[dim].
class Ftrl final : public Optimizer {
 public:
  Ftrl(const proto::FtrlConfig& c, float clip_norm)
      : Optimizer(clip_norm), alpha_(c.alpha()), beta_(c.beta()), l1_(c.l1()), l2_(c.l2()) {}

  int StateDim(int dim) const override { return 2 * dim; }
  void InitState(float* state, int dim) const override {
    for (int i = 0; i < 2 * dim; ++i) state[i] = 0.0f;
  }

 protected:
  void Update(float* w, float* state, const float* g, int dim,
              uint32_t updates_before) const override {
    float* z = state;
    float* n = state + dim;
    for (int i = 0; i < dim; ++i) {
      const float gi = g[i];
      const float n_new = n[i] + gi * gi;
      const float sigma = (std::sqrt(n_new) - std::sqrt(n[i])) / alpha_;
      z[i] += gi - sigma * w[i];
      n[i] = n_new;
      if (std::fabs(z[i]) <= l1_) {
        w[i] = 0.0f;
      } else {
        const float sign = z[i] < 0 ? -1.0f : 1.0f;
        w[i] = -(z[i] - sign * l1_) / ((beta_ + std::sqrt(n_new)) / alpha_ + l2_);
      }
    }
  }

 private:
  const float alpha_;
  const float beta_;
  const float l1_;
  const float l2_;
};

}  // namespace

StatusOr<std::unique_ptr<Optimizer>> Optimizer::Create(const proto::OptimizerConfig& cfg) {
  const float clip = cfg.clip_norm();
  switch (cfg.kind_case()) {
    case proto::OptimizerConfig::kSgd:
      return std::unique_ptr<Optimizer>(new Sgd(cfg.sgd(), clip));
    case proto::OptimizerConfig::kAdagrad:
      return std::unique_ptr<Optimizer>(new Adagrad(cfg.adagrad(), clip));
    case proto::OptimizerConfig::kAdam:
      return std::unique_ptr<Optimizer>(new Adam(cfg.adam(), clip));
    case proto::OptimizerConfig::kFtrl:
      return std::unique_ptr<Optimizer>(new Ftrl(cfg.ftrl(), clip));
    case proto::OptimizerConfig::KIND_NOT_SET:
      break;
  }
  return InvalidArgument("optimizer: one of sgd, adagrad, adam, ftrl is required");
}

void Optimizer::Apply(float* w, float* state, const float* grad, int dim,
                      uint32_t updates_before) const {
  if (clip_norm_ > 0) {
    double sq = 0;
    for (int i = 0; i < dim; ++i) sq += static_cast<double>(grad[i]) * grad[i];
    const double norm = std::sqrt(sq);
    if (norm > clip_norm_) {
      // Reused per thread: no heap allocation per clipped row once warm.
      thread_local std::vector<float> clipped;
      if (clipped.size() < static_cast<size_t>(dim)) clipped.resize(dim);
      const float scale = static_cast<float>(clip_norm_ / norm);
      for (int i = 0; i < dim; ++i) clipped[i] = grad[i] * scale;
      Update(w, state, clipped.data(), dim, updates_before);
      return;
    }
  }
  Update(w, state, grad, dim, updates_before);
}

}  // namespace freshet
