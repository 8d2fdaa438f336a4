// LayeredModel: a CTR model composed from the layers in model/layers/, as
// ModelConfig (kind LAYERED) says. Built by Model::Create. LR and DeepFM are
// configurations of it (layered_model_test.cc checks both against LrModel
// and DeepFmModel to 1e-5 with the same seed):
//   LR      = { first_order: true }
//   DeepFM  = { first_order: true  interactions: [FM]  hidden: [...] }
//
// Per example i (dropped below: the index i):
//   e_s    pooled embedding of slot s (dim d_s = shape.slot_dims[s]; slots
//          with d_s = 0 have none): SUM or MEAN of its keys' rows (0 when
//          empty); for attention.sequence_slot instead the target-attention
//          pooling against q = e_{query_slot} (model/layers/attention.h:
//          a_j = sigmoid(MLP_att([e_j, q, e_j - q, e_j * q])), e_s =
//          pool_s(a_j e_j), weights unnormalized).
//   x0     = [e_s for slots with d_s > 0, in slot order; dense features]
//            (width D = sum_s d_s + num_dense)
//   logit  = first_order                                 if first_order
//          + sum_{s<t} <e_s, e_t>                        if FM (over x0's
//                                                        embedding blocks)
//          + sum_{s<t} <p_{s,t}, p_{t,s}>                if FFM
//          + head(h)                                     if cross or hidden
// first_order is LrModel's (bias + dense weights + pooled wide weights).
// FFM: each key has a row of ffm_table, dim num_slots * k, split into one
// k-vector per field (slot) f; p_{s,f} = pool_s of slot s's keys' f-th
// vectors (SUM or MEAN by the slot's pooling, also for the attention slot).
// Deep part, with c = CrossNet^L(x0) (DCN-v2, model/layers/cross.h) when
// cross_layers L > 0 and MLP = ReLU layers of widths `hidden`:
//   cross only:         h = c
//   hidden only:        h = MLP(x0)
//   both, PARALLEL:     h = [c; MLP(x0)]
//   both, STACKED:      h = MLP(c)
//   head(h) = w_head . h + b_head (linear, width 1)
//
// Heads (config.heads, multi-task; e.g. ESMM): instead of the one head,
// head k has its own tower T_k = Mlp(h -> heads[k].hidden... -> 1, ReLU
// hidden layers, linear output) and its own logit
//   z_k = first_order + FM + FFM (the parts present, shared) + T_k(h)
// Forward writes the heads' logits head-major (z_k of example i at
// logits[k * n + i]); Backward takes their gradients alike (the shared
// parts get the sum over heads). Probabilities, multiply_by and the loss
// are model.h's HeadProbabilities / MultiHeadLoss: for ESMM p_ctr =
// sigmoid(z_ctr), p_cvr = sigmoid(z_ctcvr), p_ctcvr = p_ctr * p_cvr.
//
// Dense parameters: one float vector, in this order (blocks absent when
// their part is):
//   [bias, w_dense (num_dense)]                first_order (as LrModel)
//   attention MLP: 4k -> attention.hidden -> 1 (Mlp layout, mlp.h)
//   cross: for l < L: W_l (D x D), b_l (D)     (cross.h)
//   MLP: D (or D after cross) -> hidden...     (Mlp layout, ReLU)
//   head: W (1 x width of h), b (1); with heads, each head's tower in
//         head order (Mlp layout)
// Every W is Glorot-uniform from one std::mt19937_64 seeded with
// config.seed, drawn block by block in this order; biases and w_dense start
// at 0. With no attention and no cross this is DeepFmModel's layout and
// initialization draw for draw.
//
// Sparse input: ModelInput.wide (first_order), emb[s] for slots with
// d_s > 0, ffm[s] for every slot (FFM). Backward fills the matching
// SparseGrads (wide empty without first_order, ffm empty without FFM).
//
// L2: dense_l2 * W is added to the gradient of every weight matrix and of
// w_dense, never to biases (as DeepFmModel).
//
// Performance: dense layers run as GEMMs over column-major (width x batch)
// activations (model/internal/gemm.h: cblas_sgemm when the build found
// OpenBLAS, one BLAS thread per call as DeepFmModel); scratch buffers are
// members.
//
// Thread safety: not thread-safe (see Model).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "model/internal/dense_ops.h"
#include "model/layers/attention.h"
#include "model/layers/cross.h"
#include "model/layers/fm.h"
#include "model/layers/mlp.h"
#include "model/model.h"

namespace freshet {

class LayeredModel final : public internal::CpuModel {
 public:
  // REQUIRES: ValidateModel(config, shape) is OK (Model::Create checks).
  LayeredModel(const proto::ModelConfig& config, ModelShape shape);

  int num_heads() const override { return num_heads_; }
  void Forward(const ModelInput& in, float* logits) override;
  void Backward(const ModelInput& in, const float* dlogits, SparseGrads* grads,
                float* dense_grad) override;

  // Number of dense parameters of this config and shape (no allocation);
  // for validation. REQUIRES: as the constructor.
  static double CountDenseParams(const proto::ModelConfig& config, const ModelShape& shape);

 private:
  float l2_;
  bool first_order_ = false, fm_on_ = false, ffm_on_ = false, stacked_ = false;
  int ns_ = 0, nd_ = 0;
  int d0_ = 0;         // width of x0
  int emb_width_ = 0;  // sum of slot dims (x0's embedding blocks)
  int num_emb_slots_ = 0;
  int fm_k_ = 0;               // shared dim of embedded slots (FM)
  int ffm_k_ = 0;              // per-field dim of ffm rows
  std::vector<int> slot_off_;  // per slot: offset of its block in x0, -1: none
  int att_seq_ = -1, att_query_ = -1;

  std::unique_ptr<layers::TargetAttention> att_;
  std::unique_ptr<layers::CrossNet> cross_;
  std::unique_ptr<layers::Mlp> mlp_;
  // One tower per head (a single linear head without config.heads).
  std::vector<std::unique_ptr<layers::Mlp>> towers_;
  std::vector<size_t> tower_off_;
  int num_heads_ = 1;
  std::unique_ptr<layers::FmLayer> fm_;
  std::unique_ptr<layers::FfmLayer> ffm_;
  size_t att_off_ = 0, cross_off_ = 0, mlp_off_ = 0;

  // Per-batch scratch (Forward keeps what Backward needs).
  const EncodedBatch* last_batch_ = nullptr;
  int batch_size_ = 0;
  std::vector<float> x0_;       // D x n
  std::vector<float> h_;        // head input when it is a concatenation
  std::vector<float> part_;     // n: one part's logits (FM, FFM, head)
  std::vector<float> ffm_p_;    // n x F*F*k pooled ffm vectors
  std::vector<float> dx0_;      // D x n
  std::vector<float> dh_;       // head input grad
  std::vector<float> dmid_;     // grad between stacked layers / a path's dx0
  std::vector<float> dffm_p_;   // n x F*F*k
  std::vector<float> dshared_;  // n: summed head gradients (several heads)
  std::vector<float> dtower_;   // a further tower's input grad
};

}  // namespace freshet
