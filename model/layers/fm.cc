#include "model/layers/fm.h"

#include <algorithm>
#include <cstddef>

namespace freshet {
namespace layers {

void FmLayer::Forward(const float* x, int stride, int n, float* out) {
  const int k = k_;
  sum_.resize(static_cast<size_t>(k) * n);
  for (int i = 0; i < n; ++i) {
    const float* col = x + static_cast<size_t>(i) * stride;
    float* sum = sum_.data() + static_cast<size_t>(i) * k;
    std::fill(sum, sum + k, 0.f);
    float sq = 0;
    for (int s = 0; s < num_fields_; ++s) {
      const float* e = col + static_cast<size_t>(s) * k;
      for (int j = 0; j < k; ++j) {
        sum[j] += e[j];
        sq += e[j] * e[j];
      }
    }
    float sum2 = 0;
    for (int j = 0; j < k; ++j) sum2 += sum[j] * sum[j];
    out[i] = 0.5f * (sum2 - sq);
  }
}

void FmLayer::Backward(const float* x, int stride, int n, const float* dout, float* dx) const {
  const int k = k_;
  for (int i = 0; i < n; ++i) {
    const float* col = x + static_cast<size_t>(i) * stride;
    float* dcol = dx + static_cast<size_t>(i) * stride;
    const float* sum = sum_.data() + static_cast<size_t>(i) * k;
    const float g = dout[i];
    for (int s = 0; s < num_fields_; ++s) {
      const float* e = col + static_cast<size_t>(s) * k;
      float* de = dcol + static_cast<size_t>(s) * k;
      for (int j = 0; j < k; ++j) de[j] += g * (sum[j] - e[j]);
    }
  }
}

void FfmLayer::Forward(const float* p, int n, float* out) const {
  const int F = num_fields_, k = k_;
  const size_t w = static_cast<size_t>(width());
  for (int i = 0; i < n; ++i) {
    const float* col = p + static_cast<size_t>(i) * w;
    float total = 0;
    for (int s = 0; s < F; ++s) {
      for (int t = s + 1; t < F; ++t) {
        const float* a = col + (static_cast<size_t>(s) * F + t) * k;
        const float* b = col + (static_cast<size_t>(t) * F + s) * k;
        float dot = 0;
        for (int j = 0; j < k; ++j) dot += a[j] * b[j];
        total += dot;
      }
    }
    out[i] = total;
  }
}

void FfmLayer::Backward(const float* p, int n, const float* dout, float* dp) const {
  const int F = num_fields_, k = k_;
  const size_t w = static_cast<size_t>(width());
  for (int i = 0; i < n; ++i) {
    const float* col = p + static_cast<size_t>(i) * w;
    float* dcol = dp + static_cast<size_t>(i) * w;
    const float g = dout[i];
    for (int s = 0; s < F; ++s) {
      for (int f = 0; f < F; ++f) {
        float* d = dcol + (static_cast<size_t>(s) * F + f) * k;
        if (f == s) {
          std::fill(d, d + k, 0.f);
          continue;
        }
        const float* other = col + (static_cast<size_t>(f) * F + s) * k;
        for (int j = 0; j < k; ++j) d[j] = g * other[j];
      }
    }
  }
}

}  // namespace layers
}  // namespace freshet
