#include "serving/http_server.h"

#include <glog/logging.h>
#include <httplib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <utility>
#include <vector>

#include "common/metrics_registry.h"
#include "common/mutex.h"
#include "common/time_util.h"
#include "model/example.h"
#include "serving/internal/requests.h"

namespace freshet {
namespace {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

constexpr char kJsonType[] = "application/json";
constexpr size_t kMaxColumnsInMessage = 20;
// KServe v2 names (see the header).
constexpr char kDefaultModelName[] = "freshet";
constexpr char kOutputName[] = "probability";
constexpr char kInputDatatype[] = "BYTES";

// Dumps without throwing on invalid UTF-8 (error messages may quote cut
// values).
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The double nearest the shortest decimal that round-trips `p` as a float,
// so scores print as 0.3 rather than 0.30000001192092896.
double Tidy(float p) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof(buf), p);
  double d = p;
  std::from_chars(buf, r.ptr, d);
  return d;
}

std::string UtcTime(int64_t unix_s) {
  const std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void SetJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(Dump(body), kJsonType);
}

void SetError(httplib::Response& res, int status, const std::string& message) {
  SetJson(res, status, json{{"error", message}});
}

int HttpCode(const Status& st) {
  switch (st.code()) {
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

// ---- Metrics ------------------------------------------------------------------

enum Endpoint { kScore = 0, kRank, kModel, kMetrics, kInfer, kV2, kOther, kNumEndpoints };
constexpr const char* kEndpointNames[kNumEndpoints] = {"score",    "rank", "model", "metrics",
                                                       "v2_infer", "v2",   "other"};

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}
bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Endpoint EndpointOf(const std::string& path) {
  if (path == "/score") return kScore;
  if (path == "/rank") return kRank;
  if (path == "/model") return kModel;
  if (path == "/metrics") return kMetrics;
  if (StartsWith(path, "/v2/models/") && EndsWith(path, "/infer")) return kInfer;
  if (path == "/v2" || StartsWith(path, "/v2/")) return kV2;
  return kOther;
}

// Request counters and latency histograms. Thread-safe.
class Metrics {
 public:
  static constexpr std::array<double, 14> kBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5};

  void Observe(Endpoint e, int code, double seconds, bool timed) {
    MutexLock lock(&mu_);
    ++requests_[{e, code}];
    if (!timed) return;
    Histogram& h = hist_[e];
    const size_t b = std::lower_bound(kBuckets.begin(), kBuckets.end(), seconds) - kBuckets.begin();
    ++h.counts[b];  // b == kBuckets.size(): only +Inf
    h.sum += seconds;
    ++h.count;
  }

  void Render(const ModelWatcher& models, std::string* out) const {
    std::ostringstream o;
    o.precision(9);
    {
      MutexLock lock(&mu_);
      o << "# HELP freshet_serve_requests_total HTTP requests answered, by endpoint and status "
           "code.\n# TYPE freshet_serve_requests_total counter\n";
      for (const auto& [key, n] : requests_) {
        o << "freshet_serve_requests_total{endpoint=\"" << kEndpointNames[key.first] << "\",code=\""
          << key.second << "\"} " << n << "\n";
      }
      o << "# HELP freshet_serve_request_seconds Time from routing a request to having written "
           "its response.\n# TYPE freshet_serve_request_seconds histogram\n";
      for (int e = 0; e < kNumEndpoints; ++e) {
        const Histogram& h = hist_[e];
        const std::string label = std::string("endpoint=\"") + kEndpointNames[e] + "\"";
        int64_t cum = 0;
        for (size_t b = 0; b < kBuckets.size(); ++b) {
          cum += h.counts[b];
          o << "freshet_serve_request_seconds_bucket{" << label << ",le=\"" << kBuckets[b] << "\"} "
            << cum << "\n";
        }
        cum += h.counts[kBuckets.size()];
        o << "freshet_serve_request_seconds_bucket{" << label << ",le=\"+Inf\"} " << cum << "\n";
        o << "freshet_serve_request_seconds_sum{" << label << "} " << h.sum << "\n";
        o << "freshet_serve_request_seconds_count{" << label << "} " << h.count << "\n";
      }
    }
    const auto model = models.Current();
    const ModelWatcher::Stats stats = models.stats();
    o << "# HELP freshet_serve_model_version Version of the serving model (0: none).\n"
         "# TYPE freshet_serve_model_version gauge\n"
      << "freshet_serve_model_version " << (model != nullptr ? model->version() : 0) << "\n";
    if (model != nullptr) {
      o << "# HELP freshet_serve_model_age_seconds Seconds since the serving model's manifest "
           "was published.\n# TYPE freshet_serve_model_age_seconds gauge\n"
        << "freshet_serve_model_age_seconds "
        << (NowUnixMs() - model->manifest().created_unix_ms()) / 1e3 << "\n";
    }
    o << "# HELP freshet_serve_model_loads_total Models loaded and swapped in.\n"
         "# TYPE freshet_serve_model_loads_total counter\n"
      << "freshet_serve_model_loads_total " << stats.loads << "\n"
      << "# HELP freshet_serve_model_load_failures_total Exports rejected (the previous model "
         "kept serving).\n# TYPE freshet_serve_model_load_failures_total counter\n"
      << "freshet_serve_model_load_failures_total " << stats.load_failures << "\n";
    *out = o.str();
  }

 private:
  struct Histogram {
    std::array<int64_t, kBuckets.size() + 1> counts{};
    double sum = 0;
    int64_t count = 0;
  };
  mutable Mutex mu_;
  std::map<std::pair<int, int>, int64_t> requests_ GUARDED_BY(mu_);
  Histogram hist_[kNumEndpoints] GUARDED_BY(mu_);
};

// When the request being handled on this thread was routed (httplib handles
// a connection on one thread from routing to logging).
struct RequestClock {
  SteadyClock::time_point start;
  bool valid = false;
};
thread_local RequestClock t_request_clock;

// ---- JSON -> Examples ------------------------------------------------------------

std::string ColumnList(const Scorer& scorer) {
  std::string list;
  const auto& cols = scorer.columns();
  for (size_t c = 0; c < cols.size() && c < kMaxColumnsInMessage; ++c) {
    list += (c > 0 ? ", " : "") + cols[c];
  }
  if (cols.size() > kMaxColumnsInMessage) list += ", ...";
  return list;
}

// Converts one scalar JSON value to the raw column text; false if the type
// is not a string, number or null.
bool ScalarText(const json& v, std::string* out) {
  if (v.is_string()) {
    *out = v.get_ref<const std::string&>();
  } else if (v.is_number()) {
    *out = v.dump();
  } else if (v.is_null()) {
    out->clear();
  } else {
    return false;
  }
  return true;
}

// Joins the tokens arr[begin, begin + count) of a multi-valued column with
// spaces into *out. `where` names the array (errors name the element).
Status JoinTokens(const json& arr, size_t begin, size_t count, const std::string& where,
                  std::string* out) {
  out->clear();
  std::string token;
  for (size_t j = begin; j < begin + count; ++j) {
    if (arr[j].is_null() || !ScalarText(arr[j], &token)) {
      return InvalidArgument(where + "[" + std::to_string(j) +
                             "]: expected a string or a number, got " +
                             std::string(arr[j].type_name()));
    }
    if (!out->empty()) *out += ' ';
    *out += token;
  }
  return Status::OK();
}

// Converts one example's value of column `c` (a string, number or null; an
// array of tokens for a multi-valued column) to the raw column text.
// `where` names the value in errors.
Status ColumnValue(const Scorer& scorer, int c, const json& v, const std::string& where,
                   std::string* out) {
  if (ScalarText(v, out)) return Status::OK();
  if (!v.is_array()) {
    return InvalidArgument(where + ": expected a string, a number or null, got " +
                           std::string(v.type_name()));
  }
  if (!scorer.IsMultiValued(c)) {
    return InvalidArgument(where + ": column '" + scorer.columns()[c] +
                           "' is single-valued; expected a string, a number or null, got "
                           "array");
  }
  return JoinTokens(v, 0, v.size(), where, out);
}

// Reads a JSON object of column values into *out (values aligned with
// scorer.columns()); columns the object lacks keep base's values (or stay
// empty without a base). `where` names the object in errors.
Status ToExample(const Scorer& scorer, const json& obj, const std::string& where,
                 const std::string& item_column, const Example* base, Example* out) {
  if (!obj.is_object()) {
    return InvalidArgument(where + ": expected an object of column values, got " +
                           std::string(obj.type_name()));
  }
  if (base != nullptr) {
    out->values = base->values;
  } else {
    out->values.assign(scorer.columns().size(), std::string());
  }
  for (const auto& [name, v] : obj.items()) {
    const int c = scorer.ColumnIndex(name);
    if (c < 0) {
      if (name == item_column) continue;  // echoed by /rank, not a feature
      // Label columns ("label:buy", model/example.h) are never features: a
      // logged example row sent as it is scores as its feature columns.
      if (IsLabelColumn(name)) continue;
      return InvalidArgument(where + ": unknown column '" + name +
                             "' (columns: " + ColumnList(scorer) + ")");
    }
    Status st = ColumnValue(scorer, c, v, where + "." + name, &out->values[c]);
    if (!st.ok()) return st;
  }
  return Status::OK();
}

Status CheckFields(const json& body, std::initializer_list<const char*> allowed) {
  for (const auto& [name, v] : body.items()) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || name == a;
    if (!ok) {
      std::string list;
      for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + "'" + a + "'";
      return InvalidArgument("unknown field '" + name + "' (expected " + list + ")");
    }
  }
  return Status::OK();
}

// Checks a batch size: 1..max_batch. `what` names the batch in errors.
Status CheckBatchSize(size_t n, const std::string& what, int max_batch) {
  if (n == 0) return InvalidArgument(what + " is empty");
  if (n > static_cast<size_t>(max_batch)) {
    return InvalidArgument(what + " has " + std::to_string(n) + " entries, the limit is " +
                           std::to_string(max_batch));
  }
  return Status::OK();
}

// Checks a batch array: present, an array, 1..max_batch entries.
Status CheckBatch(const json& body, const char* field, int max_batch) {
  const auto it = body.find(field);
  if (it == body.end()) return InvalidArgument(std::string("missing field '") + field + "'");
  if (!it->is_array()) {
    return InvalidArgument(std::string("'") + field + "' must be an array of objects, got " +
                           it->type_name());
  }
  return CheckBatchSize(it->size(), std::string("'") + field + "'", max_batch);
}

// splitmix64: the per-request exploration generator (deterministic for a
// request's "seed").
class SlotRng {
 public:
  explicit SlotRng(uint64_t seed) : x_(seed) {}
  uint64_t Next() {
    uint64_t z = (x_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }  // [0, 1)
  size_t Below(size_t n) { return static_cast<size_t>(Next() % n); }

 private:
  uint64_t x_;
};

// A seed for a request that sent none: distinct per call and per process.
uint64_t NextRequestSeed() {
  static std::atomic<uint64_t> counter{
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())};
  return counter.fetch_add(0x9e3779b97f4a7c15ULL, std::memory_order_relaxed);
}

}  // namespace

std::vector<size_t> RankSlots(const std::vector<float>& scores, size_t k, double explore,
                              uint64_t seed, std::vector<bool>* explored) {
  // Sort keys: a NaN score (a broken model) ranks last, keeping the order
  // strict and weak.
  std::vector<float> key(scores.size());
  for (size_t i = 0; i < scores.size(); ++i) {
    key[i] = std::isnan(scores[i]) ? -std::numeric_limits<float>::infinity() : scores[i];
  }
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  k = std::min(k, order.size());
  const auto better = [&](size_t a, size_t b) {
    return key[a] != key[b] ? key[a] > key[b] : a < b;
  };
  explored->assign(k, false);
  if (!(explore > 0)) {
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                      better);
    order.resize(k);
    return order;
  }
  // Epsilon-greedy per slot: slot r takes, with probability `explore`, a
  // uniformly random candidate not yet placed, else the best one not yet
  // placed. `pool` holds the unplaced candidates, best first.
  std::sort(order.begin(), order.end(), better);
  SlotRng rng(seed);
  std::vector<size_t> slate;
  slate.reserve(k);
  std::vector<size_t>& pool = order;
  for (size_t r = 0; r < k; ++r) {
    size_t pick = 0;
    // The coin is drawn for every slot, so the same seed explores the same
    // slots whatever the scores.
    const bool exploring = rng.Uniform() < explore;
    const size_t random_pick = rng.Below(pool.size());
    if (exploring) {
      pick = random_pick;
      (*explored)[r] = true;  // even when it happens to be the best one
    }
    slate.push_back(pool[pick]);
    pool.erase(pool.begin() + static_cast<std::ptrdiff_t>(pick));
  }
  return slate;
}

namespace serving_internal {
namespace {

JsonReply Reply(int status, const json& body) { return JsonReply{status, Dump(body)}; }
JsonReply Error(int status, const std::string& message) {
  return Reply(status, json{{"error", message}});
}

// Parses `text` as a JSON object, or sets a 400 in *res and returns false.
bool ParseBody(const std::string& text, JsonReply* res, json* body) {
  try {
    *body = json::parse(text);
  } catch (const json::exception& e) {
    *res = Error(400, std::string("malformed JSON: ") + e.what());
    return false;
  }
  if (!body->is_object()) {
    *res =
        Error(400, std::string("the request body must be a JSON object, got ") + body->type_name());
    return false;
  }
  return true;
}

}  // namespace

JsonReply ScoreRequest(const ServingModel& model, const HttpServer::Options& options,
                       const std::string& text) {
  JsonReply res;
  json body;
  if (!ParseBody(text, &res, &body)) return res;
  Status st = CheckFields(body, {"examples"});
  if (st.ok()) st = CheckBatch(body, "examples", options.max_batch);
  if (!st.ok()) return Error(400, st.message());
  const Scorer& scorer = *model.scorer;
  const json& list = body["examples"];
  std::vector<Example> examples(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    st = ToExample(scorer, list[i], "examples[" + std::to_string(i) + "]", options.item_column,
                   nullptr, &examples[i]);
    if (!st.ok()) return Error(400, st.message());
  }
  std::vector<float> probs;
  st = scorer.Score(examples, &probs, "examples");
  if (!st.ok()) return Error(HttpCode(st), st.message());
  json scores = json::array();
  for (float p : probs) scores.push_back(Tidy(p));
  return Reply(200, json{{"model_version", model.version()}, {"scores", std::move(scores)}});
}

JsonReply RankRequest(const ServingModel& model, const HttpServer::Options& options,
                      const std::string& text) {
  JsonReply res;
  json body;
  if (!ParseBody(text, &res, &body)) return res;
  Status st = CheckFields(body, {"context", "candidates", "k", "explore", "seed"});
  if (st.ok()) st = CheckBatch(body, "candidates", options.max_batch);
  if (!st.ok()) return Error(400, st.message());
  size_t k = 10;
  if (const auto it = body.find("k"); it != body.end()) {
    // nlohmann parses non-negative integers as unsigned, negative ones as
    // signed, anything with a fraction or exponent as a float.
    if (!it->is_number_unsigned() || it->get<uint64_t>() < 1) {
      return Error(400, "'k' must be an integer >= 1, got " + Dump(*it));
    }
    k = static_cast<size_t>(std::min<uint64_t>(it->get<uint64_t>(), SIZE_MAX));
  }
  double explore = options.explore;
  if (const auto it = body.find("explore"); it != body.end()) {
    if (!it->is_number() || !(it->get<double>() >= 0.0 && it->get<double>() <= 1.0)) {
      return Error(400, "'explore' must be a number in [0, 1], got " + Dump(*it));
    }
    explore = it->get<double>();
  }
  uint64_t seed = 0;
  bool have_seed = false;
  if (const auto it = body.find("seed"); it != body.end()) {
    if (!it->is_number_unsigned()) {
      return Error(400, "'seed' must be an integer >= 0, got " + Dump(*it));
    }
    seed = it->get<uint64_t>();
    have_seed = true;
  }
  const Scorer& scorer = *model.scorer;
  Example context;
  if (const auto it = body.find("context"); it != body.end()) {
    st = ToExample(scorer, *it, "context", options.item_column, nullptr, &context);
    if (!st.ok()) return Error(400, st.message());
  } else {
    context.values.assign(scorer.columns().size(), std::string());
  }
  const json& list = body["candidates"];
  std::vector<Example> candidates(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    st = ToExample(scorer, list[i], "candidates[" + std::to_string(i) + "]", options.item_column,
                   &context, &candidates[i]);
    if (!st.ok()) return Error(400, st.message());
  }
  std::vector<float> probs;
  st = scorer.Score(candidates, &probs, "candidates");
  if (!st.ok()) return Error(HttpCode(st), st.message());

  if (!have_seed && explore > 0) seed = NextRequestSeed();
  std::vector<bool> explored;
  const std::vector<size_t> order = RankSlots(probs, k, explore, seed, &explored);
  json items = json::array();
  for (size_t r = 0; r < order.size(); ++r) {
    const size_t i = order[r];
    json item = {{"index", i}, {"score", Tidy(probs[i])}};
    const auto v = list[i].find(options.item_column);
    if (v != list[i].end() && !v->is_null()) item["item"] = *v;
    if (explored[r]) item["explored"] = true;
    items.push_back(std::move(item));
  }
  return Reply(200, json{{"model_version", model.version()}, {"items", std::move(items)}});
}

std::string ModelName(const HttpServer::Options& options, const ServingModel& model) {
  if (!options.model_name.empty()) return options.model_name;
  const std::string& job = model.manifest().job().name();
  if (!job.empty() && job.find('/') == std::string::npos) return job;
  return kDefaultModelName;
}

namespace {

// Reads the values of one infer input tensor (already checked: an object
// with known fields naming column c, datatype BYTES) into column c of
// *examples (one per batch row; the first input sized them). `where` names
// the input in errors, e.g. "inputs[1] ('query')".
Status ReadInferInput(const Scorer& scorer, int c, const json& input, const std::string& where,
                      int max_batch, std::vector<Example>* examples) {
  const auto shape = input.find("shape");
  if (shape == input.end()) return InvalidArgument(where + ": missing field 'shape'");
  bool shape_ok = shape->is_array() && (shape->size() == 1 || shape->size() == 2);
  for (size_t d = 0; shape_ok && d < shape->size(); ++d)
    shape_ok = (*shape)[d].is_number_unsigned();
  if (!shape_ok) {
    return InvalidArgument(
        where + ".shape: expected [batch] or [batch, tokens] (integers >= 0), got " + Dump(*shape));
  }
  const uint64_t rows = (*shape)[0].get<uint64_t>();
  if (examples->empty()) {
    Status st = CheckBatchSize(rows, "the batch (" + where + ".shape[0])", max_batch);
    if (!st.ok()) return st;
    examples->resize(rows);
    for (Example& ex : *examples) ex.values.assign(scorer.columns().size(), std::string());
  } else if (rows != examples->size()) {
    return InvalidArgument(where + ".shape[0]: batch size " + std::to_string(rows) +
                           " differs from inputs[0]'s " + std::to_string(examples->size()));
  }
  const size_t n = examples->size();
  const bool multi = scorer.IsMultiValued(c);
  const auto data = input.find("data");
  if (data == input.end()) return InvalidArgument(where + ": missing field 'data'");
  if (!data->is_array()) {
    return InvalidArgument(where + ".data: expected an array, got " +
                           std::string(data->type_name()));
  }
  if (shape->size() == 1) {
    if (data->size() != n) {
      return InvalidArgument(where + ".data: has " + std::to_string(data->size()) +
                             " entries, shape " + Dump(*shape) + " needs " + std::to_string(n));
    }
    for (size_t i = 0; i < n; ++i) {
      Status st = ColumnValue(scorer, c, (*data)[i], where + ".data[" + std::to_string(i) + "]",
                              &(*examples)[i].values[c]);
      if (!st.ok()) return st;
    }
    return Status::OK();
  }
  // [batch, tokens]: nested (one array of m per row) or flattened (n * m).
  const uint64_t m = (*shape)[1].get<uint64_t>();
  if (!multi && m != 1) {
    return InvalidArgument(where + ".shape: column '" + scorer.columns()[c] +
                           "' is single-valued; expected [batch] or [batch, 1], got " +
                           Dump(*shape));
  }
  const bool nested = data->size() == n && (*data)[0].is_array();
  if (nested) {
    for (size_t i = 0; i < n; ++i) {
      const std::string at = where + ".data[" + std::to_string(i) + "]";
      const json& row = (*data)[i];
      if (!row.is_array() || row.size() != m) {
        return InvalidArgument(at + ": expected an array of " + std::to_string(m) +
                               " values (shape " + Dump(*shape) + "), got " +
                               (row.is_array() ? std::to_string(row.size()) + " values"
                                               : std::string(row.type_name())));
      }
      std::string& value = (*examples)[i].values[c];
      Status st = multi ? JoinTokens(row, 0, m, at, &value)
                        : ColumnValue(scorer, c, row[0], at + "[0]", &value);
      if (!st.ok()) return st;
    }
    return Status::OK();
  }
  // n <= max_batch and m <= data->size(), so n * m cannot overflow.
  if (m > data->size() || data->size() != n * m) {
    return InvalidArgument(where + ".data: has " + std::to_string(data->size()) +
                           " entries, shape " + Dump(*shape) + " needs " +
                           (m > data->size() ? "more" : std::to_string(n * m)));
  }
  for (size_t i = 0; i < n; ++i) {
    std::string& value = (*examples)[i].values[c];
    Status st = multi ? JoinTokens(*data, i * m, m, where + ".data", &value)
                      : ColumnValue(scorer, c, (*data)[i],
                                    where + ".data[" + std::to_string(i) + "]", &value);
    if (!st.ok()) return st;
  }
  return Status::OK();
}

}  // namespace

JsonReply InferRequest(const ServingModel& model, const HttpServer::Options& options,
                       const std::string& model_name, const std::string& text) {
  JsonReply res;
  json body;
  if (!ParseBody(text, &res, &body)) return res;
  Status st = CheckFields(body, {"id", "inputs", "outputs", "parameters"});
  if (!st.ok()) return Error(400, st.message());
  const auto id = body.find("id");
  if (id != body.end() && !id->is_string()) {
    return Error(400, "'id' must be a string, got " + std::string(id->type_name()));
  }
  if (const auto it = body.find("parameters"); it != body.end() && !it->is_object()) {
    return Error(400, "'parameters' must be an object, got " + std::string(it->type_name()));
  }
  if (const auto outputs = body.find("outputs"); outputs != body.end()) {
    if (!outputs->is_array()) {
      return Error(
          400, "'outputs' must be an array of objects, got " + std::string(outputs->type_name()));
    }
    for (size_t k = 0; k < outputs->size(); ++k) {
      const std::string where = "outputs[" + std::to_string(k) + "]";
      const json& o = (*outputs)[k];
      if (!o.is_object()) {
        return Error(400, where + ": expected an object, got " + std::string(o.type_name()));
      }
      st = CheckFields(o, {"name", "parameters"});
      if (!st.ok()) return Error(400, where + ": " + st.message());
      const auto name = o.find("name");
      if (name == o.end() || !name->is_string()) {
        return Error(400, where + ".name: expected a string");
      }
      if (*name != kOutputName) {
        return Error(400, where + ".name: unknown output " + Dump(*name) +
                              " (outputs: " + kOutputName + ")");
      }
    }
  }
  const auto inputs = body.find("inputs");
  if (inputs == body.end()) return Error(400, "missing field 'inputs'");
  if (!inputs->is_array()) {
    return Error(400,
                 "'inputs' must be an array of objects, got " + std::string(inputs->type_name()));
  }
  if (inputs->empty()) return Error(400, "'inputs' is empty");

  const Scorer& scorer = *model.scorer;
  std::vector<Example> examples;  // sized by the first input
  std::vector<int> input_of(scorer.columns().size(), -1);
  for (size_t k = 0; k < inputs->size(); ++k) {
    std::string where = "inputs[" + std::to_string(k) + "]";
    const json& input = (*inputs)[k];
    if (!input.is_object()) {
      return Error(400, where + ": expected an object with name, datatype, shape and data, got " +
                            std::string(input.type_name()));
    }
    st = CheckFields(input, {"name", "datatype", "shape", "data", "parameters"});
    if (!st.ok()) return Error(400, where + ": " + st.message());
    const auto name = input.find("name");
    if (name == input.end() || !name->is_string()) {
      return Error(400, where + ".name: expected a string");
    }
    const std::string& col = name->get_ref<const std::string&>();
    const int c = scorer.ColumnIndex(col);
    if (c < 0) {
      return Error(400,
                   where + ": unknown input '" + col + "' (inputs: " + ColumnList(scorer) + ")");
    }
    if (input_of[c] >= 0) {
      return Error(
          400, where + ": input '" + col + "' is also inputs[" + std::to_string(input_of[c]) + "]");
    }
    input_of[c] = static_cast<int>(k);
    where += " ('" + col + "')";
    if (const auto it = input.find("parameters"); it != input.end() && !it->is_object()) {
      return Error(400,
                   where + ".parameters: must be an object, got " + std::string(it->type_name()));
    }
    const auto datatype = input.find("datatype");
    if (datatype == input.end()) return Error(400, where + ": missing field 'datatype'");
    if (*datatype != kInputDatatype) {
      return Error(400, where + ".datatype: expected \"" + std::string(kInputDatatype) +
                            "\" (every column is text; numbers go as BYTES too), got " +
                            Dump(*datatype));
    }
    st = ReadInferInput(scorer, c, input, where, options.max_batch, &examples);
    if (!st.ok()) return Error(400, st.message());
  }
  std::vector<float> probs;
  st = scorer.Score(examples, &probs, "example");
  if (!st.ok()) return Error(HttpCode(st), st.message());
  json data = json::array();
  for (float p : probs) data.push_back(Tidy(p));
  json out = {{"model_name", model_name}, {"model_version", std::to_string(model.version())}};
  if (id != body.end()) out["id"] = *id;
  out["outputs"] = json::array({json{{"name", kOutputName},
                                     {"datatype", "FP32"},
                                     {"shape", json::array({probs.size()})},
                                     {"data", std::move(data)}}});
  return Reply(200, out);
}

}  // namespace serving_internal

// ---- Server -----------------------------------------------------------------------

class HttpServer::Impl {
 public:
  Impl(const Options& options, const ModelWatcher* models) : options_(options), models_(models) {}

  void Install();
  httplib::Server& server() { return server_; }

 private:
  // The serving model, or nullptr after writing a 503.
  std::shared_ptr<const ServingModel> ModelOr503(httplib::Response& res) const;
  // Reads the body (at most max_body_bytes), or writes a 413/400 and
  // returns false.
  bool ReadBody(const httplib::Request& req, httplib::Response& res,
                const httplib::ContentReader& reader, std::string* text) const;
  // The common start of a POST: read the body and take the current model;
  // on failure the response is written and nullptr returned.
  std::shared_ptr<const ServingModel> BeginPost(const httplib::Request& req, httplib::Response& res,
                                                const httplib::ContentReader& reader,
                                                std::string* text) const;

  void Score(const httplib::Request& req, httplib::Response& res,
             const httplib::ContentReader& reader) const;
  void Rank(const httplib::Request& req, httplib::Response& res,
            const httplib::ContentReader& reader) const;
  void Model(httplib::Response& res) const;

  // KServe v2. The model a /v2/models/{name}[/versions/{v}] path (matched
  // by a route: req.matches[1] the name, [2] the version) names, with its
  // name in *name; or nullptr after writing a 404 (another name or version)
  // or a 503 (no model yet).
  std::shared_ptr<const ServingModel> V2Model(const httplib::Request& req, httplib::Response& res,
                                              std::string* name) const;
  void V2ModelMetadata(const httplib::Request& req, httplib::Response& res) const;
  void V2ModelReady(const httplib::Request& req, httplib::Response& res) const;
  void V2Infer(const httplib::Request& req, httplib::Response& res,
               const httplib::ContentReader& reader) const;

  const Options options_;
  const ModelWatcher* const models_;
  httplib::Server server_;
  Metrics metrics_;
};

std::shared_ptr<const ServingModel> HttpServer::Impl::ModelOr503(httplib::Response& res) const {
  auto model = models_->Current();
  if (model == nullptr) {
    const ModelWatcher::Stats stats = models_->stats();
    std::string msg = "no model loaded yet (watching " + models_->export_dir() + ")";
    if (!stats.last_error.empty()) msg += "; last load failed: " + stats.last_error;
    SetError(res, 503, msg);
  }
  return model;
}

bool HttpServer::Impl::ReadBody(const httplib::Request& req, httplib::Response& res,
                                const httplib::ContentReader& reader, std::string* text) const {
  // httplib refuses a Content-Length above the limit before reading (413);
  // a chunked body is cut off here once it passes the limit.
  bool too_big = false;
  const size_t limit = options_.max_body_bytes;
  const bool read = reader([&](const char* data, size_t n) {
    if (text->size() + n > limit) {
      too_big = true;
      return false;
    }
    text->append(data, n);
    return true;
  });
  if (too_big || res.status == 413) {
    SetError(res, 413, "request body larger than " + std::to_string(limit) + " bytes");
    return false;
  }
  if (!read) {
    SetError(res, 400, "could not read the request body of " + req.method + " " + req.path);
    return false;
  }
  return true;
}

std::shared_ptr<const ServingModel> HttpServer::Impl::BeginPost(
    const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader,
    std::string* text) const {
  if (!ReadBody(req, res, reader, text)) return nullptr;
  return ModelOr503(res);
}

void HttpServer::Impl::Score(const httplib::Request& req, httplib::Response& res,
                             const httplib::ContentReader& reader) const {
  std::string text;
  const auto model = BeginPost(req, res, reader, &text);
  if (model == nullptr) return;
  const serving_internal::JsonReply r = serving_internal::ScoreRequest(*model, options_, text);
  res.status = r.status;
  res.set_content(r.body, kJsonType);
}

void HttpServer::Impl::Rank(const httplib::Request& req, httplib::Response& res,
                            const httplib::ContentReader& reader) const {
  std::string text;
  const auto model = BeginPost(req, res, reader, &text);
  if (model == nullptr) return;
  const serving_internal::JsonReply r = serving_internal::RankRequest(*model, options_, text);
  res.status = r.status;
  res.set_content(r.body, kJsonType);
}

void HttpServer::Impl::Model(httplib::Response& res) const {
  const auto model = ModelOr503(res);
  if (model == nullptr) return;
  const ModelWatcher::Stats stats = models_->stats();
  const proto::ExportManifest& m = model->manifest();
  json tables = json::object();
  for (const auto& t : m.job().tables().tables()) {
    const auto it = model->data().tables.find(t.name());
    tables[t.name()] = it == model->data().tables.end() ? 0 : it->second.size();
  }
  json out = {{"version", m.version()},
              {"watermark", m.watermark()},
              {"watermark_utc", UtcTime(m.watermark())},
              {"created_unix_ms", m.created_unix_ms()},
              {"age_seconds", (NowUnixMs() - m.created_unix_ms()) / 1e3},
              {"loaded_unix_ms", model->loaded_unix_ms},
              {"load_ms", model->load_ms},
              {"full", m.full().name()},
              {"deltas", m.deltas_size()},
              {"tables", std::move(tables)},
              {"incremental", model->incremental},
              {"served_bytes", model->data().served_bytes()},
              {"rss_bytes", ProcessResidentBytes()},
              {"rss_anon_bytes", ProcessAnonResidentBytes()},
              {"loads", stats.loads},
              {"load_failures", stats.load_failures},
              {"notified_polls", stats.notified_polls},
              {"frozen", stats.frozen}};
  if (m.ingest_wall_ms() > 0) {
    out["ingest_wall_ms"] = m.ingest_wall_ms();
    out["freshness_at_load_seconds"] = (model->loaded_unix_ms - m.ingest_wall_ms()) / 1e3;
  }
  if (m.label_wall_ms() > 0) {
    out["label_wall_ms"] = m.label_wall_ms();
    out["label_freshness_at_load_seconds"] = (model->loaded_unix_ms - m.label_wall_ms()) / 1e3;
  }
  if (!stats.last_error.empty()) out["last_error"] = stats.last_error;
  SetJson(res, 200, out);
}

std::shared_ptr<const ServingModel> HttpServer::Impl::V2Model(const httplib::Request& req,
                                                              httplib::Response& res,
                                                              std::string* name) const {
  const std::string asked = req.matches[1].str();
  if (!options_.model_name.empty() && asked != options_.model_name) {
    SetError(res, 404,
             "unknown model '" + asked + "' (this server serves '" + options_.model_name + "')");
    return nullptr;
  }
  auto model = ModelOr503(res);
  if (model == nullptr) return nullptr;
  *name = serving_internal::ModelName(options_, *model);
  if (asked != *name) {
    SetError(res, 404, "unknown model '" + asked + "' (this server serves '" + *name + "')");
    return nullptr;
  }
  const std::string served = std::to_string(model->version());
  if (req.matches.size() > 2 && req.matches[2].matched && req.matches[2].str() != served) {
    SetError(res, 404,
             "model '" + *name + "' has no version '" + req.matches[2].str() +
                 "' (serving version " + served + ")");
    return nullptr;
  }
  return model;
}

void HttpServer::Impl::V2ModelMetadata(const httplib::Request& req, httplib::Response& res) const {
  std::string name;
  const auto model = V2Model(req, res, &name);
  if (model == nullptr) return;
  const Scorer& scorer = *model->scorer;
  json inputs = json::array();
  for (size_t c = 0; c < scorer.columns().size(); ++c) {
    const bool multi = scorer.IsMultiValued(static_cast<int>(c));
    inputs.push_back({{"name", scorer.columns()[c]},
                      {"datatype", kInputDatatype},
                      {"shape", multi ? json::array({-1, -1}) : json::array({-1})}});
  }
  SetJson(res, 200,
          json{{"name", name},
               {"versions", json::array({std::to_string(model->version())})},
               {"platform", "freshet"},
               {"inputs", std::move(inputs)},
               {"outputs",
                json::array({json{
                    {"name", kOutputName}, {"datatype", "FP32"}, {"shape", json::array({-1})}}})}});
}

void HttpServer::Impl::V2ModelReady(const httplib::Request& req, httplib::Response& res) const {
  std::string name;
  if (V2Model(req, res, &name) == nullptr) return;
  SetJson(res, 200, json{{"name", name}, {"ready", true}});
}

void HttpServer::Impl::V2Infer(const httplib::Request& req, httplib::Response& res,
                               const httplib::ContentReader& reader) const {
  std::string text;
  if (!ReadBody(req, res, reader, &text)) return;
  std::string name;
  const auto model = V2Model(req, res, &name);
  if (model == nullptr) return;
  const serving_internal::JsonReply r =
      serving_internal::InferRequest(*model, options_, name, text);
  res.status = r.status;
  res.set_content(r.body, kJsonType);
}

void HttpServer::Impl::Install() {
  const auto not_allowed = [](const char* allow) {
    return [allow](const httplib::Request& req, httplib::Response& res) {
      res.set_header("Allow", allow);
      SetError(
          res, 405,
          "method " + req.method + " is not allowed on " + req.path + " (allowed: " + allow + ")");
    };
  };
  // /score and /rank read their bodies themselves (bounded, see ReadBody).
  server_.Post("/score", [this](const httplib::Request& req, httplib::Response& res,
                                const httplib::ContentReader& reader) { Score(req, res, reader); });
  server_.Post("/rank", [this](const httplib::Request& req, httplib::Response& res,
                               const httplib::ContentReader& reader) { Rank(req, res, reader); });
  server_.Get("/model", [this](const httplib::Request&, httplib::Response& res) { Model(res); });
  server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    std::string text;
    metrics_.Render(*models_, &text);
    res.status = 200;
    res.set_content(text, "text/plain; version=0.0.4; charset=utf-8");
  });
  // KServe v2 (Open Inference Protocol).
  server_.Get("/v2/health/live", [](const httplib::Request&, httplib::Response& res) {
    SetJson(res, 200, json{{"live", true}});
  });
  server_.Get("/v2/health/ready", [this](const httplib::Request&, httplib::Response& res) {
    if (ModelOr503(res) != nullptr) SetJson(res, 200, json{{"ready", true}});
  });
  server_.Get("/v2", [](const httplib::Request&, httplib::Response& res) {
    SetJson(res, 200,
            json{{"name", "freshet"}, {"version", FRESHET_VERSION}, {"extensions", json::array()}});
  });
  // httplib matches routes as whole-path regexes, in the order added.
  constexpr char kV2ModelPath[] = "/v2/models/([^/]+)(?:/versions/([^/]+))?";
  const std::string metadata_path = kV2ModelPath;
  const std::string ready_path = std::string(kV2ModelPath) + "/ready";
  const std::string infer_path = std::string(kV2ModelPath) + "/infer";
  server_.Get(metadata_path, [this](const httplib::Request& req, httplib::Response& res) {
    V2ModelMetadata(req, res);
  });
  server_.Get(ready_path, [this](const httplib::Request& req, httplib::Response& res) {
    V2ModelReady(req, res);
  });
  server_.Post(infer_path,
               [this](const httplib::Request& req, httplib::Response& res,
                      const httplib::ContentReader& reader) { V2Infer(req, res, reader); });

  for (const std::string& path : {std::string("/score"), std::string("/rank"), infer_path}) {
    const auto h = not_allowed("POST");
    server_.Get(path, h);  // also answers HEAD
    server_.Put(path, h);
    server_.Patch(path, h);
    server_.Delete(path, h);
    server_.Options(path, h);
  }
  for (const std::string& path :
       {std::string("/model"), std::string("/metrics"), std::string("/v2/health/live"),
        std::string("/v2/health/ready"), std::string("/v2"), metadata_path, ready_path}) {
    const auto h = not_allowed("GET, HEAD");
    server_.Post(path, h);
    server_.Put(path, h);
    server_.Patch(path, h);
    server_.Delete(path, h);
    server_.Options(path, h);
  }

  // Errors httplib produces itself (404, 413, 400 for unparsable requests)
  // get a JSON body too; responses that already have one are left alone.
  server_.set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        std::string msg;
        switch (res.status) {
          case 404:
            msg = "no such endpoint: " + req.method + " " + req.path +
                  " (endpoints: POST /score, POST /rank, GET /model, GET /metrics; KServe v2: "
                  "GET /v2, /v2/health/{live,ready}, /v2/models/{name}[/ready], POST "
                  "/v2/models/{name}/infer)";
            break;
          case 413:
            msg = "request body larger than " + std::to_string(options_.max_body_bytes) + " bytes";
            break;
          default:
            msg = res.status == 400 ? "bad request"
                                    : "request failed with status " + std::to_string(res.status);
        }
        SetError(res, res.status, msg);
        return httplib::Server::HandlerResponse::Handled;
      }));
  server_.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        LOG(ERROR) << req.method << " " << req.path << ": internal error: " << what;
        SetError(res, 500, "internal error: " + what);
      });

  // Metrics: the clock starts when a request is routed (before its body is
  // read) and stops when the response has been written (the logger runs
  // then, on the same thread).
  server_.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    t_request_clock.start = SteadyClock::now();
    t_request_clock.valid = true;
    return httplib::Server::HandlerResponse::Unhandled;
  });
  server_.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    const bool timed = t_request_clock.valid;
    const double seconds =
        timed ? std::chrono::duration<double>(SteadyClock::now() - t_request_clock.start).count()
              : 0.0;
    t_request_clock.valid = false;
    metrics_.Observe(EndpointOf(req.path), res.status, seconds, timed);
  });

  server_.set_payload_max_length(options_.max_body_bytes);
  server_.set_keep_alive_max_count(1000);
  server_.set_keep_alive_timeout(options_.keep_alive_timeout_s);
  // Responses go out as header + body writes: without TCP_NODELAY, Nagle's
  // algorithm and the client's delayed ACK add ~40 ms to every request.
  server_.set_tcp_nodelay(true);
  const int threads = options_.threads;
  server_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const Options& options,
                                                        const ModelWatcher* models) {
  CHECK(models != nullptr);
  if (options.port < 0 || options.port > 65535) {
    return InvalidArgument("http server: port must be in [0, 65535], got " +
                           std::to_string(options.port));
  }
  if (options.threads < 1) return InvalidArgument("http server: threads must be >= 1");
  if (!(options.explore >= 0.0 && options.explore <= 1.0)) {
    return InvalidArgument("http server: explore must be in [0, 1], got " +
                           std::to_string(options.explore));
  }
  if (options.max_batch < 1) return InvalidArgument("http server: max_batch must be >= 1");
  if (options.max_body_bytes < 1)
    return InvalidArgument("http server: max_body_bytes must be >= 1");
  if (options.keep_alive_timeout_s < 1) {
    return InvalidArgument("http server: keep_alive_timeout_s must be >= 1");
  }
  if (options.model_name.find('/') != std::string::npos) {
    return InvalidArgument("http server: model_name must not contain '/', got '" +
                           options.model_name + "'");
  }
  std::unique_ptr<HttpServer> s(new HttpServer(std::make_unique<Impl>(options, models)));
  s->impl_->Install();
  httplib::Server& svr = s->impl_->server();
  if (options.port == 0) {
    s->port_ = svr.bind_to_any_port(options.host);
    if (s->port_ < 0) s->port_ = 0;
  } else {
    s->port_ = svr.bind_to_port(options.host, options.port) ? options.port : 0;
  }
  if (s->port_ <= 0) {
    return Unavailable("http server: cannot bind " + options.host + ":" +
                       std::to_string(options.port));
  }
  s->listener_ = std::thread([&svr, done = &s->listener_done_] {
    if (!svr.listen_after_bind()) LOG(ERROR) << "http server: listen loop failed";
    done->store(true);
  });
  return s;
}

void HttpServer::Stop() {
  if (!listener_.joinable()) return;
  // httplib's stop() does nothing until the listen loop runs, so wait for it
  // (or for the loop to have ended on its own) and stop it exactly once.
  httplib::Server& svr = impl_->server();
  bool stopped = false;
  while (!listener_done_.load()) {
    if (!stopped && svr.is_running()) {
      svr.stop();
      stopped = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  listener_.join();
}

HttpServer::~HttpServer() { Stop(); }

}  // namespace freshet
