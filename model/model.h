// Model: the math of a CTR model, forward and backward, behind one interface
// so the trainer does not care whether it runs on the CPU or (later) a GPU.
//
// Parameters come in two kinds:
//   - sparse: rows of embedding tables, pulled from the parameter servers by
//     the trainer and handed in aligned with the batch's keys (ModelInput);
//     their gradients come back aligned the same way (SparseGrads), and the
//     trainer pushes them (the PS client sums duplicate keys);
//   - dense: a flat float vector replicated on every worker (MLP weights,
//     biases, dense-feature weights), owned by the model; the trainer
//     all-reduces its gradient and calls ApplyDenseGradient.
//
// Loss: binary cross-entropy on sigmoid(logit), averaged over the batch.
//
// Thread safety: not thread-safe; one model per worker thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/proto/job.pb.h"
#include "common/status.h"
#include "model/batch.h"

namespace freshet {

// Pulled embedding rows for one batch, aligned with batch.keys.
struct ModelInput {
  const EncodedBatch* batch = nullptr;
  // wide[s][k]: first-order weight of key k of slot s (tables of dim 1).
  std::vector<const float*> wide;
  // emb[s][k * dim_s + j]: embedding of key k of slot s, dim_s = emb_dim
  // (DEEPFM: all slots share it) or shape.slot_dims[s] (LAYERED; null for a
  // slot without an embedding).
  std::vector<const float*> emb;
  // ffm[s][k * ffm_dim + j]: field-aware FM row of key k of slot s (LAYERED
  // with FFM only; ffm_dim = num_slots * per-field dim).
  std::vector<const float*> ffm;
};

// Gradients of the batch-mean loss w.r.t. the pulled rows, aligned with keys.
struct SparseGrads {
  std::vector<std::vector<float>> wide;  // [num_slots][keys of slot]
  std::vector<std::vector<float>> emb;   // [num_slots][keys of slot * dim of slot]
  std::vector<std::vector<float>> ffm;   // [num_slots][keys of slot * ffm_dim] (LAYERED FFM)
};

struct ModelShape {
  int num_slots = 0;
  int num_dense = 0;
  int emb_dim = 0;                      // DEEPFM: the slots' shared dim; 0 for LR
  std::vector<proto::Pooling> pooling;  // per slot
  // Per slot (LAYERED; may be empty for LR and DEEPFM): the embedding dim of
  // the slot's table, 0 when the model reads no embedding for the slot.
  std::vector<int> slot_dims;
  std::vector<std::string> slot_names;  // per slot, for config errors
  std::vector<bool> multi_valued;       // per slot
  int ffm_dim = 0;                      // LAYERED with FFM: dim of ffm rows
};

// The shape of `job`'s model over an encoder with `num_slots` slots and
// `num_dense` dense features: the slots' pooling, names and multi_valued;
// for DEEPFM the embedding dim of the first slot's table; for LAYERED the
// dims of the tables it reads per slot (JobModelTables). Training
// (CreateJobModel, model/model_factory.h) and serving (serving/scorer.h) both
// build their models from it.
ModelShape JobModelShape(const proto::JobConfig& job, int num_slots, int num_dense);

// The tables a job's model reads rows from, as indices into
// job.tables().tables(): what the trainer pulls and pushes and what the
// scorer looks up, per slot, in ModelInput's layout.
struct ModelTables {
  int wide = -1;         // dim-1 first-order table; -1: the model has none
  std::vector<int> emb;  // per slot: embedding table, -1: none
  int ffm = -1;          // LAYERED FFM rows; -1: none
};
// InvalidArgument naming the field (model.wide_table, model.ffm_table,
// features.slots[i].table) when a table is missing or has the wrong dim.
StatusOr<ModelTables> JobModelTables(const proto::JobConfig& job);
// Whether the job's model reads slot embeddings / first-order weights.
bool ModelUsesEmbeddings(const proto::ModelConfig& model);
bool ModelUsesFirstOrder(const proto::ModelConfig& model);

// Checks `config` against `shape` without building the model; for LAYERED
// every part (attention slots, dims, FFM table dim, cross_layers, widths).
// InvalidArgument naming the config field ("model.attention.query_slot:
// ..."). Model::Create runs it.
Status ValidateModel(const proto::ModelConfig& config, const ModelShape& shape);

class Model {
 public:
  // Validates config against shape (e.g. DEEPFM needs emb_dim > 0).
  static StatusOr<std::unique_ptr<Model>> Create(const proto::ModelConfig& config,
                                                 const ModelShape& shape);
  virtual ~Model() = default;

  const ModelShape& shape() const { return shape_; }

  // Writes batch.size logits. Keeps what Backward needs.
  virtual void Forward(const ModelInput& in, float* logits) = 0;
  // REQUIRES: Forward(in, ...) was the last call. dlogits[i] = dLoss/dlogit_i
  // (for the batch-mean loss: (sigmoid(logit) - label) / size). Fills
  // `grads` (resized as needed) and writes NumDenseParams() floats to
  // dense_grad.
  virtual void Backward(const ModelInput& in, const float* dlogits, SparseGrads* grads,
                        float* dense_grad) = 0;

  // Dense parameters: NumDenseParams() floats, identical on every worker.
  virtual size_t NumDenseParams() const = 0;
  virtual float* dense_params() = 0;
  const float* dense_params() const { return const_cast<Model*>(this)->dense_params(); }
  // One Adam step on the dense parameters with an (averaged) gradient.
  virtual void ApplyDenseGradient(const float* grad) = 0;
  // The dense optimizer's state (Adam: step count, first and second
  // moments) as floats, for checkpoints; empty for a model that keeps none.
  virtual std::vector<float> DenseOptimizerState() const { return {}; }
  // Restores what DenseOptimizerState returned. InvalidArgument if the size
  // does not match this model's.
  virtual Status SetDenseOptimizerState(const std::vector<float>& state) {
    return state.empty() ? Status::OK()
                         : InvalidArgument("this model keeps no dense optimizer state");
  }

 protected:
  explicit Model(ModelShape shape) : shape_(std::move(shape)) {}
  ModelShape shape_;
};

// Binary cross-entropy helpers shared by trainers and evaluators.
float Sigmoid(float x);
// Mean log loss of logits against labels; fills dlogits (size n) with the
// gradient of the mean loss if not null.
double LogLoss(const float* logits, const float* labels, int n, float* dlogits);

}  // namespace freshet
