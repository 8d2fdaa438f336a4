// internal::Gemm (the dense layers' GEMM) against a loop in double, for every
// transpose pair, beta 0 and 1, and leading dimensions larger than the rows;
// DenseProfile's record of the GEMMs an Mlp runs.
#include "model/internal/gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "model/dense_profile.h"
#include "model/layers/mlp.h"

namespace freshet {
namespace {

TEST(GemmTest, MatchesLoopForEveryTransposeAndBeta) {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const int m = 7, n = 5, k = 9, pad = 3;
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      for (float beta : {0.f, 1.f, 0.5f}) {
        const int lda = (ta ? k : m) + pad, ldb = (tb ? n : k) + pad, ldc = m + pad;
        std::vector<float> a(static_cast<size_t>(lda) * (ta ? m : k));
        std::vector<float> b(static_cast<size_t>(ldb) * (tb ? k : n));
        std::vector<float> c(static_cast<size_t>(ldc) * n);
        for (float& x : a) x = u(rng);
        for (float& x : b) x = u(rng);
        for (float& x : c) x = u(rng);
        // beta == 0 must ignore C entirely (BLAS semantics), NaN included.
        if (beta == 0.f) c[0] = std::numeric_limits<float>::quiet_NaN();
        std::vector<float> want = c;
        for (int j = 0; j < n; ++j) {
          for (int i = 0; i < m; ++i) {
            double s = 0;
            for (int p = 0; p < k; ++p) {
              const double x =
                  ta ? a[p + static_cast<size_t>(i) * lda] : a[i + static_cast<size_t>(p) * lda];
              const double y =
                  tb ? b[j + static_cast<size_t>(p) * ldb] : b[p + static_cast<size_t>(j) * ldb];
              s += x * y;
            }
            float& w = want[i + static_cast<size_t>(j) * ldc];
            w = static_cast<float>(2.0 * s + (beta == 0.f ? 0.0 : beta * static_cast<double>(w)));
          }
        }
        internal::Gemm(ta, tb, m, n, k, 2.f, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
        for (size_t j = 0; j < c.size(); ++j) {
          // Padding rows (i >= m) stay as they were.
          EXPECT_NEAR(c[j], want[j], 1e-5f)
              << "ta " << ta << " tb " << tb << " beta " << beta << " at " << j;
        }
      }
    }
  }
}

TEST(GemmTest, ZeroInnerDimensionScalesC) {
  std::vector<float> c{1.f, 2.f, 3.f, 4.f};
  internal::Gemm(false, false, 2, 2, 0, 1.f, nullptr, 2, nullptr, 1, 0.5f, c.data(), 2);
  EXPECT_EQ(c, (std::vector<float>{0.5f, 1.f, 1.5f, 2.f}));
  internal::Gemm(false, false, 2, 2, 0, 1.f, nullptr, 2, nullptr, 1, 0.f, c.data(), 2);
  EXPECT_EQ(c, (std::vector<float>{0.f, 0.f, 0.f, 0.f}));
}

TEST(DenseProfileTest, RecordsAnMlpsGemmsOnThisThreadOnly) {
  layers::Mlp mlp({6, 4, 1}, /*relu_last=*/false);
  std::vector<float> params(mlp.NumParams()), dparams(mlp.NumParams());
  std::mt19937_64 rng(1);
  mlp.Init(&rng, params.data());
  const int n = 10;
  std::vector<float> x(6 * n, 0.25f), dy(n, 1.f), dx(6 * n);
  mlp.Forward(params.data(), x.data(), n);  // no profile installed: not counted
  DenseProfile::Options o;
  o.keep_calls = true;
  o.time_calls = true;
  {
    DenseProfile profile(o);
    EXPECT_EQ(DenseProfile::Current(), &profile);
    mlp.Forward(params.data(), x.data(), n);
    mlp.Backward(params.data(), dy.data(), 0.f, dparams.data(), dx.data());
    // Forward: W0 X (4x10, k 6), W1 H (1x10, k 4). Backward, top down:
    // dW1 = dZ H^T (1x4, k 10), dH = W1^T dZ (4x10, k 1), dW0 (4x6, k 10),
    // dX = W0^T dZ (6x10, k 4).
    const std::vector<GemmCall>& c = profile.calls();
    ASSERT_EQ(c.size(), 6u);
    const int want[6][5] = {{0, 0, 4, 10, 6}, {0, 0, 1, 10, 4}, {0, 1, 1, 4, 10},
                            {1, 0, 4, 10, 1}, {0, 1, 4, 6, 10}, {1, 0, 6, 10, 4}};
    double flops = 0;
    for (int i = 0; i < 6; ++i) {
      EXPECT_EQ(c[i].trans_a, want[i][0] != 0) << i;
      EXPECT_EQ(c[i].trans_b, want[i][1] != 0) << i;
      EXPECT_EQ(c[i].m, want[i][2]) << i;
      EXPECT_EQ(c[i].n, want[i][3]) << i;
      EXPECT_EQ(c[i].k, want[i][4]) << i;
      EXPECT_GE(c[i].seconds, 0.0);
      flops += 2.0 * want[i][2] * want[i][3] * want[i][4];
    }
    EXPECT_EQ(profile.gemms(), 6);
    EXPECT_EQ(profile.flops(), flops);
    EXPECT_EQ(flops, 6.0 * (6 * 4 + 4 * 1) * n);
    std::thread other([&] {
      EXPECT_EQ(DenseProfile::Current(), nullptr);
      layers::Mlp m2({6, 4, 1}, false);
      m2.Forward(params.data(), x.data(), n);
    });
    other.join();
    EXPECT_EQ(profile.gemms(), 6);
    profile.Reset();
    EXPECT_EQ(profile.gemms(), 0);
    EXPECT_TRUE(profile.calls().empty());
  }
  EXPECT_EQ(DenseProfile::Current(), nullptr);
}

}  // namespace
}  // namespace freshet
