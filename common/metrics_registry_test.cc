#include "common/metrics_registry.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

namespace freshet {
namespace {

// The value of the one sample line that starts with `prefix ` in `text`.
double Sample(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  std::string line;
  int found = 0;
  double v = std::nan("");
  while (std::getline(in, line)) {
    if (line.rfind(prefix + " ", 0) == 0) {
      ++found;
      v = std::stod(line.substr(prefix.size() + 1));
    }
  }
  EXPECT_EQ(found, 1) << "sample '" << prefix << "' in:\n" << text;
  return v;
}

// The value of "key" in a flat JSON object line.
double JsonField(const std::string& line, const std::string& key) {
  const std::string k = "\"" + key + "\":";
  const size_t p = line.find(k);
  EXPECT_NE(p, std::string::npos) << key << " in " << line;
  if (p == std::string::npos) return std::nan("");
  return std::stod(line.substr(p + k.size()));
}

TEST(LatencyHistogramTest, BucketBoundsAreLogSpaced) {
  EXPECT_EQ(LatencyHistogram::BucketOf(0), 0);
  EXPECT_EQ(LatencyHistogram::BucketOf(1e-6), 0);
  EXPECT_EQ(LatencyHistogram::BucketOf(1.01e-6), 1);
  EXPECT_EQ(LatencyHistogram::BucketOf(2e-6), 4);  // 2^(4/4) us, inclusive upper bound
  EXPECT_EQ(LatencyHistogram::BucketOf(2.001e-6), 5);
  EXPECT_EQ(LatencyHistogram::BucketOf(1e9), LatencyHistogram::kBuckets - 1);
  for (int i = 0; i + 1 < LatencyHistogram::kBuckets - 1; ++i) {
    EXPECT_NEAR(LatencyHistogram::UpperBound(i + 1) / LatencyHistogram::UpperBound(i),
                std::exp2(0.25), 1e-9);
    EXPECT_EQ(LatencyHistogram::BucketOf(LatencyHistogram::UpperBound(i)), i);
  }
  EXPECT_TRUE(std::isinf(LatencyHistogram::UpperBound(LatencyHistogram::kBuckets - 1)));
}

TEST(LatencyHistogramTest, QuantilesWithinBucketError) {
  // Log-uniform latencies between 10 us and 100 ms: exact quantiles known.
  LatencyHistogram h;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(std::log(1e-5), std::log(1e-1));
  std::vector<double> xs;
  for (int i = 0; i < 200000; ++i) {
    xs.push_back(std::exp(u(rng)));
    h.Record(xs.back());
  }
  std::sort(xs.begin(), xs.end());
  const auto s = h.snapshot();
  EXPECT_EQ(s.count, 200000);
  for (double q : {0.5, 0.9, 0.99}) {
    const double exact = xs[static_cast<size_t>(q * xs.size())];
    const double est = s.Quantile(q);
    EXPECT_LT(std::fabs(est / exact - 1), 0.19)
        << "q=" << q << " exact " << exact << " est " << est;
  }
  double sum = 0;
  for (double x : xs) sum += x;
  EXPECT_NEAR(s.sum_seconds, sum, 1e-6 * xs.size());
}

TEST(LatencyHistogramTest, IntervalQuantilesFromSnapshotDifference) {
  LatencyHistogram h;
  for (int i = 0; i < 1000; ++i) h.Record(1e-3);
  const auto first = h.snapshot();
  for (int i = 0; i < 100; ++i) h.Record(0.5);
  const auto d = h.snapshot() - first;
  EXPECT_EQ(d.count, 100);
  EXPECT_NEAR(d.Quantile(0.5), 0.5, 0.5 * 0.19);
  EXPECT_NEAR(h.snapshot().Quantile(0.5), 1e-3, 1e-3 * 0.19);
  EXPECT_EQ(LatencyHistogram::Snapshot().Quantile(0.5), 0);
}

TEST(MetricsRegistryTest, PrometheusTextFormat) {
  MetricsRegistry r({{"rank", "3"}, {"role", "wor\"ker"}});
  Counter* c = r.AddCounter("pulls", "Pull requests sent.");
  Gauge* g = r.AddGauge("table_rows", "Rows in all tables.");
  LatencyHistogram* h = r.AddHistogram("pull_latency", "Pull round trip.");
  double cb = 42;
  r.AddCallback("bytes_sent", "Transport bytes sent.", true, [&cb] { return cb; });
  c->Add(5);
  c->Add();
  g->Set(1.5);
  h->Record(3e-6);
  h->Record(0.002);
  h->Record(100);  // overflow bucket
  const std::string text = r.RenderPrometheus();
  const std::string L = "{rank=\"3\",role=\"wor\\\"ker\"}";
  EXPECT_NE(text.find("# TYPE freshet_pulls_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# HELP freshet_pulls_total Pull requests sent.\n"), std::string::npos);
  EXPECT_EQ(Sample(text, "freshet_pulls_total" + L), 6);
  EXPECT_NE(text.find("# TYPE freshet_table_rows gauge\n"), std::string::npos);
  EXPECT_EQ(Sample(text, "freshet_table_rows" + L), 1.5);
  EXPECT_EQ(Sample(text, "freshet_bytes_sent_total" + L), 42);
  EXPECT_NE(text.find("# TYPE freshet_pull_latency_seconds histogram\n"), std::string::npos);
  EXPECT_EQ(Sample(text, "freshet_pull_latency_seconds_count" + L), 3);
  EXPECT_NEAR(Sample(text, "freshet_pull_latency_seconds_sum" + L), 100.002003, 1e-5);
  // Cumulative buckets at powers of two: 4 us holds 1, 1.024 ms 1, 2.048 ms 2, +Inf 3.
  const std::string lbl = "{rank=\"3\",role=\"wor\\\"ker\",le=\"";
  EXPECT_EQ(Sample(text, "freshet_pull_latency_seconds_bucket" + lbl + "1e-06\"}"), 0);
  EXPECT_EQ(Sample(text, "freshet_pull_latency_seconds_bucket" + lbl + "4e-06\"}"), 1);
  EXPECT_EQ(Sample(text, "freshet_pull_latency_seconds_bucket" + lbl + "0.001024\"}"), 1);
  EXPECT_EQ(Sample(text, "freshet_pull_latency_seconds_bucket" + lbl + "0.002048\"}"), 2);
  EXPECT_EQ(Sample(text, "freshet_pull_latency_seconds_bucket" + lbl + "33.5544\"}"), 2);
  EXPECT_EQ(Sample(text, "freshet_pull_latency_seconds_bucket" + lbl + "+Inf\"}"), 3);
  EXPECT_NEAR(Sample(text, "freshet_pull_latency_p50_seconds" + L), 0.002, 0.002 * 0.19);
  // Every non-comment line is `name{labels} number`; bucket counts never decrease.
  std::istringstream in(text);
  std::string line;
  const std::regex sample(R"(^[a-z_][a-z0-9_]*\{[^}]*\} -?[0-9][0-9.e+-]*$)");
  double prev_bucket = -1;
  while (std::getline(in, line)) {
    if (line.rfind("# ", 0) == 0) continue;
    EXPECT_TRUE(std::regex_match(line, sample)) << line;
    if (line.find("_bucket{") != std::string::npos) {
      const double v = std::stod(line.substr(line.rfind(' ') + 1));
      EXPECT_GE(v, prev_bucket) << line;
      prev_bucket = v;
    }
  }
}

TEST(MetricsRegistryTest, JsonLineHasRatesAndIntervalQuantiles) {
  MetricsRegistry r;
  Counter* c = r.AddCounter("examples", "Examples trained.");
  Gauge* g = r.AddGauge("loss", "Loss.");
  LatencyHistogram* h = r.AddHistogram("push_latency", "Push round trip.");
  (void)r.JsonLine("");
  c->Add(1000);
  g->Set(0.25);
  for (int i = 0; i < 10; ++i) h->Record(0.004);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const std::string line = r.JsonLine("\"rank\":1,\"role\":\"worker\"");
  EXPECT_EQ(line.front(), '{');
  EXPECT_EQ(line.back(), '}');
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(JsonField(line, "rank"), 1);
  EXPECT_NE(line.find("\"role\":\"worker\""), std::string::npos);
  EXPECT_GT(JsonField(line, "unix_ms"), 1.6e12);
  EXPECT_EQ(JsonField(line, "examples"), 1000);
  const double rate = JsonField(line, "examples_per_s");
  EXPECT_GT(rate, 1000 / 1.0);  // interval >= 0.2 s, and well under 1 s
  EXPECT_LE(rate, 1000 / 0.2 + 1e-6);
  EXPECT_EQ(JsonField(line, "loss"), 0.25);
  EXPECT_EQ(JsonField(line, "push_latency_count"), 10);
  EXPECT_NEAR(JsonField(line, "push_latency_p50_ms"), 4, 4 * 0.19);
  // Nothing new in the next interval: rate 0, quantiles 0, totals kept.
  const std::string next = r.JsonLine("");
  EXPECT_EQ(JsonField(next, "examples"), 1000);
  EXPECT_EQ(JsonField(next, "examples_per_s"), 0);
  EXPECT_EQ(JsonField(next, "push_latency_p99_ms"), 0);
  EXPECT_EQ(JsonField(next, "push_latency_count"), 10);
}

TEST(MetricsRegistryTest, ConcurrentUpdatesAreAllCounted) {
  MetricsRegistry r;
  Counter* c = r.AddCounter("ops", "Operations.");
  LatencyHistogram* h = r.AddHistogram("op_latency", "Latency.");
  std::atomic<bool> done{false};
  std::thread renderer([&] {
    while (!done) {
      (void)r.RenderPrometheus();
      (void)r.JsonLine("");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 100000; ++i) {
        c->Add();
        h->Record(1e-6 * (1 + (i + t) % 1000));
      }
    });
  }
  for (auto& t : ts) t.join();
  done = true;
  renderer.join();
  EXPECT_EQ(c->value(), 400000);
  const auto s = h->snapshot();
  EXPECT_EQ(s.count, 400000);
  int64_t total = 0;
  for (int64_t n : s.counts) total += n;
  EXPECT_EQ(total, 400000);
}

TEST(MetricsRegistryTest, NumbersFormat) {
  EXPECT_EQ(MetricNumber(0), "0");
  EXPECT_EQ(MetricNumber(12345678901234.0), "12345678901234");
  EXPECT_EQ(MetricNumber(0.125), "0.125");
  EXPECT_EQ(MetricNumber(-2.5), "-2.5");
  EXPECT_EQ(MetricNumber(std::nan("")), "0");
}

// Touching 64 MB of fresh heap shows in both resident sizes; the anonymous
// part never exceeds the whole.
TEST(ProcessMemoryTest, ResidentAndAnonymousBytesFollowTouchedMemory) {
  const int64_t rss0 = ProcessResidentBytes(), anon0 = ProcessAnonResidentBytes();
  ASSERT_GT(rss0, 0);
  ASSERT_GT(anon0, 0);
  EXPECT_LE(anon0, rss0);
  constexpr size_t kBytes = size_t{64} << 20;
  std::unique_ptr<char[]> block(new char[kBytes]);
  for (size_t i = 0; i < kBytes; i += 4096) block[i] = static_cast<char>(i);
  const int64_t rss1 = ProcessResidentBytes(), anon1 = ProcessAnonResidentBytes();
  EXPECT_GE(anon1 - anon0, static_cast<int64_t>(kBytes) * 9 / 10);
  EXPECT_GE(rss1 - rss0, static_cast<int64_t>(kBytes) * 9 / 10);
  EXPECT_LE(anon1, rss1);
  EXPECT_NE(block[4096], 1);  // keeps the writes
}

TEST(MetricsRegistryDeathTest, DuplicateOrBadNamesAreProgrammerErrors) {
  MetricsRegistry r;
  r.AddCounter("a", "");
  EXPECT_DEATH(r.AddCounter("a", ""), "registered twice");
  EXPECT_DEATH(r.AddGauge("Bad-Name", ""), "must match");
}

}  // namespace
}  // namespace freshet
