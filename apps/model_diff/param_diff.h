// How freshet_model_diff measures the difference of two parameters.
//
// Thread safety: pure functions.
#pragma once

#include <cmath>
#include <cstddef>

namespace freshet {
namespace internal {

// |a - b|, or +infinity when that is not a finite number (either side NaN
// or infinite): a model with a NaN or infinite weight never matches another
// model, not even one with the same non-finite weight. (std::max(x, NaN)
// returns x, so a plain max over |a - b| drops NaNs.)
inline double ParamDiff(float a, float b) {
  const double d = std::fabs(static_cast<double>(a) - static_cast<double>(b));
  return std::isfinite(d) ? d : INFINITY;
}

// The largest ParamDiff over n pairs; 0 for n == 0.
inline double MaxParamDiff(const float* a, const float* b, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = ParamDiff(a[i], b[i]);
    if (d > worst) worst = d;
  }
  return worst;
}

}  // namespace internal
}  // namespace freshet
