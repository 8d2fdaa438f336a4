#include "common/half.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

namespace freshet {
namespace {

TEST(HalfTest, EveryHalfRoundTripsExactly) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(f)))) << h;
      continue;
    }
    EXPECT_EQ(FloatToHalf(f), h) << "half 0x" << std::hex << h << " = " << f;
  }
}

TEST(HalfTest, KnownValues) {
  EXPECT_EQ(HalfToFloat(0x3c00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xc000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));             // smallest subnormal
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie -> even
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie -> even (up)
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);                          // rounds to inf
  EXPECT_EQ(FloatToHalf(-1e9f), 0xfc00);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(std::nanf("")))));
  EXPECT_EQ(FloatToHalf(1e-10f), 0x0000);
}

TEST(HalfTest, Fp16RelativeErrorBound) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> exp(-14.0f, 15.99f);
  for (int i = 0; i < 200000; ++i) {
    float x = std::exp2(exp(rng));
    if (i & 1) x = -x;
    const float y = HalfToFloat(FloatToHalf(x));
    ASSERT_LE(std::fabs(y - x), std::ldexp(std::fabs(x), -11)) << x;
  }
  // Subnormal range: absolute error <= half the subnormal step.
  std::uniform_real_distribution<float> small(-6.1e-5f, 6.1e-5f);
  for (int i = 0; i < 100000; ++i) {
    const float x = small(rng);
    ASSERT_LE(std::fabs(HalfToFloat(FloatToHalf(x)) - x), std::ldexp(1.0f, -25)) << x;
  }
}

TEST(HalfTest, Bf16RoundTripAndErrorBound) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float f = Bf16ToFloat(static_cast<uint16_t>(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToBf16(f), b);
  }
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> exp(-120.0f, 120.0f);
  for (int i = 0; i < 200000; ++i) {
    float x = std::exp2(exp(rng));
    if (i & 1) x = -x;
    const float y = Bf16ToFloat(FloatToBf16(x));
    ASSERT_LE(std::fabs(y - x), std::ldexp(std::fabs(x), -8)) << x;
  }
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8)), FloatToBf16(1.0f));  // tie -> even
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::nanf("")))));
}

}  // namespace
}  // namespace freshet
