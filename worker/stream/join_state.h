// The label-join state of a streaming worker at a checkpoint's cut, and its
// file format (worker-<w>.join in the checkpoint directory; encoder and
// decoder both live in join_state.cc). docs/CHECKPOINTS.md "Streaming
// restore" says how the job uses it.
//
// What a cut holds. A streaming worker's checkpoint saves its read position
// (TailPosition, worker-<w>.position) and this state, taken at the same
// moment, so that every event line before the position is exactly one of:
// trained (its example is in the tables), in `examples` (joined, emitted,
// not trained yet: the trainer's read-ahead batch and the source's queue),
// in `joiner` (an impression waiting for its label window, a marker of an
// emitted example, an early reaction), or only counted (duplicate, late,
// orphan, ...: `joiner.counters`).
//
// File format, version 1 (all integers little-endian):
//   "FRSHJOIN"  u32 version (1)
//   i32 worker  i32 num_workers  i64 step
//   i64 source watermark (ms; -1 none)  i64 joiner watermark (ms; INT64_MIN none)
//   u32 n_counters (12), then n_counters i64 counters in JoinCounters order:
//     impressions reactions joined expired evicted duplicate dup_labels late
//     orphan mismatched ignored early_joined
//   u32 n_partitions, then per partition: i32 partition, i64 newest event ms
//   u64 n_entries, then per entry:
//     u8 kind (1 waiting, 2 positive marker, 3 negative marker)
//     i32 partition  i64 impression ms  str key ("request\titem")
//     waiting only: f32 oracle  str user  u32 n_values  n_values x str
//   u64 n_early, then per early reaction (arrival order):
//     i32 partition  i64 ms  str key  str user
//   u64 n_examples, then per example (training order):
//     f32 label  i64 time (unix s)  f32 oracle  str user  u32 n_values  n x str
//   u64 FNV-1a 64 of every byte before it
// where str is u32 length + bytes. Readers refuse any other version, a
// checksum mismatch, a truncated file and trailing bytes with DataLoss
// naming the file (and the field, for a structurally bad file).
//
// Thread safety: plain values and free functions; JoinStateMerger is used
// by one thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "model/example.h"
#include "worker/stream/label_joiner.h"

namespace freshet {

// A LabelJoiner's whole state (LabelJoiner::SaveState / RestoreState).
struct JoinerState {
  enum class Kind : uint8_t { kWaiting = 1, kPositive = 2, kNegative = 3 };
  // An impression waiting for its label window, or the marker (key only)
  // of an example already emitted positive or negative.
  struct Entry {
    Kind kind = Kind::kWaiting;
    int32_t partition = 0;            // the stream partition of the impression
    int64_t imp_ms = 0;               // impression event time
    std::string key;                  // "request\titem"
    float oracle = -1;                // waiting only
    std::string user;                 // waiting only
    std::vector<std::string> values;  // waiting only: the example's values
    bool operator==(const Entry& o) const;
  };
  // A label event that came before its impression.
  struct Early {
    int32_t partition = 0;  // the stream partition of the reaction
    int64_t ms = 0;
    std::string key;  // "request\titem"
    std::string user;
    bool operator==(const Early& o) const;
  };
  int64_t watermark = INT64_MIN;  // INT64_MIN: none yet
  std::vector<Entry> entries;     // any order
  std::vector<Early> early;       // arrival order
  JoinCounters counters;
  // Impressions waiting (entries of kind kWaiting).
  size_t waiting() const;
  bool operator==(const JoinerState& o) const;
};

// One streaming worker's checkpointed join state (see the file comment).
struct StreamJoinState {
  int worker = 0, num_workers = 0;              // who saved it
  int64_t step = 0;                             // the checkpoint's step
  int64_t watermark_ms = -1;                    // the stream source's watermark (-1: none)
  std::map<int32_t, int64_t> partition_newest;  // newest event ms per partition read
  JoinerState joiner;
  std::vector<Example> examples;  // joined, not trained yet, in training order
  bool operator==(const StreamJoinState& o) const;
};

bool operator==(const JoinCounters& a, const JoinCounters& b);

// "worker-<w>.join".
std::string JoinStateFileName(int worker);

// The file's bytes (checksum trailer included), and back. Decode: DataLoss
// naming `name` (and the field) for anything but a whole version-1 file.
std::string EncodeJoinState(const StreamJoinState& state);
StatusOr<StreamJoinState> DecodeJoinState(std::string_view data, const std::string& name);

// Writes `state` to `path` through common/file_io.h (temporary file, fsync,
// rename; retried; Internal naming the path on failure).
Status WriteJoinStateFile(const std::string& path, const StreamJoinState& state);
// NotFound without the file; DataLoss naming it if damaged.
StatusOr<StreamJoinState> ReadJoinStateFile(const std::string& path);

// Merges the states of a checkpoint's old workers into the state of new
// worker `worker` of `num_workers` (the same or another count). Partition
// P is read by worker P mod num_workers (as TailSource assigns it), so:
//   - waiting impressions, markers and partition watermarks of partition P
//     go to worker P mod num_workers: the worker that will read P's label
//     events and duplicates;
//   - early reactions go by their own partition (where their impression
//     will come, when producers keep a request on one partition);
//   - joined examples and counters of old worker w go to new worker
//     w mod num_workers: an example's label is final, so any one worker may
//     train it (each old worker's go to exactly one new worker), and the
//     counters' sum over the workers, which the job reports, is kept;
//   - the watermarks (joiner and source) are the minimum over the old
//     workers that gave this worker partitions or entries: no window closes
//     earlier than where its old worker had it; the restored partitions'
//     newest times raise it again on the first update.
// With the same worker count each new worker gets exactly its old state.
class JoinStateMerger {
 public:
  JoinStateMerger(int worker, int num_workers);
  // Takes what belongs to this worker from one old worker's state.
  void Add(StreamJoinState old);
  // The merged state (worker, num_workers: the new ones; step: the last
  // added). Call once.
  StreamJoinState Take();

 private:
  const int worker_, num_workers_;
  bool have_watermark_ = false;
  StreamJoinState merged_;
};

}  // namespace freshet
