#include "common/half.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace freshet {
namespace {

#if defined(__x86_64__)
__attribute__((target("avx,f16c"))) void HalvesToFloatsF16c(const uint16_t* in, float* out, int n) {
  int d = 0;
  for (; d + 8 <= n; d += 8) {
    _mm256_storeu_ps(out + d,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + d))));
  }
  for (; d < n; ++d) out[d] = HalfToFloat(in[d]);
}
__attribute__((target("avx,f16c"))) void FloatsToHalvesF16c(const float* in, uint16_t* out, int n) {
  int d = 0;
  for (; d + 8 <= n; d += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + d),
                     _mm256_cvtps_ph(_mm256_loadu_ps(in + d), _MM_FROUND_TO_NEAREST_INT));
  }
  for (; d < n; ++d) out[d] = FloatToHalf(in[d]);
}
// CPUID leaf 1: ECX bit 29 F16C, bit 28 AVX, bit 27 OSXSAVE; XGETBV: the OS
// saves XMM and YMM state. (clang 14's __builtin_cpu_supports has no "f16c".)
bool DetectF16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return false;
  if ((c & (1u << 29)) == 0 || (c & (1u << 28)) == 0 || (c & (1u << 27)) == 0) return false;
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & 6u) == 6u;
}
const bool kHasF16c = DetectF16c();
#else
constexpr bool kHasF16c = false;
void HalvesToFloatsF16c(const uint16_t*, float*, int) {}
void FloatsToHalvesF16c(const float*, uint16_t*, int) {}
#endif

}  // namespace

void FloatsToHalves(const float* in, uint16_t* out, int n) {
  if (kHasF16c) {
    FloatsToHalvesF16c(in, out, n);
    return;
  }
  for (int d = 0; d < n; ++d) out[d] = FloatToHalf(in[d]);
}

void HalvesToFloats(const uint16_t* in, float* out, int n) {
  if (kHasF16c) {
    HalvesToFloatsF16c(in, out, n);
    return;
  }
  for (int d = 0; d < n; ++d) out[d] = HalfToFloat(in[d]);
}

bool HalfConversionUsesF16c() { return kHasF16c; }

}  // namespace freshet
