// JobRunner: what a worker rank does in a training job, independent of where
// the embeddings live (SparseStore) and how dense gradients are combined
// (Collective): prepare data, build encoder and model, train on this
// worker's shard, evaluate the holdout (gathered on worker 0), save the model.
// freshet_train runs it on every worker rank over PsClient + MpiCollective;
// the single-process reference (`freshet_train --local`) runs it over a
// LocalSparseStore + LocalCollective.
//
// It reaches the tables' files and the exporter only through two seams in
// RunOptions: a TableCheckpointer (worker/table_checkpointer.h) and an
// ExportFeed (worker/export_feed.h); freshet_train's implementations are in
// apps/train/train_wiring.h. Its parts live in worker/internal/:
// job_restore.h (restoring), checkpoint_driver.h (periodic checkpoints),
// job_eval.h (validation, early stopping, holdout), job_stream.h (a
// streaming job's source); its result is JobResult (worker/job_result.h).
//
// Thread safety: one thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/collective.h"
#include "common/proto/job.pb.h"
#include "common/sparse_store.h"
#include "model/model.h"
#include "worker/export_feed.h"
#include "worker/job_result.h"
#include "worker/metrics.h"
#include "worker/stream/label_joiner.h"
#include "worker/table_checkpointer.h"
#include "worker/trainer.h"

namespace freshet {

struct RunOptions {
  std::string data_dir = "../shared/data";
  // > 0: stop training once the step counter reaches this (a restored job
  // continues the checkpoint's step count, so this is a job-wide limit).
  int64_t max_steps = 0;
  bool save_model = true;
  // Trainer::Options::dense_allreduce_on_device.
  bool dense_allreduce_on_device = true;
  // Not empty: every worker loads the dense parameters from
  // <restore_dir>/dense.bin before training (a saved model or checkpoint;
  // the servers load the rows themselves). A checkpoint directory (one with
  // a MANIFEST) also restores the step count and, for file jobs, the input
  // position: every worker takes its SplitFiles share for the current
  // worker count, minus the input all the checkpoint's workers had trained
  // in the cut's epoch (its worker-<w>.input files), finishes that epoch
  // and runs the remaining ones. A changed input file set is
  // FailedPrecondition.
  std::string restore_dir;
  // Not empty: every worker appends what each trained batch consumed to
  // <input_ledger_dir>/worker-<w>.ledger (worker/input_ledger.h).
  std::string input_ledger_dir;
  // Periodic consistent checkpoints (worker/checkpoint.h, docs/CHECKPOINTS.md)
  // into `dir` every `interval_steps` steps, keeping the newest `keep`
  // (0: all). Needs `tables`. num_servers goes into the manifest.
  struct Checkpointing {
    std::string dir;
    int64_t interval_steps = 0;
    int keep = 2;
    // Every full_every-th checkpoint of a run (the first always) is full,
    // the others incremental (1: all full).
    int full_every = 1;
    int num_servers = 1;
  } checkpoint;
  bool print_status = true;  // worker 0 only
  // Worker 0 saves and loads the sparse tables through this (checkpoints,
  // early stopping's best pass, the final model save); every worker passes
  // one alike (the others never call it). Not owned; null: no table save,
  // and then checkpoints and early stopping are InvalidArgument.
  TableCheckpointer* tables = nullptr;
  // Every worker reports its clocks here after each step; worker 0 also
  // its dense parameters, and the final model once training ended. Not
  // owned; null: no exporter.
  ExportFeed* export_feed = nullptr;
  // Every worker: the trainer's metrics go here (Trainer::Options::metrics).
  // Not owned; may be null.
  MetricsRegistry* metrics = nullptr;
};

// Runs the worker side of `job` (validated). Data preparation happens on
// worker 0 while the others wait. Returns this worker's result; worker 0's
// has the evaluation.
//
// Validation (data.validation_fraction > 0; docs/ARCHITECTURE.md
// "Validation"): worker 0 finds the time cut of the training files
// (worker/data/validation_split.h) and every worker takes it; training
// reads only the bytes before it. After every pass each worker scores its
// share of the validation bytes and worker 0 gathers and evaluates them,
// prints a line and decides (early_stopping) whether to stop; every worker
// follows. With early stopping, each improving pass that may be followed by
// another is snapshotted (every worker copies its dense parameters and
// optimizer state in memory; the servers save their rows to
// <work_dir>/best-pass); when the last pass trained is not the best, every
// worker restores its copy and the servers load the rows back before the
// final export, the holdout scoring and the model save. The holdout plays
// no part in any of it.
//
// Streaming jobs (IsStreamingJob): no data preparation; each worker tails
// its partitions of stream.dir (worker/stream/), joins labels and trains
// until the stream ends (every worker saw `_END` and emitted every example);
// holdout scoring only when holdout files are given. Each worker
// checkpoints the read position (TailPosition) as of its last trained batch
// about every second, and its final read position at the end, to
// <work_dir>/stream-positions/worker-<i>.position. Periodic checkpoints hold
// each worker's read position at the cut and its join state
// (worker/stream/join_state.h: waiting impressions, markers, early
// reactions, and the examples read but not trained yet), so a streaming
// restore trains every example of the stream exactly once.
StatusOr<JobResult> RunWorkerJob(proto::JobConfig job, SparseStore* store, Collective* workers,
                                 const RunOptions& options);

}  // namespace freshet
