#include "serving/model_watcher.h"

#include <glog/logging.h>
#include <malloc.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <sstream>

#include "common/time_util.h"
#include "exporter/export_dir.h"
#include "exporter/model_loader.h"

namespace freshet {
namespace {

using SteadyClock = std::chrono::steady_clock;

// What makes two manifests the same model.
std::string ManifestKey(const proto::ExportManifest& m) {
  std::ostringstream key;
  key << m.version() << "/" << m.full().name() << "/" << m.deltas_size() << "/"
      << m.created_unix_ms();
  if (m.deltas_size() > 0) key << "/" << m.deltas(m.deltas_size() - 1).name();
  return key.str();
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

StatusOr<std::unique_ptr<ModelWatcher>> ModelWatcher::Start(Options options) {
  if (options.export_dir.empty()) return InvalidArgument("model watcher: export_dir is empty");
  if (options.poll_ms <= 0) {
    return InvalidArgument("model watcher: poll_ms must be > 0, got " +
                           std::to_string(options.poll_ms));
  }
  if (options.retry_failed_ms < 0) {
    return InvalidArgument("model watcher: retry_failed_ms must be >= 0");
  }
  if (!(options.min_reload_interval_s >= 0)) {
    return InvalidArgument("model watcher: min_reload_interval_s must be >= 0, got " +
                           std::to_string(options.min_reload_interval_s));
  }
  if (!(options.reload_interval_after_s >= 0)) {
    return InvalidArgument("model watcher: reload_interval_after_s must be >= 0, got " +
                           std::to_string(options.reload_interval_after_s));
  }
  if (std::isnan(options.freeze_after_s)) {
    return InvalidArgument("model watcher: freeze_after_s is NaN");
  }
  std::unique_ptr<ModelWatcher> w(new ModelWatcher(std::move(options)));
  if (w->options_.notify) {
    w->wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    w->inotify_fd_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (w->wake_fd_ < 0 || w->inotify_fd_ < 0) {
      PLOG(WARNING) << "model watcher: no inotify, polling " << w->options_.export_dir << " every "
                    << w->options_.poll_ms << " ms";
    }
  }
  w->thread_ = std::thread([p = w.get()] { p->Loop(); });
  return w;
}

ModelWatcher::~ModelWatcher() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
  }
  if (thread_.joinable()) thread_.join();
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

bool ModelWatcher::WaitForChange(std::chrono::steady_clock::time_point until) {
  if (inotify_fd_ < 0 || wake_fd_ < 0) return false;
  if (watch_ < 0) {
    // The directory may not exist yet (the exporter creates it): try again
    // at every poll until it does.
    watch_ = ::inotify_add_watch(inotify_fd_, options_.export_dir.c_str(),
                                 IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF);
    if (watch_ < 0) return false;
  }
  alignas(struct inotify_event) char buf[16384];
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now());
    if (left.count() <= 0) return true;
    struct pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    const int r = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left.count() + 1, 1 << 30)));
    if (r < 0 && errno != EINTR) return false;
    if (fds[1].revents != 0) return true;  // stopping
    if (r <= 0 || fds[0].revents == 0) continue;
    bool latest = false;
    ssize_t n;
    while ((n = ::read(inotify_fd_, buf, sizeof(buf))) > 0) {
      for (char* p = buf; p < buf + n;) {
        auto* ev = reinterpret_cast<struct inotify_event*>(p);
        if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
          watch_ = -1;  // the directory went away: watch it again when it is back
          latest = true;
        } else if (ev->len > 0 && std::strcmp(ev->name, "LATEST") == 0) {
          latest = true;
        }
        p += sizeof(struct inotify_event) + ev->len;
      }
    }
    if (latest) {
      MutexLock lock(&mu_);
      ++stats_.notified_polls;
      return true;
    }
  }
}

std::shared_ptr<const ServingModel> ModelWatcher::Current() const {
  MutexLock lock(&mu_);
  return current_;
}

ModelWatcher::Stats ModelWatcher::stats() const {
  MutexLock lock(&mu_);
  return stats_;
}

bool ModelWatcher::WaitForVersion(uint64_t version, std::chrono::milliseconds timeout) const {
  MutexLock lock(&mu_);
  auto ready = [&]()
                   REQUIRES(mu_) { return current_ != nullptr && current_->version() >= version; };
  const auto deadline = SteadyClock::now() + timeout;
  while (!ready()) {
    if (cv_.WaitWithDeadline(&mu_, deadline)) break;
  }
  return ready();
}

bool ModelWatcher::WaitForPolls(int64_t n, std::chrono::milliseconds timeout) const {
  MutexLock lock(&mu_);
  const int64_t target = stats_.polls + n;
  const auto deadline = SteadyClock::now() + timeout;
  while (!(stats_.polls >= target || stop_)) {
    if (cv_.WaitWithDeadline(&mu_, deadline)) break;
  }
  return stats_.polls >= target;
}

void ModelWatcher::Loop() {
  const auto period = std::chrono::milliseconds(options_.poll_ms);
  MutexLock lock(&mu_);
  while (!stop_) {
    lock.Unlock();
    const auto next = SteadyClock::now() + period;
    PollOnce();
    lock.Lock();
    ++stats_.polls;
    cv_.SignalAll();
    if (stop_) break;
    lock.Unlock();
    // Wake at once when LATEST is renamed into place (inotify), else at
    // the next poll.
    const bool waited = WaitForChange(next);
    lock.Lock();
    if (!waited) {
      while (!stop_) {
        if (cv_.WaitWithDeadline(&mu_, next)) break;  // the next poll is due
      }
    }
  }
}

void ModelWatcher::Fail(const std::string& key, const Status& st) {
  failed_key_ = key;
  retry_at_ = SteadyClock::now() + std::chrono::milliseconds(options_.retry_failed_ms);
  LOG(WARNING) << "rejected export in " << options_.export_dir << " (still serving "
               << (current_key_.empty() ? std::string("no model") : "the previous model")
               << "): " << st;
  MutexLock lock(&mu_);
  ++stats_.load_failures;
  stats_.last_error = st.ToString();
}

void ModelWatcher::PollOnce() {
  const std::string& dir = options_.export_dir;
  if (loaded_once_) {
    const auto now = SteadyClock::now();
    const double since_first = std::chrono::duration<double>(now - first_load_at_).count();
    const double since_last = std::chrono::duration<double>(now - last_load_at_).count();
    const bool frozen = options_.freeze_after_s >= 0 && since_first >= options_.freeze_after_s;
    const bool spaced = since_first >= options_.reload_interval_after_s &&
                        since_last < options_.min_reload_interval_s;
    if (frozen || spaced) {
      MutexLock lock(&mu_);
      ++stats_.skipped_by_policy;
      if (frozen && !stats_.frozen) {
        stats_.frozen = true;
        LOG(INFO) << "frozen: " << options_.freeze_after_s
                  << " s after the first load, no more models are loaded (serving version "
                  << (current_ != nullptr ? current_->version() : 0) << ")";
      }
      return;
    }
  }
  StatusOr<proto::ExportManifest> manifest = ReadLatestManifest(dir);
  std::string key;
  if (manifest.ok()) {
    key = ManifestKey(*manifest);
    if (key == current_key_) return;  // already serving it
  } else {
    if (!FileExists(dir + "/LATEST")) {
      if (!logged_waiting_) {
        LOG(INFO) << "waiting for an export: " << dir << "/LATEST does not exist yet";
        logged_waiting_ = true;
      }
      return;
    }
    key = "manifest error: " + manifest.status().ToString();
  }
  if (key == failed_key_ && SteadyClock::now() < retry_at_) return;
  if (!manifest.ok()) {
    Fail(key, manifest.status());
    return;
  }

  const auto t0 = SteadyClock::now();
  std::shared_ptr<const ServingModel> previous = Current();
  std::shared_ptr<const LoadedExport> prev_data =
      previous != nullptr ? previous->scorer->shared_model() : nullptr;
  StatusOr<std::shared_ptr<const LoadedExport>> loaded =
      LoadLatestExportIncremental(dir, prev_data);
  if (!loaded.ok()) {
    Fail(key, loaded.status());
    return;
  }
  auto scorer = Scorer::Create(*loaded, options_.scorer);
  if (!scorer.ok()) {
    Fail(key,
         scorer.status().WithContext(dir + "/" + ManifestFileName((*loaded)->manifest.version())));
    return;
  }
  auto model = std::make_shared<ServingModel>();
  model->scorer = std::move(scorer).value();
  model->load_ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
  model->loaded_unix_ms = NowUnixMs();
  const proto::ExportManifest& m = model->manifest();
  model->incremental = (*loaded)->incremental;

  std::ostringstream rows;
  for (const auto& t : m.job().tables().tables()) {
    const auto it = model->data().tables.find(t.name());
    rows << (rows.tellp() > 0 ? ", " : "") << t.name() << " "
         << (it == model->data().tables.end() ? 0 : it->second.size());
  }
  LOG(INFO) << "serving model version " << m.version() << " (watermark " << m.watermark() << ", "
            << m.full().name() << " + " << m.deltas_size() << " deltas"
            << (previous != nullptr ? ", replaces version " + std::to_string(previous->version())
                                    : std::string())
            << "): rows " << rows.str() << "; loaded in " << model->load_ms << " ms"
            << (model->incremental ? " (incremental)" : " (full)")
            // Machine-readable, one per version (tools/freshness_bench.sh
            // computes freshness from these, so no version is missed).
            << " [version=" << m.version() << " loaded_unix_ms=" << model->loaded_unix_ms
            << " ingest_wall_ms=" << m.ingest_wall_ms() << " label_wall_ms=" << m.label_wall_ms()
            << " load_ms=" << model->load_ms
            << " incremental=" << (model->incremental ? "true" : "false") << "]";

  if (previous != nullptr && m.version() < previous->version()) {
    LOG(WARNING) << dir << "/LATEST went back from version " << previous->version() << " to "
                 << m.version() << " (a rollback?); serving version " << m.version();
  }
  current_key_ = ManifestKey(m);
  failed_key_.clear();
  last_load_at_ = SteadyClock::now();
  if (!loaded_once_) first_load_at_ = last_load_at_;
  loaded_once_ = true;
  const bool model_incremental = model->incremental;
  {
    MutexLock lock(&mu_);
    current_ = std::move(model);
    ++stats_.loads;
  }
  cv_.SignalAll();
  // `previous` may be the last holder of the old model: it is freed here, on
  // the polling thread, unless a request still holds it. After a full load
  // (a new chain: the old model and the file buffers are gone), hand the
  // freed heap back to the system, so the resident size follows the model.
  const bool full_load = !model_incremental;
  previous.reset();
  prev_data.reset();
  if (full_load) malloc_trim(0);
}

}  // namespace freshet
