// DenseProfile: the GEMMs the CPU models' dense layers run (model/layers/,
// DeepFmModel, LayeredModel), for benchmarks (tools/dense_bench.cc). While a
// profile is installed on a thread, every GEMM that thread's models run is
// counted (calls, FLOPs = 2 m n k, and with time_calls the thread's CPU time
// inside the GEMM) and, with keep_calls, recorded in call order (shape,
// transposes, leading dimensions, beta), so the same sequence can be replayed
// against the BLAS alone. With no profile installed a model's GEMM costs one
// extra thread-local load.
//
// Thread safety: a profile belongs to the thread that constructed it (it is
// installed there, and only that thread's GEMMs reach it); at most one per
// thread at a time.
#pragma once

#include <cstdint>
#include <vector>

namespace freshet {

// One column-major GEMM: C (m x n) = alpha * op(A) * op(B) + beta * C, op(A)
// m x k, op(B) k x n, op(X) = X^T when trans_x.
struct GemmCall {
  bool trans_a = false, trans_b = false;
  int m = 0, n = 0, k = 0;
  int lda = 0, ldb = 0, ldc = 0;
  float alpha = 1.f, beta = 0.f;
  double seconds = 0;  // thread CPU time inside the call (DenseProfile time_calls), else 0
  double flops() const { return 2.0 * m * n * k; }
};

class DenseProfile {
 public:
  struct Options {
    bool keep_calls = false;  // record each call (calls())
    bool time_calls = false;  // thread CPU time around each call (~2 clock reads)
  };
  // Installs the profile on the calling thread. CHECK-fails when one is
  // already installed there.
  explicit DenseProfile(Options options);
  // Uninstalls. REQUIRES: called on the constructing thread.
  ~DenseProfile();
  DenseProfile(const DenseProfile&) = delete;
  DenseProfile& operator=(const DenseProfile&) = delete;

  // Since construction or the last Reset():
  int64_t gemms() const { return gemms_; }
  double flops() const { return flops_; }
  double seconds() const { return seconds_; }                    // time_calls only, else 0
  const std::vector<GemmCall>& calls() const { return calls_; }  // keep_calls only
  void Reset();

  // For the models' GEMM wrapper (model/internal/gemm.h): the profile
  // installed on this thread, or null.
  static DenseProfile* Current();
  bool time_calls() const { return options_.time_calls; }
  void Add(const GemmCall& call);

 private:
  Options options_;
  int64_t gemms_ = 0;
  double flops_ = 0, seconds_ = 0;
  std::vector<GemmCall> calls_;
};

// The calling thread's CPU time in seconds (CLOCK_THREAD_CPUTIME_ID).
double ThreadCpuSeconds();

// Runs `call` on A, B, C the way the models' GEMMs run (cblas_sgemm when the
// build found OpenBLAS, else Eigen's own kernels), unprofiled: the reference
// of a replay. REQUIRES: a, b, c hold the matrices the call's shape and
// leading dimensions describe.
void BlasGemm(const GemmCall& call, const float* a, const float* b, float* c);
// "openblas" or "eigen": what BlasGemm and the models' GEMMs run on.
const char* GemmBackend();
// Threads one BLAS call may use (OpenBLAS's setting; 1 for Eigen's kernels,
// which this build runs without OpenMP).
int BlasThreads();

}  // namespace freshet
