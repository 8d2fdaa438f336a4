#include "exporter/snapshot.h"

#include <dirent.h>
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

#include <gtest/gtest.h>

namespace freshet {
namespace {

// ---- helpers --------------------------------------------------------------------

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string tmpl = std::string(base ? base : "/tmp") + "/freshet_export_test.XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteBytes(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << path;
}

uint64_t Fnv(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

// Replaces the trailer with the FNV-1a 64 of the rest (a "valid" file whose
// content was edited).
std::string Reseal(std::string bytes) {
  const uint64_t h = Fnv(bytes.substr(0, bytes.size() - 8));
  std::memcpy(bytes.data() + bytes.size() - 8, &h, 8);
  return bytes;
}

std::set<std::string> ListDir(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.insert(e.path().filename().string());
  }
  return names;
}

SnapshotTable MakeTable(const std::string& name, int dim, const std::vector<uint64_t>& keys,
                        float base) {
  SnapshotTable t;
  t.name = name;
  t.dim = dim;
  t.keys = keys;
  for (size_t i = 0; i < keys.size(); ++i) {
    for (int j = 0; j < dim; ++j) t.values.push_back(base + keys[i] * 0.25f + j);
  }
  return t;
}

Snapshot MakeFull(uint64_t version) {
  Snapshot s;
  s.kind = Snapshot::Kind::kFull;
  s.version = version;
  s.watermark = 1700000000 + static_cast<int64_t>(version);
  s.has_dense = true;
  s.dense = {1.5f, -2.0f, static_cast<float>(version)};
  s.tables.push_back(MakeTable("user", 4, {1, 2, 3, 100}, static_cast<float>(version)));
  s.tables.push_back(MakeTable("wide", 1, {7, 8}, static_cast<float>(version)));
  return s;
}

Snapshot MakeDelta(uint64_t version, const std::vector<uint64_t>& upserts,
                   const std::vector<uint64_t>& deleted) {
  Snapshot s;
  s.kind = Snapshot::Kind::kDelta;
  s.version = version;
  s.watermark = 1700000000 + static_cast<int64_t>(version);
  SnapshotTable t = MakeTable("user", 4, upserts, static_cast<float>(version) * 100);
  t.deleted = deleted;
  s.tables.push_back(std::move(t));
  return s;
}

proto::JobConfig MakeJob() {
  proto::JobConfig job;
  job.set_name("export-test");
  auto* t = job.mutable_tables()->add_tables();
  t->set_name("user");
  t->set_dim(4);
  t = job.mutable_tables()->add_tables();
  t->set_name("wide");
  t->set_dim(1);
  t = job.mutable_tables()->add_tables();
  t->set_name("empty");
  t->set_dim(8);
  return job;
}

void ExpectSameSnapshot(const Snapshot& a, const Snapshot& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.watermark, b.watermark);
  EXPECT_EQ(a.has_dense, b.has_dense);
  EXPECT_EQ(a.dense, b.dense);
  ASSERT_EQ(a.tables.size(), b.tables.size());
  for (size_t i = 0; i < a.tables.size(); ++i) {
    EXPECT_EQ(a.tables[i].name, b.tables[i].name);
    EXPECT_EQ(a.tables[i].dim, b.tables[i].dim);
    EXPECT_EQ(a.tables[i].keys, b.tables[i].keys);
    EXPECT_EQ(a.tables[i].values, b.tables[i].values);
    EXPECT_EQ(a.tables[i].deleted, b.tables[i].deleted);
  }
}

// Every row of `t` as key -> values (order-independent comparison).
std::map<uint64_t, std::vector<float>> Rows(const LoadedTable& t) {
  std::map<uint64_t, std::vector<float>> rows;
  t.ForEach([&](uint64_t key, const float* w) {
    EXPECT_EQ(rows.count(key), 0u) << "key " << key << " listed twice";
    rows[key].assign(w, w + t.dim());
    EXPECT_TRUE(t.contains(key)) << "lookup broken for key " << key;
  });
  EXPECT_EQ(rows.size(), t.size());
  return rows;
}

void ExpectSameModel(const LoadedExport& a, const LoadedExport& b) {
  EXPECT_EQ(a.manifest.SerializeAsString(), b.manifest.SerializeAsString());
  EXPECT_EQ(a.dense, b.dense);
  ASSERT_EQ(a.tables.size(), b.tables.size());
  for (const auto& [name, t] : a.tables) {
    auto it = b.tables.find(name);
    ASSERT_TRUE(it != b.tables.end()) << name;
    EXPECT_EQ(t.dim(), it->second.dim()) << name;
    EXPECT_EQ(Rows(t), Rows(it->second)) << name;
  }
}

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
  EXPECT_EQ(entry.fnv1a64(), Fnv(bytes));
  EXPECT_EQ(entry.version(), 5u);
  EXPECT_EQ(entry.watermark(), s.watermark);
  EXPECT_GT(entry.created_unix_ms(), 1600000000000);
  EXPECT_EQ(bytes.substr(0, 8), "FRSHSNAP");
  EXPECT_FALSE(std::filesystem::exists(dir.file("full-5.snap.tmp")));
  auto back = ReadSnapshotFile(dir.file("full-5.snap"));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameSnapshot(s, *back);
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
      EXPECT_NE(r.status().message().find(needle), std::string::npos)
          << what << ": " << r.status();
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
  ExpectDataLoss(good_ + good_, "doubled");
}

TEST_F(CorruptionTest, StructuralErrorsWithValidChecksum) {
  std::string bad = good_;
  bad[0] = 'X';
  ExpectDataLoss(Reseal(bad), "bad magic", "bad magic");
  bad = good_;
  bad[8] = 2;  // format version
  ExpectDataLoss(Reseal(bad), "format version", "format version 2");
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

TEST_F(CorruptionTest, ChecksumMismatchIsNamed) {
  std::string bad = good_;
  bad[40] ^= 0x10;
  ExpectDataLoss(bad, "flip", "checksum mismatch");
}

// ---- the export directory ---------------------------------------------------------

TEST(ExportWriterTest, PublishChainLatestAndRetention) {
  TempDir dir;
  auto w = ExportWriter::Open(dir.path(), MakeJob(), /*retain_full=*/2);
  ASSERT_TRUE(w.ok()) << w.status();
  ExportWriter& writer = **w;
  auto names = [](std::initializer_list<uint64_t> fulls, std::initializer_list<uint64_t> deltas,
                  std::initializer_list<uint64_t> manifests) {
    std::set<std::string> s = {"LATEST"};
    for (uint64_t v : fulls) s.insert(SnapshotFileName(Snapshot::Kind::kFull, v));
    for (uint64_t v : deltas) s.insert(SnapshotFileName(Snapshot::Kind::kDelta, v));
    for (uint64_t v : manifests) s.insert(ManifestFileName(v));
    return s;
  };
  ASSERT_TRUE(writer.Publish(MakeFull(1)).ok());
  EXPECT_EQ(ListDir(dir.path()), names({1}, {}, {1}));
  EXPECT_EQ(ReadBytes(dir.file("LATEST")), "manifest-000000000001.pb\n");
  ASSERT_TRUE(writer.Publish(MakeDelta(2, {1}, {})).ok());
  ASSERT_TRUE(writer.Publish(MakeDelta(3, {2}, {3})).ok());
  EXPECT_EQ(ListDir(dir.path()), names({1}, {2, 3}, {3}));
  EXPECT_EQ(writer.manifest().version(), 3u);
  EXPECT_EQ(writer.manifest().deltas_size(), 2);
  ASSERT_TRUE(writer.Publish(MakeFull(4)).ok());
  EXPECT_EQ(ListDir(dir.path()), names({1, 4}, {2, 3}, {3, 4}));
  ASSERT_TRUE(writer.Publish(MakeDelta(5, {1}, {})).ok());
  EXPECT_EQ(ListDir(dir.path()), names({1, 4}, {2, 3, 5}, {3, 5}));
  // A third full retires the first chain: its full, deltas and manifest.
  ASSERT_TRUE(writer.Publish(MakeFull(6)).ok());
  EXPECT_EQ(ListDir(dir.path()), names({4, 6}, {5}, {5, 6}));
  ASSERT_TRUE(writer.Publish(MakeDelta(7, {1}, {})).ok());
  ASSERT_TRUE(writer.Publish(MakeDelta(8, {2}, {})).ok());
  EXPECT_EQ(ListDir(dir.path()), names({4, 6}, {5, 7, 8}, {5, 8}));
  EXPECT_EQ(ReadBytes(dir.file("LATEST")), "manifest-000000000008.pb\n");

  auto m = ReadLatestManifest(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->version(), 8u);
  EXPECT_EQ(m->watermark(), 1700000008);
  EXPECT_EQ(m->job().name(), "export-test");
  EXPECT_EQ(m->full().name(), "full-000000000006.snap");
  ASSERT_EQ(m->deltas_size(), 2);
  EXPECT_EQ(m->deltas(0).name(), "delta-000000000007.snap");
  EXPECT_EQ(m->deltas(1).version(), 8u);
  EXPECT_GT(writer.bytes_written(), 0);
  // The older retained chain is still loadable from its manifest.
  auto old = ReadManifestFile(dir.file(ManifestFileName(5)));
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->full().version(), 4u);
}

TEST(ExportWriterTest, RetainOneKeepsOnlyTheCurrentChain) {
  TempDir dir;
  auto w = ExportWriter::Open(dir.path(), MakeJob(), 1);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Publish(MakeFull(10)).ok());
  ASSERT_TRUE((*w)->Publish(MakeDelta(11, {1}, {})).ok());
  ASSERT_TRUE((*w)->Publish(MakeFull(12)).ok());
  EXPECT_EQ(ListDir(dir.path()),
            (std::set<std::string>{"LATEST", "full-000000000012.snap", "manifest-000000000012.pb"}));
}

TEST(ExportWriterTest, RejectsBadPublishes) {
  TempDir dir;
  EXPECT_EQ(ExportWriter::Open(dir.path(), MakeJob(), 0).status().code(),
            StatusCode::kInvalidArgument);
  auto w = ExportWriter::Open(dir.path(), MakeJob(), 2);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->Publish(MakeDelta(1, {1}, {})).code(), StatusCode::kFailedPrecondition);
  EXPECT_FALSE(std::filesystem::exists(dir.file("LATEST")));
  ASSERT_TRUE((*w)->Publish(MakeFull(5)).ok());
  EXPECT_EQ((*w)->Publish(MakeDelta(5, {1}, {})).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ((*w)->Publish(MakeFull(4)).code(), StatusCode::kFailedPrecondition);
  Snapshot bad_dim = MakeDelta(6, {1}, {});
  bad_dim.tables[0] = MakeTable("user", 3, {1}, 0);
  EXPECT_EQ((*w)->Publish(bad_dim).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*w)->manifest().version(), 5u);
  auto m = ReadLatestManifest(dir.path());
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->version(), 5u);
}

TEST(ExportWriterTest, ReopenContinuesTheChain) {
  TempDir dir;
  {
    auto w = ExportWriter::Open(dir.path(), MakeJob(), 2);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Publish(MakeFull(1)).ok());
    ASSERT_TRUE((*w)->Publish(MakeDelta(2, {1}, {})).ok());
    ASSERT_TRUE((*w)->Publish(MakeFull(3)).ok());
    ASSERT_TRUE((*w)->Publish(MakeDelta(4, {2}, {})).ok());
  }
  // What a killed writer leaves behind: a temporary file and an unpublished
  // snapshot + manifest.
  WriteBytes(dir.file("delta-000000000005.snap.tmp"), "partial");
  WriteBytes(dir.file("LATEST.tmp"), "manif");
  {
    auto w = ExportWriter::Open(dir.path(), MakeJob(), 2);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Publish(MakeDelta(5, {3}, {})).ok());
    WriteBytes(dir.file("full-000000000007.snap"), "orphan");
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("delta-000000000005.snap.tmp")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("LATEST.tmp")));
  auto w = ExportWriter::Open(dir.path(), MakeJob(), 2);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->manifest().version(), 5u);
  EXPECT_EQ((*w)->manifest().full().version(), 3u);
  EXPECT_EQ((*w)->manifest().deltas_size(), 2);
  // Versions keep increasing across the restart.
  EXPECT_EQ((*w)->Publish(MakeDelta(5, {1}, {})).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*w)->Publish(MakeDelta(6, {1}, {2})).ok());
  EXPECT_EQ((*w)->manifest().deltas_size(), 3);
  // Retention knows the older chain it did not write itself.
  ASSERT_TRUE((*w)->Publish(MakeFull(8)).ok());
  EXPECT_EQ(ListDir(dir.path()),
            (std::set<std::string>{"LATEST", "full-000000000003.snap", "delta-000000000004.snap",
                                   "delta-000000000005.snap", "delta-000000000006.snap",
                                   "manifest-000000000006.pb", "full-000000000008.snap",
                                   "manifest-000000000008.pb"}));

  auto loaded = LoadLatestExport(dir.path());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->manifest.version(), 8u);
}

TEST(ExportWriterTest, ReopenWithChangedTablesNeedsAFull) {
  TempDir dir;
  {
    auto w = ExportWriter::Open(dir.path(), MakeJob(), 2);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Publish(MakeFull(1)).ok());
  }
  proto::JobConfig job = MakeJob();
  job.mutable_tables()->mutable_tables(2)->set_dim(16);
  auto w = ExportWriter::Open(dir.path(), job, 2);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->Publish(MakeDelta(2, {1}, {})).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*w)->Publish(MakeFull(3)).ok());
  ASSERT_TRUE((*w)->Publish(MakeDelta(4, {1}, {})).ok());
}

TEST(ExportWriterTest, OpenRefusesACorruptLatest) {
  TempDir dir;
  WriteBytes(dir.file("LATEST"), "manifest-000000000009.pb\n");
  auto w = ExportWriter::Open(dir.path(), MakeJob(), 2);
  EXPECT_EQ(w.status().code(), StatusCode::kDataLoss) << w.status();
  EXPECT_NE(w.status().message().find("manifest-000000000009.pb"), std::string::npos);
}

// ---- loading --------------------------------------------------------------------

TEST(LoadTest, EmptyDirectoryIsNotFound) {
  TempDir dir;
  EXPECT_EQ(ReadLatestManifest(dir.path()).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(LoadLatestExport(dir.path()).status().code(), StatusCode::kNotFound);
}

TEST(LoadTest, AppliesDeltasInOrder) {
  TempDir dir;
  auto w = ExportWriter::Open(dir.path(), MakeJob(), 2);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Publish(MakeFull(1)).ok());  // user: 1 2 3 100; wide: 7 8
  ASSERT_TRUE((*w)->Publish(MakeDelta(2, {2, 50}, {3})).ok());
  Snapshot d3 = MakeDelta(3, {2, 3}, {1, 999});  // 3 comes back; 999 never existed
  d3.ingest_wall_ms = 1700000000123;
  d3.label_wall_ms = 1700000004567;
  d3.has_dense = true;
  d3.dense = {9, 9, 9};
  ASSERT_TRUE((*w)->Publish(d3).ok());
  EXPECT_EQ((*w)->manifest().ingest_wall_ms(), 1700000000123);
  EXPECT_EQ((*w)->manifest().label_wall_ms(), 1700000004567);
  {
    // ... and so does the manifest file serving reads.
    auto m = ReadLatestManifest(dir.path());
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->ingest_wall_ms(), 1700000000123);
    EXPECT_EQ(m->label_wall_ms(), 1700000004567);
  }
  ASSERT_TRUE((*w)->Publish(MakeDelta(4, {}, {50})).ok());

  auto loaded = LoadLatestExport(dir.path());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const LoadedExport& e = **loaded;
  EXPECT_EQ(e.manifest.version(), 4u);
  EXPECT_EQ(e.manifest.ingest_wall_ms(), 0);  // each manifest carries its own version's
  EXPECT_EQ(e.manifest.label_wall_ms(), 0);
  EXPECT_EQ(e.dense, (std::vector<float>{9, 9, 9}));
  auto m3 = ReadManifestFile(dir.file(ManifestFileName(3)));
  EXPECT_EQ(m3.status().code(), StatusCode::kNotFound);  // retired: not the newest of its chain
  ASSERT_EQ(e.tables.size(), 3u);
  const LoadedTable& user = e.tables.at("user");
  EXPECT_EQ(user.dim(), 4);
  auto rows = Rows(user);
  EXPECT_EQ(rows.size(), 3u);  // 2, 3, 100
  EXPECT_EQ(user.Find(1), nullptr);
  EXPECT_EQ(user.Find(50), nullptr);
  ASSERT_NE(user.Find(2), nullptr);
  EXPECT_EQ(user.Find(2)[0], 300 + 2 * 0.25f);  // the newer of deltas 2 and 3
  EXPECT_EQ(user.Find(3)[3], 300 + 3 * 0.25f + 3);
  EXPECT_EQ(user.Find(100)[1], 1 + 100 * 0.25f + 1);  // from the full
  const LoadedTable& wide = e.tables.at("wide");
  EXPECT_EQ(wide.size(), 2u);
  EXPECT_EQ(wide.Find(8)[0], 1 + 8 * 0.25f);
  // A job table with no rows in any file is present and empty.
  EXPECT_EQ(e.tables.at("empty").dim(), 8);
  EXPECT_EQ(e.tables.at("empty").size(), 0u);
}

TEST(LoadTest, DeletionsSwapRemoveAndKeepRowsDense) {
  TempDir dir;
  proto::JobConfig job;
  auto w = ExportWriter::Open(dir.path(), job, 2);
  ASSERT_TRUE(w.ok());
  std::vector<uint64_t> keys(1000);
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = i * 7919;
  Snapshot full;
  full.version = 1;
  full.tables.push_back(MakeTable("t", 3, keys, 0));
  ASSERT_TRUE((*w)->Publish(full).ok());
  std::vector<uint64_t> del, add;
  for (size_t i = 0; i < keys.size(); i += 3) del.push_back(keys[i]);
  for (uint64_t k = 1; k <= 100; ++k) add.push_back(k);
  Snapshot d = MakeDelta(2, {}, del);
  d.tables[0] = MakeTable("t", 3, add, 5);
  d.tables[0].deleted = del;
  ASSERT_TRUE((*w)->Publish(d).ok());
  auto loaded = LoadLatestExport(dir.path());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const LoadedTable& t = (*loaded)->tables.at("t");
  auto rows = Rows(t);  // checks keys/index/values agree
  EXPECT_EQ(rows.size(), keys.size() - del.size() + add.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    const float* v = t.Find(keys[i]);
    if (i % 3 == 0) {
      EXPECT_EQ(v, nullptr) << i;
    } else {
      ASSERT_NE(v, nullptr) << i;
      EXPECT_EQ(v[2], keys[i] * 0.25f + 2) << i;
    }
  }
  EXPECT_EQ(t.Find(42)[0], 5 + 42 * 0.25f);
}

TEST(LoadTest, ManifestChecksumMismatchIsDataLoss) {
  TempDir dir;
  auto w = ExportWriter::Open(dir.path(), MakeJob(), 2);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Publish(MakeFull(1)).ok());
  ASSERT_TRUE((*w)->Publish(MakeDelta(2, {1}, {})).ok());
  const std::string mpath = dir.file(ManifestFileName(2));
  const std::string good = ReadBytes(mpath);
  auto decoded = DecodeManifestFile(mpath, good);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  const proto::ExportManifest m = *decoded;
  // (The corrupted manifests below are written without the checksum
  // trailer, as old writers did, so the cross-checks behind it are tested.)
  auto expect_loss = [&](const std::string& what, const std::string& needle) {
    auto r = LoadLatestExport(dir.path());
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << what << ": " << r.status();
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << what << ": " << r.status();
  };
  proto::ExportManifest bad = m;
  bad.mutable_deltas(0)->set_fnv1a64(m.deltas(0).fnv1a64() ^ 1);
  WriteBytes(mpath, bad.SerializeAsString());
  expect_loss("delta checksum", "delta-000000000002.snap");
  bad = m;
  bad.mutable_full()->set_size(m.full().size() + 1);
  WriteBytes(mpath, bad.SerializeAsString());
  expect_loss("full size", "full-000000000001.snap");
  bad = m;
  bad.mutable_deltas(0)->set_version(3);
  bad.set_version(3);
  WriteBytes(mpath, bad.SerializeAsString());
  expect_loss("version named wrong", "manifest-000000000002.pb");
  WriteBytes(mpath, "\xff\xff\xff garbage");
  expect_loss("garbage manifest", "manifest-000000000002.pb");
  WriteBytes(mpath, good);
  ASSERT_TRUE(LoadLatestExport(dir.path()).ok());

  // A chain file replaced by another valid snapshot.
  const std::string dpath = dir.file("delta-000000000002.snap");
  const std::string delta = ReadBytes(dpath);
  proto::ExportFile unused;
  ASSERT_TRUE(WriteSnapshotFile(MakeDelta(2, {7}, {}), dpath, &unused).ok());
  expect_loss("replaced file", "delta-000000000002.snap");
  // A flipped byte in a chain file.
  std::string flipped = delta;
  flipped[flipped.size() / 2] ^= 4;
  WriteBytes(dpath, flipped);
  expect_loss("flipped byte", "delta-000000000002.snap");
  // A missing chain file.
  std::filesystem::remove(dpath);
  expect_loss("missing file", "delta-000000000002.snap");
  WriteBytes(dpath, delta);
  ASSERT_TRUE(LoadLatestExport(dir.path()).ok());
  // LATEST naming something else.
  WriteBytes(dir.file("LATEST"), "../etc/passwd\n");
  expect_loss("bad LATEST", "LATEST");
}

// The manifest's own checksum trailer (docs/SNAPSHOT_FORMAT.md section 4).
TEST(ManifestChecksumTest, EveryFlippedByteIsDataLossAndServingKeepsItsModel) {
  TempDir dir;
  auto w = ExportWriter::Open(dir.path(), MakeJob(), 2);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Publish(MakeFull(1)).ok());
  auto previous = LoadLatestExport(dir.path());
  ASSERT_TRUE(previous.ok()) << previous.status();
  ASSERT_TRUE((*w)->Publish(MakeDelta(2, {1}, {})).ok());
  const std::string mpath = dir.file(ManifestFileName(2));
  const std::string good = ReadBytes(mpath);
  ASSERT_GT(good.size(), 16u);
  EXPECT_EQ(good.substr(good.size() - 16, 8), "FRSHMSUM");
  for (size_t i = 0; i < good.size(); ++i) {
    for (unsigned char mask : {0x01, 0x80}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      WriteBytes(mpath, bad);
      auto r = LoadLatestExportIncremental(dir.path(), *previous);
      ASSERT_FALSE(r.ok()) << "byte " << i << " ^ " << int{mask};
      EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << i << ": " << r.status();
      EXPECT_NE(r.status().message().find(mpath), std::string::npos) << i << ": " << r.status();
    }
  }
  // The caller's model is untouched; the good manifest loads again.
  EXPECT_EQ((*previous)->manifest.version(), 1u);
  WriteBytes(mpath, good);
  auto again = LoadLatestExportIncremental(dir.path(), *previous);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->manifest.version(), 2u);
}

TEST(ManifestChecksumTest, ManifestsWithoutTheTrailerAreStillRead) {
  TempDir dir;
  auto w = ExportWriter::Open(dir.path(), MakeJob(), 2);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Publish(MakeFull(1)).ok());
  const std::string mpath = dir.file(ManifestFileName(1));
  const std::string good = ReadBytes(mpath);
  WriteBytes(mpath, good.substr(0, good.size() - 16));  // as written before the trailer
  auto r = LoadLatestExport(dir.path());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->manifest.version(), 1u);
  // An old manifest is continued by a restarted writer, which writes the
  // trailer from then on.
  w = ExportWriter::Open(dir.path(), MakeJob(), 2);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->Publish(MakeDelta(2, {1}, {})).ok());
  const std::string next = ReadBytes(dir.file(ManifestFileName(2)));
  EXPECT_EQ(next.substr(next.size() - 16, 8), "FRSHMSUM");
  auto decoded = DecodeManifestFile("m", next);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(EncodeManifestFile(*decoded), next);
}

TEST(LoadTest, DimMismatchIsDataLoss) {
  TempDir dir;
  proto::JobConfig job;  // no tables: the writer cannot check dims
  auto w = ExportWriter::Open(dir.path(), job, 2);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Publish(MakeFull(1)).ok());
  Snapshot d = MakeDelta(2, {}, {});
  d.tables[0] = MakeTable("user", 2, {1}, 0);
  ASSERT_TRUE((*w)->Publish(d).ok());
  auto r = LoadLatestExport(dir.path());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status();
  EXPECT_NE(r.status().message().find("delta-000000000002.snap"), std::string::npos);
  EXPECT_NE(r.status().message().find("'user'"), std::string::npos);
}

TEST(LoadTest, IncrementalEqualsFullAndLeavesPreviousAlone) {
  TempDir dir;
  auto w = ExportWriter::Open(dir.path(), MakeJob(), 2);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Publish(MakeFull(1)).ok());
  ASSERT_TRUE((*w)->Publish(MakeDelta(2, {1, 5}, {2})).ok());
  auto prev = LoadLatestExport(dir.path());
  ASSERT_TRUE(prev.ok());
  const std::shared_ptr<const LoadedExport> p = *prev;
  const LoadedExport before = *p;  // deep copy

  // Nothing new: the same object comes back.
  auto same = LoadLatestExportIncremental(dir.path(), p);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->get(), p.get());

  ASSERT_TRUE((*w)->Publish(MakeDelta(3, {2, 6}, {1, 100})).ok());
  ASSERT_TRUE((*w)->Publish(MakeDelta(4, {100, 5}, {6})).ok());
  auto inc = LoadLatestExportIncremental(dir.path(), p);
  ASSERT_TRUE(inc.ok()) << inc.status();
  auto full = LoadLatestExport(dir.path());
  ASSERT_TRUE(full.ok());
  EXPECT_NE(inc->get(), p.get());
  ExpectSameModel(**inc, **full);
  ExpectSameModel(*p, before);  // untouched

  // The incremental path really skipped the full file: corrupt it and the
  // incremental load still works from `p` while a full load fails.
  const std::string fpath = dir.file("full-000000000001.snap");
  const std::string fbytes = ReadBytes(fpath);
  std::string bad = fbytes;
  bad[20] ^= 1;
  WriteBytes(fpath, bad);
  auto inc2 = LoadLatestExportIncremental(dir.path(), p);
  ASSERT_TRUE(inc2.ok()) << inc2.status();
  ExpectSameModel(**inc2, **full);
  EXPECT_EQ(LoadLatestExport(dir.path()).status().code(), StatusCode::kDataLoss);
  WriteBytes(fpath, fbytes);

  // A new chain falls back to a full load.
  ASSERT_TRUE((*w)->Publish(MakeFull(5)).ok());
  ASSERT_TRUE((*w)->Publish(MakeDelta(6, {77}, {3})).ok());
  auto inc3 = LoadLatestExportIncremental(dir.path(), *inc);
  auto full3 = LoadLatestExport(dir.path());
  ASSERT_TRUE(inc3.ok() && full3.ok());
  ExpectSameModel(**inc3, **full3);
  ExpectSameModel(*p, before);
}

TEST(LoadTest, FailedIncrementalLoadKeepsNothingHalfApplied) {
  TempDir dir;
  auto w = ExportWriter::Open(dir.path(), MakeJob(), 2);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Publish(MakeFull(1)).ok());
  auto prev = LoadLatestExport(dir.path());
  ASSERT_TRUE(prev.ok());
  const LoadedExport before = **prev;
  ASSERT_TRUE((*w)->Publish(MakeDelta(2, {1}, {2})).ok());
  ASSERT_TRUE((*w)->Publish(MakeDelta(3, {3}, {})).ok());
  std::string bad = ReadBytes(dir.file("delta-000000000003.snap"));
  bad[bad.size() - 3] ^= 1;
  WriteBytes(dir.file("delta-000000000003.snap"), bad);
  auto r = LoadLatestExportIncremental(dir.path(), *prev);
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  ExpectSameModel(**prev, before);
}

// ---- speed ------------------------------------------------------------------------

TEST(SnapshotSpeedTest, MillionRowsDim16) {
  TempDir dir;
  constexpr size_t kRows = 1000000;
  constexpr int kDim = 16;
  Snapshot s;
  s.version = 1;
  SnapshotTable t;
  t.name = "emb";
  t.dim = kDim;
  t.keys.resize(kRows);
  t.values.resize(kRows * kDim);
  std::mt19937_64 rng(1);
  for (size_t i = 0; i < kRows; ++i) t.keys[i] = rng();
  for (size_t i = 0; i < t.values.size(); ++i) t.values[i] = static_cast<float>(i % 977) * 0.01f;
  s.tables.push_back(std::move(t));
  proto::JobConfig job;
  auto w = ExportWriter::Open(dir.path(), job, 1);
  ASSERT_TRUE(w.ok());
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  ASSERT_TRUE((*w)->Publish(s).ok());
  auto t1 = Clock::now();
  auto loaded = LoadLatestExport(dir.path());
  auto t2 = Clock::now();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto read = ReadSnapshotFile(dir.file("full-000000000001.snap"));
  auto t3 = Clock::now();
  ASSERT_TRUE(read.ok());
  const LoadedTable& lt = (*loaded)->tables.at("emb");
  EXPECT_EQ(lt.size(), kRows);
  const float* v = lt.Find(s.tables[0].keys[12345]);
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v[3], s.tables[0].values[12345 * kDim + 3]);
  const double mb = (*w)->manifest().full().size() / 1e6;
  const double publish_s = std::chrono::duration<double>(t1 - t0).count();
  const double load_s = std::chrono::duration<double>(t2 - t1).count();
  const double read_s = std::chrono::duration<double>(t3 - t2).count();
  std::printf("1M rows x dim 16 (%.1f MB): publish %.3f s (%.0f MB/s), LoadLatestExport %.3f s, "
              "ReadSnapshotFile %.3f s\n",
              mb, publish_s, mb / publish_s, load_s, read_s);
  EXPECT_LT(load_s, 5.0);  // a sanity bound; expect well under a second
}

// ---- crash safety -----------------------------------------------------------------
//
// A child publishes a deterministic model forever; the model at version v is
// a closed-form function of v, so after any kill the loaded model can be
// checked exactly. Key k is alive in epochs (v / kEpoch + k) % 4 != 0; an
// alive row is rewritten at versions v = k (mod 3) and when it comes back to
// life; its values encode the version that wrote it.

constexpr int kCrashKeys = 240;
constexpr int kCrashDim = 4;
constexpr uint64_t kEpoch = 8;

uint64_t CrashKey(int k) { return 0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(k + 1); }

bool Alive(int k, uint64_t v) { return v > 0 && (v / kEpoch + k) % 4 != 0; }

// The first version of the alive run containing v. REQUIRES: Alive(k, v).
uint64_t RunStart(int k, uint64_t v) {
  uint64_t e = v / kEpoch;
  while (e > 0 && Alive(k, (e - 1) * kEpoch + (e == 1 ? 1 : 0))) --e;
  return std::max<uint64_t>(1, e * kEpoch);
}

// The version that last wrote key k's row at version v. REQUIRES: Alive(k, v).
uint64_t LastWrite(int k, uint64_t v) {
  const uint64_t r = k % 3;
  uint64_t u = 0;
  if (v >= r) u = v - ((v - r) % 3);
  return std::max(u, RunStart(k, v));
}

void CrashRow(int k, uint64_t u, float* out) {
  out[0] = static_cast<float>(u);
  out[1] = static_cast<float>(k);
  out[2] = static_cast<float>(u % 1000) + 0.5f;
  out[3] = static_cast<float>(k) * 2 + static_cast<float>(u);
}

[[noreturn]] void PublishForever(const std::string& dir) {
  proto::JobConfig job;
  job.set_name("crash");
  auto* t = job.mutable_tables()->add_tables();
  t->set_name("emb");
  t->set_dim(kCrashDim);
  auto w = ExportWriter::Open(dir, job, 2);
  if (!w.ok()) {
    std::fprintf(stderr, "child: %s\n", w.status().ToString().c_str());
    _exit(3);
  }
  uint64_t v = (*w)->manifest().version();
  bool need_full = (*w)->manifest().full().name().empty();
  for (;;) {
    ++v;
    Snapshot s;
    s.kind = need_full || v % 5 == 0 ? Snapshot::Kind::kFull : Snapshot::Kind::kDelta;
    s.version = v;
    s.watermark = 1000 + static_cast<int64_t>(v);
    s.has_dense = true;
    s.dense = {static_cast<float>(v)};
    SnapshotTable table;
    table.name = "emb";
    table.dim = kCrashDim;
    float row[kCrashDim];
    for (int k = 0; k < kCrashKeys; ++k) {
      const bool alive = Alive(k, v);
      if (s.kind == Snapshot::Kind::kDelta && Alive(k, v - 1) && !alive) {
        table.deleted.push_back(CrashKey(k));
      }
      if (!alive) continue;
      const bool touched = LastWrite(k, v) == v;
      if (s.kind == Snapshot::Kind::kFull || touched) {
        CrashRow(k, LastWrite(k, v), row);
        table.keys.push_back(CrashKey(k));
        table.values.insert(table.values.end(), row, row + kCrashDim);
      }
    }
    s.tables.push_back(std::move(table));
    Status st = (*w)->Publish(s);
    if (!st.ok()) {
      std::fprintf(stderr, "child: %s\n", st.ToString().c_str());
      _exit(4);
    }
    need_full = false;
  }
}

// Checks that `e` is exactly the model of its manifest's version.
void VerifyCrashModel(const LoadedExport& e) {
  const uint64_t v = e.manifest.version();
  ASSERT_GT(v, 0u);
  EXPECT_EQ(e.manifest.watermark(), 1000 + static_cast<int64_t>(v));
  ASSERT_EQ(e.dense.size(), 1u);
  EXPECT_EQ(e.dense[0], static_cast<float>(v));
  const LoadedTable& t = e.tables.at("emb");
  size_t alive = 0;
  float want[kCrashDim];
  for (int k = 0; k < kCrashKeys; ++k) {
    const float* got = t.Find(CrashKey(k));
    if (!Alive(k, v)) {
      ASSERT_EQ(got, nullptr) << "version " << v << ": deleted key " << k << " present";
      continue;
    }
    ++alive;
    ASSERT_NE(got, nullptr) << "version " << v << ": key " << k << " missing";
    CrashRow(k, LastWrite(k, v), want);
    for (int j = 0; j < kCrashDim; ++j) {
      ASSERT_EQ(got[j], want[j]) << "version " << v << " key " << k << " [" << j << "]";
    }
  }
  EXPECT_EQ(t.size(), alive);
}

TEST(CrashSafetyTest, ModelHelpersAreConsistent) {
  // The closed form agrees with applying the deltas step by step.
  std::map<int, uint64_t> state;  // key -> version that wrote it
  for (uint64_t v = 1; v < 200; ++v) {
    for (int k = 0; k < kCrashKeys; ++k) {
      if (Alive(k, v - 1) && !Alive(k, v)) state.erase(k);
      const bool touched = Alive(k, v) && (v % 3 == static_cast<uint64_t>(k % 3) || !Alive(k, v - 1));
      if (touched) state[k] = v;
    }
    for (int k = 0; k < kCrashKeys; ++k) {
      ASSERT_EQ(state.count(k) > 0, Alive(k, v)) << v << " " << k;
      if (Alive(k, v)) {
        ASSERT_EQ(state[k], LastWrite(k, v)) << v << " " << k;
      }
    }
  }
}

TEST(CrashSafetyTest, SigkillWhilePublishingNeverTearsTheModel) {
  TempDir dir;
  std::mt19937 rng(20240601);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(12);
  int kills = 0, loads = 0, concurrent_loads = 0;
  uint64_t last_version = 0;
  for (int i = 0; (i < 40 || loads < 30) && std::chrono::steady_clock::now() < deadline; ++i) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) PublishForever(dir.path());
    // Mostly 0-30 ms; every fourth round longer, so the chain makes progress
    // even on a loaded machine where one publish (six fsyncs) takes longer.
    ::usleep(rng() % 30001 + (i % 4 == 3 ? 60000 : 0));
    // Every third round, also read while the child is publishing.
    if (i % 3 == 2) {
      auto e = LoadLatestExport(dir.path());
      if (e.ok()) {
        ASSERT_NO_FATAL_FAILURE(VerifyCrashModel(**e));
        EXPECT_GE((*e)->manifest.version(), last_version);
        last_version = (*e)->manifest.version();
        ++concurrent_loads;
      } else {
        // Only "nothing published yet" is acceptable.
        EXPECT_EQ(e.status().code(), StatusCode::kNotFound) << e.status();
      }
      ::usleep(rng() % 5001);
    }
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the publisher died on its own, status " << status;
    ++kills;
    if (!std::filesystem::exists(dir.file("LATEST"))) continue;
    auto e = LoadLatestExport(dir.path());
    ASSERT_TRUE(e.ok()) << "after kill " << kills << ": " << e.status();
    ASSERT_NO_FATAL_FAILURE(VerifyCrashModel(**e));
    EXPECT_GE((*e)->manifest.version(), last_version);
    last_version = (*e)->manifest.version();
    ++loads;
  }
  EXPECT_GE(kills, 30);
  EXPECT_GE(loads, 20);
  EXPECT_GT(last_version, 5u);
  std::printf("%d kills, %d loads after a kill, %d loads while publishing, reached version %llu\n",
              kills, loads, concurrent_loads, static_cast<unsigned long long>(last_version));

  // A final restart cleans up whatever the kills left behind.
  proto::JobConfig job;
  job.set_name("crash");
  auto* t = job.mutable_tables()->add_tables();
  t->set_name("emb");
  t->set_dim(kCrashDim);
  auto w = ExportWriter::Open(dir.path(), job, 2);
  ASSERT_TRUE(w.ok()) << w.status();
  Snapshot s;
  s.version = (*w)->manifest().version() + 1;
  ASSERT_TRUE((*w)->Publish(s).ok());
  int fulls = 0, manifests = 0;
  for (const std::string& n : ListDir(dir.path())) {
    EXPECT_EQ(n.find(".tmp"), std::string::npos) << n;
    fulls += n.rfind("full-", 0) == 0;
    manifests += n.rfind("manifest-", 0) == 0;
  }
  EXPECT_EQ(fulls, 2);
  EXPECT_EQ(manifests, 2);
}

}  // namespace
}  // namespace freshet
