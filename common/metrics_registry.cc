#include "common/metrics_registry.h"

#include <glog/logging.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace freshet {
namespace {

bool ValidName(const std::string& n) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool ok = (c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// Prometheus label values and HELP text: backslash, quote and newline.
std::string Escape(const std::string& s, bool quote) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

std::string MetricNumber(double v) {
  if (!std::isfinite(v)) return "0";
  if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {
    return std::to_string(static_cast<int64_t>(v));
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

double LatencyHistogram::UpperBound(int i) {
  if (i >= kBuckets - 1) return std::numeric_limits<double>::infinity();
  return kMinSeconds * std::exp2(i / 4.0);
}

int LatencyHistogram::BucketOf(double seconds) {
  if (!(seconds > kMinSeconds)) return 0;  // also NaN
  int i = static_cast<int>(std::ceil(4.0 * std::log2(seconds / kMinSeconds)));
  // Guard the rounding of log2 at exact bounds.
  while (i > 0 && seconds <= UpperBound(i - 1)) --i;
  while (i < kBuckets - 1 && seconds > UpperBound(i)) ++i;
  return std::min(i, kBuckets - 1);
}

void LatencyHistogram::Record(double seconds) {
  counts_[BucketOf(seconds)].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  const double ns = seconds > 0 ? seconds * 1e9 : 0;
  sum_ns_.fetch_add(static_cast<int64_t>(ns), std::memory_order_relaxed);
}

LatencyHistogram::Snapshot LatencyHistogram::snapshot() const {
  Snapshot s;
  // Buckets first, then the total: count >= sum of buckets never happens
  // the other way round under concurrent Record(); Quantile() uses the
  // buckets' own sum.
  for (int i = 0; i < kBuckets; ++i) s.counts[i] = counts_[i].load(std::memory_order_relaxed);
  s.count = count_.load(std::memory_order_relaxed);
  s.sum_seconds = sum_ns_.load(std::memory_order_relaxed) * 1e-9;
  return s;
}

LatencyHistogram::Snapshot LatencyHistogram::Snapshot::operator-(const Snapshot& e) const {
  Snapshot d;
  for (int i = 0; i < kBuckets; ++i) d.counts[i] = counts[i] - e.counts[i];
  d.count = count - e.count;
  d.sum_seconds = sum_seconds - e.sum_seconds;
  return d;
}

double LatencyHistogram::Snapshot::Quantile(double q) const {
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  if (total <= 0) return 0;
  const double target = q * static_cast<double>(total);
  double before = 0;
  for (int i = 0; i < kBuckets; ++i) {
    if (counts[i] <= 0) continue;
    if (before + counts[i] >= target) {
      if (i == 0) return UpperBound(0);
      const double lo = UpperBound(i - 1);
      if (i == kBuckets - 1) return lo;
      const double hi = UpperBound(i);
      const double f = std::clamp((target - before) / counts[i], 0.0, 1.0);
      return lo * std::pow(hi / lo, f);
    }
    before += counts[i];
  }
  return UpperBound(kBuckets - 2);
}

MetricsRegistry::MetricsRegistry(std::vector<std::pair<std::string, std::string>> labels)
    : labels_(std::move(labels)), start_(std::chrono::steady_clock::now()), last_json_(start_) {}

MetricsRegistry::Entry* MetricsRegistry::AddEntry(const std::string& name, const std::string& help,
                                                  Kind kind) {
  CHECK(ValidName(name)) << "metric name '" << name << "' must match [a-z_][a-z0-9_]*";
  MutexLock l(&mu_);
  for (const auto& e : entries_)
    CHECK(e->name != name) << "metric '" << name << "' registered twice";
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->help = help;
  e->kind = kind;
  entries_.push_back(std::move(e));
  return entries_.back().get();
}

Counter* MetricsRegistry::AddCounter(const std::string& name, const std::string& help) {
  Entry* e = AddEntry(name, help, Kind::kCounter);
  e->counter = std::make_unique<Counter>();
  return e->counter.get();
}

Gauge* MetricsRegistry::AddGauge(const std::string& name, const std::string& help) {
  Entry* e = AddEntry(name, help, Kind::kGauge);
  e->gauge = std::make_unique<Gauge>();
  return e->gauge.get();
}

LatencyHistogram* MetricsRegistry::AddHistogram(const std::string& name, const std::string& help) {
  Entry* e = AddEntry(name, help, Kind::kHistogram);
  e->histogram = std::make_unique<LatencyHistogram>();
  return e->histogram.get();
}

void MetricsRegistry::AddCallback(const std::string& name, const std::string& help, bool is_counter,
                                  std::function<double()> fn) {
  CHECK(fn) << "metric '" << name << "': empty callback";
  Entry* e = AddEntry(name, help, is_counter ? Kind::kCallbackCounter : Kind::kCallbackGauge);
  e->fn = std::move(fn);
}

std::string MetricsRegistry::LabelText(const std::string& extra) const {
  std::string s;
  for (const auto& [k, v] : labels_) {
    s += s.empty() ? "{" : ",";
    s += k + "=\"" + Escape(v, true) + "\"";
  }
  if (!extra.empty()) {
    s += s.empty() ? "{" : ",";
    s += extra;
  }
  if (!s.empty()) s += "}";
  return s;
}

std::string MetricsRegistry::RenderPrometheus() const {
  std::ostringstream o;
  const std::string labels = LabelText("");
  MutexLock l(&mu_);
  for (const auto& e : entries_) {
    const std::string base = "freshet_" + e->name;
    const std::string help = Escape(e->help, false);
    switch (e->kind) {
      case Kind::kCounter:
      case Kind::kCallbackCounter: {
        const double v = e->kind == Kind::kCounter ? e->counter->value() : e->fn();
        o << "# HELP " << base << "_total " << help << "\n# TYPE " << base << "_total counter\n"
          << base << "_total" << labels << " " << MetricNumber(v) << "\n";
        break;
      }
      case Kind::kGauge:
      case Kind::kCallbackGauge: {
        const double v = e->kind == Kind::kGauge ? e->gauge->value() : e->fn();
        o << "# HELP " << base << " " << help << "\n# TYPE " << base << " gauge\n"
          << base << labels << " " << MetricNumber(v) << "\n";
        break;
      }
      case Kind::kHistogram: {
        const LatencyHistogram::Snapshot s = e->histogram->snapshot();
        const std::string h = base + "_seconds";
        o << "# HELP " << h << " " << help << "\n# TYPE " << h << " histogram\n";
        int64_t cum = 0;
        for (int i = 0; i < LatencyHistogram::kBuckets - 1; ++i) {
          cum += s.counts[i];
          if (i % 4 != 0) continue;  // power-of-two bounds only
          char le[32];
          std::snprintf(le, sizeof(le), "%.6g", LatencyHistogram::UpperBound(i));
          o << h << "_bucket" << LabelText(std::string("le=\"") + le + "\"") << " " << cum << "\n";
        }
        cum += s.counts[LatencyHistogram::kBuckets - 1];
        o << h << "_bucket" << LabelText("le=\"+Inf\"") << " " << cum << "\n";
        o << h << "_sum" << labels << " " << MetricNumber(s.sum_seconds) << "\n";
        o << h << "_count" << labels << " " << cum << "\n";
        for (const char* q : {"p50", "p99"}) {
          const std::string g = base + "_" + q + "_seconds";
          o << "# HELP " << g << " " << q << " of " << e->name << " since start (within 19%)\n"
            << "# TYPE " << g << " gauge\n"
            << g << labels << " " << MetricNumber(s.Quantile(q[1] == '5' ? 0.5 : 0.99)) << "\n";
        }
        break;
      }
    }
  }
  return o.str();
}

std::string MetricsRegistry::JsonLine(const std::string& extra) {
  MutexLock jl(&json_mu_);
  const auto now = std::chrono::steady_clock::now();
  const double interval = std::max(1e-9, Seconds(now - last_json_));
  last_json_ = now;
  const int64_t unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  std::string s = "{\"unix_ms\":" + std::to_string(unix_ms) +
                  ",\"uptime_s\":" + MetricNumber(std::round(Seconds(now - start_) * 1e3) / 1e3);
  if (!extra.empty()) s += "," + extra;
  auto field = [&s](const std::string& k, double v) { s += ",\"" + k + "\":" + MetricNumber(v); };
  MutexLock l(&mu_);
  for (const auto& e : entries_) {
    switch (e->kind) {
      case Kind::kCounter:
      case Kind::kCallbackCounter: {
        const double v = e->kind == Kind::kCounter ? e->counter->value() : e->fn();
        field(e->name, v);
        field(e->name + "_per_s", (v - e->last_value) / interval);
        e->last_value = v;
        break;
      }
      case Kind::kGauge:
        field(e->name, e->gauge->value());
        break;
      case Kind::kCallbackGauge:
        field(e->name, e->fn());
        break;
      case Kind::kHistogram: {
        const LatencyHistogram::Snapshot now_s = e->histogram->snapshot();
        const LatencyHistogram::Snapshot d = now_s - e->last_snapshot;
        e->last_snapshot = now_s;
        field(e->name + "_count", static_cast<double>(now_s.count));
        field(e->name + "_p50_ms", d.Quantile(0.5) * 1e3);
        field(e->name + "_p99_ms", d.Quantile(0.99) * 1e3);
        break;
      }
    }
  }
  s += "}";
  return s;
}

int64_t ProcessMinorFaults() {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return ru.ru_minflt;
}

int64_t ProcessResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  long long size = 0, resident = 0;
  const int got = std::fscanf(f, "%lld %lld", &size, &resident);
  std::fclose(f);
  return got == 2 ? resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE)) : 0;
}

int64_t ProcessAnonResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  long long kb = -1;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::sscanf(line, "RssAnon: %lld kB", &kb) == 1) break;
  }
  std::fclose(f);
  return kb >= 0 ? kb * 1024 : 0;
}

}  // namespace freshet
