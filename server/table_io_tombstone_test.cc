// Evicted rows in incremental checkpoints: restoring a chain full ->
// incremental -> ... gives the live table, without resurrecting rows that
// were evicted (capacity or TTL) between the saves.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "common/checksum.h"
#include "common/config.h"
#include "server/table_io.h"

namespace freshet {
namespace {

struct Row {
  std::vector<float> w, s;
  uint32_t update_count = 0, version = 0;
  bool operator==(const Row& o) const {
    return w == o.w && s == o.s && update_count == o.update_count && version == o.version;
  }
};

// key -> row, for rows ever pushed (version > 0): what checkpoints carry.
std::map<uint64_t, Row> PushedRows(const EmbeddingTable& t) {
  std::map<uint64_t, Row> rows;
  t.ForEach([&](uint64_t key, const float* w, const float* s, const RowMeta& m) {
    if (m.version == 0) return;
    Row r;
    r.w.assign(w, w + t.dim());
    r.s.assign(s, s + t.state_dim());
    r.update_count = m.update_count;
    r.version = m.version;
    rows[key] = r;
  });
  return rows;
}

class TombstoneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Under the test binary's scratch TMPDIR (removed when the tests end).
    std::string tmpl_path = ::testing::TempDir() + "freshet-tombstone-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl_path.data()), nullptr);
    const char* tmpl = tmpl_path.c_str();
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static proto::TablesConfig Tables(const std::string& eviction) {
    auto t = ParseTablesConfig(R"(
      tables { name: "items" dim: 2 initializer { kind: UNIFORM scale: 0.1 seed: 3 }
               optimizer { adagrad { learning_rate: 0.1 } } )" +
                                   eviction + R"( }
      tables { name: "users" dim: 3 optimizer { sgd { learning_rate: 0.5 } } }
    )",
                               "t");
    EXPECT_TRUE(t.ok()) << t.status();
    return *t;
  }

  void Push(ParameterShard* shard, int table, std::vector<uint64_t> keys, uint32_t event_s = 0) {
    const int dim = shard->table(table)->dim();
    std::vector<float> g(keys.size() * dim);
    std::iota(g.begin(), g.end(), 0.25f);
    ASSERT_TRUE(shard->HandlePush(table, dim, keys.data(), keys.size(), g.data(), event_s).ok());
  }
  void Pull(ParameterShard* shard, int table, std::vector<uint64_t> keys) {
    const int dim = shard->table(table)->dim();
    std::vector<float> out(keys.size() * dim);
    ASSERT_TRUE(shard->HandlePull(table, dim, keys.data(), keys.size(), out.data()).ok());
  }

  // Saves checkpoint `n` of the chain (full when n == 1) like a server does.
  void Save(const ParameterShard& shard, int n) {
    const std::string d = dir_ + "/ckpt-" + std::to_string(n);
    std::filesystem::create_directories(d);
    const uint32_t now = shard.version();
    ASSERT_TRUE(SaveShardRows(shard, d + "/" + ShardFileName(0, 1), n == 1 ? 0 : saved_).ok());
    saved_ = now;
    chain_.push_back(d);
  }
  // Restores the chain into a fresh shard, as --restore_from does.
  std::unique_ptr<ParameterShard> Restore(const proto::TablesConfig& tables, LoadRowsStats* stats) {
    auto shard = std::move(ParameterShard::Create(tables, 2)).value();
    for (const auto& d : chain_) {
      Status st = LoadModelRows(d, shard.get(), RowFilter(), stats);
      EXPECT_TRUE(st.ok()) << st;
    }
    return shard;
  }
  void ExpectSameTables(const ParameterShard& live, const ParameterShard& restored) {
    for (int t = 0; t < live.num_tables(); ++t) {
      const auto want = PushedRows(*live.table(t));
      const auto got = PushedRows(*restored.table(t));
      EXPECT_EQ(got.size(), want.size()) << "table " << t;
      for (const auto& [key, row] : want) {
        auto it = got.find(key);
        ASSERT_NE(it, got.end()) << "table " << t << " lost key " << key;
        EXPECT_TRUE(it->second == row) << "table " << t << " key " << key;
      }
      for (const auto& [key, row] : got) {
        EXPECT_EQ(want.count(key), 1u) << "table " << t << " resurrected key " << key;
      }
    }
  }

  std::string dir_;
  uint32_t saved_ = 0;
  std::vector<std::string> chain_;
};

TEST_F(TombstoneTest, CapacityEvictionsBetweenSavesAreNotResurrected) {
  const auto tables = Tables("eviction { max_rows: 8 policy: LRU }");
  auto live = std::move(ParameterShard::Create(tables, 2)).value();
  std::vector<uint64_t> first(8);
  std::iota(first.begin(), first.end(), 1);
  Push(live.get(), 0, first);
  Push(live.get(), 1, {100, 101});
  Save(*live, 1);
  // New keys evict old ones (pushes and pulls both create rows); one of the
  // evicted keys comes back before the next save.
  Push(live.get(), 0, {11, 12, 13});
  Pull(live.get(), 0, {14, 15});
  Push(live.get(), 0, {14});
  Push(live.get(), 1, {100});
  Save(*live, 2);
  Push(live.get(), 0, {21, 22, 1, 2});
  Save(*live, 3);
  ASSERT_GT(live->table(0)->stats().evicted_capacity, 4);
  LoadRowsStats stats;
  auto restored = Restore(tables, &stats);
  EXPECT_GT(stats.rows_deleted, 0);
  ExpectSameTables(*live, *restored);
}

TEST_F(TombstoneTest, TtlEvictionsAndUnsweptExpiredRowsAreDeleted) {
  const auto tables = Tables("eviction { ttl_s: 100 }");
  auto live = std::move(ParameterShard::Create(tables, 2)).value();
  Push(live.get(), 0, {1, 2, 3, 4}, 1000);
  Push(live.get(), 0, {5, 6}, 1050);
  Save(*live, 1);
  // Rows 1-4 expire at event time 1101+; some are swept by pushes, the rest
  // only look expired at save time.
  Push(live.get(), 0, {7}, 1120);
  live->EvictExpired();
  ASSERT_EQ(live->table(0)->stats().evicted_ttl, 4);
  Push(live.get(), 0, {1}, 1121);  // evicted, then trained again
  Save(*live, 2);
  Push(live.get(), 0, {8}, 1200);  // 5 and 6 now expired, not swept yet
  Save(*live, 3);
  LoadRowsStats stats;
  auto restored = Restore(tables, &stats);
  std::map<uint64_t, Row> want;
  for (const auto& [key, row] : PushedRows(*live->table(0))) {
    RowMeta m;
    std::vector<float> w(2);
    ASSERT_TRUE(live->table(0)->Lookup(key, w.data(), nullptr, &m));
    if (!live->table(0)->Expired(m)) want[key] = row;
  }
  const auto got = PushedRows(*restored->table(0));
  EXPECT_EQ(got.size(), want.size());
  for (const auto& [key, row] : want) EXPECT_EQ(got.count(key), 1u) << key;
  for (uint64_t gone : {2, 3, 4, 5, 6}) EXPECT_EQ(got.count(gone), 0u) << gone;
  EXPECT_EQ(got.count(1), 1u);
}

TEST_F(TombstoneTest, OverflowingTheLogWritesARebaseThatReplacesTheChain) {
  const auto tables = Tables("eviction { max_rows: 64 policy: LRU }");
  auto live = std::move(ParameterShard::Create(tables, 2)).value();
  std::vector<uint64_t> keys(64);
  std::iota(keys.begin(), keys.end(), 1);
  Push(live.get(), 0, keys);
  Save(*live, 1);
  // More evictions than the log holds.
  keys.resize(EmbeddingTable::kMaxTombstones + 1000);
  std::iota(keys.begin(), keys.end(), 1000);
  Push(live.get(), 0, keys);
  ASSERT_GT(live->table(0)->stats().tombstones_dropped, 0);
  Save(*live, 2);
  {
    std::ifstream in(chain_.back() + "/" + ShardFileName(0, 1), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    uint32_t kind = 99;
    std::memcpy(&kind, bytes.data() + 12, 4);
    EXPECT_EQ(kind, kRowsRebase);
  }
  Push(live.get(), 0, {5, 6, 7});
  Save(*live, 3);  // the log is complete again: a plain incremental
  {
    std::ifstream in(chain_.back() + "/" + ShardFileName(0, 1), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    uint32_t kind = 99;
    std::memcpy(&kind, bytes.data() + 12, 4);
    EXPECT_EQ(kind, kRowsIncremental);
  }
  LoadRowsStats stats;
  auto restored = Restore(tables, &stats);
  ExpectSameTables(*live, *restored);
}

TEST_F(TombstoneTest, ReshardedChainRestoreMatchesTheLiveTables) {
  // Two servers save; the chain restores onto three (RowFilter by slot).
  const auto tables = Tables("eviction { max_rows: 40 policy: LFU }");
  std::vector<std::unique_ptr<ParameterShard>> live;
  for (int s = 0; s < 2; ++s) live.push_back(std::move(ParameterShard::Create(tables, 2)).value());
  std::vector<uint32_t> saved(2, 0);
  auto route = [&](std::vector<uint64_t> all, auto fn) {
    std::vector<std::vector<uint64_t>> by(2);
    for (uint64_t k : all) by[ShardOf(k, 2)].push_back(k);
    for (int s = 0; s < 2; ++s) {
      if (!by[s].empty()) fn(s, by[s]);
    }
  };
  std::vector<std::string> dirs;
  auto save = [&](int n) {
    const std::string d = dir_ + "/r-ckpt-" + std::to_string(n);
    std::filesystem::create_directories(d);
    for (int s = 0; s < 2; ++s) {
      const uint32_t now = live[s]->version();
      ASSERT_TRUE(
          SaveShardRows(*live[s], d + "/" + ShardFileName(s, 2), n == 1 ? 0 : saved[s]).ok());
      saved[s] = now;
    }
    dirs.push_back(d);
  };
  std::vector<uint64_t> keys(60);
  std::iota(keys.begin(), keys.end(), 1);
  route(keys, [&](int s, std::vector<uint64_t> k) { Push(live[s].get(), 0, k); });
  save(1);
  std::iota(keys.begin(), keys.end(), 500);
  route(keys, [&](int s, std::vector<uint64_t> k) { Push(live[s].get(), 0, k); });
  save(2);
  route({1, 2, 3, 501, 900, 901},
        [&](int s, std::vector<uint64_t> k) { Push(live[s].get(), 0, k); });
  save(3);
  std::map<uint64_t, Row> want;
  for (const auto& l : live) {
    for (const auto& kv : PushedRows(*l->table(0))) want.insert(kv);
  }
  std::map<uint64_t, Row> got;
  for (int s = 0; s < 3; ++s) {
    // Restored without a row bound (a different policy is allowed).
    auto shard = std::move(ParameterShard::Create(Tables(""), 2)).value();
    for (const auto& d : dirs) {
      ASSERT_TRUE(LoadModelRows(d, shard.get(), RowFilter::ForShard(s, 3)).ok());
    }
    for (const auto& kv : PushedRows(*shard->table(0))) got.insert(kv);
  }
  EXPECT_EQ(got.size(), want.size());
  for (const auto& [key, row] : want) {
    auto it = got.find(key);
    ASSERT_NE(it, got.end()) << key;
    EXPECT_TRUE(it->second == row) << key;
  }
}

// Version 1 files (before tombstones) still load, as full files.
TEST_F(TombstoneTest, ReadsVersionOneFiles) {
  std::string f;
  auto put = [&](const void* p, size_t n) { f.append(static_cast<const char*>(p), n); };
  auto u32 = [&](uint32_t v) { put(&v, 4); };
  auto u64 = [&](uint64_t v) { put(&v, 8); };
  put("FRSHROWS", 8);
  u32(1);
  u32(1);  // tables
  u32(5);
  put("users", 5);
  u32(3);  // dim
  u32(0);  // state (sgd)
  u64(2);  // rows
  for (uint64_t key : {7, 9}) {
    u64(key);
    u32(4);   // update count
    u32(11);  // version
    for (int d = 0; d < 3; ++d) {
      const float v = static_cast<float>(key) + d;
      put(&v, 4);
    }
  }
  u64(Fnv1a64(f.data(), f.size()));
  const std::string path = dir_ + "/" + ShardFileName(0, 1);
  std::ofstream(path, std::ios::binary) << f;
  auto shard = std::move(ParameterShard::Create(Tables(""), 1)).value();
  ASSERT_TRUE(LoadShardRows(path, shard.get()).ok());
  float w[3];
  RowMeta m;
  ASSERT_TRUE(shard->table(1)->Lookup(9, w, nullptr, &m));
  EXPECT_EQ(w[2], 11.0f);
  EXPECT_EQ(m.version, 11u);
  EXPECT_EQ(shard->table(1)->size(), 2);
}

}  // namespace
}  // namespace freshet
