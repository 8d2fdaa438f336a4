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

// A dense gradient kept in accelerator memory. A model whose Backward runs
// on a GPU (GpuDeepFmModel) can leave its dense gradient there, so that the
// workers sum it in device memory (a Collective with sums_on_device(),
// NcclCollective) instead of copying it to the host and back for the
// all-reduce. worker/dense_reduce.h drives it.
//
// Thread safety: as the model's (one thread).
class DeviceDenseGradient {
 public:
  virtual ~DeviceDenseGradient() = default;
  // Fills the device buffer the all-reduce sums: NumDenseParams() floats of
  // the last Backward's dense gradient times `scale` (zeros when `scale` is
  // 0, whatever the buffer held), then the n_extra host floats of `extra`.
  // Returns the buffer; *stream (a cudaStream_t) is the stream its writes
  // are ordered on. Internal for a failed device call.
  virtual StatusOr<float*> StageDenseGradient(float scale, const float* extra, size_t n_extra,
                                              void** stream) = 0;
  // Copies the buffer's first n floats to `host` once the work ordered on
  // its stream is done.
  virtual Status FetchDenseGradient(float* host, size_t n) = 0;
};

class Model {
 public:
  // Validates config against shape (e.g. DEEPFM needs emb_dim > 0).
  static StatusOr<std::unique_ptr<Model>> Create(const proto::ModelConfig& config,
                                                 const ModelShape& shape);
  virtual ~Model() = default;

  const ModelShape& shape() const { return shape_; }

  // Outputs per example: 1, or a multi-task LAYERED model's heads
  // (ModelHeads(config).size()).
  virtual int num_heads() const { return 1; }

  // Writes num_heads() * batch.size logits, head-major: logits[k * size + i]
  // is head k's logit of example i (one head: batch.size logits). Keeps what
  // Backward needs.
  virtual void Forward(const ModelInput& in, float* logits) = 0;
  // REQUIRES: Forward(in, ...) was the last call. dlogits[k * size + i] =
  // dLoss/dlogit of head k, example i (one head, batch-mean loss:
  // (sigmoid(logit) - label) / size; several: MultiHeadLoss). Fills
  // `grads` (resized as needed) and writes NumDenseParams() floats to
  // dense_grad. A model with a device_dense_gradient() also takes a null
  // dense_grad: the gradient then stays on the device for
  // DeviceDenseGradient::StageDenseGradient.
  virtual void Backward(const ModelInput& in, const float* dlogits, SparseGrads* grads,
                        float* dense_grad) = 0;
  // Not null where Backward computes the dense gradient on an accelerator
  // and can leave it there (see DeviceDenseGradient); owned by the model.
  virtual DeviceDenseGradient* device_dense_gradient() { return nullptr; }

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

// One output of a model. Models other than a LAYERED model with `heads`
// have one head: name "", the main label, no multiply_by.
struct ModelHead {
  std::string name;
  // "" = the main label (EncodedBatch::labels), else a label column
  // (model/example.h), read into EncodedBatch::extra_labels[label_index].
  std::string label;
  int label_index = -1;  // index into ModelLabelColumns; -1: the main label
  // Index of an earlier head whose probability multiplies this head's
  // sigmoid (ESMM: p_ctcvr = sigmoid(z) * p_ctr); -1: none.
  int multiply_by = -1;
};
// The heads of `config` (REQUIRES: ValidateModel passed for LAYERED).
std::vector<ModelHead> ModelHeads(const proto::ModelConfig& config);
// The distinct label columns the heads read, in head order: what the
// feature encoder extracts into EncodedBatch::extra_labels.
std::vector<std::string> ModelLabelColumns(const proto::ModelConfig& config);
// The head freshet_serve returns: config.serving_head, or the last head.
int ServingHead(const proto::ModelConfig& config);
// The head's labels in `batch` (batch.size floats).
const float* HeadLabels(const ModelHead& head, const EncodedBatch& batch);

// Head probabilities from head-major logits (heads.size() x n):
//   own[k * n + i]   = sigmoid(z_k,i)
//   probs[k * n + i] = own[k * n + i] * probs[multiply_by(k) * n + i]
//                      (= own without multiply_by)
// `own` may be null.
void HeadProbabilities(const std::vector<ModelHead>& heads, const float* logits, int n,
                       float* probs, float* own);
// Sum over heads of each head's mean log loss of probs_k against its labels
// (HeadLabels); fills dlogits (heads.size() x n) with the gradient w.r.t.
// every head's logit if not null, through the multiply_by products. With
// one head and no multiply_by it is LogLoss, bit for bit. `head_loss`, if
// not null, gets each head's mean loss (heads.size() doubles).
double MultiHeadLoss(const std::vector<ModelHead>& heads, const float* logits,
                     const EncodedBatch& batch, float* dlogits, double* head_loss = nullptr);

}  // namespace freshet
