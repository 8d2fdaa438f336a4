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

// Batch-mean log loss; with `heads` (several), MultiHeadLoss over them.
double Loss(Model* m, const Rows& r, std::vector<float>* dlogits = nullptr,
            const std::vector<ModelHead>* heads = nullptr) {
  const size_t n = static_cast<size_t>(r.batch.size) * m->num_heads();
  std::vector<float> logits(n);
  m->Forward(r.Input(), logits.data());
  if (dlogits != nullptr) dlogits->resize(n);
  if (heads != nullptr) {
    return MultiHeadLoss(*heads, logits.data(), r.batch,
                         dlogits != nullptr ? dlogits->data() : nullptr);
  }
  return LogLoss(logits.data(), r.batch.labels.data(), r.batch.size,
                 dlogits != nullptr ? dlogits->data() : nullptr);
}

// Fills the batch's extra label columns of `config`'s heads: a subset of
// the main positives (as taobao's label:buy), so every case occurs.
void FillExtraLabels(const proto::ModelConfig& config, uint64_t seed, Rows* r) {
  std::mt19937_64 rng(seed);
  r->batch.extra_labels.assign(ModelLabelColumns(config).size(), {});
  for (auto& l : r->batch.extra_labels) {
    for (int i = 0; i < r->batch.size; ++i) {
      l.push_back(r->batch.labels[i] > 0.5f && rng() % 2 == 0 ? 1.f : 0.f);
    }
  }
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
  const std::vector<ModelHead> heads = ModelHeads(config);
  const std::vector<ModelHead>* multi = heads.size() > 1 ? &heads : nullptr;
  if (multi != nullptr) FillExtraLabels(config, seed + 2, &r);
  // Nonzero biases so no bias-free shortcut hides a term.
  std::mt19937_64 rng(seed + 1);
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  for (size_t j = 0; j < model->NumDenseParams(); ++j) model->dense_params()[j] += u(rng);
  std::vector<float> dlogits;
  Loss(model.get(), r, &dlogits, multi);
  SparseGrads g;
  std::vector<float> dense(model->NumDenseParams());
  model->Backward(r.Input(), dlogits.data(), &g, dense.data());
  const float eps = 1e-3f;
  int checked = 0;
  auto check = [&](const std::string& what, float* x, float analytic) {
    const float keep = *x;
    *x = keep + eps;
    const double up = Loss(model.get(), r, nullptr, multi);
    *x = keep - eps;
    const double down = Loss(model.get(), r, nullptr, multi);
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

proto::ModelConfig Esmm() {
  proto::ModelConfig c = Layered();
  c.set_first_order(true);
  c.add_interactions(proto::ModelConfig::FM);
  c.add_hidden(6);
  c.add_hidden(4);
  proto::HeadConfig* ctr = c.add_heads();
  ctr->set_name("ctr");
  proto::HeadConfig* ctcvr = c.add_heads();
  ctcvr->set_name("ctcvr");
  ctcvr->set_label("label:buy");
  ctcvr->set_multiply_by("ctr");
  ctcvr->add_hidden(3);
  return c;
}

TEST(LayeredModelTest, FiniteDifferenceEsmmHeads) {
  // Loss = BCE(p_ctr, label) + BCE(p_ctr * p_cvr, label:buy): gradients of
  // both heads reach the shared rows, the shared MLP and first order.
  ModelShape shape =
      Shape(2, {3, 3, 3}, {proto::SUM, proto::MEAN, proto::SUM}, {false, true, false});
  CheckModelGradients(Esmm(), shape, 24);
  // A three-head chain (p_c = s_c * p_b * p_a), a head on the main label
  // that multiplies, cross PARALLEL with FFM and no first order.
  proto::ModelConfig chain = Layered();
  chain.add_interactions(proto::ModelConfig::CROSS);
  chain.add_interactions(proto::ModelConfig::FFM);
  chain.set_cross_layers(1);
  chain.add_hidden(5);
  chain.add_heads()->set_name("a");
  proto::HeadConfig* b = chain.add_heads();
  b->set_name("b");
  b->set_label("label:x");
  b->set_multiply_by("a");
  proto::HeadConfig* hc = chain.add_heads();
  hc->set_name("c");
  hc->set_label("label:y");
  hc->set_multiply_by("b");
  hc->add_hidden(2);
  proto::HeadConfig* d = chain.add_heads();
  d->set_name("d");
  d->set_multiply_by("a");
  CheckModelGradients(chain, Shape(1, {2, 2}, {proto::SUM, proto::MEAN}, {false, true}, 2 * 2), 25);
}

TEST(LayeredModelTest, EsmmOutputsAndProbabilities) {
  ModelShape shape = Shape(1, {3, 3}, {proto::SUM, proto::MEAN}, {false, true});
  proto::ModelConfig c = Esmm();
  auto m = Make(c, shape);
  ASSERT_TRUE(m);
  ASSERT_EQ(m->num_heads(), 2);
  const std::vector<ModelHead> heads = ModelHeads(c);
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(heads[0].label_index, -1);
  EXPECT_EQ(heads[1].label_index, 0);
  EXPECT_EQ(heads[1].multiply_by, 0);
  EXPECT_EQ(ModelLabelColumns(c), std::vector<std::string>{"label:buy"});
  EXPECT_EQ(ServingHead(c), 1);
  c.set_serving_head("ctr");
  EXPECT_EQ(ServingHead(c), 0);
  Rows r = RandomRows(shape, 5, 30);
  std::vector<float> logits(10, -99.f), probs(10), own(10);
  m->Forward(r.Input(), logits.data());
  for (int i = 0; i < 10; ++i) EXPECT_NE(logits[i], -99.f) << i;
  // The towers differ: the heads' logits do too.
  EXPECT_NE(logits[0], logits[5]);
  HeadProbabilities(heads, logits.data(), 5, probs.data(), own.data());
  for (int i = 0; i < 5; ++i) {
    EXPECT_FLOAT_EQ(probs[i], Sigmoid(logits[i]));
    EXPECT_FLOAT_EQ(own[5 + i], Sigmoid(logits[5 + i]));
    EXPECT_FLOAT_EQ(probs[5 + i], Sigmoid(logits[i]) * Sigmoid(logits[5 + i]));
    EXPECT_LE(probs[5 + i], probs[i]);
  }
}

TEST(LayeredModelTest, OneHeadWithoutTowerIsTheSingleHeadModel) {
  // heads { name: "main" } has the single head's layout and draw: same
  // parameters, logits and gradients.
  ModelShape shape = Shape(1, {3, 3}, {proto::SUM, proto::MEAN}, {false, true});
  proto::ModelConfig plain = Layered();
  plain.set_first_order(true);
  plain.add_interactions(proto::ModelConfig::FM);
  plain.add_hidden(5);
  proto::ModelConfig one = plain;
  one.add_heads()->set_name("main");
  auto a = Make(plain, shape);
  auto b = Make(one, shape);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(b->num_heads(), 1);
  Rows r = RandomRows(shape, 6, 31);
  ExpectSameTraining(a.get(), b.get(), r, r, 3);
}

TEST(LayeredModelTest, MultiHeadLossMatchesLogLossAndItsOwnDerivative) {
  EncodedBatch b;
  b.Reset(0, 0);
  b.size = 4;
  b.labels = {1, 0, 1, 0};
  b.extra_labels = {{1, 0, 0, 0}};
  std::vector<ModelHead> one(1);
  const std::vector<float> z1 = {0.3f, -2.f, 40.f, -40.f};
  std::vector<float> d1(4), d2(4);
  EXPECT_EQ(MultiHeadLoss(one, z1.data(), b, d1.data()),
            LogLoss(z1.data(), b.labels.data(), 4, d2.data()));
  EXPECT_EQ(d1, d2);
  // ESMM: loss = BCE(s(z0), y) + BCE(s(z0) s(z1), buy); central differences
  // per logit, also at saturated ones.
  std::vector<ModelHead> esmm(2);
  esmm[1].label_index = 0;
  esmm[1].multiply_by = 0;
  std::vector<float> z = {0.3f, -2.f, 8.f, -1.f, 1.5f, 0.7f, 9.f, -3.f};
  std::vector<float> dz(8);
  double per_head[2];
  const double loss = MultiHeadLoss(esmm, z.data(), b, dz.data(), per_head);
  EXPECT_NEAR(loss, per_head[0] + per_head[1], 1e-12);
  EXPECT_NEAR(per_head[0], LogLoss(z.data(), b.labels.data(), 4, nullptr), 1e-9);
  double expect1 = 0;
  auto sigmoid = [](double x) { return 1 / (1 + std::exp(-x)); };
  for (int i = 0; i < 4; ++i) {
    const double p = sigmoid(z[i]) * sigmoid(z[4 + i]);
    expect1 -= b.extra_labels[0][i] > 0.5f ? std::log(p) : std::log(1 - p);
  }
  EXPECT_NEAR(per_head[1], expect1 / 4, 1e-6);
  for (int j = 0; j < 8; ++j) {
    const float keep = z[j];
    const float eps = 1e-2f;
    z[j] = keep + eps;
    const double up = MultiHeadLoss(esmm, z.data(), b, nullptr);
    z[j] = keep - eps;
    const double down = MultiHeadLoss(esmm, z.data(), b, nullptr);
    z[j] = keep;
    EXPECT_NEAR(dz[j], (up - down) / (2 * eps), 1e-4) << "logit " << j;
  }
  // Saturated: finite gradients, |dz| <= 1/n per head.
  std::vector<float> sat = {60.f, -60.f, 60.f, -60.f, 60.f, 60.f, -60.f, -60.f};
  MultiHeadLoss(esmm, sat.data(), b, dz.data());
  for (float g : dz) {
    EXPECT_TRUE(std::isfinite(g));
    EXPECT_LE(std::fabs(g), 2.f / 4 + 1e-6f);
  }
}

TEST(LayeredModelTest, HeadValidationNamesTheField) {
  ModelShape shape = Shape(1, {3, 3}, {proto::SUM, proto::MEAN}, {false, true});
  auto expect_error = [&](const proto::ModelConfig& c, const std::string& f) {
    Status st = ValidateModel(c, shape);
    EXPECT_FALSE(st.ok()) << f;
    EXPECT_NE(st.message().find(f), std::string::npos) << st;
  };
  EXPECT_TRUE(ValidateModel(Esmm(), shape).ok()) << ValidateModel(Esmm(), shape);
  proto::ModelConfig c = Esmm();
  c.mutable_heads(1)->set_multiply_by("cvr");
  expect_error(c, "model.heads[1].multiply_by: no earlier head named 'cvr'");
  c = Esmm();
  c.mutable_heads(1)->set_multiply_by("ctcvr");
  expect_error(c, "model.heads[1].multiply_by: a head cannot multiply by itself");
  c = Esmm();
  c.mutable_heads(0)->set_multiply_by("ctcvr");  // a cycle ctr <-> ctcvr
  expect_error(c, "model.heads[0].multiply_by: no earlier head named 'ctcvr'");
  c = Esmm();
  c.mutable_heads(1)->set_label("buy");
  expect_error(c, "model.heads[1].label: must be empty (the main label) or a label column");
  c = Esmm();
  c.mutable_heads(1)->set_name("ctr");
  expect_error(c, "model.heads[1].name: 'ctr' listed twice");
  c = Esmm();
  c.mutable_heads(0)->clear_name();
  expect_error(c, "model.heads[0].name: must not be empty");
  c = Esmm();
  c.mutable_heads(1)->add_hidden(-2);
  expect_error(c, "model.heads[1].hidden[1]: must be > 0");
  c = Esmm();
  c.set_serving_head("cvr");
  expect_error(c, "model.serving_head: no head named 'cvr'");
  c = Esmm();
  c.clear_hidden();
  expect_error(c, "model.heads: the heads' towers read the deep part");
  c = Layered();
  c.add_hidden(3);
  c.set_serving_head("ctr");
  expect_error(c, "model.serving_head: set, but the model has no heads");
}

}  // namespace
}  // namespace freshet
