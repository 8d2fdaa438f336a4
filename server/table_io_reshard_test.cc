#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <vector>

#include "common/config.h"
#include "common/sharding.h"
#include "server/table_io.h"

namespace freshet {
namespace {

proto::TablesConfig Tables() {
  auto t = ParseTablesConfig(R"(
    tables { name: "a" dim: 4 initializer { kind: CONSTANT scale: 0 }
             optimizer { adagrad { learning_rate: 0.1 } } }
    tables { name: "b" dim: 2 initializer { kind: CONSTANT scale: 0 }
             optimizer { sgd { learning_rate: 0.5 } } }
  )",
                             "t");
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

std::string TempDir(const std::string& name) {
  const std::string d = ::testing::TempDir() + "/table_io_" + name + "_" + std::to_string(getpid());
  mkdir(d.c_str(), 0755);
  return d;
}

// A row as saved: weights, optimizer state and metadata.
struct Row {
  std::vector<float> w, s;
  RowMeta meta;
  bool operator==(const Row& o) const {
    return w == o.w && s == o.s && meta.update_count == o.meta.update_count &&
           meta.version == o.meta.version;
  }
};
using Rows = std::map<std::pair<int, uint64_t>, Row>;  // (table, key)

Row MakeRow(int table, uint64_t key, int dim, int state_dim) {
  Row r;
  for (int j = 0; j < dim; ++j) r.w.push_back(static_cast<float>(key % 1000) * 0.25f + j + table);
  for (int j = 0; j < state_dim; ++j) r.s.push_back(static_cast<float>(key % 77) + 0.5f * j);
  r.meta.update_count = static_cast<uint32_t>(key % 13 + 1);
  r.meta.version = static_cast<uint32_t>(key % 29 + 1);
  return r;
}

Rows AllRows(const ParameterShard& shard) {
  Rows out;
  for (int t = 0; t < shard.num_tables(); ++t) {
    const EmbeddingTable* table = shard.table(t);
    table->ForEach([&](uint64_t key, const float* w, const float* s, const RowMeta& m) {
      Row r;
      r.w.assign(w, w + table->dim());
      r.s.assign(s, s + table->state_dim());
      r.meta = m;
      out[{t, key}] = r;
    });
  }
  return out;
}

// Writes `keys` rows per table as `num_shards` files, each holding the keys
// ShardOf assigns it (what `num_shards` servers save). Returns every row.
Rows WriteModel(const std::string& dir, int num_shards, int keys) {
  Rows all;
  for (int s = 0; s < num_shards; ++s) {
    auto shard = std::move(ParameterShard::Create(Tables(), 4)).value();
    for (int t = 0; t < shard->num_tables(); ++t) {
      EmbeddingTable* table = shard->table(t);
      for (int i = 0; i < keys; ++i) {
        const uint64_t key = 1000003ull * static_cast<uint64_t>(i) + 17 * t;
        if (ShardOf(key, num_shards) != s) continue;
        const Row r = MakeRow(t, key, table->dim(), table->state_dim());
        table->Upsert(key, r.w.data(), r.s.empty() ? nullptr : r.s.data(), r.meta);
        all[{t, key}] = r;
      }
    }
    EXPECT_TRUE(SaveShardRows(*shard, dir + "/" + ShardFileName(s, num_shards)).ok());
  }
  return all;
}

TEST(TableIoTest, RowFilterForShardKeepsExactlyTheShardsKeys) {
  for (int n : {1, 2, 3, 7}) {
    for (uint64_t key = 0; key < 5000; key += 7) {
      int keeping = 0;
      for (int s = 0; s < n; ++s) {
        if (RowFilter::ForShard(s, n).Keeps(key)) {
          ++keeping;
          EXPECT_EQ(s, ShardOf(key, n)) << "key " << key << " of " << n;
        }
      }
      EXPECT_EQ(keeping, 1) << "key " << key << " of " << n;
    }
  }
  EXPECT_TRUE(RowFilter().Keeps(12345));
}

// Two saved shards restored onto 3 servers and onto 1: every row lands on
// exactly the server that owns its slot, with weights, state and metadata
// intact, and the union is the saved model.
TEST(TableIoTest, ReshardTwoToThreeAndOne) {
  const std::string dir = TempDir("reshard");
  const Rows saved = WriteModel(dir, 2, 3000);
  ASSERT_GT(saved.size(), 4000u);
  for (int n : {3, 1, 2}) {
    Rows merged;
    int64_t kept = 0;
    for (int s = 0; s < n; ++s) {
      auto shard = std::move(ParameterShard::Create(Tables(), 4)).value();
      LoadRowsStats stats;
      ASSERT_TRUE(LoadModelRows(dir, shard.get(), RowFilter::ForShard(s, n), &stats).ok());
      EXPECT_EQ(stats.files, 2);
      EXPECT_EQ(stats.rows_read, static_cast<int64_t>(saved.size()));
      kept += stats.rows_kept;
      for (const auto& [k, row] : AllRows(*shard)) {
        EXPECT_EQ(ShardOf(k.second, n), s) << "key " << k.second << " on server " << s << "/" << n;
        EXPECT_TRUE(merged.emplace(k, row).second) << "key " << k.second << " loaded twice";
      }
    }
    EXPECT_EQ(kept, static_cast<int64_t>(saved.size()));
    EXPECT_TRUE(merged == saved) << "restored onto " << n << " servers";
  }
}

TEST(TableIoTest, CorruptFileIsDataLossNamingTheFile) {
  const std::string dir = TempDir("corrupt");
  WriteModel(dir, 1, 200);
  const std::string path = dir + "/" + ShardFileName(0, 1);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    char c = 0;
    f.read(&c, 1);
    f.seekp(100);
    c = static_cast<char>(c ^ 0x5a);
    f.write(&c, 1);
  }
  auto shard = std::move(ParameterShard::Create(Tables(), 4)).value();
  Status st = LoadModelRows(dir, shard.get());
  EXPECT_EQ(st.code(), StatusCode::kDataLoss);
  EXPECT_NE(st.message().find(path), std::string::npos) << st;
  EXPECT_EQ(shard->table(0)->size(), 0);  // nothing upserted from a corrupt file
  EXPECT_EQ(LoadModelRows(TempDir("empty"), shard.get()).code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace freshet
