// The checkpoint MANIFEST's own checksum (format 2): any flipped byte is
// DataLoss naming the MANIFEST, so a restore never trusts a damaged list of
// files; format 1 manifests (no checksum line) are still read.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "worker/checkpoint.h"

namespace freshet {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class ManifestChecksumTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "/ckpt_manifest_" + std::to_string(getpid());
    fs::remove_all(root_);
    dir_ = CheckpointDir(root_, 1);
    fs::create_directories(dir_);
    std::ofstream(dir_ + "/shard-0-of-1.rows", std::ios::binary) << "rows"
                                                                 << "TRAILER8";
    std::ofstream(dir_ + "/job.pbtxt") << "name: \"x\"\n";
    CheckpointManifest m;
    m.id = 1;
    m.step = 42;
    m.num_servers = 1;
    m.num_workers = 2;
    m.unix_ms = 99;
    ASSERT_TRUE(WriteManifest(dir_, &m).ok());
    ASSERT_TRUE(PublishCheckpoint(root_, 1, 0).ok());
    good_ = ReadAll(dir_ + "/MANIFEST");
  }
  void TearDown() override { fs::remove_all(root_); }
  void Write(const std::string& bytes) {
    std::ofstream(dir_ + "/MANIFEST", std::ios::binary | std::ios::trunc) << bytes;
  }
  std::string root_, dir_, good_;
};

TEST_F(ManifestChecksumTest, GoodManifestEndsWithItsChecksum) {
  EXPECT_EQ(good_.rfind("freshet-checkpoint 2\n", 0), 0u) << good_;
  const size_t line = good_.rfind("\nchecksum ");
  ASSERT_NE(line, std::string::npos) << good_;
  EXPECT_EQ(good_.size() - line, 1 + 9 + 16 + 1u) << good_;
  auto m = VerifyCheckpoint(dir_);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->step, 42);
  EXPECT_EQ(m->files.size(), 2u);
}

TEST_F(ManifestChecksumTest, EveryFlippedByteIsDataLossNamingTheManifest) {
  for (size_t i = 0; i < good_.size(); ++i) {
    std::string bad = good_;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    Write(bad);
    auto m = VerifyCheckpoint(dir_);
    ASSERT_FALSE(m.ok()) << "byte " << i << " flipped:\n" << bad;
    EXPECT_EQ(m.status().code(), StatusCode::kDataLoss) << i << ": " << m.status();
    EXPECT_NE(m.status().message().find(dir_ + "/MANIFEST"), std::string::npos) << m.status();
    // A restore refuses it instead of loading a damaged file list.
    EXPECT_FALSE(ResolveRestoreChain(root_).ok()) << i;
  }
  Write(good_.substr(0, good_.size() - 18));  // the checksum line cut short
  EXPECT_EQ(VerifyCheckpoint(dir_).status().code(), StatusCode::kDataLoss);
  Write(good_ + "file extra 1 0\n");  // a line after the checksum
  EXPECT_EQ(VerifyCheckpoint(dir_).status().code(), StatusCode::kDataLoss);
}

TEST_F(ManifestChecksumTest, FormatOneManifestsAreStillRead) {
  // Format 1: the same lines, "freshet-checkpoint 1", no checksum line.
  std::string v1 = good_.substr(0, good_.rfind("checksum "));
  v1[std::string("freshet-checkpoint ").size()] = '1';
  Write(v1);
  auto m = VerifyCheckpoint(dir_);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->step, 42);
  // ... but a format 1 header on a format 2 body is refused.
  std::string mixed = good_;
  mixed[std::string("freshet-checkpoint ").size()] = '1';
  Write(mixed);
  EXPECT_EQ(VerifyCheckpoint(dir_).status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace freshet
