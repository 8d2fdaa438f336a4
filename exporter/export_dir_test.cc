#include "exporter/export_dir.h"

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
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/file_io.h"
#include "exporter/internal/export_testing.h"
#include "exporter/model_loader.h"

namespace freshet {
namespace {

using testing_internal::ListDir;
using testing_internal::MakeDelta;
using testing_internal::MakeFull;
using testing_internal::MakeJob;
using testing_internal::MakeTable;
using testing_internal::ReadBytes;
using testing_internal::TempDir;
using testing_internal::WriteBytes;

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

TEST(ExportWriterTest, APublishTakesFiveFsyncs) {
  // Each fsync is a journal commit, which waits in the run queue on a busy
  // box: a publish syncs its three files and the directory twice (the
  // snapshot's rename rides on the manifest's directory sync, LATEST's
  // comes before retention deletes anything).
  TempDir dir;
  auto w = ExportWriter::Open(dir.path(), MakeJob(), 2);
  ASSERT_TRUE(w.ok()) << w.status();
  for (int v = 1; v <= 3; ++v) {
    const int64_t before = GetFileWriteCounters().fsyncs;
    ASSERT_TRUE((*w)->Publish(v == 1 ? MakeFull(v) : MakeDelta(v, {1}, {})).ok());
    EXPECT_EQ(GetFileWriteCounters().fsyncs - before, 5) << "version " << v;
  }
  auto m = ReadLatestManifest(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->deltas_size(), 2);
}

// ---- ASYNC durability ---------------------------------------------------------------

constexpr auto kAsync = proto::ExportConfig::ASYNC;

TEST(ExportWriterAsyncTest, PublishesWithoutFsyncAndTheFlusherMakesItDurable) {
  TempDir dir;
  auto w = ExportWriter::Open(dir.path(), MakeJob(), 2, kAsync);
  ASSERT_TRUE(w.ok()) << w.status();
  const int64_t fsyncs0 = GetFileWriteCounters().fsyncs;
  const int64_t own_ns = ThisThreadFsyncNanos();
  for (int v = 1; v <= 3; ++v) {
    ASSERT_TRUE((*w)->Publish(v == 1 ? MakeFull(v) : MakeDelta(v, {1}, {})).ok());
    // Visible at once: a reader follows LATEST to this version.
    auto m = ReadLatestManifest(dir.path());
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->version(), static_cast<uint64_t>(v));
  }
  EXPECT_EQ(ThisThreadFsyncNanos(), own_ns);  // not one fsync on the publishing thread
  ASSERT_TRUE((*w)->WaitDurable().ok());
  EXPECT_EQ(ReadBytes(dir.file("DURABLE")), "manifest-000000000003.pb\n");
  // The flusher synced every file it published, LATEST, the directory and
  // DURABLE (file and directory); batches may merge, so at least one round.
  EXPECT_GE(GetFileWriteCounters().fsyncs - fsyncs0, 6);
  EXPECT_FALSE((*w)->TakeDurableLagMs().empty());
  const std::set<std::string> files = ListDir(dir.path());
  EXPECT_TRUE(files.count("DURABLE") == 1 && files.count("LATEST") == 1);
  // A reopened writer continues the chain; nothing to recover.
  w->reset();
  auto again = ExportWriter::Open(dir.path(), MakeJob(), 2, kAsync);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->manifest().version(), 3u);
  EXPECT_EQ((*again)->highest_version(), 3u);
  ASSERT_TRUE((*again)->Publish(MakeDelta(4, {2}, {})).ok());
  ASSERT_TRUE((*again)->WaitDurable().ok());
  EXPECT_EQ(ReadBytes(dir.file("DURABLE")), "manifest-000000000004.pb\n");
}

// Publishes full 1 and deltas 2, 3 (ASYNC, all durable), then makes the
// directory look as a power loss before the flusher reached version 3 can
// leave it: DURABLE names version 2, and `tear` damages what 3 added.
void PublishThenLoseVersion3(const std::string& dir,
                             const std::function<void(const std::string&)>& tear) {
  {
    auto w = ExportWriter::Open(dir, MakeJob(), 2, kAsync);
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE((*w)->Publish(MakeFull(1)).ok());
    ASSERT_TRUE((*w)->Publish(MakeDelta(2, {1}, {})).ok());
    ASSERT_TRUE((*w)->Publish(MakeDelta(3, {2}, {3})).ok());
    ASSERT_TRUE((*w)->WaitDurable().ok());
  }
  WriteBytes(ExportPath(dir, "DURABLE"), "manifest-000000000002.pb\n");
  tear(dir);
}

TEST(ExportWriterAsyncTest, APowerLossFallsBackToTheDurableVersionAndANewLineage) {
  const std::vector<std::pair<std::string, std::function<void(const std::string&)>>> tears = {
      {"torn delta",
       [](const std::string& d) {
         const std::string p = ExportPath(d, SnapshotFileName(Snapshot::Kind::kDelta, 3));
         const std::string bytes = ReadBytes(p);
         WriteBytes(p, bytes.substr(0, bytes.size() / 2));
       }},
      {"empty manifest",
       [](const std::string& d) { WriteBytes(ExportPath(d, ManifestFileName(3)), ""); }},
      {"LATEST lost", [](const std::string& d) { ::unlink(ExportPath(d, "LATEST").c_str()); }},
  };
  for (const auto& [what, tear] : tears) {
    SCOPED_TRACE(what);
    TempDir dir;
    PublishThenLoseVersion3(dir.path(), tear);
    auto w = ExportWriter::Open(dir.path(), MakeJob(), 2, kAsync);
    ASSERT_TRUE(w.ok()) << w.status();
    // Back at the durable version, which readers can load.
    EXPECT_EQ((*w)->manifest().version(), 2u);
    EXPECT_EQ(ReadBytes(dir.file("LATEST")), "manifest-000000000002.pb\n");
    auto loaded = LoadLatestExport(dir.path());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(loaded->get()->manifest.version(), 2u);
    // Versions go on above the lost one, from a full snapshot (a new lineage).
    EXPECT_EQ((*w)->highest_version(), 3u);
    EXPECT_EQ((*w)->Publish(MakeDelta(4, {4}, {})).code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ((*w)->Publish(MakeFull(3)).code(), StatusCode::kFailedPrecondition);
    ASSERT_TRUE((*w)->Publish(MakeFull(4)).ok());
    ASSERT_TRUE((*w)->WaitDurable().ok());
    EXPECT_EQ((*w)->manifest().lineage(), 4u);
    EXPECT_EQ(ReadBytes(dir.file("DURABLE")), "manifest-000000000004.pb\n");
    // Retention removed what was lost.
    const std::set<std::string> files = ListDir(dir.path());
    EXPECT_EQ(files.count(SnapshotFileName(Snapshot::Kind::kDelta, 3)), 0u);
    EXPECT_EQ(files.count(ManifestFileName(3)), 0u);
  }
}

TEST(ExportWriterAsyncTest, AKilledWriterKeepsTheVersionsItPublished) {
  // A killed process leaves its files in the page cache: LATEST's version
  // beyond DURABLE's checks out, is kept, and is made durable.
  for (auto mode : {kAsync, proto::ExportConfig::SYNC}) {
    SCOPED_TRACE(proto::ExportConfig::Durability_Name(mode));
    TempDir dir;
    PublishThenLoseVersion3(dir.path(), [](const std::string&) {});
    auto w = ExportWriter::Open(dir.path(), MakeJob(), 2, mode);
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_EQ((*w)->manifest().version(), 3u);
    EXPECT_EQ(ReadBytes(dir.file("LATEST")), "manifest-000000000003.pb\n");
    ASSERT_TRUE((*w)->WaitDurable().ok());
    if (mode == kAsync) {
      EXPECT_EQ(ReadBytes(dir.file("DURABLE")), "manifest-000000000003.pb\n");
    } else {
      EXPECT_EQ(ListDir(dir.path()).count("DURABLE"), 0u);  // SYNC: LATEST is durable
    }
    ASSERT_TRUE((*w)->Publish(MakeDelta(4, {1}, {})).ok());  // the same lineage goes on
    EXPECT_EQ((*w)->manifest().lineage(), 1u);
  }
}

TEST(ExportWriterAsyncTest, AFailedFsyncRefusesLaterPublishes) {
  TempDir dir;
  auto w = ExportWriter::Open(dir.path(), MakeJob(), 2, kAsync);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->Publish(MakeFull(1)).ok());
  ASSERT_TRUE((*w)->WaitDurable().ok());
  FileFaultInjector::Global().Set("delta-000000000002", EIO, 1, FileOp::kFsync);
  ASSERT_TRUE((*w)->Publish(MakeDelta(2, {1}, {})).ok());  // visible before its fsync
  Status st = (*w)->WaitDurable();
  FileFaultInjector::Global().Clear();
  EXPECT_EQ(st.code(), StatusCode::kInternal) << st;
  EXPECT_NE(st.ToString().find("delta-000000000002.snap: fsync failed"), std::string::npos) << st;
  EXPECT_NE(st.ToString().find("version 2 durable"), std::string::npos) << st;
  // Its data may be lost: nothing more is published, loudly.
  Status next = (*w)->Publish(MakeDelta(3, {1}, {}));
  EXPECT_EQ(next.code(), StatusCode::kInternal) << next;
  EXPECT_EQ(ReadBytes(dir.file("DURABLE")), "manifest-000000000001.pb\n");
}

TEST(ExportWriterTest, RetainOneKeepsOnlyTheCurrentChain) {
  TempDir dir;
  auto w = ExportWriter::Open(dir.path(), MakeJob(), 1);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Publish(MakeFull(10)).ok());
  ASSERT_TRUE((*w)->Publish(MakeDelta(11, {1}, {})).ok());
  ASSERT_TRUE((*w)->Publish(MakeFull(12)).ok());
  EXPECT_EQ(ListDir(dir.path()), (std::set<std::string>{"LATEST", "full-000000000012.snap",
                                                        "manifest-000000000012.pb"}));
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

}  // namespace
}  // namespace freshet
