// LabelJoiner: turns impressions and the reactions to them into labelled
// examples (docs/STREAMING.md, "Join semantics").
//
// An impression (request, item) at time t waits for a label event (the
// kinds in JoinOptions::label_kinds, default click) on the same
// (request, item) with event time in [t, t + window_ms]:
//   - when one arrives, the example is emitted at once with label 1 (joined);
//   - once the watermark passes t + window_ms (watermark > t + window_ms),
//     it is emitted with label 0 (expired). A label event exactly at
//     t + window_ms still counts: the watermark is the newest event time
//     read, so events at the watermark may still come.
// Reactions that arrive before their impression (out of order: another
// partition, or a producer's reordering) wait up to `early_hold_ms` of event
// time (until the watermark passes their time + early_hold_ms) and join when
// the impression comes; then they count as orphans.
//
// Counters (JoinCounters): every impression is emitted exactly once, as
// joined, expired or evicted, or counted duplicate; every reaction is
// joined, ignored (not a label kind), dup_labels (a second label event for an
// example already positive), late (outside its window, or after its example
// was emitted as a negative), mismatched (user differs from the
// impression's), or orphan (no impression came).
//
// Memory bound. The buffer holds at most `max_pending` entries: impressions
// waiting for their window, and markers of recently emitted examples (their
// key only, kept `early_hold_ms` past the window end so that duplicates and
// late reactions are told apart from orphans). When it is full, a new
// impression first drops the marker due earliest; without markers, the
// waiting impression whose window ends first is emitted early as a negative
// (evicted). Early reactions are bounded by `max_early` the same way (the
// oldest becomes an orphan).
//
// Freshness clocks (Example::read_unix_ms / label_unix_ms). An emitted
// example's read time is its impression event's Event::read_unix_ms. Its
// label time is: for a positive, the read time of the label event (or of
// the impression, when the label event came first: the label is known once
// both are); for a negative (expired, evicted or flushed), the wall time at
// which it was emitted (JoinOptions::now_unix_ms, read once per call that
// emits negatives). A label time is never below its read time.
//
// Checkpoints. SaveState() copies the whole state (waiting impressions with
// their values, markers, early reactions, watermark, counters; each entry
// with the stream partition its event came from, Event::partition) into a
// JoinerState (worker/stream/join_state.h: the file format); RestoreState()
// loads one into a new joiner. Joining the rest of a stream after a
// restore gives the examples and counters the uninterrupted joiner gives.
// The impressions' read times are not saved: examples of restored waiting
// impressions have read_unix_ms 0 (unknown).
//
// Thread safety: one thread uses a LabelJoiner.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "model/example.h"
#include "worker/stream/event.h"

namespace freshet {

struct JoinerState;  // worker/stream/join_state.h

struct JoinOptions {
  std::vector<EventKind> label_kinds = {EventKind::kClick};
  int64_t window_ms = 30000;     // attribution window, event time
  size_t max_pending = 1 << 20;  // entries (waiting impressions + markers)
  int64_t early_hold_ms = -1;    // < 0: window_ms
  size_t max_early = 1 << 16;    // reactions waiting for their impression
  // Wall clock (unix ms) stamped as the label time of negatives; empty: the
  // system clock. Tests inject one.
  std::function<int64_t()> now_unix_ms;
};

struct JoinCounters {
  int64_t impressions = 0;   // impression events (duplicates included)
  int64_t reactions = 0;     // reaction events of any kind
  int64_t joined = 0;        // examples emitted positive
  int64_t expired = 0;       // examples emitted negative when the window closed
  int64_t evicted = 0;       // examples emitted negative early: buffer full
  int64_t duplicate = 0;     // impressions seen again (same request, item)
  int64_t dup_labels = 0;    // label events for an example already positive
  int64_t late = 0;          // label events outside their window / after the negative
  int64_t orphan = 0;        // label events whose impression never came
  int64_t mismatched = 0;    // label events whose user differs from the impression's
  int64_t ignored = 0;       // reactions that are not label events
  int64_t early_joined = 0;  // of joined: the label event came before the impression
  int64_t emitted() const { return joined + expired + evicted; }
  // After Flush(): impressions == emitted() + duplicate, and reactions ==
  // joined + dup_labels + late + orphan + mismatched + ignored.
  // "imp 10 joined 2 expired 7 evicted 0 dup 1 late 0 orphan 0 ..."
  std::string ToString() const;
  // JSON object fields: "\"impressions\":10,...".
  std::string ToJsonFields() const;
  void Add(const JoinCounters& o);
};

// Thread safety: not thread-safe; one thread adds events and reads counters.
class LabelJoiner {
 public:
  // InvalidArgument for window_ms < 0, max_pending == 0, no label kinds or
  // an impression kind among them.
  static StatusOr<std::unique_ptr<LabelJoiner>> Create(const JoinOptions& options);

  // Adds one event (ev.values: the impression's feature values as the
  // examples will carry them). Examples that become ready are appended to
  // *out. ev.ms should be >= watermark - window (older impressions are
  // emitted as negatives by the next AdvanceWatermark).
  void Add(const Event& ev, std::vector<Example>* out);
  // Raises the watermark (event ms; lower values are ignored) and emits the
  // negatives whose windows closed, oldest first.
  void AdvanceWatermark(int64_t watermark_ms, std::vector<Example>* out);
  // End of stream: every waiting impression is emitted (expired), waiting
  // early reactions become orphans, the buffer is emptied.
  void Flush(std::vector<Example>* out);

  size_t waiting() const { return waiting_; }       // impressions waiting
  size_t entries() const { return index_.size(); }  // waiting + markers
  size_t early() const { return early_.size(); }
  int64_t watermark() const { return watermark_; }
  const JoinCounters& counters() const { return counters_; }

  // A copy of the whole state (see the file comment). O(entries); the
  // joiner is unchanged.
  JoinerState SaveState() const;
  // Loads `state` (saved by SaveState, possibly merged from several
  // joiners: JoinStateMerger) into this joiner. Keys are unique within one
  // saved state; when merging brought one (request, item) twice, the first
  // entry wins and a later waiting impression is counted `duplicate` (it
  // was counted as an impression where it was read), a later marker or
  // early reaction is dropped. Entries beyond max_pending stay until the
  // next impression makes room (evicting as usual). FailedPrecondition
  // unless the joiner is new (no event added, no watermark, no restore).
  Status RestoreState(const JoinerState& state);

 private:
  enum State : uint8_t { kFree, kWaiting, kPositive, kNegative };
  struct Entry {
    int64_t imp_ms = 0;
    int64_t read_unix_ms = 0;  // of the impression (Event::read_unix_ms); 0 unknown
    int32_t partition = 0;     // of the impression (Event::partition)
    float oracle = -1;
    uint32_t gen = 0;
    uint32_t key_len = 0;  // data[0, key_len) is "request\titem"
    State state = kFree;
    std::string data;  // key, then "\tuser\tv_1\t...\tv_n" while waiting
  };
  struct Due {
    int64_t due;
    uint32_t slot, gen;
    bool operator>(const Due& o) const { return due > o.due; }
  };
  using DueHeap = std::priority_queue<Due, std::vector<Due>, std::greater<Due>>;
  struct Early {
    int64_t ms;
    int32_t partition;
    std::string user;
  };

  explicit LabelJoiner(const JoinOptions& options);
  std::string_view Key(const Entry& e) const { return std::string_view(e.data.data(), e.key_len); }
  // The heap time of an entry's next action: its window's end while
  // waiting, the marker's expiry after.
  int64_t DueOf(const Entry& e) const {
    return e.imp_ms + options_.window_ms + (e.state == kWaiting ? 0 : hold_ms_);
  }
  // Adds a waiting impression (state kWaiting, indexed, on the window heap).
  uint32_t AddWaiting(int64_t imp_ms, int64_t read_unix_ms, int32_t partition, float oracle,
                      std::string data, uint32_t key_len);
  // Whether a heap item is current (a waiting-heap or marker-heap item).
  bool Live(const Due& d, bool waiting) const;
  // Appends e's example with `label`, known at wall time label_unix_ms.
  void Emit(Entry* e, float label, int64_t label_unix_ms, std::vector<Example>* out);
  // The wall clock (options_.now_unix_ms or the system clock).
  int64_t NowUnixMs() const;
  void ToMarker(uint32_t slot, State state);
  void Free(uint32_t slot);
  void MakeRoom(std::vector<Example>* out);
  uint32_t NewSlot();
  void ExpireEarly(bool all);

  JoinOptions options_;
  bool is_label_[kNumEventKinds] = {};
  int64_t hold_ms_;
  std::deque<Entry> slots_;  // stable addresses: index_ keys view into data
  std::vector<uint32_t> free_;
  std::unordered_map<std::string_view, uint32_t> index_;
  DueHeap waiting_heap_, marker_heap_;
  size_t waiting_ = 0;
  std::unordered_map<std::string, Early> early_;
  std::deque<std::pair<int64_t, std::string>> early_order_;  // (expiry ms, key), arrival order
  int64_t watermark_ = INT64_MIN;
  JoinCounters counters_;
  bool used_ = false;  // an event was added or a state restored
  std::string key_;    // scratch
};

}  // namespace freshet
