#include "common/half.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

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

// The row converters (F16C where the CPU has it) give the scalar functions'
// results bit for bit: every half, and random float bit patterns (ties,
// subnormals, overflow to inf, NaN), for row lengths around the 8-lane step.
TEST(HalfTest, RowConversionsMatchTheScalarFunctions) {
  std::vector<uint16_t> all(65536);
  for (uint32_t h = 0; h < 65536; ++h) all[h] = static_cast<uint16_t>(h);
  std::vector<float> widened(all.size());
  HalvesToFloats(all.data(), widened.data(), static_cast<int>(all.size()));
  for (uint32_t h = 0; h < 65536; ++h) {
    const float want = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(widened[h])) << h;
    } else {
      EXPECT_EQ(std::memcmp(&widened[h], &want, 4), 0) << h;
    }
  }
  std::mt19937 rng(5);
  for (int n : {1, 7, 8, 9, 16, 17, 1000}) {
    std::vector<float> in(static_cast<size_t>(n));
    for (float& f : in) {
      const uint32_t bits = rng();
      std::memcpy(&f, &bits, 4);
    }
    in[0] = 65519.0f;             // rounds down to the largest half
    if (n > 1) in[1] = 65520.0f;  // rounds up to inf
    std::vector<uint16_t> out(static_cast<size_t>(n));
    FloatsToHalves(in.data(), out.data(), n);
    for (int i = 0; i < n; ++i) {
      const uint16_t want = FloatToHalf(in[static_cast<size_t>(i)]);
      if ((want & 0x7c00) == 0x7c00 && (want & 0x3ff) != 0) {
        EXPECT_EQ(out[static_cast<size_t>(i)] & 0x7c00, 0x7c00) << "NaN stays NaN";
        EXPECT_NE(out[static_cast<size_t>(i)] & 0x3ff, 0) << "NaN stays NaN";
      } else {
        EXPECT_EQ(out[static_cast<size_t>(i)], want) << "n " << n << " i " << i;
      }
    }
  }
  std::printf("row conversions use F16C: %s\n", HalfConversionUsesF16c() ? "yes" : "no");
}

}  // namespace
}  // namespace freshet
