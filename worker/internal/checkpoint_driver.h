// CheckpointDriver: the consistent-cut protocol of periodic checkpoints
// (docs/CHECKPOINTS.md) as a worker's job runs it (RunWorkerJob,
// worker/job_runner.h), private to it. The file operations it uses are in
// worker/checkpoint.h.
//
// At each cut the trainer has drained this worker's pushes; a barrier makes
// that true of every worker; worker 0 has the tables copied or saved
// (TableCheckpointer) and writes the dense state and the job, each
// streaming worker its read position and join state, each file-job worker
// its input cut; an all-reduce agrees on success and training resumes;
// worker 0's publisher thread waits for the servers' files, writes MANIFEST
// last and publishes (CheckpointPublisher).
//
// Thread safety: one thread (the training thread). Every worker calls
// Create, Take and FinishLast alike (they are collective).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/collective.h"
#include "common/proto/job.pb.h"
#include "common/status.h"
#include "model/model.h"
#include "worker/checkpoint.h"
#include "worker/data/input_intervals.h"
#include "worker/input_ledger.h"
#include "worker/internal/job_stream.h"
#include "worker/job_result.h"
#include "worker/job_runner.h"
#include "worker/stream/stream_source.h"

namespace freshet {

// This worker's input at a cut, besides the tables and the dense state.
struct CutInput {
  // Streaming: the stream (null for file jobs) and the source the trainer
  // reads it through (its read-ahead examples; may be null).
  StreamExampleSource* stream = nullptr;
  BorrowedSource* borrowed = nullptr;
  // File jobs: what this worker trained of `epoch` (worker 0: plus what the
  // restored checkpoint's workers had), over the job's `files`.
  int epoch = 0;
  const ConsumedSet* consumed = nullptr;
  const std::vector<InputFileId>* files = nullptr;
};

class CheckpointDriver {
 public:
  // Null when options.checkpoint asks for no checkpoints (no dir or no
  // interval); InvalidArgument when it does and options.tables is null.
  // Worker 0 creates the root and reads the next checkpoint id; every
  // worker agrees on it. `job`, `options`, `workers`, `ledger` (may be
  // null) and `result` (worker 0's checkpoint figures go there) are not
  // owned and outlive the driver.
  static StatusOr<std::unique_ptr<CheckpointDriver>> Create(const proto::JobConfig& job,
                                                            const RunOptions& options,
                                                            Collective* workers,
                                                            InputLedger* ledger, JobResult* result);
  // Waits for the checkpoint in flight (the publisher thread joins).
  ~CheckpointDriver() = default;

  // Takes the checkpoint of `step` over `model` (this worker's dense state)
  // and `input`. Errors name the checkpoint directory; Aborted when another
  // worker failed.
  Status Take(int64_t step, const Model& model, const CutInput& input);

  // The tables were saved somewhere else since the last checkpoint (early
  // stopping's best pass): the next checkpoint is full, its incremental
  // base is gone.
  void TablesSavedOutside() { tables_saved_outside_ = true; }

  // At the end of training: worker 0 waits for the last checkpoint's
  // background write and publication; every worker learns whether it
  // failed.
  Status FinishLast();

 private:
  CheckpointDriver(const proto::JobConfig& job, const RunOptions& options, Collective* workers,
                   InputLedger* ledger, JobResult* result, int64_t first_id);

  const proto::JobConfig& job_;
  const RunOptions& options_;
  const RunOptions::Checkpointing& ck_;
  Collective* const workers_;
  InputLedger* const ledger_;
  JobResult* const result_;
  const bool leader_, streaming_;
  // Tables written in the background (TableCheckpointer::StartSave).
  const bool background_;
  int64_t next_checkpoint_, checkpoints_taken_ = 0;
  // The servers' last save was not a checkpoint (TablesSavedOutside).
  bool tables_saved_outside_ = false;
  // Worker 0: publishes checkpoints; declared last, so destroyed (joined)
  // first.
  CheckpointPublisher publisher_;
};

}  // namespace freshet
