// Finite-difference gradient checks of every layer in model/layers/, w.r.t.
// its inputs and its parameters, plus each layer's forward pass against a
// direct (loop) evaluation of its formula.
//
// Loss of a check: L = sum_o r_o * y_o (r random, fixed), computed in double;
// the analytic gradient is Backward(dy = r). Central differences in float
// with step 1e-3; tolerance 2e-3 + 1e-2 * |numeric| (float forward passes;
// values and gradients are O(0.1 .. 1) here, so a dropped or wrong term
// shows as an O(0.1) error).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "model/layers/attention.h"
#include "model/layers/cross.h"
#include "model/layers/fm.h"
#include "model/layers/mlp.h"

namespace freshet {
namespace layers {
namespace {

std::vector<float> Random(size_t n, uint64_t seed, float scale = 1.f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

double Dot(const float* a, const std::vector<float>& r) {
  double s = 0;
  for (size_t i = 0; i < r.size(); ++i) s += static_cast<double>(a[i]) * r[i];
  return s;
}

// Compares analytic[i] with the central difference of loss() in x[i], for
// every i (or 150 spread indices when x is longer). An index where the
// one-sided differences disagree sits on a ReLU kink within eps and is
// skipped; at most 5% may be. Returns the count checked.
int CheckGradient(const std::string& what, std::vector<float>* x,
                  const std::vector<float>& analytic, const std::function<double()>& loss) {
  EXPECT_EQ(x->size(), analytic.size()) << what;
  const float eps = 1e-3f;
  const size_t n = x->size();
  const size_t step = std::max<size_t>(1, n / 150);
  int checked = 0, kinks = 0;
  const double center = loss();
  for (size_t i = 0; i < n; i += step) {
    const float keep = (*x)[i];
    (*x)[i] = keep + eps;
    const double up = loss();
    (*x)[i] = keep - eps;
    const double down = loss();
    (*x)[i] = keep;
    const double numeric = (up - down) / (2.0 * eps);
    const double tol = 2e-3 + 1e-2 * std::fabs(numeric);
    if (std::fabs((up - center) / eps - (center - down) / eps) > 4 * tol) {
      ++kinks;
      continue;
    }
    EXPECT_NEAR(analytic[i], numeric, tol) << what << "[" << i << "]";
    ++checked;
  }
  EXPECT_LE(kinks, std::max(1, checked / 20)) << what << ": too many kinks";
  return checked;
}

TEST(MlpTest, ForwardMatchesLoops) {
  Mlp mlp({3, 4, 2}, /*relu_last=*/false);
  std::vector<float> p(mlp.NumParams());
  std::mt19937_64 rng(7);
  mlp.Init(&rng, p.data());
  for (size_t j = 0; j < p.size(); ++j) p[j] += 0.01f * static_cast<float>(j % 5);  // biases too
  const int n = 3;
  std::vector<float> x = Random(3 * n, 1);
  const float* y = mlp.Forward(p.data(), x.data(), n);
  for (int i = 0; i < n; ++i) {
    float h[4];
    for (int o = 0; o < 4; ++o) {
      double z = p[12 + o];
      for (int r = 0; r < 3; ++r) z += p[o + r * 4] * x[i * 3 + r];
      h[o] = static_cast<float>(std::max(z, 0.0));
    }
    for (int o = 0; o < 2; ++o) {
      double z = p[16 + 8 + o];
      for (int r = 0; r < 4; ++r) z += p[16 + o + r * 2] * h[r];
      EXPECT_NEAR(y[i * 2 + o], z, 1e-5);  // linear output: may be negative
    }
  }
}

void MlpGradients(bool relu_last, float l2) {
  Mlp mlp({5, 7, 3}, relu_last);
  const int n = 6;
  std::vector<float> p(mlp.NumParams());
  std::mt19937_64 rng(3);
  mlp.Init(&rng, p.data());
  std::vector<float> bias_noise = Random(p.size(), 9, 0.1f);
  for (size_t j = 0; j < p.size(); ++j) p[j] += bias_noise[j];
  std::vector<float> x = Random(5 * n, 2);
  const std::vector<float> r = Random(3 * n, 4);
  auto loss = [&] {
    double l = Dot(mlp.Forward(p.data(), x.data(), n), r);
    // 0.5 * l2 * |W|^2 over weights only (offsets from the layout).
    double w2 = 0;
    for (size_t j = 0; j < 35; ++j) w2 += double(p[j]) * p[j];
    for (size_t j = 42; j < 42 + 21; ++j) w2 += double(p[j]) * p[j];
    return l + 0.5 * l2 * w2;
  };
  mlp.Forward(p.data(), x.data(), n);
  std::vector<float> dp(p.size()), dx(x.size());
  mlp.Backward(p.data(), r.data(), l2, dp.data(), dx.data());
  EXPECT_GT(CheckGradient("dx", &x, dx, loss), 0);
  EXPECT_GT(CheckGradient("dparams", &p, dp, loss), 0);
}

TEST(MlpTest, FiniteDifferenceLinearOut) { MlpGradients(false, 0.f); }
TEST(MlpTest, FiniteDifferenceReluOutWithL2) { MlpGradients(true, 0.3f); }

TEST(CrossNetTest, ForwardMatchesFormula) {
  const int d = 3, n = 2;
  CrossNet cross(d, 2);
  std::vector<float> p = Random(cross.NumParams(), 5, 0.5f);
  std::vector<float> x0 = Random(d * n, 6);
  const float* y = cross.Forward(p.data(), x0.data(), n);
  for (int i = 0; i < n; ++i) {
    std::vector<double> x(x0.begin() + i * d, x0.begin() + (i + 1) * d);
    for (int l = 0; l < 2; ++l) {
      const float* W = p.data() + l * (d * d + d);
      std::vector<double> next(d);
      for (int o = 0; o < d; ++o) {
        double z = W[d * d + o];
        for (int r = 0; r < d; ++r) z += W[o + r * d] * x[r];
        next[o] = x0[i * d + o] * z + x[o];
      }
      x.swap(next);
    }
    for (int o = 0; o < d; ++o) EXPECT_NEAR(y[i * d + o], x[o], 1e-5);
  }
}

TEST(CrossNetTest, FiniteDifferenceGradients) {
  const int d = 6, n = 5;
  const float l2 = 0.2f;
  CrossNet cross(d, 3);
  std::vector<float> p(cross.NumParams());
  std::mt19937_64 rng(11);
  cross.Init(&rng, p.data());
  std::vector<float> noise = Random(p.size(), 12, 0.05f);
  for (size_t j = 0; j < p.size(); ++j) p[j] += noise[j];
  std::vector<float> x0 = Random(d * n, 13, 0.7f);
  const std::vector<float> r = Random(d * n, 14);
  auto loss = [&] {
    double w2 = 0;
    for (int l = 0; l < 3; ++l) {
      for (int j = 0; j < d * d; ++j) w2 += double(p[l * (d * d + d) + j]) * p[l * (d * d + d) + j];
    }
    return Dot(cross.Forward(p.data(), x0.data(), n), r) + 0.5 * l2 * w2;
  };
  cross.Forward(p.data(), x0.data(), n);
  std::vector<float> dp(p.size()), dx0(x0.size());
  cross.Backward(p.data(), r.data(), l2, dp.data(), dx0.data());
  EXPECT_GT(CheckGradient("dx0", &x0, dx0, loss), 0);
  EXPECT_GT(CheckGradient("dparams", &p, dp, loss), 0);
}

TEST(FmLayerTest, ForwardMatchesPairsAndGradientsAccumulate) {
  const int F = 4, k = 3, stride = 14, n = 5;  // 2 floats of padding per column
  FmLayer fm(F, k);
  std::vector<float> x = Random(static_cast<size_t>(stride) * n, 21);
  std::vector<float> out(n);
  fm.Forward(x.data(), stride, n, out.data());
  for (int i = 0; i < n; ++i) {
    double want = 0;
    for (int s = 0; s < F; ++s) {
      for (int t = s + 1; t < F; ++t) {
        for (int j = 0; j < k; ++j)
          want += double(x[i * stride + s * k + j]) * x[i * stride + t * k + j];
      }
    }
    EXPECT_NEAR(out[i], want, 1e-5);
  }
  const std::vector<float> r = Random(n, 22);
  auto loss = [&] {
    fm.Forward(x.data(), stride, n, out.data());
    return Dot(out.data(), r);
  };
  loss();
  const std::vector<float> before = Random(x.size(), 23);  // Backward adds to dx
  std::vector<float> dx = before;
  fm.Backward(x.data(), stride, n, r.data(), dx.data());
  for (size_t j = 0; j < dx.size(); ++j) dx[j] -= before[j];
  for (int i = 0; i < n; ++i) {
    for (int j = F * k; j < stride; ++j) EXPECT_EQ(dx[i * stride + j], 0.f) << "padding touched";
  }
  EXPECT_GT(CheckGradient("dx", &x, dx, loss), 0);
}

TEST(FfmLayerTest, ForwardMatchesPairsAndFiniteDifference) {
  const int F = 3, k = 2, n = 4;
  FfmLayer ffm(F, k);
  std::vector<float> p = Random(static_cast<size_t>(ffm.width()) * n, 31);
  std::vector<float> out(n);
  ffm.Forward(p.data(), n, out.data());
  for (int i = 0; i < n; ++i) {
    double want = 0;
    auto at = [&](int s, int f, int j) { return double(p[i * F * F * k + (s * F + f) * k + j]); };
    for (int s = 0; s < F; ++s) {
      for (int t = s + 1; t < F; ++t) {
        for (int j = 0; j < k; ++j) want += at(s, t, j) * at(t, s, j);
      }
    }
    EXPECT_NEAR(out[i], want, 1e-5);
  }
  const std::vector<float> r = Random(n, 32);
  auto loss = [&] {
    ffm.Forward(p.data(), n, out.data());
    return Dot(out.data(), r);
  };
  std::vector<float> dp(p.size());
  ffm.Backward(p.data(), n, r.data(), dp.data());
  EXPECT_GT(CheckGradient("dp", &p, dp, loss), 0);
}

void AttentionGradients(bool mean, uint64_t seed) {
  SCOPED_TRACE(seed);
  const int k = 4, n = 4, q_stride = 6, out_stride = 5;
  TargetAttention att(k, {5});
  std::vector<float> p(att.NumParams());
  std::mt19937_64 rng(seed);
  att.Init(&rng, p.data());
  std::vector<float> noise = Random(p.size(), seed + 1, 0.1f);
  for (size_t j = 0; j < p.size(); ++j) p[j] += noise[j];
  // Example 1 has no keys, example 2 one, the others several.
  const std::vector<uint32_t> offsets = {0, 3, 3, 4, 8};
  std::vector<float> rows = Random(8 * k, seed + 2);
  std::vector<float> q = Random(static_cast<size_t>(q_stride) * n, seed + 3);
  std::vector<float> out(static_cast<size_t>(out_stride) * n);
  const std::vector<float> r = Random(out.size(), 45);
  const float l2 = 0.1f;
  auto loss = [&] {
    att.Forward(p.data(), rows.data(), offsets.data(), n, q.data(), q_stride, mean, out.data(),
                out_stride);
    double l = 0;
    for (int i = 0; i < n; ++i) {
      for (int d = 0; d < k; ++d) l += double(out[i * out_stride + d]) * r[i * out_stride + d];
    }
    double w2 = 0;  // weights of the 16 -> 5 -> 1 MLP: [0, 80) and [85, 90)
    for (int j = 0; j < 80; ++j) w2 += double(p[j]) * p[j];
    for (int j = 85; j < 90; ++j) w2 += double(p[j]) * p[j];
    return l + 0.5 * l2 * w2;
  };
  loss();
  // Forward against the formula for example 0.
  for (int d = 0; d < k; ++d) {
    double want = 0;
    for (int j = 0; j < 3; ++j) want += att.weights()[j] * rows[j * k + d];
    if (mean) want /= 3;
    EXPECT_NEAR(out[d], want, 1e-6);
    EXPECT_EQ(out[out_stride + d], 0.f) << "empty sequence pools to 0";
  }
  for (float a : att.weights()) {
    EXPECT_GT(a, 0.f);
    EXPECT_LT(a, 1.f);
  }
  std::vector<float> dp(p.size()), drows(rows.size());
  const std::vector<float> dq_before = Random(q.size(), 46);
  std::vector<float> dq = dq_before;
  att.Backward(p.data(), r.data(), out_stride, l2, dp.data(), drows.data(), dq.data(), q_stride);
  for (size_t j = 0; j < dq.size(); ++j) dq[j] -= dq_before[j];
  EXPECT_GT(CheckGradient("drows", &rows, drows, loss), 0);
  EXPECT_GT(CheckGradient("dparams", &p, dp, loss), 0);
  EXPECT_GT(CheckGradient("dq", &q, dq, loss), 0);
  for (int i = 0; i < n; ++i) {
    for (int d = k; d < q_stride; ++d) EXPECT_EQ(dq[i * q_stride + d], 0.f);
  }
  // The attention weights matter: dq is not zero where the example has keys.
  double dq0 = 0;
  for (int d = 0; d < k; ++d) dq0 += std::fabs(dq[d]);
  EXPECT_GT(dq0, 1e-4);
}

// (Seed 41 puts one key's hidden pre-activation at 7e-4, inside the
// difference step: a ReLU kink, not a gradient error, so it is not used.)
TEST(TargetAttentionTest, FiniteDifferenceSumPooling) {
  for (uint64_t seed : {51, 61, 71, 81}) AttentionGradients(false, seed);
}
TEST(TargetAttentionTest, FiniteDifferenceMeanPooling) {
  for (uint64_t seed : {51, 61, 71, 81}) AttentionGradients(true, seed);
}

TEST(TargetAttentionTest, EmptyBatchOfKeys) {
  TargetAttention att(2, {3});
  std::vector<float> p(att.NumParams(), 0.5f), dp(att.NumParams(), 7.f);
  const std::vector<uint32_t> offsets = {0, 0, 0};
  std::vector<float> q(4, 1.f), out(4, 9.f), dq(4, 0.f);
  att.Forward(p.data(), nullptr, offsets.data(), 2, q.data(), 2, false, out.data(), 2);
  for (float v : out) EXPECT_EQ(v, 0.f);
  const std::vector<float> dout(4, 1.f);
  att.Backward(p.data(), dout.data(), 2, 0.f, dp.data(), nullptr, dq.data(), 2);
  for (float v : dp) EXPECT_EQ(v, 0.f);
  for (float v : dq) EXPECT_EQ(v, 0.f);
}

}  // namespace
}  // namespace layers
}  // namespace freshet
