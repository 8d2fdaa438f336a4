// 16-bit float storage for embedding values: IEEE fp16 and bfloat16.
//
// Conversions are exact inverses on representable values; float -> 16 bit
// rounds to nearest, ties to even. Error bounds for a finite float x in the
// normal range of the format: |Half(x) - x| <= 2^-11 |x| (fp16, normal range
// 2^-14 <= |x| <= 65504; below it the absolute error is <= 2^-25) and
// |Bf16(x) - x| <= 2^-8 |x| (bf16, the float32 exponent range). fp16 turns
// |x| >= 65520 into +-inf; both keep NaN a NaN and inf an inf.
//
// Rows: FloatsToHalves / HalvesToFloats convert n values with F16C (8 lanes
// per instruction, the same rounding) when the CPU has it, else with the
// scalar functions; bit for bit the same either way (half_test).
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <cstring>

namespace freshet {

inline uint16_t FloatToHalf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  uint16_t out;
  if (u >= (127u + 16) << 23) {  // >= 65536: inf, or NaN stays NaN
    out = u > (255u << 23) ? 0x7e00 : 0x7c00;
  } else if (u < (113u << 23)) {  // half subnormal or zero
    // Adding 0.5 aligns the 10 mantissa bits at the bottom; FP addition
    // rounds to nearest even for us.
    float x;
    std::memcpy(&x, &u, 4);
    x += 0.5f;
    uint32_t r;
    std::memcpy(&r, &x, 4);
    out = static_cast<uint16_t>(r - 0x3f000000u);
  } else {
    const uint32_t mant_odd = (u >> 13) & 1;
    u += (static_cast<uint32_t>(15 - 127) << 23) + 0xfff + mant_odd;  // rebias, round
    out = static_cast<uint16_t>(u >> 13);                             // 65520..65535 carry into inf
  }
  return static_cast<uint16_t>(out | (sign >> 16));
}

inline float HalfToFloat(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h & 0x7fff) << 13;
  const uint32_t exp = u & (0x7c00u << 13);
  u += static_cast<uint32_t>(127 - 15) << 23;
  float f;
  if (exp == (0x7c00u << 13)) {  // inf / NaN
    u += static_cast<uint32_t>(128 - 16) << 23;
    std::memcpy(&f, &u, 4);
  } else if (exp == 0) {  // zero / subnormal: renormalize
    u += 1u << 23;
    std::memcpy(&f, &u, 4);
    f -= 6.103515625e-05f;  // 2^-14
  } else {
    std::memcpy(&f, &u, 4);
  }
  uint32_t r;
  std::memcpy(&r, &f, 4);
  r |= static_cast<uint32_t>(h & 0x8000) << 16;
  std::memcpy(&f, &r, 4);
  return f;
}

inline uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

inline float Bf16ToFloat(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// out[i] = FloatToHalf(in[i]) / HalfToFloat(in[i]) for i < n.
void FloatsToHalves(const float* in, uint16_t* out, int n);
void HalvesToFloats(const uint16_t* in, float* out, int n);
// Whether the two above use F16C on this CPU (for benchmarks and tests).
bool HalfConversionUsesF16c();

}  // namespace freshet
