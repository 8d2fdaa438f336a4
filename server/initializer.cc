#include "server/initializer.h"

#include <cmath>

namespace freshet {
namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// splitmix64's output function applied to x + golden ratio: element i of the
// stream seeded by s is SplitMix64(s + i * kGolden).
inline uint64_t SplitMix64(uint64_t x) {
  uint64_t z = x + kGolden;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The row's stream seed: every input goes through a full mix, so nearby
// seeds, table ids or keys give unrelated streams.
inline uint64_t RowSeed(uint64_t seed, int table_id, uint64_t key) {
  uint64_t s = SplitMix64(seed);
  s = SplitMix64(s ^ static_cast<uint64_t>(static_cast<uint32_t>(table_id)));
  return SplitMix64(s ^ key);
}

// Counter-based draw: word i of the row's stream.
inline uint64_t Draw(uint64_t row_seed, uint64_t i) { return SplitMix64(row_seed + i * kGolden); }

}  // namespace

void InitializeRow(const proto::Initializer& init, int table_id, uint64_t key, float* out,
                   int dim) {
  const float scale = init.scale();
  switch (init.kind()) {
    case proto::Initializer::UNIFORM: {
      const uint64_t s = RowSeed(init.seed(), table_id, key);
      for (int i = 0; i < dim; ++i) {
        // 24 random bits -> u in [0, 1); 2u - 1 is exact in float and lies
        // in [-1, 1), so the result stays within [-scale, scale].
        const float u = static_cast<float>(Draw(s, i) >> 40) * (1.0f / 16777216.0f);
        out[i] = scale * (2.0f * u - 1.0f);
      }
      return;
    }
    case proto::Initializer::NORMAL: {
      const uint64_t s = RowSeed(init.seed(), table_id, key);
      constexpr double kTwoPi = 6.283185307179586476925286766559;
      constexpr double k2Pow53 = 1.0 / 9007199254740992.0;
      for (int i = 0; i < dim; i += 2) {
        // Box-Muller on one pair of uniforms; u1 in (0, 1] keeps log finite.
        const double u1 = static_cast<double>((Draw(s, i) >> 11) + 1) * k2Pow53;
        const double u2 = static_cast<double>(Draw(s, i + 1) >> 11) * k2Pow53;
        const double r = std::sqrt(-2.0 * std::log(u1));
        out[i] = static_cast<float>(scale * r * std::cos(kTwoPi * u2));
        if (i + 1 < dim) out[i + 1] = static_cast<float>(scale * r * std::sin(kTwoPi * u2));
      }
      return;
    }
    case proto::Initializer::CONSTANT:
      for (int i = 0; i < dim; ++i) out[i] = scale;
      return;
    case proto::Initializer::ZEROS:
    default:  // Unknown enum values (open proto3 enum) behave like ZEROS.
      for (int i = 0; i < dim; ++i) out[i] = 0.0f;
      return;
  }
}

}  // namespace freshet
