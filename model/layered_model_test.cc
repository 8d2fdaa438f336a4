// LayeredModel: LR and DeepFM as configurations of it (against LrModel and
// DeepFmModel), finite-difference gradients of whole configurations w.r.t.
// every input row and dense parameter, and config validation naming fields.
#include "model/layered_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "model/deepfm_model.h"
#include "model/lr_model.h"

namespace freshet {
namespace {

struct Rows {
  EncodedBatch batch;
  std::vector<std::vector<float>> wide, emb, ffm;  // [slot][key * dim]
  bool no_wide = false;  // hand the model no wide rows (as the trainer does without first_order)

  ModelInput Input() const {
    ModelInput in;
    in.batch = &batch;
    for (const auto& w : wide) in.wide.push_back(no_wide ? nullptr : w.data());
    for (const auto& e : emb) in.emb.push_back(e.empty() ? nullptr : e.data());
    for (const auto& f : ffm) in.ffm.push_back(f.empty() ? nullptr : f.data());
    return in;
  }
};

ModelShape Shape(int num_dense, std::vector<int> dims, std::vector<proto::Pooling> pooling,
                 std::vector<bool> multi, int ffm_dim = 0) {
  ModelShape s;
  s.num_slots = static_cast<int>(dims.size());
  s.num_dense = num_dense;
  s.pooling = std::move(pooling);
  s.slot_dims = std::move(dims);
  s.multi_valued = std::move(multi);
  for (int i = 0; i < s.num_slots; ++i) s.slot_names.push_back("s" + std::to_string(i));
  s.ffm_dim = ffm_dim;
  return s;
}

// Random rows; multi-valued slots get 0..4 keys (example 0: 3), single-valued
// ones 1 key except slot 0 of example 1 (none).
Rows RandomRows(const ModelShape& shape, int n, uint64_t seed, float scale = 0.5f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> val(-scale, scale);
  Rows r;
  r.batch.Reset(shape.num_slots, shape.num_dense);
  r.wide.resize(shape.num_slots);
  r.emb.resize(shape.num_slots);
  r.ffm.resize(shape.num_slots);
  for (int i = 0; i < n; ++i) {
    for (int s = 0; s < shape.num_slots; ++s) {
      int c = shape.multi_valued[s] ? static_cast<int>(rng() % 5) : 1;
      if (shape.multi_valued[s] && i == 0) c = 3;
      if (s == 0 && i == 1) c = 0;
      for (int j = 0; j < c; ++j) {
        r.batch.keys[s].push_back(rng());
        r.wide[s].push_back(val(rng));
        const int d =
            s < static_cast<int>(shape.slot_dims.size()) ? shape.slot_dims[s] : shape.emb_dim;
        for (int k = 0; k < d; ++k) r.emb[s].push_back(val(rng));
        for (int k = 0; k < shape.ffm_dim; ++k) r.ffm[s].push_back(val(rng));
      }
      r.batch.offsets[s].push_back(static_cast<uint32_t>(r.batch.keys[s].size()));
    }
    for (int d = 0; d < shape.num_dense; ++d) r.batch.dense.push_back(2 * val(rng));
    r.batch.labels.push_back(static_cast<float>(rng() % 2));
    r.batch.oracle.push_back(-1);
    r.batch.users.push_back(0);
    r.batch.times.push_back(0);
    ++r.batch.size;
  }
  return r;
}

std::unique_ptr<Model> Make(const proto::ModelConfig& c, const ModelShape& shape) {
  auto m = Model::Create(c, shape);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(m).value() : nullptr;
}

double Loss(Model* m, const Rows& r, std::vector<float>* dlogits = nullptr) {
  std::vector<float> logits(r.batch.size);
  m->Forward(r.Input(), logits.data());
  if (dlogits != nullptr) dlogits->resize(r.batch.size);
  return LogLoss(logits.data(), r.batch.labels.data(), r.batch.size,
                 dlogits != nullptr ? dlogits->data() : nullptr);
}

proto::ModelConfig Layered() {
  proto::ModelConfig c;
  c.set_kind(proto::ModelConfig::LAYERED);
  c.set_seed(17);
  c.set_dense_learning_rate(0.01f);
  return c;
}

// Runs `steps` training steps on both models (dense Adam, SGD on the rows of
// both copies) and compares logits, gradients and parameters to 1e-5.
void ExpectSameTraining(Model* a, Model* b, Rows ra, Rows rb, int steps) {
  ASSERT_EQ(a->NumDenseParams(), b->NumDenseParams());
  for (size_t j = 0; j < a->NumDenseParams(); ++j) {
    ASSERT_EQ(a->dense_params()[j], b->dense_params()[j]) << "init differs at " << j;
  }
  const int n = ra.batch.size;
  for (int step = 0; step < steps; ++step) {
    std::vector<float> la(n), lb(n), da(n), db(n);
    a->Forward(ra.Input(), la.data());
    b->Forward(rb.Input(), lb.data());
    for (int i = 0; i < n; ++i) EXPECT_NEAR(la[i], lb[i], 1e-5) << "step " << step << " ex " << i;
    LogLoss(la.data(), ra.batch.labels.data(), n, da.data());
    LogLoss(lb.data(), rb.batch.labels.data(), n, db.data());
    SparseGrads ga, gb;
    std::vector<float> dda(a->NumDenseParams()), ddb(b->NumDenseParams());
    a->Backward(ra.Input(), da.data(), &ga, dda.data());
    b->Backward(rb.Input(), db.data(), &gb, ddb.data());
    for (size_t j = 0; j < dda.size(); ++j) EXPECT_NEAR(dda[j], ddb[j], 1e-5) << "dense " << j;
    ASSERT_EQ(ga.wide.size(), gb.wide.size());
    for (size_t s = 0; s < ga.wide.size(); ++s) {
      ASSERT_EQ(ga.wide[s].size(), gb.wide[s].size());
      for (size_t j = 0; j < ga.wide[s].size(); ++j) {
        EXPECT_NEAR(ga.wide[s][j], gb.wide[s][j], 1e-5);
        ra.wide[s][j] -= 0.5f * ga.wide[s][j];
        rb.wide[s][j] -= 0.5f * gb.wide[s][j];
      }
    }
    ASSERT_EQ(ga.emb.size(), gb.emb.size());
    for (size_t s = 0; s < ga.emb.size(); ++s) {
      ASSERT_EQ(ga.emb[s].size(), gb.emb[s].size());
      for (size_t j = 0; j < ga.emb[s].size(); ++j) {
        EXPECT_NEAR(ga.emb[s][j], gb.emb[s][j], 1e-5);
        ra.emb[s][j] -= 0.5f * ga.emb[s][j];
        rb.emb[s][j] -= 0.5f * gb.emb[s][j];
      }
    }
    a->ApplyDenseGradient(dda.data());
    b->ApplyDenseGradient(ddb.data());
  }
  for (size_t j = 0; j < a->NumDenseParams(); ++j) {
    EXPECT_NEAR(a->dense_params()[j], b->dense_params()[j], 1e-5) << "param " << j;
  }
}

TEST(LayeredModelTest, FirstOrderOnlyIsLr) {
  ModelShape shape =
      Shape(3, {0, 0, 0}, {proto::SUM, proto::MEAN, proto::SUM}, {false, true, true});
  proto::ModelConfig lr = Layered();
  lr.set_kind(proto::ModelConfig::LR);
  lr.set_dense_l2(0.01f);
  proto::ModelConfig layered = Layered();
  layered.set_first_order(true);
  layered.set_dense_l2(0.01f);
  auto a = Make(layered, shape);
  auto b = Make(lr, shape);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->NumDenseParams(), 4u);
  Rows r = RandomRows(shape, 9, 1);
  ExpectSameTraining(a.get(), b.get(), r, r, 5);
}

TEST(LayeredModelTest, FirstOrderFmMlpIsDeepFm) {
  for (proto::Pooling pool : {proto::SUM, proto::MEAN}) {
    ModelShape shape =
        Shape(2, {4, 4, 4, 4}, {proto::SUM, pool, proto::SUM, pool}, {false, true, false, true});
    ModelShape deep_shape = shape;
    deep_shape.emb_dim = 4;
    proto::ModelConfig deepfm = Layered();
    deepfm.set_kind(proto::ModelConfig::DEEPFM);
    deepfm.add_hidden(8);
    deepfm.add_hidden(5);
    deepfm.set_dense_l2(0.001f);
    proto::ModelConfig layered = deepfm;
    layered.set_kind(proto::ModelConfig::LAYERED);
    layered.set_first_order(true);
    layered.add_interactions(proto::ModelConfig::FM);
    auto a = Make(layered, shape);
    auto b = Make(deepfm, deep_shape);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->NumDenseParams(),
              DeepFmModel::CountDenseParams(deep_shape, std::vector<int>{8, 5}));
    Rows r = RandomRows(shape, 16, 2);
    ExpectSameTraining(a.get(), b.get(), r, r, 6);
  }
}

// Central differences of the batch-mean log loss against Backward, for
// every wide/emb/ffm row entry and every dense parameter (sampled when long).
void CheckModelGradients(const proto::ModelConfig& config, const ModelShape& shape, uint64_t seed) {
  auto model = Make(config, shape);
  ASSERT_TRUE(model);
  Rows r = RandomRows(shape, 7, seed);
  r.no_wide = !config.first_order();
  // Nonzero biases so no bias-free shortcut hides a term.
  std::mt19937_64 rng(seed + 1);
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  for (size_t j = 0; j < model->NumDenseParams(); ++j) model->dense_params()[j] += u(rng);
  std::vector<float> dlogits;
  Loss(model.get(), r, &dlogits);
  SparseGrads g;
  std::vector<float> dense(model->NumDenseParams());
  model->Backward(r.Input(), dlogits.data(), &g, dense.data());
  const float eps = 1e-3f;
  int checked = 0;
  auto check = [&](const std::string& what, float* x, float analytic) {
    const float keep = *x;
    *x = keep + eps;
    const double up = Loss(model.get(), r);
    *x = keep - eps;
    const double down = Loss(model.get(), r);
    *x = keep;
    const double numeric = (up - down) / (2.0 * eps);
    EXPECT_NEAR(analytic, numeric, 5e-4 + 1e-2 * std::fabs(numeric)) << what;
    ++checked;
  };
  auto rows = [&](const char* kind, std::vector<std::vector<float>>* v,
                  const std::vector<std::vector<float>>& grads) {
    if (grads.empty()) return;
    ASSERT_EQ(grads.size(), v->size()) << kind;
    for (size_t s = 0; s < v->size(); ++s) {
      if (grads[s].empty()) continue;
      ASSERT_EQ(grads[s].size(), (*v)[s].size()) << kind << " slot " << s;
      for (size_t j = 0; j < (*v)[s].size(); ++j) {
        check(std::string(kind) + " slot " + std::to_string(s) + " [" + std::to_string(j) + "]",
              &(*v)[s][j], grads[s][j]);
      }
    }
  };
  rows("wide", &r.wide, g.wide);
  rows("emb", &r.emb, g.emb);
  rows("ffm", &r.ffm, g.ffm);
  const size_t nd = model->NumDenseParams();
  const size_t step = std::max<size_t>(1, nd / 400);
  for (size_t j = 0; j < nd; j += step) {
    check("dense " + std::to_string(j), &model->dense_params()[j], dense[j]);
  }
  EXPECT_GT(checked, 50);
  if (config.first_order()) {
    EXPECT_FALSE(g.wide.empty());
  }
}

TEST(LayeredModelTest, FiniteDifferenceEverythingParallel) {
  // Sequence slot 1 (multi-valued, MEAN), query slot 0; FM, FFM, cross, MLP.
  ModelShape shape = Shape(2, {3, 3, 3, 3}, {proto::SUM, proto::MEAN, proto::SUM, proto::SUM},
                           {false, true, false, true}, /*ffm_dim=*/4 * 2);
  proto::ModelConfig c = Layered();
  c.set_first_order(true);
  c.add_interactions(proto::ModelConfig::FM);
  c.add_interactions(proto::ModelConfig::FFM);
  c.add_interactions(proto::ModelConfig::CROSS);
  c.set_cross_layers(2);
  c.add_hidden(6);
  c.add_hidden(4);
  c.mutable_attention()->set_sequence_slot("s1");
  c.mutable_attention()->set_query_slot("s0");
  c.mutable_attention()->add_hidden(5);
  CheckModelGradients(c, shape, 3);
}

TEST(LayeredModelTest, FiniteDifferenceStackedCrossSumAttention) {
  // Per-slot dims differ (no FM); slot 2 has no embedding; no first order.
  ModelShape shape = Shape(1, {4, 4, 0, 2}, {proto::SUM, proto::SUM, proto::SUM, proto::MEAN},
                           {false, true, false, true});
  proto::ModelConfig c = Layered();
  c.add_interactions(proto::ModelConfig::CROSS);
  c.set_cross_layers(2);
  c.set_cross_mode(proto::ModelConfig::STACKED);
  c.add_hidden(5);
  c.mutable_attention()->set_sequence_slot("s1");
  c.mutable_attention()->set_query_slot("s0");
  CheckModelGradients(c, shape, 4);
}

TEST(LayeredModelTest, FiniteDifferenceCrossOnlyAndFfmOnly) {
  ModelShape shape =
      Shape(2, {2, 2, 2}, {proto::SUM, proto::MEAN, proto::SUM}, {false, true, true}, 3 * 2);
  proto::ModelConfig cross = Layered();
  cross.set_first_order(true);
  cross.add_interactions(proto::ModelConfig::CROSS);
  cross.set_cross_layers(3);
  CheckModelGradients(cross, shape, 5);
  ModelShape ffm_shape = shape;
  ffm_shape.slot_dims = {0, 0, 0};
  proto::ModelConfig ffm = Layered();
  ffm.add_interactions(proto::ModelConfig::FFM);
  CheckModelGradients(ffm, ffm_shape, 6);
}

TEST(LayeredModelTest, AttentionChangesScoresWithTheQuery) {
  // Same sequence, different candidate: different pooled vector, different
  // logit (plain MEAN pooling of the sequence would not change).
  ModelShape shape = Shape(0, {3, 3}, {proto::SUM, proto::MEAN}, {false, true});
  proto::ModelConfig c = Layered();
  c.add_hidden(4);
  c.mutable_attention()->set_sequence_slot("s1");
  c.mutable_attention()->set_query_slot("s0");
  auto m = Make(c, shape);
  ASSERT_TRUE(m);
  Rows r = RandomRows(shape, 2, 8);
  // Example 1 gets example 0's sequence.
  r.batch = EncodedBatch();
  r.batch.Reset(2, 0);
  r.batch.size = 2;
  r.batch.keys = {{1, 2}, {3, 4, 5, 3, 4, 5}};
  r.batch.offsets = {{0, 1, 2}, {0, 3, 6}};
  r.batch.labels = {1, 0};
  r.wide = {{0, 0}, {0, 0, 0, 0, 0, 0}};
  r.emb = {{0.3f, -0.2f, 0.5f, -0.4f, 0.1f, 0.2f},
           {0.1f, 0.2f, 0.3f, -0.3f, 0.2f, 0.1f, 0.5f, -0.5f, 0.0f, 0.1f, 0.2f, 0.3f, -0.3f, 0.2f,
            0.1f, 0.5f, -0.5f, 0.0f}};
  std::vector<float> logits(2);
  m->Forward(r.Input(), logits.data());
  EXPECT_GT(std::fabs(logits[0] - logits[1]), 1e-4);
}

TEST(LayeredModelTest, ValidationNamesTheField) {
  ModelShape shape =
      Shape(1, {4, 4, 8}, {proto::SUM, proto::MEAN, proto::SUM}, {false, true, false}, 3 * 4);
  auto expect_error = [&](const proto::ModelConfig& c, const ModelShape& s, const std::string& f) {
    Status st = ValidateModel(c, s);
    EXPECT_FALSE(st.ok()) << f;
    EXPECT_NE(st.message().find(f), std::string::npos) << st;
  };
  proto::ModelConfig att = Layered();
  att.add_hidden(4);
  att.mutable_attention()->set_sequence_slot("s1");
  att.mutable_attention()->set_query_slot("s0");
  EXPECT_TRUE(ValidateModel(att, shape).ok()) << ValidateModel(att, shape);
  proto::ModelConfig c = att;
  c.mutable_attention()->set_sequence_slot("s0");
  c.mutable_attention()->set_query_slot("s1");
  expect_error(c, shape, "model.attention.sequence_slot: slot 's0' is single-valued");
  c = att;
  c.mutable_attention()->set_sequence_slot("nope");
  expect_error(c, shape, "model.attention.sequence_slot: no slot named 'nope'");
  c = att;
  c.mutable_attention()->set_query_slot("s9");
  expect_error(c, shape, "model.attention.query_slot: no slot named 's9'");
  c = att;
  c.mutable_attention()->set_query_slot("s2");
  expect_error(c, shape, "model.attention.query_slot: slot 's2' has dim 8");
  c = Layered();
  c.set_first_order(true);
  c.set_cross_layers(-1);
  expect_error(c, shape, "model.cross_layers: must be >= 0");
  c.set_cross_layers(0);
  c.add_interactions(proto::ModelConfig::CROSS);
  expect_error(c, shape, "model.cross_layers: must be > 0");
  c = Layered();
  c.add_interactions(proto::ModelConfig::FM);
  expect_error(c, shape, "features.slots[2].table: FM needs one embedding dim");
  c = Layered();
  c.add_interactions(proto::ModelConfig::FFM);
  ModelShape bad_ffm = shape;
  bad_ffm.ffm_dim = 10;
  expect_error(c, bad_ffm, "model.ffm_table: FFM needs a table of dim num_slots * k");
  expect_error(Layered(), shape, "model: LAYERED needs at least one of");
  c = Layered();
  c.add_hidden(0);
  expect_error(c, shape, "model.hidden[0]");
}

}  // namespace
}  // namespace freshet
