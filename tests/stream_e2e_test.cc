// End to end, streaming: a producer (this test) writes the synthetic shop's
// behavior events into a stream directory while the local cluster (mpirun:
// 2 servers, 2 workers, 1 exporter) trains from it with
// cluster-configs/jobs/realtime-shop.pbtxt. Impressions come from
// SyntheticShop; each is clicked with its oracle probability, the click
// written 0.1-20 s of event time later (every 50th before its impression,
// out of order, 0.1-1 s after it); a few impressions are written twice; every partition's file is
// rotated while the job runs; then _END. Checks: the job ends by itself;
// every impression is emitted exactly once (joined + expired = distinct
// impressions, duplicates counted); positives = clicks written; nothing is
// late, orphaned or evicted; the progressive AUC is clearly above chance;
// and the final manifest's watermark is the minimum over the workers (the
// producer stops partition 1, worker 1's only partition, early, so worker 1
// lags worker 0 by minutes of event time).
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <filesystem>
#include <map>
#include <queue>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "exporter/snapshot.h"
#include "worker/data/synthetic_shop.h"
#include "worker/stream/event.h"
#include "worker/stream/tail_source.h"

namespace freshet {
namespace {

const std::string kSrc = FRESHET_SOURCE_DIR;
const std::string kBin = FRESHET_BIN_DIR;
const std::string kOut = std::string(FRESHET_TEST_OUT_DIR) + "/stream";

int Sh(const std::string& cmd) {
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

struct Written {
  int64_t distinct_impressions = 0;
  int64_t duplicates = 0;
  int64_t clicks = 0;
  int64_t early_clicks = 0;
  std::map<int, int64_t> max_imp_ms;  // per partition
  int rotations = 0;
};

constexpr int kPartitions = 3;

// Writes the shop's events into `dir`, partition = request % 3; partition 1
// gets no requests after the first 80%.
// Waits (up to 120 s) until the training job has started: on a loaded
// machine mpirun can take longer to start the ranks than the producer takes
// to write everything, and then nothing would be live-followed.
void WaitForJobStart(const std::string& log) {
  for (int i = 0; i < 1200; ++i) {
    std::ifstream in(log);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (text.find("all-reduce through") != std::string::npos) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void Produce(const std::string& dir, const std::string& log, Written* w) {
  WaitForJobStart(log);
  ShopConfig cfg;
  cfg.seed = 5;
  cfg.num_requests = 4000;
  cfg.duration_s = 4000 * 3;  // a request every ~3 s of event time
  cfg.drift_period_s = cfg.duration_s;
  cfg.holdout_fraction = 0;
  auto shop = SyntheticShop::Create(cfg);
  ASSERT_TRUE(shop.ok()) << shop.status();
  const std::string header = FormatEventHeader(ShopColumns()) + "\n";
  struct Part {
    std::FILE* f = nullptr;
    int lines = 0, rotated = 0;
    // Clicks not yet due: (ms, line).
    std::priority_queue<std::pair<int64_t, std::string>, std::vector<std::pair<int64_t, std::string>>,
                        std::greater<>>
        clicks;
  };
  std::vector<Part> parts(kPartitions);
  auto live = [&](int p) { return dir + "/part-" + std::to_string(p) + ".events"; };
  auto open_part = [&](int p) {
    parts[p].f = std::fopen(live(p).c_str(), "w");
    ASSERT_NE(parts[p].f, nullptr);
    std::fputs(header.c_str(), parts[p].f);
  };
  auto put = [&](int p, const std::string& line) {
    std::fputs(line.c_str(), parts[p].f);
    if (++parts[p].lines % 4000 == 0) {  // rotate
      std::fclose(parts[p].f);
      const std::string to = live(p) + "." + std::to_string(++parts[p].rotated);
      ASSERT_EQ(std::rename(live(p).c_str(), to.c_str()), 0);
      ++w->rotations;
      open_part(p);
    }
  };
  for (int p = 0; p < kPartitions; ++p) open_part(p);
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<double> u01(0, 1);
  std::vector<Example> slate;
  int64_t request = 0;
  std::string line;
  while ((*shop)->NextRequest(&slate)) {
    const int p = static_cast<int>(request % kPartitions);
    const bool skip = p == 1 && request >= cfg.num_requests * 8 / 10;
    const std::string req = "r" + std::to_string(request++);
    if (skip) {
      // Partition 1 ends here: its pending clicks go out now.
      while (!parts[p].clicks.empty()) {
        put(p, parts[p].clicks.top().second);
        parts[p].clicks.pop();
      }
      continue;
    }
    const int64_t ms = slate[0].time * 1000;
    // Clicks that are due by now, in time order.
    while (!parts[p].clicks.empty() && parts[p].clicks.top().first <= ms) {
      put(p, parts[p].clicks.top().second);
      parts[p].clicks.pop();
    }
    for (const Example& ex : slate) {
      Event imp;
      imp.kind = EventKind::kImpression;
      imp.ms = ms;
      imp.request = req;
      imp.user = ex.user;
      imp.item = ex.values[1];
      imp.oracle = ex.oracle;
      imp.values = ex.values;
      line.clear();
      AppendEventLine(imp, &line);
      std::string click_line;
      if (u01(rng) < ex.oracle) {
        // Every 50th click is written before its impression; its time is
        // close to the impression's (the watermark is the newest event time
        // read, and the job allows no lateness).
        const bool early = (w->clicks + 1) % 50 == 0;
        Event click;
        click.kind = EventKind::kClick;
        click.ms = ms + 100 + static_cast<int64_t>(u01(rng) * (early ? 900 : 19900));
        click.request = req;
        click.user = ex.user;
        click.item = imp.item;
        AppendEventLine(click, &click_line);
        ++w->clicks;
        if (early) {
          put(p, click_line);  // out of order: before its impression
          ++w->early_clicks;
        } else {
          parts[p].clicks.push({click.ms, click_line});
        }
      }
      put(p, line);
      ++w->distinct_impressions;
      if (w->distinct_impressions % 300 == 0) {
        put(p, line);  // the same impression again
        ++w->duplicates;
      }
      w->max_imp_ms[p] = std::max(w->max_imp_ms[p], ms);
    }
    for (auto& part : parts) std::fflush(part.f);
    if (request % 10 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (int p = 0; p < kPartitions; ++p) {
    while (!parts[p].clicks.empty()) {
      put(p, parts[p].clicks.top().second);
      parts[p].clicks.pop();
    }
    std::fclose(parts[p].f);
  }
  std::fclose(std::fopen((dir + "/_END").c_str(), "w"));
}

// freshet_train's final JSON line ({"job": ...}) in its output; empty if none.
std::string JobJsonLine(const std::string& text) {
  std::string json_line;
  std::istringstream lines(text);
  for (std::string l; std::getline(lines, l);) {
    if (l.rfind("{\"job\"", 0) == 0) json_line = l;
  }
  return json_line;
}

TEST(StreamE2eTest, TrainsFromALiveRotatedStreamAndCountsAddUp) {
  ASSERT_EQ(Sh("rm -rf " + kOut + " && mkdir -p " + kOut + "/events"), 0);
  const std::string dir = kOut + "/events";
  Written w;
  const std::string log = kOut + "/train.log";
  std::thread producer(Produce, dir, log, &w);
  const int rc = Sh("cd " + kSrc + " && timeout 400 " + kSrc + "/launch/mpirun.sh -np 5 " + kBin +
                    "/freshet_train --job_config=cluster-configs/jobs/realtime-shop.pbtxt"
                    " --stream_dir=" + dir + " --work_dir=" + kOut + "/work --save=false > " +
                    log + " 2>&1");
  producer.join();
  ASSERT_EQ(rc, 0) << "freshet_train failed; see " << log;
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Status lines showed the join and the watermark while training.
  EXPECT_NE(text.find("join (worker 0) imp"), std::string::npos) << text;
  EXPECT_NE(text.find("watermark 1"), std::string::npos) << text;
  const std::string json_line = JobJsonLine(text);
  ASSERT_FALSE(json_line.empty()) << text;
  const auto j = nlohmann::json::parse(json_line);
  const auto& s = j.at("stream");
  EXPECT_GE(w.rotations, 6);
  EXPECT_EQ(s.at("impressions").get<int64_t>(), w.distinct_impressions + w.duplicates);
  EXPECT_EQ(s.at("duplicate").get<int64_t>(), w.duplicates);
  EXPECT_EQ(s.at("joined").get<int64_t>(), w.clicks);
  EXPECT_EQ(s.at("early_joined").get<int64_t>(), w.early_clicks);
  EXPECT_EQ(s.at("joined").get<int64_t>() + s.at("expired").get<int64_t>(), w.distinct_impressions);
  EXPECT_EQ(s.at("evicted").get<int64_t>(), 0);
  EXPECT_EQ(s.at("late").get<int64_t>() + s.at("orphan").get<int64_t>() +
                s.at("mismatched").get<int64_t>() + s.at("dup_labels").get<int64_t>(),
            0);
  EXPECT_EQ(s.at("bad_lines").get<int64_t>(), 0);
  // Every emitted example was trained on exactly once.
  EXPECT_EQ(j.at("train_examples").get<int64_t>(), w.distinct_impressions);
  EXPECT_EQ(j.at("progressive_positives").get<int64_t>(), w.clicks);
  EXPECT_GT(j.at("progressive_auc").get<double>(), 0.6) << json_line;

  // The exported watermark is the minimum over the workers: worker 1 reads
  // only partition 1, which stopped early.
  const int64_t w0 = std::max(w.max_imp_ms[0], w.max_imp_ms[2]) / 1000;
  const int64_t w1 = w.max_imp_ms[1] / 1000;
  ASSERT_LT(w1, w0);
  EXPECT_EQ(j.at("final_watermark").get<int64_t>(), w1);
  auto manifest = ReadLatestManifest(kOut + "/work/export");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->watermark(), w1);
  EXPECT_GT(manifest->ingest_wall_ms(), 0);

  // The workers' checkpointed read positions cover every byte of every
  // file exactly once: each file is in one worker's position, at its end.
  std::map<uint64_t, uint64_t> offsets;  // inode -> offset
  for (int worker = 0; worker < 2; ++worker) {
    std::ifstream pin(kOut + "/work/stream-positions/worker-" + std::to_string(worker) +
                      ".position");
    std::string ptext((std::istreambuf_iterator<char>(pin)), std::istreambuf_iterator<char>());
    auto pos = TailPosition::Parse(ptext);
    ASSERT_TRUE(pos.ok()) << pos.status();
    for (const auto& f : pos->files) {
      EXPECT_EQ(StreamFilePartition(f.name) % 2, worker) << f.name;
      EXPECT_TRUE(offsets.emplace(f.inode, f.offset).second) << f.name << " in two positions";
      struct stat st;
      ASSERT_EQ(stat((dir + "/" + f.name).c_str(), &st), 0) << f.name;
      EXPECT_EQ(f.offset, static_cast<uint64_t>(st.st_size)) << f.name;
    }
  }
  EXPECT_EQ(offsets.size(), static_cast<size_t>(kPartitions + w.rotations));
}

// Restoring a streaming job reopens the stream where the checkpoint's cut
// left it. On the finished stream of the test above: job A checkpoints every
// 20 steps and stops at step 60; job B (`--resume`) restores A's newest
// checkpoint and reads exactly the event lines after the workers'
// checkpointed positions (every file's remaining lines; files A never
// opened, whole), not the stream from its start.
TEST(StreamE2eTest, ResumeReopensTheStreamAtTheCheckpointedPositions) {
  const std::string dir = kOut + "/events";
  struct stat st;
  ASSERT_EQ(stat((dir + "/_END").c_str(), &st), 0)
      << "needs the finished stream of TrainsFromALiveRotatedStreamAndCountsAddUp";
  const std::string ckpt = kOut + "/resume-ckpt";
  ASSERT_EQ(Sh("rm -rf " + ckpt + " " + kOut + "/resume-work"), 0);
  const std::string train = "cd " + kSrc + " && timeout 300 " + kSrc + "/launch/mpirun.sh -np 5 " +
                            kBin + "/freshet_train --job_config=cluster-configs/jobs/realtime-shop.pbtxt"
                            " --stream_dir=" + dir + " --work_dir=" + kOut +
                            "/resume-work --save=false --metrics_port=0 --checkpoint_dir=" + ckpt +
                            " --checkpoint_interval_steps=20 --checkpoint_keep=100 ";
  const std::string log_a = kOut + "/resume-a.log", log_b = kOut + "/resume-b.log";
  ASSERT_EQ(Sh(train + "--max_steps=60 > " + log_a + " 2>&1"), 0) << "see " << log_a;
  ASSERT_EQ(Sh(train + "--resume > " + log_b + " 2>&1"), 0) << "see " << log_b;
  std::ifstream in(log_b);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text, m, std::regex("restored checkpoint ([0-9]+): step ([0-9]+)")))
      << text;
  const std::string restored = ckpt + "/ckpt-" + m[1].str();
  EXPECT_GE(std::stoi(m[2].str()), 20);
  EXPECT_NE(text.find("stream positions of"), std::string::npos) << text;
  // Lines per file name now, and where the checkpoint left each file.
  std::map<std::string, int64_t> lines_now;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (StreamFilePartition(name) < 0) continue;
    std::ifstream f(e.path());
    int64_t n = 0;
    for (std::string l; std::getline(f, l);) ++n;
    lines_now[name] = n;
  }
  std::map<std::string, int64_t> lines_at_cut;
  for (int worker = 0; worker < 2; ++worker) {
    std::ifstream pin(restored + "/worker-" + std::to_string(worker) + ".position");
    std::string ptext((std::istreambuf_iterator<char>(pin)), std::istreambuf_iterator<char>());
    auto pos = TailPosition::Parse(ptext);
    ASSERT_TRUE(pos.ok()) << pos.status();
    for (const auto& f : pos->files) lines_at_cut[f.name] = f.lines;
  }
  ASSERT_FALSE(lines_at_cut.empty());
  int64_t expected = 0, all_events = 0;
  for (const auto& [name, n] : lines_now) {
    all_events += n - 1;  // minus the header
    auto it = lines_at_cut.find(name);
    expected += it == lines_at_cut.end() ? n - 1 : n - std::max<int64_t>(it->second, 1);
  }
  const std::string json_line = JobJsonLine(text);
  ASSERT_FALSE(json_line.empty()) << text;
  const auto j = nlohmann::json::parse(json_line);
  const auto& s = j.at("stream");
  const int64_t read = s.at("impressions").get<int64_t>() + s.at("reactions").get<int64_t>() +
                       s.at("ignored").get<int64_t>() + s.at("bad_lines").get<int64_t>();
  EXPECT_EQ(read, expected) << "B read " << read << " event lines; after the cut there are "
                            << expected << " (of " << all_events << ")";
  EXPECT_LT(read, all_events);
}

}  // namespace
}  // namespace freshet
