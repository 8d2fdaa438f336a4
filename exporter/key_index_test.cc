#include "exporter/key_index.h"

#include <random>
#include <unordered_map>

#include <gtest/gtest.h>

namespace freshet {
namespace {

void ExpectSame(const KeyIndex& index, const std::unordered_map<uint64_t, uint32_t>& ref) {
  ASSERT_EQ(index.size(), ref.size());
  for (const auto& [k, r] : ref) ASSERT_EQ(index.Find(k), r) << k;
  size_t seen = 0;
  index.ForEach([&](uint64_t k, uint32_t r) {
    ++seen;
    auto it = ref.find(k);
    ASSERT_TRUE(it != ref.end()) << k;
    EXPECT_EQ(it->second, r);
  });
  EXPECT_EQ(seen, ref.size());
}

TEST(KeyIndexTest, Basics) {
  KeyIndex index;
  EXPECT_TRUE(index.empty());
  EXPECT_EQ(index.Find(0), KeyIndex::kNone);
  EXPECT_EQ(index.Erase(0), KeyIndex::kNone);
  EXPECT_EQ(index.Insert(0, 7), KeyIndex::kNone);  // key 0 is an ordinary key
  EXPECT_EQ(index.Insert(0, 9), 7u);               // present: unchanged
  EXPECT_EQ(index.Find(0), 7u);
  index.Set(0, 9);
  EXPECT_EQ(index.Find(0), 9u);
  index.Set(~uint64_t{0}, 1);
  EXPECT_EQ(index.size(), 2u);
  EXPECT_EQ(index.Erase(0), 9u);
  EXPECT_FALSE(index.contains(0));
  EXPECT_TRUE(index.contains(~uint64_t{0}));
  index.Clear();
  EXPECT_EQ(index.size(), 0u);
  EXPECT_EQ(index.Find(~uint64_t{0}), KeyIndex::kNone);
}

TEST(KeyIndexTest, RandomOperationsMatchUnorderedMap) {
  std::mt19937_64 rng(7);
  KeyIndex index;
  std::unordered_map<uint64_t, uint32_t> ref;
  // A small key space, so inserts, overwrites and erases of present keys
  // are all frequent and probe runs wrap around the table.
  for (int round = 0; round < 200000; ++round) {
    const uint64_t key = rng() % 3000 * 0x10000;  // low bits all zero
    const uint32_t row = static_cast<uint32_t>(rng() % 1000000);
    switch (rng() % 4) {
      case 0: {
        auto [it, inserted] = ref.try_emplace(key, row);
        ASSERT_EQ(index.Insert(key, row), inserted ? KeyIndex::kNone : it->second);
        break;
      }
      case 1:
        ref[key] = row;
        index.Set(key, row);
        break;
      default: {
        auto it = ref.find(key);
        const uint32_t want = it == ref.end() ? KeyIndex::kNone : it->second;
        if (it != ref.end()) ref.erase(it);
        ASSERT_EQ(index.Erase(key), want);
      }
    }
    if (round % 20000 == 0) {
      ASSERT_NO_FATAL_FAILURE(ExpectSame(index, ref));
    }
  }
  ASSERT_NO_FATAL_FAILURE(ExpectSame(index, ref));
  EXPECT_LE(index.size() * 2, index.capacity());
  // Copies are independent.
  KeyIndex copy = index;
  copy.Clear();
  ASSERT_NO_FATAL_FAILURE(ExpectSame(index, ref));
}

TEST(KeyIndexTest, ReserveAvoidsRehash) {
  KeyIndex index;
  index.Reserve(1000);
  const size_t cap = index.capacity();
  EXPECT_GE(cap, 2000u);
  for (uint32_t i = 0; i < 1000; ++i) index.Insert(i, i);
  EXPECT_EQ(index.capacity(), cap);
  for (uint32_t i = 0; i < 1000; ++i) ASSERT_EQ(index.Find(i), i);
}

}  // namespace
}  // namespace freshet
