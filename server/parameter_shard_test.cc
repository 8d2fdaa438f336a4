#include "server/parameter_shard.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/config.h"
#include "server/initializer.h"
#include "server/table_io.h"

namespace freshet {
namespace {

proto::TablesConfig Tables() {
  auto t = ParseTablesConfig(R"(
    tables { name: "a" dim: 4 initializer { kind: UNIFORM scale: 0.1 seed: 7 }
             optimizer { sgd { learning_rate: 0.5 } } }
    tables { name: "b" dim: 2 initializer { kind: CONSTANT scale: 1 }
             optimizer { adagrad { learning_rate: 0.1 } } }
  )",
                             "t");
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

TEST(ParameterShardTest, PullInitializesDeterministicallyAndPushApplies) {
  auto shard = std::move(ParameterShard::Create(Tables(), 4)).value();
  const uint64_t keys[] = {10, 20, 10};
  float out[12];
  ASSERT_TRUE(shard->HandlePull(0, 4, keys, 3, out).ok());
  float want[4];
  InitializeRow(Tables().tables(0).initializer(), 0, 10, want, 4);
  for (int j = 0; j < 4; ++j) {
    EXPECT_EQ(out[j], want[j]);
    EXPECT_EQ(out[8 + j], want[j]);  // duplicate key, same row
  }
  const float grads[4] = {1, 2, 3, 4};
  ASSERT_TRUE(shard->HandlePush(0, 4, keys, 1, grads).ok());
  ASSERT_TRUE(shard->HandlePull(0, 4, keys, 1, out).ok());
  for (int j = 0; j < 4; ++j) EXPECT_FLOAT_EQ(out[j], want[j] - 0.5f * grads[j]);
  const ServerStats s = shard->Stats();
  EXPECT_EQ(s.rows, 2);
  EXPECT_EQ(s.pull_requests, 2);
  EXPECT_EQ(s.push_requests, 1);
  EXPECT_EQ(s.keys_pushed, 1);
  EXPECT_GT(s.bytes, 0);
}

TEST(ParameterShardTest, BadRequestsAreInvalidArgument) {
  auto shard = std::move(ParameterShard::Create(Tables(), 4)).value();
  const uint64_t key = 1;
  float out[4];
  Status st = shard->HandlePull(2, 4, &key, 1, out);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "unknown table id 2 (server has 2 tables)");
  st = shard->HandlePush(1, 4, &key, 1, out);
  EXPECT_EQ(st.message(), "table 'b' has dim 2, request says 4");
  EXPECT_EQ(shard->Stats().rows, 0);
}

// Regression (found reviewing the decoders for wire_fuzz): a PULL header
// claiming a huge dim made the server allocate num_keys * dim floats before
// checking the dim against the table (16 GiB for one key and dim 2^32 - 1).
// The server now asks CheckRequest before it sizes the reply
// (ServerNode::HandlePull; ClientTest.ServerAnswersBadRequestsWithTheError
// sends such a request to a server).
TEST(ParameterShardTest, CheckRequestNamesTheProblem) {
  auto shard = std::move(ParameterShard::Create(Tables(), 4)).value();
  EXPECT_TRUE(shard->CheckRequest(0, 4).ok());
  Status st = shard->CheckRequest(0, 0xffffffffu);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "table 'a' has dim 4, request says 4294967295");
  EXPECT_EQ(shard->CheckRequest(-3, 4).message(), "unknown table id -3 (server has 2 tables)");
  EXPECT_EQ(shard->CheckRequest(2, 4).message(), "unknown table id 2 (server has 2 tables)");
}

}  // namespace
}  // namespace freshet

namespace freshet {
namespace {

TEST(ParameterShardTest, ExportCarriesEvictionsAsDeletionsOnce) {
  auto tables = ParseTablesConfig(R"(
    tables { name: "a" dim: 2 optimizer { sgd { learning_rate: 0.5 } }
             eviction { ttl_s: 100 } }
  )",
                                  "t");
  ASSERT_TRUE(tables.ok()) << tables.status();
  auto shard = std::move(ParameterShard::Create(*tables, 2)).value();
  const uint64_t k1 = 1, k2 = 2;
  const float g[2] = {1, 1};
  ASSERT_TRUE(shard->HandlePush(0, 2, &k1, 1, g, 1000).ok());
  const uint32_t v1 = shard->ExportChanged(0, [](const ExportedTable&) {});
  // the exporter now has key 1
  ASSERT_TRUE(shard->HandlePush(0, 2, &k2, 1, g, 1200).ok());
  EXPECT_EQ(shard->EvictExpired(), 1);  // key 1 is 200 s old
  auto collect = [&](uint32_t since, std::vector<uint64_t>* rows, std::vector<uint64_t>* del) {
    int tables = 0;
    const uint32_t now = shard->ExportChanged(since, [&](const ExportedTable& t) {
      ++tables;
      EXPECT_EQ(t.table, 0u);
      EXPECT_EQ(t.dim, 2u);
      rows->assign(t.keys, t.keys + t.n);
      del->assign(t.deleted, t.deleted + t.num_deleted);
    });
    EXPECT_EQ(tables, 1);
    return now;
  };
  std::vector<uint64_t> rows, del;
  const uint32_t v2 = collect(v1, &rows, &del);
  EXPECT_EQ(rows, std::vector<uint64_t>{2});
  EXPECT_EQ(del, std::vector<uint64_t>{1});
  // Asked again from the same point (a retried export): still there.
  collect(v1, &rows, &del);
  EXPECT_EQ(del, std::vector<uint64_t>{1});
  // Acknowledged (since >= its version): forgotten.
  collect(v2, &rows, &del);
  EXPECT_TRUE(rows.empty());
  EXPECT_TRUE(del.empty());
}

TEST(ParameterShardTest, TableConfigFieldErrors) {
  auto bad = [](const std::string& text, const std::string& field) {
    auto t = ParseTablesConfig(text, "cfg.pbtxt");
    ASSERT_FALSE(t.ok()) << text;
    EXPECT_NE(t.status().message().find(field), std::string::npos) << t.status();
  };
  bad(R"(tables { name: "a" dim: 2 optimizer { sgd { learning_rate: 1 } }
                  admission { min_count: 300 } })",
      "admission.min_count");
  bad(R"(tables { name: "a" dim: 2 optimizer { sgd { learning_rate: 1 } }
                  admission { probability: 1.5 } })",
      "admission.probability");
  bad(R"(tables { name: "a" dim: 2 optimizer { sgd { learning_rate: 1 } }
                  admission { min_count: 2 sketch_depth: 9 } })",
      "admission.sketch_depth");
  bad(R"(tables { name: "a" dim: 2 optimizer { sgd { learning_rate: 1 } }
                  admission { min_count: 2 sketch_width: 10 } })",
      "admission.sketch_width");
  auto ok = ParseTablesConfig(R"(tables { name: "a" dim: 2 optimizer { sgd { learning_rate: 1 } }
      admission { min_count: 2 } eviction { ttl_s: 3600 max_rows: 1000 policy: LFU }
      storage: FP16 })",
                              "cfg.pbtxt");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->tables(0).admission().sketch_width(), 1u << 20);  // default filled
  EXPECT_EQ(ok->tables(0).admission().sketch_depth(), 4u);
}

// Background checkpoint writes (docs/CHECKPOINTS.md): Snapshot() is the
// shard at the cut. Pushes after it (also while the copy is being written)
// change the shard, not the copy, and the file written from the copy equals
// the cut row for row, bit for bit, including fp16 rows and optimizer state.
TEST(ParameterShardTest, SnapshotWrittenWhilePushesGoOnEqualsTheCut) {
  auto cfg = ParseTablesConfig(R"(
    tables { name: "a" dim: 4 initializer { kind: UNIFORM scale: 0.1 seed: 7 }
             optimizer { adagrad { learning_rate: 0.1 } } }
    tables { name: "h" dim: 3 storage: FP16 initializer { kind: UNIFORM scale: 0.1 seed: 3 }
             optimizer { sgd { learning_rate: 0.5 } } }
  )",
                               "t");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  auto shard = std::move(ParameterShard::Create(*cfg, 4)).value();
  const int dims[2] = {4, 3};
  // 20000 keys: about 5000 rows per partition, so two chunks each, the
  // second partly used.
  constexpr int kKeys = 20000;
  std::vector<uint64_t> keys(kKeys);
  for (int i = 0; i < kKeys; ++i) keys[i] = 1000003ull * static_cast<uint64_t>(i) + 17;
  auto push_all = [&](ParameterShard* s, int round, int first, int count) {
    for (int t = 0; t < 2; ++t) {
      std::vector<float> g(static_cast<size_t>(count) * dims[t]);
      for (size_t j = 0; j < g.size(); ++j) g[j] = static_cast<float>((j + round) % 7) / 8 - 0.4f;
      ASSERT_TRUE(s->HandlePush(t, dims[t], keys.data() + first, count, g.data()).ok());
    }
  };
  push_all(shard.get(), 0, 0, kKeys);
  const uint32_t half_version = shard->version();
  push_all(shard.get(), 1, 0, kKeys / 2);  // only these change after half_version

  // The cut, row by row, from the live shard.
  struct Row {
    std::vector<float> w, state;
    RowMeta meta;
  };
  auto read_rows = [&](const ParameterShard& s) {
    std::vector<std::vector<Row>> rows(2);
    for (int t = 0; t < 2; ++t) {
      const EmbeddingTable* table = s.table(t);
      for (uint64_t k : keys) {
        Row r;
        r.w.resize(table->dim());
        r.state.resize(table->state_dim());
        if (!table->Lookup(k, r.w.data(), r.state.data(), &r.meta)) r.w.clear();
        rows[t].push_back(std::move(r));
      }
    }
    return rows;
  };
  const auto cut = read_rows(*shard);
  const uint32_t cut_version = shard->version();

  int64_t copied = 0;
  std::unique_ptr<ParameterShard> copy = shard->Snapshot(&copied);
  EXPECT_EQ(copy->version(), cut_version);
  // At least every row record (stride >= 8 key + 8 meta + weights + state bytes).
  EXPECT_GE(copied, int64_t{kKeys} * (16 + 4 * 4 + 4 * 4) + int64_t{kKeys} * (16 + 3 * 2));

  char tmpl[] = "/tmp/freshet-snapshot-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  // Pushes go on (and add 5000 new rows) while the copy is written.
  std::thread pusher([&] {
    for (int round = 2; round < 6; ++round) push_all(shard.get(), round, 0, kKeys);
  });
  std::vector<uint64_t> fresh_keys(5000);
  for (size_t i = 0; i < fresh_keys.size(); ++i) fresh_keys[i] = 7777777ull * (i + 1) + 3;
  std::vector<float> g(fresh_keys.size() * 4, 0.25f);
  ASSERT_TRUE(shard->HandlePush(0, 4, fresh_keys.data(), fresh_keys.size(), g.data()).ok());
  ASSERT_TRUE(SaveShardRows(*copy, dir + "/full.rows").ok());
  ASSERT_TRUE(SaveShardRows(*copy, dir + "/incr.rows", half_version).ok());
  pusher.join();
  copy.reset();

  // The live shard moved on...
  const auto live = read_rows(*shard);
  EXPECT_NE(std::memcmp(live[0][0].w.data(), cut[0][0].w.data(), 4 * sizeof(float)), 0);
  EXPECT_GT(shard->version(), cut_version);
  // ...the files did not.
  auto expect_cut = [&](const std::string& file, int first, int count) {
    auto loaded = std::move(ParameterShard::Create(*cfg, 4)).value();
    ASSERT_TRUE(LoadShardRows(file, loaded.get()).ok()) << file;
    EXPECT_EQ(loaded->Stats().rows, 2 * count) << file;  // not the 5000 fresh rows
    const auto got = read_rows(*loaded);
    for (int t = 0; t < 2; ++t) {
      for (int i = 0; i < kKeys; ++i) {
        const Row& want = cut[t][i];
        const Row& have = got[t][i];
        if (i < first || i >= first + count) {
          EXPECT_TRUE(have.w.empty()) << file << " has unchanged key " << i;
          continue;
        }
        ASSERT_FALSE(have.w.empty()) << file << " table " << t << " key " << i;
        ASSERT_EQ(0, std::memcmp(have.w.data(), want.w.data(), want.w.size() * sizeof(float)))
            << file << " table " << t << " key " << i;
        ASSERT_EQ(have.state.size(), want.state.size()) << file << " table " << t;
        // (SGD keeps no state: memcmp must not see its empty vectors' null data.)
        ASSERT_TRUE(want.state.empty() || std::memcmp(have.state.data(), want.state.data(),
                                                      want.state.size() * sizeof(float)) == 0)
            << file << " table " << t << " key " << i;
        ASSERT_EQ(have.meta.update_count, want.meta.update_count);
        ASSERT_EQ(have.meta.version, want.meta.version);
      }
    }
  };
  expect_cut(dir + "/full.rows", 0, kKeys);
  expect_cut(dir + "/incr.rows", 0, kKeys / 2);  // the rows pushed after half_version
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace freshet
