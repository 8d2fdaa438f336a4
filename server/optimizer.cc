#include "server/optimizer.h"

#include <cmath>
#include <vector>

namespace freshet {
namespace {

// Row kernels. Each is a plain loop over the row with no per-element branch
// and no loads through `this` inside it (members are copied to locals and
// the pointers are __restrict: a row's weights, state and gradient never
// overlap), so the compiler vectorizes it; target_clones builds an AVX-512,
// an AVX2 and a baseline (SSE2) copy and picks one per CPU at load time.
// optimizer.cc is compiled with -fno-math-errno (server/CMakeLists.txt), so
// sqrt is the sqrtps instruction, not a call guarded for errno. Without
// -ffp-contract (ISO C++ mode) nothing is fused: every lane computes
// exactly the scalar expression, so results equal the scalar loop bit for
// bit (optimizer_test checks them against a scalar reference).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FRESHET_ROW_KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FRESHET_ROW_KERNEL
#endif

FRESHET_ROW_KERNEL void SgdRow(float* __restrict w, const float* __restrict g, int dim, float lr) {
  for (int i = 0; i < dim; ++i) w[i] -= lr * g[i];
}

FRESHET_ROW_KERNEL void AdagradRow(float* __restrict w, float* __restrict a,
                                   const float* __restrict g, int dim, float lr, float eps) {
  for (int i = 0; i < dim; ++i) {
    const float acc = a[i] + g[i] * g[i];
    a[i] = acc;
    w[i] -= lr * g[i] / (std::sqrt(acc) + eps);
  }
}

FRESHET_ROW_KERNEL void AdamRow(float* __restrict w, float* __restrict m, float* __restrict v,
                                const float* __restrict g, int dim, float lr, float b1, float b2,
                                float bc1, float bc2, float eps) {
  for (int i = 0; i < dim; ++i) {
    const float mi = b1 * m[i] + (1.0f - b1) * g[i];
    const float vi = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
    m[i] = mi;
    v[i] = vi;
    w[i] -= lr * (mi / bc1) / (std::sqrt(vi / bc2) + eps);
  }
}

FRESHET_ROW_KERNEL void FtrlRow(float* __restrict w, float* __restrict z, float* __restrict n,
                                const float* __restrict g, int dim, float alpha, float beta,
                                float l1, float l2) {
  for (int i = 0; i < dim; ++i) {
    const float gi = g[i];
    const float n_old = n[i];
    const float n_new = n_old + gi * gi;
    const float sigma = (std::sqrt(n_new) - std::sqrt(n_old)) / alpha;
    const float zi = z[i] + (gi - sigma * w[i]);
    z[i] = zi;
    n[i] = n_new;
    // Both sides computed, then selected: a blend, not a branch.
    const float sign = zi < 0 ? -1.0f : 1.0f;
    const float wi = -(zi - sign * l1) / ((beta + std::sqrt(n_new)) / alpha + l2);
    w[i] = std::fabs(zi) <= l1 ? 0.0f : wi;
  }
}

class Sgd final : public Optimizer {
 public:
  Sgd(const proto::SgdConfig& c, float clip_norm) : Optimizer(clip_norm), lr_(c.learning_rate()) {}

  int StateDim(int dim) const override { return 0; }
  void InitState(float* state, int dim) const override {}

 protected:
  void Update(float* w, float* state, const float* g, int dim,
              uint32_t updates_before) const override {
    SgdRow(w, g, dim, lr_);
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
    const float a0 = initial_accumulator_;
    for (int i = 0; i < dim; ++i) state[i] = a0;
  }

 protected:
  void Update(float* w, float* a, const float* g, int dim, uint32_t updates_before) const override {
    AdagradRow(w, a, g, dim, lr_, eps_);
  }

 private:
  const float lr_;
  const float initial_accumulator_;
  const float eps_;
};

// state = m[dim], v[dim].
class Adam final : public Optimizer {
 public:
  // Bias corrections 1 - beta^t for the first kTableSteps steps, computed
  // once (two std::pow per row update otherwise); later steps call pow.
  static constexpr uint32_t kTableSteps = 1024;

  Adam(const proto::AdamConfig& c, float clip_norm)
      : Optimizer(clip_norm),
        lr_(c.learning_rate()),
        b1_(c.beta1()),
        b2_(c.beta2()),
        eps_(c.epsilon()) {
    bc1_.resize(kTableSteps);
    bc2_.resize(kTableSteps);
    for (uint32_t k = 0; k < kTableSteps; ++k) {
      bc1_[k] = Correction(b1_, k);
      bc2_[k] = Correction(b2_, k);
    }
  }

  int StateDim(int dim) const override { return 2 * dim; }
  void InitState(float* state, int dim) const override {
    for (int i = 0; i < 2 * dim; ++i) state[i] = 0.0f;
  }

 protected:
  void Update(float* w, float* state, const float* g, int dim,
              uint32_t updates_before) const override {
    // Lazy Adam: the step count is the row's own update count.
    const bool cached = updates_before < kTableSteps;
    const float bc1 = cached ? bc1_[updates_before] : Correction(b1_, updates_before);
    const float bc2 = cached ? bc2_[updates_before] : Correction(b2_, updates_before);
    AdamRow(w, state, state + dim, g, dim, lr_, b1_, b2_, bc1, bc2, eps_);
  }

 private:
  // 1 - beta^t for t = updates_before + 1, as a float.
  static float Correction(float beta, uint32_t updates_before) {
    const double t = static_cast<double>(updates_before) + 1.0;
    return static_cast<float>(1.0 - std::pow(static_cast<double>(beta), t));
  }

  const float lr_;
  const float b1_;
  const float b2_;
  const float eps_;
  std::vector<float> bc1_, bc2_;  // [k]: Correction(beta, k)
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
    FtrlRow(w, state, state + dim, g, dim, alpha_, beta_, l1_, l2_);
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
