// Factorization machines over pooled per-example vectors (no parameters of
// their own: the vectors are embedding rows).
//
// FmLayer (Rendle 2010), second order over F fields of k floats:
//   out_i = sum_{s<t} <e_{i,s}, e_{i,t}>
//         = 0.5 * sum_j ((sum_s e_{i,s,j})^2 - sum_s e_{i,s,j}^2)
// where e_{i,s} = x[i * stride + s * k .. + k) (the first F * k floats of
// column i of a column-major matrix with leading dimension `stride`).
//
// FfmLayer (Juan et al. 2016), field-aware, over F fields with one k-vector
// per (field, other field):
//   out_i = sum_{s<t} <p_{i,s,t}, p_{i,t,s}>
// where p_{i,s,f} = p[i * F * F * k + (s * F + f) * k .. + k) is the vector
// that field s shows field f (for a slot with several keys: their pooled
// vectors). p_{i,s,s} is not used.
//
// Conventions: model/layers/mlp.h. Thread safety: not thread-safe.
#pragma once

#include <vector>

namespace freshet {
namespace layers {

class FmLayer {
 public:
  // REQUIRES: num_fields >= 0, k > 0.
  FmLayer(int num_fields, int k) : num_fields_(num_fields), k_(k) {}

  // Writes out[0..n). REQUIRES: stride >= num_fields * k.
  void Forward(const float* x, int stride, int n, float* out);
  // Adds dout_i * dout_i/de_{i,s} to dx (same layout and stride as x).
  void Backward(const float* x, int stride, int n, const float* dout, float* dx) const;

 private:
  int num_fields_, k_;
  std::vector<float> sum_;  // k x n: sum_s e_{i,s}
};

class FfmLayer {
 public:
  // REQUIRES: num_fields >= 0, k > 0.
  FfmLayer(int num_fields, int k) : num_fields_(num_fields), k_(k) {}

  int width() const { return num_fields_ * num_fields_ * k_; }  // floats per example
  // Writes out[0..n).
  void Forward(const float* p, int n, float* out) const;
  // Writes dp (n * width() floats): dout_i * d out_i / d p_{i,s,f}
  // (0 for f == s).
  void Backward(const float* p, int n, const float* dout, float* dp) const;

 private:
  int num_fields_, k_;
};

}  // namespace layers
}  // namespace freshet
