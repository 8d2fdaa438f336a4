#include "worker/internal/checkpoint_driver.h"

#include <glog/logging.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>

#include "common/file_io.h"
#include "worker/dense_file.h"
#include "worker/job.h"
#include "worker/stream/join_state.h"
#include "worker/stream/tail_source.h"

namespace freshet {
namespace {

// Worker 0: waits for the checkpoint `publisher` has in flight (if any) and
// adds it to `result`. With `sync_start` (no background writes) the pause
// is measured from it to now, publication included.
// `print`: print the checkpoint line (the background publisher prints its
// own).
Status FinishCheckpoint(CheckpointPublisher* publisher, JobResult* result,
                        std::optional<std::chrono::steady_clock::time_point> sync_start = {},
                        bool print = false) {
  std::optional<PublishedCheckpoint> done = publisher->Finish();
  if (!done) return Status::OK();
  FRESHET_RETURN_IF_ERROR(done->status);
  if (sync_start) {
    done->pause_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - *sync_start)
            .count();
    done->write_ms = 0;
  }
  if (print) {
    const CheckpointManifest& m = done->manifest;
    std::printf(
        "checkpoint %lld (%s) at step %lld: %zu files, %.2f MB, training paused "
        "%.0f ms\n",
        static_cast<long long>(m.id), m.parent > 0 ? "incremental" : "full",
        static_cast<long long>(m.step), m.files.size(), m.TotalBytes() / 1e6, done->pause_ms);
    std::fflush(stdout);
  }
  ++result->checkpoints;
  result->checkpoint_total_pause_ms += done->pause_ms;
  result->checkpoint_max_pause_ms = std::max(result->checkpoint_max_pause_ms, done->pause_ms);
  result->checkpoint_total_write_ms += done->write_ms;
  result->checkpoint_max_write_ms = std::max(result->checkpoint_max_write_ms, done->write_ms);
  result->checkpoint_max_copy_bytes =
      std::max(result->checkpoint_max_copy_bytes, done->copied_bytes);
  result->checkpoint_last_bytes = done->manifest.TotalBytes();
  return Status::OK();
}

}  // namespace

CheckpointDriver::CheckpointDriver(const proto::JobConfig& job, const RunOptions& options,
                                   Collective* workers, InputLedger* ledger, JobResult* result,
                                   int64_t first_id)
    : job_(job),
      options_(options),
      ck_(options.checkpoint),
      workers_(workers),
      ledger_(ledger),
      result_(result),
      leader_(workers->rank() == 0),
      streaming_(IsStreamingJob(job)),
      background_(options.tables != nullptr && options.tables->CanSaveInBackground()),
      next_checkpoint_(first_id) {}

StatusOr<std::unique_ptr<CheckpointDriver>> CheckpointDriver::Create(const proto::JobConfig& job,
                                                                     const RunOptions& options,
                                                                     Collective* workers,
                                                                     InputLedger* ledger,
                                                                     JobResult* result) {
  const auto& ck = options.checkpoint;
  if (ck.dir.empty() || ck.interval_steps <= 0) return std::unique_ptr<CheckpointDriver>();
  if (options.tables == nullptr) return InvalidArgument("checkpoints need a table save");
  // Ids continue after the root's latest (and after any directory a
  // crashed run left); worker 0 reads it, all agree.
  float id = 0;
  if (workers->rank() == 0) {
    FRESHET_RETURN_IF_ERROR(MakeDirs(ck.dir));
    FRESHET_ASSIGN_OR_RETURN(int64_t next, NextCheckpointId(ck.dir));
    id = static_cast<float>(next);
  }
  FRESHET_RETURN_IF_ERROR(workers->AllReduceSum(&id, 1));
  return std::unique_ptr<CheckpointDriver>(
      new CheckpointDriver(job, options, workers, ledger, result, static_cast<int64_t>(id)));
}

Status CheckpointDriver::Take(int64_t step, const Model& model, const CutInput& input) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string dir = CheckpointDir(ck_.dir, next_checkpoint_);
  // One checkpoint in flight: worker 0 first waits for the previous
  // one's background write (the others wait at the barrier: pause).
  Status st = leader_ ? FinishCheckpoint(&publisher_, result_) : Status::OK();
  if (st.ok() && leader_) st = MakeDirs(dir);
  const auto t_waited = std::chrono::steady_clock::now();
  FRESHET_RETURN_IF_ERROR(workers_->Barrier());
  const auto t_cut = std::chrono::steady_clock::now();
  // Streams: the reader's position now and the join state now, one
  // cut. The reader is a batch ahead of training (the prefetched batch
  // is read, not trained, so not in the tables): its examples go into
  // the join state with the examples the source has emitted but not
  // returned, so every event line before the position is trained, in
  // the join state, or counted (docs/CHECKPOINTS.md "Streaming
  // restore").
  const auto* tail =
      input.stream == nullptr ? nullptr : dynamic_cast<TailSource*>(input.stream->lines());
  if (st.ok() && tail != nullptr) {
    StreamJoinState join = input.stream->SaveJoinState();
    join.worker = workers_->rank();
    join.num_workers = workers_->size();
    join.step = step;
    if (input.borrowed != nullptr) {
      std::vector<Example> untrained = input.borrowed->Untrained();
      untrained.insert(untrained.end(), std::make_move_iterator(join.examples.begin()),
                       std::make_move_iterator(join.examples.end()));
      join.examples = std::move(untrained);
    }
    st = WriteJoinStateFile(dir + "/" + JoinStateFileName(workers_->rank()), join);
    if (st.ok()) {
      st = WriteFileAtomic(dir + "/worker-" + std::to_string(workers_->rank()) + ".position",
                           tail->Position().Serialize());
    }
  }
  if (st.ok() && !streaming_) {
    InputCut cut;
    cut.worker = workers_->rank();
    cut.num_workers = workers_->size();
    cut.step = step;
    cut.epoch = input.epoch;
    cut.files = *input.files;
    cut.consumed = *input.consumed;
    st = WriteInputCut(dir + "/" + InputCutFileName(workers_->rank()), cut);
  }
  // Incremental: the rows changed since the previous checkpoint of this
  // run, applied over it on restore (its MANIFEST names it as parent).
  const bool incremental = checkpoints_taken_ > 0 && ck_.full_every > 1 &&
                           checkpoints_taken_ % ck_.full_every != 0 &&
                           options_.tables->CanSaveChanged() && !tables_saved_outside_;
  tables_saved_outside_ = false;
  int64_t copied = 0;
  auto t_copied = t_cut;
  if (st.ok() && leader_) {
    if (background_) {
      // Servers copy their rows and answer; they write in the background.
      StatusOr<int64_t> c = options_.tables->StartSave(dir, incremental);
      st = c.status();
      if (c.ok()) copied = *c;
    } else {
      st = incremental ? options_.tables->SaveChanged(dir) : options_.tables->Save(dir);
    }
    t_copied = std::chrono::steady_clock::now();
    if (st.ok()) st = SaveDense(model, dir + "/dense.bin");
    if (st.ok()) st = SaveDenseOptimizer(model, dir + "/dense_opt.bin");
    if (st.ok()) {
      std::string text;
      google::protobuf::TextFormat::PrintToString(job_, &text);
      std::ofstream out(dir + "/job.pbtxt", std::ios::trunc);
      out << text;
      if (!out.flush()) st = Internal(dir + "/job.pbtxt: cannot write");
    }
  }
  // The ledger's `c` line goes in before the workers agree: a worker
  // that dies after the agreement (worker 0 may still publish) has it
  // already, so every checkpoint a restore may name has its `c` line in
  // every worker's ledger. (A `c` line of a checkpoint that then fails
  // is never named by a restore.)
  if (st.ok() && ledger_ != nullptr) st = ledger_->AppendCheckpoint(next_checkpoint_, step);
  float failed = st.ok() ? 0.0f : 1.0f;
  FRESHET_RETURN_IF_ERROR(workers_->AllReduceSum(&failed, 1));
  if (!st.ok()) return st.WithContext(dir);
  if (failed > 0) return Status(StatusCode::kAborted, dir + ": another worker failed");
  if (leader_) {
    PendingCheckpoint p;
    p.root = ck_.dir;
    p.dir = dir;
    p.keep = ck_.keep;
    p.manifest.id = next_checkpoint_;
    p.manifest.step = step;
    p.manifest.parent = incremental ? next_checkpoint_ - 1 : 0;
    p.manifest.num_servers = ck_.num_servers;
    p.manifest.num_workers = workers_->size();
    p.manifest.unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
    p.copied_bytes = copied;
    p.print = background_ && options_.print_status;
    if (background_) {
      p.wait_written = [tables = options_.tables, dir, copied] {
        return tables->WaitSaved(dir, copied);
      };
    }
    const auto t_agreed = std::chrono::steady_clock::now();
    p.pause_ms = std::chrono::duration<double, std::milli>(t_agreed - t0).count();
    auto ms = [](auto a, auto b) {
      return std::chrono::duration<double, std::milli>(b - a).count();
    };
    // Where the pause went (docs/CHECKPOINTS.md "Figures").
    LOG(INFO) << dir << " pause " << p.pause_ms << " ms: previous write " << ms(t0, t_waited)
              << ", barrier " << ms(t_waited, t_cut) << ", tables " << ms(t_cut, t_copied)
              << ", dense files + agree " << ms(t_copied, t_agreed);
    publisher_.Start(std::move(p));
    // Without background writes the manifest is part of the pause.
    if (!background_) {
      FRESHET_RETURN_IF_ERROR(FinishCheckpoint(&publisher_, result_, t0, options_.print_status));
    }
  }
  ++next_checkpoint_;
  ++checkpoints_taken_;
  return Status::OK();
}

Status CheckpointDriver::FinishLast() {
  Status st = leader_ ? FinishCheckpoint(&publisher_, result_) : Status::OK();
  float failed = st.ok() ? 0.0f : 1.0f;
  FRESHET_RETURN_IF_ERROR(workers_->AllReduceSum(&failed, 1));
  if (!st.ok()) return st.WithContext("the last checkpoint");
  if (failed > 0)
    return Status(StatusCode::kAborted, "worker 0 failed to publish the last checkpoint");
  return Status::OK();
}

}  // namespace freshet
