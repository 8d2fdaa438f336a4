#include "common/sharding.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace freshet {
namespace {

TEST(ShardingTest, MixKeyIsABijectionOnSamples) {
  std::set<uint64_t> seen;
  for (uint64_t k = 0; k < 100000; ++k) seen.insert(MixKey(k));
  EXPECT_EQ(seen.size(), 100000u);
}

// The documented mapping is a contract (checkpoints depend on it): pin a few
// values so an accidental change fails loudly.
TEST(ShardingTest, MappingIsStable) {
  EXPECT_EQ(MixKey(0), 0u);
  EXPECT_EQ(MixKey(1), 0xb456bcfc34c2cb2cULL);
  EXPECT_EQ(SlotOf(1), 0xb456u);
  EXPECT_EQ(ShardOf(1, 2), 1);
  EXPECT_EQ(ShardOf(1, 4), 2);
}

TEST(ShardingTest, SlotRangesPartitionTheSlotSpace) {
  for (int n : {1, 2, 3, 5, 7, 64, 1000}) {
    uint32_t next = 0;
    for (int s = 0; s < n; ++s) {
      auto [first, last] = SlotRange(s, n);
      EXPECT_EQ(first, next) << "n=" << n << " s=" << s;
      EXPECT_LE(first, last);
      if (first < last) {
        EXPECT_EQ(ShardOfSlot(first, n), s) << "n=" << n;
        EXPECT_EQ(ShardOfSlot(last - 1, n), s) << "n=" << n;
      }
      next = last;
    }
    EXPECT_EQ(next, kNumSlots);
  }
}

TEST(ShardingTest, ShardsAreBalancedAndIndependentOfOrder) {
  const int n = 3;
  std::map<int, int> counts;
  for (uint64_t k = 0; k < 300000; ++k) counts[ShardOf(k * 7919, n)]++;
  for (int s = 0; s < n; ++s) EXPECT_NEAR(counts[s], 100000, 3000) << "shard " << s;
  // Resharding: a key's slot is fixed, so its new shard is the one whose
  // range contains the slot.
  for (uint64_t k = 0; k < 1000; ++k) {
    const uint32_t slot = SlotOf(k);
    for (int m : {1, 2, 3, 4}) {
      auto [first, last] = SlotRange(ShardOf(k, m), m);
      EXPECT_TRUE(slot >= first && slot < last);
    }
  }
}

TEST(ShardingTest, PartitionsSpreadWithinAShard) {
  std::map<int, int> counts;
  int in_shard = 0;
  for (uint64_t k = 0; k < 400000; ++k) {
    const uint64_t h = MixKey(k);
    if (ShardOfSlot(SlotOfHash(h), 2) != 0) continue;
    ++in_shard;
    counts[PartitionOfHash(h, 16)]++;
  }
  for (int p = 0; p < 16; ++p) EXPECT_NEAR(counts[p], in_shard / 16.0, in_shard / 16.0 * 0.1);
}

}  // namespace
}  // namespace freshet
