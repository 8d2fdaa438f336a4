// Feature admission, eviction (TTL, capacity) and 16-bit storage of
// EmbeddingTable (docs/TABLES.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "common/half.h"
#include "server/embedding_table.h"
#include "server/initializer.h"

namespace freshet {
namespace {

proto::TableConfig Sgd(int dim, float lr = 0.5f) {
  proto::TableConfig cfg;
  cfg.set_name("t");
  cfg.set_dim(dim);
  cfg.mutable_initializer()->set_kind(proto::Initializer::UNIFORM);
  cfg.mutable_initializer()->set_scale(0.1f);
  cfg.mutable_initializer()->set_seed(9);
  cfg.mutable_optimizer()->mutable_sgd()->set_learning_rate(lr);
  return cfg;
}

std::unique_ptr<EmbeddingTable> Make(const proto::TableConfig& cfg, int partitions) {
  auto t = EmbeddingTable::Create(0, cfg, partitions);
  EXPECT_TRUE(t.ok()) << t.status();
  return std::move(t).value();
}

void PushOne(EmbeddingTable* t, uint64_t key, float g, uint32_t version, uint32_t event_s = 0) {
  std::vector<float> grad(t->dim(), g);
  t->Push(&key, 1, grad.data(), version, event_s);
}

bool Has(const EmbeddingTable& t, uint64_t key) {
  std::vector<float> w(t.dim());
  return t.Lookup(key, w.data());
}

class AdmissionMinCountTest : public ::testing::TestWithParam<int> {};

TEST_P(AdmissionMinCountTest, RowOnlyFromTheNthPush) {
  const int n = GetParam();
  proto::TableConfig cfg = Sgd(4);
  cfg.mutable_admission()->set_min_count(n);
  cfg.mutable_admission()->set_sketch_width(4096);
  cfg.mutable_admission()->set_sketch_depth(4);
  auto t = Make(cfg, 4);
  const uint64_t key = 12345;
  for (int i = 1; i < n; ++i) {
    PushOne(t.get(), key, 1.0f, i);
    EXPECT_FALSE(Has(*t, key)) << "admitted after " << i << " of " << n << " pushes";
    std::vector<float> out(4, 7.0f);
    t->Pull(&key, 1, out.data());
    EXPECT_EQ(out, std::vector<float>(4, 0.0f)) << "held-back pulls return zeros";
  }
  PushOne(t.get(), key, 1.0f, n);  // the n-th push admits and applies
  std::vector<float> w(4), init(4);
  ASSERT_TRUE(Has(*t, key));
  ASSERT_TRUE(t->Lookup(key, w.data()));
  InitializeRow(cfg.initializer(), 0, key, init.data(), 4);
  for (int d = 0; d < 4; ++d) EXPECT_FLOAT_EQ(w[d], init[d] - 0.5f);
  const TableStats s = t->stats();
  EXPECT_EQ(s.held_back_pushes, n - 1);
  EXPECT_EQ(s.held_back_pulls, n - 1);
  EXPECT_EQ(s.rows, 1);
  EXPECT_EQ(s.admitted, n > 1 ? 1 : 0);
}
INSTANTIATE_TEST_SUITE_P(Thresholds, AdmissionMinCountTest, ::testing::Values(1, 2, 5));

TEST(AdmissionTest, ThresholdOverManyKeysAndSketchMemoryIsBounded) {
  proto::TableConfig cfg = Sgd(2);
  cfg.mutable_admission()->set_min_count(3);
  cfg.mutable_admission()->set_sketch_width(1 << 20);
  cfg.mutable_admission()->set_sketch_depth(4);
  auto t = Make(cfg, 8);
  const int64_t bytes0 = t->stats().bytes;
  // 20000 keys seen twice: none admitted (a count-min sketch never
  // under-counts, and with 1M x 4 counters false admissions are rare).
  std::vector<uint64_t> keys(20000);
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = 1000003 * i + 7;
  std::vector<float> g(keys.size() * 2, 0.1f);
  t->Push(keys.data(), keys.size(), g.data(), 1);
  t->Push(keys.data(), keys.size(), g.data(), 2);
  EXPECT_LE(t->size(), 20) << "false admissions";
  EXPECT_EQ(t->stats().bytes, bytes0) << "held-back keys must not cost memory";
  // A third sighting admits each of them.
  t->Push(keys.data(), keys.size(), g.data(), 3);
  EXPECT_EQ(t->size(), 20000);
  EXPECT_GE(t->stats().held_back_pushes, 40000 - 20);
}

// Counts age: with halve_every set, sightings spread over a long window are
// halved away and the key is never admitted; the same sightings without
// ageing admit it, and sightings close together still admit it.
TEST(AdmissionTest, HalvingAgesCountsSoRareKeysAreNotAdmitted) {
  auto run = [](uint64_t halve_every, int filler_between) {
    proto::TableConfig cfg = Sgd(2);
    cfg.mutable_admission()->set_min_count(3);
    cfg.mutable_admission()->set_sketch_width(1 << 16);
    cfg.mutable_admission()->set_sketch_depth(4);
    cfg.mutable_admission()->set_halve_every(halve_every);
    auto t = Make(cfg, 1);
    const uint64_t key = 4242;
    uint64_t filler = uint64_t{1} << 40;
    for (int sighting = 0; sighting < 3; ++sighting) {
      PushOne(t.get(), key, 0.1f, 1);
      // Other never-admitted keys, each seen once: they count towards ageing.
      for (int i = 0; i < filler_between; ++i) PushOne(t.get(), filler++, 0.1f, 1);
    }
    return std::make_pair(Has(*t, key), t->stats().sketch_halvings);
  };
  // 3 sightings, 1000 other pushes between each: without ageing admitted.
  auto never = run(0, 1000);
  EXPECT_TRUE(never.first);
  EXPECT_EQ(never.second, 0);
  // Halving every 500 counted pushes: counts 1 -> 0 (halved twice) before
  // the next sighting, so the key never reaches 3.
  auto aged = run(500, 1000);
  EXPECT_FALSE(aged.first);
  EXPECT_GE(aged.second, 4);
  // Sightings close together (no filler) are admitted despite ageing.
  auto close = run(500, 0);
  EXPECT_TRUE(close.first);
  EXPECT_EQ(close.second, 0);
}

TEST(AdmissionTest, InitializerHeldBackValue) {
  proto::TableConfig cfg = Sgd(8);
  cfg.mutable_admission()->set_min_count(2);
  cfg.mutable_admission()->set_held_back_value(proto::AdmissionConfig::INITIALIZER);
  auto t = Make(cfg, 2);
  const uint64_t key = 99;
  std::vector<float> out(8), init(8);
  t->Pull(&key, 1, out.data());
  InitializeRow(cfg.initializer(), 0, key, init.data(), 8);
  EXPECT_EQ(out, init);
  EXPECT_EQ(t->size(), 0);
}

TEST(AdmissionTest, ProbabilityAdmitsThatFractionOfPushes) {
  for (float p : {0.0f, 0.25f, 1.0f}) {
    proto::TableConfig cfg = Sgd(1);
    cfg.mutable_admission()->set_probability(p);
    auto t = Make(cfg, 4);
    std::vector<uint64_t> keys(40000);
    for (size_t i = 0; i < keys.size(); ++i) keys[i] = i * 7919 + 1;
    std::vector<float> g(keys.size(), 0.1f);
    t->Push(keys.data(), keys.size(), g.data(), 1);
    const double frac = static_cast<double>(t->size()) / keys.size();
    if (p == 0.0f) {
      EXPECT_EQ(t->size(), 40000) << "probability 0 and min_count 0 = admission off";
    } else {
      EXPECT_NEAR(frac, p, 0.015) << "p=" << p;
      EXPECT_EQ(t->stats().held_back_pushes, 40000 - t->size());
    }
  }
}

TEST(EvictionTest, TtlInEventTime) {
  proto::TableConfig cfg = Sgd(2);
  cfg.mutable_eviction()->set_ttl_s(3600);
  auto t = Make(cfg, 4);
  const uint32_t t0 = 1700000000;
  PushOne(t.get(), 1, 0.1f, 1, t0);
  PushOne(t.get(), 2, 0.1f, 2, t0 + 3000);
  PushOne(t.get(), 3, 0.1f, 3, t0 + 3600);  // key 1 is exactly at the TTL: kept
  EXPECT_EQ(t->EvictExpired(4), 0);
  EXPECT_EQ(t->event_clock(), t0 + 3600);
  PushOne(t.get(), 3, 0.1f, 5, t0 + 3601);  // now key 1 is one second past it
  t->EvictExpired(6);
  EXPECT_FALSE(Has(*t, 1));
  EXPECT_TRUE(Has(*t, 2));
  EXPECT_TRUE(Has(*t, 3));
  // An older push (a late event) does not move the clock back, and the row
  // it trained is stamped with the clock: it was just updated.
  PushOne(t.get(), 2, 0.1f, 7, t0 + 100);
  EXPECT_EQ(t->event_clock(), t0 + 3601);
  RowMeta m;
  std::vector<float> w(2);
  ASSERT_TRUE(t->Lookup(2, w.data(), nullptr, &m));
  EXPECT_EQ(m.last_update_s, t0 + 3601);
  std::vector<uint64_t> deleted;
  t->TakeDeletions(0, &deleted);
  EXPECT_EQ(deleted, std::vector<uint64_t>{1});
  EXPECT_EQ(t->stats().evicted_ttl, 1);
}

// A second pass over the same events (epochs > 1) replays event times far
// behind the clock: the rows it trains stay, and a new row it creates is
// not evicted by the next sweep.
TEST(EvictionTest, ASecondPassOverOldEventsDoesNotEvictWhatItTrains) {
  proto::TableConfig cfg = Sgd(2);
  cfg.mutable_eviction()->set_ttl_s(3600);
  auto t = Make(cfg, 4);
  const uint32_t t0 = 1700000000;
  PushOne(t.get(), 1, 0.1f, 1, t0);
  PushOne(t.get(), 2, 0.1f, 2, t0 + 86400);  // end of pass 1: key 1 expires
  EXPECT_EQ(t->EvictExpired(3), 1);
  // Pass 2 starts over at t0.
  PushOne(t.get(), 1, 0.1f, 4, t0);      // recreated
  PushOne(t.get(), 3, 0.1f, 5, t0 + 1);  // new
  EXPECT_EQ(t->EvictExpired(6), 0);
  EXPECT_TRUE(Has(*t, 1));
  EXPECT_TRUE(Has(*t, 2));
  EXPECT_TRUE(Has(*t, 3));
  EXPECT_EQ(t->event_clock(), t0 + 86400);
}

TEST(EvictionTest, PushesSweepExpiredRowsWithoutAnExplicitCall) {
  proto::TableConfig cfg = Sgd(2);
  cfg.mutable_eviction()->set_ttl_s(60);
  auto t = Make(cfg, 4);
  std::vector<uint64_t> old_keys(5000);
  for (size_t i = 0; i < old_keys.size(); ++i) old_keys[i] = i + 1;
  std::vector<float> g(old_keys.size() * 2, 0.1f);
  t->Push(old_keys.data(), old_keys.size(), g.data(), 1, 1000);
  EXPECT_EQ(t->size(), 5000);
  // Fresh traffic an hour later; the incremental sweep removes old rows.
  for (uint32_t v = 2; v < 40; ++v) {
    std::vector<uint64_t> fresh(200);
    for (size_t i = 0; i < fresh.size(); ++i) fresh[i] = 1000000 + (i % 100);
    std::vector<float> fg(fresh.size() * 2, 0.1f);
    t->Push(fresh.data(), fresh.size(), fg.data(), v, 1000 + 3600);
  }
  EXPECT_EQ(t->size(), 100);
  EXPECT_EQ(t->stats().evicted_ttl, 5000);
}

TEST(EvictionTest, RestoredRowsWithoutEventTimeAreNotExpiredAtOnce) {
  proto::TableConfig cfg = Sgd(1);
  cfg.mutable_eviction()->set_ttl_s(10);
  auto t = Make(cfg, 1);
  PushOne(t.get(), 5, 0.1f, 1, 5000);
  const float w = 1.0f;
  t->Upsert(6, &w, nullptr, RowMeta{3, 1, 0, 0});  // checkpoints carry no time
  PushOne(t.get(), 5, 0.1f, 2, 5005);
  EXPECT_EQ(t->EvictExpired(3), 0);
  EXPECT_TRUE(Has(*t, 6));
  PushOne(t.get(), 5, 0.1f, 4, 5011);  // its sweep evicts row 6
  t->EvictExpired(5);
  EXPECT_FALSE(Has(*t, 6));
  EXPECT_TRUE(Has(*t, 5));
  EXPECT_EQ(t->stats().evicted_ttl, 1);
}

class CapacityTest : public ::testing::TestWithParam<proto::EvictionConfig::Policy> {};

TEST_P(CapacityTest, NeverExceedsMaxRowsAndKeepsHotKeys) {
  proto::TableConfig cfg = Sgd(4);
  cfg.mutable_eviction()->set_max_rows(1000);
  cfg.mutable_eviction()->set_policy(GetParam());
  auto t = Make(cfg, 8);
  std::mt19937_64 rng(1);
  const uint64_t hot = 424242;
  // Batches well below the capacity (as in training): sampled LRU then
  // never picks a row of the current batch.
  std::vector<uint64_t> keys(64);
  std::vector<float> g(keys.size() * 4, 0.01f), out(keys.size() * 4);
  int64_t max_size = 0;
  for (uint32_t step = 1; step <= 3200; ++step) {  // ~200K distinct keys
    for (auto& k : keys) k = rng() | 1ull << 63;
    keys[0] = hot;
    t->Pull(keys.data(), keys.size(), out.data(), step);
    t->Push(keys.data(), keys.size(), g.data(), step);
    max_size = std::max(max_size, t->size());
    ASSERT_LE(t->size(), 1000) << "step " << step;
  }
  EXPECT_EQ(max_size, 1000);
  EXPECT_TRUE(Has(*t, hot)) << "the key touched every step must survive";
  const TableStats s = t->stats();
  // Every distinct key got a row at least once (a row pulled and evicted
  // before its push is created again, so this is a lower bound).
  EXPECT_GE(s.evicted_capacity, 3200 * 63 + 1 - 1000);
  // Memory follows the bound: chunks of 4096 rows, at most 2 per partition,
  // plus the deletion log (16 bytes a deletion, vector growth up to 2x)
  // until the exporter takes it.
  EXPECT_LE(s.bytes, 8 * 2 * 4096 * static_cast<int64_t>(t->RowStride()) + (1 << 20) +
                         32 * s.evicted_capacity);
  // Every row left is consistent (index and arena agree after the churn).
  std::vector<uint64_t> visited;
  t->ForEach(
      [&](uint64_t key, const float*, const float*, const RowMeta&) { visited.push_back(key); });
  EXPECT_EQ(static_cast<int64_t>(visited.size()), t->size());
  EXPECT_EQ(std::set<uint64_t>(visited.begin(), visited.end()).size(), visited.size());
  for (uint64_t key : visited) EXPECT_TRUE(Has(*t, key)) << key;
  std::vector<uint64_t> deleted;
  t->TakeDeletions(0, &deleted);
  // Only rows that were pushed are logged (pulled-only rows were never
  // exported); each random key is pushed once, so at least the distinct
  // pushed keys minus the survivors were deleted.
  EXPECT_LE(static_cast<int64_t>(deleted.size()), s.evicted_capacity);
  EXPECT_GE(static_cast<int64_t>(deleted.size()), 3200 * 63 - 1000);
  for (uint64_t k : deleted) ASSERT_NE(k, hot);
}
INSTANTIATE_TEST_SUITE_P(Policies, CapacityTest,
                         ::testing::Values(proto::EvictionConfig::LRU, proto::EvictionConfig::LFU));

// A workload on which LRU and LFU evict different rows. One partition of 64
// rows: 32 "old but frequent" keys pushed 20 times each, then 32 "recent
// but rare" keys pushed once. 16 new keys then each evict one row. LRU
// picks the least recently used of its 8 samples: an old-frequent row
// whenever one is sampled (all of them are older than every rare row), so
// about 16 old-frequent rows go. LFU picks the fewest pushes: a rare (or new)
// row whenever one is sampled, so the old-frequent rows stay. A table that
// ignored the policy (or swapped the two) fails one of the two cases.
std::set<uint64_t> SurvivorsOfPolicyWorkload(proto::EvictionConfig::Policy policy,
                                             int* frequent_left, int* rare_left) {
  proto::TableConfig cfg = Sgd(2);
  cfg.mutable_eviction()->set_max_rows(64);
  cfg.mutable_eviction()->set_policy(policy);
  auto t = Make(cfg, 1);
  uint32_t version = 1;
  for (int round = 0; round < 20; ++round) {
    for (uint64_t k = 1000; k < 1032; ++k) PushOne(t.get(), k, 0.01f, version++);
  }
  for (uint64_t k = 2000; k < 2032; ++k) PushOne(t.get(), k, 0.01f, version++);
  EXPECT_EQ(t->size(), 64);
  EXPECT_EQ(t->stats().evicted_capacity, 0);
  for (uint64_t k = 3000; k < 3016; ++k) PushOne(t.get(), k, 0.01f, version++);
  EXPECT_EQ(t->size(), 64);
  EXPECT_EQ(t->stats().evicted_capacity, 16);
  *frequent_left = *rare_left = 0;
  std::set<uint64_t> left;
  t->ForEach([&](uint64_t key, const float*, const float*, const RowMeta&) {
    left.insert(key);
    if (key >= 1000 && key < 1032) ++*frequent_left;
    if (key >= 2000 && key < 2032) ++*rare_left;
  });
  return left;
}

TEST(EvictionTest, LruAndLfuEvictDifferentRows) {
  int lru_frequent = 0, lru_rare = 0, lfu_frequent = 0, lfu_rare = 0;
  const std::set<uint64_t> lru =
      SurvivorsOfPolicyWorkload(proto::EvictionConfig::LRU, &lru_frequent, &lru_rare);
  const std::set<uint64_t> lfu =
      SurvivorsOfPolicyWorkload(proto::EvictionConfig::LFU, &lfu_frequent, &lfu_rare);
  // LRU: the old rows go, however often they were pushed (16 evictions; an
  // old row is missed only when all 8 samples are recent: p = 2^-8 each).
  EXPECT_LE(lru_frequent, 32 - 14) << "LRU kept old rows";
  EXPECT_GE(lru_rare, 30) << "LRU evicted recent rows";
  // LFU: the frequent rows stay (missed only when all 8 samples are
  // frequent rows), the rare ones go.
  EXPECT_GE(lfu_frequent, 31) << "LFU evicted frequently pushed rows";
  EXPECT_LE(lfu_rare, 32 - 14) << "LFU kept rarely pushed rows";
  EXPECT_NE(lru, lfu);
}

TEST(EvictionTest, MaxRowsBelowPartitionsIsRejected) {
  proto::TableConfig cfg = Sgd(4);
  cfg.mutable_eviction()->set_max_rows(3);
  EXPECT_FALSE(EmbeddingTable::Create(0, cfg, 4).ok());
  EXPECT_TRUE(EmbeddingTable::Create(0, cfg, 3).ok());
}

TEST(EvictionTest, TakeDeletionsForgetsAcknowledgedOnes) {
  proto::TableConfig cfg = Sgd(1);
  cfg.mutable_eviction()->set_max_rows(1);
  auto t = Make(cfg, 1);
  PushOne(t.get(), 1, 0.1f, 1);
  PushOne(t.get(), 2, 0.1f, 2);  // evicts 1 (logged with version 2)
  PushOne(t.get(), 3, 0.1f, 3);  // evicts 2 (version 3)
  std::vector<uint64_t> d;
  t->TakeDeletions(2, &d);  // the exporter has everything up to version 2
  EXPECT_EQ(d, std::vector<uint64_t>{2});
  d.clear();
  t->TakeDeletions(0, &d);
  EXPECT_EQ(d, std::vector<uint64_t>{2}) << "deletion of key 1 was forgotten";
  // Rows that were only pulled were never exported: no deletion for them.
  float out;
  uint64_t k = 50;
  t->Pull(&k, 1, &out, 4);  // evicts 3 (pushed: logged)
  k = 51;
  t->Pull(&k, 1, &out, 5);  // evicts 50 (pulled only: not logged)
  d.clear();
  t->TakeDeletions(3, &d);
  EXPECT_EQ(d, std::vector<uint64_t>{3});
}

class StorageTest : public ::testing::TestWithParam<proto::TableConfig::Storage> {};

TEST_P(StorageTest, SixteenBitWeightsTrackFp32WithinTheRoundingBound) {
  const auto storage = GetParam();
  proto::TableConfig cfg = Sgd(16, 0.05f);
  auto ref = Make(cfg, 4);
  cfg.set_storage(storage);
  auto t = Make(cfg, 4);
  EXPECT_EQ(t->RowStride(), 8u + 8u + 16u * 2u);  // SGD has no state
  std::vector<uint64_t> keys(64);
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = i * 31 + 5;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> g(keys.size() * 16), a(keys.size() * 16), b(keys.size() * 16);
  for (uint32_t step = 1; step <= 20; ++step) {
    for (float& x : g) x = nd(rng);
    ref->Push(keys.data(), keys.size(), g.data(), step);
    t->Push(keys.data(), keys.size(), g.data(), step);
  }
  ref->Pull(keys.data(), keys.size(), a.data());
  t->Pull(keys.data(), keys.size(), b.data());
  // Each of the 21 writes rounds once: relative error <= ulp/2 each, and
  // the values stay O(1), so the drift stays within ~21 half-ulps.
  const double unit =
      storage == proto::TableConfig::FP16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
  double max_err = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_err = std::max(max_err, std::fabs(a[i] - b[i]) / (std::fabs(a[i]) + 1.0));
  }
  EXPECT_LE(max_err, 21 * 2 * unit);
  EXPECT_GT(max_err, 0) << "values must actually be stored in 16 bits";
  // Every stored value is exactly representable in the 16-bit format.
  t->ForEach([&](uint64_t, const float* w, const float*, const RowMeta&) {
    for (int d = 0; d < 16; ++d) {
      ASSERT_EQ(w[d], storage == proto::TableConfig::FP16 ? HalfToFloat(FloatToHalf(w[d]))
                                                          : Bf16ToFloat(FloatToBf16(w[d])));
    }
  });
}
INSTANTIATE_TEST_SUITE_P(Formats, StorageTest,
                         ::testing::Values(proto::TableConfig::FP16, proto::TableConfig::BF16));

TEST(StorageTest, AdagradStateStaysFp32) {
  proto::TableConfig cfg;
  cfg.set_name("ada");
  cfg.set_dim(16);
  cfg.mutable_optimizer()->mutable_adagrad()->set_learning_rate(0.1f);
  cfg.mutable_optimizer()->mutable_adagrad()->set_initial_accumulator(0.1f);
  cfg.mutable_optimizer()->mutable_adagrad()->set_epsilon(1e-8f);
  cfg.set_storage(proto::TableConfig::FP16);
  auto t = Make(cfg, 2);
  EXPECT_EQ(t->RowStride(), 8u + 8u + 32u + 64u);  // 112 vs 144 in fp32
  const uint64_t key = 3;
  std::vector<float> w(16), st(16);
  PushOne(t.get(), key, 1e-3f, 1);
  ASSERT_TRUE(t->Lookup(key, w.data(), st.data()));
  // 0.1 + 1e-6 is not representable in fp16 (ulp at 0.1 is 2^-14 ~ 6e-5).
  EXPECT_FLOAT_EQ(st[0], 0.1f + 1e-6f);
}

}  // namespace
}  // namespace freshet

namespace freshet {
namespace {

// The table may convert with F16C; it must round exactly like common/half.h.
TEST(StorageTest, TableRoundingMatchesScalarConversion) {
  proto::TableConfig cfg = Sgd(19);  // 2 full 8-lane blocks and a tail
  cfg.set_storage(proto::TableConfig::FP16);
  auto t = Make(cfg, 1);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> e(-20.0f, 17.0f);
  std::vector<float> w(19), got(19);
  for (uint64_t key = 1; key <= 500; ++key) {
    for (float& x : w) x = std::exp2(e(rng)) * ((rng() & 1) ? 1 : -1);
    t->Upsert(key, w.data(), nullptr, RowMeta());
    ASSERT_TRUE(t->Lookup(key, got.data()));
    for (int d = 0; d < 19; ++d) {
      ASSERT_EQ(got[d], HalfToFloat(FloatToHalf(w[d]))) << w[d];
    }
  }
}

}  // namespace
}  // namespace freshet
