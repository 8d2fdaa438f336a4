// The exporter on a full disk: snapshot writes fail with ENOSPC (injected
// through common/file_io.h) for a while; the exporter logs and counts the
// failed versions and goes on, the serving loader always finds the last
// good version, and once the disk has room again the next version carries
// every row trained meanwhile.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include "common/config.h"
#include "common/file_io.h"
#include "common/ps_wire.h"
#include "common/transport.h"
#include "exporter/exporter_node.h"
#include "exporter/model_loader.h"
#include "server/parameter_shard.h"
#include "server/server_node.h"

namespace freshet {
namespace {

using std::chrono::milliseconds;

class ExporterFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/exporter_fault_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    FileWriteRetryPolicy p;
    p.attempts = 2;
    p.first_backoff = milliseconds(1);
    p.max_backoff = milliseconds(2);
    SetFileWriteRetryPolicy(p);
    FileFaultInjector::Global().Clear();
  }
  void TearDown() override {
    FileFaultInjector::Global().Clear();
    SetFileWriteRetryPolicy(FileWriteRetryPolicy());
    std::filesystem::remove_all(dir_);
  }
  std::string dir_;
};

TEST_F(ExporterFaultTest, DiskFullSkipsVersionsAndServingKeepsTheLastGoodOne) {
  auto cluster = ParseClusterConfig(R"(
    name: "fault"
    roles { role: SERVER count: 1 }
    roles { role: WORKER count: 1 }
    roles { role: EXPORTER count: 1 }
  )",
                                    "cluster");
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  const ClusterLayout layout(*cluster);
  const int server = layout.ServerRank(0), worker = layout.WorkerRank(0);
  const int exporter = layout.ExporterRank(0);

  proto::JobConfig job;
  job.set_name("fault");
  auto* t = job.mutable_tables()->add_tables();
  t->set_name("items");
  t->set_dim(2);
  t->mutable_optimizer()->mutable_sgd()->set_learning_rate(1);
  job.mutable_export_()->set_dir(dir_ + "/export");
  job.mutable_export_()->set_interval_s(0.02f);
  job.mutable_export_()->set_full_interval_s(3600);
  job.mutable_export_()->set_retain_full(2);

  auto shard = std::move(ParameterShard::Create(job.tables(), 2)).value();
  InProcessHub hub(3);
  ServerNode server_node(hub.endpoint(server), layout, shard.get(), 1, milliseconds(5000));
  ExporterNode exporter_node(hub.endpoint(exporter), layout, job, milliseconds(5000));
  Status server_status, exporter_status;
  std::thread server_thread([&] { server_status = server_node.Run(); });
  std::thread exporter_thread([&] { exporter_status = exporter_node.Run(); });
  Transport* me = hub.endpoint(worker);

  const float g[2] = {1, 1};
  auto push = [&](uint64_t first, uint64_t last) {
    for (uint64_t k = first; k <= last; ++k) ASSERT_TRUE(shard->HandlePush(0, 2, &k, 1, g).ok());
  };
  auto send_dense = [&](MsgType type) {
    const float dense[3] = {0.5f, 1.5f, 2.5f};
    Message m = EncodeDenseUpdate(DenseUpdate{TrainingClocks{0, 1000, 1, 0}, dense, 3},
                                  type == MsgType::kExportFinal);
    m.meta.request_id = 1;
    ASSERT_TRUE(me->Send(exporter, std::move(m)).ok());
  };
  // Loads what serving would; returns the version (0: nothing yet).
  uint64_t last_seen = 0;
  auto served = [&]() -> std::shared_ptr<const LoadedExport> {
    auto loaded = LoadLatestExport(dir_ + "/export");
    if (!loaded.ok()) {
      EXPECT_EQ(loaded.status().code(), StatusCode::kNotFound) << loaded.status();
      return nullptr;
    }
    EXPECT_GE((*loaded)->manifest.version(), last_seen);
    last_seen = (*loaded)->manifest.version();
    return *loaded;
  };
  auto wait_for = [&](const std::function<bool(const LoadedExport&)>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      auto m = served();
      if (m != nullptr && done(*m)) return true;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return false;
  };

  push(1, 10);
  send_dense(MsgType::kDenseUpdate);
  ASSERT_TRUE(wait_for([](const LoadedExport& m) { return m.tables.at("items").size() == 10; }));

  // The disk fills up: the next 5 snapshot writes fail (2 attempts per
  // export, so two exports fail whole and the third succeeds on its retry).
  const int64_t injected = FileFaultInjector::Global().injected();
  FileFaultInjector::Global().Set("/export/delta-", ENOSPC, 5, FileOp::kWrite);
  while (FileFaultInjector::Global().injected() == injected)
    std::this_thread::sleep_for(milliseconds(1));
  // A delta is failing now, so nothing newer can be published until the
  // injected faults run out.
  ASSERT_NE(served(), nullptr);
  const uint64_t good = last_seen;
  push(11, 20);
  // While it fails, serving keeps loading the last good version.
  while (FileFaultInjector::Global().injected() - injected < 4) {
    auto m = served();
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->manifest.version(), good);
    std::this_thread::sleep_for(milliseconds(2));
  }
  // Room again: the rows trained during the outage arrive in one version.
  ASSERT_TRUE(wait_for([](const LoadedExport& m) { return m.tables.at("items").size() == 20; }));
  EXPECT_GE(last_seen, good + 3);  // two versions were skipped
  EXPECT_EQ(FileFaultInjector::Global().injected() - injected, 5);
  // No temporary file of a failed write is left behind. The exporter keeps
  // publishing meanwhile, so a listing can catch a write in progress: a
  // leftover is a .tmp that is still there 300 ms later (every later write
  // has a new version, so a new name).
  auto list_tmp = [&] {
    std::set<std::string> v;
    for (const auto& e : std::filesystem::directory_iterator(dir_ + "/export")) {
      if (e.path().extension() == ".tmp") v.insert(e.path().string());
    }
    return v;
  };
  const std::set<std::string> tmp_before = list_tmp();
  std::this_thread::sleep_for(milliseconds(300));
  std::vector<std::string> tmp_files;
  for (const std::string& f : list_tmp()) {
    if (tmp_before.count(f) != 0) tmp_files.push_back(f);
  }
  EXPECT_TRUE(tmp_files.empty()) << tmp_files.front();

  // Training ends: a final full snapshot.
  send_dense(MsgType::kExportFinal);
  StatusOr<Message> resp = me->Recv(milliseconds(10000));
  ASSERT_TRUE(resp.ok()) << resp.status();
  Status final_status = DecodeExportFinalResponse(*resp);
  EXPECT_TRUE(final_status.ok()) << final_status;
  exporter_thread.join();
  EXPECT_TRUE(exporter_status.ok()) << exporter_status;
  EXPECT_EQ(exporter_node.stats().failed_publishes, 2);
  server_node.Stop();
  hub.ShutdownAll();
  server_thread.join();
  auto final_model = served();
  ASSERT_NE(final_model, nullptr);
  EXPECT_EQ(final_model->tables.at("items").size(), 20u);
  EXPECT_EQ(final_model->dense.size(), 3u);
}

}  // namespace
}  // namespace freshet
