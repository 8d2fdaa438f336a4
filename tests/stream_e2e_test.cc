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
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <queue>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "exporter/export_dir.h"
#include "worker/checkpoint.h"
#include "worker/data/synthetic_shop.h"
#include "worker/stream/event.h"
#include "worker/stream/join_state.h"
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
    std::priority_queue<std::pair<int64_t, std::string>,
                        std::vector<std::pair<int64_t, std::string>>, std::greater<>>
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
                    " --stream_dir=" +
                    dir + " --work_dir=" + kOut + "/work --save=false > " + log + " 2>&1");
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
  // The freshness clocks: the final manifest has worker 0's gathered
  // minimum of each (EXPORT_FINAL); every example's label became known no
  // earlier than its impression was read, so per worker, and so in the
  // minimum, label >= read.
  EXPECT_EQ(manifest->ingest_wall_ms(), j.at("final_ingest_wall_ms").get<int64_t>());
  EXPECT_EQ(manifest->label_wall_ms(), j.at("final_label_wall_ms").get<int64_t>());
  EXPECT_GE(manifest->label_wall_ms(), manifest->ingest_wall_ms());
  EXPECT_LE(manifest->label_wall_ms(), manifest->created_unix_ms());

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
// left it and restores the label joiner's state. On the finished stream of
// the test above: job A checkpoints every 20 steps and stops at step 60,
// while impressions wait for their label window (the checkpoint's join
// state holds them); job B (`--resume`, 2 workers) and job C
// (`--restore_from` the same checkpoint onto 3 workers: partitions move
// between workers) each read exactly the event lines after the workers'
// checkpointed positions (every file's remaining lines; files A never
// opened, whole), not the stream from its start, and A up to the cut plus
// B (or C) trains every example exactly once: the join counters, the
// examples trained and the positives trained match the uninterrupted run
// of the test above.
TEST(StreamE2eTest, ResumeRestoresPositionsAndJoinStateAndTrainsEveryExampleOnce) {
  const std::string dir = kOut + "/events";
  struct stat st;
  ASSERT_EQ(stat((dir + "/_END").c_str(), &st), 0)
      << "needs the finished stream of TrainsFromALiveRotatedStreamAndCountsAddUp";
  // The uninterrupted run's figures.
  std::ifstream whole_in(kOut + "/train.log");
  const std::string whole_text((std::istreambuf_iterator<char>(whole_in)),
                               std::istreambuf_iterator<char>());
  const std::string whole_line = JobJsonLine(whole_text);
  ASSERT_FALSE(whole_line.empty()) << "needs the log of TrainsFromALiveRotatedStreamAndCountsAddUp";
  const auto whole = nlohmann::json::parse(whole_line);

  const std::string ckpt = kOut + "/resume-ckpt";
  ASSERT_EQ(Sh("rm -rf " + ckpt + " " + kOut + "/resume-work " + kOut + "/resume3-work"), 0);
  const std::string job =
      " --job_config=cluster-configs/jobs/realtime-shop.pbtxt --stream_dir=" + dir +
      " --save=false --metrics_port=0 ";
  const std::string train = "cd " + kSrc + " && timeout 300 " + kSrc + "/launch/mpirun.sh -np 5 " +
                            kBin + "/freshet_train" + job + "--work_dir=" + kOut +
                            "/resume-work --checkpoint_dir=" + ckpt +
                            " --checkpoint_interval_steps=20 --checkpoint_keep=100 ";
  const std::string log_a = kOut + "/resume-a.log", log_b = kOut + "/resume-b.log",
                    log_c = kOut + "/resume-c.log";
  ASSERT_EQ(Sh(train + "--max_steps=60 > " + log_a + " 2>&1"), 0) << "see " << log_a;
  ASSERT_EQ(Sh(train + "--resume > " + log_b + " 2>&1"), 0) << "see " << log_b;
  // C: 2 servers, 3 workers (partition P moves to worker P mod 3).
  const std::string cluster3 = kOut + "/cluster-2s3w.pbtxt";
  std::ofstream(cluster3) << "name: \"stream-2s3w\"\n"
                          << "roles { role: SERVER count: 2 }\n"
                          << "roles { role: WORKER count: 3 }\n"
                          << "transport { request_timeout_ms: 60000 max_inflight_requests: 64 }\n"
                          << "server { handler_threads: 1 partitions: 16 }\n"
                          << "metrics { port: 0 }\n";
  auto read_log = [](const std::string& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  const std::string text_a = read_log(log_a), text_b = read_log(log_b);
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(text_b, m, std::regex("restored checkpoint ([0-9]+): step ([0-9]+)")))
      << text_b;
  const std::string restored = ckpt + "/ckpt-" + m[1].str();
  ASSERT_EQ(Sh("cd " + kSrc + " && timeout 300 " + kSrc + "/launch/mpirun.sh -np 5 " + kBin +
               "/freshet_train" + job + "--cluster_config=" + cluster3 + " --work_dir=" + kOut +
               "/resume3-work --restore_from=" + restored + " > " + log_c + " 2>&1"),
            0)
      << "see " << log_c;
  const std::string text_c = read_log(log_c);
  // A stopped at step 60 with a checkpoint there: the cut is A's end.
  const auto a = nlohmann::json::parse(JobJsonLine(text_a));
  ASSERT_EQ(a.at("steps").get<int64_t>(), 60);
  EXPECT_EQ(std::stoi(m[2].str()), 60);
  EXPECT_NE(text_b.find("stream positions of"), std::string::npos) << text_b;

  // The checkpoint lists and checksums every worker's join state, and
  // impressions were waiting for their window at the cut.
  auto manifest = VerifyCheckpoint(restored);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  std::map<std::string, uint64_t> listed;
  for (const auto& f : manifest->files) listed[f.name] = f.checksum;
  int64_t waiting = 0, untrained = 0;
  for (int worker = 0; worker < 2; ++worker) {
    const std::string name = JoinStateFileName(worker);
    ASSERT_TRUE(listed.count(name)) << name << " not in " << restored << "/MANIFEST";
    EXPECT_NE(listed[name], 0u) << name;
    auto join = ReadJoinStateFile(restored + "/" + name);
    ASSERT_TRUE(join.ok()) << join.status();
    EXPECT_EQ(join->worker, worker);
    EXPECT_EQ(join->step, 60);
    for (const auto& e : join->joiner.entries) {
      EXPECT_EQ(e.partition % 2, worker) << e.key;
    }
    waiting += static_cast<int64_t>(join->joiner.waiting());
    untrained += static_cast<int64_t>(join->examples.size());
  }
  EXPECT_GT(waiting, 0) << "no impression waited for its window at the cut";
  std::printf("cut at step 60: %lld impressions waiting, %lld examples read but not trained\n",
              static_cast<long long>(waiting), static_cast<long long>(untrained));
  EXPECT_NE(text_b.find("join state of " + std::to_string(waiting) + " pending impressions"),
            std::string::npos)
      << text_b;

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
  const auto& ws = whole.at("stream");
  for (const auto& [name, text] :
       {std::pair<std::string, std::string>{"B (2 workers)", text_b}, {"C (3 workers)", text_c}}) {
    SCOPED_TRACE(name);
    const std::string json_line = JobJsonLine(text);
    ASSERT_FALSE(json_line.empty()) << text;
    const auto j = nlohmann::json::parse(json_line);
    const auto& s = j.at("stream");
    const int64_t read = s.at("lines").get<int64_t>();
    EXPECT_EQ(read, expected) << name << " read " << read
                              << " event lines; after the cut there are " << expected << " (of "
                              << all_events << ")";
    EXPECT_LT(read, all_events);
    // The counters cover the whole stream (the checkpoint's plus the
    // restored run's) and equal the uninterrupted run's.
    for (const char* k :
         {"impressions", "reactions", "joined", "expired", "evicted", "duplicate", "dup_labels",
          "late", "orphan", "mismatched", "ignored", "early_joined"}) {
      EXPECT_EQ(s.at(k).get<int64_t>(), ws.at(k).get<int64_t>()) << k;
    }
    // Every example trained exactly once: A's up to the cut plus this run's.
    EXPECT_EQ(a.at("train_examples").get<int64_t>() + j.at("train_examples").get<int64_t>(),
              whole.at("train_examples").get<int64_t>());
    EXPECT_EQ(
        a.at("progressive_positives").get<int64_t>() + j.at("progressive_positives").get<int64_t>(),
        whole.at("progressive_positives").get<int64_t>());
  }
}

}  // namespace
}  // namespace freshet
