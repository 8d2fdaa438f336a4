// Fuzz target: the serving tier's request bodies (POST /score, /rank and the
// KServe v2 /v2/models/{name}/infer, serving/http_server.h) against a real
// model: TinyJob
// (serving/internal/testing.h) published with ExportWriter and loaded as
// freshet_serve loads it.
//
// Input byte 0 % 3: 0 -> /score, 1 -> /rank, 2 -> infer; the rest is the
// body. Every answer must be JSON with status 200 (scores in [0, 1], one per
// example; at most k ranked items; infer: one FP32 "probability" output
// whose data has shape[0] entries) or a 4xx with an "error" string; never a
// 5xx.
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "serving/internal/requests.h"
#include "serving/internal/testing.h"
#include "serving/scorer.h"
#include "tests/fuzz/fuzz_util.h"

namespace freshet {
namespace {

using json = nlohmann::json;

const ServingModel& Model() {
  static const ServingModel* model = [] {
    serving_testing::TempDir dir;
    const proto::JobConfig job = serving_testing::TinyJob();
    const std::vector<std::string> columns = {"user", "item", "query", "tags", "price", "age"};
    std::mt19937 rng(1);
    const auto examples = serving_testing::RandomExamples(columns, 50, &rng);
    const auto state = serving_testing::RandomState(job, columns, examples, 0.7, &rng);
    auto writer = ExportWriter::Open(dir.path(), job, 1);
    FUZZ_CHECK(writer.ok());
    FUZZ_CHECK((*writer)->Publish(serving_testing::FullSnapshot(job, state, 1)).ok());
    auto loaded = LoadLatestExport(dir.path());
    FUZZ_CHECK(loaded.ok());
    auto scorer = Scorer::Create(*loaded);
    FUZZ_CHECK(scorer.ok());
    auto* m = new ServingModel;
    m->scorer = std::move(*scorer);
    return m;
  }();
  return *model;
}

}  // namespace
}  // namespace freshet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace freshet;
  fuzz::Input in(data, size);
  const int kind = in.Byte() % 3;
  const bool rank = kind == 1;
  const std::string body(in.Rest());
  HttpServer::Options options;
  options.max_batch = 64;
  const std::string name = serving_internal::ModelName(options, Model());
  const serving_internal::JsonReply r =
      kind == 0   ? serving_internal::ScoreRequest(Model(), options, body)
      : kind == 1 ? serving_internal::RankRequest(Model(), options, body)
                  : serving_internal::InferRequest(Model(), options, name, body);
  const json answer = json::parse(r.body);  // throws (a crash) if not JSON
  if (r.status == 200 && kind == 2) {
    FUZZ_CHECK(answer.at("model_name") == name);
    const json& outputs = answer.at("outputs");
    FUZZ_CHECK(outputs.is_array() && outputs.size() == 1);
    const json& data = outputs[0].at("data");
    FUZZ_CHECK(data.is_array() && !data.empty() && data.size() <= 64);
    FUZZ_CHECK(outputs[0].at("shape") == json::array({data.size()}));
    for (const json& x : data) {
      const double p = x.get<double>();
      FUZZ_CHECK(p >= 0 && p <= 1);
    }
  } else if (r.status == 200) {
    const json& list = answer.at(rank ? "items" : "scores");
    FUZZ_CHECK(list.is_array() && !list.empty());
    for (const json& x : list) {
      const double p = rank ? x.at("score").get<double>() : x.get<double>();
      FUZZ_CHECK(p >= 0 && p <= 1);
    }
  } else {
    FUZZ_CHECK(r.status >= 400 && r.status < 500);
    FUZZ_CHECK(answer.at("error").is_string());
  }
  return 0;
}
