#include "server/embedding_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "server/initializer.h"

namespace freshet {
namespace {

proto::TableConfig SgdConfig(int dim, float lr, proto::Initializer::Kind init, float scale) {
  proto::TableConfig cfg;
  cfg.set_name("t");
  cfg.set_dim(dim);
  cfg.mutable_initializer()->set_kind(init);
  cfg.mutable_initializer()->set_scale(scale);
  cfg.mutable_initializer()->set_seed(17);
  cfg.mutable_optimizer()->mutable_sgd()->set_learning_rate(lr);
  return cfg;
}

proto::TableConfig AdagradConfig(int dim) {
  proto::TableConfig cfg;
  cfg.set_name("ada");
  cfg.set_dim(dim);
  cfg.mutable_initializer()->set_kind(proto::Initializer::UNIFORM);
  cfg.mutable_initializer()->set_scale(0.1f);
  cfg.mutable_initializer()->set_seed(5);
  auto* a = cfg.mutable_optimizer()->mutable_adagrad();
  a->set_learning_rate(0.05f);
  a->set_initial_accumulator(0.1f);
  a->set_epsilon(1e-8f);
  return cfg;
}

proto::TableConfig AdamConfig(int dim) {
  proto::TableConfig cfg;
  cfg.set_name("adam");
  cfg.set_dim(dim);
  cfg.mutable_initializer()->set_kind(proto::Initializer::NORMAL);
  cfg.mutable_initializer()->set_scale(0.2f);
  cfg.mutable_initializer()->set_seed(11);
  auto* a = cfg.mutable_optimizer()->mutable_adam();
  a->set_learning_rate(0.01f);
  a->set_beta1(0.9f);
  a->set_beta2(0.999f);
  a->set_epsilon(1e-8f);
  return cfg;
}

std::unique_ptr<EmbeddingTable> MakeTable(int table_id, const proto::TableConfig& cfg,
                                          int partitions) {
  auto t = EmbeddingTable::Create(table_id, cfg, partitions);
  EXPECT_TRUE(t.ok()) << t.status();
  return std::move(t).value();
}

std::vector<float> Expected(const proto::TableConfig& cfg, int table_id, uint64_t key) {
  std::vector<float> v(cfg.dim());
  InitializeRow(cfg.initializer(), table_id, key, v.data(), static_cast<int>(cfg.dim()));
  return v;
}

bool BitEqual(const float* a, const float* b, size_t n) {
  return std::memcmp(a, b, n * sizeof(float)) == 0;
}

TEST(EmbeddingTableTest, CreateRejectsBadArguments) {
  auto t = EmbeddingTable::Create(0, SgdConfig(4, 1, proto::Initializer::ZEROS, 0), 0);
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  proto::TableConfig no_opt = SgdConfig(4, 1, proto::Initializer::ZEROS, 0);
  no_opt.clear_optimizer();
  t = EmbeddingTable::Create(0, no_opt, 4);
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
}

TEST(EmbeddingTableTest, Shape) {
  auto t = MakeTable(3, AdamConfig(10), 4);
  EXPECT_EQ(t->table_id(), 3);
  EXPECT_EQ(t->dim(), 10);
  EXPECT_EQ(t->state_dim(), 20);
  EXPECT_EQ(t->RowStride(), 8u + 8u + 30u * 4u);  // key, meta (no eviction), weights + state
  EXPECT_EQ(t->config().name(), "adam");
  // Odd float counts are padded so every record stays 8-byte aligned.
  EXPECT_EQ(MakeTable(0, SgdConfig(3, 1, proto::Initializer::ZEROS, 0), 1)->RowStride(), 32u);
  EXPECT_EQ(t->size(), 0);
  const TableStats s = t->stats();
  EXPECT_EQ(s.rows, 0);
  EXPECT_GT(s.bytes, 0);
}

// Issue 16 memory: a table without eviction stores 8 bytes of metadata per
// record (update count, version); with a TTL or max_rows, 16 (plus the last
// update time and access tick), and Lookup reports them.
TEST(EmbeddingTableTest, RecordsStoreEvictionMetadataOnlyWhenTheTableEvicts) {
  EXPECT_EQ(MakeTable(0, AdagradConfig(16), 4)->RowStride(), 8u + 8u + 2 * 16 * 4u);
  proto::TableConfig ttl = AdagradConfig(16);
  ttl.mutable_eviction()->set_ttl_s(60);
  auto t = MakeTable(0, ttl, 4);
  EXPECT_EQ(t->RowStride(), 8u + 16u + 2 * 16 * 4u);
  const uint64_t key = 42;
  std::vector<float> g(16, 0.5f), w(16);
  t->Push(&key, 1, g.data(), /*version=*/3, /*event_time_s=*/1000);
  RowMeta m;
  ASSERT_TRUE(t->Lookup(key, w.data(), nullptr, &m));
  EXPECT_EQ(m.update_count, 1u);
  EXPECT_EQ(m.version, 3u);
  EXPECT_EQ(m.last_update_s, 1000u);
  auto plain = MakeTable(0, AdagradConfig(16), 4);
  plain->Push(&key, 1, g.data(), 3, 1000);
  ASSERT_TRUE(plain->Lookup(key, w.data(), nullptr, &m));
  EXPECT_EQ(m.update_count, 1u);
  EXPECT_EQ(m.version, 3u);
  EXPECT_EQ(m.last_update_s, 0u);  // not stored without a TTL
}

// 4-byte index slots keep 6 hash bits: growing the index rehashes the rows'
// keys and erasing shifts slots back by their keys' homes (read from the
// rows). Interleave both over one partition and check every row stays
// reachable with its own values.
TEST(EmbeddingTableTest, IndexGrowthAndErasureKeepEveryRowReachable) {
  auto t = MakeTable(1, AdagradConfig(2), 1);
  std::vector<uint64_t> keys;
  std::vector<float> out(2), want(2);
  for (uint64_t k = 0; k < 20000; ++k) keys.push_back(k * 0x9E3779B97F4A7C15ull + 7);
  std::vector<float> g(2 * keys.size());
  for (size_t i = 0; i < g.size(); ++i) g[i] = 0.001f * static_cast<float>(i % 97);
  t->Push(keys.data(), keys.size(), g.data(), 1);
  // Erase every third key, then add as many new ones (more growth).
  for (size_t i = 0; i < keys.size(); i += 3) ASSERT_TRUE(t->Erase(keys[i]));
  std::vector<uint64_t> more;
  for (uint64_t k = 0; k < 7000; ++k) more.push_back(k * 0xC2B2AE3D27D4EB4Full + 11);
  std::vector<float> pulled(2 * more.size());
  t->Pull(more.data(), more.size(), pulled.data());
  EXPECT_EQ(t->size(), static_cast<int64_t>(keys.size() - (keys.size() + 2) / 3 + more.size()));
  for (size_t i = 0; i < keys.size(); ++i) {
    const bool present = t->Lookup(keys[i], out.data());
    ASSERT_EQ(present, i % 3 != 0) << i;
    if (!present) continue;
    // One Adagrad step from the key's deterministic initial row.
    auto fresh = MakeTable(1, AdagradConfig(2), 1);
    fresh->Push(&keys[i], 1, &g[2 * i], 1);
    ASSERT_TRUE(fresh->Lookup(keys[i], want.data()));
    ASSERT_EQ(out, want) << i;
  }
  for (size_t i = 0; i < more.size(); ++i) {
    ASSERT_TRUE(t->Lookup(more[i], out.data())) << i;
    ASSERT_EQ(out[0], pulled[2 * i]);
    ASSERT_EQ(out[1], pulled[2 * i + 1]);
  }
}

TEST(EmbeddingTableTest, PullCreatesDeterministicInitialRows) {
  const proto::TableConfig cfg = AdamConfig(9);
  auto t = MakeTable(7, cfg, 5);
  const std::vector<uint64_t> keys = {1, 99, 0, ~0ull, 123456789012345ull, 99};
  std::vector<float> out(keys.size() * 9, -1);
  t->Pull(keys.data(), keys.size(), out.data());
  EXPECT_EQ(t->size(), 5);  // 99 is pulled twice
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_TRUE(BitEqual(&out[i * 9], Expected(cfg, 7, keys[i]).data(), 9)) << "key " << keys[i];
  }
  // Where a key lives (number of partitions, which worker came first) does
  // not change its initial value.
  auto other = MakeTable(7, cfg, 1);
  std::vector<float> out2(keys.size() * 9);
  const std::vector<uint64_t> reversed(keys.rbegin(), keys.rend());
  other->Pull(reversed.data(), reversed.size(), out2.data());
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_TRUE(BitEqual(&out2[(keys.size() - 1 - i) * 9], &out[i * 9], 9));
  }
  // New rows start with the optimizer's initial state and zero meta.
  std::vector<float> w(9), state(18, -1);
  RowMeta meta;
  meta.update_count = 5;
  ASSERT_TRUE(t->Lookup(99, w.data(), state.data(), &meta));
  EXPECT_TRUE(BitEqual(w.data(), Expected(cfg, 7, 99).data(), 9));
  EXPECT_EQ(state, std::vector<float>(18, 0.0f));
  EXPECT_EQ(meta.update_count, 0u);
  EXPECT_EQ(meta.version, 0u);
  EXPECT_EQ(t->stats().keys_pulled, 6);
}

TEST(EmbeddingTableTest, LookupOfMissingKeyCreatesNothing) {
  auto t = MakeTable(0, AdagradConfig(4), 3);
  std::vector<float> w(4);
  EXPECT_FALSE(t->Lookup(42, w.data()));
  EXPECT_EQ(t->size(), 0);
  const uint64_t key = 42;
  t->Pull(&key, 1, w.data());
  std::vector<float> w2(4);
  EXPECT_TRUE(t->Lookup(42, w2.data()));
  EXPECT_EQ(w, w2);
  EXPECT_FALSE(t->Lookup(43, w2.data()));
}

// 200k keys: a partition's index starts at 16 slots, so it doubles many times.
class GrowthTest : public ::testing::TestWithParam<int> {};

TEST_P(GrowthTest, ManyIndexDoublingsKeepEveryRow) {
  const proto::TableConfig cfg = SgdConfig(4, 0.5f, proto::Initializer::UNIFORM, 1.0f);
  auto t = MakeTable(2, cfg, GetParam());
  const size_t n = 200000;
  const size_t batch = 4096;
  std::vector<uint64_t> keys(batch);
  std::vector<float> out(batch * 4);
  for (size_t base = 0; base < n; base += batch) {
    const size_t m = std::min(batch, n - base);
    // Strided keys with structure in the low and high bits.
    for (size_t i = 0; i < m; ++i) keys[i] = (base + i) * 0x100000001ull;
    t->Pull(keys.data(), m, out.data());
  }
  EXPECT_EQ(t->size(), static_cast<int64_t>(n));
  EXPECT_EQ(t->stats().rows, static_cast<int64_t>(n));
  std::vector<float> w(4);
  for (size_t k = 0; k < n; ++k) {
    const uint64_t key = k * 0x100000001ull;
    ASSERT_TRUE(t->Lookup(key, w.data())) << k;
    ASSERT_TRUE(BitEqual(w.data(), Expected(cfg, 2, key).data(), 4)) << k;
  }
  EXPECT_FALSE(t->Lookup(n * 0x100000001ull, w.data()));
  EXPECT_FALSE(t->Lookup(1, w.data()));
  // Pulling again creates nothing.
  for (size_t i = 0; i < batch; ++i) keys[i] = i * 0x100000001ull;
  t->Pull(keys.data(), batch, out.data());
  EXPECT_EQ(t->size(), static_cast<int64_t>(n));
}

INSTANTIATE_TEST_SUITE_P(Partitions, GrowthTest, ::testing::Values(1, 3, 16));

TEST(EmbeddingTableTest, PushAppliesOptimizerAndRecordsMeta) {
  const proto::TableConfig cfg = AdagradConfig(3);
  auto t = MakeTable(4, cfg, 4);
  auto opt_or = Optimizer::Create(cfg.optimizer());
  ASSERT_TRUE(opt_or.ok());
  const Optimizer& opt = **opt_or;

  // Reference: row 10 from its initial value, two pushes.
  std::vector<float> w = Expected(cfg, 4, 10);
  std::vector<float> a(3);
  opt.InitState(a.data(), 3);
  const std::vector<float> g1 = {0.5f, -1.0f, 2.0f};
  const std::vector<float> g2 = {-0.25f, 0.0f, 1.0f};
  opt.Apply(w.data(), a.data(), g1.data(), 3, 0);
  opt.Apply(w.data(), a.data(), g2.data(), 3, 1);

  const uint64_t key = 10;
  t->Push(&key, 1, g1.data(), /*version=*/7);  // creates the row
  t->Push(&key, 1, g2.data(), /*version=*/9);
  std::vector<float> got(3), got_state(3);
  RowMeta meta;
  ASSERT_TRUE(t->Lookup(10, got.data(), got_state.data(), &meta));
  EXPECT_TRUE(BitEqual(got.data(), w.data(), 3));
  EXPECT_TRUE(BitEqual(got_state.data(), a.data(), 3));
  EXPECT_EQ(meta.update_count, 2u);
  EXPECT_EQ(meta.version, 9u);
  // Pull returns the updated weights.
  std::vector<float> pulled(3);
  t->Pull(&key, 1, pulled.data());
  EXPECT_TRUE(BitEqual(pulled.data(), w.data(), 3));
  const TableStats s = t->stats();
  EXPECT_EQ(s.keys_pushed, 2);
  EXPECT_EQ(s.keys_pulled, 1);
}

TEST(EmbeddingTableTest, DuplicateKeysInOnePushApplyInOrder) {
  // Adam is order-sensitive and uses the update count, so one push of
  // [a, b, a, c, a] must equal pushing the rows one call at a time.
  const proto::TableConfig cfg = AdamConfig(5);
  auto batched = MakeTable(1, cfg, 3);
  auto serial = MakeTable(1, cfg, 3);
  const std::vector<uint64_t> keys = {100, 200, 100, 300, 100};
  std::vector<float> grads(keys.size() * 5);
  for (size_t i = 0; i < grads.size(); ++i) grads[i] = std::sin(static_cast<float>(i) + 0.5f);
  batched->Push(keys.data(), keys.size(), grads.data(), 3);
  for (size_t i = 0; i < keys.size(); ++i) serial->Push(&keys[i], 1, &grads[i * 5], 3);
  for (uint64_t key : {100, 200, 300}) {
    std::vector<float> w1(5), w2(5), s1(10), s2(10);
    RowMeta m1, m2;
    ASSERT_TRUE(batched->Lookup(key, w1.data(), s1.data(), &m1));
    ASSERT_TRUE(serial->Lookup(key, w2.data(), s2.data(), &m2));
    EXPECT_TRUE(BitEqual(w1.data(), w2.data(), 5)) << key;
    EXPECT_TRUE(BitEqual(s1.data(), s2.data(), 10)) << key;
    EXPECT_EQ(m1.update_count, key == 100 ? 3u : 1u);
    EXPECT_EQ(m1.update_count, m2.update_count);
    EXPECT_EQ(m1.version, 3u);
  }
}

TEST(EmbeddingTableTest, UpsertForEachAndSize) {
  const proto::TableConfig cfg = AdagradConfig(2);
  auto t = MakeTable(0, cfg, 4);
  std::map<uint64_t, std::vector<float>> want;
  for (uint64_t k = 0; k < 1000; ++k) {
    const std::vector<float> w = {static_cast<float>(k), -static_cast<float>(k)};
    const std::vector<float> a = {static_cast<float>(k) + 0.5f, 1.0f};
    RowMeta meta;
    meta.update_count = static_cast<uint32_t>(k);
    meta.version = static_cast<uint32_t>(k * 2);
    // Even keys restore state; odd keys get the optimizer's initial state.
    t->Upsert(k * 7919, w.data(), k % 2 == 0 ? a.data() : nullptr, meta);
    want[k * 7919] = w;
  }
  EXPECT_EQ(t->size(), 1000);
  // Overwrite one row.
  const std::vector<float> w5 = {9.0f, 9.0f};
  t->Upsert(5 * 7919, w5.data(), nullptr, RowMeta{1, 2});
  want[5 * 7919] = w5;
  EXPECT_EQ(t->size(), 1000);

  std::map<uint64_t, int> seen;
  t->ForEach([&](uint64_t key, const float* w, const float* state, const RowMeta& meta) {
    ++seen[key];
    ASSERT_TRUE(want.count(key)) << key;
    EXPECT_EQ(std::vector<float>(w, w + 2), want[key]);
    const uint64_t k = key / 7919;
    if (k == 5) {
      EXPECT_EQ(meta.update_count, 1u);
      EXPECT_EQ(meta.version, 2u);
      EXPECT_EQ(state[0], 0.1f);
    } else {
      EXPECT_EQ(meta.update_count, k);
      EXPECT_EQ(meta.version, k * 2);
      EXPECT_EQ(state[0], k % 2 == 0 ? static_cast<float>(k) + 0.5f : 0.1f);
      EXPECT_EQ(state[1], k % 2 == 0 ? 1.0f : 0.1f);
    }
  });
  EXPECT_EQ(seen.size(), 1000u);
  for (const auto& [key, count] : seen) EXPECT_EQ(count, 1) << key;

  // A pushed upserted row continues from the restored state and count.
  const uint64_t key = 4 * 7919;
  const float g[2] = {1.0f, 1.0f};
  t->Push(&key, 1, g, 50);
  RowMeta meta;
  std::vector<float> w(2), a(2);
  ASSERT_TRUE(t->Lookup(key, w.data(), a.data(), &meta));
  EXPECT_EQ(meta.update_count, 5u);
  EXPECT_EQ(meta.version, 50u);
  EXPECT_FLOAT_EQ(a[0], 4.5f + 1.0f);
  EXPECT_FLOAT_EQ(a[1], 1.0f + 1.0f);
}

// Eight threads push and pull overlapping keys. SGD with lr = 1, constant
// initial value 1 and gradients that are multiples of 1/64 keep every partial
// sum exact in float, so the final table must equal the serial sum exactly
// whatever the interleaving.
class ConcurrencyTest : public ::testing::TestWithParam<int> {};

TEST_P(ConcurrencyTest, PushAndPullMatchSerial) {
  constexpr int kDim = 8;
  constexpr int kThreads = 8;
  constexpr int kRounds = 150;
  constexpr int kBatch = 64;
  constexpr uint64_t kKeys = 1500;
  const proto::TableConfig cfg = SgdConfig(kDim, 1.0f, proto::Initializer::CONSTANT, 1.0f);
  auto t = MakeTable(0, cfg, GetParam());

  // Deterministic per-(thread, round) batches; duplicates occur often.
  auto make_batch = [](int thread, int round, std::vector<uint64_t>* keys,
                       std::vector<float>* grads) {
    uint64_t x = static_cast<uint64_t>(thread) * 1000003 + static_cast<uint64_t>(round) * 7919 + 1;
    keys->resize(kBatch);
    grads->resize(kBatch * kDim);
    for (int i = 0; i < kBatch; ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      (*keys)[i] = (x >> 33) % kKeys * 0x9e3779b1ull;
      for (int d = 0; d < kDim; ++d) {
        const int k = static_cast<int>((x >> (d * 4)) & 31) - 16;  // [-16, 15]
        (*grads)[i * kDim + d] = static_cast<float>(k) / 64.0f;
      }
    }
  };

  std::vector<std::thread> threads;
  std::vector<int> bad_pulls(kThreads, 0);
  for (int th = 0; th < kThreads; ++th) {
    threads.emplace_back([&, th] {
      std::vector<uint64_t> keys;
      std::vector<float> grads, out;
      for (int r = 0; r < kRounds; ++r) {
        make_batch(th, r, &keys, &grads);
        t->Push(keys.data(), keys.size(), grads.data(), static_cast<uint32_t>(r));
        // Pull another thread's batch. Every value any interleaving can
        // produce is a whole multiple of 1/64; reading a row before it is
        // initialized would almost surely not be.
        make_batch((th + 1) % kThreads, r, &keys, &grads);
        out.resize(keys.size() * kDim);
        t->Pull(keys.data(), keys.size(), out.data());
        for (float v : out) {
          if (v * 64.0f != std::floor(v * 64.0f)) ++bad_pulls[th];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int th = 0; th < kThreads; ++th) EXPECT_EQ(bad_pulls[th], 0);

  // Serial computation.
  std::map<uint64_t, std::vector<float>> want;
  std::map<uint64_t, uint32_t> counts;
  std::vector<uint64_t> keys;
  std::vector<float> grads;
  for (int th = 0; th < kThreads; ++th) {
    for (int r = 0; r < kRounds; ++r) {
      make_batch(th, r, &keys, &grads);
      for (int i = 0; i < kBatch; ++i) {
        auto it = want.try_emplace(keys[i], kDim, 1.0f).first;
        for (int d = 0; d < kDim; ++d) it->second[d] -= grads[i * kDim + d];
        ++counts[keys[i]];
      }
    }
  }
  // Rows only pulled keep their initial value.
  for (int th = 0; th < kThreads; ++th) {
    for (int r = 0; r < kRounds; ++r) {
      make_batch(th, r, &keys, &grads);
      for (uint64_t k : keys) want.try_emplace(k, kDim, 1.0f);
    }
  }
  EXPECT_EQ(t->size(), static_cast<int64_t>(want.size()));
  std::vector<float> w(kDim);
  RowMeta meta;
  for (const auto& [key, expected] : want) {
    ASSERT_TRUE(t->Lookup(key, w.data(), nullptr, &meta)) << key;
    EXPECT_EQ(w, expected) << key;
    EXPECT_EQ(meta.update_count, counts.count(key) ? counts[key] : 0u) << key;
  }
  const TableStats s = t->stats();
  EXPECT_EQ(s.keys_pushed, int64_t{kThreads} * kRounds * kBatch);
  EXPECT_EQ(s.keys_pulled, int64_t{kThreads} * kRounds * kBatch);
}

INSTANTIATE_TEST_SUITE_P(Partitions, ConcurrencyTest, ::testing::Values(1, 4, 13));

// A request pool (one Pull/Push split over partitions on several threads)
// gives bit for bit what one thread gives: Adagrad (order-sensitive in
// float), fp32 and fp16 storage, large batches with duplicate keys (applied
// in call order within their partition), and the per-table counters. The
// pool must have run tasks (a pool never used would pass trivially), and
// none for calls below kParallelMinKeys keys.
TEST(EmbeddingTableTest, RequestPoolMatchesOneThreadBitForBit) {
  for (auto storage : {proto::TableConfig::FP32, proto::TableConfig::FP16}) {
    proto::TableConfig cfg = AdagradConfig(16);
    cfg.set_storage(storage);
    auto serial = MakeTable(0, cfg, 64);
    auto pooled = MakeTable(0, cfg, 64);
    ThreadPool pool(3);
    pooled->SetRequestPool(&pool, 4);
    std::mt19937_64 rng(5);
    for (int round = 0; round < 6; ++round) {
      const size_t n = round % 2 == 0 ? 20000 : 5000;  // both above kParallelMinKeys
      std::vector<uint64_t> keys(n);
      std::vector<float> grads(n * 16);
      for (auto& k : keys) k = rng() % 30000;  // many duplicates
      for (auto& g : grads) g = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) / 997.0f;
      serial->Push(keys.data(), n, grads.data(), static_cast<uint32_t>(round + 1));
      pooled->Push(keys.data(), n, grads.data(), static_cast<uint32_t>(round + 1));
      std::vector<float> a(n * 16), b(n * 16);
      serial->Pull(keys.data(), n, a.data());
      pooled->Pull(keys.data(), n, b.data());
      ASSERT_TRUE(BitEqual(a.data(), b.data(), a.size())) << "round " << round;
    }
    const int64_t tasks = pool.tasks_run();
    EXPECT_GE(tasks, 6 * 2) << "the pool ran no share of the large calls";
    // A small call stays on the caller.
    std::vector<uint64_t> few(1000);
    for (size_t i = 0; i < few.size(); ++i) few[i] = i;
    std::vector<float> out(few.size() * 16);
    pooled->Pull(few.data(), few.size(), out.data());
    serial->Pull(few.data(), few.size(), out.data());
    EXPECT_EQ(pool.tasks_run(), tasks);

    EXPECT_EQ(serial->size(), pooled->size());
    std::vector<float> wb(16), sb(16);
    RowMeta mb;
    int64_t checked = 0;
    serial->ForEach([&](uint64_t key, const float* w, const float* state, const RowMeta& m) {
      ASSERT_TRUE(pooled->Lookup(key, wb.data(), sb.data(), &mb)) << key;
      EXPECT_TRUE(BitEqual(w, wb.data(), 16)) << key;
      EXPECT_TRUE(BitEqual(state, sb.data(), 16)) << key;
      EXPECT_EQ(m.update_count, mb.update_count) << key;
      EXPECT_EQ(m.version, mb.version) << key;
      ++checked;
    });
    EXPECT_EQ(checked, serial->size());
    EXPECT_EQ(serial->stats().keys_pushed, pooled->stats().keys_pushed);
    EXPECT_EQ(serial->stats().keys_pulled, pooled->stats().keys_pulled);
  }
}

TEST(EmbeddingTableTest, BytesPerRowAtOneMillionRows) {
  // dim 16, Adagrad: 8 (key) + 64 (weights) + 64 (accumulators) payload
  // bytes per row; allow 1.5x for meta, index and partly filled chunks.
  proto::TableConfig cfg = AdagradConfig(16);
  cfg.mutable_initializer()->set_kind(proto::Initializer::ZEROS);
  auto t = MakeTable(0, cfg, 16);
  const uint64_t n = 1000000;
  const size_t batch = 8192;
  std::vector<uint64_t> keys(batch);
  std::vector<float> out(batch * 16);
  for (uint64_t base = 0; base < n; base += batch) {
    const size_t m = std::min<uint64_t>(batch, n - base);
    for (size_t i = 0; i < m; ++i) keys[i] = base + i;
    t->Pull(keys.data(), m, out.data());
  }
  const TableStats s = t->stats();
  ASSERT_EQ(s.rows, static_cast<int64_t>(n));
  const double per_row = static_cast<double>(s.bytes) / s.rows;
  std::cout << "bytes/row at 1M rows, dim 16, Adagrad, 16 partitions: " << per_row << " (stride "
            << t->RowStride() << ")\n";
  RecordProperty("bytes_per_row", std::to_string(per_row));
  EXPECT_LE(per_row, 1.5 * (8 + 16 * 4 + 16 * 4));
  // At least the records themselves are counted.
  EXPECT_GE(per_row, static_cast<double>(t->RowStride()));
}

}  // namespace
}  // namespace freshet
