#include "serving/model_watcher.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "serving/internal/testing.h"

namespace freshet {
namespace {

using namespace std::chrono_literals;
using serving_testing::DeltaSnapshot;
using serving_testing::FullSnapshot;
using serving_testing::RandomExamples;
using serving_testing::RandomState;
using serving_testing::State;
using serving_testing::TempDir;
using serving_testing::TinyJob;
using serving_testing::WriteManifestAndLatest;

const std::vector<std::string> kColumns = {"user", "item", "query", "tags", "price", "age"};

std::unique_ptr<ModelWatcher> StartWatcher(const std::string& dir) {
  ModelWatcher::Options opt;
  opt.export_dir = dir;
  opt.poll_ms = 10;
  auto w = ModelWatcher::Start(opt);
  EXPECT_TRUE(w.ok()) << w.status();
  return std::move(w).value();
}

// Polls `cond` every ms until it holds or `timeout` passes.
template <typename F>
bool Eventually(F cond, std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(ModelWatcherTest, RejectsBadOptions) {
  ModelWatcher::Options opt;
  EXPECT_EQ(ModelWatcher::Start(opt).status().code(), StatusCode::kInvalidArgument);
  opt.export_dir = "/nonexistent";
  opt.poll_ms = 0;
  EXPECT_EQ(ModelWatcher::Start(opt).status().code(), StatusCode::kInvalidArgument);
}

TEST(ModelWatcherTest, WaitsForTheFirstExportThenLoadsIt) {
  TempDir dir;
  auto watcher = StartWatcher(dir.path());
  ASSERT_TRUE(watcher->WaitForPolls(3, 5000ms));
  EXPECT_EQ(watcher->Current(), nullptr);
  EXPECT_EQ(watcher->stats().load_failures, 0);  // no LATEST is not a failure

  const proto::JobConfig job = TinyJob();
  std::mt19937 rng(11);
  const State state = RandomState(job, kColumns, RandomExamples(kColumns, 50, &rng), 0.5, &rng);
  auto writer = ExportWriter::Open(dir.path(), job, 2);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Publish(FullSnapshot(job, state, 5)).ok());
  ASSERT_TRUE(watcher->WaitForVersion(5, 5000ms));
  const auto model = watcher->Current();
  EXPECT_EQ(model->version(), 5u);
  EXPECT_FALSE(model->incremental);
  EXPECT_GT(model->loaded_unix_ms, 0);
  EXPECT_EQ(model->data().tables.at("emb").size(), state.rows.at("emb").size());
  EXPECT_EQ(watcher->stats().loads, 1);
}

// With inotify a new LATEST is loaded at once, not at the next poll: with a
// one-minute poll period, only the notification can load it in time (also
// when the directory is created after the watcher started).
TEST(ModelWatcherTest, LoadsANewExportWithoutWaitingForThePoll) {
  TempDir root;
  const std::string dir = root.path() + "/export";  // created by the writer, later
  ModelWatcher::Options opt;
  opt.export_dir = dir;
  opt.poll_ms = 60000;
  auto w = ModelWatcher::Start(opt);
  ASSERT_TRUE(w.ok()) << w.status();
  auto& watcher = *w;
  const proto::JobConfig job = TinyJob();
  std::mt19937 rng(13);
  State s1 = RandomState(job, kColumns, RandomExamples(kColumns, 50, &rng), 0.7, &rng);
  auto writer = ExportWriter::Open(dir, job, 2);
  ASSERT_TRUE(writer.ok());
  // The directory now exists but the watcher's first poll (which found no
  // directory to watch) is a minute away: this first version is only picked
  // up by that poll, so load it through a second watcher started now.
  ASSERT_TRUE((*writer)->Publish(FullSnapshot(job, s1, 1)).ok());
  watcher.reset();
  w = ModelWatcher::Start(opt);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->WaitForVersion(1, 5000ms));  // the first poll runs at start
  State s2 = s1;
  s2.rows["emb"].begin()->second[0] += 1.0f;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE((*writer)->Publish(DeltaSnapshot(job, s1, s2, 2)).ok());
  ASSERT_TRUE((*w)->WaitForVersion(2, 10000ms)) << "a new LATEST was not noticed";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10000ms);
  EXPECT_GE((*w)->stats().notified_polls, 1);
  // The poll that loaded version 2 is counted just after the model is
  // published (WaitForVersion can return first): wait for the count, then
  // check that no third poll ran (the next timed one is a minute away).
  const auto until = std::chrono::steady_clock::now() + 5000ms;
  while ((*w)->stats().polls < 2 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ((*w)->stats().polls, 2);  // the start-up poll and the notified one

  // Without notifications the same change waits for the poll.
  opt.notify = false;
  auto polled = ModelWatcher::Start(opt);
  ASSERT_TRUE(polled.ok());
  ASSERT_TRUE((*polled)->WaitForVersion(2, 5000ms));
  State s3 = s2;
  s3.rows["emb"].begin()->second[0] += 1.0f;
  ASSERT_TRUE((*writer)->Publish(DeltaSnapshot(job, s2, s3, 3)).ok());
  ASSERT_TRUE((*w)->WaitForVersion(3, 10000ms));
  EXPECT_FALSE((*polled)->WaitForVersion(3, 500ms));
  EXPECT_EQ((*polled)->stats().notified_polls, 0);
}

TEST(ModelWatcherTest, AppliesDeltasIncrementallyAndOldModelsStayValid) {
  TempDir dir;
  const proto::JobConfig job = TinyJob();
  std::mt19937 rng(12);
  State s1 = RandomState(job, kColumns, RandomExamples(kColumns, 50, &rng), 0.7, &rng);
  auto writer = ExportWriter::Open(dir.path(), job, 2);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Publish(FullSnapshot(job, s1, 1)).ok());
  auto watcher = StartWatcher(dir.path());
  ASSERT_TRUE(watcher->WaitForVersion(1, 5000ms));
  const auto v1 = watcher->Current();

  // Change one row, delete another, add a new one.
  State s2 = s1;
  auto& emb = s2.rows["emb"];
  const uint64_t changed = emb.begin()->first;
  const uint64_t deleted = std::next(emb.begin())->first;
  emb[changed][0] += 1.0f;
  emb.erase(deleted);
  s2.rows["wide"].erase(deleted);
  emb[12345] = {1, 2, 3, 4};
  ASSERT_TRUE((*writer)->Publish(DeltaSnapshot(job, s1, s2, 2)).ok());
  ASSERT_TRUE(watcher->WaitForVersion(2, 5000ms));
  const auto v2 = watcher->Current();
  EXPECT_TRUE(v2->incremental);
  const LoadedTable& t2 = v2->data().tables.at("emb");
  EXPECT_EQ(t2.Find(changed)[0], s2.rows["emb"][changed][0]);
  EXPECT_EQ(t2.Find(deleted), nullptr);
  ASSERT_NE(t2.Find(12345), nullptr);
  EXPECT_EQ(t2.Find(12345)[3], 4.0f);
  // The model a request might still hold is untouched.
  const LoadedTable& t1 = v1->data().tables.at("emb");
  EXPECT_EQ(t1.Find(changed)[0], s1.rows["emb"][changed][0]);
  EXPECT_NE(t1.Find(deleted), nullptr);
  EXPECT_EQ(watcher->stats().loads, 2);
}

TEST(ModelWatcherTest, RejectsCorruptExportsAndKeepsServing) {
  TempDir dir;
  const proto::JobConfig job = TinyJob();
  std::mt19937 rng(13);
  State s1 = RandomState(job, kColumns, RandomExamples(kColumns, 50, &rng), 0.7, &rng);
  auto writer = ExportWriter::Open(dir.path(), job, 2);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Publish(FullSnapshot(job, s1, 1)).ok());
  auto watcher = StartWatcher(dir.path());
  ASSERT_TRUE(watcher->WaitForVersion(1, 5000ms));
  State s2 = s1;
  s2.rows["emb"].begin()->second[0] += 1.0f;

  // 1. A delta whose manifest entry has the wrong checksum.
  {
    const std::string name = SnapshotFileName(Snapshot::Kind::kDelta, 2);
    proto::ExportFile entry;
    ASSERT_TRUE(
        WriteSnapshotFile(DeltaSnapshot(job, s1, s2, 2), dir.path() + "/" + name, &entry).ok());
    entry.set_checksum(entry.checksum() ^ 1);
    proto::ExportManifest m = (*writer)->manifest();
    *m.add_deltas() = entry;
    m.set_version(2);
    ASSERT_TRUE(WriteManifestAndLatest(dir.path(), m).ok());
  }
  ASSERT_TRUE(Eventually([&] { return watcher->stats().load_failures == 1; }));
  EXPECT_NE(watcher->stats().last_error.find("delta-000000000002.snap"), std::string::npos)
      << watcher->stats().last_error;
  ASSERT_TRUE(watcher->WaitForPolls(5, 5000ms));
  EXPECT_EQ(watcher->stats().load_failures, 1);  // not retried every poll
  EXPECT_EQ(watcher->Current()->version(), 1u);

  // 2. A truncated delta file under a manifest that describes the whole file.
  {
    const std::string name = SnapshotFileName(Snapshot::Kind::kDelta, 3);
    const std::string path = dir.path() + "/" + name;
    proto::ExportFile entry;
    ASSERT_TRUE(WriteSnapshotFile(DeltaSnapshot(job, s1, s2, 3), path, &entry).ok());
    std::filesystem::resize_file(path, entry.size() / 2);
    proto::ExportManifest m = (*writer)->manifest();
    *m.add_deltas() = entry;
    m.set_version(3);
    ASSERT_TRUE(WriteManifestAndLatest(dir.path(), m).ok());
  }
  ASSERT_TRUE(Eventually([&] { return watcher->stats().load_failures == 2; }));
  EXPECT_NE(watcher->stats().last_error.find("delta-000000000003.snap"), std::string::npos)
      << watcher->stats().last_error;
  EXPECT_EQ(watcher->Current()->version(), 1u);

  // 3. LATEST naming a manifest that is garbage.
  {
    std::ofstream(dir.path() + "/manifest-000000000004.pb") << "not a protobuf \x01\x02\xff";
    std::ofstream(dir.path() + "/LATEST") << "manifest-000000000004.pb\n";
  }
  ASSERT_TRUE(Eventually([&] { return watcher->stats().load_failures == 3; }));
  EXPECT_EQ(watcher->Current()->version(), 1u);

  // 4. A snapshot that does not fit its job (dense params of the wrong size).
  {
    Snapshot bad = FullSnapshot(job, s2, 5);
    bad.dense.resize(3);
    const std::string name = SnapshotFileName(Snapshot::Kind::kFull, 5);
    proto::ExportFile entry;
    ASSERT_TRUE(WriteSnapshotFile(bad, dir.path() + "/" + name, &entry).ok());
    proto::ExportManifest m;
    *m.mutable_job() = job;
    *m.mutable_full() = entry;
    m.set_version(5);
    ASSERT_TRUE(WriteManifestAndLatest(dir.path(), m).ok());
  }
  ASSERT_TRUE(Eventually([&] { return watcher->stats().load_failures == 4; }));
  EXPECT_NE(watcher->stats().last_error.find("dense"), std::string::npos)
      << watcher->stats().last_error;
  EXPECT_EQ(watcher->Current()->version(), 1u);

  // A good export after the bad ones is picked up. First LATEST goes back to
  // manifest 1, the model already serving: nothing new to load.
  ASSERT_TRUE(WriteManifestAndLatest(dir.path(), (*writer)->manifest()).ok());
  ASSERT_TRUE(watcher->WaitForPolls(3, 5000ms));
  EXPECT_EQ(watcher->Current()->version(), 1u);
  EXPECT_EQ(watcher->stats().loads, 1);
  ASSERT_TRUE((*writer)->Publish(DeltaSnapshot(job, s1, s2, 6)).ok());
  ASSERT_TRUE(watcher->WaitForVersion(6, 5000ms));
  EXPECT_EQ(watcher->Current()->data().tables.at("emb").Find(s2.rows["emb"].begin()->first)[0],
            s2.rows["emb"].begin()->second[0]);
  EXPECT_EQ(watcher->stats().load_failures, 4);
}

// Reload policy: freeze_after_s keeps the first model for good;
// min_reload_interval_s loads at most that often, then the newest export.
TEST(ModelWatcherTest, FreezeAfterStopsLoadingNewModels) {
  TempDir dir;
  const proto::JobConfig job = TinyJob();
  std::mt19937 rng(31);
  State s1 = RandomState(job, kColumns, RandomExamples(kColumns, 30, &rng), 0.5, &rng);
  auto writer = ExportWriter::Open(dir.path(), job, 2);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Publish(FullSnapshot(job, s1, 1)).ok());
  ModelWatcher::Options opt;
  opt.export_dir = dir.path();
  opt.poll_ms = 10;
  opt.freeze_after_s = 1.0;  // room for the second load first, on a busy machine
  auto w = ModelWatcher::Start(opt);
  ASSERT_TRUE(w.ok()) << w.status();
  ModelWatcher& watcher = **w;
  ASSERT_TRUE(watcher.WaitForVersion(1, 5000ms));
  // Before the freeze a new version is still loaded.
  State s2 = s1;
  s2.rows["emb"].begin()->second[0] += 1.0f;
  ASSERT_TRUE((*writer)->Publish(DeltaSnapshot(job, s1, s2, 2)).ok());
  ASSERT_TRUE(watcher.WaitForVersion(2, 5000ms));
  ASSERT_TRUE(Eventually([&] { return watcher.stats().frozen; }));
  State s3 = s2;
  s3.rows["emb"].begin()->second[0] += 1.0f;
  ASSERT_TRUE((*writer)->Publish(DeltaSnapshot(job, s2, s3, 3)).ok());
  ASSERT_TRUE(watcher.WaitForPolls(20, 5000ms));
  EXPECT_EQ(watcher.Current()->version(), 2u);
  EXPECT_EQ(watcher.stats().loads, 2);
  EXPECT_GT(watcher.stats().skipped_by_policy, 0);
}

TEST(ModelWatcherTest, MinReloadIntervalLoadsAtMostThatOften) {
  TempDir dir;
  const proto::JobConfig job = TinyJob();
  std::mt19937 rng(32);
  State s = RandomState(job, kColumns, RandomExamples(kColumns, 30, &rng), 0.5, &rng);
  auto writer = ExportWriter::Open(dir.path(), job, 100);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Publish(FullSnapshot(job, s, 1)).ok());
  ModelWatcher::Options opt;
  opt.export_dir = dir.path();
  opt.poll_ms = 10;
  opt.min_reload_interval_s = 0.5;
  auto w = ModelWatcher::Start(opt);
  ASSERT_TRUE(w.ok()) << w.status();
  ModelWatcher& watcher = **w;
  ASSERT_TRUE(watcher.WaitForVersion(1, 5000ms));
  const auto first = std::chrono::steady_clock::now();
  // A new version every 50 ms for 1.2 s: at most 3 more loads (at >= 0.5 s
  // and >= 1.0 s after the first), and the last one is the newest version.
  uint64_t v = 1;
  while (std::chrono::steady_clock::now() - first < 1200ms) {
    State next = s;
    next.rows["emb"].begin()->second[0] += 1.0f;
    ASSERT_TRUE((*writer)->Publish(DeltaSnapshot(job, s, next, ++v)).ok());
    s = next;
    std::this_thread::sleep_for(50ms);
  }
  const int64_t loads = watcher.stats().loads;
  EXPECT_GE(loads, 2);
  EXPECT_LE(loads, 4);  // of about 20 versions (fewer on a loaded box)
  EXPECT_GT(watcher.stats().skipped_by_policy, 0);
  ASSERT_TRUE(watcher.WaitForVersion(v, 5000ms));  // the newest one, once due
  EXPECT_FALSE(watcher.stats().frozen);
}

TEST(ModelWatcherTest, ReloadIntervalStartsAfterTheWarmUp) {
  TempDir dir;
  const proto::JobConfig job = TinyJob();
  std::mt19937 rng(33);
  State s = RandomState(job, kColumns, RandomExamples(kColumns, 30, &rng), 0.5, &rng);
  auto writer = ExportWriter::Open(dir.path(), job, 100);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Publish(FullSnapshot(job, s, 1)).ok());
  ModelWatcher::Options opt;
  opt.export_dir = dir.path();
  opt.poll_ms = 10;
  opt.min_reload_interval_s = 60;
  opt.reload_interval_after_s = 1.5;
  auto w = ModelWatcher::Start(opt);
  ASSERT_TRUE(w.ok()) << w.status();
  ModelWatcher& watcher = **w;
  ASSERT_TRUE(watcher.WaitForVersion(1, 5000ms));
  auto publish = [&](uint64_t v) {
    State next = s;
    next.rows["emb"].begin()->second[0] += 1.0f;
    ASSERT_TRUE((*writer)->Publish(DeltaSnapshot(job, s, next, v)).ok());
    s = next;
  };
  // During the warm-up every export is loaded.
  publish(2);
  ASSERT_TRUE(watcher.WaitForVersion(2, 5000ms));
  // After it, the 60 s interval holds the serving model.
  std::this_thread::sleep_for(1600ms);
  publish(3);
  ASSERT_TRUE(watcher.WaitForPolls(20, 5000ms));
  EXPECT_EQ(watcher.Current()->version(), 2u);
  EXPECT_GT(watcher.stats().skipped_by_policy, 0);
}

TEST(ModelWatcherTest, RejectsBadReloadPolicy) {
  ModelWatcher::Options opt;
  opt.export_dir = "/nonexistent";
  opt.min_reload_interval_s = -1;
  EXPECT_EQ(ModelWatcher::Start(opt).status().code(), StatusCode::kInvalidArgument);
  opt.min_reload_interval_s = 1;
  opt.reload_interval_after_s = -1;
  EXPECT_EQ(ModelWatcher::Start(opt).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace freshet
