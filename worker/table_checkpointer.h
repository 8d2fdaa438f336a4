// TableCheckpointer: how a training job has the sparse tables saved and
// loaded, wherever they live. RunWorkerJob (worker/job_runner.h) calls it on
// worker 0 only: for periodic checkpoints (worker/checkpoint.h,
// docs/CHECKPOINTS.md), early stopping's best-pass snapshot and restore, and
// the final model save. freshet_train gives one over the parameter servers
// (every server writes its own shard-<i>-of-<S>.rows through PsClient) and,
// for --local, one over the in-process shard (apps/train/train_wiring.h);
// tests may give their own.
//
// Every method blocks until the tables are written or read, or fails with
// the implementation's Status (a server's error names it). A directory
// passed in exists.
//
// Thread safety: worker 0's training thread calls every method but
// WaitSaved, which its checkpoint publisher thread calls (CheckpointPublisher,
// worker/checkpoint.h), concurrently with the others. Implementations must
// allow that.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace freshet {

class TableCheckpointer {
 public:
  virtual ~TableCheckpointer() = default;

  // Writes every row of every table into `dir`.
  [[nodiscard]] virtual Status Save(const std::string& dir) = 0;

  // Replaces the tables with those Save wrote to `dir` (every row erased,
  // the saved rows back): early stopping's restore of the best pass.
  [[nodiscard]] virtual Status Load(const std::string& dir) = 0;

  // Whether SaveChanged works. false: every checkpoint is full.
  virtual bool CanSaveChanged() const { return false; }
  // Like Save, but writes only the rows pushed since the previous Save or
  // SaveChanged (incremental checkpoints; a later restore applies it over
  // its parent). REQUIRES: CanSaveChanged().
  [[nodiscard]] virtual Status SaveChanged(const std::string& dir) {
    return FailedPrecondition(dir + ": this table checkpointer cannot save changed rows only");
  }

  // Whether StartSave/WaitSaved work (docs/CHECKPOINTS.md "Pause"). false:
  // checkpoints save through Save/SaveChanged inside the training pause.
  virtual bool CanSaveInBackground() const { return false; }
  // Has the tables copied (all rows, or with `incremental` the changed ones)
  // and returns once every copy is taken, with the bytes copied; the files
  // are written in the background. Training may resume right after.
  // REQUIRES: CanSaveInBackground().
  [[nodiscard]] virtual StatusOr<int64_t> StartSave(const std::string& dir, bool incremental) {
    return FailedPrecondition(dir + ": this table checkpointer cannot save in the background");
  }
  // Blocks until the files StartSave(dir) began are written (`bytes`: what
  // it returned, for a deadline by volume). Called on the publisher thread
  // while training goes on; never concurrently with another WaitSaved.
  // REQUIRES: CanSaveInBackground().
  [[nodiscard]] virtual Status WaitSaved(const std::string& dir, int64_t bytes) {
    return FailedPrecondition(dir + ": this table checkpointer cannot save in the background");
  }
};

}  // namespace freshet
