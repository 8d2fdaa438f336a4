// Compaction (exporter/compactor.h) and the lineage it keeps: a compacted
// full equals the chain's model at its version; the manifest that adopts
// it lists only the deltas after it; readers on the lineage go on without
// reading it (model_loader.h), readers behind it load it; a full published
// meanwhile makes the compaction stale.
#include "exporter/compactor.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/file_io.h"
#include "exporter/export_dir.h"
#include "exporter/internal/export_testing.h"
#include "exporter/model_loader.h"
#include "exporter/snapshot_format.h"

namespace freshet {
namespace {

using testing_internal::ListDir;
using testing_internal::ReadBytes;
using testing_internal::Rows;
using testing_internal::TempDir;
using testing_internal::WriteBytes;

using TableRows = std::map<uint64_t, std::vector<float>>;
using ModelRows = std::map<std::string, TableRows>;

struct TableSpec {
  const char* name;
  int dim;
  proto::TableConfig::Storage storage;
};
const TableSpec kTables[] = {{"user", 4, proto::TableConfig::FP32},
                             {"item", 8, proto::TableConfig::FP16},
                             {"wide", 1, proto::TableConfig::FP32}};

proto::JobConfig Job() {
  proto::JobConfig job;
  job.set_name("compaction-test");
  for (const TableSpec& s : kTables) {
    auto* t = job.mutable_tables()->add_tables();
    t->set_name(s.name);
    t->set_dim(s.dim);
    t->set_storage(s.storage);
  }
  return job;
}

// A chain written with random snapshots, and the model it must load to
// after each version (upserts replace rows, deletions first).
class Chain {
 public:
  Chain(const std::string& dir, uint64_t seed,
        proto::ExportConfig::Durability durability = proto::ExportConfig::SYNC)
      : rng_(seed) {
    auto w = ExportWriter::Open(dir, Job(), 3, durability);
    EXPECT_TRUE(w.ok()) << w.status();
    writer_ = std::move(*w);
  }
  ExportWriter* writer() { return writer_.get(); }
  const ModelRows& model() const { return model_; }
  const std::vector<float>& dense() const { return dense_; }
  uint64_t version() const { return version_; }

  void Publish(Snapshot::Kind kind) {
    Snapshot s;
    s.kind = kind;
    s.version = ++version_;
    s.watermark = 1700000000 + static_cast<int64_t>(version_);
    s.has_dense = true;
    dense_ = {static_cast<float>(version_), 0.5f};
    s.dense = dense_;
    if (kind == Snapshot::Kind::kFull) model_.clear();
    for (const TableSpec& spec : kTables) {
      SnapshotTable& t = s.tables.emplace_back();
      t.name = spec.name;
      t.dim = spec.dim;
      TableRows& rows = model_[spec.name];
      const int n = kind == Snapshot::Kind::kFull ? 300 : Uniform(0, 40);
      if (kind == Snapshot::Kind::kDelta) {
        for (int i = Uniform(0, 10); i > 0; --i) {
          const uint64_t key = Key();  // present or not: both are fine
          t.deleted.push_back(key);
          rows.erase(key);
        }
      }
      for (int i = 0; i < n; ++i) {
        const uint64_t key = Key();
        std::vector<float> v(static_cast<size_t>(spec.dim));
        // Multiples of 1/8 below 64: exact in fp16, so 16-bit tables
        // compare exactly.
        for (float& x : v) x = static_cast<float>(Uniform(-512, 512)) / 8.0f;
        t.keys.push_back(key);
        t.values.insert(t.values.end(), v.begin(), v.end());
        rows[key] = v;  // a key upserted twice keeps its last row
      }
    }
    const Status st = writer_->Publish(s);
    EXPECT_TRUE(st.ok()) << st;
  }

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  uint64_t Key() { return static_cast<uint64_t>(Uniform(1, 600)) * 0x9E3779B97F4A7C15ull; }

  std::mt19937_64 rng_;
  std::unique_ptr<ExportWriter> writer_;
  uint64_t version_ = 0;
  ModelRows model_;
  std::vector<float> dense_;
};

void ExpectRows(const LoadedExport& e, const ModelRows& want, const std::vector<float>& dense) {
  EXPECT_EQ(e.dense, dense);
  for (const TableSpec& spec : kTables) {
    auto it = e.tables.find(spec.name);
    ASSERT_TRUE(it != e.tables.end()) << spec.name;
    auto w = want.find(spec.name);
    EXPECT_EQ(Rows(it->second), w == want.end() ? TableRows() : w->second) << spec.name;
  }
}

TEST(CompactionTest, CompactedFullEqualsTheChainAndReadersOnTheLineageDoNotReadIt) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    TempDir dir;
    Chain chain(dir.path(), seed);
    chain.Publish(Snapshot::Kind::kFull);
    chain.Publish(Snapshot::Kind::kDelta);
    auto behind = LoadLatestExport(dir.path());  // a reader that will fall behind
    ASSERT_TRUE(behind.ok()) << behind.status();
    for (int i = 0; i < 4; ++i) chain.Publish(Snapshot::Kind::kDelta);
    auto current = LoadLatestExport(dir.path());  // a reader that keeps up
    ASSERT_TRUE(current.ok()) << current.status();
    const ModelRows at_v = chain.model();
    const std::vector<float> dense_v = chain.dense();
    const uint64_t v = chain.version();

    proto::ExportManifest m;
    const std::string name = chain.writer()->BeginCompaction(&m);
    ASSERT_EQ(name, SnapshotFileName(Snapshot::Kind::kFull, v));
    EXPECT_EQ(m.version(), v);
    EXPECT_EQ(m.lineage(), 1u);
    // Only one at a time.
    proto::ExportManifest again;
    EXPECT_EQ(chain.writer()->BeginCompaction(&again), "");
    // The chain moves on while the compaction runs (and retention runs).
    chain.Publish(Snapshot::Kind::kDelta);

    CompactionStats stats;
    auto entry = CompactChain(dir.path(), m, name, &stats);
    ASSERT_TRUE(entry.ok()) << entry.status();
    EXPECT_EQ(entry->version(), v);
    auto file = ReadSnapshotFileForEntry(dir.file(name), *entry);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_EQ(file->kind, Snapshot::Kind::kFull);
    EXPECT_EQ(file->version, v);
    EXPECT_EQ(file->dense, dense_v);
    int64_t rows = 0;
    for (const SnapshotTable& t : file->tables) {
      TableRows got;
      for (size_t i = 0; i < t.keys.size(); ++i) {
        got[t.keys[i]].assign(t.values.begin() + i * t.dim, t.values.begin() + (i + 1) * t.dim);
      }
      EXPECT_EQ(got.size(), t.keys.size()) << t.name << ": a key written twice";
      EXPECT_EQ(got, at_v.at(t.name)) << t.name;
      rows += static_cast<int64_t>(t.keys.size());
    }
    EXPECT_EQ(stats.rows, rows);
    EXPECT_EQ(stats.bytes, static_cast<int64_t>(entry->size()));

    ASSERT_TRUE(chain.writer()->AdoptCompactedFull(*entry).ok());
    chain.Publish(Snapshot::Kind::kDelta);
    const proto::ExportManifest& now = chain.writer()->manifest();
    EXPECT_EQ(now.full().name(), name);
    EXPECT_EQ(now.lineage(), 1u);
    ASSERT_EQ(now.deltas_size(), 2);
    EXPECT_EQ(now.deltas(0).version(), v + 1);
    EXPECT_EQ(now.deltas(1).version(), v + 2);

    // From scratch: the compacted full and two deltas.
    auto fresh = LoadLatestExport(dir.path());
    ASSERT_TRUE(fresh.ok()) << fresh.status();
    ExpectRows(**fresh, chain.model(), chain.dense());
    // A reader at v (on the lineage) and one behind v both get there.
    auto inc = LoadLatestExportIncremental(dir.path(), *current);
    ASSERT_TRUE(inc.ok()) << inc.status();
    ExpectRows(**inc, chain.model(), chain.dense());
    auto caught_up = LoadLatestExportIncremental(dir.path(), *behind);
    ASSERT_TRUE(caught_up.ok()) << caught_up.status();
    ExpectRows(**caught_up, chain.model(), chain.dense());

    // The reader at v never read the compacted full: with it corrupt, its
    // load still works while loads that need the full fail.
    const std::string bytes = ReadBytes(dir.file(name));
    std::string bad = bytes;
    bad[bad.size() / 2] ^= 1;
    WriteBytes(dir.file(name), bad);
    auto inc2 = LoadLatestExportIncremental(dir.path(), *current);
    ASSERT_TRUE(inc2.ok()) << inc2.status();
    ExpectRows(**inc2, chain.model(), chain.dense());
    EXPECT_EQ(LoadLatestExport(dir.path()).status().code(), StatusCode::kDataLoss);
    EXPECT_EQ(LoadLatestExportIncremental(dir.path(), *behind).status().code(),
              StatusCode::kDataLoss);
    WriteBytes(dir.file(name), bytes);
  }
}

// The end of a job: the compacted full of the published version is
// published at once (PublishCompacted): that version's manifest again,
// listing the full alone. A reader at that version loads nothing; a new
// reader reads one file; retention drops the old chain's deltas.
void PublishCompactedRewritesThePublishedVersion(proto::ExportConfig::Durability durability) {
  TempDir dir;
  Chain chain(dir.path(), 11, durability);
  chain.Publish(Snapshot::Kind::kFull);
  for (int i = 0; i < 3; ++i) chain.Publish(Snapshot::Kind::kDelta);
  const uint64_t v = chain.version();
  auto current = LoadLatestExport(dir.path());
  ASSERT_TRUE(current.ok()) << current.status();
  // Nothing adopted yet.
  EXPECT_EQ(chain.writer()->PublishCompacted().code(), StatusCode::kFailedPrecondition);

  proto::ExportManifest m;
  const std::string name = chain.writer()->BeginCompaction(&m);
  ASSERT_FALSE(name.empty());
  CompactionStats stats;
  auto entry = CompactChain(dir.path(), m, name, &stats);
  ASSERT_TRUE(entry.ok()) << entry.status();
  ASSERT_TRUE(chain.writer()->AdoptCompactedFull(*entry).ok());
  const int64_t fsync_ns = ThisThreadFsyncNanos();
  ASSERT_TRUE(chain.writer()->PublishCompacted().ok());
  // It replaces a manifest DURABLE may name (ASYNC): durable before it
  // returns, under either durability, so a power loss leaves it whole.
  EXPECT_GT(ThisThreadFsyncNanos(), fsync_ns);
  ASSERT_TRUE(chain.writer()->WaitDurable().ok());
  if (durability == proto::ExportConfig::ASYNC) {
    EXPECT_EQ(ReadBytes(dir.file("DURABLE")), ManifestFileName(v) + "\n");
  }

  auto latest = ReadLatestManifest(dir.path());
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->version(), v);
  EXPECT_EQ(latest->lineage(), 1u);
  EXPECT_EQ(latest->full().name(), name);
  EXPECT_EQ(latest->deltas_size(), 0);
  EXPECT_EQ(latest->watermark(), 1700000000 + static_cast<int64_t>(v));

  auto inc = LoadLatestExportIncremental(dir.path(), *current);
  ASSERT_TRUE(inc.ok()) << inc.status();
  EXPECT_TRUE((*inc)->incremental) << "a reader at the version reloaded the model";
  ExpectRows(**inc, chain.model(), chain.dense());
  auto fresh = LoadLatestExport(dir.path());
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_FALSE((*fresh)->incremental);
  ExpectRows(**fresh, chain.model(), chain.dense());
  // The chain goes on from the compacted full.
  chain.Publish(Snapshot::Kind::kDelta);
  auto next = LoadLatestExportIncremental(dir.path(), *inc);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_TRUE((*next)->incremental);
  ExpectRows(**next, chain.model(), chain.dense());
  // Adopted once: a second publish has nothing to publish.
  EXPECT_EQ(chain.writer()->PublishCompacted().code(), StatusCode::kFailedPrecondition);
}

TEST(CompactionTest, PublishCompactedRewritesThePublishedVersionOnItsLineage) {
  PublishCompactedRewritesThePublishedVersion(proto::ExportConfig::SYNC);
}

TEST(CompactionTest, PublishCompactedRewritesThePublishedVersionUnderAsyncDurability) {
  PublishCompactedRewritesThePublishedVersion(proto::ExportConfig::ASYNC);
}

TEST(CompactionTest, NothingToCompactWithoutDeltasOrWithoutALineage) {
  TempDir dir;
  Chain chain(dir.path(), 7);
  proto::ExportManifest m;
  EXPECT_EQ(chain.writer()->BeginCompaction(&m), "");  // nothing published
  chain.Publish(Snapshot::Kind::kFull);
  EXPECT_EQ(chain.writer()->BeginCompaction(&m), "");  // a full alone is compact
  chain.Publish(Snapshot::Kind::kDelta);
  const std::string name = chain.writer()->BeginCompaction(&m);
  ASSERT_FALSE(name.empty());
  auto entry = CompactChain(dir.path(), m, name);
  ASSERT_TRUE(entry.ok()) << entry.status();
  ASSERT_TRUE(chain.writer()->AdoptCompactedFull(*entry).ok());
  // Adopted, not yet published: compacting the same version again is moot.
  EXPECT_EQ(chain.writer()->BeginCompaction(&m), "");
  // Adopting what was not begun is refused.
  EXPECT_EQ(chain.writer()->AdoptCompactedFull(*entry).code(), StatusCode::kFailedPrecondition);
}

TEST(CompactionTest, AFullPublishedMeanwhileMakesItStaleAndRetentionRemovesIt) {
  TempDir dir;
  Chain chain(dir.path(), 11);
  chain.Publish(Snapshot::Kind::kFull);
  chain.Publish(Snapshot::Kind::kDelta);
  chain.Publish(Snapshot::Kind::kDelta);
  proto::ExportManifest m;
  const std::string name = chain.writer()->BeginCompaction(&m);
  ASSERT_FALSE(name.empty());
  auto entry = CompactChain(dir.path(), m, name);
  ASSERT_TRUE(entry.ok()) << entry.status();
  chain.Publish(Snapshot::Kind::kFull);  // a new lineage (e.g. collected from the servers)
  EXPECT_TRUE(ListDir(dir.path()).count(name)) << "kept while the compaction is open";
  const Status st = chain.writer()->AdoptCompactedFull(*entry);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st;
  chain.Publish(Snapshot::Kind::kDelta);
  const proto::ExportManifest& now = chain.writer()->manifest();
  EXPECT_EQ(now.full().version(), 4u);
  EXPECT_EQ(now.lineage(), 4u);
  EXPECT_FALSE(ListDir(dir.path()).count(name)) << "a stale compacted full is not retained";
  auto loaded = LoadLatestExport(dir.path());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectRows(**loaded, chain.model(), chain.dense());
}

TEST(CompactionTest, AGeneratorThatDisagreesWithItsCountWritesNoFile) {
  TempDir dir;
  Snapshot s;
  s.kind = Snapshot::Kind::kFull;
  s.version = 3;
  SnapshotTable& t = s.tables.emplace_back();
  t.name = "user";
  t.dim = 2;
  const std::vector<uint64_t> keys = {1, 2, 3};
  const std::vector<float> values = {1, 2, 3, 4, 5, 6};
  t.generated_rows = 4;  // one more than it gives
  t.generate = [&](const SnapshotTable::RowEmitter& emit) {
    emit(keys.data(), values.data(), 2);
    emit(keys.data() + 2, values.data() + 4, 1);
  };
  proto::ExportFile entry;
  const std::string path = dir.file("full-000000000003.snap");
  const Status st = WriteSnapshotFile(s, path, &entry);
  EXPECT_EQ(st.code(), StatusCode::kInternal) << st;
  EXPECT_NE(st.message().find("3 rows written, 4 announced"), std::string::npos) << st;
  EXPECT_TRUE(ListDir(dir.path()).empty());
  t.generated_rows = 3;
  ASSERT_TRUE(WriteSnapshotFile(s, path, &entry).ok());
  auto back = ReadSnapshotFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->tables.at(0).keys, keys);
  EXPECT_EQ(back->tables.at(0).values, values);
}

}  // namespace
}  // namespace freshet
