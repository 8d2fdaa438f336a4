// Restoring a worker's job (RunWorkerJob, worker/job_runner.h) from a saved
// model or checkpoint directory (RunOptions::restore_dir), private to it:
// the dense state, and what a checkpoint adds (docs/CHECKPOINTS.md): its
// step count, the input the checkpoint's workers had trained in the cut's
// epoch (file jobs), or the stream read positions and label-join state at
// the cut (streaming jobs, this worker's partitions).
//
// Thread safety: reentrant.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/proto/job.pb.h"
#include "common/status.h"
#include "model/model.h"
#include "worker/checkpoint.h"
#include "worker/data/input_intervals.h"
#include "worker/stream/join_state.h"
#include "worker/stream/tail_source.h"

namespace freshet {

// Loads <dir>/dense.bin into `model` and <dir>/dense_opt.bin, if there is
// one (models saved before the optimizer state was: fresh Adam moments, a
// warning). Errors name the file, in the context "restoring".
Status RestoreDenseState(const std::string& dir, Model* model);

// What a checkpoint restore continues from. All zero / empty when `dir` is
// a plain saved model (no MANIFEST).
struct RestoredCheckpoint {
  int64_t id = 0;          // the checkpoint's id (0: none)
  int64_t start_step = 0;  // its step count
  int start_epoch = 0;     // file jobs with an input cut: the cut's epoch
  // File jobs: whether the checkpoint had input cuts, and every old
  // worker's trained input of start_epoch.
  bool input = false;
  ConsumedSet consumed;
  // Streaming: every old worker's position as of its last trained batch,
  // merged (positions are per file, keyed by file identity; each new worker
  // applies the entries of the partitions it owns, for any worker count).
  std::optional<TailPosition> position;
  // And the join state at the cut: every old worker's, this worker's share
  // merged (JoinStateMerger: by partition, as the positions).
  std::optional<StreamJoinState> join;
  int64_t waiting = 0, examples = 0;  // over all old workers (for the status line)
};

// Reads what checkpoint `dir` holds for worker `me` of `n` of `job` (whose
// training files are `input_files`, DescribeInputFiles). A directory
// without MANIFEST restores nothing; a damaged checkpoint, position or join
// state file is an error naming it; a changed input file set is
// FailedPrecondition (LoadInputCut). `print`: print what was restored (one
// line, worker 0).
StatusOr<RestoredCheckpoint> ReadCheckpointState(const proto::JobConfig& job,
                                                 const std::string& dir,
                                                 const std::vector<InputFileId>& input_files,
                                                 int me, int n, bool print);

}  // namespace freshet
