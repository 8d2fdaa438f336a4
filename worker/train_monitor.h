// What a training loop shows while it runs:
//
//   TrainMetrics: the trainer's counters in a MetricsRegistry (steps,
//     examples, loss, progressive AUC, step time and its split into read /
//     pull wait / compute / push / all-reduce), updated once per step.
//   StatusLine: worker 0's console status. On a terminal it is one live
//     line rewritten in place ("\r", erased to the end) with the fraction
//     done and an ETA; otherwise (logs, CI) plain lines, one per interval.
//
// Thread safety: both are driven by the training thread only; the
// registry's metrics they update may be read concurrently (see
// common/metrics_registry.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

#include "common/metrics_registry.h"

namespace freshet {

struct TrainStats;

class TrainMetrics {
 public:
  // Registers the metrics in `registry` (not owned; must outlive this).
  explicit TrainMetrics(MetricsRegistry* registry);

  // After every step. `stats`: the loop's cumulative figures (time split);
  // `local_examples`: this worker's examples in the step; `global_examples`
  // and `global_loss_sum`: the step's totals over all workers (from the
  // all-reduce); `window_auc` computes the progressive AUC of this worker's
  // recent examples (costly: called at most once per second).
  void AfterStep(const TrainStats& stats, int64_t local_examples, double global_examples,
                 double global_loss_sum, const std::function<double()>& window_auc);

 private:
  using Clock = std::chrono::steady_clock;
  Counter* steps_;
  Counter* examples_;
  Counter* global_examples_;
  Gauge* loss_;
  Gauge* auc_;
  LatencyHistogram* step_time_;
  Counter* read_us_;
  Counter* pull_wait_us_;
  Counter* compute_us_;
  Counter* push_us_;
  Counter* allreduce_us_;
  Clock::time_point last_step_, last_publish_;
  double loss_sum_ = 0, loss_n_ = 0;  // since last_publish_
  // Cumulative time split already added to the counters, microseconds.
  int64_t done_read_ = 0, done_pull_ = 0, done_compute_ = 0, done_push_ = 0, done_allreduce_ = 0;
};

class StatusLine {
 public:
  // Live when the environment variable FRESHET_LIVE_STATUS is "1", plain
  // when it is set to anything else; unset: plain under a launcher (mpirun,
  // srun: ranks see a pty even when the job's output goes to a file), else
  // live when `out` is a terminal.
  explicit StatusLine(std::FILE* out);
  StatusLine(std::FILE* out, bool live);

  bool live() const { return live_; }
  // Seconds between updates: a live line refreshes at least twice a second.
  double Interval(double configured_s) const;
  // Shows `text`, followed by the fraction done and the ETA when `fraction`
  // is in (0, 1] ("  37% ETA 1m05s"); fraction <= 0: unknown, not shown.
  // `elapsed_s`: seconds since the work started.
  void Show(const std::string& text, double fraction, double elapsed_s);
  // Ends a live line with a newline (no-op otherwise, or when nothing is
  // shown). Call before other output.
  void Finish();

  // "1h02m03s", "4m05s", "7s".
  static std::string FormatDuration(double seconds);

 private:
  std::FILE* out_;
  bool live_;
  bool open_ = false;  // a live line is on screen without its newline
};

}  // namespace freshet
