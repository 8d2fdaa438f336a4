#include "common/key_dedup.h"

#include "common/sharding.h"

namespace freshet {

Dedup Deduplicate(const uint64_t* keys, size_t n) {
  constexpr uint32_t kEmpty = 0xffffffffu;
  Dedup d;
  // At most a quarter full: most keys find an empty slot at the first
  // probe, so the "empty?" branch is predictable; at half full it went
  // either way and its mispredictions were most of the cost (a standalone
  // A/B at -O3, uniform keys from 1M: 7.7-9.3 -> 4.3-6.4 ns a key for
  // 16,384-65,536 keys). The slots take 16 bytes a key.
  size_t cap = 16;
  while (cap < 4 * n) cap <<= 1;
  std::vector<uint32_t> slots(cap, kEmpty);
  d.uniq.reserve(n);
  d.inverse.resize(n);
  const size_t mask = cap - 1;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t k = keys[i];
    size_t p = MixKey(k) & mask;
    while (true) {
      const uint32_t u = slots[p];
      if (u == kEmpty) {
        slots[p] = static_cast<uint32_t>(d.uniq.size());
        d.inverse[i] = slots[p];
        d.uniq.push_back(k);
        break;
      }
      if (d.uniq[u] == k) {
        d.inverse[i] = u;
        d.has_dups = true;
        break;
      }
      p = (p + 1) & mask;
    }
  }
  return d;
}

void SumDuplicateRows(const Dedup& d, const float* grads, int dim, std::vector<float>* out) {
  out->assign(d.uniq.size() * dim, 0.0f);
  for (size_t i = 0; i < d.inverse.size(); ++i) {
    float* dst = out->data() + static_cast<size_t>(d.inverse[i]) * dim;
    const float* src = grads + i * dim;
    for (int j = 0; j < dim; ++j) dst[j] += src[j];
  }
}

DuplicateChains ChainDuplicates(const Dedup& d) {
  const size_t n = d.inverse.size();
  DuplicateChains c;
  c.first.resize(d.uniq.size());
  c.next.assign(n, DuplicateChains::kEnd);
  std::vector<uint32_t> last(d.uniq.size());
  uint32_t seen = 0;  // unique indices are in first-seen order
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t u = d.inverse[i];
    if (u == seen) {
      c.first[u] = i;
      ++seen;
    } else {
      c.next[last[u]] = i;
    }
    last[u] = i;
  }
  return c;
}

void SumDuplicateRow(const DuplicateChains& c, uint32_t u, const float* grads, int dim,
                     float* out) {
  uint32_t i = c.first[u];
  const float* g = grads + static_cast<size_t>(i) * dim;
  for (int k = 0; k < dim; ++k) out[k] = 0.0f + g[k];
  for (i = c.next[i]; i != DuplicateChains::kEnd; i = c.next[i]) {
    g = grads + static_cast<size_t>(i) * dim;
    for (int k = 0; k < dim; ++k) out[k] += g[k];
  }
}

}  // namespace freshet
