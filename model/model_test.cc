#include "model/model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "model/batch.h"

namespace freshet {
namespace {

// A batch plus the "pulled" rows the trainer would hand the model: one wide
// value and one embedding per key position, owned here so tests can perturb
// them.
struct Fixture {
  EncodedBatch batch;
  std::vector<std::vector<float>> wide;  // [slot][key position]
  std::vector<std::vector<float>> emb;   // [slot][key position * dim]

  ModelInput Input() const {
    ModelInput in;
    in.batch = &batch;
    for (const auto& w : wide) in.wide.push_back(w.data());
    for (const auto& e : emb) in.emb.push_back(e.data());
    return in;
  }
};

ModelShape Shape(int num_dense, int emb_dim, std::vector<proto::Pooling> pooling) {
  ModelShape shape;
  shape.num_slots = static_cast<int>(pooling.size());
  shape.num_dense = num_dense;
  shape.emb_dim = emb_dim;
  shape.pooling = std::move(pooling);
  return shape;
}

// Random batch: each slot of each example gets 0..max_keys keys; slot 0 of
// example 0 gets at least 2 keys and slot 1 of example 1 none.
Fixture RandomFixture(const ModelShape& shape, int n, int max_keys, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> val(-0.5f, 0.5f);
  std::uniform_int_distribution<int> count(0, max_keys);
  Fixture f;
  f.batch.Reset(shape.num_slots, shape.num_dense);
  f.wide.resize(shape.num_slots);
  f.emb.resize(shape.num_slots);
  for (int i = 0; i < n; ++i) {
    for (int s = 0; s < shape.num_slots; ++s) {
      int c = count(rng);
      if (i == 0 && s == 0) c = std::max(c, 2);
      if (i == 1 && s == 1) c = 0;
      for (int j = 0; j < c; ++j) {
        f.batch.keys[s].push_back(rng());
        f.wide[s].push_back(val(rng));
        for (int d = 0; d < shape.emb_dim; ++d) f.emb[s].push_back(val(rng));
      }
      f.batch.offsets[s].push_back(static_cast<uint32_t>(f.batch.keys[s].size()));
    }
    for (int d = 0; d < shape.num_dense; ++d) f.batch.dense.push_back(2 * val(rng));
    f.batch.labels.push_back(static_cast<float>(rng() % 2));
    f.batch.oracle.push_back(-1);
    f.batch.users.push_back(0);
    f.batch.times.push_back(0);
    ++f.batch.size;
  }
  return f;
}

std::unique_ptr<Model> MakeModel(const proto::ModelConfig& config, const ModelShape& shape) {
  auto m = Model::Create(config, shape);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(m).value() : nullptr;
}

double BatchLoss(Model* model, const Fixture& f) {
  std::vector<float> logits(f.batch.size);
  model->Forward(f.Input(), logits.data());
  return LogLoss(logits.data(), f.batch.labels.data(), f.batch.size, nullptr);
}

struct Analytic {
  SparseGrads sparse;
  std::vector<float> dense;
};

Analytic Gradients(Model* model, const Fixture& f) {
  const int n = f.batch.size;
  std::vector<float> logits(n), dlogits(n);
  const ModelInput in = f.Input();
  model->Forward(in, logits.data());
  LogLoss(logits.data(), f.batch.labels.data(), n, dlogits.data());
  Analytic a;
  a.dense.assign(model->NumDenseParams(), -123.f);  // Backward must overwrite
  model->Backward(in, dlogits.data(), &a.sparse, a.dense.data());
  return a;
}

constexpr double kEps = 1e-3;
constexpr double kRelTol = 2e-2;
constexpr double kAbsTol = 2e-4;

// Central difference of the batch loss in *value, compared with `analytic`.
// Near a ReLU kink (within kEps of *value) the central difference is off, but
// the analytic derivative still equals the one-sided difference on its side:
// such a value counts as a kink (returns false) instead of a failure.
bool CheckOne(Model* model, Fixture* f, float* value, float analytic, const std::string& what) {
  const float saved = *value;
  const double base = BatchLoss(model, *f);
  *value = static_cast<float>(saved + kEps);
  const double plus = BatchLoss(model, *f);
  *value = static_cast<float>(saved - kEps);
  const double minus = BatchLoss(model, *f);
  *value = saved;
  const double fd = (plus - minus) / (2 * kEps);
  const double a = analytic;
  const auto close = [&](double x) {
    return std::fabs(a - x) <= kAbsTol + kRelTol * std::max(std::fabs(x), std::fabs(a));
  };
  if (close(fd)) return true;
  const double right = (plus - base) / kEps, left = (base - minus) / kEps;
  const bool kink = !close(right) || !close(left);  // the two sides disagree
  if (kink && (close(right) || close(left))) return false;
  ADD_FAILURE() << what << ": analytic " << a << ", central difference " << fd << " (one-sided "
                << left << ", " << right << ")";
  return true;
}

void CheckGradients(Model* model, Fixture* f) {
  const Analytic a = Gradients(model, *f);
  const ModelShape& shape = model->shape();
  ASSERT_EQ(a.sparse.wide.size(), static_cast<size_t>(shape.num_slots));
  int checked = 0, kinks = 0;
  auto check = [&](float* value, float analytic, const std::string& what) {
    if (CheckOne(model, f, value, analytic, what)) {
      ++checked;
    } else {
      ++kinks;
    }
  };
  for (int s = 0; s < shape.num_slots; ++s) {
    ASSERT_EQ(a.sparse.wide[s].size(), f->wide[s].size());
    for (size_t k = 0; k < f->wide[s].size(); ++k) {
      check(&f->wide[s][k], a.sparse.wide[s][k],
            "wide slot " + std::to_string(s) + " key " + std::to_string(k));
    }
  }
  if (shape.emb_dim > 0) {
    ASSERT_EQ(a.sparse.emb.size(), static_cast<size_t>(shape.num_slots));
    for (int s = 0; s < shape.num_slots; ++s) {
      ASSERT_EQ(a.sparse.emb[s].size(), f->emb[s].size());
      for (size_t k = 0; k < f->emb[s].size(); ++k) {
        check(&f->emb[s][k], a.sparse.emb[s][k],
              "emb slot " + std::to_string(s) + " value " + std::to_string(k));
      }
    }
  }
  float* params = model->dense_params();
  for (size_t j = 0; j < model->NumDenseParams(); ++j) {
    check(&params[j], a.dense[j], "dense param " + std::to_string(j));
  }
  EXPECT_GT(checked, 0);
  // Kinks are rare; many of them would hide a real bug.
  EXPECT_LE(kinks, checked / 20) << checked << " checked, " << kinks << " at kinks";
}

// ---------------------------------------------------------------------------

TEST(EncodedBatchTest, ResetKeepsShape) {
  EncodedBatch b;
  b.Reset(2, 3);
  EXPECT_EQ(b.size, 0);
  EXPECT_EQ(b.num_slots(), 2);
  EXPECT_EQ(b.num_dense, 3);
  ASSERT_EQ(b.offsets.size(), 2u);
  EXPECT_EQ(b.offsets[0], std::vector<uint32_t>{0});
  b.keys[0].push_back(7);
  b.offsets[0].push_back(1);
  b.labels.push_back(1);
  b.dense.assign(3, 1.f);
  b.size = 1;
  b.Reset(1, 0);
  EXPECT_EQ(b.size, 0);
  EXPECT_EQ(b.num_slots(), 1);
  EXPECT_TRUE(b.keys[0].empty());
  EXPECT_EQ(b.offsets[0], std::vector<uint32_t>{0});
  EXPECT_TRUE(b.labels.empty());
  EXPECT_TRUE(b.dense.empty());
}

TEST(ModelCreateTest, Validates) {
  proto::ModelConfig lr;
  EXPECT_TRUE(Model::Create(lr, Shape(2, 0, {proto::SUM})).ok());
  ModelShape bad = Shape(0, 0, {proto::SUM, proto::MEAN});
  bad.pooling.pop_back();
  EXPECT_EQ(Model::Create(lr, bad).status().code(), StatusCode::kInvalidArgument);

  proto::ModelConfig fm;
  fm.set_kind(proto::ModelConfig::DEEPFM);
  fm.add_hidden(4);
  EXPECT_TRUE(Model::Create(fm, Shape(1, 4, {proto::SUM, proto::MEAN})).ok());
  auto no_dim = Model::Create(fm, Shape(1, 0, {proto::SUM}));
  EXPECT_EQ(no_dim.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(no_dim.status().message().find("emb_dim"), std::string::npos);
  fm.add_hidden(0);
  auto zero_width = Model::Create(fm, Shape(1, 4, {proto::SUM}));
  EXPECT_EQ(zero_width.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(zero_width.status().message().find("hidden[1]"), std::string::npos);

  proto::ModelConfig neg_lr;
  neg_lr.set_dense_learning_rate(-1);
  EXPECT_FALSE(Model::Create(neg_lr, Shape(0, 0, {})).ok());
}

TEST(ModelCreateTest, DeepFmDenseLayoutAndDeterministicInit) {
  proto::ModelConfig config;
  config.set_kind(proto::ModelConfig::DEEPFM);
  config.add_hidden(5);
  config.add_hidden(3);
  config.set_seed(42);
  const ModelShape shape = Shape(2, 4, {proto::SUM, proto::MEAN, proto::SUM});
  auto a = MakeModel(config, shape);
  auto b = MakeModel(config, shape);
  const size_t in0 = 3 * 4 + 2;
  const size_t expected = 1 + 2 + (in0 * 5 + 5) + (5 * 3 + 3) + (3 * 1 + 1);
  ASSERT_EQ(a->NumDenseParams(), expected);
  for (size_t j = 0; j < expected; ++j) ASSERT_EQ(a->dense_params()[j], b->dense_params()[j]);
  // bias and w_dense start at 0; W_0 is Glorot-uniform, b_0 is 0.
  for (size_t j = 0; j < 3; ++j) EXPECT_EQ(a->dense_params()[j], 0.f);
  const float limit = std::sqrt(6.f / (in0 + 5));
  bool nonzero = false;
  for (size_t j = 3; j < 3 + in0 * 5; ++j) {
    EXPECT_LE(std::fabs(a->dense_params()[j]), limit);
    nonzero |= a->dense_params()[j] != 0;
  }
  EXPECT_TRUE(nonzero);
  for (size_t j = 3 + in0 * 5; j < 3 + in0 * 5 + 5; ++j) EXPECT_EQ(a->dense_params()[j], 0.f);

  config.set_seed(43);
  auto c = MakeModel(config, shape);
  EXPECT_NE(a->dense_params()[3], c->dense_params()[3]);
}

// (a) Hand-computed LR forward and backward.
TEST(LrModelTest, HandComputedForwardBackward) {
  const ModelShape shape = Shape(1, 0, {proto::SUM, proto::MEAN});
  auto model = MakeModel(proto::ModelConfig(), shape);
  ASSERT_EQ(model->NumDenseParams(), 2u);
  model->dense_params()[0] = 0.5f;  // bias
  model->dense_params()[1] = 2.f;   // w_dense

  Fixture f;
  f.batch.Reset(2, 1);
  f.batch.size = 3;
  // slot 0 (SUM):  ex0 {1, 2}, ex1 {-1}, ex2 {}
  f.batch.keys[0] = {10, 11, 12};
  f.batch.offsets[0] = {0, 2, 3, 3};
  f.wide.push_back({1.f, 2.f, -1.f});
  // slot 1 (MEAN): ex0 {4, 8}, ex1 {}, ex2 {3}
  f.batch.keys[1] = {20, 21, 22};
  f.batch.offsets[1] = {0, 2, 2, 3};
  f.wide.push_back({4.f, 8.f, 3.f});
  f.batch.dense = {0.25f, -1.f, 0.f};
  f.batch.labels = {1, 0, 1};

  float logits[3];
  model->Forward(f.Input(), logits);
  EXPECT_FLOAT_EQ(logits[0], 0.5f + 3.f + 6.f + 0.5f);
  EXPECT_FLOAT_EQ(logits[1], 0.5f - 1.f + 0.f - 2.f);
  EXPECT_FLOAT_EQ(logits[2], 0.5f + 0.f + 3.f + 0.f);

  const float g[3] = {0.1f, -0.2f, 0.4f};
  SparseGrads grads;
  float dense_grad[2];
  model->Backward(f.Input(), g, &grads, dense_grad);
  ASSERT_EQ(grads.wide.size(), 2u);
  EXPECT_EQ(grads.wide[0], (std::vector<float>{0.1f, 0.1f, -0.2f}));
  EXPECT_EQ(grads.wide[1], (std::vector<float>{0.05f, 0.05f, 0.4f}));
  EXPECT_TRUE(grads.emb.empty());
  EXPECT_FLOAT_EQ(dense_grad[0], 0.1f - 0.2f + 0.4f);
  EXPECT_FLOAT_EQ(dense_grad[1], 0.1f * 0.25f + 0.2f);
}

TEST(LrModelTest, EmptyBatch) {
  auto model = MakeModel(proto::ModelConfig(), Shape(1, 0, {proto::SUM}));
  Fixture f;
  f.batch.Reset(1, 1);
  f.wide.emplace_back();
  model->Forward(f.Input(), nullptr);
  SparseGrads grads;
  float dense_grad[2] = {9, 9};
  model->Backward(f.Input(), nullptr, &grads, dense_grad);
  EXPECT_EQ(dense_grad[0], 0.f);
  EXPECT_EQ(dense_grad[1], 0.f);
}

// (b) Finite-difference gradient checks.
TEST(LrModelTest, FiniteDifferenceGradients) {
  const ModelShape shape = Shape(3, 0, {proto::SUM, proto::MEAN, proto::MEAN});
  auto model = MakeModel(proto::ModelConfig(), shape);
  for (size_t j = 0; j < model->NumDenseParams(); ++j) {
    model->dense_params()[j] = 0.3f * static_cast<float>(j) - 0.4f;
  }
  Fixture f = RandomFixture(shape, 6, 3, 1);
  CheckGradients(model.get(), &f);
}

proto::ModelConfig DeepFmConfig() {
  proto::ModelConfig config;
  config.set_kind(proto::ModelConfig::DEEPFM);
  config.add_hidden(8);
  config.add_hidden(6);
  config.set_seed(7);
  return config;
}

TEST(DeepFmModelTest, FiniteDifferenceGradientsSumPooling) {
  const ModelShape shape = Shape(2, 4, {proto::SUM, proto::SUM, proto::SUM});
  auto model = MakeModel(DeepFmConfig(), shape);
  // Non-zero first-order dense weights and biases, so every path is live.
  for (size_t j = 0; j < 3; ++j) model->dense_params()[j] = 0.2f * static_cast<float>(j) - 0.1f;
  Fixture f = RandomFixture(shape, 5, 3, 2);
  CheckGradients(model.get(), &f);
}

TEST(DeepFmModelTest, FiniteDifferenceGradientsMeanPooling) {
  const ModelShape shape = Shape(3, 3, {proto::MEAN, proto::MEAN, proto::SUM});
  auto model = MakeModel(DeepFmConfig(), shape);
  for (size_t j = 0; j < 4; ++j) model->dense_params()[j] = 0.1f * static_cast<float>(j) - 0.15f;
  Fixture f = RandomFixture(shape, 6, 4, 3);
  // One training step first, so MLP biases are no longer all 0.
  {
    const Analytic a = Gradients(model.get(), f);
    model->ApplyDenseGradient(a.dense.data());
  }
  CheckGradients(model.get(), &f);
}

// Checkpoints: a model given another's dense parameters AND optimizer state
// continues exactly as the original; parameters alone do not (Adam's moments
// and step count matter).
TEST(DeepFmModelTest, DenseOptimizerStateRestoresTraining) {
  const ModelShape shape = Shape(2, 3, {proto::SUM, proto::MEAN});
  auto a = MakeModel(DeepFmConfig(), shape);
  const size_t n = a->NumDenseParams();
  std::vector<float> g(n);
  for (int step = 0; step < 5; ++step) {
    for (size_t j = 0; j < n; ++j) g[j] = 0.01f * static_cast<float>((j * 7 + step) % 11) - 0.05f;
    a->ApplyDenseGradient(g.data());
  }
  auto b = MakeModel(DeepFmConfig(), shape);
  auto c = MakeModel(DeepFmConfig(), shape);
  std::copy(a->dense_params(), a->dense_params() + n, b->dense_params());
  std::copy(a->dense_params(), a->dense_params() + n, c->dense_params());
  const std::vector<float> state = a->DenseOptimizerState();
  ASSERT_EQ(state.size(), 2 + 2 * n);
  ASSERT_TRUE(b->SetDenseOptimizerState(state).ok());
  EXPECT_EQ(b->DenseOptimizerState(), state);
  for (size_t j = 0; j < n; ++j) g[j] = 0.02f * static_cast<float>(j % 5) - 0.03f;
  a->ApplyDenseGradient(g.data());
  b->ApplyDenseGradient(g.data());
  c->ApplyDenseGradient(g.data());
  size_t differ = 0;
  for (size_t j = 0; j < n; ++j) {
    EXPECT_EQ(a->dense_params()[j], b->dense_params()[j]) << j;
    differ += a->dense_params()[j] != c->dense_params()[j];
  }
  EXPECT_GT(differ, n / 2);  // without the state the step is different
  EXPECT_EQ(b->SetDenseOptimizerState(std::vector<float>(3)).code(), StatusCode::kInvalidArgument);
}

TEST(DeepFmModelTest, DenseL2AddsToWeightsNotBiases) {
  const ModelShape shape = Shape(2, 3, {proto::SUM, proto::MEAN});
  proto::ModelConfig config;
  config.set_kind(proto::ModelConfig::DEEPFM);
  config.add_hidden(4);
  config.set_seed(3);
  auto plain = MakeModel(config, shape);
  config.set_dense_l2(0.5f);
  auto l2 = MakeModel(config, shape);
  for (size_t j = 0; j < plain->NumDenseParams(); ++j) {
    plain->dense_params()[j] = l2->dense_params()[j] = 0.01f * static_cast<float>(j % 17) - 0.05f;
  }
  Fixture f = RandomFixture(shape, 4, 2, 4);
  const Analytic a = Gradients(plain.get(), f);
  const Analytic b = Gradients(l2.get(), f);
  // Layout: bias | w_dense(2) | W_0 (4 x 8) | b_0 (4) | W_1 (1 x 4) | b_1 (1).
  const size_t in0 = 2 * 3 + 2;
  std::vector<bool> is_weight(plain->NumDenseParams(), true);
  is_weight[0] = false;
  for (size_t j = 3 + in0 * 4; j < 3 + in0 * 4 + 4; ++j) is_weight[j] = false;
  is_weight.back() = false;
  for (size_t j = 0; j < is_weight.size(); ++j) {
    const float extra = is_weight[j] ? 0.5f * plain->dense_params()[j] : 0.f;
    EXPECT_NEAR(b.dense[j], a.dense[j] + extra, 1e-6) << "param " << j;
  }
}

TEST(DeepFmModelTest, AdamFirstStepMovesByLearningRate) {
  const ModelShape shape = Shape(0, 2, {proto::SUM});
  proto::ModelConfig config;
  config.set_kind(proto::ModelConfig::DEEPFM);
  config.set_dense_learning_rate(0.01f);
  auto model = MakeModel(config, shape);
  const size_t n = model->NumDenseParams();
  std::vector<float> before(model->dense_params(), model->dense_params() + n);
  std::vector<float> grad(n);
  for (size_t j = 0; j < n; ++j) grad[j] = (j % 2 ? 1.f : -1.f) * (0.001f + j);
  model->ApplyDenseGradient(grad.data());
  for (size_t j = 0; j < n; ++j) {
    // Bias-corrected first step: -lr * g / (|g| + eps) ~ -lr * sign(g).
    EXPECT_NEAR(model->dense_params()[j] - before[j], grad[j] > 0 ? -0.01f : 0.01f, 1e-5);
  }
}

// (c) FM term against the pairwise sum over slots.
TEST(DeepFmModelTest, FmTermMatchesPairwiseSum) {
  const ModelShape shape = Shape(1, 5, {proto::SUM, proto::MEAN, proto::SUM, proto::MEAN});
  auto model = MakeModel(DeepFmConfig(), shape);
  // Zero every dense parameter: the MLP outputs 0, no bias, no dense part.
  std::fill(model->dense_params(), model->dense_params() + model->NumDenseParams(), 0.f);
  Fixture f = RandomFixture(shape, 7, 3, 5);
  for (auto& w : f.wide) std::fill(w.begin(), w.end(), 0.f);

  std::vector<float> logits(f.batch.size);
  model->Forward(f.Input(), logits.data());
  const int k = shape.emb_dim;
  for (int i = 0; i < f.batch.size; ++i) {
    std::vector<std::vector<double>> e(shape.num_slots, std::vector<double>(k, 0.0));
    for (int s = 0; s < shape.num_slots; ++s) {
      const uint32_t lo = f.batch.offsets[s][i], hi = f.batch.offsets[s][i + 1];
      for (uint32_t key = lo; key < hi; ++key) {
        for (int j = 0; j < k; ++j) e[s][j] += f.emb[s][key * k + j];
      }
      if (shape.pooling[s] == proto::MEAN && hi > lo) {
        for (int j = 0; j < k; ++j) e[s][j] /= (hi - lo);
      }
    }
    double pairwise = 0;
    for (int s = 0; s < shape.num_slots; ++s) {
      for (int t = s + 1; t < shape.num_slots; ++t) {
        for (int j = 0; j < k; ++j) pairwise += e[s][j] * e[t][j];
      }
    }
    EXPECT_NEAR(logits[i], pairwise, 1e-5) << "example " << i;
  }
}

// (d) DeepFM learns a separable synthetic problem; the test plays the
// parameter server (SGD on the pulled rows).
TEST(DeepFmModelTest, TrainsOnSeparableProblem) {
  constexpr int kSlots = 3, kVocab = 20, kDim = 8, kBatch = 64;
  const ModelShape shape = Shape(1, kDim, {proto::SUM, proto::SUM, proto::MEAN});
  proto::ModelConfig config;
  config.set_kind(proto::ModelConfig::DEEPFM);
  config.add_hidden(16);
  config.add_hidden(8);
  config.set_dense_learning_rate(0.01f);
  config.set_seed(11);
  auto model = MakeModel(config, shape);

  std::mt19937_64 rng(99);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> small(-0.05f, 0.05f);
  std::vector<std::vector<float>> truth(kSlots, std::vector<float>(kVocab));
  std::vector<std::vector<float>> wide(kSlots, std::vector<float>(kVocab));
  std::vector<std::vector<float>> emb(kSlots, std::vector<float>(kVocab * kDim));
  for (int s = 0; s < kSlots; ++s) {
    for (auto& t : truth[s]) t = normal(rng);
    for (auto& w : wide[s]) w = small(rng);
    for (auto& e : emb[s]) e = small(rng);
  }

  // Label: sign of sum of per-key scores (mean over slot 2's keys) + dense.
  auto make_batch = [&](int n, std::mt19937_64* r) {
    EncodedBatch b;
    b.Reset(kSlots, 1);
    for (int i = 0; i < n; ++i) {
      float score = 0;
      for (int s = 0; s < kSlots; ++s) {
        const int c = s == 2 ? 1 + static_cast<int>((*r)() % 3) : 1;
        float slot_score = 0;
        for (int j = 0; j < c; ++j) {
          const uint64_t key = (*r)() % kVocab;
          b.keys[s].push_back(key);
          slot_score += truth[s][key];
        }
        score += s == 2 ? slot_score / c : slot_score;
        b.offsets[s].push_back(static_cast<uint32_t>(b.keys[s].size()));
      }
      const float x = normal(*r);
      b.dense.push_back(x);
      score += 0.5f * x;
      b.labels.push_back(score > 0 ? 1.f : 0.f);
      b.oracle.push_back(-1);
      b.users.push_back(0);
      b.times.push_back(0);
      ++b.size;
    }
    return b;
  };
  // Pull: gather rows aligned with the batch's keys.
  auto pull = [&](const EncodedBatch& b, Fixture* f) {
    f->wide.assign(kSlots, {});
    f->emb.assign(kSlots, {});
    for (int s = 0; s < kSlots; ++s) {
      for (uint64_t key : b.keys[s]) {
        f->wide[s].push_back(wide[s][key]);
        f->emb[s].insert(f->emb[s].end(), emb[s].begin() + key * kDim,
                         emb[s].begin() + (key + 1) * kDim);
      }
    }
  };
  auto eval = [&](const EncodedBatch& b) {
    Fixture f;
    f.batch = b;
    pull(b, &f);
    return BatchLoss(model.get(), f);
  };

  std::mt19937_64 eval_rng(5);
  const EncodedBatch holdout = make_batch(512, &eval_rng);
  const double initial = eval(holdout);

  constexpr float kSparseLr = 2.0f;
  std::vector<float> logits(kBatch), dlogits(kBatch), dense_grad(model->NumDenseParams());
  SparseGrads grads;
  Fixture f;
  for (int step = 0; step < 300; ++step) {
    f.batch = make_batch(kBatch, &rng);
    pull(f.batch, &f);
    const ModelInput in = f.Input();
    model->Forward(in, logits.data());
    LogLoss(logits.data(), f.batch.labels.data(), kBatch, dlogits.data());
    model->Backward(in, dlogits.data(), &grads, dense_grad.data());
    model->ApplyDenseGradient(dense_grad.data());
    // Push: SGD on the rows (duplicate keys' gradients add up).
    for (int s = 0; s < kSlots; ++s) {
      for (size_t p = 0; p < f.batch.keys[s].size(); ++p) {
        const uint64_t key = f.batch.keys[s][p];
        wide[s][key] -= kSparseLr * grads.wide[s][p];
        for (int j = 0; j < kDim; ++j)
          emb[s][key * kDim + j] -= kSparseLr * grads.emb[s][p * kDim + j];
      }
    }
  }
  const double final_loss = eval(holdout);
  EXPECT_NEAR(initial, std::log(2.0), 0.1);
  EXPECT_LT(final_loss, 0.25 * initial) << "initial " << initial << " final " << final_loss;
}

// (e) Extreme logits stay finite.
TEST(LossTest, SigmoidAndLogLossAtExtremes) {
  EXPECT_FLOAT_EQ(Sigmoid(0.f), 0.5f);
  EXPECT_FLOAT_EQ(Sigmoid(2.f), 1.f / (1.f + std::exp(-2.f)));
  EXPECT_NEAR(Sigmoid(-2.f), 1.f - Sigmoid(2.f), 1e-7);
  for (float x : {-1e30f, -1e4f, -100.f, 100.f, 1e4f, 1e30f}) {
    const float s = Sigmoid(x);
    EXPECT_TRUE(std::isfinite(s)) << x;
    EXPECT_GE(s, 0.f);
    EXPECT_LE(s, 1.f);
  }
  EXPECT_EQ(Sigmoid(-1e4f), 0.f);
  EXPECT_EQ(Sigmoid(1e4f), 1.f);

  const float logits[] = {1e4f, -1e4f, 1e4f, -1e4f, 100.f, -100.f, 0.f};
  const float labels[] = {1, 0, 0, 1, 0, 1, 1};
  float dlogits[7];
  const double loss = LogLoss(logits, labels, 7, dlogits);
  EXPECT_TRUE(std::isfinite(loss));
  // Per example: 0, 0, 1e4, 1e4, 100, 100, log 2.
  EXPECT_NEAR(loss, (2e4 + 200 + std::log(2.0)) / 7, 1e-3);
  const float expected_d[] = {0, 0, 1, -1, 1, -1, -0.5f};
  for (int i = 0; i < 7; ++i) {
    EXPECT_TRUE(std::isfinite(dlogits[i]));
    EXPECT_NEAR(dlogits[i], expected_d[i] / 7, 1e-6) << i;
  }
  EXPECT_EQ(LogLoss(logits, labels, 0, nullptr), 0.0);
  // Moderate logits: matches the textbook formula.
  const float l2[] = {0.3f, -1.2f};
  const float y2[] = {1, 0};
  const double want =
      -(std::log(1 / (1 + std::exp(-0.3))) + std::log(1 - 1 / (1 + std::exp(1.2)))) / 2;
  EXPECT_NEAR(LogLoss(l2, y2, 2, nullptr), want, 1e-6);
}

}  // namespace
}  // namespace freshet
