// Key deduplication shared by the PS client and the local sparse store, so
// both sum duplicate gradients in exactly the same order.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace freshet {

// Keys mapped to dense unique indices in first-seen order.
struct Dedup {
  std::vector<uint64_t> uniq;
  std::vector<uint32_t> inverse;  // input position -> unique index
  bool has_dups = false;
};

Dedup Deduplicate(const uint64_t* keys, size_t n);

// Sums the gradient rows of duplicate keys: out[u*dim..] = sum of
// grads[i*dim..] over i with d.inverse[i] == u, added in input order.
void SumDuplicateRows(const Dedup& d, const float* grads, int dim, std::vector<float>* out);

}  // namespace freshet
