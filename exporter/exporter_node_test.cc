// The exporter's freshness clocks: what the workers report (WATERMARK,
// DENSE_UPDATE, EXPORT_FINAL) reaches the manifest as the minimum over the
// workers that trained something, per clock, skipping unknown (0) clocks.
// An in-process server, exporter and three workers.
#include "exporter/exporter_node.h"

#include <glog/logging.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/config.h"
#include "common/ps_wire.h"
#include "common/transport.h"
#include "exporter/export_dir.h"
#include "exporter/model_loader.h"
#include "server/parameter_shard.h"
#include "server/server_node.h"

namespace freshet {
namespace {

using std::chrono::milliseconds;

class ExporterNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/exporter_node_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // A job with one SGD table "items" of `dim`, exporting to dir_/export
  // every 0.02 s, fulls every `full_interval_s`, two chains retained.
  proto::JobConfig ExportJob(const std::string& name, int dim, float full_interval_s) const {
    proto::JobConfig job;
    job.set_name(name);
    auto* t = job.mutable_tables()->add_tables();
    t->set_name("items");
    t->set_dim(dim);
    t->mutable_optimizer()->mutable_sgd()->set_learning_rate(1);
    job.mutable_export_()->set_dir(dir_ + "/export");
    job.mutable_export_()->set_interval_s(0.02f);
    job.mutable_export_()->set_full_interval_s(full_interval_s);
    job.mutable_export_()->set_retain_full(2);
    return job;
  }
  std::string dir_;
};

// A cluster of one server, `workers` workers and an exporter.
proto::ClusterConfig Cluster(int workers) {
  auto cluster = ParseClusterConfig(
      "name: \"exporter-test\" roles { role: SERVER count: 1 } "
      "roles { role: WORKER count: " +
          std::to_string(workers) + " } roles { role: EXPORTER count: 1 }",
      "cluster");
  CHECK(cluster.ok()) << cluster.status();
  return *cluster;
}

// The server and the exporter of `layout`, in process, running from
// construction; the test plays the workers (hub endpoints).
struct InProcessExport {
  InProcessExport(const ClusterLayout& layout, const proto::JobConfig& job)
      : shard(std::move(ParameterShard::Create(job.tables(), 2)).value()),
        hub(layout.world_size()),
        server_node(hub.endpoint(layout.ServerRank(0)), layout, shard.get(), 1, milliseconds(5000)),
        exporter_node(hub.endpoint(layout.ExporterRank(0)), layout, job, milliseconds(5000)),
        server_thread([this] { server_status = server_node.Run(); }),
        exporter_thread([this] { exporter_status = exporter_node.Run(); }) {}
  // A test that stopped early: the hub's shutdown ends both.
  ~InProcessExport() {
    if (exporter_thread.joinable()) hub.ShutdownAll();
    (void)Finish();  // a test that asserts it called Finish() itself
  }
  // Waits for the exporter (it returns after EXPORT_FINAL) and stops the
  // server; the exporter's status.
  Status Finish() {
    if (exporter_thread.joinable()) exporter_thread.join();
    if (server_thread.joinable()) {
      server_node.Stop();
      hub.ShutdownAll();
      server_thread.join();
    }
    return exporter_status;
  }

  std::unique_ptr<ParameterShard> shard;
  InProcessHub hub;
  ServerNode server_node;
  ExporterNode exporter_node;
  Status server_status, exporter_status;
  std::thread server_thread, exporter_thread;
};

TEST_F(ExporterNodeTest, ManifestCarriesTheMinimumOfEachFreshnessClock) {
  const ClusterLayout layout(Cluster(3));
  const int exporter = layout.ExporterRank(0);

  const proto::JobConfig job = ExportJob("clocks", 2, 3600);

  InProcessExport cluster(layout, job);
  InProcessHub& hub = cluster.hub;

  auto send = [&](int worker, MsgType type, int64_t watermark, int64_t wall_ms,
                  int64_t label_wall_ms) {
    const TrainingClocks clocks{0, watermark, wall_ms, label_wall_ms};
    Message m;
    if (type == MsgType::kWatermark) {
      m = EncodeWatermark(clocks);
    } else {
      const float dense[3] = {0.5f, 1.5f, 2.5f};
      m = EncodeDenseUpdate(DenseUpdate{clocks, dense, 3}, type == MsgType::kExportFinal);
    }
    m.meta.request_id = 1;
    ASSERT_TRUE(hub.endpoint(layout.WorkerRank(worker))->Send(exporter, std::move(m)).ok());
  };
  auto wait_for_manifest = [&](const std::function<bool(const proto::ExportManifest&)>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    proto::ExportManifest last;
    while (std::chrono::steady_clock::now() < deadline) {
      auto m = ReadLatestManifest(dir_ + "/export");
      if (m.ok()) {
        last = *m;
        if (done(*m)) return true;
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
    ADD_FAILURE() << "last manifest: watermark " << last.watermark() << " ingest_wall_ms "
                  << last.ingest_wall_ms() << " label_wall_ms " << last.label_wall_ms();
    return false;
  };

  // Worker 2 trained nothing yet (watermark 0): it does not count. Worker 1
  // has the oldest read clock, worker 0 the oldest label clock.
  send(2, MsgType::kWatermark, 0, 100, 100);
  send(1, MsgType::kWatermark, 900, 1700000004000, 1700000009000);
  send(0, MsgType::kDenseUpdate, 1000, 1700000005000, 1700000006000);
  EXPECT_TRUE(wait_for_manifest([](const proto::ExportManifest& m) {
    return m.watermark() == 900 && m.ingest_wall_ms() == 1700000004000 &&
           m.label_wall_ms() == 1700000006000;
  }));
  // Worker 2 trained, but its clocks are unknown (0, e.g. restored
  // examples): the watermark counts it, the clocks skip it.
  send(2, MsgType::kWatermark, 950, 0, 0);
  send(1, MsgType::kWatermark, 1100, 1700000007000, 1700000009500);
  EXPECT_TRUE(wait_for_manifest([](const proto::ExportManifest& m) {
    return m.watermark() == 950 && m.ingest_wall_ms() == 1700000005000 &&
           m.label_wall_ms() == 1700000006000;
  }));

  // EXPORT_FINAL carries worker 0's gathered minimum; the last manifest has it.
  send(0, MsgType::kExportFinal, 1200, 1700000010000, 1700000011000);
  StatusOr<Message> resp = hub.endpoint(layout.WorkerRank(0))->Recv(milliseconds(10000));
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_TRUE(DecodeExportFinalResponse(*resp).ok());
  const Status exporter_status = cluster.Finish();
  EXPECT_TRUE(exporter_status.ok()) << exporter_status;
  auto m = ReadLatestManifest(dir_ + "/export");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->watermark(), 1200);
  EXPECT_EQ(m->ingest_wall_ms(), 1700000010000);
  EXPECT_EQ(m->label_wall_ms(), 1700000011000);
}

// export.full_source COMPACT: after the first full (collected from the
// server), the periodic fulls are compacted from the chain on the
// exporter's own thread while deltas go on; every adopted manifest keeps
// the lineage of that first full, and the model it loads equals the
// server's rows. Pushes run throughout.
TEST_F(ExporterNodeTest, CompactsFullsFromTheChainWhileDeltasGoOn) {
  const ClusterLayout layout(Cluster(1));
  const int exporter = layout.ExporterRank(0), worker = layout.WorkerRank(0);

  proto::JobConfig job = ExportJob("compact", 4, 0.2f);
  auto* t = job.mutable_tables()->add_tables();
  t->set_name("half");
  t->set_dim(2);
  t->set_storage(proto::TableConfig::FP16);
  t->mutable_optimizer()->mutable_sgd()->set_learning_rate(0.5f);
  const std::string export_dir = job.export_().dir();
  ASSERT_EQ(job.export_().full_source(), proto::ExportConfig::COMPACT);  // the default

  InProcessExport cluster(layout, job);
  InProcessHub& hub = cluster.hub;
  ParameterShard* shard = cluster.shard.get();
  auto send_dense = [&](bool final) {
    const float dense[2] = {0.25f, final ? 2.0f : 1.0f};
    Message m = EncodeDenseUpdate(DenseUpdate{TrainingClocks{1, 1000, 0, 0}, dense, 2}, final);
    m.meta.request_id = 7;
    ASSERT_TRUE(hub.endpoint(worker)->Send(exporter, std::move(m)).ok());
  };
  send_dense(false);

  // Pushes on both tables, each round touching new and old keys, while
  // the exporter publishes; readers follow.
  std::vector<uint64_t> lineages;
  std::set<std::string> fulls_seen;
  std::shared_ptr<const LoadedExport> follower;
  for (int round = 0; round < 60; ++round) {
    for (int table = 0; table < 2; ++table) {
      const uint32_t dim = table == 0 ? 4 : 2;
      std::vector<uint64_t> keys;
      for (int k = 0; k < 50; ++k) keys.push_back(static_cast<uint64_t>(round * 37 + k * 11));
      std::vector<float> grads(keys.size() * dim, 0.125f * static_cast<float>(round % 5 + 1));
      ASSERT_TRUE(shard->HandlePush(table, dim, keys.data(), keys.size(), grads.data(), 1000).ok());
    }
    std::this_thread::sleep_for(milliseconds(10));
    auto m = ReadLatestManifest(export_dir);
    if (m.ok()) {
      lineages.push_back(m->lineage());
      fulls_seen.insert(m->full().name());
      auto next = LoadLatestExportIncremental(export_dir, follower);
      if (next.ok()) follower = *next;  // a retired file mid-load: next time
    }
  }
  // Pushes stopped: wait for a compacted full made after the last push.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  uint64_t after = 0;
  {
    auto m = ReadLatestManifest(export_dir);
    ASSERT_TRUE(m.ok()) << m.status();
    after = m->version();
  }
  std::shared_ptr<const LoadedExport> fresh;
  while (std::chrono::steady_clock::now() < deadline) {
    auto m = ReadLatestManifest(export_dir);
    if (m.ok() && m->full().version() > after) {
      auto loaded = LoadLatestExport(export_dir);
      if (loaded.ok()) {
        fresh = *loaded;
        break;
      }
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_NE(fresh, nullptr) << "no compacted full after the pushes";
  EXPECT_EQ(fresh->manifest.lineage(), 1u) << "the first (collected) full's lineage";
  auto followed = LoadLatestExportIncremental(export_dir, follower);
  ASSERT_TRUE(followed.ok()) << followed.status();
  for (const auto& loaded : {fresh, *followed}) {
    for (int table = 0; table < 2; ++table) {
      const EmbeddingTable* st = shard->table(table);
      const LoadedTable& lt = loaded->tables.at(st->config().name());
      EXPECT_EQ(static_cast<int64_t>(lt.size()), st->size()) << st->config().name();
      std::vector<float> row(static_cast<size_t>(st->dim()));
      st->ForEach([&](uint64_t key, const float* w, const float*, const RowMeta&) {
        ASSERT_TRUE(lt.Lookup(key, row.data())) << key;
        for (int j = 0; j < st->dim(); ++j) EXPECT_EQ(row[j], w[j]) << key;
      });
    }
    EXPECT_EQ(loaded->dense, (std::vector<float>{0.25f, 1.0f}));
  }
  // Every manifest seen while training was on the first full's lineage.
  for (uint64_t l : lineages) EXPECT_EQ(l, 1u);
  EXPECT_GE(fulls_seen.size(), 2u) << "a compacted full was adopted while pushes ran";

  send_dense(true);
  StatusOr<Message> resp = hub.endpoint(worker)->Recv(milliseconds(30000));
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_TRUE(DecodeExportFinalResponse(*resp).ok());
  const Status exporter_status = cluster.Finish();
  EXPECT_TRUE(exporter_status.ok()) << exporter_status;
  const ExporterStats& stats = cluster.exporter_node.stats();
  EXPECT_EQ(stats.fulls, 1) << "collected: only the first";
  EXPECT_GE(stats.compactions, 2);
  EXPECT_EQ(stats.failed_compactions, 0);
  EXPECT_GT(stats.deltas, 20);

  // The last full is compacted from the chain after the final delta: the
  // final delta's version, on the same lineage, with nothing left to apply
  // (a reader at that version loads nothing: compactor_test
  // PublishCompactedRewritesThePublishedVersionOnItsLineage).
  auto last = ReadLatestManifest(export_dir);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->lineage(), 1u);
  EXPECT_EQ(last->deltas_size(), 0);
  EXPECT_EQ(last->full().version(), last->version()) << "compacted at the final delta";
  auto final_model = LoadLatestExportIncremental(export_dir, *followed);
  ASSERT_TRUE(final_model.ok()) << final_model.status();
  auto from_scratch = LoadLatestExport(export_dir);
  ASSERT_TRUE(from_scratch.ok()) << from_scratch.status();
  for (const auto& loaded : {*final_model, *from_scratch}) {
    EXPECT_EQ(loaded->dense, (std::vector<float>{0.25f, 2.0f}));
    for (int table = 0; table < 2; ++table) {
      const EmbeddingTable* st = shard->table(table);
      const LoadedTable& lt = loaded->tables.at(st->config().name());
      EXPECT_EQ(static_cast<int64_t>(lt.size()), st->size()) << st->config().name();
    }
  }
}

// full_source SERVERS: the last full is collected from the servers (a new
// lineage), after a final delta.
TEST_F(ExporterNodeTest, ServersSourceCollectsTheFinalFull) {
  const ClusterLayout layout(Cluster(1));
  const int exporter = layout.ExporterRank(0), worker = layout.WorkerRank(0);
  proto::JobConfig job = ExportJob("servers", 2, 3600);
  job.mutable_export_()->set_full_source(proto::ExportConfig::SERVERS);
  const std::string export_dir = job.export_().dir();
  InProcessExport cluster(layout, job);
  auto send_dense = [&](bool final) {
    const float dense[1] = {final ? 2.0f : 1.0f};
    Message m = EncodeDenseUpdate(DenseUpdate{TrainingClocks{1, 1000, 0, 0}, dense, 1}, final);
    m.meta.request_id = 3;
    ASSERT_TRUE(cluster.hub.endpoint(worker)->Send(exporter, std::move(m)).ok());
  };
  send_dense(false);
  const uint64_t keys[2] = {5, 9};
  const float grads[4] = {0.5f, 0.5f, 0.25f, 0.25f};
  ASSERT_TRUE(cluster.shard->HandlePush(0, 2, keys, 2, grads, 1000).ok());
  std::this_thread::sleep_for(milliseconds(100));
  send_dense(true);
  StatusOr<Message> resp = cluster.hub.endpoint(worker)->Recv(milliseconds(30000));
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_TRUE(DecodeExportFinalResponse(*resp).ok());
  EXPECT_TRUE(cluster.Finish().ok());
  EXPECT_EQ(cluster.exporter_node.stats().fulls, 2) << "the first and the last, collected";
  EXPECT_EQ(cluster.exporter_node.stats().compactions, 0);
  auto last = ReadLatestManifest(export_dir);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->deltas_size(), 0);
  EXPECT_EQ(last->lineage(), last->version()) << "a collected full starts a lineage";
  auto loaded = LoadLatestExport(export_dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->tables.at("items").size(), 2u);
  EXPECT_EQ((*loaded)->dense, (std::vector<float>{2.0f}));
}

}  // namespace
}  // namespace freshet
