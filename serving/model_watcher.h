// ModelWatcher: keeps the newest export of a directory loaded and swaps it in
// without blocking readers.
//
// A background thread watches the export directory (exporter/export_dir.h):
// with inotify (Options::notify) it wakes as soon as the exporter renames a
// new LATEST into place, and it also polls every poll_ms (the fallback when
// inotify is missing, e.g. some network file systems, or the directory does
// not exist yet). Each time it reads LATEST and its manifest, and when the manifest differs
// from the serving model's (version, full snapshot, number of deltas,
// creation time), loads it with LoadLatestExportIncremental (only the new
// deltas when the chain continues the serving one; a full load otherwise),
// builds a Scorer and publishes the result as the new ServingModel.
//
// Swap: Current() returns a shared_ptr copy taken under a mutex; a reader
// keeps the model it got alive for as long as it holds it, so a request
// always finishes on the model it started with, and the swap itself is one
// pointer assignment. The old model is freed by its last holder.
//
// Failures: a load that fails (missing, truncated or corrupt file, checksum
// or size mismatch, a snapshot that does not fit its job) is rejected with a
// LOG(WARNING) naming the file and the problem, counted in load_failures,
// and the previous model keeps serving. The same manifest is not retried
// before retry_failed_ms have passed (so a bad export does not spin the
// loader), but a newer manifest is tried at the next poll. A directory
// without LATEST is not a failure: the watcher waits for the first export
// (and keeps serving what it has if LATEST disappears later). A LATEST that
// moves back to an older version is loaded like any other (a rollback),
// with a warning.
//
// Cost: an incremental load applies only the new deltas, sharing every
// other part of the tables with the serving version (ServedTable,
// LoadLatestExportIncremental): its time and extra memory are linear in
// the rows the deltas change, not in the model. Readers never wait for it.
// A new chain (a full snapshot) is loaded whole beside the serving model.
//
// Reload policy (for experiments that compare serving cadences, e.g.
// launch/realtime_demo.sh): freeze_after_s >= 0 stops loading new models
// that many seconds (wall clock) after the first load: the first model keeps
// serving for good. min_reload_interval_s > 0 loads a new model at most that
// often (the first load is immediate; later exports in between are skipped,
// and the newest one is loaded once the interval has passed), from
// reload_interval_after_s after the first load on (a warm-up that loads
// every export, as without a policy). Skipped polls
// count in Stats::skipped_by_policy.
//
// Thread safety: all public methods are thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "common/mutex.h"
#include "common/status.h"
#include "serving/scorer.h"

namespace freshet {

// One loaded model as the serving tier sees it. Immutable once published.
struct ServingModel {
  std::shared_ptr<const Scorer> scorer;  // never null
  int64_t loaded_unix_ms = 0;            // wall clock when it was swapped in
  double load_ms = 0;                    // time to load and build it
  bool incremental = false;              // only new deltas were read

  const LoadedExport& data() const { return scorer->model(); }
  const proto::ExportManifest& manifest() const { return scorer->model().manifest; }
  uint64_t version() const { return scorer->version(); }
};

class ModelWatcher {
 public:
  struct Options {
    std::string export_dir;
    int poll_ms = 100;           // > 0
    bool notify = true;          // also wake on inotify events for LATEST
    int retry_failed_ms = 5000;  // >= 0
    Scorer::Options scorer;
    double freeze_after_s = -1;        // < 0: never freeze
    double min_reload_interval_s = 0;  // >= 0; 0: load every new export
    // min_reload_interval_s applies from this many seconds after the first
    // load on (before that every export is loaded); >= 0.
    double reload_interval_after_s = 0;
  };

  struct Stats {
    int64_t loads = 0;              // models swapped in
    int64_t load_failures = 0;      // rejected loads
    int64_t polls = 0;              // completed polls
    std::string last_error;         // of the latest rejected load; empty if none
    int64_t skipped_by_policy = 0;  // polls that did not look because of the policy
    bool frozen = false;            // freeze_after_s has passed: no more loads
    int64_t notified_polls = 0;     // polls woken by an inotify event (not the timer)
  };

  // Starts the polling thread (first poll at once) and returns without
  // waiting for a model. InvalidArgument for an empty export_dir,
  // poll_ms <= 0, retry_failed_ms < 0, min_reload_interval_s or
  // reload_interval_after_s < 0 (or NaN).
  static StatusOr<std::unique_ptr<ModelWatcher>> Start(Options options);
  // Stops and joins the polling thread (an in-progress load finishes first).
  ~ModelWatcher();
  ModelWatcher(const ModelWatcher&) = delete;
  ModelWatcher& operator=(const ModelWatcher&) = delete;

  // The serving model, or nullptr before the first successful load.
  std::shared_ptr<const ServingModel> Current() const EXCLUDES(mu_);
  Stats stats() const EXCLUDES(mu_);
  const std::string& export_dir() const { return options_.export_dir; }

  // Blocks until a model of version >= `version` is serving (true) or
  // `timeout` passes (false).
  bool WaitForVersion(uint64_t version, std::chrono::milliseconds timeout) const EXCLUDES(mu_);
  // Blocks until `n` more polls have completed after the call (true) or
  // `timeout` passes (false). For tests.
  bool WaitForPolls(int64_t n, std::chrono::milliseconds timeout) const EXCLUDES(mu_);

 private:
  explicit ModelWatcher(Options options) : options_(std::move(options)) {}
  void Loop() EXCLUDES(mu_);
  void PollOnce() EXCLUDES(mu_);
  void Fail(const std::string& key, const Status& st) EXCLUDES(mu_);
  // Waits until `until` or an inotify event for LATEST (or stop). Returns
  // false without waiting if inotify is not available for the directory.
  bool WaitForChange(std::chrono::steady_clock::time_point until) EXCLUDES(mu_);

  const Options options_;
  std::thread thread_;

  mutable Mutex mu_;
  mutable CondVar cv_;  // signalled on swap, poll and stop
  bool stop_ GUARDED_BY(mu_) = false;
  std::shared_ptr<const ServingModel> current_ GUARDED_BY(mu_);
  Stats stats_ GUARDED_BY(mu_);

  // Set in Start(); -1: none.
  int inotify_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: the destructor wakes the polling thread
  // Polling thread only.
  int watch_ = -1;           // inotify watch of export_dir
  std::string current_key_;  // identity of the serving manifest
  std::string failed_key_;   // identity of the last rejected manifest
  std::chrono::steady_clock::time_point retry_at_;
  std::chrono::steady_clock::time_point first_load_at_, last_load_at_;
  bool loaded_once_ = false;
  bool logged_waiting_ = false;
};

}  // namespace freshet
