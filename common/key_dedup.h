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

// The input positions of each unique key, in input order, as chains:
// first[u] is unique key u's first position and next[i] the next position
// of the key at i (kEnd: none). With them a caller sums a key's rows
// wherever the sum goes (SumDuplicateRow: the PS client writes each into
// its request) without a buffer of summed rows. 12 bytes a key.
struct DuplicateChains {
  static constexpr uint32_t kEnd = UINT32_MAX;
  std::vector<uint32_t> first;  // unique index -> first input position
  std::vector<uint32_t> next;   // input position -> next of the same key
};
DuplicateChains ChainDuplicates(const Dedup& d);

// out[0..dim) = SumDuplicateRows' row u, bit for bit (0 + the first row,
// then the others added in input order).
void SumDuplicateRow(const DuplicateChains& c, uint32_t u, const float* grads, int dim, float* out);

}  // namespace freshet
