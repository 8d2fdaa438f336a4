// HttpServer: the serving tier's HTTP/JSON front end (cpp-httplib, one
// thread per connection from a fixed pool), answering from the model a
// ModelWatcher currently serves.
//
// Endpoints (all responses are JSON with Content-Type application/json,
// except /metrics):
//
//   POST /score
//     {"examples": [{"<column>": value, ...}, ...]}
//     -> 200 {"model_version": V, "scores": [p_0, p_1, ...]}
//     p_i = the model's P(label = 1) for example i (see serving/scorer.h).
//
//   POST /rank
//     {"context": {...}, "candidates": [{...}, ...], "k": 10}
//     -> 200 {"model_version": V,
//             "items": [{"index": i, "score": p, "item": <value>}, ...]}
//     Candidate i is scored as the union of the context's columns and its
//     own; a column in both takes the candidate's value. The first k
//     candidates by score (descending; equal scores by index ascending).
//     "context" is optional (default {}), "k" optional (default 10, an
//     integer >= 1; larger than the number of candidates returns all).
//     "item" is the candidate's own value of the item column (Options::
//     item_column, default "item") exactly as sent; absent when the
//     candidate has none.
//     Exploration: optional "explore" (a number in [0, 1]; default
//     Options::explore) and "seed" (an integer >= 0). With explore = e > 0
//     the slate is filled slot by slot (epsilon-greedy): each of the k slots
//     takes, with probability e, a uniformly random candidate not yet
//     placed, else the best-scored one not yet placed; such slots carry
//     "explored": true. The same seed, scores and k give the same slate;
//     without a seed each request draws a fresh one. e = 0 is the plain
//     top-k above.
//
//   GET /model
//     -> 200 {"version": V, "watermark": W (unix s),
//             "watermark_utc": "YYYY-MM-DDTHH:MM:SSZ",
//             "created_unix_ms": manifest creation time,
//             "age_seconds": now - created_unix_ms / 1000,
//             "loaded_unix_ms": when this model was swapped in,
//             "load_ms": time its load took,
//             "full": full snapshot file, "deltas": number of deltas,
//             "tables": {"<name>": rows, ...},
//             "loads": models swapped in, "load_failures": rejected loads,
//             "frozen": the reload policy stopped loading (ModelWatcher::
//               Options::freeze_after_s),
//             "last_error": the latest rejected load's error (if any),
//             "ingest_wall_ms": the newest time a training worker read an
//               event this version includes, and
//               "freshness_at_load_seconds": loaded_unix_ms -
//               ingest_wall_ms (read -> servable), both only when the
//               manifest has it;
//             "label_wall_ms": the newest time a label this version
//               includes became known, and
//               "label_freshness_at_load_seconds": loaded_unix_ms -
//               label_wall_ms (label known -> servable), both only when
//               the manifest has it (docs/METRICS.md "Freshness")}
//
//   /model answers 503 with {"error", ...} while no model is loaded.
//
//   GET /metrics  (Prometheus text format 0.0.4)
//     freshet_serve_requests_total{endpoint="score",code="200"} counter
//     freshet_serve_request_seconds{endpoint="..."} histogram (_bucket{le},
//       _sum, _count), endpoints score, rank, model, metrics, v2_infer
//       (POST /v2/models/.../infer), v2 (the other /v2 paths), other
//     freshet_serve_model_version, freshet_serve_model_age_seconds gauges
//       (0 and absent age while no model is loaded)
//     freshet_serve_model_loads_total, freshet_serve_model_load_failures_total
//
// KServe v2 / Open Inference Protocol (REST; JSON bodies only, no binary
// tensor extension). The model's name is Options::model_name, or the served
// job's name (manifest job.name), or "freshet" (see Options::model_name);
// its one version is the export version as a decimal string. {name} below
// may also be written {name}/versions/{v}, which answers only when v is the
// served version (404 otherwise).
//
//   GET /v2/health/live   -> 200 {"live": true} while the process runs
//   GET /v2/health/ready  -> 200 {"ready": true} once a model is loaded,
//                            503 {"error"} before
//   GET /v2               -> 200 {"name": "freshet", "version": <the CMake
//                            project version, "0.1.0">, "extensions": []}
//   GET /v2/models/{name}
//     -> 200 {"name", "versions": ["<V>"], "platform": "freshet",
//             "inputs": [{"name": <column>, "datatype": "BYTES",
//                         "shape": [-1] | [-1, -1]}, ...],
//             "outputs": [{"name": "probability", "datatype": "FP32",
//                          "shape": [-1]}]}
//     One input per feature column (Scorer::columns(), in that order);
//     shape [-1, -1] (batch, tokens) for a multi-valued column, [-1] for the
//     others. The item column is not an input unless it is a feature column.
//   GET /v2/models/{name}/ready -> 200 {"name", "ready": true}
//   POST /v2/models/{name}/infer
//     {"id"?: "<string>", "parameters"?: {...},
//      "inputs": [{"name": <column>, "datatype": "BYTES", "shape": [n],
//                  "data": [v_0, ..., v_{n-1}], "parameters"?: {...}}, ...],
//      "outputs"?: [{"name": "probability", "parameters"?: {...}}]}
//     -> 200 {"model_name", "model_version": "<V>", "id" (when sent),
//             "outputs": [{"name": "probability", "datatype": "FP32",
//                          "shape": [n], "data": [p_0, ..., p_{n-1}]}]}
//     Column-major: each input is one column, v_i its value for example i
//     (the values /score takes: a string, a number or null; for a
//     multi-valued column also an array of tokens, and a string is split on
//     spaces). Every input has the same n (1..Options::max_batch). A
//     multi-valued column may instead come as shape [n, m]: m tokens per
//     example, "data" flattened (n * m values, row-major) or nested (n arrays
//     of m); "" tokens are padding and ignored. A single-valued column also
//     takes [n, 1]. Columns not given are missing values (as in /score).
//     p_i equals /score's score for the same example (same Scorer call).
//     "parameters" are accepted and ignored. Errors as below: 400 names the
//     field, e.g. "inputs[1] ('query').data: has 3 entries, shape [2] needs
//     2" (malformed JSON, unknown or duplicate inputs, a datatype other than
//     BYTES, a bad shape, data of another length than the shape, inputs of
//     different batch sizes, a batch over max_batch, an output other than
//     "probability", a non-string "id"); 404 another model name or version;
//     413 a body over max_body_bytes; 503 no model loaded yet.
//
// Column values: a string, a number or null. A number is converted to its
// JSON text (nlohmann's shortest round-trip form: 3, 0.25, 1e+20), which is
// what the encoder then hashes or parses; send a string to control the exact
// token. null or a missing column is an empty value. A multi-valued column
// (one read only by multi-valued slots) also takes an array of strings or
// numbers, joined with spaces; a string there is split on spaces. The
// columns are the job's feature columns (Scorer::columns()); the item column
// (Options::item_column) is also accepted when it is not one of them (it is
// then only echoed by /rank). Example order is preserved in "scores".
//
// Scores are float probabilities printed in their shortest round-trip form
// (e.g. 0.83811754).
//
// Errors: {"error": "<message naming the field or example index>"} with
//   400 malformed JSON, a body that is not an object, unknown top-level
//       fields or columns, a wrong type (objects, nested arrays, booleans,
//       an array for a single-valued column), an empty batch or one larger
//       than Options::max_batch, a value the encoder rejects (a numeric
//       feature that is not a number);
//   404 unknown path, or (KServe v2) another model name or version;
//   405 known path, wrong method (with an Allow header);
//   413 body larger than Options::max_body_bytes;
//   503 /score, /rank, /model and the v2 model endpoints and
//       /v2/health/ready while no model is loaded yet;
//   500 an unexpected internal error.
// The server keeps serving after any bad request.
//
// Connections: HTTP/1.1 keep-alive, one thread per open connection
// (Options::threads of them; further connections queue). A body sent with
// Content-Length above max_body_bytes is refused unread; a chunked body is
// read up to the limit and then refused (the rest of it is not read, so that
// connection is left unusable; clients should reconnect after a 413).
//
// Thread safety: Start() returns a running server; Stop() and the
// destructor may be called from any one thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "serving/model_watcher.h"

namespace freshet {

// The slate /rank returns: min(k, scores.size()) candidate indices in slot
// order, and per slot whether exploration filled it (*explored, resized).
// explore = 0: the top k by score (descending; ties and NaN scores as
// /rank describes); explore in (0, 1]: epsilon-greedy per slot with a
// splitmix64 generator seeded by `seed` (see /rank above). Pure function.
std::vector<size_t> RankSlots(const std::vector<float>& scores, size_t k, double explore,
                              uint64_t seed, std::vector<bool>* explored);

class HttpServer {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 0;                      // 0: pick a free port (see port())
    size_t max_body_bytes = 1 << 20;   // larger bodies get 413
    int max_batch = 1000;              // examples per /score and v2 infer, candidates per /rank
    int threads = 8;                   // connection-handling threads
    std::string item_column = "item";  // echoed by /rank
    // An idle keep-alive connection is closed after this long. It holds a
    // thread meanwhile, and Stop() waits for it.
    int keep_alive_timeout_s = 5;
    // Default exploration share of /rank (in [0, 1]; a request's "explore"
    // overrides it).
    double explore = 0;
    // The model name of the KServe v2 endpoints (/v2/models/{name}/...);
    // must not contain '/'. Empty: the served job's name (the manifest's
    // job.name) when it is non-empty and has no '/', else "freshet".
    std::string model_name;
  };

  // Binds host:port and starts serving on background threads. `models` is
  // not owned and must outlive the server. Unavailable when the address
  // cannot be bound; InvalidArgument for bad options.
  static StatusOr<std::unique_ptr<HttpServer>> Start(const Options& options,
                                                     const ModelWatcher* models);
  // Stops accepting, finishes requests in progress and joins the threads.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port (the chosen one when Options::port was 0).
  int port() const { return port_; }
  // Stops serving (idempotent). Requests in progress finish first; idle
  // keep-alive connections are waited for (up to keep_alive_timeout_s).
  void Stop();

 private:
  class Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::thread listener_;
  std::atomic<bool> listener_done_{false};  // the listen loop has returned
  int port_ = 0;
};

}  // namespace freshet
