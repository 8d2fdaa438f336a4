// MetricsRegistry: a rank's counters, gauges and latency histograms, cheap
// enough to update from hot paths, rendered as Prometheus text (format 0.0.4)
// for a /metrics endpoint and as one flat JSON object per interval for the
// metrics log (common/metrics_service.h).
//
// Thread safety: registration (Add*) takes a mutex and may happen from any
// thread at any time; the returned pointers stay valid for the registry's
// life. Updates (Counter::Add, Gauge::Set, LatencyHistogram::Record) are
// lock-free relaxed atomics with no allocation, safe from any thread.
// RenderPrometheus() and JsonLine() may run concurrently with updates and
// with each other; they see each metric at some recent value (no
// cross-metric snapshot consistency).
//
// Names: every metric is "freshet_<name>" in Prometheus (plus the unit
// suffixes below) and "<name>" in the JSON line. `name` must match
// [a-z_][a-z0-9_]* and be unique in the registry (CHECK: programmer error).
// Every Prometheus sample carries the registry's constant labels (e.g.
// rank="3",role="worker").
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/mutex.h"

namespace freshet {

// A monotonically increasing count (requests, bytes, seconds spent).
class Counter {
 public:
  void Add(int64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// A value that goes up and down (rows in a table, current loss).
class Gauge {
 public:
  void Set(double v) { v_.store(v, std::memory_order_relaxed); }
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

// Latencies in fixed log-spaced buckets: bucket i (0 <= i < kBuckets - 1)
// holds values in (kMinSeconds * 2^((i-1)/4), kMinSeconds * 2^(i/4)]
// seconds; bucket 0 holds everything <= 1 us and the last bucket everything
// above 2^(102/4) us (~47 s). Quantiles are interpolated inside the bucket
// (log-linearly), so their relative error is below 2^(1/4) - 1 = 19%.
class LatencyHistogram {
 public:
  static constexpr int kBuckets = 104;  // 1 us .. ~47 s, then overflow
  static constexpr double kMinSeconds = 1e-6;

  // Upper bound of bucket i in seconds (+inf for the last).
  static double UpperBound(int i);
  // The bucket a value falls in.
  static int BucketOf(double seconds);

  void Record(double seconds);
  void RecordSince(std::chrono::steady_clock::time_point start) {
    Record(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }

  // A copy of the counts, for quantiles over an interval (a later snapshot
  // minus an earlier one).
  struct Snapshot {
    std::array<int64_t, kBuckets> counts{};
    int64_t count = 0;
    double sum_seconds = 0;
    Snapshot operator-(const Snapshot& earlier) const;
    // The q-quantile (0 < q < 1) in seconds; 0 when empty.
    double Quantile(double q) const;
  };
  Snapshot snapshot() const;

 private:
  std::array<std::atomic<int64_t>, kBuckets> counts_{};
  std::atomic<int64_t> count_{0};
  std::atomic<int64_t> sum_ns_{0};
};

class MetricsRegistry {
 public:
  // `labels` are added to every Prometheus sample, in order, e.g.
  // {{"rank", "0"}, {"role", "server"}}. Values are escaped on render.
  explicit MetricsRegistry(std::vector<std::pair<std::string, std::string>> labels = {});
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Prometheus: freshet_<name>_total (counter). JSON: "<name>" (value) and
  // "<name>_per_s" (increase over the log interval / interval seconds).
  Counter* AddCounter(const std::string& name, const std::string& help);
  // Prometheus: freshet_<name> (gauge). JSON: "<name>".
  Gauge* AddGauge(const std::string& name, const std::string& help);
  // Prometheus: freshet_<name>_seconds (histogram with power-of-two bucket
  // bounds, _sum, _count) plus gauges freshet_<name>_p50_seconds and
  // freshet_<name>_p99_seconds over the whole run. JSON: "<name>_count"
  // (total), and "<name>_p50_ms", "<name>_p99_ms" over the log interval (0
  // when nothing was recorded in it).
  LatencyHistogram* AddHistogram(const std::string& name, const std::string& help);
  // A value read at render time (e.g. bytes a transport counted, rows of a
  // table). `fn` runs on the rendering thread, must be thread-safe, and
  // must outlive the registry's rendering. As a counter it renders like
  // AddCounter (must be monotonic), else like AddGauge.
  void AddCallback(const std::string& name, const std::string& help, bool is_counter,
                   std::function<double()> fn);

  // Every metric in Prometheus text exposition format 0.0.4.
  std::string RenderPrometheus() const EXCLUDES(mu_);

  // One flat JSON object (no newline): {"unix_ms":..,"uptime_s":..,
  // <extra fields>, <every metric>}. Rates and interval quantiles are over
  // the time since the previous JsonLine() call (the first call: since
  // construction). `extra` is inserted verbatim after uptime_s, e.g.
  // "\"rank\":0,\"role\":\"server\"" (no leading or trailing comma).
  std::string JsonLine(const std::string& extra) EXCLUDES(json_mu_, mu_);

 private:
  enum class Kind { kCounter, kGauge, kHistogram, kCallbackCounter, kCallbackGauge };
  struct Entry {
    std::string name, help;
    Kind kind;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<LatencyHistogram> histogram;
    std::function<double()> fn;
    // JsonLine() state (under json_mu_): the value/snapshot at the last line.
    double last_value = 0;
    LatencyHistogram::Snapshot last_snapshot;
  };
  Entry* AddEntry(const std::string& name, const std::string& help, Kind kind) EXCLUDES(mu_);
  std::string LabelText(const std::string& extra) const;  // {rank="0",...}

  const std::vector<std::pair<std::string, std::string>> labels_;
  const std::chrono::steady_clock::time_point start_;
  mutable Mutex mu_;  // guards entries_ (the vector, not the metrics)
  std::vector<std::unique_ptr<Entry>> entries_ GUARDED_BY(mu_);  // in registration order
  // Serializes JsonLine(); guards last_json_ and every Entry's last_* (those
  // are not annotated: a nested struct's field cannot name json_mu_).
  Mutex json_mu_ ACQUIRED_BEFORE(mu_);
  std::chrono::steady_clock::time_point last_json_ GUARDED_BY(json_mu_);
};

// Formats v for JSON and Prometheus: integral values (below 2^53) exactly
// without a fraction, others with 6 significant digits; NaN and infinities
// as 0 (JSON has no NaN; callers should not produce them).
std::string MetricNumber(double v);

// This process's resident set size in bytes (/proc/self/statm); 0 if it
// cannot be read.
int64_t ProcessResidentBytes();
// This process's minor page faults so far (getrusage ru_minflt).
int64_t ProcessMinorFaults();

// The anonymous part of it (RssAnon in /proc/self/status: heap and mmapped
// data, without the pages of the binary and shared libraries); 0 if it
// cannot be read.
int64_t ProcessAnonResidentBytes();

}  // namespace freshet
