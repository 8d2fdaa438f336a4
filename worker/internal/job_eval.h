// Evaluation in a worker's job (RunWorkerJob, worker/job_runner.h), private
// to it: the validation split (docs/ARCHITECTURE.md "Validation"), the
// per-pass validation with early stopping and the best pass's snapshot and
// restore, and the holdout scoring at the end. Each worker scores its
// share; worker 0 gathers, evaluates and decides; every worker follows.
//
// Thread safety: one thread (the training thread). The functions and
// methods are collective: every worker calls them alike.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/collective.h"
#include "common/proto/job.pb.h"
#include "common/status.h"
#include "model/model.h"
#include "worker/data/example_io.h"
#include "worker/early_stopping.h"
#include "worker/internal/checkpoint_driver.h"
#include "worker/job_result.h"
#include "worker/job_runner.h"
#include "worker/trainer.h"

namespace freshet {

// The training files split by time (data.validation_fraction > 0): the
// byte spans training reads, and those validation scores.
struct SplitSpans {
  std::vector<FileRange> train, validation;
};

// Worker 0 finds the time cut of `train_files` (sizes: their byte sizes,
// in the job's order; worker/data/validation_split.h) and every worker
// takes it (doubles carry the integers exactly up to 2^53). The cut's
// figures go into `result` (validation_examples, ...); `print`: one line
// saying where the cut is (worker 0).
StatusOr<SplitSpans> AgreeValidationSplit(const proto::DataConfig& data,
                                          const std::vector<std::string>& train_files,
                                          const std::vector<uint64_t>& sizes, Collective* workers,
                                          bool print, JobResult* result);

// Validation after every pass (Trainer::Options::after_epoch), early
// stopping, and the best pass's model (see RunWorkerJob).
class PassValidator {
 public:
  // For a job with a validation split; with job.early_stopping the best
  // pass's model is kept, which needs options.tables (checked by the
  // caller). `start_epoch`: the first pass's 0-based epoch (a restored
  // job's is its checkpoint's). Pointers are not owned and outlive this.
  static StatusOr<std::unique_ptr<PassValidator>> Create(const proto::JobConfig& job,
                                                         const RunOptions& options,
                                                         std::vector<FileRange> validation_spans,
                                                         int start_epoch, Collective* workers,
                                                         JobResult* result);

  // After pass `epoch` (0-based) trained by `trainer` over `model`: every
  // worker scores its share of the validation spans, worker 0 evaluates
  // (result->validation), decides whether the pass improved and whether to
  // stop, and every worker follows. An improving pass that a worse one may
  // follow is snapshotted: every worker copies its dense state, the tables
  // are saved to <work_dir>/best-pass (and `checkpoints`, if not null,
  // learns that the tables were saved outside a checkpoint). Returns
  // whether to stop.
  StatusOr<bool> AfterEpoch(int epoch, Trainer* trainer, Model* model,
                            CheckpointDriver* checkpoints);

  // After training: every worker learns the best pass (result->best_pass,
  // model_pass, ...); with early stopping, when the last pass trained is
  // not the best, every worker restores its copy into `model` and the
  // tables are loaded back. Removes <work_dir>/best-pass.
  Status KeepBestPass(Model* model);

 private:
  PassValidator(const proto::JobConfig& job, const RunOptions& options,
                std::vector<FileRange> validation_spans, int start_epoch, Collective* workers,
                JobResult* result, EarlyStopping stopper);

  const proto::JobConfig& job_;
  const RunOptions& options_;
  const std::vector<FileRange> validation_spans_;
  const int start_epoch_;
  Collective* const workers_;
  JobResult* const result_;
  const bool leader_, early_stopping_;
  EarlyStopping stopper_;                           // worker 0's decisions
  std::vector<float> best_dense_, best_dense_opt_;  // this worker's copy at the best pass
  const std::string best_dir_;
  bool best_saved_ = false;  // best_dir_ holds the best pass's tables
};

// Every head's metrics (HeadEval, worker/job_result.h) of a multi-task
// `model` over `scored` (Trainer::Score's); empty for a one-head model.
std::vector<HeadEval> EvaluateHeads(const proto::ModelConfig& model, const ScoredSet& scored);

// The holdout: each worker scores its share of `holdout_files` with
// `trainer`; worker 0 gathers them and every worker's progressive scores
// (in file order) and evaluates into `result` (holdout, progressive), with
// the item-popularity baseline (one train and one holdout file with an
// `item` column among `columns`) and the ranking metrics of tasks that ship
// <work_dir>/holdout_ranking.examples.
Status EvaluateHoldout(const proto::JobConfig& job, const std::vector<std::string>& columns,
                       const std::vector<std::string>& train_files,
                       const std::vector<std::string>& holdout_files, const BadRecordPolicy& policy,
                       Trainer* trainer, Collective* workers, JobResult* result);

}  // namespace freshet
