// Checkpoints on a failing disk (common/file_io.h fault injection): a
// persistent write error fails the checkpoint with the path and errno and
// leaves CHECKPOINT_LATEST and the previous checkpoint restorable; a
// transient one is retried (counted) and the checkpoint completes. The
// file operations are those the job runs (server rows, MANIFEST,
// CHECKPOINT_LATEST), in the protocol's order.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cerrno>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/file_io.h"
#include "server/table_io.h"
#include "worker/checkpoint.h"

namespace freshet {
namespace {

namespace fs = std::filesystem;

proto::TablesConfig Tables() {
  auto t = ParseTablesConfig(R"(
    tables { name: "items" dim: 3 optimizer { adagrad { learning_rate: 0.1 } }
             eviction { max_rows: 16 } }
  )",
                             "t");
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

std::map<uint64_t, std::vector<float>> Rows(const ParameterShard& shard) {
  std::map<uint64_t, std::vector<float>> rows;
  shard.table(0)->ForEach([&](uint64_t key, const float* w, const float*, const RowMeta& m) {
    if (m.version != 0) rows[key] = std::vector<float>(w, w + 3);
  });
  return rows;
}

class CheckpointFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/ckpt_fault_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    FileWriteRetryPolicy p;
    p.attempts = 3;
    p.first_backoff = std::chrono::milliseconds(1);
    p.max_backoff = std::chrono::milliseconds(2);
    SetFileWriteRetryPolicy(p);
    FileFaultInjector::Global().Clear();
    shard_ = std::move(ParameterShard::Create(Tables(), 2)).value();
    Push(1, 12);
    // Checkpoint 1, complete and published.
    ASSERT_TRUE(Checkpoint(1).ok());
    at_first_ = Rows(*shard_);
  }
  void TearDown() override {
    FileFaultInjector::Global().Clear();
    SetFileWriteRetryPolicy(FileWriteRetryPolicy());
    fs::remove_all(root_);
  }

  void Push(uint64_t first, uint64_t last) {
    std::vector<uint64_t> keys;
    for (uint64_t k = first; k <= last; ++k) keys.push_back(k);
    std::vector<float> g(keys.size() * 3, 0.5f);
    ASSERT_TRUE(shard_->HandlePush(0, 3, keys.data(), keys.size(), g.data()).ok());
  }

  // What the job does for checkpoint `id` (incremental after the first):
  // the server's rows, then MANIFEST, then CHECKPOINT_LATEST.
  Status Checkpoint(int64_t id) {
    const std::string dir = CheckpointDir(root_, id);
    fs::create_directories(dir);
    const uint32_t now = shard_->version();
    FRESHET_RETURN_IF_ERROR(
        SaveShardRows(*shard_, dir + "/" + ShardFileName(0, 1), id == 1 ? 0 : saved_));
    saved_ = now;
    CheckpointManifest m;
    m.id = id;
    m.step = id * 10;
    m.parent = id == 1 ? 0 : id - 1;
    m.num_servers = 1;
    m.num_workers = 1;
    FRESHET_RETURN_IF_ERROR(WriteManifest(dir, &m));
    return PublishCheckpoint(root_, id, 5);
  }

  std::map<uint64_t, std::vector<float>> Restored() {
    auto chain = ResolveRestoreChain(root_);
    EXPECT_TRUE(chain.ok()) << chain.status();
    auto shard = std::move(ParameterShard::Create(Tables(), 2)).value();
    if (!chain.ok()) return {};
    for (const auto& d : *chain) EXPECT_TRUE(LoadModelRows(d, shard.get()).ok());
    return Rows(*shard);
  }

  void ExpectOnlyFirstCheckpoint() {
    auto latest = LatestCheckpointId(root_);
    ASSERT_TRUE(latest.ok()) << latest.status();
    EXPECT_EQ(*latest, 1);
    auto chain = ResolveRestoreChain(root_);
    ASSERT_TRUE(chain.ok()) << chain.status();
    ASSERT_EQ(chain->size(), 1u);
    EXPECT_EQ(chain->front(), CheckpointDir(root_, 1));
    EXPECT_EQ(Restored(), at_first_);
    for (const auto& e : fs::recursive_directory_iterator(root_)) {
      EXPECT_NE(e.path().extension().string(), ".tmp") << e.path().string();
    }
  }

  std::string root_;
  std::unique_ptr<ParameterShard> shard_;
  uint32_t saved_ = 0;
  std::map<uint64_t, std::vector<float>> at_first_;
};

TEST_F(CheckpointFaultTest, PersistentDiskFullFailsTheCheckpointAndKeepsTheLastGoodOne) {
  Push(5, 30);  // updates and evictions
  const FileWriteCounters before = GetFileWriteCounters();
  FileFaultInjector::Global().Set("ckpt-2/shard-", ENOSPC, -1, FileOp::kWrite);
  Status st = Checkpoint(2);
  ASSERT_FALSE(st.ok());
  const std::string path = CheckpointDir(root_, 2) + "/" + ShardFileName(0, 1) + ".tmp";
  EXPECT_NE(st.message().find(path + ": write failed: No space left on device (ENOSPC)"),
            std::string::npos)
      << st;
  EXPECT_EQ(GetFileWriteCounters().failures - before.failures, 1);
  EXPECT_EQ(GetFileWriteCounters().retries - before.retries, 2);
  EXPECT_FALSE(fs::exists(CheckpointDir(root_, 2) + "/MANIFEST"));
  ExpectOnlyFirstCheckpoint();
}

TEST_F(CheckpointFaultTest, ManifestOrPointerWriteFailureKeepsTheLastGoodOne) {
  Push(5, 30);
  FileFaultInjector::Global().Set("ckpt-2/MANIFEST", EROFS, -1, FileOp::kOpen);
  Status st = Checkpoint(2);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("MANIFEST.tmp: open failed: Read-only file system (EROFS)"),
            std::string::npos)
      << st;
  ExpectOnlyFirstCheckpoint();

  // The pointer's rename fails: checkpoint 3 is complete but not published.
  FileFaultInjector::Global().Set("CHECKPOINT_LATEST", EIO, -1, FileOp::kRename);
  st = Checkpoint(3);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("CHECKPOINT_LATEST: rename failed: Input/output error (EIO)"),
            std::string::npos)
      << st;
  ExpectOnlyFirstCheckpoint();
}

TEST_F(CheckpointFaultTest, TransientFaultsAreRetriedAndTheCheckpointCompletes) {
  Push(5, 30);
  const FileWriteCounters before = GetFileWriteCounters();
  FileFaultInjector::Global().Set("ckpt-2/", ENOSPC, 2, FileOp::kWrite);
  Status st = Checkpoint(2);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(GetFileWriteCounters().retries - before.retries, 2);
  EXPECT_EQ(GetFileWriteCounters().failures - before.failures, 0);
  auto latest = LatestCheckpointId(root_);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(*latest, 2);
  EXPECT_EQ(Restored(), Rows(*shard_));
}

}  // namespace
}  // namespace freshet
