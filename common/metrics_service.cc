#include "common/metrics_service.h"

#include <glog/logging.h>
#include <httplib.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace freshet {

struct MetricsService::Http {
  httplib::Server server;
  std::thread listener;
  std::atomic<bool> done{false};
};

MetricsService::MetricsService(const MetricsServiceOptions& options, MetricsRegistry* registry)
    : options_(options), registry_(registry) {}

StatusOr<std::unique_ptr<MetricsService>> MetricsService::Start(
    const MetricsServiceOptions& options, MetricsRegistry* registry) {
  CHECK(registry != nullptr);
  if (options.port > 65535) {
    return InvalidArgument("metrics: port must be <= 65535, got " + std::to_string(options.port));
  }
  if (options.interval.count() <= 0) {
    return InvalidArgument("metrics: interval must be > 0 ms, got " +
                           std::to_string(options.interval.count()));
  }
  std::unique_ptr<MetricsService> s(new MetricsService(options, registry));
  if (!options.log_path.empty()) {
    s->log_ = std::fopen(options.log_path.c_str(), "a");
    if (s->log_ == nullptr) {
      return Internal("metrics: cannot open the metrics log " + options.log_path + ": " +
                      std::strerror(errno));
    }
  }
  if (options.port >= 0) {
    s->http_ = std::make_unique<Http>();
    httplib::Server& svr = s->http_->server;
    svr.new_task_queue = [] { return new httplib::ThreadPool(1); };
    // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which
    // would let two ranks bind the same port without an error.
    svr.set_socket_options([](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<void*>(&yes), sizeof(yes));
    });
    svr.Get("/metrics", [registry](const httplib::Request&, httplib::Response& res) {
      res.set_content(registry->RenderPrometheus(), "text/plain; version=0.0.4; charset=utf-8");
    });
    int port = options.port;
    if (port == 0) {
      port = svr.bind_to_any_port(options.host);
    } else if (!svr.bind_to_port(options.host, port)) {
      port = -1;
    }
    if (port <= 0) {
      if (s->log_ != nullptr) std::fclose(s->log_);
      s->log_ = nullptr;
      return Unavailable("metrics: cannot bind " + options.host + ":" +
                         std::to_string(options.port) + " (in use? set metrics.port)");
    }
    s->port_ = port;
    Http* h = s->http_.get();
    h->listener = std::thread([h] {
      if (!h->server.listen_after_bind()) LOG(ERROR) << "metrics endpoint: listen loop failed";
      h->done.store(true);
    });
  }
  if (s->log_ != nullptr) s->log_thread_ = std::thread([p = s.get()] { p->LogLoop(); });
  return s;
}

void MetricsService::WriteLine() {
  const std::string line = registry_->JsonLine(options_.log_fields) + "\n";
  if (std::fwrite(line.data(), 1, line.size(), log_) != line.size() || std::fflush(log_) != 0) {
    LOG_EVERY_N(WARNING, 100) << "metrics log " << options_.log_path
                              << ": write failed: " << std::strerror(errno);
  }
}

void MetricsService::LogLoop() {
  MutexLock l(&mu_);
  auto next = std::chrono::steady_clock::now() + options_.interval;
  while (!stop_) {
    // Sleep until `next` or Stop().
    while (!stop_) {
      if (cv_.WaitWithDeadline(&mu_, next)) break;  // deadline passed
    }
    if (stop_) break;
    next += options_.interval;
    l.Unlock();
    WriteLine();
    l.Lock();
  }
}

void MetricsService::Stop() {
  {
    MutexLock l(&mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.SignalAll();
  if (log_thread_.joinable()) log_thread_.join();
  if (log_ != nullptr) {
    WriteLine();  // the final state
    std::fclose(log_);
    log_ = nullptr;
  }
  if (http_ != nullptr && http_->listener.joinable()) {
    // httplib's stop() does nothing until the listen loop runs: wait for it
    // (or for the loop to have ended) and stop it once.
    bool stopped = false;
    while (!http_->done.load()) {
      if (!stopped && http_->server.is_running()) {
        http_->server.stop();
        stopped = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    http_->listener.join();
  }
}

MetricsService::~MetricsService() { Stop(); }

}  // namespace freshet
