// The KServe v2 / Open Inference Protocol endpoints of HttpServer over real
// HTTP on 127.0.0.1: an ExportWriter publishes TinyJob into a temp dir, a
// ModelWatcher loads it, an HttpServer answers an httplib::Client.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "serving/http_server.h"
#include "serving/internal/testing.h"

namespace freshet {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using serving_testing::FullSnapshot;
using serving_testing::RandomExamples;
using serving_testing::RandomState;
using serving_testing::TempDir;
using serving_testing::TinyJob;

// The scorer's column order for TinyJob (checked by scorer_test.cc).
const std::vector<std::string> kColumns = {"user", "item", "query", "tags", "price", "age"};
bool IsMulti(const std::string& c) { return c == "query" || c == "tags"; }
constexpr char kJobName[] = "serving-test";  // TinyJob's name

std::vector<std::string> Tokens(const std::string& v) {
  std::vector<std::string> out;
  std::istringstream in(v);
  for (std::string t; in >> t;) out.push_back(t);
  return out;
}

// Examples [begin, end) as one KServe v2 infer input per column. `variant`
// picks the encoding of the multi-valued columns: 0 space-separated strings
// (shape [n]), 1 token arrays (shape [n]), 2 shape [n, m] flattened with ""
// padding, 3 shape [n, m] nested; and of empty values: null (odd variants)
// or "". Single-valued columns go as [n] (even variants) or [n, 1] nested.
json InferBody(const std::vector<Example>& examples, size_t begin, size_t end, int variant) {
  const size_t n = end - begin;
  json inputs = json::array();
  for (size_t c = 0; c < kColumns.size(); ++c) {
    json data = json::array();
    json shape = json::array({n});
    const bool multi = IsMulti(kColumns[c]);
    if (multi && variant >= 2) {
      size_t m = 0;
      for (size_t i = begin; i < end; ++i) m = std::max(m, Tokens(examples[i].values[c]).size());
      shape.push_back(m);
      for (size_t i = begin; i < end; ++i) {
        std::vector<std::string> t = Tokens(examples[i].values[c]);
        t.resize(m);  // "" padding
        if (variant == 2) {
          for (const auto& x : t) data.push_back(x);
        } else {
          data.push_back(t);
        }
      }
    } else if (!multi && variant % 2 == 1) {
      shape.push_back(1);
      for (size_t i = begin; i < end; ++i) {
        const std::string& v = examples[i].values[c];
        data.push_back(json::array({v.empty() ? json(nullptr) : json(v)}));
      }
    } else {
      for (size_t i = begin; i < end; ++i) {
        const std::string& v = examples[i].values[c];
        if (v.empty()) {
          data.push_back(variant % 2 == 1 ? json(nullptr) : json(""));
        } else if (multi && variant == 1) {
          data.push_back(Tokens(v));
        } else {
          data.push_back(v);
        }
      }
    }
    inputs.push_back(
        {{"name", kColumns[c]}, {"datatype", "BYTES"}, {"shape", shape}, {"data", data}});
  }
  return json{{"inputs", inputs}};
}

// The same examples as /score's row-major objects (empty values omitted).
json ScoreBody(const std::vector<Example>& examples, size_t begin, size_t end) {
  json list = json::array();
  for (size_t i = begin; i < end; ++i) {
    json obj = json::object();
    for (size_t c = 0; c < kColumns.size(); ++c) {
      if (!examples[i].values[c].empty()) obj[kColumns[c]] = examples[i].values[c];
    }
    list.push_back(obj);
  }
  return json{{"examples", list}};
}

class KServeV2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    job_ = TinyJob();
    ASSERT_EQ(job_.name(), kJobName);
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
    client_ = NewClient();
  }
  std::unique_ptr<httplib::Client> NewClient() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    c->set_read_timeout(10, 0);
    c->set_keep_alive(true);
    return c;
  }

  // Publishes a random model of `examples` at `version` and waits for it.
  void PublishAndWait(const std::vector<Example>& examples, uint64_t version, std::mt19937* rng) {
    ASSERT_TRUE(
        writer_
            ->Publish(FullSnapshot(job_, RandomState(job_, kColumns, examples, 0.6, rng), version))
            .ok());
    ASSERT_TRUE(watcher_->WaitForVersion(version, 5000ms));
  }

  // Status and parsed JSON body ({"raw": text} when not JSON).
  std::pair<int, json> Call(const std::string& method, const std::string& path,
                            const std::string& body = "") {
    return Call(client_.get(), method, path, body);
  }
  std::pair<int, json> Call(httplib::Client* c, const std::string& method, const std::string& path,
                            const std::string& body = "") {
    httplib::Result r = [&] {
      if (method == "GET") return c->Get(path.c_str());
      if (method == "PUT") return c->Put(path.c_str(), body, "application/json");
      return c->Post(path.c_str(), body, "application/json");
    }();
    if (!r) return {-1, json{{"raw", httplib::to_string(r.error())}}};
    last_headers_ = r->headers;
    json j = json::parse(r->body, nullptr, false);
    if (j.is_discarded()) j = json{{"raw", r->body}};
    return {r->status, j};
  }

  TempDir dir_;
  proto::JobConfig job_;
  std::unique_ptr<ExportWriter> writer_;
  std::unique_ptr<ModelWatcher> watcher_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<httplib::Client> client_;
  httplib::Headers last_headers_;
};

TEST_F(KServeV2Test, HealthIsLiveAtOnceAndReadyOnceAModelLoads) {
  StartServing();
  EXPECT_EQ(Call("GET", "/v2/health/live"), std::make_pair(200, json{{"live", true}}));
  auto [rcode, ready] = Call("GET", "/v2/health/ready");
  EXPECT_EQ(rcode, 503) << ready;
  EXPECT_NE(ready["error"].get<std::string>().find("no model loaded"), std::string::npos) << ready;
  EXPECT_EQ(Call("GET", std::string("/v2/models/") + kJobName + "/ready").first, 503);
  EXPECT_EQ(Call("GET", std::string("/v2/models/") + kJobName).first, 503);
  auto [scode, server] = Call("GET", "/v2");
  EXPECT_EQ(scode, 200) << server;
  EXPECT_EQ(server["name"], "freshet");
  EXPECT_FALSE(server["version"].get<std::string>().empty()) << server;
  EXPECT_EQ(server["extensions"], json::array());

  std::mt19937 rng(31);
  PublishAndWait(RandomExamples(kColumns, 20, &rng), 1, &rng);
  EXPECT_EQ(Call("GET", "/v2/health/ready"), std::make_pair(200, json{{"ready", true}}));
  EXPECT_EQ(Call("GET", "/v2/health/live").first, 200);
  EXPECT_EQ(Call("GET", std::string("/v2/models/") + kJobName + "/ready"),
            std::make_pair(200, json{{"name", kJobName}, {"ready", true}}));
  auto [ucode, unknown] = Call("GET", "/v2/models/other/ready");
  EXPECT_EQ(ucode, 404) << unknown;
  EXPECT_NE(unknown["error"].get<std::string>().find("unknown model 'other'"), std::string::npos)
      << unknown;
}

TEST_F(KServeV2Test, MetadataListsTheColumnsAndTheServedVersion) {
  StartServing();
  std::mt19937 rng(32);
  PublishAndWait(RandomExamples(kColumns, 20, &rng), 7, &rng);
  const std::string base = std::string("/v2/models/") + kJobName;
  auto [code, meta] = Call("GET", base);
  ASSERT_EQ(code, 200) << meta;
  EXPECT_EQ(meta["name"], kJobName);
  EXPECT_EQ(meta["versions"], json::array({"7"}));
  EXPECT_EQ(meta["platform"], "freshet");
  ASSERT_EQ(meta["inputs"].size(), kColumns.size()) << meta;
  for (size_t c = 0; c < kColumns.size(); ++c) {
    const json& in = meta["inputs"][c];
    EXPECT_EQ(in["name"], kColumns[c]);
    EXPECT_EQ(in["datatype"], "BYTES");
    EXPECT_EQ(in["shape"], IsMulti(kColumns[c]) ? json::array({-1, -1}) : json::array({-1})) << in;
  }
  EXPECT_EQ(meta["outputs"],
            json::array({{{"name", "probability"}, {"datatype", "FP32"}, {"shape", {-1}}}}));

  // The version path: the served version only.
  EXPECT_EQ(Call("GET", base + "/versions/7"), std::make_pair(200, meta));
  EXPECT_EQ(Call("GET", base + "/versions/7/ready").first, 200);
  for (const std::string& path :
       {base + "/versions/6", base + "/versions/6/ready", base + "/versions/x",
        std::string("/v2/models/other"), std::string("/v2/models/other/versions/7")}) {
    auto [c, body] = Call("GET", path);
    EXPECT_EQ(c, 404) << path << " -> " << body;
    ASSERT_TRUE(body["error"].is_string()) << path << " -> " << body;
  }
  auto [vcode, wrong_version] = Call("GET", base + "/versions/6");
  EXPECT_NE(wrong_version["error"].get<std::string>().find("no version '6' (serving version 7)"),
            std::string::npos)
      << wrong_version;
}

TEST_F(KServeV2Test, ModelNameOptionRenamesTheModel) {
  HttpServer::Options opt;
  opt.model_name = "ctr";
  StartServing(opt);
  // Before a model loads: the configured name is known (503), others not.
  EXPECT_EQ(Call("GET", "/v2/models/ctr").first, 503);
  EXPECT_EQ(Call("GET", "/v2/models/other").first, 404);
  std::mt19937 rng(33);
  PublishAndWait(RandomExamples(kColumns, 20, &rng), 2, &rng);
  auto [code, meta] = Call("GET", "/v2/models/ctr");
  EXPECT_EQ(code, 200) << meta;
  EXPECT_EQ(meta["name"], "ctr");
  EXPECT_EQ(Call("GET", std::string("/v2/models/") + kJobName).first, 404);
  auto [icode, out] =
      Call("POST", "/v2/models/ctr/infer",
           R"({"inputs":[{"name":"user","datatype":"BYTES","shape":[1],"data":["u1"]}]})");
  EXPECT_EQ(icode, 200) << out;
  EXPECT_EQ(out["model_name"], "ctr");

  HttpServer::Options bad;
  bad.model_name = "a/b";
  EXPECT_FALSE(HttpServer::Start(bad, watcher_.get()).ok());
}

// Infer answers exactly what /score answers for the same examples, in every
// encoding of the inputs.
TEST_F(KServeV2Test, InferEqualsScoreForTheSameExamples) {
  StartServing();
  std::mt19937 rng(34);
  const auto examples = RandomExamples(kColumns, 120, &rng);
  PublishAndWait(examples, 5, &rng);
  const std::string infer = std::string("/v2/models/") + kJobName + "/infer";
  const size_t batch = 30;
  for (size_t b = 0; b < examples.size(); b += batch) {
    const size_t end = std::min(examples.size(), b + batch);
    auto [scode, scored] = Call("POST", "/score", ScoreBody(examples, b, end).dump());
    ASSERT_EQ(scode, 200) << scored;
    const json& want = scored["scores"];
    ASSERT_EQ(want.size(), end - b);
    for (int variant = 0; variant < 4; ++variant) {
      json req = InferBody(examples, b, end, variant);
      req["id"] = "req-" + std::to_string(b) + "-" + std::to_string(variant);
      req["outputs"] = json::array({{{"name", "probability"}}});
      const std::string path =
          variant == 3 ? std::string("/v2/models/") + kJobName + "/versions/5/infer" : infer;
      auto [code, res] = Call("POST", path, req.dump());
      ASSERT_EQ(code, 200) << "variant " << variant << ": " << res;
      EXPECT_EQ(res["model_name"], kJobName);
      EXPECT_EQ(res["model_version"], "5");
      EXPECT_EQ(res["id"], req["id"]);
      ASSERT_EQ(res["outputs"].size(), 1u) << res;
      const json& out = res["outputs"][0];
      EXPECT_EQ(out["name"], "probability");
      EXPECT_EQ(out["datatype"], "FP32");
      EXPECT_EQ(out["shape"], json::array({end - b}));
      ASSERT_EQ(out["data"].size(), end - b) << res;
      for (size_t i = 0; i < end - b; ++i) {
        const double p = out["data"][i].get<double>();
        EXPECT_NEAR(p, want[i].get<double>(), 1e-6)
            << "variant " << variant << " example " << b + i;
        EXPECT_TRUE(p > 0 && p < 1) << p;
      }
    }
  }

  // Columns not sent are missing values, as in /score; no "id", no "id" back.
  auto [scode, scored] =
      Call("POST", "/score", R"({"examples":[{"user":"u1","tags":"t1 t2"},{"age":"3"},{}]})");
  ASSERT_EQ(scode, 200) << scored;
  auto [icode, inferred] = Call("POST", infer, R"({"inputs":[
      {"name":"age","datatype":"BYTES","shape":[3],"data":[null,3,""]},
      {"name":"tags","datatype":"BYTES","shape":[3,2],"data":[["t1","t2"],["",""],["",""]]},
      {"name":"user","datatype":"BYTES","shape":[3],"data":["u1",null,null]}]})");
  ASSERT_EQ(icode, 200) << inferred;
  EXPECT_FALSE(inferred.contains("id"));
  ASSERT_EQ(inferred["outputs"][0]["data"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(inferred["outputs"][0]["data"][i].get<double>(), scored["scores"][i].get<double>(),
                1e-6);
  }
  // A model whose outputs differ per example (else the checks above prove little).
  EXPECT_NE(scored["scores"][0], scored["scores"][2]);

  // Wrong version in the path: 404, the body is not scored.
  auto [vcode, v] = Call("POST", std::string("/v2/models/") + kJobName + "/versions/4/infer",
                         InferBody(examples, 0, 2, 0).dump());
  EXPECT_EQ(vcode, 404) << v;
}

TEST_F(KServeV2Test, BadInferBodiesGetJsonErrorsNamingTheField) {
  HttpServer::Options opt;
  opt.max_batch = 4;
  opt.max_body_bytes = 16 << 10;
  StartServing(opt);
  std::mt19937 rng(35);
  PublishAndWait(RandomExamples(kColumns, 20, &rng), 1, &rng);
  const std::string infer = std::string("/v2/models/") + kJobName + "/infer";
  const std::string good =
      R"({"inputs":[{"name":"user","datatype":"BYTES","shape":[2],"data":["u1","u2"]}]})";
  ASSERT_EQ(Call("POST", infer, good).first, 200);
  const auto in = [](const std::string& name, const std::string& shape, const std::string& data,
                     const std::string& datatype = "BYTES") {
    return R"({"name":")" + name + R"(","datatype":")" + datatype + R"(","shape":)" + shape +
           R"(,"data":)" + data + "}";
  };
  const auto body = [](const std::vector<std::string>& inputs) {
    std::string s = R"({"inputs":[)";
    for (size_t i = 0; i < inputs.size(); ++i) s += (i > 0 ? "," : "") + inputs[i];
    return s + "]}";
  };
  struct Case {
    std::string body;
    int code;
    std::string error;  // substring of "error"
  };
  const std::vector<Case> cases = {
      {"{", 400, "malformed JSON"},
      {"", 400, "malformed JSON"},
      {"[1]", 400, "must be a JSON object"},
      {"{}", 400, "missing field 'inputs'"},
      {R"({"inputs":{}})", 400, "'inputs' must be an array"},
      {R"({"inputs":[]})", 400, "'inputs' is empty"},
      {R"({"inputs":[],"extra":1})", 400, "unknown field 'extra'"},
      {R"({"inputs":[1]})", 400, "inputs[0]: expected an object"},
      {R"({"id":7,"inputs":[]})", 400, "'id' must be a string"},
      {body({in("user", "[1]", R"(["u"])", "FP32")}), 400,
       R"(inputs[0] ('user').datatype: expected "BYTES")"},
      {body({R"({"name":"user","shape":[1],"data":["u"]})"}), 400,
       "inputs[0] ('user'): missing field 'datatype'"},
      {body({in("user", "[1]", R"(["u"])"), in("bogus", "[1]", R"(["x"])")}), 400,
       "inputs[1]: unknown input 'bogus'"},
      {body({in("user", "[1]", R"(["u"])"), in("user", "[1]", R"(["v"])")}), 400,
       "inputs[1]: input 'user' is also inputs[0]"},
      {body({R"({"name":"user","datatype":"BYTES","shape":[1],"data":["u"],"foo":1})"}), 400,
       "inputs[0]: unknown field 'foo'"},
      {body({in("user", "[2]", R"(["u1","u2","u3"])")}), 400,
       "inputs[0] ('user').data: has 3 entries, shape [2] needs 2"},
      {body({in("user", "[-1]", R"(["u1"])")}), 400, "inputs[0] ('user').shape: expected [batch]"},
      {body({in("user", "[1,2,3]", R"(["u1"])")}), 400, "inputs[0] ('user').shape"},
      {body({in("user", "\"2\"", R"(["u1"])")}), 400, "inputs[0] ('user').shape"},
      {body({in("user", "[2,2]", R"(["a","b","c","d"])")}), 400,
       "inputs[0] ('user').shape: column 'user' is single-valued"},
      {body({in("query", "[2,2]", R"(["a","b","c"])")}), 400,
       "inputs[0] ('query').data: has 3 entries, shape [2,2] needs 4"},
      {body({in("query", "[2,2]", R"([["a","b"],["c"]])")}), 400,
       "inputs[0] ('query').data[1]: expected an array of 2 values"},
      {body({in("query", "[1,2]", R"(["a",{"x":1}])")}), 400,
       "inputs[0] ('query').data[1]: expected a string or a number, got object"},
      {body({in("user", "[2]", R"(["u1","u2"])"), in("age", "[3]", R"([1,2,3])")}), 400,
       "inputs[1] ('age').shape[0]: batch size 3 differs from inputs[0]'s 2"},
      {body({in("user", "[0]", "[]")}), 400, "the batch (inputs[0] ('user').shape[0]) is empty"},
      {body({in("user", "[5]", R"(["a","b","c","d","e"])")}), 400, "has 5 entries, the limit is 4"},
      {body({in("user", "[1]", R"([true])")}), 400,
       "inputs[0] ('user').data[0]: expected a string"},
      {body({in("user", "[1]", R"([["a"]])")}), 400,
       "inputs[0] ('user').data[0]: column 'user' is single-valued"},
      {body({in("user", "[1]", R"("u1")")}), 400, "inputs[0] ('user').data: expected an array"},
      {body({R"({"name":"user","datatype":"BYTES","shape":[1]})"}), 400,
       "inputs[0] ('user'): missing field 'data'"},
      {body({in("age", "[2]", R"(["1","old"])")}), 400, "example[1]"},
      {R"({"inputs":[{"name":"user","datatype":"BYTES","shape":[1],"data":["u"]}],"outputs":[{"name":"logit"}]})",
       400, "outputs[0].name: unknown output \"logit\""},
      {"{\"inputs\":[{\"name\":\"user\",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"" +
           std::string(20 << 10, 'x') + "\"]}]}",
       413, "larger than 16384 bytes"},
  };
  for (const Case& c : cases) {
    auto [code, res] = Call("POST", infer, c.body);
    const std::string what = c.body.substr(0, 120);
    EXPECT_EQ(code, c.code) << what << " -> " << res.dump();
    ASSERT_TRUE(res.contains("error") && res["error"].is_string()) << what << " -> " << res.dump();
    EXPECT_NE(res["error"].get<std::string>().find(c.error), std::string::npos)
        << what << " -> " << res.dump();
    // The server keeps serving, on this connection and on a new one.
    EXPECT_EQ(Call("POST", infer, good).first, 200) << "after " << what;
    auto fresh = NewClient();
    EXPECT_EQ(Call(fresh.get(), "POST", infer, good).first, 200) << "after " << what;
  }

  // Wrong methods and paths.
  auto [gcode, g] = Call("GET", infer);
  EXPECT_EQ(gcode, 405) << g;
  EXPECT_FALSE(last_headers_.find("Allow") == last_headers_.end());
  EXPECT_EQ(Call("POST", "/v2/health/ready", "{}").first, 405);
  EXPECT_EQ(Call("PUT", std::string("/v2/models/") + kJobName, "{}").first, 405);
  EXPECT_EQ(Call("POST", "/v2/models/other/infer", good).first, 404);
  EXPECT_EQ(Call("GET", "/v2/nope").first, 404);

  // /metrics counts infer requests under their own endpoint label.
  auto [mcode, metrics] = Call("GET", "/metrics");
  ASSERT_EQ(mcode, 200);
  const std::string text = metrics["raw"].get<std::string>();
  int bad = 0;
  for (const Case& c : cases) bad += c.code == 400;
  const auto has = [&](const std::string& line) {
    return text.find(line + "\n") != std::string::npos;
  };
  EXPECT_TRUE(has("freshet_serve_requests_total{endpoint=\"v2_infer\",code=\"200\"} " +
                  std::to_string(1 + 2 * cases.size())))
      << text;
  EXPECT_TRUE(has("freshet_serve_requests_total{endpoint=\"v2_infer\",code=\"400\"} " +
                  std::to_string(bad)))
      << text;
  EXPECT_TRUE(has("freshet_serve_requests_total{endpoint=\"v2\",code=\"404\"} 1")) << text;
}

}  // namespace
}  // namespace freshet
