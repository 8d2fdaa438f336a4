#include "common/key_dedup.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>
#include <vector>

namespace freshet {
namespace {

// Keys from a small range, so most repeat and probe runs are long.
std::vector<uint64_t> RepeatingKeys(size_t n, uint64_t range, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> keys(n);
  for (uint64_t& k : keys) k = (rng() % range) * 0x9e3779b97f4a7c15ull;
  return keys;
}

TEST(KeyDedupTest, UniqueKeysInFirstSeenOrderWithTheirInverse) {
  for (uint64_t seed : {1, 2, 3}) {
    const std::vector<uint64_t> keys = RepeatingKeys(5000, 700, seed);
    const Dedup d = Deduplicate(keys.data(), keys.size());
    std::map<uint64_t, uint32_t> first;
    std::vector<uint64_t> want;
    for (uint64_t k : keys) {
      if (first.emplace(k, static_cast<uint32_t>(want.size())).second) want.push_back(k);
    }
    EXPECT_EQ(d.uniq, want);
    ASSERT_EQ(d.inverse.size(), keys.size());
    for (size_t i = 0; i < keys.size(); ++i) ASSERT_EQ(d.inverse[i], first[keys[i]]) << i;
    EXPECT_TRUE(d.has_dups);
  }
  const std::vector<uint64_t> distinct = {5, 1, 9, 0};
  const Dedup d = Deduplicate(distinct.data(), distinct.size());
  EXPECT_EQ(d.uniq, distinct);
  EXPECT_FALSE(d.has_dups);
  EXPECT_TRUE(Deduplicate(nullptr, 0).uniq.empty());
}

// SumDuplicateRows adds each unique key's rows in input order, starting
// from zero: the PS client and the local store both rely on that order, so
// their sums agree bit for bit.
TEST(KeyDedupTest, SumDuplicateRowsAddsInInputOrder) {
  const int dim = 5;
  const std::vector<uint64_t> keys = RepeatingKeys(3000, 400, 7);
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> grads(keys.size() * dim);
  for (float& v : grads) v = g(rng);
  const Dedup d = Deduplicate(keys.data(), keys.size());
  std::vector<float> got;
  SumDuplicateRows(d, grads.data(), dim, &got);
  ASSERT_EQ(got.size(), d.uniq.size() * dim);
  std::vector<float> forwards(got.size(), 0.f), backwards(got.size(), 0.f);
  for (size_t i = 0; i < keys.size(); ++i) {
    for (int j = 0; j < dim; ++j) forwards[d.inverse[i] * dim + j] += grads[i * dim + j];
  }
  for (size_t i = keys.size(); i-- > 0;) {
    for (int j = 0; j < dim; ++j) backwards[d.inverse[i] * dim + j] += grads[i * dim + j];
  }
  EXPECT_EQ(std::memcmp(got.data(), forwards.data(), sizeof(float) * got.size()), 0);
  // The order shows in the bits (floating-point addition is not
  // associative), so the check above would catch another order.
  EXPECT_NE(std::memcmp(got.data(), backwards.data(), sizeof(float) * got.size()), 0);
}

// SumDuplicateRow over ChainDuplicates gives SumDuplicateRows' rows bit for
// bit, keys with one row and keys with many alike; without duplicates each
// chain is its key's one position.
TEST(KeyDedupTest, SumDuplicateRowEqualsSumDuplicateRowsBitForBit) {
  const int dim = 5;
  const std::vector<uint64_t> keys = RepeatingKeys(3000, 400, 7);
  std::mt19937 rng(13);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> grads(keys.size() * dim);
  for (float& v : grads) v = g(rng);
  const Dedup d = Deduplicate(keys.data(), keys.size());
  ASSERT_TRUE(d.has_dups);
  std::vector<float> want;
  SumDuplicateRows(d, grads.data(), dim, &want);
  const DuplicateChains c = ChainDuplicates(d);
  std::vector<float> got(want.size(), -1.f);
  for (uint32_t u = 0; u < d.uniq.size(); ++u) {
    SumDuplicateRow(c, u, grads.data(), dim, got.data() + static_cast<size_t>(u) * dim);
  }
  EXPECT_EQ(std::memcmp(got.data(), want.data(), sizeof(float) * got.size()), 0);

  const std::vector<uint64_t> distinct = {5, 3, 9};
  const DuplicateChains one = ChainDuplicates(Deduplicate(distinct.data(), distinct.size()));
  EXPECT_EQ(one.first, (std::vector<uint32_t>{0, 1, 2}));
  EXPECT_EQ(one.next, std::vector<uint32_t>(3, DuplicateChains::kEnd));
}

}  // namespace
}  // namespace freshet
