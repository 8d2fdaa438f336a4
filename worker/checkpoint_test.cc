#include "worker/checkpoint.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace freshet {
namespace {

namespace fs = std::filesystem;

std::string Root(const std::string& name) {
  const std::string d =
      ::testing::TempDir() + "/checkpoint_" + name + "_" + std::to_string(getpid());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A checkpoint directory with a .rows-like file (8-byte trailer) and a text
// file; returns its path.
std::string MakeCheckpoint(const std::string& root, int64_t id, bool with_manifest) {
  const std::string dir = CheckpointDir(root, id);
  fs::create_directories(dir);
  std::ofstream(dir + "/shard-0-of-1.rows", std::ios::binary)
      << "rowsdata" << std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8);
  std::ofstream(dir + "/job.pbtxt") << "name: \"x\"\n";
  std::ofstream(dir + "/dense.bin", std::ios::binary) << "dense-" << id << "ABCDEFGH";
  if (with_manifest) {
    CheckpointManifest m;
    m.id = id;
    m.step = 10 * id;
    m.num_servers = 2;
    m.num_workers = 3;
    m.unix_ms = 1234;
    EXPECT_TRUE(WriteManifest(dir, &m).ok());
    EXPECT_EQ(m.files.size(), 3u);
    EXPECT_EQ(m.files[0].name, "dense.bin");
    EXPECT_EQ(m.files[2].checksum, 0x0807060504030201ull);
  }
  return dir;
}

TEST(CheckpointTest, ManifestRoundTripsAndVerifies) {
  const std::string root = Root("roundtrip");
  const std::string dir = MakeCheckpoint(root, 4, true);
  auto m = VerifyCheckpoint(dir);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->id, 4);
  EXPECT_EQ(m->step, 40);
  EXPECT_EQ(m->num_servers, 2);
  EXPECT_EQ(m->num_workers, 3);
  EXPECT_EQ(m->unix_ms, 1234);
  ASSERT_EQ(m->files.size(), 3u);
  EXPECT_EQ(m->files[2].name, "shard-0-of-1.rows");
  EXPECT_EQ(m->files[2].bytes, 16u);
  EXPECT_EQ(m->TotalBytes(),
            fs::file_size(dir + "/dense.bin") + fs::file_size(dir + "/job.pbtxt") + 16);
}

TEST(CheckpointTest, DamagedCheckpointsAreDataLossNamingTheFile) {
  const std::string root = Root("damaged");
  const std::string dir = MakeCheckpoint(root, 1, true);
  // Same size, different trailer: a file rewritten after the manifest.
  std::ofstream(dir + "/shard-0-of-1.rows", std::ios::binary)
      << "rowsdata" << std::string("\x01\x02\x03\x04\x05\x06\x07\x09", 8);
  Status st = VerifyCheckpoint(dir).status();
  EXPECT_EQ(st.code(), StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("shard-0-of-1.rows: checksum differs"), std::string::npos) << st;
  // A truncated file.
  MakeCheckpoint(root, 2, true);
  fs::resize_file(CheckpointDir(root, 2) + "/dense.bin", 3);
  st = VerifyCheckpoint(CheckpointDir(root, 2)).status();
  EXPECT_EQ(st.code(), StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("dense.bin: 3 bytes"), std::string::npos) << st;
  // A truncated manifest (no end line).
  MakeCheckpoint(root, 3, true);
  const std::string man = CheckpointDir(root, 3) + "/MANIFEST";
  fs::resize_file(man, fs::file_size(man) - 4);
  st = VerifyCheckpoint(CheckpointDir(root, 3)).status();
  EXPECT_EQ(st.code(), StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("truncated"), std::string::npos) << st;
}

// A crash after the data files but before MANIFEST / CHECKPOINT_LATEST:
// the incomplete checkpoint is never what a restore picks.
TEST(CheckpointTest, IncompleteCheckpointIsNeverRestored) {
  const std::string root = Root("incomplete");
  MakeCheckpoint(root, 1, true);
  ASSERT_TRUE(PublishCheckpoint(root, 1, 0).ok());
  const std::string partial = MakeCheckpoint(root, 2, false);  // crashed before MANIFEST
  EXPECT_EQ(VerifyCheckpoint(partial).status().code(), StatusCode::kNotFound);
  auto dir = ResolveRestoreDir(root);
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(*dir, CheckpointDir(root, 1));
  // A plain model directory resolves to itself; an empty one is NotFound.
  EXPECT_EQ(*ResolveRestoreDir(partial), partial);
  EXPECT_EQ(ResolveRestoreDir(Root("empty")).status().code(), StatusCode::kNotFound);
  // The pointer names a checkpoint whose manifest is missing: an error, not
  // a silent fallback.
  ASSERT_TRUE(PublishCheckpoint(root, 2, 0).ok());
  EXPECT_EQ(ResolveRestoreDir(root).status().code(), StatusCode::kNotFound);
  std::ofstream(root + "/CHECKPOINT_LATEST") << "two\n";
  EXPECT_EQ(LatestCheckpointId(root).status().code(), StatusCode::kDataLoss);
}

TEST(CheckpointTest, PublishKeepsTheNewest) {
  const std::string root = Root("keep");
  for (int id = 1; id <= 4; ++id) {
    MakeCheckpoint(root, id, true);
    ASSERT_TRUE(PublishCheckpoint(root, id, 2).ok());
    auto latest = LatestCheckpointId(root);
    ASSERT_TRUE(latest.ok());
    EXPECT_EQ(*latest, id);
  }
  EXPECT_FALSE(fs::exists(CheckpointDir(root, 1)));
  EXPECT_FALSE(fs::exists(CheckpointDir(root, 2)));
  EXPECT_TRUE(fs::exists(CheckpointDir(root, 3)));
  EXPECT_TRUE(fs::exists(CheckpointDir(root, 4)));
  EXPECT_FALSE(fs::exists(root + "/CHECKPOINT_LATEST.tmp"));
}

// Incremental checkpoints: the chain is full first, and pruning keeps the
// parents of the checkpoints it keeps.
TEST(CheckpointTest, IncrementalChainAndPruning) {
  const std::string root = Root("chain");
  for (int id = 1; id <= 5; ++id) {
    const std::string dir = MakeCheckpoint(root, id, false);
    CheckpointManifest m;
    m.id = id;
    m.parent = (id == 1 || id == 4) ? 0 : id - 1;  // 1 <- 2 <- 3, 4 <- 5
    ASSERT_TRUE(WriteManifest(dir, &m).ok());
    ASSERT_TRUE(PublishCheckpoint(root, id, 1).ok());
    if (id == 3) {
      auto chain = ResolveRestoreChain(root);
      ASSERT_TRUE(chain.ok()) << chain.status();
      EXPECT_EQ(*chain, (std::vector<std::string>{CheckpointDir(root, 1), CheckpointDir(root, 2),
                                                  CheckpointDir(root, 3)}));
      EXPECT_EQ(VerifyCheckpoint(CheckpointDir(root, 3))->parent, 2);
    }
  }
  // keep=1 at id 5: 5 and its parent 4 stay; 1-3 are gone.
  for (int id = 1; id <= 3; ++id) EXPECT_FALSE(fs::exists(CheckpointDir(root, id))) << id;
  auto chain = ResolveRestoreChain(root);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(*chain, (std::vector<std::string>{CheckpointDir(root, 4), CheckpointDir(root, 5)}));
  // A lost parent is an error naming it, not a silent partial restore.
  fs::remove(CheckpointDir(root, 4) + "/MANIFEST");
  Status st = ResolveRestoreChain(root).status();
  EXPECT_EQ(st.code(), StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("incremental over " + CheckpointDir(root, 4)), std::string::npos)
      << st;
}

// Background publication: the MANIFEST is written only after wait_written
// returns OK (so it lists the servers' files written meanwhile), then
// CHECKPOINT_LATEST; a failed wait leaves no MANIFEST, keeps the previous
// pointer and is returned by Finish naming the directory.
TEST(CheckpointTest, PublisherWritesManifestOnlyAfterTheFilesAreWritten) {
  const std::string root = Root("publisher");
  MakeCheckpoint(root, 1, true);
  ASSERT_TRUE(PublishCheckpoint(root, 1, 0).ok());
  CheckpointPublisher publisher;
  EXPECT_FALSE(publisher.Finish().has_value());  // none in flight

  const std::string dir = CheckpointDir(root, 2);
  fs::create_directories(dir);
  std::ofstream(dir + "/dense.bin", std::ios::binary) << "dense-2-ABCDEFGH";
  PendingCheckpoint p;
  p.root = root;
  p.dir = dir;
  p.manifest.id = 2;
  p.manifest.step = 20;
  p.manifest.parent = 1;
  p.pause_ms = 3;
  p.copied_bytes = 99;
  p.wait_written = [dir] {
    // A "server" finishing its file while the publisher waits.
    std::ofstream(dir + "/shard-0-of-1.rows", std::ios::binary) << "rows"
                                                                << "12345678";
    return Status::OK();
  };
  publisher.Start(std::move(p));
  EXPECT_TRUE(publisher.in_flight());
  auto done = publisher.Finish();
  ASSERT_TRUE(done.has_value());
  ASSERT_TRUE(done->status.ok()) << done->status;
  EXPECT_FALSE(publisher.in_flight());
  EXPECT_EQ(done->pause_ms, 3);
  EXPECT_EQ(done->copied_bytes, 99);
  EXPECT_GE(done->write_ms, 0);
  ASSERT_EQ(done->manifest.files.size(), 2u);
  EXPECT_EQ(done->manifest.files[1].name, "shard-0-of-1.rows");
  auto verified = VerifyCheckpoint(dir);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->parent, 1);
  EXPECT_EQ(*LatestCheckpointId(root), 2);

  const std::string dir3 = CheckpointDir(root, 3);
  fs::create_directories(dir3);
  PendingCheckpoint q;
  q.root = root;
  q.dir = dir3;
  q.manifest.id = 3;
  q.wait_written = [] { return DeadlineExceeded("server 1 (rank 1) did not finish writing"); };
  publisher.Start(std::move(q));
  done = publisher.Finish();
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->status.code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(done->status.message().find(dir3), std::string::npos) << done->status;
  EXPECT_NE(done->status.message().find("server 1 (rank 1)"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir3 + "/MANIFEST"));
  EXPECT_EQ(*LatestCheckpointId(root), 2);
}

// Input cuts round trip through a checkpoint (listed in the MANIFEST with
// their trailer); damaged ones are DataLoss naming the file; the union of
// the workers' cuts is checked against the job's files.
TEST(CheckpointTest, InputCutRoundTripUnionAndChecks) {
  const std::string root = Root("inputcut");
  const std::string dir = CheckpointDir(root, 1);
  fs::create_directories(dir);
  std::ofstream(root + "/a b.examples") << std::string(1000, 'x');
  std::ofstream(root + "/c.examples") << std::string(500, 'y');
  auto files = DescribeInputFiles({root + "/c.examples", root + "/a b.examples"});
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->size(), 2u);
  EXPECT_EQ((*files)[0].path, root + "/a b.examples");  // sorted; spaces survive
  EXPECT_EQ((*files)[0].bytes, 1000u);
  for (int w = 0; w < 2; ++w) {
    InputCut cut;
    cut.worker = w;
    cut.num_workers = 2;
    cut.step = 60;
    cut.epoch = 1;
    cut.files = *files;
    cut.consumed[0].Add(100 * w, 100 * w + 50);
    cut.consumed[1].Add(10, 20 + w);
    ASSERT_TRUE(WriteInputCut(dir + "/" + InputCutFileName(w), cut).ok());
  }
  CheckpointManifest m;
  m.id = 1;
  m.num_workers = 2;
  ASSERT_TRUE(WriteManifest(dir, &m).ok());
  ASSERT_EQ(m.files.size(), 2u);
  EXPECT_EQ(m.files[0].name, "worker-0.input");
  EXPECT_NE(m.files[0].checksum, 0u);
  ASSERT_TRUE(VerifyCheckpoint(dir).ok());

  auto one = ReadInputCut(dir + "/worker-1.input");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->worker, 1);
  EXPECT_EQ(one->step, 60);
  EXPECT_EQ(one->epoch, 1);
  EXPECT_EQ(one->files, *files);
  EXPECT_EQ(one->consumed[0].intervals(), (std::vector<ByteInterval>{{100, 150}}));

  auto all = LoadInputCut(dir, 2, *files);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->epoch, 1);
  EXPECT_EQ(all->step, 60);
  EXPECT_EQ(all->consumed[0].intervals(), (std::vector<ByteInterval>{{0, 50}, {100, 150}}));
  EXPECT_EQ(all->consumed[1].intervals(), (std::vector<ByteInterval>{{10, 21}}));

  // Another file set, or a changed size: FailedPrecondition naming it.
  std::vector<InputFileId> other = *files;
  other[1].bytes = 501;
  Status st = LoadInputCut(dir, 2, other).status();
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("input file " + root + "/c.examples had 500 bytes, now 501"),
            std::string::npos)
      << st;
  st = LoadInputCut(dir, 2, {(*files)[0]}).status();
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("taken over 2 input files, the job has 1"), std::string::npos) << st;

  // A flipped byte anywhere is DataLoss naming the file.
  const std::string path = dir + "/worker-1.input";
  std::ifstream in(path, std::ios::binary);
  const std::string good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t i = 0; i < good.size(); i += 7) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x20);
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bad;
    Status s = LoadInputCut(dir, 2, *files).status();
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << "byte " << i << ": " << s;
    EXPECT_NE(s.message().find(path), std::string::npos) << s;
  }
  std::ofstream(path, std::ios::binary | std::ios::trunc) << good.substr(0, good.size() / 2);
  EXPECT_EQ(LoadInputCut(dir, 2, *files).status().code(), StatusCode::kDataLoss);
  // No input cuts at all: NotFound (a streaming job's checkpoint).
  fs::remove(dir + "/worker-0.input");
  EXPECT_EQ(LoadInputCut(dir, 2, *files).status().code(), StatusCode::kNotFound);
}

// --resume picks the newest checkpoint that verifies, even unpublished;
// new ids never reuse a directory.
TEST(CheckpointTest, NewestCompleteCheckpointAndNextId) {
  const std::string root = Root("newest");
  EXPECT_EQ(NewestCompleteCheckpoint(root).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(NewestCompleteCheckpoint(root + "/missing").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(*NextCheckpointId(root), 1);
  MakeCheckpoint(root, 1, true);
  ASSERT_TRUE(PublishCheckpoint(root, 1, 0).ok());
  MakeCheckpoint(root, 2, true);   // complete, CHECKPOINT_LATEST not updated (crash)
  MakeCheckpoint(root, 3, false);  // debris: no MANIFEST
  EXPECT_EQ(*NewestCompleteCheckpoint(root), 2);
  EXPECT_EQ(*NextCheckpointId(root), 4);
  // A damaged newest falls back to the one before.
  std::ofstream(CheckpointDir(root, 2) + "/dense.bin", std::ios::app) << "x";
  EXPECT_EQ(*NewestCompleteCheckpoint(root), 1);
}

}  // namespace
}  // namespace freshet
