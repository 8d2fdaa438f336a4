// The GEMM of the CPU models' dense layers: column-major single precision,
//   C (m x n) = alpha * op(A) * op(B) + beta * C
// (op(X) = X^T when trans_x; op(A) m x k, op(B) k x n; BLAS semantics: with
// beta == 0, C is only written). Runs cblas_sgemm when the build found
// OpenBLAS, else Eigen's kernels, and reports every call to the thread's
// DenseProfile (model/dense_profile.h) when one is installed.
//
// Thread safety: reentrant (OpenBLAS's own thread count is process-wide).
#pragma once

namespace freshet {
namespace internal {

void Gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc);

// One BLAS thread per call unless OPENBLAS_NUM_THREADS says otherwise: each
// worker thread runs its own model, and several ranks share a machine. The
// first call sets it (process-wide); the CPU models' constructors call it.
void LimitBlasThreads();

}  // namespace internal
}  // namespace freshet
