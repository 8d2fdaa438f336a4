// GpuDeepFmModel: the DeepFM of DeepFmModel (same math, same dense parameter
// layout and initialization, same Adam) computed on one CUDA device.
//
// Per batch:
//   Forward  (host) plan the batch: keys deduplicated per slot
//            (internal/batch_plan.h); one pulled row per distinct key is
//            gathered into pinned host memory with the plan, the dense
//            features and the dense parameters;
//            (stream) two async H2D copies (floats, plan indices);
//            pooling of multi-valued slots + dense features into the MLP
//            input, first order + FM (kernels), MLP (cuBLAS GEMMs, bias/ReLU
//            kernels); D2H of the logits; one stream synchronize.
//   Backward (stream) H2D of dlogits; MLP backward (cuBLAS), first-order
//            gradients (cuBLAS GEMV), per-(example, slot) embedding
//            gradients, then per-row sums of the sparse gradients over each
//            row's occurrences (deterministic: a fixed order, no atomics);
//            D2H of the per-row sparse gradients and of the dense gradient
//            (unless the worker sums that on the device: a null dense_grad
//            leaves it there for StageDenseGradient, the NCCL all-reduce
//            and one D2H of the sum, FetchDenseGradient);
//            (host) the row gradients land at each row's first occurrence in
//            SparseGrads, zeros at the other occurrences, so the push (which
//            sums duplicate keys) applies exactly the row's gradient.
// The trainer overlaps the PS pull of batch t+1 and the push of batch t-1
// with this compute (worker/trainer.cc); docs/GPU.md has the picture.
//
// Dense parameters live in pinned host memory (dense_params(), the layout of
// DeepFmModel) and are uploaded on every Forward, so LoadDense/exporters see
// and change the same values as on the CPU; Adam runs on the host
// (internal::DenseAdam), bit-identical to the CPU model's.
//
// Precision: GEMMs in fp32 by default; GemmPrecision::kTf32 / kBf16 use
// tensor cores with fp32 storage and accumulation (everything else stays
// fp32). Parity with DeepFmModel: outputs and gradients within 1e-4
// relative in fp32 (gpu_model_test).
//
// Errors: every CUDA/cuBLAS call is checked (FRESHET_CUDA_RETURN etc.). The
// Model interface has no Status, so Forward/Backward LOG(FATAL) with the
// failing expression, file and line; ForwardChecked/BackwardChecked return
// it instead.
//
// Thread safety: not thread-safe (see Model); the calling thread's current
// CUDA device is set to options.device on every call.
#pragma once

#include <memory>

#include "common/device.h"
#include "common/status.h"
#include "model/model.h"

namespace freshet {

struct GpuModelOptions {
  int device = 0;  // CUDA device ordinal
  GemmPrecision precision = GemmPrecision::kFp32;
};

// Cumulative wall time of the model's phases, seconds (stream time measured
// with CUDA events for h2d/compute/d2h).
struct GpuPhaseTimes {
  double pack_s = 0;     // host: plan + gather into pinned buffers
  double h2d_s = 0;      // host -> device copies
  double compute_s = 0;  // kernels + GEMMs
  double d2h_s = 0;      // device -> host copies
  double unpack_s = 0;   // host: sparse gradients into SparseGrads
  int64_t batches = 0;
};

class GpuDeepFmModel final : public Model, public DeviceDenseGradient {
 public:
  // Validates like Model::Create (config.kind must be DEEPFM) and sets up
  // the device: stream, cuBLAS handle, parameters. Unavailable when the
  // device does not exist; Internal for failed CUDA calls.
  static StatusOr<std::unique_ptr<GpuDeepFmModel>> Create(const proto::ModelConfig& config,
                                                          const ModelShape& shape,
                                                          const GpuModelOptions& options);
  ~GpuDeepFmModel() override;

  void Forward(const ModelInput& in, float* logits) override;
  void Backward(const ModelInput& in, const float* dlogits, SparseGrads* grads,
                float* dense_grad) override;
  Status ForwardChecked(const ModelInput& in, float* logits);
  Status BackwardChecked(const ModelInput& in, const float* dlogits, SparseGrads* grads,
                         float* dense_grad);

  // The dense gradient stays on the GPU when Backward gets a null
  // dense_grad; the worker all-reduces it there (NCCL) and fetches the sum.
  DeviceDenseGradient* device_dense_gradient() override { return this; }
  StatusOr<float*> StageDenseGradient(float scale, const float* extra, size_t n_extra,
                                      void** stream) override;
  Status FetchDenseGradient(float* host, size_t n) override;

  size_t NumDenseParams() const override;
  float* dense_params() override;
  void ApplyDenseGradient(const float* grad) override;
  std::vector<float> DenseOptimizerState() const override;
  Status SetDenseOptimizerState(const std::vector<float>& state) override;

  const GpuPhaseTimes& times() const;
  const GpuModelOptions& options() const;

 private:
  struct Impl;
  GpuDeepFmModel(ModelShape shape, std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace freshet
