// freshet_shop_sim: the closed loop's traffic. Simulated users of the
// synthetic shop (worker/data/synthetic_shop.h) arrive over simulated time,
// ask freshet_serve's POST /rank to order their candidates, see the top k,
// click and buy according to the shop's hidden model (with position bias),
// and their impressions and reactions are written as an event stream
// (docs/EVENT_FORMAT.md) that streaming training follows.
//
//   freshet_shop_sim --serve_url=http://127.0.0.1:8080 --stream_dir=DIR
//                    --job_config=cluster-configs/jobs/realtime-shop.pbtxt
//                    [--seconds=60] [--speed=10] [--rate=20] [--metrics_file=F]
//
// Clock: simulated time runs --speed simulated seconds per wall second from
// the shop's start time; requests arrive as a Poisson process of --rate
// requests per simulated second. The traffic (users, contexts, candidate
// sets, arrival times, reaction coins) depends only on --seed and the world
// flags, so runs against different servers see the same requests;
// reactions, and through them the users' recent items, depend on what was
// shown. One client thread issues the requests in arrival order (so the
// world evolves deterministically); when serving is slower than the
// arrival rate the simulated clock waits (the lag is reported).
//
// Ranking: every candidate is sent with position "1" (the model is asked
// for P(click | top position), the usual way to rank with a position-aware
// model) and the impression is written with the position it was shown at.
// Before any model is served (/rank answers 503) the candidates are shown
// in a random order (cold start); those requests are counted separately.
//
// Events: `imp` lines at the request time; `click`, `cart` and `buy` lines
// later in event time (a click 0.5-5 s after the impression, a purchase's
// cart and buy 1-10 s after that), written in event-time order. Partition
// P = request id mod --partitions; files rotate every --rotate_mb MB or
// --rotate_s wall seconds; `_END` is written at the end.
//
// Metrics: one row per --interval_s of simulated time in --metrics_file
// (tab-separated, header line): requests, impressions, clicks, purchases,
// CTR, purchase rate, the expected CTR (mean true P(click) of the shown
// impressions: the same quantity without the coin-flip noise), the oracle
// CTR (expected CTR of the best possible slates), the model version served
// and the explored share. A summary and a last JSON line go to stdout.
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <httplib.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include "common/logging.h"
#include "common/status.h"
#include "worker/data/synthetic_shop.h"
#include "worker/job.h"

DEFINE_string(serve_url, "http://127.0.0.1:8080", "freshet_serve base URL (http://HOST:PORT)");
DEFINE_string(stream_dir, "", "Directory for the event stream (created; required)");
DEFINE_string(job_config, "cluster-configs/jobs/synthetic.pbtxt",
              "Job whose feature columns the served model reads (only those are sent)");
DEFINE_double(seconds, 60, "Wall seconds to simulate (simulated span = seconds * speed)");
DEFINE_double(speed, 10, "Simulated seconds per wall second");
DEFINE_double(rate, 20, "Requests per simulated second (Poisson arrivals)");
DEFINE_int32(k, 10, "Items shown per request (the slate)");
DEFINE_double(explore, -1, "Exploration share sent with every /rank (< 0: the server's default)");
DEFINE_uint64(seed, 1, "World and traffic seed");
DEFINE_int32(users, 100, "Simulated users");
DEFINE_int32(items, 150, "Items");
DEFINE_int32(categories, 20, "Item categories");
DEFINE_int64(drift_period_s, 120, "Simulated seconds between changes of the trending category");
DEFINE_double(trending_boost, 1.5, "Click logit boost of the trending category's items");
DEFINE_double(trending_share, 0.2, "Share of each request's candidates from the trending category");
DEFINE_double(preference_tau_s, 60 * 86400.0, "Time constant of the users' taste drift (sim s)");
DEFINE_int32(partitions, 2, "Event files part-0 .. part-(P-1); request id mod P picks one");
DEFINE_double(rotate_mb, 64, "Rotate an event file after this many MB");
DEFINE_double(rotate_s, 30, "Rotate an event file after this many wall seconds");
DEFINE_double(interval_s, 60, "Simulated seconds per metrics row");
DEFINE_double(warmup_s, 0,
              "Simulated seconds excluded from the *_after_warmup figures of the summary");
DEFINE_string(metrics_file, "", "Per-interval metrics (TSV); empty: none");
DEFINE_int32(max_errors, 50, "Stop (exit 1) after this many consecutive failed /rank calls");
DEFINE_double(flush_ms, 100, "Flush the event files at least this often (wall ms)");

namespace freshet {
namespace {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

// splitmix64: per-request generators (arrivals, cold-start shuffles, event
// delays), independent of the shop's own stream.
class Mix {
 public:
  explicit Mix(uint64_t seed) : x_(seed) {}
  uint64_t Next() {
    uint64_t z = (x_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }

 private:
  uint64_t x_;
};

uint64_t RequestSeed(uint64_t seed, int64_t id, uint64_t salt) {
  Mix m(seed ^ (static_cast<uint64_t>(id) * 0xd1342543de82ef95ULL) ^ salt);
  return m.Next();
}

// ---- Event stream writer ------------------------------------------------------

// Writes part-<P>.events files with rotation (docs/EVENT_FORMAT.md).
// Thread safety: one thread.
class EventWriter {
 public:
  static StatusOr<std::unique_ptr<EventWriter>> Open(const std::string& dir, int partitions,
                                                     const std::vector<std::string>& columns,
                                                     int64_t rotate_bytes, double rotate_s) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Internal("cannot create stream directory " + dir + ": " + ec.message());
    if (std::filesystem::exists(dir + "/_END")) {
      return InvalidArgument("stream directory " + dir + " already has _END (a finished stream)");
    }
    std::unique_ptr<EventWriter> w(new EventWriter);
    w->dir_ = dir;
    w->rotate_bytes_ = rotate_bytes;
    w->rotate_s_ = rotate_s;
    w->header_ = "#freshet-events v1";
    for (const std::string& c : columns) w->header_ += "\t" + c;
    w->header_ += "\n";
    w->parts_.resize(partitions);
    for (int p = 0; p < partitions; ++p) FRESHET_RETURN_IF_ERROR(w->OpenPart(p));
    return w;
  }
  ~EventWriter() {
    for (Part& part : parts_) {
      if (part.f != nullptr) std::fclose(part.f);
    }
  }

  Status Append(int p, const std::string& line) {
    Part& part = parts_[p];
    if (std::fwrite(line.data(), 1, line.size(), part.f) != line.size()) {
      return Internal("cannot write " + Name(p) + ": " + std::strerror(errno));
    }
    part.bytes += static_cast<int64_t>(line.size());
    ++lines_;
    if (part.bytes >= rotate_bytes_ ||
        std::chrono::duration<double>(SteadyClock::now() - part.opened).count() >= rotate_s_) {
      FRESHET_RETURN_IF_ERROR(Rotate(p));
    }
    return Status::OK();
  }
  Status Flush() {
    for (int p = 0; p < static_cast<int>(parts_.size()); ++p) {
      if (std::fflush(parts_[p].f) != 0) {
        return Internal("cannot flush " + Name(p) + ": " + std::strerror(errno));
      }
    }
    return Status::OK();
  }
  // Closes every file and writes _END atomically.
  Status Finish() {
    for (int p = 0; p < static_cast<int>(parts_.size()); ++p) {
      if (std::fclose(parts_[p].f) != 0) {
        parts_[p].f = nullptr;
        return Internal("cannot close " + Name(p) + ": " + std::strerror(errno));
      }
      parts_[p].f = nullptr;
    }
    const std::string tmp = dir_ + "/.END.tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (f == nullptr) return Internal("cannot create " + tmp + ": " + std::strerror(errno));
    std::fprintf(f, "lines %" PRId64 "\n", lines_);
    if (std::fclose(f) != 0) return Internal("cannot write " + tmp);
    if (std::rename(tmp.c_str(), (dir_ + "/_END").c_str()) != 0) {
      return Internal("cannot rename " + tmp + " to _END: " + std::strerror(errno));
    }
    return Status::OK();
  }
  int64_t lines() const { return lines_; }
  int64_t rotations() const { return rotations_; }

 private:
  struct Part {
    FILE* f = nullptr;
    int64_t bytes = 0;
    int next_rotation = 0;
    SteadyClock::time_point opened;
  };
  EventWriter() = default;
  std::string Name(int p) const { return dir_ + "/part-" + std::to_string(p) + ".events"; }
  Status OpenPart(int p) {
    Part& part = parts_[p];
    const std::string name = Name(p);
    part.f = std::fopen(name.c_str(), "wx");  // never append to an older stream's file
    if (part.f == nullptr) {
      return Internal("cannot create " + name + ": " + std::strerror(errno) +
                      " (use an empty stream directory)");
    }
    part.bytes = 0;
    part.opened = SteadyClock::now();
    if (std::fputs(header_.c_str(), part.f) < 0) return Internal("cannot write " + name);
    return Status::OK();
  }
  Status Rotate(int p) {
    Part& part = parts_[p];
    if (std::fclose(part.f) != 0) {
      part.f = nullptr;
      return Internal("cannot close " + Name(p) + ": " + std::strerror(errno));
    }
    part.f = nullptr;
    const std::string to = Name(p) + "." + std::to_string(part.next_rotation++);
    if (std::rename(Name(p).c_str(), to.c_str()) != 0) {
      return Internal("cannot rename " + Name(p) + " to " + to + ": " + std::strerror(errno));
    }
    ++rotations_;
    return OpenPart(p);
  }

  std::string dir_, header_;
  int64_t rotate_bytes_ = 0;
  double rotate_s_ = 0;
  std::vector<Part> parts_;
  int64_t lines_ = 0, rotations_ = 0;
};

// A reaction event waiting for its event time.
struct Pending {
  int64_t ms;
  int64_t seq;  // ties in creation order
  int partition;
  std::string line;
  bool operator>(const Pending& o) const { return ms != o.ms ? ms > o.ms : seq > o.seq; }
};

// ---- Metrics ----------------------------------------------------------------------

struct Totals {
  int64_t requests = 0, cold_requests = 0, impressions = 0, clicks = 0, purchases = 0;
  int64_t explored = 0;
  double expected_clicks = 0, oracle_clicks = 0;
  void Add(const Totals& o) {
    requests += o.requests;
    cold_requests += o.cold_requests;
    impressions += o.impressions;
    clicks += o.clicks;
    purchases += o.purchases;
    explored += o.explored;
    expected_clicks += o.expected_clicks;
    oracle_clicks += o.oracle_clicks;
  }
  double Rate(double x) const { return impressions > 0 ? x / static_cast<double>(impressions) : 0; }
};

std::string Fixed(double x, int digits = 6) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, x);
  return buf;
}

void TotalsJson(const Totals& t, const std::string& suffix, json* out) {
  (*out)["requests" + suffix] = t.requests;
  (*out)["cold_requests" + suffix] = t.cold_requests;
  (*out)["impressions" + suffix] = t.impressions;
  (*out)["clicks" + suffix] = t.clicks;
  (*out)["purchases" + suffix] = t.purchases;
  (*out)["ctr" + suffix] = t.Rate(static_cast<double>(t.clicks));
  (*out)["purchase_rate" + suffix] = t.Rate(static_cast<double>(t.purchases));
  (*out)["expected_ctr" + suffix] = t.Rate(t.expected_clicks);
  (*out)["oracle_ctr" + suffix] = t.Rate(t.oracle_clicks);
  (*out)["explored_share" + suffix] = t.Rate(static_cast<double>(t.explored));
}

// ---- The simulator --------------------------------------------------------------------

struct ServeAddress {
  std::string host;
  int port = 0;
};

StatusOr<ServeAddress> ParseUrl(const std::string& url) {
  std::string rest = url;
  if (rest.rfind("http://", 0) == 0) rest = rest.substr(7);
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  const size_t colon = rest.rfind(':');
  ServeAddress a;
  if (colon == std::string::npos) {
    return InvalidArgument("--serve_url '" + url + "': expected http://HOST:PORT");
  }
  a.host = rest.substr(0, colon);
  char* end = nullptr;
  const long port = std::strtol(rest.c_str() + colon + 1, &end, 10);
  if (a.host.empty() || *end != '\0' || port <= 0 || port > 65535) {
    return InvalidArgument("--serve_url '" + url + "': expected http://HOST:PORT");
  }
  a.port = static_cast<int>(port);
  return a;
}

// Request-level columns go into /rank's context, the rest per candidate.
bool IsContextColumn(const std::string& c) {
  return c == "user" || c == "query" || c == "surface" || c == "position" || c == "hour" ||
         c == "device" || c == "user_recent_items" || c == "user_recent_categories";
}

int Run() {
  if (FLAGS_stream_dir.empty()) {
    std::fprintf(stderr, "freshet_shop_sim: --stream_dir is required (see --help)\n");
    return 2;
  }
  auto bad_flag = [](const char* what) {
    std::fprintf(stderr, "freshet_shop_sim: %s\n", what);
    return 2;
  };
  if (!(FLAGS_seconds > 0)) return bad_flag("--seconds must be > 0");
  if (!(FLAGS_speed > 0)) return bad_flag("--speed must be > 0");
  if (!(FLAGS_rate > 0)) return bad_flag("--rate must be > 0");
  if (FLAGS_k < 1) return bad_flag("--k must be >= 1");
  if (FLAGS_partitions < 1) return bad_flag("--partitions must be >= 1");
  if (!(FLAGS_interval_s > 0)) return bad_flag("--interval_s must be > 0");
  if (!(FLAGS_rotate_mb > 0) || !(FLAGS_rotate_s > 0)) {
    return bad_flag("--rotate_mb and --rotate_s must be > 0");
  }
  if (FLAGS_explore > 1) return bad_flag("--explore must be <= 1");
  const auto address = ParseUrl(FLAGS_serve_url);
  if (!address.ok()) return bad_flag(address.status().message().c_str());

  // The served model's columns (Scorer: slot columns, then dense columns).
  const auto job = LoadJobConfig(FLAGS_job_config);
  if (!job.ok()) {
    std::fprintf(stderr, "freshet_shop_sim: %s\n", job.status().ToString().c_str());
    return 2;
  }
  std::vector<std::string> model_columns;
  for (const auto& s : job->features().slots()) {
    model_columns.push_back(s.column().empty() ? s.name() : s.column());
  }
  for (const auto& d : job->features().dense()) {
    model_columns.push_back(d.column().empty() ? d.name() : d.column());
  }
  const std::vector<std::string>& shop_columns = ShopColumns();
  std::vector<int> send;  // shop column indices sent to /rank
  for (const std::string& c : model_columns) {
    const auto it = std::find(shop_columns.begin(), shop_columns.end(), c);
    if (it == shop_columns.end()) {
      std::fprintf(stderr,
                   "freshet_shop_sim: %s: column '%s' is not a synthetic shop column "
                   "(worker/data/synthetic_shop.h)\n",
                   FLAGS_job_config.c_str(), c.c_str());
      return 2;
    }
    const int idx = static_cast<int>(it - shop_columns.begin());
    if (std::find(send.begin(), send.end(), idx) == send.end()) send.push_back(idx);
  }
  const int item_col = 1, position_col = 7;
  CHECK_EQ(shop_columns[item_col], "item");
  CHECK_EQ(shop_columns[position_col], "position");

  ShopConfig cfg;
  cfg.seed = FLAGS_seed;
  cfg.num_users = FLAGS_users;
  cfg.num_items = FLAGS_items;
  cfg.num_categories = FLAGS_categories;
  cfg.num_requests = 1;  // the batch schedule is unused
  cfg.slate_size = FLAGS_k;
  cfg.drift_period_s = FLAGS_drift_period_s;
  cfg.duration_s = static_cast<int64_t>(std::ceil(FLAGS_seconds * FLAGS_speed)) + 1;
  cfg.preference_tau_s = FLAGS_preference_tau_s;
  cfg.trending_boost = FLAGS_trending_boost;
  cfg.trending_candidate_share = FLAGS_trending_share;
  auto shop_or = SyntheticShop::Create(cfg);
  if (!shop_or.ok()) {
    std::fprintf(stderr, "freshet_shop_sim: %s\n", shop_or.status().ToString().c_str());
    return 2;
  }
  SyntheticShop& shop = **shop_or;

  auto writer_or =
      EventWriter::Open(FLAGS_stream_dir, FLAGS_partitions, shop_columns,
                        static_cast<int64_t>(FLAGS_rotate_mb * (1 << 20)), FLAGS_rotate_s);
  if (!writer_or.ok()) {
    std::fprintf(stderr, "freshet_shop_sim: %s\n", writer_or.status().ToString().c_str());
    return 1;
  }
  EventWriter& writer = **writer_or;

  FILE* metrics = nullptr;
  if (!FLAGS_metrics_file.empty()) {
    metrics = std::fopen(FLAGS_metrics_file.c_str(), "w");
    if (metrics == nullptr) {
      std::fprintf(stderr, "freshet_shop_sim: cannot create %s\n", FLAGS_metrics_file.c_str());
      return 1;
    }
    std::fprintf(metrics,
                 "sim_s\twall_s\trequests\tcold_requests\timpressions\tclicks\tpurchases\tctr\t"
                 "purchase_rate\texpected_ctr\toracle_ctr\tmodel_version\texplored_share\t"
                 "trending\n");
  }

  httplib::Client client(address->host, address->port);
  client.set_keep_alive(true);
  client.set_tcp_nodelay(true);  // no 40 ms delayed-ACK stalls per request
  client.set_connection_timeout(std::chrono::seconds(2));
  client.set_read_timeout(std::chrono::seconds(10));
  client.set_write_timeout(std::chrono::seconds(10));

  const int64_t start_ms = cfg.start_time * 1000;
  const double sim_span_s = FLAGS_seconds * FLAGS_speed;
  const int64_t end_ms = start_ms + static_cast<int64_t>(sim_span_s * 1000);
  const int64_t warmup_end_ms = start_ms + static_cast<int64_t>(FLAGS_warmup_s * 1000);
  const int64_t interval_ms = static_cast<int64_t>(FLAGS_interval_s * 1000);
  Mix arrivals(RequestSeed(FLAGS_seed, -1, 0xa11));
  std::priority_queue<Pending, std::vector<Pending>, std::greater<Pending>> pending;
  int64_t seq = 0;

  Totals all, after_warmup, interval;
  int64_t interval_end_ms = start_ms + interval_ms;
  uint64_t model_version = 0;  // last one seen in /rank
  int64_t errors_in_a_row = 0, errors = 0;
  double max_lag_s = 0, lag_sum_s = 0;
  ShopRequest request;
  std::vector<ShopReaction> reactions;
  std::vector<int> shown;
  std::string line;

  auto flush_until = [&](int64_t ms) -> Status {
    while (!pending.empty() && pending.top().ms <= ms) {
      FRESHET_RETURN_IF_ERROR(writer.Append(pending.top().partition, pending.top().line));
      pending.pop();
    }
    return Status::OK();
  };
  auto emit_row = [&](int64_t row_end_ms, double wall_s) {
    if (metrics != nullptr) {
      const Totals& t = interval;
      std::fprintf(metrics,
                   "%.0f\t%.2f\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%" PRId64
                   "\t%.6f\t%.6f\t%.6f\t%.6f\t%" PRIu64 "\t%.4f\tc%d\n",
                   static_cast<double>(row_end_ms - start_ms) / 1000.0, wall_s, t.requests,
                   t.cold_requests, t.impressions, t.clicks, t.purchases,
                   t.Rate(static_cast<double>(t.clicks)), t.Rate(static_cast<double>(t.purchases)),
                   t.Rate(t.expected_clicks), t.Rate(t.oracle_clicks), model_version,
                   t.Rate(static_cast<double>(t.explored)),
                   shop.TrendingAt((row_end_ms - 1) / 1000));
      std::fflush(metrics);
    }
    interval = Totals();
  };

  const auto wall_start = SteadyClock::now();
  auto wall_s = [&] {
    return std::chrono::duration<double>(SteadyClock::now() - wall_start).count();
  };
  auto last_flush = SteadyClock::now();
  double arrival_ms = static_cast<double>(start_ms);
  Status st;
  while (true) {
    // The next arrival (exponential gaps in simulated time).
    arrival_ms += -std::log(1.0 - arrivals.Uniform()) / FLAGS_rate * 1000.0;
    const int64_t t_ms = static_cast<int64_t>(arrival_ms);
    if (t_ms >= end_ms) break;
    // Wait for the simulated clock to reach it (sleep, no spinning).
    const double due_wall_s = static_cast<double>(t_ms - start_ms) / 1000.0 / FLAGS_speed;
    const double now_s = wall_s();
    if (due_wall_s > now_s) {
      if (std::chrono::duration<double, std::milli>(SteadyClock::now() - last_flush).count() >=
          FLAGS_flush_ms * 0.5) {
        if (!(st = writer.Flush()).ok()) break;
        last_flush = SteadyClock::now();
      }
      std::this_thread::sleep_for(std::chrono::duration<double>(due_wall_s - wall_s()));
    } else {
      max_lag_s = std::max(max_lag_s, now_s - due_wall_s);
      lag_sum_s += now_s - due_wall_s;
    }
    while (t_ms >= interval_end_ms) {
      emit_row(interval_end_ms, wall_s());
      interval_end_ms += interval_ms;
    }
    if (!(st = flush_until(t_ms)).ok()) break;

    shop.NextInteractive(t_ms, &request);
    const size_t n = request.candidates.size();
    const size_t k = std::min<size_t>(static_cast<size_t>(FLAGS_k), n);
    const uint64_t rseed = RequestSeed(FLAGS_seed, request.id, 0x5eed);
    // /rank body.
    json body;
    json context = json::object();
    json candidates = json::array();
    const Example& first = request.candidates[0];
    for (int c : send) {
      if (c == position_col) {
        context["position"] = "1";
      } else if (IsContextColumn(shop_columns[c])) {
        context[shop_columns[c]] = first.values[c];
      }
    }
    for (const Example& ex : request.candidates) {
      json cand = json::object();
      cand["item"] = ex.values[item_col];
      for (int c : send) {
        if (!IsContextColumn(shop_columns[c])) cand[shop_columns[c]] = ex.values[c];
      }
      candidates.push_back(std::move(cand));
    }
    body["context"] = std::move(context);
    body["candidates"] = std::move(candidates);
    body["k"] = k;
    if (FLAGS_explore >= 0) {
      body["explore"] = FLAGS_explore;
      body["seed"] = rseed;
    }
    const std::string text = body.dump();
    shown.clear();
    bool cold = false;
    int64_t explored = 0;
    auto res = client.Post("/rank", text, "application/json");
    if (!res) {  // a dropped keep-alive connection: one retry on a new one
      res = client.Post("/rank", text, "application/json");
    }
    if (res && res->status == 200) {
      try {
        const json out = json::parse(res->body);
        model_version = out.at("model_version").get<uint64_t>();
        for (const json& item : out.at("items")) {
          shown.push_back(item.at("index").get<int>());
          if (item.value("explored", false)) ++explored;
        }
        errors_in_a_row = 0;
      } catch (const json::exception& e) {
        LOG(WARNING) << "request " << request.id << ": bad /rank response: " << e.what();
        shown.clear();
        ++errors;
        ++errors_in_a_row;
      }
    } else if (res && res->status == 503) {
      cold = true;  // no model yet
      errors_in_a_row = 0;
    } else {
      ++errors;
      ++errors_in_a_row;
      LOG_EVERY_N(WARNING, 10) << "request " << request.id << ": /rank failed: "
                               << (res ? "HTTP " + std::to_string(res->status) + " " + res->body
                                       : httplib::to_string(res.error()));
    }
    if (errors_in_a_row > FLAGS_max_errors) {
      st = Unavailable("/rank at " + FLAGS_serve_url + " failed " +
                       std::to_string(errors_in_a_row) + " times in a row");
      break;
    }
    if (shown.empty()) {  // cold start (or a failed call): a random order
      cold = true;
      Mix shuffle(rseed ^ 0xc01d);
      std::vector<int> order(n);
      for (size_t i = 0; i < n; ++i) order[i] = static_cast<int>(i);
      for (size_t i = n - 1; n > 1 && i > 0; --i) {
        std::swap(order[i], order[static_cast<size_t>(shuffle.Next() % (i + 1))]);
      }
      shown.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k));
    }
    if (!(st = shop.React(request, shown, &reactions)).ok()) break;

    // Events and counts.
    Totals one;
    one.requests = 1;
    one.cold_requests = cold ? 1 : 0;
    one.explored = explored;
    one.oracle_clicks = SyntheticShop::OracleExpectedClicks(request, static_cast<int>(k));
    const int partition = static_cast<int>(request.id % FLAGS_partitions);
    const std::string rid = "r" + std::to_string(request.id);
    Mix delays(rseed ^ 0xde1a);
    for (size_t p = 0; p < shown.size(); ++p) {
      const Example& ex = request.candidates[shown[p]];
      const ShopReaction& r = reactions[p];
      line = "imp\t" + std::to_string(t_ms) + "\t" + rid + "\t" + request.user_token + "\t" +
             ex.values[item_col] + "\t" + Fixed(r.p_click, 6);
      for (size_t c = 0; c < shop_columns.size(); ++c) {
        line += '\t';
        line += c == static_cast<size_t>(position_col) ? std::to_string(p + 1) : ex.values[c];
      }
      line += '\n';
      if (!(st = writer.Append(partition, line)).ok()) break;
      ++one.impressions;
      one.expected_clicks += r.p_click;
      const double click_delay = delays.Uniform(500, 5000);
      const double buy_delay = delays.Uniform(1000, 10000);
      if (r.click) {
        ++one.clicks;
        const int64_t click_ms = t_ms + static_cast<int64_t>(click_delay);
        const std::string tail =
            "\t" + rid + "\t" + request.user_token + "\t" + ex.values[item_col] + "\n";
        pending.push({click_ms, seq++, partition, "click\t" + std::to_string(click_ms) + tail});
        if (r.buy) {
          ++one.purchases;
          const int64_t cart_ms = click_ms + static_cast<int64_t>(buy_delay / 2);
          const int64_t buy_ms = click_ms + static_cast<int64_t>(buy_delay);
          pending.push({cart_ms, seq++, partition, "cart\t" + std::to_string(cart_ms) + tail});
          pending.push({buy_ms, seq++, partition, "buy\t" + std::to_string(buy_ms) + tail});
        }
      }
    }
    if (!st.ok()) break;
    interval.Add(one);
    all.Add(one);
    if (t_ms >= warmup_end_ms) after_warmup.Add(one);
  }
  if (st.ok()) st = flush_until(INT64_MAX);
  if (st.ok()) {
    while (interval_end_ms <= end_ms) {
      emit_row(interval_end_ms, wall_s());
      interval_end_ms += interval_ms;
    }
    if (interval.requests > 0) emit_row(end_ms, wall_s());
  }
  if (st.ok()) st = writer.Finish();
  if (metrics != nullptr) std::fclose(metrics);
  if (!st.ok()) {
    std::fprintf(stderr, "freshet_shop_sim: %s\n", st.ToString().c_str());
    return 1;
  }

  const double wall = wall_s();
  std::printf("shop sim: %" PRId64 " requests (%" PRId64 " cold, %" PRId64
              " failed) in %.1f s wall "
              "(%.0f s simulated), %" PRId64 " event lines, %" PRId64 " rotations\n",
              all.requests, all.cold_requests, errors, wall, sim_span_s, writer.lines(),
              writer.rotations());
  std::printf("  all:          CTR %.4f  purchase rate %.4f  expected CTR %.4f  oracle CTR %.4f\n",
              all.Rate(static_cast<double>(all.clicks)),
              all.Rate(static_cast<double>(all.purchases)), all.Rate(all.expected_clicks),
              all.Rate(all.oracle_clicks));
  std::printf("  after warm-up: CTR %.4f  purchase rate %.4f  expected CTR %.4f  oracle CTR %.4f\n",
              after_warmup.Rate(static_cast<double>(after_warmup.clicks)),
              after_warmup.Rate(static_cast<double>(after_warmup.purchases)),
              after_warmup.Rate(after_warmup.expected_clicks),
              after_warmup.Rate(after_warmup.oracle_clicks));
  std::printf("  lag behind the simulated clock: mean %.3f s, max %.3f s (wall)\n",
              all.requests > 0 ? lag_sum_s / static_cast<double>(all.requests) : 0.0, max_lag_s);
  json j;
  TotalsJson(all, "", &j);
  TotalsJson(after_warmup, "_after_warmup", &j);
  j["failed_requests"] = errors;
  j["model_version"] = model_version;
  j["wall_s"] = wall;
  j["sim_s"] = sim_span_s;
  j["max_lag_s"] = max_lag_s;
  j["event_lines"] = writer.lines();
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace
}  // namespace freshet

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "closed-loop shop simulator: users ask freshet_serve /rank, react, and their events "
      "stream into training\n"
      "usage: freshet_shop_sim --serve_url=http://127.0.0.1:PORT --stream_dir=DIR "
      "[--job_config=FILE] [--seconds=60] [--speed=10] [--rate=20]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  freshet::InitLogging(argv[0]);
  signal(SIGPIPE, SIG_IGN);
  return freshet::Run();
}
