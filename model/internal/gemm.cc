#include "model/internal/gemm.h"

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <mutex>

#include "model/dense_profile.h"

#ifdef FRESHET_HAVE_OPENBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int num_threads);
extern "C" int openblas_get_num_threads(void);
#else
#include <Eigen/Core>
#endif

namespace freshet {
namespace {

void RunGemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
             const float* b, int ldb, float beta, float* c, int ldc) {
  if (k <= 0) {  // C = beta * C
    for (int j = 0; j < n; ++j) {
      float* col = c + static_cast<size_t>(j) * ldc;
      if (beta == 0.f) {
        std::fill(col, col + m, 0.f);
      } else {
        for (int i = 0; i < m; ++i) col[i] *= beta;
      }
    }
    return;
  }
#ifdef FRESHET_HAVE_OPENBLAS
  cblas_sgemm(CblasColMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#else
  using Stride = Eigen::OuterStride<>;
  using ConstMat = Eigen::Map<const Eigen::MatrixXf, 0, Stride>;
  using Mat = Eigen::Map<Eigen::MatrixXf, 0, Stride>;
  const ConstMat A(a, trans_a ? k : m, trans_a ? m : k, Stride(lda));
  const ConstMat B(b, trans_b ? n : k, trans_b ? k : n, Stride(ldb));
  Mat C(c, m, n, Stride(ldc));
  if (beta == 0.f) {
    C.setZero();
  } else if (beta != 1.f) {
    C *= beta;
  }
  if (!trans_a && !trans_b) {
    C.noalias() += alpha * A * B;
  } else if (trans_a && !trans_b) {
    C.noalias() += alpha * A.transpose() * B;
  } else if (!trans_a) {
    C.noalias() += alpha * A * B.transpose();
  } else {
    C.noalias() += alpha * A.transpose() * B.transpose();
  }
#endif
}

}  // namespace

namespace internal {

void Gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  DenseProfile* profile = DenseProfile::Current();
  if (profile == nullptr) {
    RunGemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const bool timed = profile->time_calls();
  const double t0 = timed ? ThreadCpuSeconds() : 0;
  RunGemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  const double t = timed ? ThreadCpuSeconds() - t0 : 0;
  GemmCall call;
  call.trans_a = trans_a;
  call.trans_b = trans_b;
  call.m = m;
  call.n = n;
  call.k = std::max(k, 0);
  call.lda = lda;
  call.ldb = ldb;
  call.ldc = ldc;
  call.alpha = alpha;
  call.beta = beta;
  call.seconds = t;
  profile->Add(call);
}

void LimitBlasThreads() {
#ifdef FRESHET_HAVE_OPENBLAS
  static std::once_flag once;
  std::call_once(once, [] {
    if (std::getenv("OPENBLAS_NUM_THREADS") == nullptr) openblas_set_num_threads(1);
  });
#endif
}

}  // namespace internal

void BlasGemm(const GemmCall& g, const float* a, const float* b, float* c) {
  if (g.m <= 0 || g.n <= 0) return;
  RunGemm(g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha, a, g.lda, b, g.ldb, g.beta, c, g.ldc);
}

const char* GemmBackend() {
#ifdef FRESHET_HAVE_OPENBLAS
  return "openblas";
#else
  return "eigen";
#endif
}

int BlasThreads() {
#ifdef FRESHET_HAVE_OPENBLAS
  return openblas_get_num_threads();
#else
  return 1;
#endif
}

}  // namespace freshet
