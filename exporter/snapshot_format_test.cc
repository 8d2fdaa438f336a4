#include "exporter/snapshot_format.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/checksum.h"
#include "exporter/export_dir.h"
#include "exporter/internal/export_testing.h"

namespace freshet {
namespace {

using testing_internal::ExpectSameSnapshot;
using testing_internal::Fnv;
using testing_internal::MakeDelta;
using testing_internal::MakeFull;
using testing_internal::ReadBytes;
using testing_internal::Reseal;
using testing_internal::TempDir;
using testing_internal::WriteBytes;

// ---- single files -----------------------------------------------------------------

TEST(SnapshotFileTest, FileNamesAreZeroPadded) {
  EXPECT_EQ(SnapshotFileName(Snapshot::Kind::kFull, 42), "full-000000000042.snap");
  EXPECT_EQ(SnapshotFileName(Snapshot::Kind::kDelta, 7), "delta-000000000007.snap");
  EXPECT_EQ(ManifestFileName(123456789012ull), "manifest-123456789012.pb");
}

TEST(SnapshotFileTest, RoundTripFull) {
  TempDir dir;
  const Snapshot s = MakeFull(5);
  proto::ExportFile entry;
  ASSERT_TRUE(WriteSnapshotFile(s, dir.file("full-5.snap"), &entry).ok());
  const std::string bytes = ReadBytes(dir.file("full-5.snap"));
  EXPECT_EQ(entry.name(), "full-5.snap");
  EXPECT_EQ(entry.size(), bytes.size());
  EXPECT_EQ(entry.checksum(), Xxh64Of(bytes.data(), bytes.size()));  // format 2: XXH64
  EXPECT_EQ(entry.version(), 5u);
  EXPECT_EQ(entry.watermark(), s.watermark);
  EXPECT_GT(entry.created_unix_ms(), 1600000000000);
  EXPECT_EQ(bytes.substr(0, 8), "FRSHSNAP");
  EXPECT_FALSE(std::filesystem::exists(dir.file("full-5.snap.tmp")));
  auto back = ReadSnapshotFile(dir.file("full-5.snap"));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameSnapshot(s, *back);
}

// StreamSnapshotFile hands over every row, in file order and in batches
// of bounded size, the same rows ReadSnapshotFile collects; a sink's error
// stops it and comes back naming the file.
TEST(SnapshotFileTest, StreamingGivesTheSameRowsInBoundedBatches) {
  TempDir dir;
  Snapshot s;
  s.kind = Snapshot::Kind::kFull;
  s.version = 9;
  s.has_dense = true;
  s.dense = {1.5f, -2};
  std::mt19937_64 rng(3);
  for (const int dim : {1024, 4}) {
    SnapshotTable& t = s.tables.emplace_back();
    t.name = "t" + std::to_string(dim);
    t.dim = dim;
    for (int i = 0; i < 3000; ++i) {  // dim 1024: 12 MB, several batches
      t.keys.push_back(rng());
      for (int d = 0; d < dim; ++d) t.values.push_back(static_cast<float>(rng() % 1000));
    }
  }
  proto::ExportFile entry;
  ASSERT_TRUE(WriteSnapshotFile(s, dir.file("full.snap"), &entry).ok());

  struct Sink : SnapshotRowSink {
    std::vector<SnapshotTable> got;
    size_t max_batch_bytes = 0, batches = 0;
    int fail_at_batch = -1;
    Status BeginTable(const std::string& name, int dim, uint64_t upserts) override {
      got.emplace_back();
      got.back().name = name;
      got.back().dim = dim;
      got.back().keys.reserve(upserts);
      return Status::OK();
    }
    Status Rows(const uint64_t* keys, const float* values, size_t n) override {
      if (static_cast<int>(batches++) == fail_at_batch) return InvalidArgument("sink says no");
      SnapshotTable& t = got.back();
      max_batch_bytes = std::max(max_batch_bytes, n * (8 + t.dim * sizeof(float)));
      t.keys.insert(t.keys.end(), keys, keys + n);
      t.values.insert(t.values.end(), values, values + n * t.dim);
      return Status::OK();
    }
    Status Deletions(const uint64_t* keys, size_t n) override {
      got.back().deleted.assign(keys, keys + n);
      return Status::OK();
    }
  };
  Sink sink;
  Snapshot header;
  Status st = StreamSnapshotFile(dir.file("full.snap"), &entry, &header, &sink);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(header.version, 9u);
  EXPECT_EQ(header.dense, s.dense);
  EXPECT_TRUE(header.tables.empty());
  header.tables = sink.got;
  ExpectSameSnapshot(s, header);
  EXPECT_GE(sink.batches, 4u);
  EXPECT_LE(sink.max_batch_bytes, size_t{4} << 20);

  Sink failing;
  failing.fail_at_batch = 1;
  st = StreamSnapshotFile(dir.file("full.snap"), &entry, &header, &failing);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find("full.snap"), std::string::npos) << st;
  EXPECT_EQ(failing.batches, 2u);
}

TEST(SnapshotFileTest, RoundTripDeltaWithDeletions) {
  TempDir dir;
  Snapshot s = MakeDelta(9, {3, 4}, {1, 100, 55});
  s.has_dense = true;
  s.dense = {0.5f};
  proto::ExportFile entry;
  ASSERT_TRUE(WriteSnapshotFile(s, dir.file("d.snap"), &entry).ok());
  auto back = ReadSnapshotFile(dir.file("d.snap"));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameSnapshot(s, *back);
}

TEST(SnapshotFileTest, RoundTripEmpty) {
  TempDir dir;
  Snapshot s;
  proto::ExportFile entry;
  ASSERT_TRUE(WriteSnapshotFile(s, dir.file("e.snap"), &entry).ok());
  // header + table count + trailer
  EXPECT_EQ(entry.size(), 8u + 4 + 4 + 8 + 8 + 1 + 4 + 8);
  auto back = ReadSnapshotFile(dir.file("e.snap"));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameSnapshot(s, *back);
}

TEST(SnapshotFileTest, WriteRejectsInconsistentSnapshots) {
  TempDir dir;
  proto::ExportFile entry;
  Snapshot s = MakeFull(1);
  s.tables[0].values.pop_back();
  EXPECT_EQ(WriteSnapshotFile(s, dir.file("a.snap"), &entry).code(), StatusCode::kInvalidArgument);
  s = MakeFull(1);
  s.tables[0].deleted = {1};
  EXPECT_EQ(WriteSnapshotFile(s, dir.file("a.snap"), &entry).code(), StatusCode::kInvalidArgument);
  s = MakeFull(1);
  s.tables[1].name = "user";
  EXPECT_EQ(WriteSnapshotFile(s, dir.file("a.snap"), &entry).code(), StatusCode::kInvalidArgument);
  s = MakeFull(1);
  s.tables[1].dim = 0;
  s.tables[1].values.clear();
  EXPECT_EQ(WriteSnapshotFile(s, dir.file("a.snap"), &entry).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir.file("a.snap")));
  // A missing directory is an I/O error naming the path.
  Status st = WriteSnapshotFile(MakeFull(1), dir.file("no/such/x.snap"), &entry);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("no/such/x.snap"), std::string::npos) << st;
}

TEST(SnapshotFileTest, MissingFileIsNotFound) {
  TempDir dir;
  auto r = ReadSnapshotFile(dir.file("nope.snap"));
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
}

// ---- corruption -----------------------------------------------------------------

class CorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Snapshot s = MakeDelta(3, {1, 2, 3}, {9, 10});
    s.has_dense = true;
    s.dense = {1, 2};
    proto::ExportFile entry;
    ASSERT_TRUE(WriteSnapshotFile(s, path_, &entry).ok());
    good_ = ReadBytes(path_);
  }
  void ExpectDataLoss(const std::string& bytes, const std::string& what,
                      const std::string& needle = "") {
    WriteBytes(path_, bytes);
    auto r = ReadSnapshotFile(path_);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << what << ": " << r.status();
    EXPECT_NE(r.status().message().find(path_), std::string::npos)
        << what << ": message does not name the file: " << r.status();
    if (!needle.empty()) {
      EXPECT_NE(r.status().message().find(needle), std::string::npos) << what << ": " << r.status();
    }
  }

  TempDir dir_;
  std::string path_ = dir_.file("delta-3.snap");
  std::string good_;
};

TEST_F(CorruptionTest, EveryFlippedByteIsDataLoss) {
  for (size_t i = 0; i < good_.size(); ++i) {
    for (unsigned char mask : {0x01, 0x80, 0xff}) {
      std::string bad = good_;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      ExpectDataLoss(bad, "byte " + std::to_string(i) + " ^ " + std::to_string(mask));
    }
  }
}

TEST_F(CorruptionTest, TruncationIsDataLoss) {
  const size_t n = good_.size();
  for (size_t len : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{20}, size_t{37}, n / 2,
                     n - 9, n - 8, n - 1}) {
    ExpectDataLoss(good_.substr(0, len), "truncated to " + std::to_string(len));
  }
  ExpectDataLoss(good_ + "x", "one byte appended");
  // A file cut short inside its rows: named, with the offset parsing reached.
  ExpectDataLoss(good_.substr(0, n - 20), "cut inside the rows", "parsing stopped at byte");
  ExpectDataLoss(good_ + good_, "doubled");
}

TEST_F(CorruptionTest, StructuralErrorsWithValidChecksum) {
  std::string bad = good_;
  bad[0] = 'X';
  ExpectDataLoss(Reseal(bad), "bad magic", "bad magic");
  bad = good_;
  bad[8] = 3;  // format version (this reader knows 1 and 2)
  ExpectDataLoss(Reseal(bad), "format version", "unsupported format version 3");
  bad[8] = 0;
  ExpectDataLoss(Reseal(bad), "format version 0", "unsupported format version 0");
  bad = good_;
  bad[12] = 7;  // kind
  ExpectDataLoss(Reseal(bad), "kind", "bad kind");
  // A huge dense count must fail on the length check, not allocate.
  bad = good_;
  const uint64_t huge = ~uint64_t{0} >> 4;
  std::memcpy(bad.data() + 33, &huge, 8);
  ExpectDataLoss(Reseal(bad), "dense count", "exceeds the remaining");
  // A full snapshot with deletions.
  bad = good_;
  bad[12] = 0;
  ExpectDataLoss(Reseal(bad), "full with deletions", "deletions");
  // Trailing garbage inside the checksummed body.
  ExpectDataLoss(Reseal(good_.substr(0, good_.size() - 8) + "junk" + good_.substr(0, 8)),
                 "trailing bytes", "unexpected bytes");
}

// Format 1 (FNV-1a 64 checksums, written before format 2) is still read,
// and checked against its manifest entry in its own algorithm.
TEST_F(CorruptionTest, ReadsFormat1Files) {
  std::string v1 = good_;
  v1[8] = 1;
  v1 = Reseal(v1);  // the trailer in FNV-1a 64, as format 1 wrote it
  EXPECT_EQ(v1.substr(v1.size() - 8), [&] {
    const uint64_t h = Fnv1a64(v1.data(), v1.size() - 8);
    return std::string(reinterpret_cast<const char*>(&h), 8);
  }());
  WriteBytes(path_, v1);
  auto back = ReadSnapshotFile(path_);
  ASSERT_TRUE(back.ok()) << back.status();
  WriteBytes(path_, good_);
  auto want = ReadSnapshotFile(path_);
  ASSERT_TRUE(want.ok()) << want.status();
  ExpectSameSnapshot(*want, *back);

  WriteBytes(path_, v1);
  proto::ExportFile entry;
  entry.set_name("delta-3.snap");
  entry.set_size(v1.size());
  entry.set_version(3);
  entry.set_checksum(Fnv1a64(v1.data(), v1.size()));
  EXPECT_EQ(SnapshotChecksum(v1, v1.size()), entry.checksum());
  EXPECT_TRUE(ReadSnapshotFileForEntry(path_, entry).ok());
  // The same file under an XXH64 entry is a mismatch, named.
  entry.set_checksum(Xxh64Of(v1.data(), v1.size()));
  auto r = ReadSnapshotFileForEntry(path_, entry);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("differs from the manifest"), std::string::npos)
      << r.status();
  // A format-1 header with a format-2 (XXH64) trailer does not verify.
  std::string mixed = good_;
  mixed[8] = 1;
  const uint64_t x = Xxh64Of(mixed.data(), mixed.size() - 8);
  std::memcpy(mixed.data() + mixed.size() - 8, &x, 8);
  ExpectDataLoss(mixed, "format 1 with an XXH64 trailer", "checksum mismatch");
}

TEST_F(CorruptionTest, ChecksumMismatchIsNamed) {
  std::string bad = good_;
  bad[40] ^= 0x10;
  ExpectDataLoss(bad, "flip", "checksum mismatch");
}

}  // namespace
}  // namespace freshet
