// Scorer: the serving tier's forward pass over one loaded export.
//
// A Scorer computes exactly what the trainer's forward pass (worker/trainer.h,
// Trainer::Score) computes for the same examples and parameters:
//   - the same encoding: a FeatureEncoder built from the manifest's
//     FeatureConfig over the columns() below;
//   - the same rows: for every key of slot s, the first-order weight from
//     table model.wide_table and (DEEPFM) the embedding from the slot's
//     table. A key the export has no row for gets InitializeRow(table's
//     initializer, table id, key) (server/initializer.h): the value a
//     training pull would have created. Nothing is ever inserted: the export
//     stays read-only and shared;
//   - the same model code (Model::Create over JobModelShape, as
//     CreateJobModel in model/model_factory.h, on the CPU) with the
//     export's dense parameters.
// Scores are sigmoid(logit) (Sigmoid, model/model.h); for a multi-task
// LAYERED model (model.heads) the probability of its serving head
// (model.serving_head, default the last head; HeadProbabilities, so for
// ESMM p_ctcvr = p_ctr * p_cvr). Requests never carry label columns.
//
// Columns. Requests name the job's feature columns: every slot's column (the
// slot's `column`, or its name) and every dense feature's column, in that
// order (slots first, in config order, then dense features), each once.
// Example.values passed to Score() are aligned with columns(); an empty
// value is a missing value (no key for a single-valued slot, no tokens for a
// multi-valued one, 0 for a dense feature before its transform).
//
// Thread safety: immutable after Create() except for an internal,
// mutex-guarded pool of Model instances (models are not thread-safe), so
// Score() may run on any number of threads at once. A call takes an idle
// model from the pool or builds a new one (Model::Create + the export's
// dense params) and returns it afterwards; at most Options::max_idle_models
// idle models are kept.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/mutex.h"
#include "common/proto/job.pb.h"
#include "common/status.h"
#include "exporter/model_loader.h"
#include "model/example.h"
#include "model/features.h"

namespace freshet {

class Scorer {
 public:
  struct Options {
    // Idle models kept for reuse. 0 -> std::thread::hardware_concurrency().
    int max_idle_models = 0;
  };

  // Validates the export against its own job config and builds the encoder
  // and a first model. Errors (the export is then unusable, the caller keeps
  // its previous model):
  //   InvalidArgument: the job's features, tables or model do not fit
  //     together (no wide table of dim 1, a slot's table missing, DEEPFM
  //     tables of different dims, a bad transform);
  //   DataLoss: the export does not match its job (a table's dim differs
  //     from the job's, the dense vector has the wrong length).
  // A table of the job that the export does not contain is treated as
  // empty (every key gets its initial row).
  // REQUIRES: model != nullptr.
  static StatusOr<std::unique_ptr<Scorer>> Create(std::shared_ptr<const LoadedExport> model,
                                                  Options options);
  static StatusOr<std::unique_ptr<Scorer>> Create(std::shared_ptr<const LoadedExport> model) {
    return Create(std::move(model), Options());
  }
  ~Scorer();

  // Column names requests may use, in Example.values order (see above).
  const std::vector<std::string>& columns() const { return columns_; }
  // Index of `name` in columns(), or -1.
  int ColumnIndex(const std::string& name) const;
  // True when every feature reading column `c` is a multi-valued slot (so a
  // list of tokens is meaningful). REQUIRES: 0 <= c < columns().size().
  bool IsMultiValued(int c) const { return multi_valued_[c]; }

  // Writes examples.size() probabilities to *probs (resized). Each Example
  // needs columns().size() values (label, time, user and oracle are
  // ignored). InvalidArgument "<label>[i]: ..." naming the example and the
  // column when a value does not encode (e.g. a numeric slot's value is not
  // a number); *probs is then unspecified.
  Status Score(const std::vector<Example>& examples, std::vector<float>* probs,
               const std::string& label = "examples") const;

  // The export this scorer serves (manifest, dense params, tables).
  const LoadedExport& model() const { return *model_; }
  const std::shared_ptr<const LoadedExport>& shared_model() const { return model_; }
  uint64_t version() const { return model_->manifest.version(); }

  // Models built so far (pool misses), for tests and benchmarks.
  int64_t models_created() const EXCLUDES(pool_mu_);

 private:
  struct Worker;  // a model and its per-call buffers
  Scorer() = default;
  StatusOr<std::unique_ptr<Worker>> NewWorker() const EXCLUDES(pool_mu_);
  std::unique_ptr<Worker> Acquire(Status* st) const EXCLUDES(pool_mu_);
  void Release(std::unique_ptr<Worker> w) const EXCLUDES(pool_mu_);
  // Copies `key`'s row of table `table_id` (or its initial value) to out.
  void FetchRow(int table_id, uint64_t key, float* out) const;

  std::shared_ptr<const LoadedExport> model_;
  std::unique_ptr<FeatureEncoder> encoder_;
  std::vector<std::string> columns_;
  std::unordered_map<std::string, int> column_index_;
  std::vector<bool> multi_valued_;  // per column

  // [slot][role]: table id of the slot's wide / emb / ffm rows (as
  // ModelInput has them, JobModelTables), -1: none.
  std::vector<std::array<int, 3>> slot_tables_;
  std::vector<const LoadedTable*> tables_;        // per table id; nullptr: not in the export
  std::vector<int> dims_;                         // per table id
  std::vector<proto::Initializer> initializers_;  // per table id
  size_t max_idle_ = 1;

  mutable Mutex pool_mu_;
  mutable std::vector<std::unique_ptr<Worker>> idle_ GUARDED_BY(pool_mu_);
  mutable int64_t models_created_ GUARDED_BY(pool_mu_) = 0;
};

}  // namespace freshet
