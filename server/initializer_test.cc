#include "server/initializer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace freshet {
namespace {

proto::Initializer Init(proto::Initializer::Kind kind, float scale, uint64_t seed) {
  proto::Initializer init;
  init.set_kind(kind);
  init.set_scale(scale);
  init.set_seed(seed);
  return init;
}

std::vector<float> Row(const proto::Initializer& init, int table, uint64_t key, int dim) {
  std::vector<float> out(dim, -999.0f);
  InitializeRow(init, table, key, out.data(), dim);
  return out;
}

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(InitializerTest, DeterministicPerSeedTableKey) {
  for (auto kind : {proto::Initializer::UNIFORM, proto::Initializer::NORMAL}) {
    const proto::Initializer init = Init(kind, 0.5f, 42);
    for (uint64_t key : {0ull, 1ull, 12345ull, ~0ull}) {
      EXPECT_TRUE(BitEqual(Row(init, 3, key, 17), Row(init, 3, key, 17)));
    }
  }
}

TEST(InitializerTest, PrefixDoesNotDependOnDim) {
  const proto::Initializer init = Init(proto::Initializer::NORMAL, 1.0f, 7);
  const std::vector<float> a = Row(init, 0, 99, 8);
  const std::vector<float> b = Row(init, 0, 99, 9);
  EXPECT_TRUE(BitEqual(a, std::vector<float>(b.begin(), b.begin() + 8)));
}

TEST(InitializerTest, KeysTablesAndSeedsDiffer) {
  for (auto kind : {proto::Initializer::UNIFORM, proto::Initializer::NORMAL}) {
    const proto::Initializer init = Init(kind, 1.0f, 42);
    const std::vector<float> base = Row(init, 1, 1000, 8);
    EXPECT_FALSE(BitEqual(base, Row(init, 1, 1001, 8)));                  // next key
    EXPECT_FALSE(BitEqual(base, Row(init, 2, 1000, 8)));                  // other table
    EXPECT_FALSE(BitEqual(base, Row(Init(kind, 1.0f, 43), 1, 1000, 8)));  // other seed
    // Table id and key are not interchangeable.
    EXPECT_FALSE(BitEqual(Row(init, 1, 2, 8), Row(init, 2, 1, 8)));
    // Coordinates within a row differ too.
    EXPECT_NE(base[0], base[1]);
  }
}

TEST(InitializerTest, UniformWithinBoundsAndSpread) {
  const float scale = 0.05f;
  const proto::Initializer init = Init(proto::Initializer::UNIFORM, scale, 1);
  const int dim = 16;
  const int rows = 20000;
  double sum = 0, sum_sq = 0;
  float lo = 1, hi = -1;
  for (int k = 0; k < rows; ++k) {
    for (float v : Row(init, 0, k, dim)) {
      ASSERT_GE(v, -scale);
      ASSERT_LE(v, scale);
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      sum += v;
      sum_sq += static_cast<double>(v) * v;
    }
  }
  const double n = static_cast<double>(rows) * dim;
  const double mean = sum / n;
  const double var = sum_sq / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.01 * scale);
  // Variance of U[-s, s] is s^2 / 3.
  EXPECT_NEAR(var, scale * scale / 3.0, 0.02 * scale * scale / 3.0);
  EXPECT_LT(lo, -0.99f * scale);
  EXPECT_GT(hi, 0.99f * scale);
}

TEST(InitializerTest, NormalMeanAndStddev) {
  const float stddev = 0.1f;
  const proto::Initializer init = Init(proto::Initializer::NORMAL, stddev, 9);
  const int dim = 7;  // odd: the last coordinate uses half a Box-Muller pair
  const int rows = 30000;
  double sum = 0, sum_sq = 0;
  int beyond_3sigma = 0;
  double last_sum = 0;  // the odd coordinate alone
  for (int k = 0; k < rows; ++k) {
    const std::vector<float> row = Row(init, 5, 1000000 + k, dim);
    for (float v : row) {
      ASSERT_TRUE(std::isfinite(v));
      sum += v;
      sum_sq += static_cast<double>(v) * v;
      if (std::fabs(v) > 3 * stddev) ++beyond_3sigma;
    }
    last_sum += row[dim - 1];
  }
  const double n = static_cast<double>(rows) * dim;
  const double mean = sum / n;
  const double sd = std::sqrt(sum_sq / n - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.01 * stddev);
  EXPECT_NEAR(sd, stddev, 0.01 * stddev);
  // P(|z| > 3) = 0.27%.
  EXPECT_NEAR(beyond_3sigma / n, 0.0027, 0.001);
  EXPECT_NEAR(last_sum / rows, 0.0, 0.03 * stddev);
}

TEST(InitializerTest, ConstantAndZeros) {
  EXPECT_EQ(Row(Init(proto::Initializer::CONSTANT, 0.25f, 1), 0, 5, 4),
            std::vector<float>(4, 0.25f));
  EXPECT_EQ(Row(Init(proto::Initializer::CONSTANT, -3.0f, 1), 2, 77, 3),
            std::vector<float>(3, -3.0f));
  EXPECT_EQ(Row(Init(proto::Initializer::ZEROS, 0.0f, 1), 0, 5, 4), std::vector<float>(4, 0.0f));
  // Scale is ignored by ZEROS.
  EXPECT_EQ(Row(Init(proto::Initializer::ZEROS, 9.0f, 1), 1, 6, 5), std::vector<float>(5, 0.0f));
}

}  // namespace
}  // namespace freshet
