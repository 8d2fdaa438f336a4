// Delta export from the per-partition change logs
// (EmbeddingTable::ChangedSince through ParameterShard::ExportChanged):
// every export must list exactly the rows a full scan would (version >
// since), each key once, whatever the cursor, policies and concurrency.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/config.h"
#include "common/ps_wire.h"
#include "server/parameter_shard.h"
#include "server/server_node.h"

namespace freshet {
namespace {

using Rows = std::map<uint64_t, std::vector<float>>;

struct Exported {
  std::vector<uint64_t> keys;  // in body order
  Rows rows;
  std::vector<uint64_t> deleted;
};

// The shard's export as the exporter receives it: encoded by the server
// (ExportReply), decoded by common/ps_wire.h. *now: the new cursor.
std::vector<Exported> ExportVia(ParameterShard* shard, uint32_t since, uint32_t* now,
                                int num_tables) {
  std::vector<Exported> out(num_tables);
  const Message msg = ExportReply(shard, 1, ExportRequest{since});
  StatusOr<ExportResponse> r = DecodeExportResponse(msg);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return out;
  *now = r->version;
  EXPECT_EQ(r->tables.size(), static_cast<size_t>(num_tables));
  for (const ExportedTable& t : r->tables) {
    Exported& e = out.at(t.table);
    for (size_t i = 0; i < t.n; ++i) {
      e.keys.push_back(t.keys[i]);
      e.rows[t.keys[i]].assign(t.weights + i * t.dim, t.weights + (i + 1) * t.dim);
    }
    e.deleted.assign(t.deleted, t.deleted + t.num_deleted);
  }
  return out;
}

// What a full scan exports: rows with version > since, fp32 weights.
Rows ScanSince(const EmbeddingTable& table, uint32_t since) {
  Rows rows;
  table.ForEach([&](uint64_t key, const float* w, const float*, const RowMeta& meta) {
    if (meta.version > since) rows[key].assign(w, w + table.dim());
  });
  return rows;
}

// Bitwise comparison, naming the first difference.
::testing::AssertionResult SameRows(const Rows& got, const Rows& want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << got.size() << " rows, want " << want.size();
  }
  for (const auto& [key, w] : want) {
    auto it = got.find(key);
    if (it == got.end()) return ::testing::AssertionFailure() << "key " << key << " missing";
    if (it->second.size() != w.size() ||
        std::memcmp(it->second.data(), w.data(), w.size() * sizeof(float)) != 0) {
      return ::testing::AssertionFailure() << "key " << key << " has other weights";
    }
  }
  return ::testing::AssertionSuccess();
}

proto::TablesConfig PolicyTables() {
  auto t = ParseTablesConfig(R"(
    tables { name: "plain" dim: 4 initializer { kind: UNIFORM scale: 0.1 seed: 3 }
             optimizer { adagrad { learning_rate: 0.1 } } }
    tables { name: "admit_cap" dim: 3 initializer { kind: UNIFORM scale: 0.1 }
             optimizer { sgd { learning_rate: 0.5 } }
             admission { min_count: 2 } eviction { max_rows: 120 policy: LRU } }
    tables { name: "ttl_fp16" dim: 2 storage: FP16
             optimizer { adagrad { learning_rate: 0.1 } } eviction { ttl_s: 40 } }
    tables { name: "lfu_bf16" dim: 2 storage: BF16
             optimizer { sgd { learning_rate: 0.1 } }
             admission { probability: 0.5 } eviction { max_rows: 80 policy: LFU } }
  )",
                             "t");
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

// Random pushes, pulls, restores (Upsert), TTL sweeps and exports at the
// exporter's cursor (with failed publishes, so the same cursor is asked
// again), at 0 (full), and at other cursors. Each export must equal a
// full-scan diff; a mirror built from the successful exports, as serving
// builds its model (deletions, then rows), must equal the pushed rows.
TEST(ExportLogTest, ExportsEqualFullScanDiffUnderRandomTraffic) {
  const proto::TablesConfig cfg = PolicyTables();
  const int num_tables = cfg.tables_size();
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    auto shard = std::move(ParameterShard::Create(cfg, 4)).value();
    std::mt19937_64 rng(seed);
    auto uniform = [&rng](uint64_t n) { return rng() % n; };
    const uint64_t keyspace[] = {500, 400, 300, 250};
    uint32_t cursor = 0;
    bool mirror_valid = false;  // until the first successful full export
    std::vector<Rows> mirror(num_tables);
    uint32_t clock = 1000000;
    int exports = 0, checked_mirrors = 0;
    for (int step = 0; step < 2500; ++step) {
      const uint64_t op = uniform(100);
      const int t = static_cast<int>(uniform(num_tables));
      EmbeddingTable* table = shard->table(t);
      const int dim = table->dim();
      if (op < 60) {
        const size_t n = 1 + uniform(48);
        std::vector<uint64_t> keys(n);
        for (auto& k : keys) k = uniform(keyspace[t]);
        std::vector<float> grads(n * dim);
        for (auto& g : grads) g = static_cast<float>(static_cast<int64_t>(uniform(200)) - 100) / 64;
        clock += static_cast<uint32_t>(uniform(3));
        ASSERT_TRUE(shard->HandlePush(t, dim, keys.data(), n, grads.data(), clock).ok());
      } else if (op < 70) {
        const size_t n = 1 + uniform(32);
        std::vector<uint64_t> keys(n);
        for (auto& k : keys) k = uniform(keyspace[t]);
        std::vector<float> out(n * dim);
        ASSERT_TRUE(shard->HandlePull(t, dim, keys.data(), n, out.data()).ok());
      } else if (op < 72) {
        shard->EvictExpired();
      } else if (op < 76) {
        // A restore writing a row, sometimes with a version at or below the
        // cursor (then serving legitimately misses it until a full export).
        std::vector<float> w(dim);
        for (auto& x : w) x = static_cast<float>(uniform(1000)) / 100;
        RowMeta meta;
        meta.update_count = 1;
        meta.version = 1 + static_cast<uint32_t>(uniform(shard->version() + 2));
        if (meta.version <= cursor) mirror_valid = false;
        table->Upsert(uniform(keyspace[t]), w.data(), nullptr, meta);
      } else {
        // An export.
        const uint64_t kind = uniform(100);
        uint32_t since = cursor;
        bool exporter = true;
        if (kind < 12) {
          since = 0;
        } else if (kind < 24) {
          since = static_cast<uint32_t>(uniform(uint64_t{cursor} + 1));  // older cursor
          exporter = false;
        } else if (kind < 28) {
          // A cursor ahead of the exporter's: its deletions up to there are
          // forgotten, so serving's mirror is wrong until the next full.
          since = cursor + static_cast<uint32_t>(uniform(uint64_t{shard->version() - cursor} + 1));
          exporter = false;
          mirror_valid = false;
        }
        std::vector<Rows> want(num_tables);
        for (int i = 0; i < num_tables; ++i) want[i] = ScanSince(*shard->table(i), since);
        uint32_t now = 0;
        const std::vector<Exported> got = ExportVia(shard.get(), since, &now, num_tables);
        ++exports;
        for (int i = 0; i < num_tables; ++i) {
          SCOPED_TRACE("table " + cfg.tables(i).name() + " export " + std::to_string(exports) +
                       " since " + std::to_string(since));
          ASSERT_EQ(got[i].keys.size(), got[i].rows.size()) << "a key is listed twice";
          ASSERT_TRUE(SameRows(got[i].rows, want[i]));
        }
        const bool published = exporter && uniform(100) >= 20;  // else a failed publish
        if (!published) continue;
        cursor = now;
        for (int i = 0; i < num_tables; ++i) {
          if (since == 0) {
            mirror[i] = got[i].rows;  // a full snapshot lists every row, no deletions
          } else {
            for (uint64_t k : got[i].deleted) mirror[i].erase(k);
            for (const auto& [k, w] : got[i].rows) mirror[i][k] = w;
          }
        }
        if (since == 0) mirror_valid = true;
        if (!mirror_valid) continue;
        ++checked_mirrors;
        for (int i = 0; i < num_tables; ++i) {
          SCOPED_TRACE("mirror of table " + cfg.tables(i).name());
          ASSERT_TRUE(SameRows(mirror[i], ScanSince(*shard->table(i), 0)));
        }
      }
    }
    EXPECT_GT(exports, 200);
    EXPECT_GT(checked_mirrors, 20);
    // The policies did their part: rows were evicted, and change logs were
    // used (not every delta scanned).
    const TableStats s = shard->TotalTableStats();
    EXPECT_GT(s.evicted_capacity, 0);
    EXPECT_GT(s.evicted_ttl, 0);
  }
}

// Pushes from several threads while an exporter thread exports: a push
// that returned before an export began must be in the model serving holds
// after that export (SGD with learning rate 1 and gradient -1 makes
// weight[0] a push count), no export lists a key twice, and at the end the
// model equals the table.
TEST(ExportLogTest, ConcurrentPushesAreExportedAtLeastOnce) {
  auto tables = ParseTablesConfig(R"(
    tables { name: "count" dim: 2 initializer { kind: ZEROS }
             optimizer { sgd { learning_rate: 1 } } }
  )",
                                  "t");
  ASSERT_TRUE(tables.ok()) << tables.status();
  auto shard = std::move(ParameterShard::Create(*tables, 4)).value();
  constexpr int kThreads = 3;
  constexpr uint64_t kKeysPerThread = 1500;
  std::atomic<int> gen{0};  // exports begun
  std::atomic<bool> stop{false};
  // Per thread: after each push, (gen read after it returned, key, pushes
  // of key so far).
  struct Record {
    int gen;
    uint64_t key;
    uint32_t count;
  };
  std::vector<std::vector<Record>> records(kThreads);
  std::vector<std::thread> pushers;
  for (int th = 0; th < kThreads; ++th) {
    pushers.emplace_back([&, th] {
      std::mt19937_64 rng(100 + th);
      std::vector<uint32_t> count(kKeysPerThread, 0);
      std::vector<uint64_t> keys(40);
      const std::vector<float> grads(keys.size() * 2, -1.0f);
      while (!stop.load()) {
        for (auto& k : keys) k = (rng() % kKeysPerThread) * kThreads + th;
        ASSERT_TRUE(shard->HandlePush(0, 2, keys.data(), keys.size(), grads.data()).ok());
        const int g = gen.load();
        for (uint64_t k : keys) records[th].push_back({g, k, ++count[k / kThreads]});
      }
    });
  }
  std::mt19937_64 rng(7);
  uint32_t cursor = 0;
  struct Published {
    int gen;
    Rows model;
  };
  std::vector<Published> published;
  Rows model;
  int failed = 0;
  for (int e = 0; e < 60; ++e) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    const int g = gen.fetch_add(1) + 1;  // export g begins now
    uint32_t now = 0;
    const std::vector<Exported> got = ExportVia(shard.get(), cursor, &now, 1);
    ASSERT_EQ(got[0].keys.size(), got[0].rows.size()) << "export " << g << " lists a key twice";
    ASSERT_TRUE(got[0].deleted.empty());
    if (rng() % 5 == 0) {  // a failed publish: asked again with the same cursor
      ++failed;
      continue;
    }
    for (const auto& [k, w] : got[0].rows) model[k] = w;
    cursor = now;
    published.push_back({g, model});
  }
  stop = true;
  for (auto& t : pushers) t.join();
  ASSERT_GT(failed, 0);
  // Every push recorded with gen < g returned before export g began:
  // sweep the records in gen order, keeping each key's pushes so far.
  std::vector<Record> all;
  for (const auto& recs : records) all.insert(all.end(), recs.begin(), recs.end());
  std::stable_sort(all.begin(), all.end(),
                   [](const Record& a, const Record& b) { return a.gen < b.gen; });
  std::map<uint64_t, uint32_t> pushed;
  size_t next = 0;
  size_t checked = 0;
  for (const Published& p : published) {
    for (; next < all.size() && all[next].gen < p.gen; ++next) {
      uint32_t& c = pushed[all[next].key];
      c = std::max(c, all[next].count);
    }
    for (const auto& [key, count] : pushed) {
      auto it = p.model.find(key);
      ASSERT_NE(it, p.model.end())
          << "key " << key << " pushed before export " << p.gen << " began is not in any export";
      ASSERT_GE(it->second[0], static_cast<float>(count))
          << "key " << key << " after export " << p.gen << " misses pushes";
      ++checked;
    }
  }
  EXPECT_GT(checked, 1000u);
  uint32_t now = 0;
  const std::vector<Exported> last = ExportVia(shard.get(), cursor, &now, 1);
  for (const auto& [k, w] : last[0].rows) model[k] = w;
  EXPECT_TRUE(SameRows(model, ScanSince(*shard->table(0), 0)));
  EXPECT_EQ(shard->TotalTableStats().export_full_scans, 0);
}

proto::TablesConfig OneTable(const std::string& extra) {
  auto t = ParseTablesConfig(R"(
    tables { name: "emb" dim: 4 initializer { kind: UNIFORM scale: 0.1 }
             optimizer { adagrad { learning_rate: 0.1 } } )" +
                                 extra + " }",
                             "t");
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

void PushKeys(ParameterShard* shard, const std::vector<uint64_t>& keys) {
  const std::vector<float> grads(keys.size() * 4, 0.25f);
  ASSERT_TRUE(shard->HandlePush(0, 4, keys.data(), keys.size(), grads.data()).ok());
}

// The exporter's cadence (a full export, then deltas at its cursor, with
// retries) never scans rows; an older cursor does, and is counted.
TEST(ExportLogTest, NormalCadenceNeverScansAndOldCursorIsCounted) {
  auto shard = std::move(ParameterShard::Create(OneTable(""), 8)).value();
  std::mt19937_64 rng(11);
  std::vector<uint64_t> keys(3000);
  for (uint64_t i = 0; i < keys.size(); ++i) keys[i] = i * 7919;
  PushKeys(shard.get(), keys);
  uint32_t cursor = 0, previous = 0, now = 0;
  cursor = shard->ExportChanged(
      0, [](const ExportedTable&) {});  // the first (full) export starts the logs
  for (int e = 0; e < 30; ++e) {
    std::vector<uint64_t> some(200);
    for (auto& k : some) k = keys[rng() % keys.size()];
    PushKeys(shard.get(), some);
    const Rows want = ScanSince(*shard->table(0), cursor);
    const std::vector<Exported> got = ExportVia(shard.get(), cursor, &now, 1);
    ASSERT_TRUE(SameRows(got[0].rows, want));
    ASSERT_LE(want.size(), 2 * some.size());  // this push, and the last if it was not published
    if (e % 4 == 3) continue;                 // failed publish: the same cursor again
    previous = cursor;
    cursor = now;
  }
  EXPECT_EQ(shard->TotalTableStats().export_full_scans, 0);
  // A full export in between (since 0) scans but is not a fallback, and
  // the next delta still walks the logs.
  now = shard->ExportChanged(0, [](const ExportedTable&) {});
  PushKeys(shard.get(), {keys[1], keys[2]});
  ExportVia(shard.get(), cursor, &now, 1);
  EXPECT_EQ(shard->TotalTableStats().export_full_scans, 0);
  // A cursor older than the logs' floors (cursor is their floor now) falls
  // back to a scan in every partition that holds rows, and is still exact.
  ASSERT_LT(previous, cursor);
  const Rows want = ScanSince(*shard->table(0), previous);
  const std::vector<Exported> got = ExportVia(shard.get(), previous, &now, 1);
  EXPECT_TRUE(SameRows(got[0].rows, want));
  EXPECT_EQ(shard->TotalTableStats().export_full_scans, 8);
  EXPECT_EQ(shard->TotalTableStats().export_log_overflows, 0);
}

// Churn beyond the bound (max(2 x rows, 4096) keys) drops a partition's
// log; the next delta scans it (counted), is exact, and starts a new log.
TEST(ExportLogTest, OverflowedLogFallsBackToScanAndRestarts) {
  auto shard = std::move(ParameterShard::Create(OneTable("eviction { max_rows: 50 }"), 1)).value();
  uint32_t cursor = 0, now = 0;
  PushKeys(shard.get(), {1, 2, 3});
  cursor = shard->ExportChanged(0, [](const ExportedTable&) {});
  // 6000 new keys into 50 rows: every one is logged (a new row), so the
  // log passes 4096 keys.
  for (uint64_t base = 100; base < 6100; base += 500) {
    std::vector<uint64_t> fresh(500);
    for (uint64_t i = 0; i < fresh.size(); ++i) fresh[i] = base + i;
    PushKeys(shard.get(), fresh);
  }
  EXPECT_EQ(shard->TotalTableStats().export_log_overflows, 1);
  Rows want = ScanSince(*shard->table(0), cursor);
  std::vector<Exported> got = ExportVia(shard.get(), cursor, &now, 1);
  EXPECT_TRUE(SameRows(got[0].rows, want));
  EXPECT_GT(got[0].deleted.size(), 5000u);
  EXPECT_EQ(shard->TotalTableStats().export_full_scans, 1);
  cursor = now;
  PushKeys(shard.get(), {7, 8});
  want = ScanSince(*shard->table(0), cursor);
  got = ExportVia(shard.get(), cursor, &now, 1);
  EXPECT_TRUE(SameRows(got[0].rows, want));
  EXPECT_EQ(want.size(), 2u);
  EXPECT_EQ(shard->TotalTableStats().export_full_scans, 1);  // the new log answered
}

// TableStats::bytes counts the log; a table no exporter reads keeps none.
TEST(ExportLogTest, LogMemoryIsCountedAndStartsWithTheFirstExport) {
  auto shard = std::move(ParameterShard::Create(OneTable(""), 4)).value();
  std::vector<uint64_t> keys(20000);
  for (uint64_t i = 0; i < keys.size(); ++i) keys[i] = i;
  PushKeys(shard.get(), keys);
  const int64_t before = shard->TotalTableStats().bytes;
  PushKeys(shard.get(), keys);
  EXPECT_EQ(shard->TotalTableStats().bytes, before);  // no exporter: no log
  uint32_t now = 0;
  now =
      shard->ExportChanged(0, [](const ExportedTable&) {});  // starts the logs, empty (floor = now)
  const int64_t started = shard->TotalTableStats().bytes;
  PushKeys(shard.get(), keys);
  EXPECT_GE(shard->TotalTableStats().bytes,
            started + static_cast<int64_t>(keys.size() * sizeof(uint64_t)));
  const std::vector<Exported> got = ExportVia(shard.get(), now, &now, 1);
  EXPECT_EQ(got[0].rows.size(), keys.size());
}

}  // namespace
}  // namespace freshet
