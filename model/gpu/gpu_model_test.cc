// GpuDeepFmModel against the CPU DeepFmModel on the same batches: logits,
// dense gradients and sparse gradients (summed per key, as a push applies
// them) within 1e-4 relative in fp32; TF32/bf16 within their looser bounds.
// Every test is skipped, with the reason, where no GPU exists.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "model/gpu/gpu_deepfm_model.h"
#include "model/gpu/internal/test_batches.h"

namespace freshet {
namespace {

using gpu_internal::kBf16Bounds;
using gpu_internal::kBf16OverTf32MinRatio;
using gpu_internal::kReducedPrecisionMinLogitsError;
using gpu_internal::kTf32Bounds;
using gpu_internal::MaxRelError;
using gpu_internal::NormRelError;
using gpu_internal::PrecisionBounds;
using gpu_internal::PulledBatch;
using gpu_internal::RandomPulledBatch;
using gpu_internal::SumPerKey;
using gpu_internal::TestShape;

#define SKIP_WITHOUT_GPU()                                                     \
  do {                                                                         \
    auto _count = CudaDeviceCount();                                           \
    if (!_count.ok()) GTEST_SKIP() << "no GPU: " << _count.status().message(); \
  } while (0)

proto::ModelConfig Config(float l2) {
  proto::ModelConfig c;
  c.set_kind(proto::ModelConfig::DEEPFM);
  c.add_hidden(32);
  c.add_hidden(16);
  c.set_seed(17);
  c.set_dense_l2(l2);
  c.set_dense_learning_rate(0.01f);
  return c;
}

struct Pass {
  std::vector<float> logits, dense_grad;
  std::vector<std::vector<float>> emb_sums, wide_sums;  // per slot, per key
};

Pass RunPass(Model* m, const PulledBatch& f) {
  Pass p;
  const ModelInput in = f.Input();
  const int n = f.batch.size;
  p.logits.resize(n);
  m->Forward(in, p.logits.data());
  std::vector<float> dl(n);
  LogLoss(p.logits.data(), f.batch.labels.data(), n, dl.data());
  SparseGrads g;
  p.dense_grad.assign(m->NumDenseParams(), 0.f);
  m->Backward(in, dl.data(), &g, p.dense_grad.data());
  for (int s = 0; s < f.batch.num_slots(); ++s) {
    p.emb_sums.push_back(SumPerKey(f.batch.keys[s], g.emb[s], m->shape().emb_dim));
    p.wide_sums.push_back(SumPerKey(f.batch.keys[s], g.wide[s], 1));
  }
  return p;
}

void ExpectParity(const Pass& gpu, const Pass& cpu, double tol, const std::string& what) {
  ASSERT_EQ(gpu.logits.size(), cpu.logits.size()) << what;
  ASSERT_EQ(gpu.dense_grad.size(), cpu.dense_grad.size()) << what;
  EXPECT_LE(MaxRelError(gpu.logits, cpu.logits), tol) << what << ": logits";
  EXPECT_LE(MaxRelError(gpu.dense_grad, cpu.dense_grad), tol) << what << ": dense gradient";
  for (size_t s = 0; s < cpu.emb_sums.size(); ++s) {
    EXPECT_LE(MaxRelError(gpu.emb_sums[s], cpu.emb_sums[s]), tol) << what << ": emb slot " << s;
    EXPECT_LE(MaxRelError(gpu.wide_sums[s], cpu.wide_sums[s]), tol) << what << ": wide slot " << s;
  }
}

std::unique_ptr<GpuDeepFmModel> MakeGpu(const proto::ModelConfig& c, const ModelShape& shape,
                                        GemmPrecision precision) {
  GpuModelOptions o;
  o.precision = precision;
  auto m = GpuDeepFmModel::Create(c, shape, o);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(m).value() : nullptr;
}

TEST(GpuDeepFmModelTest, Fp32ParityWithCpuOverTrainingSteps) {
  SKIP_WITHOUT_GPU();
  const ModelShape shape = TestShape(5, 8, {proto::SUM, proto::MEAN, proto::SUM, proto::MEAN});
  const proto::ModelConfig config = Config(1e-3f);
  auto cpu_or = Model::Create(config, shape);
  ASSERT_TRUE(cpu_or.ok()) << cpu_or.status();
  auto gpu = MakeGpu(config, shape, GemmPrecision::kFp32);
  ASSERT_NE(gpu, nullptr);
  Model& cpu = **cpu_or;
  ASSERT_EQ(gpu->NumDenseParams(), cpu.NumDenseParams());
  ASSERT_TRUE(std::equal(cpu.dense_params(), cpu.dense_params() + cpu.NumDenseParams(),
                         gpu->dense_params()))
      << "same initialization";
  // Growing and shrinking batches (buffer reuse), each followed by an Adam
  // step with the CPU's gradient on both, so parameters stay identical.
  int step = 0;
  for (int n : {50, 700, 3, 1200, 700}) {
    const PulledBatch f = RandomPulledBatch(shape, n, 4, 40, 100 + step);
    const Pass c = RunPass(&cpu, f);
    const Pass g = RunPass(gpu.get(), f);
    ExpectParity(g, c, 1e-4, "batch " + std::to_string(step) + " (n " + std::to_string(n) + ")");
    cpu.ApplyDenseGradient(c.dense_grad.data());
    gpu->ApplyDenseGradient(c.dense_grad.data());
    ++step;
  }
  EXPECT_EQ(gpu->times().batches, 5);
  EXPECT_GT(gpu->times().compute_s, 0);
}

// The dense gradient left on the device (Backward with a null dense_grad)
// is the one Backward copies out, scaled on the device, with the all-reduce's
// scalars after it; a weight of 0 stages zeros.
TEST(GpuDeepFmModelTest, DenseGradientStagedOnTheDevice) {
  SKIP_WITHOUT_GPU();
  const ModelShape shape = TestShape(3, 8, {proto::SUM, proto::MEAN, proto::SUM});
  const proto::ModelConfig config = Config(1e-3f);
  auto gpu = MakeGpu(config, shape, GemmPrecision::kFp32);
  ASSERT_NE(gpu, nullptr);
  ASSERT_EQ(gpu->device_dense_gradient(), gpu.get());
  const size_t nd = gpu->NumDenseParams();
  const PulledBatch f = RandomPulledBatch(shape, 300, 4, 40, 7);
  const Pass host = RunPass(gpu.get(), f);  // the gradient through host memory

  const ModelInput in = f.Input();
  std::vector<float> logits(f.batch.size), dl(f.batch.size);
  gpu->Forward(in, logits.data());
  LogLoss(logits.data(), f.batch.labels.data(), f.batch.size, dl.data());
  SparseGrads g;
  gpu->Backward(in, dl.data(), &g, nullptr);
  const float extra[3] = {300.f, 12.5f, 1.f};
  void* stream = nullptr;
  auto staged = gpu->StageDenseGradient(300.f, extra, 3, &stream);
  ASSERT_TRUE(staged.ok()) << staged.status();
  ASSERT_NE(*staged, nullptr);
  ASSERT_NE(stream, nullptr);
  std::vector<float> out(nd + 3);
  ASSERT_TRUE(gpu->FetchDenseGradient(out.data(), out.size()).ok());
  double norm = 0;
  for (size_t i = 0; i < nd; ++i) {
    EXPECT_FLOAT_EQ(out[i], host.dense_grad[i] * 300.f) << i;
    norm += std::fabs(host.dense_grad[i]);
  }
  EXPECT_GT(norm, 0);
  for (int j = 0; j < 3; ++j) EXPECT_EQ(out[nd + j], extra[j]);

  // Weight 0: zeros, whatever the buffer held.
  ASSERT_TRUE(gpu->StageDenseGradient(0.f, extra, 3, &stream).ok());
  ASSERT_TRUE(gpu->FetchDenseGradient(out.data(), out.size()).ok());
  for (size_t i = 0; i < nd; ++i) ASSERT_EQ(out[i], 0.f) << i;
}

TEST(GpuDeepFmModelTest, ReducedPrecisionStaysClose) {
  SKIP_WITHOUT_GPU();
  const ModelShape shape = TestShape(4, 16, {proto::SUM, proto::MEAN, proto::SUM});
  const proto::ModelConfig config = Config(0);
  auto cpu_or = Model::Create(config, shape);
  ASSERT_TRUE(cpu_or.ok());
  const PulledBatch f = RandomPulledBatch(shape, 512, 3, 100, 7);
  const Pass c = RunPass(cpu_or->get(), f);
  auto fp32 = MakeGpu(config, shape, GemmPrecision::kFp32);
  ASSERT_NE(fp32, nullptr);
  const double fp32_err = NormRelError(RunPass(fp32.get(), f).logits, c.logits);
  double tf32_err = 0;
  // TF32 keeps 10 mantissa bits, bf16 7. Norm-wise errors: rounded GEMM
  // inputs flip ReLUs near 0, which moves single elements of the dense
  // gradient by O(1) of themselves (see NormRelError); the bounds are
  // checked under emulated rounding by gpu_plan_test.
  for (auto [precision, bound] :
       {std::pair<GemmPrecision, PrecisionBounds>{GemmPrecision::kTf32, kTf32Bounds},
        std::pair<GemmPrecision, PrecisionBounds>{GemmPrecision::kBf16, kBf16Bounds}}) {
    auto gpu = MakeGpu(config, shape, precision);
    ASSERT_NE(gpu, nullptr);
    const Pass g = RunPass(gpu.get(), f);
    const double logits_err = NormRelError(g.logits, c.logits);
    const double grad_err = NormRelError(g.dense_grad, c.dense_grad);
    EXPECT_LE(logits_err, bound.logits);
    EXPECT_LE(grad_err, bound.dense_grad);
    // The mode delivers its precision: TF32 rounds (its error is far above
    // fp32's), and bf16 rounds coarser than TF32 (it once matched TF32's
    // error to three digits, when cuBLAS was only *allowed* to use bf16).
    EXPECT_GT(logits_err, kReducedPrecisionMinLogitsError) << static_cast<int>(precision);
    EXPECT_GT(logits_err, 10 * fp32_err) << static_cast<int>(precision);
    if (precision == GemmPrecision::kTf32) tf32_err = logits_err;
    if (precision == GemmPrecision::kBf16) {
      EXPECT_GT(logits_err, kBf16OverTf32MinRatio * tf32_err)
          << "bf16 " << logits_err << " vs TF32 " << tf32_err;
    }
    std::printf(
        "precision %d: logits norm rel error %.2e (max rel %.2e), dense grad %.2e (max rel "
        "%.2e)\n",
        static_cast<int>(precision), logits_err, MaxRelError(g.logits, c.logits), grad_err,
        MaxRelError(g.dense_grad, c.dense_grad));
  }
}

TEST(GpuDeepFmModelTest, CheckedCallsAndErrors) {
  SKIP_WITHOUT_GPU();
  const ModelShape shape = TestShape(2, 4, {proto::SUM, proto::SUM});
  GpuModelOptions o;
  o.device = *CudaDeviceCount();  // one past the last
  auto missing = GpuDeepFmModel::Create(Config(0), shape, o);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kUnavailable) << missing.status();
  proto::ModelConfig lr;
  lr.set_kind(proto::ModelConfig::LR);
  auto not_deep = GpuDeepFmModel::Create(lr, shape, GpuModelOptions());
  ASSERT_FALSE(not_deep.ok());
  EXPECT_EQ(not_deep.status().code(), StatusCode::kInvalidArgument);
  // The checked entry points return OK on a good batch; an empty batch is
  // a no-op with zero gradients.
  auto gpu = MakeGpu(Config(0), shape, GemmPrecision::kFp32);
  ASSERT_NE(gpu, nullptr);
  PulledBatch empty = RandomPulledBatch(shape, 0, 2, 5, 1);
  std::vector<float> dense(gpu->NumDenseParams(), 1.f);
  SparseGrads g;
  ASSERT_TRUE(gpu->ForwardChecked(empty.Input(), nullptr).ok());
  ASSERT_TRUE(gpu->BackwardChecked(empty.Input(), nullptr, &g, dense.data()).ok());
  EXPECT_EQ(*std::max_element(dense.begin(), dense.end()), 0.f);
}

}  // namespace
}  // namespace freshet
