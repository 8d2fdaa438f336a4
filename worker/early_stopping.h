// Early stopping bookkeeping: per-pass validation metrics, the best pass,
// and when to stop (JobConfig::early_stopping, docs/ARCHITECTURE.md
// "Validation").
//
// After pass p (1-based) the caller adds the pass's validation value of the
// chosen metric. A pass improves when its value beats the best so far by
// more than min_delta (higher is better for auc and gauc, lower for
// logloss); the first pass with a defined value always improves. A NaN
// value (AUC of a one-class validation set) never improves. Stop() is true
// once `patience` passes in a row did not improve. Without early stopping
// (patience 0) it never stops and the best pass is still tracked.
//
// Thread safety: not thread-safe; one training thread.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "worker/metrics.h"

namespace freshet {

class EarlyStopping {
 public:
  // `metric`: "auc", "logloss" or "gauc" (InvalidArgument otherwise, naming
  // early_stopping.metric). `patience` 0: never stop.
  static StatusOr<EarlyStopping> Create(const std::string& metric, int patience, double min_delta);

  // The value of this tracker's metric in `r`.
  double ValueOf(const EvalResult& r) const;
  // Records the next pass's value; returns whether it improved (it is then
  // the best pass).
  bool Add(double value);
  // Patience is exhausted: training should stop now.
  bool Stop() const { return patience_ > 0 && since_best_ >= patience_; }
  int passes() const { return static_cast<int>(values_.size()); }
  // The best pass, 1-based; 0 before any pass with a defined value.
  int best_pass() const { return best_pass_; }
  double best_value() const { return best_; }
  const std::vector<double>& values() const { return values_; }
  const std::string& metric() const { return metric_; }
  bool higher_is_better() const { return higher_; }

 private:
  EarlyStopping(std::string metric, bool higher, int patience, double min_delta)
      : metric_(std::move(metric)), higher_(higher), patience_(patience), min_delta_(min_delta) {}
  std::string metric_;
  bool higher_;
  int patience_;
  double min_delta_;
  std::vector<double> values_;
  int best_pass_ = 0;
  double best_ = 0;
  int since_best_ = 0;
};

}  // namespace freshet
