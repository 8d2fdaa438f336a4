// MetricsService: makes one rank's MetricsRegistry visible while it runs:
//
//   - a Prometheus text endpoint: GET http://<host>:<port>/metrics answers
//     200 with MetricsRegistry::RenderPrometheus() (Content-Type
//     "text/plain; version=0.0.4"); any other path answers 404;
//   - a metrics log: one JSON line (MetricsRegistry::JsonLine, with the
//     rank and role fields first) appended every `interval` to `log_path`,
//     and one last line when the service stops.
//
// Either part may be off (port < 0 / empty log_path). freshet_train starts
// one per rank from the cluster config's `metrics` message
// (common/proto/cluster.proto): rank r listens on port base + r.
//
// Thread safety: Start() returns a running service; Stop() (or the
// destructor) from one thread. The registry must outlive the service. The
// HTTP handler threads and the log thread only read the registry.
#pragma once

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "common/metrics_registry.h"
#include "common/mutex.h"
#include "common/status.h"

namespace freshet {

struct MetricsServiceOptions {
  std::string host = "127.0.0.1";  // the endpoint's bind address
  // The endpoint's port: > 0 that port, 0 any free port (see port()), < 0
  // no endpoint.
  int port = -1;
  // The metrics log; its directory must exist. Empty: no log. Appended to,
  // so a restarted rank continues its file.
  std::string log_path;
  std::chrono::milliseconds interval{1000};  // between log lines, > 0
  // JSON fields put first on every log line (verbatim, no braces), e.g.
  // "\"rank\":3,\"role\":\"worker\"".
  std::string log_fields;
};

class MetricsService {
 public:
  // Unavailable naming host:port when the port cannot be bound; Internal
  // naming the path and errno text when the log cannot be opened;
  // InvalidArgument for a port above 65535 or an interval <= 0.
  static StatusOr<std::unique_ptr<MetricsService>> Start(const MetricsServiceOptions& options,
                                                         MetricsRegistry* registry);
  ~MetricsService();

  // The bound port (0 when there is no endpoint).
  int port() const { return port_; }
  // Writes the last log line, stops the endpoint and the log thread.
  // Idempotent.
  void Stop() EXCLUDES(mu_);

 private:
  struct Http;  // the httplib server, kept out of this header
  MetricsService(const MetricsServiceOptions& options, MetricsRegistry* registry);
  void LogLoop() EXCLUDES(mu_);
  void WriteLine() EXCLUDES(mu_);

  const MetricsServiceOptions options_;
  MetricsRegistry* const registry_;
  std::unique_ptr<Http> http_;
  int port_ = 0;
  std::FILE* log_ = nullptr;  // only the log thread writes (and Stop() after joining it)
  std::thread log_thread_;
  Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
};

}  // namespace freshet
