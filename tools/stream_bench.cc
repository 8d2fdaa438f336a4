// freshet_stream_bench: streaming ingestion figures.
//
//   1. Ingestion rate: writes the synthetic shop's behavior events
//      (impressions + clicks drawn from the oracle) into a stream directory
//      of `partitions` files, then for each worker count n runs n threads,
//      each a worker's TailSource -> parse -> LabelJoiner -> examples over its
//      partitions (P mod n), and reports events/s per worker and in total.
//   2. Join buffer memory: adds `pending` shop impressions to a LabelJoiner
//      (none closes) and reports the heap bytes per waiting impression
//      (glibc mallinfo2 before/after), beside the bytes of its values.
//
//   build/bin/freshet_stream_bench [--impressions=1000000] [--workers=1,2]
//
// Prints a table, then one JSON line.
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <malloc.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/logging.h"
#include "worker/data/synthetic_shop.h"
#include "worker/stream/event.h"
#include "worker/stream/label_joiner.h"
#include "worker/stream/stream_source.h"
#include "worker/stream/tail_source.h"

DEFINE_int64(impressions, 1000000, "impressions written for the ingestion benchmark");
DEFINE_int32(partitions, 4, "stream partitions (files)");
DEFINE_string(workers, "1,2", "comma-separated worker counts to run");
DEFINE_int64(pending, 1000000, "waiting impressions for the memory figure");
DEFINE_string(dir, "/tmp/freshet_stream_bench", "scratch stream directory (replaced)");

namespace freshet {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::vector<int> ParseList(const std::string& s) {
  std::vector<int> v;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) v.push_back(std::stoi(item));
  return v;
}

// Shop impressions as events, `n` of them (whole requests), with their
// request ids r<i>.
std::unique_ptr<SyntheticShop> Shop(int64_t impressions) {
  ShopConfig cfg;
  cfg.seed = 3;
  cfg.num_requests = std::max<int64_t>(1, impressions / cfg.slate_size);
  cfg.holdout_fraction = 0;
  auto shop = SyntheticShop::Create(cfg);
  CHECK(shop.ok()) << shop.status();
  return std::move(shop).value();
}

struct Written {
  int64_t impressions = 0, clicks = 0, bytes = 0;
};

Written WriteStream(const std::string& dir, int partitions, int64_t impressions) {
  CHECK_EQ(std::system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()), 0);
  auto shop = Shop(impressions);
  std::vector<std::FILE*> files(partitions);
  const std::string header = FormatEventHeader(ShopColumns()) + "\n";
  for (int p = 0; p < partitions; ++p) {
    files[p] = std::fopen((dir + "/part-" + std::to_string(p) + ".events").c_str(), "w");
    CHECK(files[p] != nullptr);
    std::fputs(header.c_str(), files[p]);
  }
  Written w;
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> u01(0, 1);
  std::vector<Example> slate;
  std::string buf;
  int64_t request = 0;
  Event imp, click;
  imp.kind = EventKind::kImpression;
  click.kind = EventKind::kClick;
  while (shop->NextRequest(&slate)) {
    const int p = static_cast<int>(request % partitions);
    imp.request = click.request = "r" + std::to_string(request++);
    buf.clear();
    for (const Example& ex : slate) {
      imp.ms = ex.time * 1000;
      imp.user = click.user = ex.user;
      imp.item = click.item = ex.values[1];
      imp.oracle = ex.oracle;
      imp.values = ex.values;
      AppendEventLine(imp, &buf);
      ++w.impressions;
      if (u01(rng) < ex.oracle) {
        click.ms = imp.ms + 2000;
        AppendEventLine(click, &buf);
        ++w.clicks;
      }
    }
    std::fwrite(buf.data(), 1, buf.size(), files[p]);
    w.bytes += buf.size();
  }
  for (auto* f : files) std::fclose(f);
  std::fclose(std::fopen((dir + "/_END").c_str(), "w"));
  return w;
}

struct WorkerRun {
  int64_t events = 0, examples = 0;
  double seconds = 0;
};

WorkerRun RunWorker(const std::string& dir, int worker, int num_workers) {
  TailOptions t;
  t.dir = dir;
  t.worker = worker;
  t.num_workers = num_workers;
  auto tail = TailSource::Open(t);
  CHECK(tail.ok()) << tail.status();
  StreamSourceOptions o;
  o.columns = ShopColumns();
  o.join.window_ms = 30000;
  auto src = StreamExampleSource::Create(std::move(tail).value(), o);
  CHECK(src.ok()) << src.status();
  const auto t0 = Clock::now();
  Example ex;
  while (true) {
    auto r = (*src)->Poll(&ex, Clock::now() + std::chrono::seconds(1));
    CHECK(r.ok()) << r.status();
    if (*r == ExampleSource::Outcome::kEnd) break;
  }
  WorkerRun run;
  run.seconds = Since(t0);
  run.events = (*src)->stats().lines;
  run.examples = (*src)->stats().examples;
  return run;
}

size_t HeapBytes() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

int Main() {
  std::printf("freshet_stream_bench: %lld impressions in %d partitions (%s)\n",
              static_cast<long long>(FLAGS_impressions), FLAGS_partitions, FLAGS_dir.c_str());
  auto t0 = Clock::now();
  const Written w = WriteStream(FLAGS_dir, FLAGS_partitions, FLAGS_impressions);
  std::printf("wrote %lld impressions + %lld clicks, %.1f MB in %.1f s\n",
              static_cast<long long>(w.impressions), static_cast<long long>(w.clicks),
              w.bytes / 1e6, Since(t0));
  std::printf("\n%8s %14s %18s %16s %10s\n", "workers", "events", "events/s/worker",
              "events/s total", "MB/s/wkr");
  std::string json_rates;
  double rate_1 = 0;
  for (int n : ParseList(FLAGS_workers)) {
    std::vector<WorkerRun> runs(n);
    std::vector<std::thread> threads;
    const auto start = Clock::now();
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([&, i] { runs[i] = RunWorker(FLAGS_dir, i, n); });
    }
    for (auto& t : threads) t.join();
    const double wall = Since(start);
    int64_t events = 0, examples = 0;
    double per_worker = 0;
    for (const auto& r : runs) {
      events += r.events;
      examples += r.examples;
      per_worker += r.events / r.seconds / n;
    }
    CHECK_EQ(examples, w.impressions) << "every impression must come out once";
    const double mb_per_worker = per_worker * (w.bytes / double(w.impressions + w.clicks)) / 1e6;
    std::printf("%8d %14lld %18.0f %16.0f %10.1f\n", n, static_cast<long long>(events), per_worker,
                events / wall, mb_per_worker);
    if (n == 1) rate_1 = per_worker;
    if (!json_rates.empty()) json_rates += ",";
    json_rates +=
        "\"" + std::to_string(n) + "\":" + std::to_string(static_cast<int64_t>(per_worker));
  }

  // Join buffer memory: `pending` impressions waiting, none closes.
  auto shop = Shop(FLAGS_pending);
  JoinOptions jo;
  jo.window_ms = int64_t{1} << 50;
  jo.max_pending = static_cast<size_t>(FLAGS_pending) + 1;
  std::vector<Event> events;
  events.reserve(FLAGS_pending);
  std::vector<Example> slate;
  int64_t request = 0, value_bytes = 0;
  while (static_cast<int64_t>(events.size()) < FLAGS_pending && shop->NextRequest(&slate)) {
    const std::string req = "r" + std::to_string(request++);
    for (const Example& ex : slate) {
      Event e;
      e.kind = EventKind::kImpression;
      e.ms = ex.time * 1000;
      e.request = req;
      e.user = ex.user;
      e.item = ex.values[1];
      e.oracle = ex.oracle;
      e.values = ex.values;
      value_bytes += e.request.size() + e.item.size() + e.user.size();
      for (const auto& v : e.values) value_bytes += v.size() + 1;
      events.push_back(std::move(e));
    }
  }
  std::vector<Example> out;
  malloc_trim(0);
  const size_t before = HeapBytes();
  auto joiner = LabelJoiner::Create(jo);
  CHECK(joiner.ok());
  t0 = Clock::now();
  for (const auto& e : events) (*joiner)->Add(e, &out);
  const double add_s = Since(t0);
  const size_t after = HeapBytes();
  CHECK(out.empty());
  const int64_t pending = static_cast<int64_t>((*joiner)->waiting());
  const double per_pending = (after - before) / static_cast<double>(pending);
  const double payload = value_bytes / static_cast<double>(pending);
  std::printf(
      "\njoin buffer: %lld waiting impressions: %.0f heap bytes each (payload: key, user "
      "and values %.0f bytes); %.0f adds/s\n",
      static_cast<long long>(pending), per_pending, payload, pending / add_s);
  std::printf(
      "{\"bench\":\"stream\",\"impressions\":%lld,\"partitions\":%d,"
      "\"events_per_s_per_worker\":{%s},\"join_bytes_per_pending\":%.0f,"
      "\"join_payload_bytes\":%.0f,\"join_adds_per_s\":%.0f,\"pending\":%lld,"
      "\"events_per_s_1_worker\":%.0f}\n",
      static_cast<long long>(w.impressions), FLAGS_partitions, json_rates.c_str(), per_pending,
      payload, pending / add_s, static_cast<long long>(pending), rate_1);
  std::system(("rm -rf " + FLAGS_dir).c_str());
  return 0;
}

}  // namespace
}  // namespace freshet

int main(int argc, char** argv) {
  gflags::SetUsageMessage("streaming ingestion benchmark: tail + parse + join rate, join memory");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  freshet::InitLogging(argv[0]);
  return freshet::Main();
}
