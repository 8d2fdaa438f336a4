// Test helpers shared by gpu_plan_test (CPU) and gpu_model_test (GPU):
// random batches whose keys repeat (a small vocabulary per slot), with
// "pulled" rows that are a function of the key, as a real pull returns.
//
// Thread safety: plain values.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/key_dedup.h"
#include "model/batch.h"
#include "model/model.h"

namespace freshet {
namespace gpu_internal {

struct PulledBatch {
  EncodedBatch batch;
  std::vector<std::vector<float>> wide;  // [slot][key position]
  std::vector<std::vector<float>> emb;   // [slot][key position * dim]

  ModelInput Input() const {
    ModelInput in;
    in.batch = &batch;
    for (const auto& w : wide) in.wide.push_back(w.data());
    for (const auto& e : emb) in.emb.push_back(e.data());
    return in;
  }
};

inline ModelShape TestShape(int num_dense, int emb_dim, std::vector<proto::Pooling> pooling) {
  ModelShape shape;
  shape.num_slots = static_cast<int>(pooling.size());
  shape.num_dense = num_dense;
  shape.emb_dim = emb_dim;
  shape.pooling = std::move(pooling);
  return shape;
}

// Each (example, slot) gets 0..max_keys keys drawn from `vocab` keys of the
// slot; example 0 slot 0 has at least 2 keys, example 1 slot 1 none.
inline PulledBatch RandomPulledBatch(const ModelShape& shape, int n, int max_keys, int vocab,
                                     uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> count(0, max_keys);
  std::uniform_int_distribution<int> pick(0, vocab - 1);
  std::uniform_real_distribution<float> val(-0.5f, 0.5f);
  PulledBatch f;
  f.batch.Reset(shape.num_slots, shape.num_dense);
  f.wide.resize(shape.num_slots);
  f.emb.resize(shape.num_slots);
  for (int i = 0; i < n; ++i) {
    for (int s = 0; s < shape.num_slots; ++s) {
      int c = count(rng);
      if (i == 0 && s == 0) c = c < 2 ? 2 : c;
      if (i == 1 && s == 1) c = 0;
      for (int j = 0; j < c; ++j) {
        const uint64_t key = 1000003ull * static_cast<uint64_t>(s + 1) + pick(rng);
        f.batch.keys[s].push_back(key);
        std::mt19937_64 row(key * 7919 + seed);  // the row is a function of the key
        std::uniform_real_distribution<float> rv(-0.5f, 0.5f);
        f.wide[s].push_back(rv(row));
        for (int d = 0; d < shape.emb_dim; ++d) f.emb[s].push_back(rv(row));
      }
      f.batch.offsets[s].push_back(static_cast<uint32_t>(f.batch.keys[s].size()));
    }
    for (int d = 0; d < shape.num_dense; ++d) f.batch.dense.push_back(2 * val(rng));
    f.batch.labels.push_back(static_cast<float>(rng() % 2));
    f.batch.oracle.push_back(-1);
    f.batch.users.push_back(0);
    f.batch.times.push_back(0);
    ++f.batch.size;
  }
  return f;
}

// Per-key gradient sums of one slot, as a push applies them: (uniq keys in
// first-seen order) x dim.
inline std::vector<float> SumPerKey(const std::vector<uint64_t>& keys,
                                    const std::vector<float>& grads, int dim) {
  const Dedup d = Deduplicate(keys.data(), keys.size());
  std::vector<float> out;
  SumDuplicateRows(d, grads.data(), dim, &out);
  return out;
}

// Max relative error of got vs want, relative to each element's magnitude
// but never to less than 1% of the vector's largest magnitude (sums that
// cancel to ~0 differ by rounding alone). The fp32 parity metric.
inline double MaxRelError(const std::vector<float>& got, const std::vector<float>& want) {
  double scale = 0;
  for (float w : want) scale = std::max(scale, std::fabs(static_cast<double>(w)));
  double worst = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    const double floor = std::max(1e-2 * scale, 1e-12);
    const double den = std::max(std::fabs(static_cast<double>(want[i])), floor);
    worst = std::max(worst, std::fabs(static_cast<double>(got[i]) - want[i]) / den);
  }
  return worst;
}

// ||got - want|| / ||want|| (Euclidean). The reduced-precision metric:
// TF32/bf16 GEMM inputs flip ReLUs whose pre-activation is near 0, and one
// flip moves a whole example's term in or out of a dW sum, so the
// element-wise MaxRelError reaches O(1) on the small, cancelling elements
// while the gradient as a whole stays within a few percent.
inline double NormRelError(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += static_cast<double>(want[i]) * want[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Bounds of gpu_model_test's ReducedPrecisionStaysClose (NormRelError
// against the fp32 CPU model, one step of its batch); gpu_plan_test checks
// them with the GEMM inputs rounded (and truncated) to TF32/bf16 on the CPU.
// Worst seen there over 8 batches: TF32 8e-4 (logits) and 1.6e-2 (dense
// gradient), bf16 6.2e-3 and 5.2e-2.
struct PrecisionBounds {
  double logits, dense_grad;
};
constexpr PrecisionBounds kTf32Bounds{3e-3, 5e-2};
constexpr PrecisionBounds kBf16Bounds{2e-2, 1.5e-1};
// Each mode must deliver its precision, not only stay within its bound:
// bf16 rounds its inputs 8x coarser than TF32, so its logits error is well
// above TF32's (emulated: 6.8x to 8.2x over 4 batches, gpu_plan_test), and
// TF32's well above fp32's (> 1e-5). An H200 once ran "bf16" at TF32's
// error to three digits.
constexpr double kBf16OverTf32MinRatio = 2.0;
constexpr double kReducedPrecisionMinLogitsError = 1e-5;

}  // namespace gpu_internal
}  // namespace freshet
