#include "model/gpu/gpu_deepfm_model.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/cuda_util.h"
#include "model/gpu/internal/batch_plan.h"
#include "model/gpu/internal/dense_schedule.h"
#include "model/gpu/internal/kernels.h"
#include "model/internal/dense_ops.h"

namespace freshet {

using gpu_internal::BatchPlan;
using gpu_internal::MlpLayer;
using gpu_internal::PlanView;

namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A growable device allocation.
struct DeviceBuffer {
  void* p = nullptr;
  size_t bytes = 0;
  ~DeviceBuffer() {
    if (p != nullptr) (void)cudaFree(p);
  }
  Status Reserve(size_t want) {
    if (want <= bytes) return Status::OK();
    // 1.5x the old size (computed before freeing it), so a batch a little
    // larger than the last does not reallocate (and synchronize) again.
    const size_t grown = std::max(want, bytes + bytes / 2);
    if (p != nullptr) {
      FRESHET_CUDA_RETURN(cudaFree(p));
      p = nullptr;
      bytes = 0;
    }
    FRESHET_CUDA_RETURN(cudaMalloc(&p, grown));
    bytes = grown;
    return Status::OK();
  }
  float* f() const { return static_cast<float*>(p); }
  uint32_t* u() const { return static_cast<uint32_t*>(p); }
};

// A growable pinned (page-locked) host allocation: async copies need it.
struct PinnedBuffer {
  void* p = nullptr;
  size_t bytes = 0;
  ~PinnedBuffer() {
    if (p != nullptr) (void)cudaFreeHost(p);
  }
  Status Reserve(size_t want) {
    if (want <= bytes) return Status::OK();
    // 1.5x the old size (computed before freeing it), so a batch a little
    // larger than the last does not reallocate (and synchronize) again.
    const size_t grown = std::max(want, bytes + bytes / 2);
    if (p != nullptr) {
      FRESHET_CUDA_RETURN(cudaFreeHost(p));
      p = nullptr;
      bytes = 0;
    }
    FRESHET_CUDA_RETURN(cudaHostAlloc(&p, grown, cudaHostAllocDefault));
    bytes = grown;
    return Status::OK();
  }
  float* f() const { return static_cast<float*>(p); }
  uint32_t* u() const { return static_cast<uint32_t*>(p); }
};

// The dense schedule's steps on the GPU: cuBLAS (GEMMs in the configured
// precision; GEMVs and AXPYs in fp32) and freshet's element-wise kernels,
// all on one stream.
//
// GEMM precision: fp32 is CUBLAS_COMPUTE_32F in the default math mode (no
// tensor cores); TF32 is CUBLAS_COMPUTE_32F_FAST_TF32 on the fp32 operands.
// bf16 converts both operands to bfloat16 (to nearest, ties to even) into
// scratch buffers and multiplies them with fp32 accumulation
// (CUBLAS_COMPUTE_32F): CUBLAS_COMPUTE_32F_FAST_16BF on fp32 operands only
// *allows* cuBLAS to down-convert, and on an H200 (cuBLAS 13) it gave the
// same results as TF32 to three digits (tools/gpu_check.sh at 271d9dc), so
// "gpu:bf16" was TF32 in all but name.
class CudaDenseOps final : public gpu_internal::DenseOps {
 public:
  CudaDenseOps(cublasHandle_t blas, cudaStream_t stream, GemmPrecision precision)
      : blas_(blas), stream_(stream), precision_(precision) {}

  Status Gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
              const float* b, int ldb, float* c, int ldc) override {
    const float one = 1.f, zero = 0.f;
    const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (precision_ == GemmPrecision::kBf16) {
      if (m == 0 || n == 0 || k == 0) return Gemm32(op_a, op_b, m, n, k, a, lda, b, ldb, c, ldc);
      // Column-major: A is (trans_a ? k x m : m x k) with leading dimension
      // lda, B is (trans_b ? n x k : k x n) with ldb; convert the span each
      // occupies, so the bf16 copies keep the same leading dimensions.
      const int64_t a_span = trans_a ? static_cast<int64_t>(lda) * (m - 1) + k
                                     : static_cast<int64_t>(lda) * (k - 1) + m;
      const int64_t b_span = trans_b ? static_cast<int64_t>(ldb) * (k - 1) + n
                                     : static_cast<int64_t>(ldb) * (n - 1) + k;
      FRESHET_RETURN_IF_ERROR(a16_.Reserve(static_cast<size_t>(a_span) * sizeof(uint16_t)));
      FRESHET_RETURN_IF_ERROR(b16_.Reserve(static_cast<size_t>(b_span) * sizeof(uint16_t)));
      uint16_t* a16 = static_cast<uint16_t*>(a16_.p);
      uint16_t* b16 = static_cast<uint16_t*>(b16_.p);
      FRESHET_RETURN_IF_ERROR(gpu_internal::LaunchToBf16(a, a16, a_span, stream_));
      FRESHET_RETURN_IF_ERROR(gpu_internal::LaunchToBf16(b, b16, b_span, stream_));
      FRESHET_CUBLAS_RETURN(cublasGemmEx(blas_, op_a, op_b, m, n, k, &one, a16, CUDA_R_16BF, lda,
                                         b16, CUDA_R_16BF, ldb, &zero, c, CUDA_R_32F, ldc,
                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      return Status::OK();
    }
    return Gemm32(op_a, op_b, m, n, k, a, lda, b, ldb, c, ldc);
  }
  Status Gemv(int rows, int cols, const float* a, int lda, const float* x, float* y) override {
    const float one = 1.f, zero = 0.f;
    FRESHET_CUBLAS_RETURN(
        cublasSgemv(blas_, CUBLAS_OP_N, rows, cols, &one, a, lda, x, 1, &zero, y, 1));
    return Status::OK();
  }
  Status Axpy(int n, float alpha, const float* x, float* y) override {
    FRESHET_CUBLAS_RETURN(cublasSaxpy(blas_, n, &alpha, x, 1, y, 1));
    return Status::OK();
  }
  Status BiasAct(float* z, const float* bias, int rows, int cols, bool relu) override {
    return gpu_internal::LaunchBiasAct(z, bias, rows, cols, relu, stream_);
  }
  Status Add(float* dst, const float* src, int n) override {
    return gpu_internal::LaunchAdd(dst, src, n, stream_);
  }
  Status ReluMask(float* dh, const float* h, int64_t n) override {
    return gpu_internal::LaunchReluMask(dh, h, n, stream_);
  }
  Status Fill(float* dst, float value, int64_t n) override {
    return gpu_internal::LaunchFill(dst, value, n, stream_);
  }

 private:
  // fp32 operands: fp32 FMA, or TF32 tensor cores.
  Status Gemm32(cublasOperation_t op_a, cublasOperation_t op_b, int m, int n, int k, const float* a,
                int lda, const float* b, int ldb, float* c, int ldc) {
    const float one = 1.f, zero = 0.f;
    const cublasComputeType_t compute =
        precision_ == GemmPrecision::kTf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    FRESHET_CUBLAS_RETURN(cublasGemmEx(blas_, op_a, op_b, m, n, k, &one, a, CUDA_R_32F, lda, b,
                                       CUDA_R_32F, ldb, &zero, c, CUDA_R_32F, ldc, compute,
                                       CUBLAS_GEMM_DEFAULT));
    return Status::OK();
  }

  cublasHandle_t blas_;
  cudaStream_t stream_;
  GemmPrecision precision_;
  DeviceBuffer a16_, b16_;  // bf16 copies of the operands (kBf16 only)
};

}  // namespace

struct GpuDeepFmModel::Impl {
  GpuModelOptions options;
  ModelShape shape;
  float l2 = 0;
  int in0 = 0;
  std::vector<MlpLayer> layers;
  size_t num_params = 0;
  std::unique_ptr<internal::DenseAdam> adam;
  GpuPhaseTimes times;

  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cudaEvent_t ev[4] = {nullptr, nullptr, nullptr, nullptr};
  std::unique_ptr<CudaDenseOps> ops;

  // Host, pinned.
  PinnedBuffer h_params;  // the dense parameters (dense_params())
  PinnedBuffer h_floats;  // per batch: dense | rows_wide | rows_emb | occ_count
  PinnedBuffer h_index;   // per batch: offsets | occ_row | row_slot | row_occ_off | occ_example
  PinnedBuffer h_logits, h_dlogits, h_rowgrad, h_dgrad, h_extra;
  // Device.
  DeviceBuffer d_params, d_mean, d_floats, d_index;
  DeviceBuffer d_x, d_fm, d_dx, d_ga, d_gb, d_logits, d_dlogits, d_ones, d_rowgrad, d_dgrad;
  std::vector<DeviceBuffer> d_act;  // per layer: out x n

  // Per batch.
  BatchPlan plan;
  PlanView view;  // device pointers into d_index/d_floats
  const float* d_dense = nullptr;
  const float* d_rows_wide = nullptr;
  const EncodedBatch* last_batch = nullptr;
  int batch_n = 0;
  // d_dgrad holds the last Backward's dense gradient (a batch of n > 0).
  bool dgrad_valid = false;
  // StageDenseGradient ran; FetchDenseGradient (which synchronizes) not yet.
  bool staged = false;
  // Floats after the dense gradient in d_dgrad / h_dgrad for the
  // all-reduce's scalars (StageDenseGradient's extra).
  static constexpr size_t kMaxExtra = 16;

  ~Impl() {
    for (cudaEvent_t e : ev) {
      if (e != nullptr) (void)cudaEventDestroy(e);
    }
    if (blas != nullptr) (void)cublasDestroy(blas);
    if (stream != nullptr) (void)cudaStreamDestroy(stream);
  }

  Status Setup(const Model& cpu_init, const proto::ModelConfig& config) {
    FRESHET_CUDA_RETURN(cudaSetDevice(options.device));
    FRESHET_CUDA_RETURN(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    for (cudaEvent_t& e : ev) FRESHET_CUDA_RETURN(cudaEventCreate(&e));
    FRESHET_CUBLAS_RETURN(cublasCreate(&blas));
    FRESHET_CUBLAS_RETURN(cublasSetStream(blas, stream));
    FRESHET_CUBLAS_RETURN(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
    ops = std::make_unique<CudaDenseOps>(blas, stream, options.precision);

    l2 = config.dense_l2();
    in0 = shape.num_slots * shape.emb_dim + shape.num_dense;
    std::vector<int> widths = {in0};
    for (int h : config.hidden()) widths.push_back(h);
    widths.push_back(1);
    size_t off = 1 + static_cast<size_t>(shape.num_dense);
    for (size_t l = 0; l + 1 < widths.size(); ++l) {
      MlpLayer layer;
      layer.in = widths[l];
      layer.out = widths[l + 1];
      layer.w = off;
      layer.b = off + static_cast<size_t>(layer.in) * layer.out;
      off = layer.b + layer.out;
      layers.push_back(layer);
    }
    num_params = cpu_init.NumDenseParams();
    CHECK_EQ(off, num_params) << "GPU DeepFM layout differs from DeepFmModel's";
    d_act.resize(layers.size());

    FRESHET_RETURN_IF_ERROR(h_params.Reserve(num_params * sizeof(float)));
    std::memcpy(h_params.p, cpu_init.dense_params(), num_params * sizeof(float));
    adam = std::make_unique<internal::DenseAdam>(num_params, config.dense_learning_rate());
    FRESHET_RETURN_IF_ERROR(d_params.Reserve(num_params * sizeof(float)));
    FRESHET_RETURN_IF_ERROR(d_dgrad.Reserve((num_params + kMaxExtra) * sizeof(float)));
    FRESHET_RETURN_IF_ERROR(h_dgrad.Reserve((num_params + kMaxExtra) * sizeof(float)));
    FRESHET_RETURN_IF_ERROR(h_extra.Reserve(kMaxExtra * sizeof(float)));
    std::vector<uint8_t> mean(shape.num_slots);
    for (int s = 0; s < shape.num_slots; ++s) mean[s] = shape.pooling[s] == proto::MEAN ? 1 : 0;
    FRESHET_RETURN_IF_ERROR(d_mean.Reserve(std::max<size_t>(1, mean.size())));
    FRESHET_CUDA_RETURN(cudaMemcpy(d_mean.p, mean.data(), mean.size(), cudaMemcpyHostToDevice));
    return Status::OK();
  }

  float Elapsed(int a, int b) {
    float ms = 0;
    // Both events were recorded and the stream synchronized: cannot fail
    // for a reason the caller could act on; report 0 then.
    if (cudaEventElapsedTime(&ms, ev[a], ev[b]) != cudaSuccess) {
      // Clear the runtime's last error, or the next kernel launch's
      // cudaGetLastError() check would report this one as its own.
      (void)cudaGetLastError();
      return 0.f;
    }
    return ms;
  }

  Status Forward(const ModelInput& in, float* logits) {
    internal::CheckInput(shape, in, /*needs_emb=*/true);
    const EncodedBatch& b = *in.batch;
    const int n = b.size;
    const int k = shape.emb_dim, ns = shape.num_slots, nd = shape.num_dense;
    last_batch = in.batch;
    batch_n = n;
    dgrad_valid = false;
    if (n == 0) return Status::OK();
    FRESHET_CUDA_RETURN(cudaSetDevice(options.device));

    // Host: plan and pack into pinned buffers.
    auto t0 = Clock::now();
    gpu_internal::BuildBatchPlan(b, shape.pooling, &plan);
    const size_t U = plan.num_rows, O = plan.num_occ;
    const size_t n_dense = static_cast<size_t>(n) * nd;
    const size_t f_wide = n_dense, f_emb = f_wide + U, f_count = f_emb + U * k;
    const size_t f_total = f_count + O;
    const size_t i_occ_row = static_cast<size_t>(ns) * (n + 1), i_row_slot = i_occ_row + O,
                 i_row_occ_off = i_row_slot + U, i_occ_example = i_row_occ_off + U + 1;
    const size_t i_total = i_occ_example + O;
    FRESHET_RETURN_IF_ERROR(h_floats.Reserve(f_total * sizeof(float)));
    FRESHET_RETURN_IF_ERROR(h_index.Reserve(i_total * sizeof(uint32_t)));
    float* hf = h_floats.f();
    uint32_t* hi = h_index.u();
    std::memcpy(hf, b.dense.data(), n_dense * sizeof(float));
    gpu_internal::GatherRows(plan, in.wide, 1, hf + f_wide);
    gpu_internal::GatherRows(plan, in.emb, k, hf + f_emb);
    std::memcpy(hf + f_count, plan.occ_count.data(), O * sizeof(float));
    std::memcpy(hi, plan.offsets.data(), i_occ_row * sizeof(uint32_t));
    std::memcpy(hi + i_occ_row, plan.occ_row.data(), O * sizeof(uint32_t));
    std::memcpy(hi + i_row_slot, plan.row_slot.data(), U * sizeof(uint32_t));
    std::memcpy(hi + i_row_occ_off, plan.row_occ_off.data(), (U + 1) * sizeof(uint32_t));
    std::memcpy(hi + i_occ_example, plan.occ_example.data(), O * sizeof(uint32_t));
    times.pack_s += Since(t0);

    // Device buffers for this batch size.
    const size_t nn = static_cast<size_t>(n);
    FRESHET_RETURN_IF_ERROR(d_floats.Reserve(f_total * sizeof(float)));
    FRESHET_RETURN_IF_ERROR(d_index.Reserve(i_total * sizeof(uint32_t)));
    FRESHET_RETURN_IF_ERROR(d_x.Reserve(in0 * nn * sizeof(float)));
    FRESHET_RETURN_IF_ERROR(d_fm.Reserve(static_cast<size_t>(k) * nn * sizeof(float)));
    FRESHET_RETURN_IF_ERROR(d_logits.Reserve(nn * sizeof(float)));
    FRESHET_RETURN_IF_ERROR(h_logits.Reserve(nn * sizeof(float)));
    for (size_t l = 0; l < layers.size(); ++l) {
      FRESHET_RETURN_IF_ERROR(
          d_act[l].Reserve(static_cast<size_t>(layers[l].out) * nn * sizeof(float)));
    }

    // H2D.
    FRESHET_CUDA_RETURN(cudaEventRecord(ev[0], stream));
    FRESHET_CUDA_RETURN(cudaMemcpyAsync(d_params.p, h_params.p, num_params * sizeof(float),
                                        cudaMemcpyHostToDevice, stream));
    FRESHET_CUDA_RETURN(
        cudaMemcpyAsync(d_floats.p, hf, f_total * sizeof(float), cudaMemcpyHostToDevice, stream));
    FRESHET_CUDA_RETURN(
        cudaMemcpyAsync(d_index.p, hi, i_total * sizeof(uint32_t), cudaMemcpyHostToDevice, stream));
    FRESHET_CUDA_RETURN(cudaEventRecord(ev[1], stream));

    // Compute.
    const uint32_t* di = d_index.u();
    const float* df = d_floats.f();
    view = PlanView();
    view.n = n;
    view.num_slots = ns;
    view.emb_dim = k;
    view.num_dense = nd;
    view.in0 = in0;
    view.offsets = di;
    view.occ_row = di + i_occ_row;
    view.row_slot = di + i_row_slot;
    view.row_occ_off = di + i_row_occ_off;
    view.occ_example = di + i_occ_example;
    view.occ_count = df + f_count;
    view.mean = static_cast<const uint8_t*>(d_mean.p);
    d_dense = df;
    d_rows_wide = df + f_wide;
    const float* d_params_f = d_params.f();
    FRESHET_RETURN_IF_ERROR(
        gpu_internal::LaunchBuildInput(view, df + f_emb, d_dense, d_x.f(), stream));
    FRESHET_RETURN_IF_ERROR(gpu_internal::LaunchFirstOrderFm(
        view, d_rows_wide, d_params_f, d_dense, d_x.f(), d_fm.f(), d_logits.f(), stream));
    std::vector<float*> act(layers.size());
    for (size_t l = 0; l < layers.size(); ++l) act[l] = d_act[l].f();
    FRESHET_RETURN_IF_ERROR(
        gpu_internal::MlpForward(*ops, layers, d_params_f, d_x.f(), n, act, d_logits.f()));
    FRESHET_CUDA_RETURN(cudaEventRecord(ev[2], stream));

    // D2H.
    FRESHET_CUDA_RETURN(cudaMemcpyAsync(h_logits.p, d_logits.p, nn * sizeof(float),
                                        cudaMemcpyDeviceToHost, stream));
    FRESHET_CUDA_RETURN(cudaEventRecord(ev[3], stream));
    FRESHET_CUDA_RETURN(cudaStreamSynchronize(stream));
    std::memcpy(logits, h_logits.p, nn * sizeof(float));
    times.h2d_s += Elapsed(0, 1) / 1e3;
    times.compute_s += Elapsed(1, 2) / 1e3;
    times.d2h_s += Elapsed(2, 3) / 1e3;
    ++times.batches;
    return Status::OK();
  }

  Status Backward(const ModelInput& in, const float* dlogits, SparseGrads* grads,
                  float* dense_grad) {
    CHECK(in.batch == last_batch && in.batch->size == batch_n)
        << "Backward must follow Forward on the same batch";
    const int n = batch_n;
    const int k = shape.emb_dim, nd = shape.num_dense;
    if (n == 0) {
      if (dense_grad != nullptr) std::fill(dense_grad, dense_grad + num_params, 0.f);
      grads->wide.assign(shape.num_slots, {});
      grads->emb.assign(shape.num_slots, {});
      return Status::OK();
    }
    FRESHET_CUDA_RETURN(cudaSetDevice(options.device));
    const size_t nn = static_cast<size_t>(n);
    const size_t U = plan.num_rows;
    size_t max_width = 1;
    for (const MlpLayer& L : layers) max_width = std::max(max_width, static_cast<size_t>(L.out));
    FRESHET_RETURN_IF_ERROR(d_dlogits.Reserve(nn * sizeof(float)));
    FRESHET_RETURN_IF_ERROR(h_dlogits.Reserve(nn * sizeof(float)));
    FRESHET_RETURN_IF_ERROR(d_ones.Reserve(nn * sizeof(float)));
    FRESHET_RETURN_IF_ERROR(d_ga.Reserve(max_width * nn * sizeof(float)));
    FRESHET_RETURN_IF_ERROR(d_gb.Reserve(max_width * nn * sizeof(float)));
    FRESHET_RETURN_IF_ERROR(d_dx.Reserve(static_cast<size_t>(in0) * nn * sizeof(float)));
    FRESHET_RETURN_IF_ERROR(d_rowgrad.Reserve(std::max<size_t>(1, U * (k + 1)) * sizeof(float)));
    FRESHET_RETURN_IF_ERROR(h_rowgrad.Reserve(std::max<size_t>(1, U * (k + 1)) * sizeof(float)));

    std::memcpy(h_dlogits.p, dlogits, nn * sizeof(float));
    FRESHET_CUDA_RETURN(cudaEventRecord(ev[0], stream));
    FRESHET_CUDA_RETURN(cudaMemcpyAsync(d_dlogits.p, h_dlogits.p, nn * sizeof(float),
                                        cudaMemcpyHostToDevice, stream));
    FRESHET_CUDA_RETURN(cudaEventRecord(ev[1], stream));

    const float* params = d_params.f();
    float* dgrad = d_dgrad.f();
    const float* dl = d_dlogits.f();
    std::vector<float*> act(layers.size());
    for (size_t l = 0; l < layers.size(); ++l) act[l] = d_act[l].f();
    gpu_internal::DenseScratch scratch;
    scratch.ones = d_ones.f();
    scratch.ga = d_ga.f();
    scratch.gb = d_gb.f();
    FRESHET_RETURN_IF_ERROR(gpu_internal::DenseBackward(
        *ops, layers, nd, l2, params, d_dense, d_x.f(), act, dl, n, scratch, d_dx.f(), dgrad));
    // Sparse: per-(example, slot) gradients, then per-row sums.
    FRESHET_RETURN_IF_ERROR(
        gpu_internal::LaunchPooledGrad(view, d_x.f(), d_fm.f(), dl, d_dx.f(), stream));
    float* row_emb = d_rowgrad.f();
    float* row_wide = row_emb + U * k;
    FRESHET_RETURN_IF_ERROR(gpu_internal::LaunchRowGrads(view, static_cast<uint32_t>(U), d_dx.f(),
                                                         dl, row_emb, row_wide, stream));
    FRESHET_CUDA_RETURN(cudaEventRecord(ev[2], stream));

    if (dense_grad != nullptr) {
      FRESHET_CUDA_RETURN(cudaMemcpyAsync(h_dgrad.p, d_dgrad.p, num_params * sizeof(float),
                                          cudaMemcpyDeviceToHost, stream));
    }
    FRESHET_CUDA_RETURN(cudaMemcpyAsync(h_rowgrad.p, d_rowgrad.p, U * (k + 1) * sizeof(float),
                                        cudaMemcpyDeviceToHost, stream));
    FRESHET_CUDA_RETURN(cudaEventRecord(ev[3], stream));
    FRESHET_CUDA_RETURN(cudaStreamSynchronize(stream));
    times.h2d_s += Elapsed(0, 1) / 1e3;
    times.compute_s += Elapsed(1, 2) / 1e3;
    times.d2h_s += Elapsed(2, 3) / 1e3;

    dgrad_valid = true;
    const auto t0 = Clock::now();
    if (dense_grad != nullptr) std::memcpy(dense_grad, h_dgrad.p, num_params * sizeof(float));
    const float* hr = h_rowgrad.f();
    gpu_internal::ScatterRowGrads(plan, hr, k, &grads->emb);
    gpu_internal::ScatterRowGrads(plan, hr + U * k, 1, &grads->wide);
    times.unpack_s += Since(t0);
    return Status::OK();
  }

  StatusOr<float*> StageDenseGradient(float scale, const float* extra, size_t n_extra,
                                      void** out_stream) {
    CHECK_LE(n_extra, kMaxExtra) << "StageDenseGradient: too many extra floats";
    CHECK(!staged) << "StageDenseGradient twice without FetchDenseGradient";
    FRESHET_CUDA_RETURN(cudaSetDevice(options.device));
    float* g = d_dgrad.f();
    if (scale == 0.f) {
      FRESHET_RETURN_IF_ERROR(
          gpu_internal::LaunchFill(g, 0.f, static_cast<int64_t>(num_params), stream));
    } else {
      CHECK(dgrad_valid) << "StageDenseGradient: no Backward of a nonempty batch to scale";
      if (scale != 1.f) {
        FRESHET_CUBLAS_RETURN(cublasSscal(blas, static_cast<int>(num_params), &scale, g, 1));
      }
    }
    if (n_extra > 0) {
      // Pinned, so the copy is truly asynchronous; FetchDenseGradient's
      // synchronize ends it before the next stage reuses h_extra.
      std::memcpy(h_extra.p, extra, n_extra * sizeof(float));
      FRESHET_CUDA_RETURN(cudaMemcpyAsync(g + num_params, h_extra.p, n_extra * sizeof(float),
                                          cudaMemcpyHostToDevice, stream));
    }
    dgrad_valid = false;  // scaled: no longer the gradient Backward left
    staged = true;
    *out_stream = stream;
    return g;
  }

  Status FetchDenseGradient(float* host, size_t n) {
    CHECK_LE(n, num_params + kMaxExtra) << "FetchDenseGradient: past the buffer";
    FRESHET_CUDA_RETURN(cudaSetDevice(options.device));
    // Not in times.d2h_s: this copy is part of the all-reduce (the caller
    // times that whole).
    FRESHET_CUDA_RETURN(
        cudaMemcpyAsync(h_dgrad.p, d_dgrad.p, n * sizeof(float), cudaMemcpyDeviceToHost, stream));
    FRESHET_CUDA_RETURN(cudaStreamSynchronize(stream));
    staged = false;
    std::memcpy(host, h_dgrad.p, n * sizeof(float));
    return Status::OK();
  }
};

GpuDeepFmModel::GpuDeepFmModel(ModelShape shape, std::unique_ptr<Impl> impl)
    : Model(std::move(shape)), impl_(std::move(impl)) {}

GpuDeepFmModel::~GpuDeepFmModel() = default;

StatusOr<std::unique_ptr<GpuDeepFmModel>> GpuDeepFmModel::Create(const proto::ModelConfig& config,
                                                                 const ModelShape& shape,
                                                                 const GpuModelOptions& options) {
  if (config.kind() != proto::ModelConfig::DEEPFM) {
    return InvalidArgument("device gpu: only the DEEPFM model has a GPU implementation, got " +
                           proto::ModelConfig::Kind_Name(config.kind()));
  }
  // Validation and the initial parameters, exactly as the CPU model's.
  FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<Model> cpu, Model::Create(config, shape));
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess || count == 0) {
    return Unavailable(std::string("device gpu: no usable CUDA device (") +
                       (rc != cudaSuccess ? cudaGetErrorString(rc) : "none found") + ")");
  }
  if (options.device < 0 || options.device >= count) {
    return Unavailable("device gpu: CUDA device " + std::to_string(options.device) +
                       " does not exist (" + std::to_string(count) + " visible)");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->shape = shape;
  FRESHET_RETURN_IF_ERROR(impl->Setup(*cpu, config));
  return std::unique_ptr<GpuDeepFmModel>(new GpuDeepFmModel(shape, std::move(impl)));
}

Status GpuDeepFmModel::ForwardChecked(const ModelInput& in, float* logits) {
  return impl_->Forward(in, logits);
}

Status GpuDeepFmModel::BackwardChecked(const ModelInput& in, const float* dlogits,
                                       SparseGrads* grads, float* dense_grad) {
  return impl_->Backward(in, dlogits, grads, dense_grad);
}

void GpuDeepFmModel::Forward(const ModelInput& in, float* logits) {
  const Status st = ForwardChecked(in, logits);
  if (!st.ok()) LOG(FATAL) << "GPU model forward: " << st;
}

void GpuDeepFmModel::Backward(const ModelInput& in, const float* dlogits, SparseGrads* grads,
                              float* dense_grad) {
  const Status st = BackwardChecked(in, dlogits, grads, dense_grad);
  if (!st.ok()) LOG(FATAL) << "GPU model backward: " << st;
}

StatusOr<float*> GpuDeepFmModel::StageDenseGradient(float scale, const float* extra, size_t n_extra,
                                                    void** stream) {
  return impl_->StageDenseGradient(scale, extra, n_extra, stream);
}
Status GpuDeepFmModel::FetchDenseGradient(float* host, size_t n) {
  return impl_->FetchDenseGradient(host, n);
}

size_t GpuDeepFmModel::NumDenseParams() const { return impl_->num_params; }
float* GpuDeepFmModel::dense_params() { return impl_->h_params.f(); }
void GpuDeepFmModel::ApplyDenseGradient(const float* grad) {
  impl_->adam->Step(impl_->h_params.f(), grad);
}
std::vector<float> GpuDeepFmModel::DenseOptimizerState() const { return impl_->adam->State(); }
Status GpuDeepFmModel::SetDenseOptimizerState(const std::vector<float>& state) {
  return impl_->adam->SetState(state) ? Status::OK()
                                      : InvalidArgument("dense optimizer state has " +
                                                        std::to_string(state.size()) + " floats");
}
const GpuPhaseTimes& GpuDeepFmModel::times() const { return impl_->times; }
const GpuModelOptions& GpuDeepFmModel::options() const { return impl_->options; }

}  // namespace freshet
