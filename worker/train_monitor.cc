#include "worker/train_monitor.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "worker/trainer.h"

namespace freshet {

TrainMetrics::TrainMetrics(MetricsRegistry* r)
    : steps_(r->AddCounter("train_steps", "Training steps (all workers step together).")),
      examples_(r->AddCounter("train_examples", "Examples this worker trained on.")),
      global_examples_(r->AddCounter("train_global_examples", "Examples all workers trained on.")),
      loss_(r->AddGauge("train_loss", "Mean log loss of all workers' examples in the last ~1 s.")),
      auc_(r->AddGauge("train_auc",
                       "Progressive AUC of this worker's last 50000 examples (pre-update).")),
      step_time_(r->AddHistogram("train_step", "Wall time of one training step.")),
      read_us_(r->AddCounter("train_read_us", "Time reading and encoding batches, us.")),
      pull_wait_us_(r->AddCounter("train_pull_wait_us", "Time waiting for pulled rows, us.")),
      compute_us_(r->AddCounter("train_compute_us",
                                "Time in forward, backward and dense "
                                "updates, us.")),
      push_us_(r->AddCounter("train_push_us", "Time issuing pushes and waiting for acks, us.")),
      allreduce_us_(r->AddCounter("train_allreduce_us", "Time in the dense all-reduce, us.")),
      last_step_(Clock::now()),
      last_publish_(last_step_) {}

void TrainMetrics::AfterStep(const TrainStats& s, int64_t local_examples, double global_examples,
                             double global_loss_sum, const std::function<double()>& window_auc) {
  const auto now = Clock::now();
  step_time_->Record(std::chrono::duration<double>(now - last_step_).count());
  last_step_ = now;
  steps_->Add();
  examples_->Add(local_examples);
  global_examples_->Add(static_cast<int64_t>(global_examples));
  auto advance = [](Counter* c, double seconds, int64_t* done) {
    const int64_t us = static_cast<int64_t>(seconds * 1e6);
    if (us > *done) c->Add(us - *done);
    *done = std::max(*done, us);
  };
  advance(read_us_, s.read_s, &done_read_);
  advance(pull_wait_us_, s.pull_s, &done_pull_);
  advance(compute_us_, s.compute_s, &done_compute_);
  advance(push_us_, s.push_s, &done_push_);
  advance(allreduce_us_, s.allreduce_s, &done_allreduce_);
  loss_sum_ += global_loss_sum;
  loss_n_ += global_examples;
  if (now - last_publish_ >= std::chrono::seconds(1)) {
    if (loss_n_ > 0) loss_->Set(loss_sum_ / loss_n_);
    const double auc = window_auc();
    if (std::isfinite(auc)) auc_->Set(auc);
    loss_sum_ = loss_n_ = 0;
    last_publish_ = now;
  }
}

namespace {
bool LiveByDefault(std::FILE* out) {
  // Under mpirun every rank's stdout is a pty even when mpirun's is a file,
  // so the launcher decides (launch/mpirun.sh sets it from its own stdout);
  // a rank launched some other way prints plain lines.
  const char* env = std::getenv("FRESHET_LIVE_STATUS");
  if (env != nullptr && *env != '\0') return std::string(env) == "1";
  for (const char* launcher : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_PROCID"}) {
    if (std::getenv(launcher) != nullptr) return false;
  }
  return isatty(fileno(out)) == 1;
}
}  // namespace

StatusLine::StatusLine(std::FILE* out) : StatusLine(out, LiveByDefault(out)) {}

StatusLine::StatusLine(std::FILE* out, bool live) : out_(out), live_(live) {}

double StatusLine::Interval(double configured_s) const {
  return live_ ? std::min(configured_s, 0.5) : configured_s;
}

std::string StatusLine::FormatDuration(double seconds) {
  const int64_t s = static_cast<int64_t>(std::llround(std::max(0.0, seconds)));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm%02llds", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else if (s >= 60) {
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%llds", static_cast<long long>(s));
  }
  return buf;
}

void StatusLine::Show(const std::string& text, double fraction, double elapsed_s) {
  std::string line = text;
  if (fraction > 0 && fraction <= 1) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "  %3.0f%% ETA %s", 100 * fraction,
                  FormatDuration(elapsed_s * (1 - fraction) / fraction).c_str());
    line += buf;
  }
  if (live_) {
    // Rewriting in place only works while the line does not wrap.
    struct winsize ws {};
    if (ioctl(fileno(out_), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 && line.size() >= ws.ws_col) {
      line.resize(ws.ws_col - 1);
    }
    std::fprintf(out_, "\r\033[K%s", line.c_str());
    open_ = true;
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
}

void StatusLine::Finish() {
  if (!open_) return;
  std::fputc('\n', out_);
  std::fflush(out_);
  open_ = false;
}

}  // namespace freshet
