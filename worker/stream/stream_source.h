// StreamExampleSource: a live event stream as an ExampleSource, for the
// Trainer in streaming mode. Lines (from a LineStream: tailed files or
// sockets) are parsed as events, their impression values projected onto the
// columns the job's features use (by name, so producers may add or reorder
// columns), and joined into labelled examples by a LabelJoiner.
//
// Watermark. Each partition's watermark is the newest event time read from
// it. The worker's watermark is the minimum over its partitions that are
// not idle (LineStream::Idle: the reader found it caught up and quiet for
// `idle_partition` of wall time; a partition with unread data is never idle,
// so a slow reader does not close windows early; idle partitions do not hold
// time back, or a quiet producer would stop every window from closing), or
// the maximum over all partitions when every one is idle; minus
// `lateness_ms`. A partition the line stream knows but that gave no event
// yet (and is not idle) holds the watermark where it is. It never goes back;
// -1 before the first event.
//
// Bad records. A line that does not parse is counted and skipped, logged
// as "file:line: field ..." (the first 20, then every 1000th); past
// max(max_bad_records, max_bad_ratio * lines) Poll fails naming the counts
// and the last problem. A file or connection whose header is not a valid
// `freshet-events v1` header, or lacks a column the job uses, stops the
// stream (DataLoss naming it).
//
// Checkpoints. SaveJoinState() is the join state as of the lines read so
// far (the LineStream's position): the joiner, the per-partition and
// worker watermarks, and the examples emitted but not yet returned by
// Poll. RestoreJoinState() loads one (saved with a position the LineStream
// was opened at) before the first Poll; the restored examples come first.
//
// Thread safety: one thread uses a StreamExampleSource.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "worker/data/example_io.h"
#include "worker/stream/join_state.h"
#include "worker/stream/label_joiner.h"
#include "worker/stream/line_stream.h"

namespace freshet {

struct StreamSourceOptions {
  std::vector<std::string> columns;  // the example columns to produce, in order
  JoinOptions join;
  BadRecordPolicy policy;
  int64_t lateness_ms = 0;
  std::chrono::milliseconds idle_partition{1000};
};

// Thread safety: not thread-safe; the training thread polls it and reads
// its counters (status lines run on that thread too).
class StreamExampleSource : public ExampleSource {
 public:
  // InvalidArgument for bad join options or no columns.
  static StatusOr<std::unique_ptr<StreamExampleSource>> Create(std::unique_ptr<LineStream> lines,
                                                               StreamSourceOptions options);
  ~StreamExampleSource() override;

  // kExample, kNotNow when no example became ready before the deadline, kEnd
  // once the line stream ended and every window was closed and emitted.
  StatusOr<Outcome> Poll(Example* ex, std::chrono::steady_clock::time_point deadline) override;
  // lines: event lines read (headers excluded); examples: emitted; bad.
  const ReadStats& stats() const override { return stats_; }

  const JoinCounters& join_counters() const { return joiner_->counters(); }
  const LabelJoiner& joiner() const { return *joiner_; }
  // Event-time watermark, unix ms (see above); -1 before the first event.
  int64_t watermark_ms() const { return watermark_; }
  // The newest event time read from any partition; -1 before the first.
  int64_t newest_ms() const { return newest_; }
  LineStream* lines() { return lines_.get(); }

  // See the file comment. SaveJoinState leaves worker, num_workers and step
  // 0 (the caller's) and puts the examples not yet returned in `examples`.
  StreamJoinState SaveJoinState() const;
  // FailedPrecondition after the first Poll.
  Status RestoreJoinState(StreamJoinState state);

 private:
  struct Header;
  StreamExampleSource(std::unique_ptr<LineStream> lines, StreamSourceOptions options);
  Status HandleLine(const SourceLine& line);
  void UpdateWatermark();

  std::unique_ptr<LineStream> lines_;
  StreamSourceOptions options_;
  std::unique_ptr<LabelJoiner> joiner_;
  std::map<std::string, std::unique_ptr<Header>> headers_;  // by header text
  const std::string* last_header_ptr_ = nullptr;
  Header* last_header_ = nullptr;
  struct Partition {
    int64_t newest = -1;
  };
  std::map<int, Partition> partitions_;
  std::vector<Example> ready_;  // emitted, not yet returned: ready_[ready_pos_..]
  size_t ready_pos_ = 0;
  Event event_;
  ReadStats stats_;
  int64_t watermark_ = -1, newest_ = -1;
  int64_t since_watermark_ = 0;
  bool ended_ = false;
  std::string last_problem_;
};

}  // namespace freshet
