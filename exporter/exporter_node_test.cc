// The exporter's freshness clocks: what the workers report (WATERMARK,
// DENSE_UPDATE, EXPORT_FINAL) reaches the manifest as the minimum over the
// workers that trained something, per clock, skipping unknown (0) clocks.
// An in-process server, exporter and three workers.
#include "exporter/exporter_node.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <thread>

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
  std::string dir_;
};

TEST_F(ExporterNodeTest, ManifestCarriesTheMinimumOfEachFreshnessClock) {
  auto cluster = ParseClusterConfig(R"(
    name: "clocks"
    roles { role: SERVER count: 1 }
    roles { role: WORKER count: 3 }
    roles { role: EXPORTER count: 1 }
  )",
                                    "cluster");
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  const ClusterLayout layout(*cluster);
  const int server = layout.ServerRank(0), exporter = layout.ExporterRank(0);

  proto::JobConfig job;
  job.set_name("clocks");
  auto* t = job.mutable_tables()->add_tables();
  t->set_name("items");
  t->set_dim(2);
  t->mutable_optimizer()->mutable_sgd()->set_learning_rate(1);
  job.mutable_export_()->set_dir(dir_ + "/export");
  job.mutable_export_()->set_interval_s(0.02f);
  job.mutable_export_()->set_full_interval_s(3600);
  job.mutable_export_()->set_retain_full(2);

  auto shard = std::move(ParameterShard::Create(job.tables(), 2)).value();
  InProcessHub hub(layout.world_size());
  ServerNode server_node(hub.endpoint(server), layout, shard.get(), 1, milliseconds(5000));
  ExporterNode exporter_node(hub.endpoint(exporter), layout, job, milliseconds(5000));
  Status server_status, exporter_status;
  std::thread server_thread([&] { server_status = server_node.Run(); });
  std::thread exporter_thread([&] { exporter_status = exporter_node.Run(); });

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
  exporter_thread.join();
  EXPECT_TRUE(exporter_status.ok()) << exporter_status;
  server_node.Stop();
  hub.ShutdownAll();
  server_thread.join();
  auto m = ReadLatestManifest(dir_ + "/export");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->watermark(), 1200);
  EXPECT_EQ(m->ingest_wall_ms(), 1700000010000);
  EXPECT_EQ(m->label_wall_ms(), 1700000011000);
}

}  // namespace
}  // namespace freshet
