// JobRunner: what a worker rank does in a training job, independent of where
// the embeddings live (SparseStore) and how dense gradients are combined
// (Collective): prepare data, build encoder and model, train on this
// worker's shard, evaluate the holdout (gathered on worker 0), save the model.
// freshet_train runs it on every worker rank over PsClient + MpiCollective;
// the single-process reference (`freshet_train --local`) runs it over a
// LocalSparseStore + LocalCollective.
//
// Thread safety: one thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/collective.h"
#include "common/proto/job.pb.h"
#include "common/sparse_store.h"
#include "worker/metrics.h"
#include "worker/model/model.h"
#include "worker/trainer.h"

namespace freshet {

struct JobResult {
  TrainStats train;           // this worker's
  EvalResult progressive;     // worker 0: over every worker's training examples
  EvalResult holdout;         // worker 0
  double hr10 = -1, ndcg10 = -1;  // worker 0, when the task has a ranking file
  double popularity_auc = -1;     // worker 0: item-popularity baseline on the holdout
  int64_t ranking_groups = 0;
  // Human-readable summary lines (holdout metrics beside the oracle and the
  // baseline).
  std::string Summary() const;
  // The one-line JSON summary worker 0 prints last.
  std::string Json(const proto::JobConfig& job, int num_workers, int num_servers) const;
};

struct RunOptions {
  std::string data_dir = "../shared/data";
  int64_t max_steps = 0;      // > 0: stop training early (tests)
  bool save_model = true;
  bool print_status = true;   // worker 0 only
  // Called by worker 0 to save the sparse tables into the model directory
  // (PsClient::SaveTables, or a local save). Unset: no table save.
  std::function<Status(const std::string& dir)> save_tables;
  // Worker 0 only: called after every training step with the model (dense
  // parameters), step, watermark and ingestion wall time (see
  // Trainer::Options::after_step); the exporter feed.
  std::function<void(const Model& model, int64_t step, int64_t watermark,
                     int64_t ingest_wall_ms)>
      after_step;
  // Worker 0 only: called once training ended, with the final model, before
  // the holdout scoring (e.g. to have the exporter publish the final model).
  std::function<Status(const Model& model)> after_training;
};

// Runs the worker side of `job` (validated). Data preparation happens on
// worker 0 while the others wait. Returns this worker's result; worker 0's
// has the evaluation.
StatusOr<JobResult> RunWorkerJob(proto::JobConfig job, SparseStore* store, Collective* workers,
                                 const RunOptions& options);

// Dense parameter files: "FRSHDENS", u64 count, floats, u64 FNV-1a checksum.
Status SaveDense(const Model& model, const std::string& path);
Status LoadDense(const std::string& path, Model* model);

// Builds the model for a job and an example-file header (the slot count and
// dense count come from the encoder, the embedding dim from the slots'
// tables) on the job's device (CreateModel: a GPU that is not there is an
// error).
StatusOr<std::unique_ptr<Model>> CreateJobModel(const proto::JobConfig& job, int num_slots,
                                                int num_dense);

}  // namespace freshet
