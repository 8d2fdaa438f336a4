// The JSON request handlers behind POST /score, POST /rank and the KServe v2
// POST /v2/models/{name}/infer (serving/http_server.h documents the bodies
// and the answers), callable
// without a socket: the HTTP server reads the body (bounded) and takes the
// current model, then calls these; tests/fuzz/serving_request_fuzz.cc
// calls them directly with hostile bodies.
//
// Thread safety: pure functions of their arguments; the model is immutable.
#pragma once

#include <string>

#include "serving/http_server.h"
#include "serving/model_watcher.h"

namespace freshet {
namespace serving_internal {

// An HTTP status and its JSON body.
struct JsonReply {
  int status = 200;
  std::string body;
};

// Answers a /score body `text` with `model`: 200 with the scores, or a 4xx
// (5xx for an internal failure) with {"error": ...} naming the field.
JsonReply ScoreRequest(const ServingModel& model, const HttpServer::Options& options,
                       const std::string& text);
// The same for /rank.
JsonReply RankRequest(const ServingModel& model, const HttpServer::Options& options,
                      const std::string& text);
// The same for a KServe v2 infer body; the reply names the model
// `model_name` (see ModelName).
JsonReply InferRequest(const ServingModel& model, const HttpServer::Options& options,
                       const std::string& model_name, const std::string& text);

// The KServe v2 name of `model`: Options::model_name when set, else the
// job's name from the manifest when it is non-empty and has no '/', else
// "freshet".
std::string ModelName(const HttpServer::Options& options, const ServingModel& model);

}  // namespace serving_internal
}  // namespace freshet
