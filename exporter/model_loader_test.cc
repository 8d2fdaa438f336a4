#include "exporter/model_loader.h"

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

#include "exporter/export_dir.h"
#include "exporter/internal/export_testing.h"
#include "exporter/snapshot_format.h"

namespace freshet {
namespace {

using testing_internal::ExpectSameModel;
using testing_internal::ListDir;
using testing_internal::MakeDelta;
using testing_internal::MakeFull;
using testing_internal::MakeJob;
using testing_internal::MakeTable;
using testing_internal::ReadBytes;
using testing_internal::Rows;
using testing_internal::TempDir;
using testing_internal::WriteBytes;

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
  bad.mutable_deltas(0)->set_checksum(m.deltas(0).checksum() ^ 1);
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
  std::printf(
      "1M rows x dim 16 (%.1f MB): publish %.3f s (%.0f MB/s), LoadLatestExport %.3f s, "
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

[[noreturn]] void PublishForever(const std::string& dir,
                                 proto::ExportConfig::Durability durability) {
  proto::JobConfig job;
  job.set_name("crash");
  auto* t = job.mutable_tables()->add_tables();
  t->set_name("emb");
  t->set_dim(kCrashDim);
  auto w = ExportWriter::Open(dir, job, 2, durability);
  if (!w.ok()) {
    std::fprintf(stderr, "child: %s\n", w.status().ToString().c_str());
    _exit(3);
  }
  uint64_t v = (*w)->highest_version();
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
      const bool touched =
          Alive(k, v) && (v % 3 == static_cast<uint64_t>(k % 3) || !Alive(k, v - 1));
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

// Under ASYNC durability too: a killed process leaves every published file
// in the page cache, so no version is lost (only a power loss can lose the
// versions after DURABLE's, export_dir_test).
void KillPublishersAndLoad(proto::ExportConfig::Durability durability) {
  TempDir dir;
  std::mt19937 rng(20240601);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(12);
  int kills = 0, loads = 0, concurrent_loads = 0;
  uint64_t last_version = 0;
  for (int i = 0; (i < 40 || loads < 30) && std::chrono::steady_clock::now() < deadline; ++i) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) PublishForever(dir.path(), durability);
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
  auto w = ExportWriter::Open(dir.path(), job, 2, durability);
  ASSERT_TRUE(w.ok()) << w.status();
  // Two fulls, the first made durable before the second (ASYNC keeps the
  // durable version's files until then).
  for (int k = 0; k < 2; ++k) {
    Snapshot s;
    s.version = (*w)->highest_version() + 1;
    ASSERT_TRUE((*w)->Publish(s).ok());
    ASSERT_TRUE((*w)->WaitDurable().ok());
  }
  int fulls = 0, manifests = 0;
  for (const std::string& n : ListDir(dir.path())) {
    EXPECT_EQ(n.find(".tmp"), std::string::npos) << n;
    fulls += n.rfind("full-", 0) == 0;
    manifests += n.rfind("manifest-", 0) == 0;
  }
  EXPECT_EQ(fulls, 2);
  EXPECT_EQ(manifests, 2);
}

TEST(CrashSafetyTest, SigkillWhilePublishingNeverTearsTheModel) {
  KillPublishersAndLoad(proto::ExportConfig::SYNC);
}

TEST(CrashSafetyTest, SigkillWhilePublishingAsyncNeverTearsTheModel) {
  KillPublishersAndLoad(proto::ExportConfig::ASYNC);
}

}  // namespace
}  // namespace freshet
