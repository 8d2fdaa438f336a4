#include "worker/early_stopping.h"

#include <cmath>

namespace freshet {

StatusOr<EarlyStopping> EarlyStopping::Create(const std::string& metric, int patience,
                                              double min_delta) {
  if (metric != "auc" && metric != "logloss" && metric != "gauc") {
    return InvalidArgument("early_stopping.metric: '" + metric + "' is not auc, logloss or gauc");
  }
  if (patience < 0) return InvalidArgument("early_stopping.patience: must be >= 0");
  if (!(min_delta >= 0)) return InvalidArgument("early_stopping.min_delta: must be >= 0");
  return EarlyStopping(metric, metric != "logloss", patience, min_delta);
}

double EarlyStopping::ValueOf(const EvalResult& r) const {
  if (metric_ == "logloss") return r.logloss;
  if (metric_ == "gauc") return r.gauc;
  return r.auc;
}

bool EarlyStopping::Add(double value) {
  values_.push_back(value);
  bool improved = false;
  if (!std::isnan(value)) {
    if (best_pass_ == 0) {
      improved = true;
    } else {
      improved = higher_ ? value > best_ + min_delta_ : value < best_ - min_delta_;
    }
  }
  if (improved) {
    best_pass_ = passes();
    best_ = value;
    since_best_ = 0;
  } else {
    ++since_best_;
  }
  return improved;
}

}  // namespace freshet
