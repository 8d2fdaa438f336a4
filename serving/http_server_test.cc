// End-to-end tests of the serving tier over real HTTP on 127.0.0.1: an
// ExportWriter publishes into a temp dir, a ModelWatcher loads it, an
// HttpServer answers an httplib::Client.
#include "serving/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "serving/internal/testing.h"

namespace freshet {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using serving_testing::DeltaSnapshot;
using serving_testing::FullSnapshot;
using serving_testing::RandomExamples;
using serving_testing::RandomState;
using serving_testing::ReferenceScores;
using serving_testing::State;
using serving_testing::TempDir;
using serving_testing::TinyJob;
using serving_testing::WriteManifestAndLatest;

// The scorer's column order for TinyJob (checked by scorer_test.cc).
const std::vector<std::string> kColumns = {"user", "item", "query", "tags", "price", "age"};

bool IsMulti(const std::string& c) { return c == "query" || c == "tags"; }

// An example as a JSON object, in one of several equivalent encodings
// (`variant`): empty values omitted / null / "", multi-valued columns as a
// string or an array, numbers as strings or JSON numbers.
json ToJson(const Example& ex, int variant) {
  json obj = json::object();
  for (size_t c = 0; c < kColumns.size(); ++c) {
    const std::string& name = kColumns[c];
    const std::string& v = ex.values[c];
    if (v.empty()) {
      if (variant % 3 == 1) obj[name] = nullptr;
      if (variant % 3 == 2) obj[name] = "";
      continue;
    }
    if (IsMulti(name) && variant % 2 == 1) {
      json arr = json::array();
      std::istringstream in(v);
      for (std::string t; in >> t;) arr.push_back(t);
      obj[name] = arr;
    } else if ((name == "price" || name == "age") && variant % 2 == 0) {
      if (v.find('.') != std::string::npos) {
        obj[name] = std::stod(v);
      } else {
        obj[name] = std::stoll(v);
      }
    } else {
      obj[name] = v;
    }
  }
  return obj;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    job_ = TinyJob();
    auto w = ExportWriter::Open(dir_.path(), job_, 3);
    ASSERT_TRUE(w.ok()) << w.status();
    writer_ = std::move(w).value();
  }
  void TearDown() override {
    client_.reset();  // an idle keep-alive connection would delay Stop()
    if (server_ != nullptr) server_->Stop();
  }

  void StartServing(HttpServer::Options opt = HttpServer::Options()) {
    ModelWatcher::Options wopt;
    wopt.export_dir = dir_.path();
    wopt.poll_ms = 20;
    auto w = ModelWatcher::Start(wopt);
    ASSERT_TRUE(w.ok()) << w.status();
    watcher_ = std::move(w).value();
    opt.port = 0;
    auto s = HttpServer::Start(opt, watcher_.get());
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(s).value();
    ASSERT_GT(server_->port(), 0);
    client_ = NewClient();
  }

  std::unique_ptr<httplib::Client> NewClient() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    c->set_read_timeout(10, 0);
    c->set_keep_alive(true);
    c->set_tcp_nodelay(true);
    return c;
  }

  void PublishFull(const State& s, uint64_t version) {
    ASSERT_TRUE(writer_->Publish(FullSnapshot(job_, s, version)).ok());
  }
  void PublishDelta(const State& before, const State& after, uint64_t version) {
    ASSERT_TRUE(writer_->Publish(DeltaSnapshot(job_, before, after, version)).ok());
  }
  void WaitForVersion(uint64_t v) { ASSERT_TRUE(watcher_->WaitForVersion(v, 5000ms)); }

  // Sends a request; returns the status and the parsed JSON body (or the raw
  // text under "raw" when it is not JSON).
  std::pair<int, json> Call(httplib::Client* c, const std::string& method, const std::string& path,
                            const std::string& body = "") {
    httplib::Result r = [&] {
      if (method == "GET") return c->Get(path.c_str());
      if (method == "PUT") return c->Put(path.c_str(), body, "application/json");
      if (method == "DELETE") return c->Delete(path.c_str());
      return c->Post(path.c_str(), body, "application/json");
    }();
    if (!r) return {-1, json{{"raw", httplib::to_string(r.error())}}};
    json j = json::parse(r->body, nullptr, false);
    if (j.is_discarded()) j = json{{"raw", r->body}};
    last_headers_ = r->headers;
    return {r->status, j};
  }
  std::pair<int, json> Call(const std::string& method, const std::string& path,
                            const std::string& body = "") {
    return Call(client_.get(), method, path, body);
  }
  std::pair<int, json> Post(const std::string& path, const json& body) {
    return Call("POST", path, body.dump());
  }

  // Scores `examples` through /score in batches of `batch`.
  std::vector<float> ScoreOverHttp(const std::vector<Example>& examples, size_t batch,
                                   uint64_t* version = nullptr) {
    std::vector<float> out;
    for (size_t b = 0; b < examples.size(); b += batch) {
      json req = {{"examples", json::array()}};
      for (size_t i = b; i < std::min(examples.size(), b + batch); ++i) {
        req["examples"].push_back(ToJson(examples[i], static_cast<int>(i)));
      }
      auto [code, res] = Post("/score", req);
      EXPECT_EQ(code, 200) << res.dump();
      if (code != 200) return {};
      if (version != nullptr) *version = res["model_version"].get<uint64_t>();
      for (const auto& p : res["scores"]) out.push_back(p.get<float>());
    }
    return out;
  }

  TempDir dir_;
  proto::JobConfig job_;
  std::unique_ptr<ExportWriter> writer_;
  std::unique_ptr<ModelWatcher> watcher_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<httplib::Client> client_;
  httplib::Headers last_headers_;
};

TEST_F(HttpServerTest, AnswersServiceUnavailableUntilAModelIsPublished) {
  StartServing();
  auto [code, body] = Post("/score", json{{"examples", {{{"user", "u1"}}}}});
  EXPECT_EQ(code, 503);
  EXPECT_NE(body["error"].get<std::string>().find("no model"), std::string::npos) << body;
  EXPECT_EQ(Call("GET", "/model").first, 503);
  auto [mcode, metrics] = Call("GET", "/metrics");
  EXPECT_EQ(mcode, 200);
  EXPECT_NE(metrics["raw"].get<std::string>().find("freshet_serve_model_version 0\n"),
            std::string::npos);

  std::mt19937 rng(21);
  const auto examples = RandomExamples(kColumns, 20, &rng);
  PublishFull(RandomState(job_, kColumns, examples, 0.5, &rng), 1);
  WaitForVersion(1);
  EXPECT_EQ(Post("/score", json{{"examples", {{{"user", "u1"}}}}}).first, 200);
  auto [code2, model] = Call("GET", "/model");
  EXPECT_EQ(code2, 200);
  EXPECT_EQ(model["version"], 1);
}

// (a) Parity: /score equals the trainer's forward pass (Trainer::Score over a
// LocalSparseStore with the same rows and dense params) to 1e-5, including
// keys the snapshot lacks (initializer path) and multi-valued slots.
TEST_F(HttpServerTest, ScoreMatchesTheTrainersForwardPass) {
  std::mt19937 rng(22);
  const auto examples = RandomExamples(kColumns, 300, &rng);
  const State state = RandomState(job_, kColumns, examples, 0.6, &rng);
  PublishFull(state, 1);
  StartServing();
  WaitForVersion(1);
  auto want = ReferenceScores(job_, state, kColumns, examples, dir_.path());
  ASSERT_TRUE(want.ok()) << want.status();
  uint64_t version = 0;
  const std::vector<float> got = ScoreOverHttp(examples, 37, &version);
  EXPECT_EQ(version, 1u);
  ASSERT_EQ(got.size(), want->size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], (*want)[i], 1e-5) << "example " << i;

  // A logged row sent as it is: its label columns are not features and are
  // ignored (any other unknown column is an error, below).
  json req = {{"examples", json::array({ToJson(examples[0], 0)})}};
  req["examples"][0]["label:buy"] = "1";
  auto [code, res] = Post("/score", req);
  ASSERT_EQ(code, 200) << res.dump();
  EXPECT_NEAR(res["scores"][0].get<float>(), (*want)[0], 1e-5);
}

// (b) /rank: the top k by score, consistent with /score on the merged
// examples; the candidate's columns win over the context's.
TEST_F(HttpServerTest, RankReturnsTheTopKConsistentWithScore) {
  std::mt19937 rng(23);
  const auto pool = RandomExamples(kColumns, 60, &rng);
  PublishFull(RandomState(job_, kColumns, pool, 0.8, &rng), 1);
  StartServing();
  WaitForVersion(1);

  const json context = {{"user", "u3"}, {"query", "q1 q2"}, {"age", 31}, {"price", "7"}};
  json candidates = json::array();
  for (int i = 0; i < 25; ++i) {
    json c = {{"item", "i" + std::to_string(i)}, {"tags", {"t" + std::to_string(i % 6)}}};
    if (i % 4 == 0) c["price"] = 150;       // overrides the context's price
    if (i % 5 == 0) c["user"] = "u_other";  // overrides the context's user
    candidates.push_back(c);
  }
  auto [code, ranked] =
      Post("/rank", json{{"context", context}, {"candidates", candidates}, {"k", 7}});
  ASSERT_EQ(code, 200) << ranked;
  EXPECT_EQ(ranked["model_version"], 1);
  ASSERT_EQ(ranked["items"].size(), 7u);

  // The same candidates merged by hand, through /score.
  json merged = json::array();
  for (const auto& c : candidates) {
    json m = context;
    for (const auto& [k, v] : c.items()) m[k] = v;
    merged.push_back(m);
  }
  auto [scode, scored] = Post("/score", json{{"examples", merged}});
  ASSERT_EQ(scode, 200) << scored;
  std::vector<std::pair<float, int>> order;
  for (int i = 0; i < 25; ++i) order.push_back({-scored["scores"][i].get<float>(), i});
  std::sort(order.begin(), order.end());
  for (int r = 0; r < 7; ++r) {
    const json& item = ranked["items"][r];
    EXPECT_EQ(item["index"].get<int>(), order[r].second) << ranked;
    EXPECT_EQ(item["score"].get<float>(), -order[r].first);
    EXPECT_EQ(item["item"], candidates[order[r].second]["item"]);
    if (r > 0) {
      EXPECT_GE(ranked["items"][r - 1]["score"].get<float>(), item["score"].get<float>());
    }
  }

  // Ties: identical candidates keep their input order; k defaults to 10 and
  // a k beyond the candidates returns them all.
  json same = json::array();
  for (int i = 0; i < 12; ++i) same.push_back({{"item", "i1"}});
  auto [tcode, tied] = Post("/rank", json{{"candidates", same}});
  ASSERT_EQ(tcode, 200) << tied;
  ASSERT_EQ(tied["items"].size(), 10u);
  for (int r = 0; r < 10; ++r) EXPECT_EQ(tied["items"][r]["index"], r);
  auto [acode, all] =
      Post("/rank", json{{"candidates", {{{"item", 5}}, json::object()}}, {"k", 50}});
  ASSERT_EQ(acode, 200) << all;
  ASSERT_EQ(all["items"].size(), 2u);
  // "item" echoes the value as sent; a candidate without one has none.
  for (const auto& it : all["items"]) {
    if (it["index"] == 0) {
      EXPECT_EQ(it["item"], 5);
    } else {
      EXPECT_FALSE(it.contains("item"));
    }
  }
}

// (c) Hot swap: deltas are picked up within a few poll intervals and change
// the scores as the trainer's forward pass says, while clients keep getting
// 200s.
TEST_F(HttpServerTest, HotSwapsDeltasWithoutFailingRequests) {
  std::mt19937 rng(24);
  const auto examples = RandomExamples(kColumns, 40, &rng);
  State state = RandomState(job_, kColumns, examples, 0.7, &rng);
  PublishFull(state, 1);
  StartServing();
  WaitForVersion(1);

  std::atomic<bool> stop{false};
  std::atomic<int64_t> ok{0}, failed{0}, went_back{0};
  std::string first_failure;
  std::mutex failure_mu;
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t) {
    clients.emplace_back([&, t] {
      auto c = NewClient();
      json req = {{"examples", json::array()}};
      for (int i = 0; i < 10; ++i) req["examples"].push_back(ToJson(examples[t * 10 + i], i));
      const std::string body = req.dump();
      uint64_t last_version = 0;
      while (!stop.load()) {
        auto r = c->Post(t == 2 ? "/rank" : "/score",
                         t == 2 ? json{{"candidates", req["examples"]}, {"k", 3}}.dump() : body,
                         "application/json");
        if (r && r->status == 200) {
          ++ok;
          const uint64_t v = json::parse(r->body)["model_version"].get<uint64_t>();
          if (v < last_version) ++went_back;
          last_version = v;
        } else {
          ++failed;
          std::lock_guard<std::mutex> lock(failure_mu);
          if (first_failure.empty()) {
            first_failure =
                r ? std::to_string(r->status) + " " + r->body : httplib::to_string(r.error());
          }
        }
      }
    });
  }

  std::uniform_real_distribution<float> value(-0.5f, 0.5f);
  for (uint64_t v = 2; v <= 6; ++v) {
    State next = state;
    // Change a third of the rows, and the dense params every other version.
    int i = 0;
    for (auto& [table, rows] : next.rows) {
      for (auto& [key, row] : rows) {
        if (i++ % 3 == 0) {
          for (float& x : row) x = value(rng);
        }
      }
    }
    if (v % 2 == 0) {
      for (float& x : next.dense) x += value(rng) * 0.1f;
    }
    const auto before = ScoreOverHttp(examples, 40);
    PublishDelta(state, next, v);
    const auto t0 = std::chrono::steady_clock::now();  // LATEST names v from here on
    WaitForVersion(v);
    const double swap_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(swap_ms, 2000) << "version " << v;
    state = next;
    auto [code, model] = Call("GET", "/model");
    ASSERT_EQ(code, 200);
    EXPECT_EQ(model["version"], v);
    auto want = ReferenceScores(job_, state, kColumns, examples, dir_.path());
    ASSERT_TRUE(want.ok()) << want.status();
    uint64_t served = 0;
    const auto after = ScoreOverHttp(examples, 40, &served);
    EXPECT_EQ(served, v);
    ASSERT_EQ(after.size(), want->size());
    int changed = 0;
    for (size_t k = 0; k < after.size(); ++k) {
      EXPECT_NEAR(after[k], (*want)[k], 1e-5) << "version " << v << " example " << k;
      changed += std::abs(after[k] - before[k]) > 1e-6;
    }
    EXPECT_GT(changed, 10) << "version " << v;
    std::this_thread::sleep_for(30ms);
  }
  stop = true;
  for (auto& th : clients) th.join();
  EXPECT_EQ(failed.load(), 0) << first_failure;
  EXPECT_EQ(went_back.load(), 0);
  EXPECT_GT(ok.load(), 50);
  EXPECT_EQ(watcher_->stats().loads, 6);
  EXPECT_EQ(watcher_->stats().load_failures, 0);
}

// (d) A corrupt export is rejected; the old model keeps serving.
TEST_F(HttpServerTest, CorruptExportIsRejectedAndTheOldModelKeepsServing) {
  std::mt19937 rng(25);
  const auto examples = RandomExamples(kColumns, 30, &rng);
  State s1 = RandomState(job_, kColumns, examples, 0.7, &rng);
  PublishFull(s1, 1);
  StartServing();
  WaitForVersion(1);
  const auto before = ScoreOverHttp(examples, 30);

  // A delta whose manifest entry carries a wrong checksum.
  State s2 = s1;
  for (auto& [key, row] : s2.rows["emb"]) row[0] += 0.5f;
  proto::ExportFile entry;
  const std::string name = SnapshotFileName(Snapshot::Kind::kDelta, 2);
  ASSERT_TRUE(
      WriteSnapshotFile(DeltaSnapshot(job_, s1, s2, 2), dir_.path() + "/" + name, &entry).ok());
  entry.set_checksum(entry.checksum() + 1);
  proto::ExportManifest m = writer_->manifest();
  *m.add_deltas() = entry;
  m.set_version(2);
  ASSERT_TRUE(WriteManifestAndLatest(dir_.path(), m).ok());

  const auto deadline = std::chrono::steady_clock::now() + 5s;
  json model;
  do {
    std::this_thread::sleep_for(10ms);
    model = Call("GET", "/model").second;
  } while (model["load_failures"] != 1 && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(model["load_failures"], 1) << model;
  EXPECT_EQ(model["version"], 1) << model;
  EXPECT_NE(model["last_error"].get<std::string>().find(name), std::string::npos) << model;
  uint64_t served = 0;
  EXPECT_EQ(ScoreOverHttp(examples, 30, &served), before);
  EXPECT_EQ(served, 1u);
}

// (e) Bad requests get the right 4xx with a JSON error naming the problem,
// and the server keeps answering.
TEST_F(HttpServerTest, BadRequestsGetJsonErrorsAndTheServerKeepsServing) {
  std::mt19937 rng(26);
  const auto examples = RandomExamples(kColumns, 20, &rng);
  PublishFull(RandomState(job_, kColumns, examples, 0.5, &rng), 1);
  HttpServer::Options opt;
  opt.max_batch = 50;
  opt.max_body_bytes = 64 << 10;
  StartServing(opt);
  WaitForVersion(1);
  const std::string good = json{{"examples", {ToJson(examples[0], 0)}}}.dump();

  struct Case {
    std::string method, path, body;
    int code;
    std::string error;  // substring of "error"
  };
  std::string many = "{\"examples\":[";
  for (int i = 0; i < 51; ++i) many += std::string(i > 0 ? "," : "") + "{}";
  many += "]}";
  const std::string big = "{\"examples\":[{\"user\":\"" + std::string(100 << 10, 'x') + "\"}]}";
  const std::string deep = std::string(30000, '[') + std::string(30000, ']');
  const std::vector<Case> cases = {
      {"POST", "/score", "{", 400, "malformed JSON"},
      {"POST", "/score", "", 400, "malformed JSON"},
      {"POST", "/score", "{\"examples\":[{\"user\":\"\xff\"}]}", 400, "malformed JSON"},
      {"POST", "/score", "[1, 2]", 400, "must be a JSON object"},
      {"POST", "/score", deep, 400, "must be a JSON object"},
      {"POST", "/score", "{}", 400, "missing field 'examples'"},
      {"POST", "/score", "{\"examples\":\"x\"}", 400, "'examples' must be an array"},
      {"POST", "/score", "{\"examples\":[]}", 400, "'examples' is empty"},
      {"POST", "/score", many, 400, "the limit is 50"},
      {"POST", "/score", "{\"examples\":[{}],\"extra\":1}", 400, "unknown field 'extra'"},
      {"POST", "/score", "{\"examples\":[1]}", 400, "examples[0]: expected an object"},
      {"POST", "/score", "{\"examples\":[{},{\"bogus\":\"x\"}]}", 400,
       "examples[1]: unknown column 'bogus'"},
      {"POST", "/score", "{\"examples\":[{\"user\":{\"a\":1}}]}", 400,
       "examples[0].user: expected a string, a number or null, got object"},
      {"POST", "/score", "{\"examples\":[{\"user\":true}]}", 400, "examples[0].user"},
      {"POST", "/score", "{\"examples\":[{\"user\":[\"a\"]}]}", 400, "single-valued"},
      {"POST", "/score", "{\"examples\":[{\"query\":[\"a\",[\"b\"]]}]}", 400,
       "examples[0].query[1]"},
      {"POST", "/score", "{\"examples\":[{\"query\":[\"a\",null]}]}", 400, "examples[0].query[1]"},
      {"POST", "/score", "{\"examples\":[{},{},{\"price\":\"cheap\"}]}", 400, "examples[2]"},
      {"POST", "/score", big, 413, "larger than 65536 bytes"},
      {"POST", "/rank", "{\"candidates\":[]}", 400, "'candidates' is empty"},
      {"POST", "/rank", "{\"examples\":[{}]}", 400, "unknown field 'examples'"},
      {"POST", "/rank", "{\"candidates\":[{}],\"k\":0}", 400, "'k' must be an integer >= 1"},
      {"POST", "/rank", "{\"candidates\":[{}],\"k\":-3}", 400, "'k'"},
      {"POST", "/rank", "{\"candidates\":[{}],\"k\":2.5}", 400, "'k'"},
      {"POST", "/rank", "{\"candidates\":[{}],\"k\":\"3\"}", 400, "'k'"},
      {"POST", "/rank", "{\"context\":[1],\"candidates\":[{}]}", 400,
       "context: expected an object"},
      {"POST", "/rank", "{\"candidates\":[{\"item\":\"a\"},{\"x\":1}]}", 400,
       "candidates[1]: unknown column 'x'"},
      {"POST", "/rank", "{\"candidates\":[{\"age\":\"old\"}]}", 400, "candidates[0]"},
      {"GET", "/score", "", 405, "not allowed"},
      {"PUT", "/rank", "{}", 405, "not allowed"},
      {"POST", "/model", "{}", 405, "not allowed"},
      {"DELETE", "/metrics", "", 405, "not allowed"},
      {"GET", "/nope", "", 404, "no such endpoint"},
      {"POST", "/score/extra", good, 404, "no such endpoint"},
  };
  for (const Case& c : cases) {
    auto [code, body] = Call(c.method, c.path, c.body);
    const std::string what = c.method + " " + c.path + " " + c.body.substr(0, 60);
    EXPECT_EQ(code, c.code) << what << " -> " << body.dump();
    ASSERT_TRUE(body.contains("error")) << what << " -> " << body.dump();
    EXPECT_NE(body["error"].get<std::string>().find(c.error), std::string::npos)
        << what << " -> " << body.dump();
    if (c.code == 405) {
      EXPECT_FALSE(last_headers_.find("Allow") == last_headers_.end()) << what;
    }
    // The server keeps serving, on this connection and on a new one.
    EXPECT_EQ(Call("POST", "/score", good).first, 200) << "after " << what;
    auto fresh = NewClient();
    EXPECT_EQ(Call(fresh.get(), "POST", "/score", good).first, 200) << "after " << what;
  }

  // A chunked body over the limit is refused too.
  auto fresh = NewClient();
  auto r = fresh->Post(
      "/score",
      [&](size_t offset, httplib::DataSink& sink) {
        const std::string chunk(16 << 10, ' ');
        for (int i = 0; i < 8; ++i) sink.write(chunk.data(), chunk.size());
        sink.write(good.data(), good.size());
        sink.done();
        return true;
      },
      "application/json");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 413) << r->body;
  EXPECT_EQ(Call("POST", "/score", good).first, 200);
}

// (f) /metrics: Prometheus counters with plausible values.
TEST_F(HttpServerTest, MetricsCountRequestsAndDescribeTheModel) {
  std::mt19937 rng(27);
  const auto examples = RandomExamples(kColumns, 20, &rng);
  State s1 = RandomState(job_, kColumns, examples, 0.5, &rng);
  PublishFull(s1, 3);
  StartServing();
  WaitForVersion(3);
  const std::string good = json{{"examples", {ToJson(examples[0], 0)}}}.dump();
  for (int i = 0; i < 7; ++i) ASSERT_EQ(Call("POST", "/score", good).first, 200);
  for (int i = 0; i < 2; ++i) ASSERT_EQ(Call("POST", "/score", "{").first, 400);
  ASSERT_EQ(Call("POST", "/rank", "{\"candidates\":[{}]}").first, 200);
  ASSERT_EQ(Call("GET", "/nope").first, 404);
  ASSERT_EQ(Call("GET", "/model").first, 200);

  auto [code, body] = Call("GET", "/metrics");
  ASSERT_EQ(code, 200);
  const std::string text = body["raw"].get<std::string>();
  // name{labels} -> value
  std::map<std::string, double> v;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    v[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
  }
  EXPECT_EQ(v["freshet_serve_requests_total{endpoint=\"score\",code=\"200\"}"], 7) << text;
  EXPECT_EQ(v["freshet_serve_requests_total{endpoint=\"score\",code=\"400\"}"], 2) << text;
  EXPECT_EQ(v["freshet_serve_requests_total{endpoint=\"rank\",code=\"200\"}"], 1) << text;
  EXPECT_EQ(v["freshet_serve_requests_total{endpoint=\"other\",code=\"404\"}"], 1) << text;
  EXPECT_EQ(v["freshet_serve_requests_total{endpoint=\"model\",code=\"200\"}"], 1) << text;
  EXPECT_EQ(v["freshet_serve_request_seconds_count{endpoint=\"score\"}"], 9) << text;
  EXPECT_EQ(v["freshet_serve_request_seconds_bucket{endpoint=\"score\",le=\"+Inf\"}"], 9);
  EXPECT_GT(v["freshet_serve_request_seconds_sum{endpoint=\"score\"}"], 0);
  EXPECT_LT(v["freshet_serve_request_seconds_sum{endpoint=\"score\"}"], 5);
  EXPECT_LE(v["freshet_serve_request_seconds_bucket{endpoint=\"score\",le=\"0.001\"}"],
            v["freshet_serve_request_seconds_bucket{endpoint=\"score\",le=\"0.01\"}"]);
  EXPECT_EQ(v["freshet_serve_model_version"], 3);
  EXPECT_GE(v["freshet_serve_model_age_seconds"], 0);
  EXPECT_LT(v["freshet_serve_model_age_seconds"], 60);
  EXPECT_EQ(v["freshet_serve_model_loads_total"], 1);
  EXPECT_EQ(v["freshet_serve_model_load_failures_total"], 0);
  EXPECT_NE(text.find("# TYPE freshet_serve_request_seconds histogram"), std::string::npos);

  // /model agrees.
  auto [mcode, model] = Call("GET", "/model");
  ASSERT_EQ(mcode, 200);
  EXPECT_EQ(model["version"], 3);
  EXPECT_EQ(model["watermark"], 1700000003);
  EXPECT_EQ(model["watermark_utc"], "2023-11-14T22:13:23Z");
  EXPECT_EQ(model["tables"]["emb"], s1.rows["emb"].size());
  EXPECT_EQ(model["tables"]["wide"], s1.rows["wide"].size());
  EXPECT_GE(model["age_seconds"].get<double>(), 0);
  EXPECT_GE(model["loaded_unix_ms"].get<int64_t>(), model["created_unix_ms"].get<int64_t>());
  EXPECT_EQ(model["loads"], 1);
  EXPECT_EQ(model["load_failures"], 0);
  // This manifest has no freshness clocks: /model reports none.
  EXPECT_FALSE(model.contains("ingest_wall_ms")) << model;
  EXPECT_FALSE(model.contains("freshness_at_load_seconds")) << model;
  EXPECT_FALSE(model.contains("label_wall_ms")) << model;
  EXPECT_FALSE(model.contains("label_freshness_at_load_seconds")) << model;
}

// /model reports both freshness clocks of the manifest: read -> servable
// and label known -> servable, each measured at the version's load time.
TEST_F(HttpServerTest, ModelReportsReadAndLabelFreshnessAtLoad) {
  std::mt19937 rng(28);
  const auto examples = RandomExamples(kColumns, 20, &rng);
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  Snapshot snap = FullSnapshot(job_, RandomState(job_, kColumns, examples, 0.5, &rng), 1);
  snap.ingest_wall_ms = now_ms - 9000;  // read 9 s ago
  snap.label_wall_ms = now_ms - 2000;   // its label known 2 s ago
  ASSERT_TRUE(writer_->Publish(snap).ok());
  StartServing();
  WaitForVersion(1);
  auto [code, model] = Call("GET", "/model");
  ASSERT_EQ(code, 200);
  EXPECT_EQ(model["ingest_wall_ms"].get<int64_t>(), now_ms - 9000) << model;
  EXPECT_EQ(model["label_wall_ms"].get<int64_t>(), now_ms - 2000) << model;
  const int64_t loaded = model["loaded_unix_ms"].get<int64_t>();
  EXPECT_DOUBLE_EQ(model["freshness_at_load_seconds"].get<double>(),
                   (loaded - (now_ms - 9000)) / 1e3);
  EXPECT_DOUBLE_EQ(model["label_freshness_at_load_seconds"].get<double>(),
                   (loaded - (now_ms - 2000)) / 1e3);
  EXPECT_GE(model["label_freshness_at_load_seconds"].get<double>(), 2.0);
  EXPECT_LT(model["label_freshness_at_load_seconds"].get<double>(), 60.0);
}

// A quick latency/throughput figure: /score requests of 10 examples,
// sequentially from one keep-alive client, then from 4 concurrent clients.
TEST_F(HttpServerTest, Throughput) {
  std::mt19937 rng(28);
  const auto examples = RandomExamples(kColumns, 200, &rng);
  PublishFull(RandomState(job_, kColumns, examples, 0.7, &rng), 1);
  StartServing();
  WaitForVersion(1);
  std::vector<std::string> bodies;
  for (int b = 0; b < 20; ++b) {
    json req = {{"examples", json::array()}};
    for (int i = 0; i < 10; ++i) req["examples"].push_back(ToJson(examples[b * 10 + i], i));
    bodies.push_back(req.dump());
  }
  constexpr int kRequests = 1000;
  std::vector<double> ms;
  ms.reserve(kRequests);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kRequests; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = client_->Post("/score", bodies[i % bodies.size()], "application/json");
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    ASSERT_TRUE(r && r->status == 200);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::sort(ms.begin(), ms.end());
  std::printf(
      "[ throughput ] %d sequential /score requests x 10 examples, 1 client: %.0f req/s "
      "(%.0f examples/s), latency p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
      kRequests, kRequests / secs, 10 * kRequests / secs, ms[kRequests / 2],
      ms[kRequests * 99 / 100], ms.back());

  constexpr int kClients = 4;
  std::atomic<int> failures{0};
  start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      auto c = NewClient();
      for (int i = 0; i < kRequests / kClients; ++i) {
        auto r = c->Post("/score", bodies[(t + i) % bodies.size()], "application/json");
        if (!r || r->status != 200) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(failures.load(), 0);
  std::printf(
      "[ throughput ] %d /score requests x 10 examples, %d concurrent clients: %.0f req/s "
      "(%.0f examples/s)\n",
      kRequests, kClients, kRequests / secs, 10 * kRequests / secs);
}

// Exploration (epsilon-greedy per slot): explore = 0 is the plain top k;
// the share of explored slots follows explore; explored slots are marked;
// the same seed gives the same slate; the greedy slots keep score order.
TEST(RankSlotsTest, EpsilonGreedySharesMarkingAndDeterminism) {
  std::vector<float> scores(40);
  for (size_t i = 0; i < scores.size(); ++i)
    scores[i] = 1.0f / (1.0f + static_cast<float>(i * 7 % 40));
  std::vector<bool> explored;
  const std::vector<size_t> top = RankSlots(scores, 10, 0.0, 1, &explored);
  ASSERT_EQ(top.size(), 10u);
  for (size_t r = 0; r < top.size(); ++r) {
    EXPECT_FALSE(explored[r]);
    if (r > 0) {
      EXPECT_GE(scores[top[r - 1]], scores[top[r]]);
    }
  }
  // Deterministic for a seed, different across seeds.
  std::vector<bool> e1, e2, e3;
  EXPECT_EQ(RankSlots(scores, 10, 0.3, 42, &e1), RankSlots(scores, 10, 0.3, 42, &e2));
  EXPECT_EQ(e1, e2);
  int differ = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    differ += RankSlots(scores, 10, 0.3, seed, &e1) != RankSlots(scores, 10, 0.3, seed + 100, &e3);
  }
  EXPECT_GT(differ, 10);
  // Shares: over many seeds the explored share is close to explore, every
  // slate has distinct in-range indices, and the non-explored slots are the
  // best candidates not placed before them.
  for (double eps : {0.1, 0.5, 1.0}) {
    int64_t slots = 0, marked = 0;
    for (uint64_t seed = 0; seed < 2000; ++seed) {
      const std::vector<size_t> slate = RankSlots(scores, 10, eps, seed, &explored);
      ASSERT_EQ(slate.size(), 10u);
      std::vector<bool> used(scores.size(), false);
      for (size_t r = 0; r < slate.size(); ++r) {
        ASSERT_LT(slate[r], scores.size());
        ASSERT_FALSE(used[slate[r]]) << "index repeated";
        if (!explored[r]) {
          for (size_t j = 0; j < scores.size(); ++j) {
            if (!used[j]) {
              ASSERT_GE(scores[slate[r]], scores[j]) << "greedy slot " << r;
            }
          }
        }
        used[slate[r]] = true;
        ++slots;
        marked += explored[r];
      }
    }
    EXPECT_NEAR(static_cast<double>(marked) / static_cast<double>(slots), eps, 0.02) << eps;
  }
  // k beyond the candidates returns them all, each once.
  const std::vector<size_t> all = RankSlots({0.5f, 0.1f, 0.9f}, 10, 0.5, 7, &explored);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(std::set<size_t>(all.begin(), all.end()).size(), 3u);
}

TEST_F(HttpServerTest, RankExploresWhenAskedAndRejectsBadValues) {
  std::mt19937 rng(29);
  const auto pool = RandomExamples(kColumns, 60, &rng);
  PublishFull(RandomState(job_, kColumns, pool, 0.8, &rng), 1);
  StartServing();
  WaitForVersion(1);
  json candidates = json::array();
  for (int i = 0; i < 30; ++i) candidates.push_back({{"item", "i" + std::to_string(i)}});
  const json base = {{"context", {{"user", "u3"}}}, {"candidates", candidates}, {"k", 10}};
  auto [pcode, plain] = Post("/rank", base);
  ASSERT_EQ(pcode, 200) << plain;
  for (const auto& it : plain["items"]) EXPECT_FALSE(it.contains("explored"));

  json req = base;
  req["explore"] = 1.0;
  req["seed"] = 5;
  auto [c1, r1] = Post("/rank", req);
  auto [c2, r2] = Post("/rank", req);
  ASSERT_EQ(c1, 200) << r1;
  ASSERT_EQ(c2, 200) << r2;
  EXPECT_EQ(r1["items"], r2["items"]);  // the same seed: the same slate
  ASSERT_EQ(r1["items"].size(), 10u);
  for (const auto& it : r1["items"]) EXPECT_EQ(it.value("explored", false), true) << r1;
  EXPECT_NE(r1["items"], plain["items"]);
  // Explored items keep their own model score.
  auto [scode, scored] = Post("/score", json{{"examples", {{{"user", "u3"}, {"item", "i0"}}}}});
  ASSERT_EQ(scode, 200) << scored;
  for (const auto& it : r1["items"]) {
    if (it["index"] == 0) {
      EXPECT_EQ(it["score"], scored["scores"][0]);
    }
  }

  // The server's default share applies when the request names none.
  for (const json& bad : {json(-0.1), json(1.5), json("0.2"), json(nullptr)}) {
    json b = base;
    b["explore"] = bad;
    auto [code, err] = Post("/rank", b);
    EXPECT_EQ(code, 400) << bad;
    EXPECT_NE(err["error"].get<std::string>().find("'explore' must be a number in [0, 1]"),
              std::string::npos)
        << err;
  }
  for (const json& bad : {json(-1), json(1.5), json("7")}) {
    json b = base;
    b["seed"] = bad;
    auto [code, err] = Post("/rank", b);
    EXPECT_EQ(code, 400) << bad;
    EXPECT_NE(err["error"].get<std::string>().find("'seed' must be an integer >= 0"),
              std::string::npos)
        << err;
  }
}

TEST_F(HttpServerTest, ServerDefaultExploreAppliesAndIsValidated) {
  HttpServer::Options bad;
  bad.explore = 1.5;
  ModelWatcher::Options wopt;
  wopt.export_dir = dir_.path();
  auto w = ModelWatcher::Start(wopt);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(HttpServer::Start(bad, w->get()).status().code(), StatusCode::kInvalidArgument);

  std::mt19937 rng(30);
  PublishFull(RandomState(job_, kColumns, RandomExamples(kColumns, 40, &rng), 0.8, &rng), 1);
  HttpServer::Options opt;
  opt.explore = 1.0;
  StartServing(opt);
  WaitForVersion(1);
  json candidates = json::array();
  for (int i = 0; i < 20; ++i) candidates.push_back({{"item", "i" + std::to_string(i)}});
  auto [code, res] = Post("/rank", json{{"candidates", candidates}, {"k", 5}});
  ASSERT_EQ(code, 200) << res;
  for (const auto& it : res["items"]) EXPECT_EQ(it.value("explored", false), true) << res;
  // A request can turn it off.
  auto [code0, res0] = Post("/rank", json{{"candidates", candidates}, {"k", 5}, {"explore", 0}});
  ASSERT_EQ(code0, 200) << res0;
  for (const auto& it : res0["items"]) EXPECT_FALSE(it.contains("explored")) << res0;
}

}  // namespace
}  // namespace freshet
