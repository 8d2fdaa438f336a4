#include "server/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace freshet {
namespace {

// Expected values below were worked out by hand (double precision); the
// optimizers compute in float, so compare to ~1e-6.
constexpr float kTol = 2e-6f;

std::unique_ptr<Optimizer> MakeOrDie(const proto::OptimizerConfig& cfg) {
  auto opt = Optimizer::Create(cfg);
  EXPECT_TRUE(opt.ok()) << opt.status();
  return std::move(opt).value();
}

// One row's weights and optimizer state, stepped through Apply().
struct RowState {
  std::vector<float> w;
  std::vector<float> state;
};

RowState Start(const Optimizer& opt, std::vector<float> w0) {
  RowState r;
  r.w = std::move(w0);
  r.state.assign(opt.StateDim(static_cast<int>(r.w.size())), -123.0f);
  opt.InitState(r.state.data(), static_cast<int>(r.w.size()));
  return r;
}

void Step(const Optimizer& opt, RowState* r, std::vector<float> g, uint32_t updates_before) {
  ASSERT_EQ(g.size(), r->w.size());
  opt.Apply(r->w.data(), r->state.data(), g.data(), static_cast<int>(g.size()), updates_before);
}

TEST(OptimizerTest, CreateWithoutKindIsInvalidArgument) {
  proto::OptimizerConfig cfg;
  cfg.set_clip_norm(1.0f);
  auto opt = Optimizer::Create(cfg);
  ASSERT_FALSE(opt.ok());
  EXPECT_EQ(opt.status().code(), StatusCode::kInvalidArgument);
}

TEST(OptimizerTest, StateDims) {
  proto::OptimizerConfig cfg;
  cfg.mutable_sgd()->set_learning_rate(1);
  EXPECT_EQ(MakeOrDie(cfg)->StateDim(8), 0);
  cfg.mutable_adagrad()->set_learning_rate(1);
  EXPECT_EQ(MakeOrDie(cfg)->StateDim(8), 8);
  cfg.mutable_adam()->set_learning_rate(1);
  EXPECT_EQ(MakeOrDie(cfg)->StateDim(8), 16);
  cfg.mutable_ftrl()->set_alpha(1);
  EXPECT_EQ(MakeOrDie(cfg)->StateDim(8), 16);
}

TEST(OptimizerTest, Sgd) {
  proto::OptimizerConfig cfg;
  cfg.mutable_sgd()->set_learning_rate(0.5f);
  auto opt = MakeOrDie(cfg);
  RowState r = Start(*opt, {1.0f, -2.0f});
  Step(*opt, &r, {0.5f, -1.0f}, 0);  // w = [1 - .25, -2 + .5]
  EXPECT_FLOAT_EQ(r.w[0], 0.75f);
  EXPECT_FLOAT_EQ(r.w[1], -1.5f);
  Step(*opt, &r, {2.0f, 0.25f}, 1);  // w = [.75 - 1, -1.5 - .125]
  EXPECT_FLOAT_EQ(r.w[0], -0.25f);
  EXPECT_FLOAT_EQ(r.w[1], -1.625f);
}

TEST(OptimizerTest, Adagrad) {
  proto::OptimizerConfig cfg;
  auto* a = cfg.mutable_adagrad();
  a->set_learning_rate(0.1f);
  a->set_initial_accumulator(0.1f);
  a->set_epsilon(1e-8f);
  auto opt = MakeOrDie(cfg);
  RowState r = Start(*opt, {1.0f, -0.5f});
  EXPECT_FLOAT_EQ(r.state[0], 0.1f);
  EXPECT_FLOAT_EQ(r.state[1], 0.1f);

  // Step 1, g = [1, -2]: a = [0.1 + 1, 0.1 + 4] = [1.1, 4.1]
  //   (eps = 1e-8 is added to each sqrt below)
  //   w0 = 1 - 0.1 * 1 / sqrt(1.1)       = 1 - 0.0953462589 = 0.9046537420
  //   w1 = -0.5 - 0.1 * (-2) / sqrt(4.1) = -0.5 + 0.0987729592 = -0.4012270408
  Step(*opt, &r, {1.0f, -2.0f}, 0);
  EXPECT_NEAR(r.state[0], 1.1f, kTol);
  EXPECT_NEAR(r.state[1], 4.1f, kTol);
  EXPECT_NEAR(r.w[0], 0.9046537420f, kTol);
  EXPECT_NEAR(r.w[1], -0.4012270408f, kTol);

  // Step 2, g = [0.5, 0.5]: a = [1.35, 4.35]
  //   w0 = 0.9046537420 - 0.05 / sqrt(1.35)  = 0.9046537420 - 0.0430331483 = 0.8616205941
  //   w1 = -0.4012270408 - 0.05 / sqrt(4.35) = -0.4012270408 - 0.0239731650 = -0.4252002058
  Step(*opt, &r, {0.5f, 0.5f}, 1);
  EXPECT_NEAR(r.state[0], 1.35f, kTol);
  EXPECT_NEAR(r.state[1], 4.35f, kTol);
  EXPECT_NEAR(r.w[0], 0.8616205941f, kTol);
  EXPECT_NEAR(r.w[1], -0.4252002058f, kTol);
}

TEST(OptimizerTest, Adam) {
  proto::OptimizerConfig cfg;
  auto* a = cfg.mutable_adam();
  a->set_learning_rate(0.01f);
  a->set_beta1(0.9f);
  a->set_beta2(0.999f);
  a->set_epsilon(1e-8f);
  auto opt = MakeOrDie(cfg);
  RowState r = Start(*opt, {0.5f, -1.0f});
  for (float s : r.state) EXPECT_EQ(s, 0.0f);

  // t = 1, g = [0.2, -1]: m = 0.1 g = [0.02, -0.1], v = 0.001 g^2 = [4e-5, 1e-3]
  //   m_hat = m / 0.1 = g, v_hat = v / 0.001 = g^2, so the step is lr * sign(g):
  //   w = [0.49, -0.99]
  Step(*opt, &r, {0.2f, -1.0f}, 0);
  EXPECT_NEAR(r.state[0], 0.02f, kTol);
  EXPECT_NEAR(r.state[1], -0.1f, kTol);
  // 1 - 0.999f is 9.9998713e-4 in float, so v is off from 1e-3 g^2 by ~1e-5 relative.
  EXPECT_NEAR(r.state[2], 4e-5f, 4e-5f * 1e-4f);
  EXPECT_NEAR(r.state[3], 1e-3f, 1e-3f * 1e-4f);
  EXPECT_NEAR(r.w[0], 0.49f, kTol);
  EXPECT_NEAR(r.w[1], -0.99f, kTol);

  // t = 2, g = [-0.1, 3]: bias corrections 1 - 0.81 = 0.19, 1 - 0.998001 = 0.001999
  //   m0 = 0.018 - 0.01 = 0.008;  v0 = 3.996e-5 + 1e-5 = 4.996e-5
  //   w0 = 0.49 - 0.01 * (0.008/0.19) / sqrt(4.996e-5/0.001999)
  //      = 0.49 - 0.01 * 0.0421052632 / 0.1580901524 = 0.4873366303
  //   m1 = -0.09 + 0.3 = 0.21;    v1 = 9.99e-4 + 9e-3 = 9.999e-3
  //   w1 = -0.99 - 0.01 * (0.21/0.19) / sqrt(9.999e-3/0.001999) = -0.9949418984
  Step(*opt, &r, {-0.1f, 3.0f}, 1);
  EXPECT_NEAR(r.state[0], 0.008f, kTol);
  EXPECT_NEAR(r.state[1], 0.21f, kTol);
  EXPECT_NEAR(r.w[0], 0.4873366303f, kTol);
  EXPECT_NEAR(r.w[1], -0.9949418984f, kTol);

  // t = 3, g = [0.4, 0]: m = [0.0472, 0.189], v = [2.0991004e-4, 9.989001e-3]
  //   corrections 1 - 0.729 = 0.271, 1 - 0.997002999 = 0.002997001
  //   w = [0.4807555145, -0.9987620001]
  Step(*opt, &r, {0.4f, 0.0f}, 2);
  EXPECT_NEAR(r.w[0], 0.4807555145f, kTol);
  EXPECT_NEAR(r.w[1], -0.9987620001f, kTol);
}

TEST(OptimizerTest, AdamIsLazyAndUsesTheRowsUpdateCount) {
  proto::OptimizerConfig cfg;
  auto* a = cfg.mutable_adam();
  a->set_learning_rate(0.01f);
  a->set_beta1(0.9f);
  a->set_beta2(0.999f);
  a->set_epsilon(1e-8f);
  auto opt = MakeOrDie(cfg);
  // Fresh moments but updates_before = 4, so t = 5:
  //   m = 0.02, v = 4e-5, corrections 1 - 0.9^5 = 0.40951, 1 - 0.999^5 = 0.004990010
  //   w = 0.5 - 0.01 * (0.02/0.40951) / sqrt(4e-5/0.00499001) = 0.4945451081
  RowState r = Start(*opt, {0.5f});
  Step(*opt, &r, {0.2f}, 4);
  EXPECT_NEAR(r.w[0], 0.4945451081f, kTol);
}

TEST(OptimizerTest, Ftrl) {
  proto::OptimizerConfig cfg;
  auto* f = cfg.mutable_ftrl();
  f->set_alpha(0.1f);
  f->set_beta(1.0f);
  f->set_l1(0.5f);
  f->set_l2(0.1f);
  auto opt = MakeOrDie(cfg);
  // A non-zero initial weight (as an initializer would give) enters via sigma*w.
  RowState r = Start(*opt, {0.3f, 0.0f});
  for (float s : r.state) EXPECT_EQ(s, 0.0f);

  // Step 1, g = [1, 0.2]
  //   coord 0: sigma = (1 - 0) / 0.1 = 10; z = 1 - 10 * 0.3 = -2; n = 1
  //            |z| > l1: w = -(-2 + 0.5) / ((1 + 1)/0.1 + 0.1) = 1.5 / 20.1 = 0.0746268657
  //   coord 1: sigma = 2; z = 0.2 - 0 = 0.2; n = 0.04; |z| <= l1: w = 0
  Step(*opt, &r, {1.0f, 0.2f}, 0);
  EXPECT_NEAR(r.state[0], -2.0f, kTol);  // z0
  EXPECT_NEAR(r.state[1], 0.2f, kTol);   // z1
  EXPECT_NEAR(r.state[2], 1.0f, kTol);   // n0
  EXPECT_NEAR(r.state[3], 0.04f, kTol);  // n1
  EXPECT_NEAR(r.w[0], 0.0746268657f, kTol);
  EXPECT_EQ(r.w[1], 0.0f);

  // Step 2, g = [0.5, -3]
  //   coord 0: sigma = (sqrt(1.25) - 1) / 0.1 = 1.1803398875;
  //            z = -2 + 0.5 - 1.1803398875 * 0.0746268657 = -1.5880850662; n = 1.25
  //            w = 1.0880850662 / ((1 + 1.1180339887)/0.1 + 0.1) = 0.0511310003
  //   coord 1: sigma = (sqrt(9.04) - 0.2) / 0.1; z = 0.2 - 3 - sigma * 0 = -2.8; n = 9.04
  //            w = 2.3 / ((1 + 3.0066592757)/0.1 + 0.1) = 0.0572615162
  Step(*opt, &r, {0.5f, -3.0f}, 1);
  EXPECT_NEAR(r.state[0], -1.5880850662f, kTol);
  EXPECT_NEAR(r.state[1], -2.8f, kTol);
  EXPECT_NEAR(r.w[0], 0.0511310003f, kTol);
  EXPECT_NEAR(r.w[1], 0.0572615162f, kTol);

  // Step 3, g = [-2, 0.1]: z = [-4.1879815008, -2.7009519817], n = [5.25, 9.05]
  //   w = [0.1117134183, 0.0547729151]
  Step(*opt, &r, {-2.0f, 0.1f}, 2);
  EXPECT_NEAR(r.state[0], -4.1879815008f, 1e-5f);
  EXPECT_NEAR(r.state[1], -2.7009519817f, 1e-5f);
  EXPECT_NEAR(r.w[0], 0.1117134183f, kTol);
  EXPECT_NEAR(r.w[1], 0.0547729151f, kTol);
}

TEST(OptimizerTest, ClipNormScalesLargeGradients) {
  proto::OptimizerConfig cfg;
  cfg.mutable_sgd()->set_learning_rate(1.0f);
  cfg.set_clip_norm(1.0f);
  auto opt = MakeOrDie(cfg);
  RowState r = Start(*opt, {0.0f, 0.0f});
  // |[3, 4]| = 5 > 1: scaled to [0.6, 0.8].
  Step(*opt, &r, {3.0f, 4.0f}, 0);
  EXPECT_NEAR(r.w[0], -0.6f, 1e-7f);
  EXPECT_NEAR(r.w[1], -0.8f, 1e-7f);
  // |[0.3, -0.4]| = 0.5 <= 1: unchanged.
  Step(*opt, &r, {0.3f, -0.4f}, 1);
  EXPECT_NEAR(r.w[0], -0.9f, 1e-7f);
  EXPECT_NEAR(r.w[1], -0.4f, 1e-7f);
}

TEST(OptimizerTest, ClipNormAppliesBeforeAdagrad) {
  proto::OptimizerConfig cfg;
  auto* a = cfg.mutable_adagrad();
  a->set_learning_rate(0.1f);
  a->set_initial_accumulator(0.1f);
  a->set_epsilon(1e-8f);
  cfg.set_clip_norm(2.5f);
  auto opt = MakeOrDie(cfg);
  RowState r = Start(*opt, {0.0f, 0.0f});
  // [6, 8] has norm 10 -> [1.5, 2]; a = [0.1 + 2.25, 0.1 + 4] = [2.35, 4.1]
  //   w = [-0.15 / (sqrt(2.35) + eps), -0.2 / (sqrt(4.1) + eps)] = [-0.0978492103, -0.0987729592]
  Step(*opt, &r, {6.0f, 8.0f}, 0);
  EXPECT_NEAR(r.state[0], 2.35f, kTol);
  EXPECT_NEAR(r.state[1], 4.1f, kTol);
  EXPECT_NEAR(r.w[0], -0.0978492103f, kTol);
  EXPECT_NEAR(r.w[1], -0.0987729592f, kTol);
}

TEST(OptimizerTest, ClipNormZeroMeansNoClipping) {
  proto::OptimizerConfig cfg;
  cfg.mutable_sgd()->set_learning_rate(1.0f);
  auto opt = MakeOrDie(cfg);
  RowState r = Start(*opt, {0.0f});
  Step(*opt, &r, {1000.0f}, 0);
  EXPECT_EQ(r.w[0], -1000.0f);
}

}  // namespace
}  // namespace freshet

namespace freshet {
namespace {

// The optimizers' row loops are vectorized (AVX-512 / AVX2 / SSE2 clones).
// Reference: the textbook per-element formulas, one element at a time in
// double precision, with the optimizer's float state. Over many steps, dims
// that exercise every vector width and tail, and gradients of mixed signs
// and magnitudes (FTRL's |z| <= l1 both ways), the vector code stays within
// 1e-6 (relative, for values above 1) of the reference.
struct RefRow {
  std::vector<double> w, s;
};

void RefStep(const proto::OptimizerConfig& c, RefRow* r, const std::vector<float>& g,
             uint32_t updates_before) {
  const size_t dim = g.size();
  for (size_t i = 0; i < dim; ++i) {
    const double gi = g[i];
    double& w = r->w[i];
    switch (c.kind_case()) {
      case proto::OptimizerConfig::kSgd:
        w -= c.sgd().learning_rate() * gi;
        break;
      case proto::OptimizerConfig::kAdagrad: {
        double& a = r->s[i];
        a += gi * gi;
        w -= c.adagrad().learning_rate() * gi / (std::sqrt(a) + c.adagrad().epsilon());
        break;
      }
      case proto::OptimizerConfig::kAdam: {
        const auto& p = c.adam();
        double& m = r->s[i];
        double& v = r->s[dim + i];
        const double t = updates_before + 1.0;
        m = p.beta1() * m + (1 - static_cast<double>(p.beta1())) * gi;
        v = p.beta2() * v + (1 - static_cast<double>(p.beta2())) * gi * gi;
        const double mh = m / (1 - std::pow(static_cast<double>(p.beta1()), t));
        const double vh = v / (1 - std::pow(static_cast<double>(p.beta2()), t));
        w -= p.learning_rate() * mh / (std::sqrt(vh) + p.epsilon());
        break;
      }
      case proto::OptimizerConfig::kFtrl: {
        const auto& p = c.ftrl();
        double& z = r->s[i];
        double& n = r->s[dim + i];
        const double n_new = n + gi * gi;
        const double sigma = (std::sqrt(n_new) - std::sqrt(n)) / p.alpha();
        z += gi - sigma * w;
        n = n_new;
        w = std::fabs(z) <= p.l1() ? 0.0
                                   : -(z - (z < 0 ? -1.0 : 1.0) * p.l1()) /
                                         ((p.beta() + std::sqrt(n)) / p.alpha() + p.l2());
        break;
      }
      default:
        FAIL();
    }
  }
}

class OptimizerVsReferenceTest : public ::testing::TestWithParam<const char*> {};

TEST_P(OptimizerVsReferenceTest, VectorRowsEqualTheScalarReference) {
  proto::OptimizerConfig cfg;
  const std::string kind = GetParam();
  if (kind == "sgd") cfg.mutable_sgd()->set_learning_rate(0.05f);
  if (kind == "adagrad") {
    cfg.mutable_adagrad()->set_learning_rate(0.05f);
    cfg.mutable_adagrad()->set_initial_accumulator(0.1f);
    cfg.mutable_adagrad()->set_epsilon(1e-8f);
  }
  if (kind == "adam") {
    auto* a = cfg.mutable_adam();
    a->set_learning_rate(0.01f);
    a->set_beta1(0.9f);
    a->set_beta2(0.999f);
    a->set_epsilon(1e-8f);
  }
  if (kind == "ftrl") {
    auto* f = cfg.mutable_ftrl();
    f->set_alpha(0.05f);
    f->set_beta(1.0f);
    f->set_l1(0.02f);
    f->set_l2(0.01f);
  }
  auto opt = MakeOrDie(cfg);
  uint64_t rng = 12345;
  auto uniform = [&rng] {  // in [-1, 1)
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>(static_cast<int64_t>(rng >> 11) - (int64_t{1} << 52)) /
           static_cast<float>(int64_t{1} << 52);
  };
  for (int dim : {1, 3, 4, 7, 8, 15, 16, 17, 31, 33, 64, 100, 130}) {
    std::vector<float> w0(dim);
    for (float& x : w0) x = 0.1f * uniform();
    RowState row = Start(*opt, w0);
    RefRow ref;
    ref.w.assign(w0.begin(), w0.end());
    ref.s.assign(row.state.begin(), row.state.end());
    // Adam: steps past its table of bias corrections (1,024) too.
    const int steps = kind == "adam" ? 1100 : 50;
    for (int t = 0; t < steps; ++t) {
      std::vector<float> g(dim);
      for (float& x : g) x = (t % 7 == 0 ? 0.5f : 0.02f) * uniform();
      Step(*opt, &row, g, static_cast<uint32_t>(t));
      RefStep(cfg, &ref, g, static_cast<uint32_t>(t));
      // Keep the reference on the optimizer's float trajectory (the state is
      // float there), so errors do not compound over the steps.
      for (int i = 0; i < dim; ++i) {
        const double tol = 1e-6 * std::max(1.0, std::fabs(ref.w[i]));
        ASSERT_NEAR(row.w[i], ref.w[i], tol)
            << kind << " dim " << dim << " step " << t << " i " << i;
        ref.w[i] = row.w[i];
      }
      for (size_t i = 0; i < ref.s.size(); ++i) {
        ASSERT_NEAR(row.state[i], ref.s[i], 1e-6 * std::max(1.0, std::fabs(ref.s[i])))
            << kind << " state " << i;
        ref.s[i] = row.state[i];
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, OptimizerVsReferenceTest,
                         ::testing::Values("sgd", "adagrad", "adam", "ftrl"));

}  // namespace
}  // namespace freshet
