// Evicted rows reach the serving tier: a server shard with a capacity bound
// evicts rows, the exporter turns its EXPORT_RESPONSE into a delta with
// deletions, and the serving loader drops those keys (serving then scores
// them with the initializer's value, as for any missing key).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/ps_wire.h"
#include "exporter/export_dir.h"
#include "exporter/exporter_node.h"
#include "exporter/model_loader.h"
#include "exporter/snapshot_format.h"
#include "server/parameter_shard.h"
#include "server/server_node.h"

namespace freshet {
namespace {

// The server's EXPORT answer since `since`, decoded as the exporter does and
// added to `snap`; returns the new cursor.
uint32_t AddShardExport(ParameterShard* shard, uint32_t since, Snapshot* snap) {
  const Message reply = ExportReply(shard, 1, ExportRequest{since});
  StatusOr<ExportResponse> rows = DecodeExportResponse(reply);
  EXPECT_TRUE(rows.ok()) << rows.status();
  if (!rows.ok()) return since;
  AddExportRows(*rows, snap);
  return rows->version;
}

Snapshot EmptySnapshot(const proto::JobConfig& job, Snapshot::Kind kind, uint64_t version) {
  Snapshot snap;
  snap.kind = kind;
  snap.version = version;
  for (const auto& t : job.tables().tables()) {
    SnapshotTable st;
    st.name = t.name();
    st.dim = static_cast<int>(t.dim());
    snap.tables.push_back(st);
  }
  return snap;
}

TEST(ExportDeletionTest, EvictedKeysDisappearFromTheServedModel) {
  std::string tmpl = testing::TempDir() + "/export_deletion_XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::string dir = tmpl;
  proto::JobConfig job;
  job.set_name("evict");
  auto* t = job.mutable_tables()->add_tables();
  t->set_name("items");
  t->set_dim(2);
  t->mutable_optimizer()->mutable_sgd()->set_learning_rate(1);
  t->mutable_eviction()->set_max_rows(4);
  auto shard = std::move(ParameterShard::Create(job.tables(), 1)).value();
  const float g[2] = {1, 1};
  for (uint64_t k = 1; k <= 4; ++k) ASSERT_TRUE(shard->HandlePush(0, 2, &k, 1, g, 1000).ok());

  auto writer = ExportWriter::Open(dir, job, 2);
  ASSERT_TRUE(writer.ok()) << writer.status();
  uint32_t since = 0;
  Snapshot full = EmptySnapshot(job, Snapshot::Kind::kFull, 1);
  since = AddShardExport(shard.get(), 0, &full);
  ASSERT_TRUE((*writer)->Publish(full).ok());
  auto loaded = LoadLatestExport(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->tables.at("items").size(), 4u);

  // Two new keys: the table is full, so two old rows are evicted.
  for (uint64_t k = 5; k <= 6; ++k) ASSERT_TRUE(shard->HandlePush(0, 2, &k, 1, g, 1001).ok());
  ASSERT_EQ(shard->table(0)->size(), 4);
  Snapshot delta = EmptySnapshot(job, Snapshot::Kind::kDelta, 2);
  since = AddShardExport(shard.get(), since, &delta);
  ASSERT_EQ(delta.tables[0].deleted.size(), 2u);
  ASSERT_TRUE((*writer)->Publish(delta).ok());

  auto after = LoadLatestExportIncremental(dir, *loaded);
  ASSERT_TRUE(after.ok()) << after.status();
  const LoadedTable& served = (*after)->tables.at("items");
  std::set<uint64_t> live;
  shard->table(0)->ForEach(
      [&](uint64_t key, const float*, const float*, const RowMeta&) { live.insert(key); });
  EXPECT_EQ(served.size(), live.size());
  for (uint64_t k = 1; k <= 6; ++k) {
    EXPECT_EQ(served.Find(k) != nullptr, live.count(k) == 1) << "key " << k;
  }
  for (uint64_t k : delta.tables[0].deleted) EXPECT_EQ(served.Find(k), nullptr) << k;

  // A full snapshot never lists deletions (the writer rejects them), even
  // when the server still has unacknowledged ones.
  for (uint64_t k = 7; k <= 8; ++k) ASSERT_TRUE(shard->HandlePush(0, 2, &k, 1, g, 1002).ok());
  Snapshot full2 = EmptySnapshot(job, Snapshot::Kind::kFull, 3);
  AddShardExport(shard.get(), 0, &full2);
  EXPECT_TRUE(full2.tables[0].deleted.empty());
  EXPECT_TRUE((*writer)->Publish(full2).ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace freshet
