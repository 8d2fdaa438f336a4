#include "apps/model_diff/param_diff.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace freshet {
namespace internal {
namespace {

// Issue 18: std::max over |a - b| dropped NaN, so a model with NaN weights
// matched a finite one.
TEST(ParamDiffTest, NonFiniteDifferencesAreInfinite) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(ParamDiff(nan, 0.5f), INFINITY);
  EXPECT_EQ(ParamDiff(0.5f, nan), INFINITY);
  EXPECT_EQ(ParamDiff(nan, nan), INFINITY);
  EXPECT_EQ(ParamDiff(inf, 1.0f), INFINITY);
  EXPECT_EQ(ParamDiff(inf, inf), INFINITY);
  EXPECT_DOUBLE_EQ(ParamDiff(1.5f, 1.0f), 0.5);
  EXPECT_EQ(ParamDiff(2.0f, 2.0f), 0.0);

  // The NaN is neither first nor last: a max that skips NaN would see 0.25.
  const std::vector<float> a = {1.0f, nan, 3.0f, 4.0f};
  const std::vector<float> b = {1.0f, 2.0f, 3.0f, 4.25f};
  EXPECT_EQ(MaxParamDiff(a.data(), b.data(), a.size()), INFINITY);
  EXPECT_FALSE(MaxParamDiff(a.data(), b.data(), a.size()) <= 1e-5);
  const std::vector<float> c = {1.0f, 2.0f, 3.0f, 4.0f};
  EXPECT_DOUBLE_EQ(MaxParamDiff(c.data(), b.data(), c.size()), 0.25);
  EXPECT_EQ(MaxParamDiff(c.data(), b.data(), 0), 0.0);
}

}  // namespace
}  // namespace internal
}  // namespace freshet
