// The streaming half of a worker's job (RunWorkerJob, worker/job_runner.h),
// private to it: opening this worker's stream, the source the trainer
// borrows (read positions and the examples read but not trained yet, for
// checkpoints), the stream position file, and the join counters gathered
// on worker 0.
//
// Thread safety: each class says; the functions are reentrant.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "common/collective.h"
#include "common/proto/job.pb.h"
#include "common/status.h"
#include "worker/data/example_io.h"
#include "worker/job_result.h"
#include "worker/stream/stream_source.h"
#include "worker/stream/tail_source.h"

namespace freshet {

// Creates `path` and its missing parents (mode 0755). Internal naming the
// directory and errno.
Status MakeDirs(const std::string& path);

// The example columns a streaming job's features read: each slot's and
// dense feature's column, first use first, without repeats.
std::vector<std::string> StreamColumns(const proto::FeatureConfig& features);

// This worker's stream (worker `me` of `n`): its partitions of stream.dir
// (created if missing: the producer may start after the job), from
// `restore` when not null; or, without a directory, its own TCP port
// (tcp_port + me) or unix socket (<unix_socket>.<me>).
StatusOr<std::unique_ptr<StreamExampleSource>> OpenStream(const proto::JobConfig& job,
                                                          const std::vector<std::string>& columns,
                                                          const BadRecordPolicy& policy, int me,
                                                          int n, const TailPosition* restore);

// Thread safety: as the source it forwards to.
// Forwards to a source the job keeps (to read a stream's counters after
// training).
// TakeConsumed gives the tail's read position (TailPosition text) when the
// stream is a TailSource: the position after the examples of the batch.
// With `keep_untrained` (streaming checkpoints) it also keeps a copy of the
// examples of every batch read until Trained() says the trainer trained it:
// at a checkpoint those are the read-ahead batch, which the join state
// saves (the reader's position is past them).
class BorrowedSource : public ExampleSource {
 public:
  BorrowedSource(StreamExampleSource* s, bool keep_untrained)
      : s_(s),
        tail_(dynamic_cast<TailSource*>(s->lines())),
        keep_(keep_untrained && tail_ != nullptr) {}
  StatusOr<Outcome> Poll(Example* ex, std::chrono::steady_clock::time_point deadline) override {
    StatusOr<Outcome> got = s_->Poll(ex, deadline);
    if (keep_ && got.ok() && *got == Outcome::kExample) reading_.push_back(*ex);
    return got;
  }
  const ReadStats& stats() const override { return s_->stats(); }
  void TakeConsumed(ConsumedInput* out) override {
    if (tail_ != nullptr) out->position = tail_->Position().Serialize();
    if (keep_) {
      read_.push_back(std::move(reading_));
      reading_.clear();
    }
  }
  // Failed feature encoding: never trained, so not kept either.
  void UncountLast() override {
    if (keep_ && !reading_.empty()) reading_.pop_back();
  }
  // The trainer trained the batch whose reads gave `input` (after_batch).
  // Batches are trained in the order read; a batch with no position was
  // never read (the trainer's empty batches after the end).
  void Trained(const ConsumedInput& input) {
    if (keep_ && !input.position.empty() && !read_.empty()) read_.pop_front();
  }
  // The examples returned but not trained yet, in order.
  std::vector<Example> Untrained() const {
    std::vector<Example> out;
    for (const auto& batch : read_) out.insert(out.end(), batch.begin(), batch.end());
    out.insert(out.end(), reading_.begin(), reading_.end());
    return out;
  }

 private:
  StreamExampleSource* s_;
  const TailSource* tail_;
  const bool keep_;
  std::vector<Example> reading_;           // since the last TakeConsumed
  std::deque<std::vector<Example>> read_;  // batches read, not yet trained
};

// Streaming from a directory: this worker's read position, saved about
// every second (and at the end) to <work_dir>/stream-positions/worker-<i>.position
// (TailPosition text, replaced atomically), for the reliability work to
// resume from. A failed write is logged, never fatal.
//
// Thread safety: one thread (the training thread).
class StreamPositionFile {
 public:
  // Creates the directory for a job streaming from a directory; otherwise
  // Save does nothing.
  static StatusOr<StreamPositionFile> Create(const proto::JobConfig& job, int worker);
  // Saves `text` (a TailPosition), or when empty the reader's current
  // position of `stream` (nothing if it is not a TailSource or null).
  void Save(StreamExampleSource* stream, const std::string& text);
  // Whether a second has passed since the last Save.
  bool Due() const { return std::chrono::steady_clock::now() - last_ >= std::chrono::seconds(1); }

 private:
  std::string path_;  // empty: not streaming from a directory
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// Every worker's join counters, bad event lines and lines read, summed into
// worker 0's `result` (join, stream_bad, stream_lines). Collective: every
// worker calls it.
Status GatherJoinCounters(const StreamExampleSource& stream, Collective* workers,
                          JobResult* result);

}  // namespace freshet
