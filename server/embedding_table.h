// EmbeddingTable: one server's shard of a sparse embedding table.
//
// Memory layout. The table is split into P hash partitions (P fixed at
// creation; see sharding.h for which partition a key lands in). A partition
// has
//   - an open-addressing index (linear probing, power-of-two capacity, max
//     load 0.75, backward-shift deletion) of 4-byte slots: a 26-bit row id
//     and a 6-bit hash tag (63 of 64 probes that meet another key's slot are
//     rejected without reading its row; growing the index rehashes the
//     rows' keys, read in id order), and
//   - a row arena: rows live in fixed-size chunks of kRowsPerChunk rows that
//     never move when the index grows. Row ids are dense: removing a row
//     moves the partition's last row into its place (swap-remove).
// A row is one contiguous record, stride RowStride() bytes (rounded up to 8):
//   [uint64 key][u32 update_count][u32 version]
//   [u32 last_update_s][u32 last_access]   only with a TTL or max_rows
//   [dim weights][StateDim float state]
// Weights are fp32, or fp16 / bf16 with storage FP16 / BF16 (common/half.h;
// padded to 4 bytes); optimizer state is always fp32. There is no per-row
// heap allocation. Per row beyond key, weights and state: 8 bytes of
// metadata (16 with eviction) plus 5.3-10.7 bytes of index (4-byte slots at
// load 0.375-0.75): dim 16 fp32 Adagrad is 144 bytes a record (issue 16's
// bound: at most 152 with the index).
//
// Change log (for delta export, ChangedSince()). Each partition also keeps
// a vector of keys, `log`, and a version `floor`, with the invariant: every
// row of the partition whose RowMeta::version > floor has its key in the
// log. The log may also hold stale keys (rows removed since, rows whose
// version is <= floor) and, for a while, a key twice. A push or Upsert that
// raises a row's version above floor from <= floor (or creates the row)
// appends the key, so a row is appended at most once per export interval
// (more often only if it is removed and created again). An export at
// `since` >= floor walks the log instead of the partition's rows, keeps
// only the keys whose row version is > since and sets floor = since
// (not the new version: a failed publish asks again with the same since).
// Memory: 8 bytes per key, at most max(2 x rows, 4096) keys per partition
// (below ~5% of a dim-16 row). The log starts only with the first export
// (a table no exporter reads keeps none) and, when a partition's log
// outgrows its bound, is dropped: the next export of that partition scans
// its rows, as every export did before the log, and starts a new one.
// Dropping rather than compacting in place keeps pushes from stalling on an
// O(log) cleanup under the partition lock; a scan costs about what walking
// the oversized log would have. Both cases are counted in TableStats.
//
// Admission, eviction (docs/TABLES.md). With `admission` set, a key gets a
// row only once admitted (count-min sketch per partition, or a coin per
// push); until then pulls return the held-back value and pushes to it are
// dropped. With `eviction.max_rows` each partition holds at most its share
// of max_rows rows (a new row first evicts a sampled LRU/LFU victim); with
// `eviction.ttl_s` rows whose last push is older than ttl_s seconds of event
// time are evicted by an incremental sweep during pushes (and by
// EvictExpired()). Evicted rows that were ever pushed are logged as
// deletions for the exporter (TakeDeletions()).
//
// Concurrency. Each partition has its own mutex. A Pull/Push call groups its
// keys by partition and takes each partition's lock once, so requests from
// many workers proceed in parallel on different partitions; no global lock.
//
// Thread safety: every public method is thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/proto/table.pb.h"
#include "common/status.h"
#include "common/thread_pool.h"
#include "server/optimizer.h"

namespace freshet {

// A row's metadata as the API shows it (Lookup, ForEach, Upsert): what
// delta export, checkpoints and eviction need. A table without TTL or
// max_rows does not store last_update_s and last_access (reads 0).
struct RowMeta {
  uint32_t update_count = 0;   // pushes applied to this row (LFU frequency)
  uint32_t version = 0;        // table version of the last push (see Push())
  uint32_t last_update_s = 0;  // event time (unix s) of the last push; 0 = unknown
  uint32_t last_access = 0;    // partition access tick of the last pull/push (LRU)
};
static_assert(sizeof(RowMeta) == 16, "RowMeta must stay 16 bytes");

struct TableStats {
  int64_t rows = 0;
  int64_t bytes = 0;  // allocated: index + arenas + sketches + deletion and change logs
  int64_t keys_pulled = 0;
  int64_t keys_pushed = 0;
  int64_t held_back_pushes = 0;    // pushed keys dropped: not admitted yet
  int64_t held_back_pulls = 0;     // pulled keys answered with the held-back value
  int64_t admitted = 0;            // rows created by admission (admission on only)
  int64_t sketch_halvings = 0;     // admission counts aged (halved), over partitions
  int64_t evicted_ttl = 0;         // rows evicted by the TTL
  int64_t evicted_capacity = 0;    // rows evicted to stay within max_rows
  int64_t deletions_dropped = 0;   // deletions lost to the log's bound (see TakeDeletions)
  int64_t tombstones_dropped = 0;  // checkpoint tombstones lost to their bound (TombstonesSince)
  // Partitions that a delta export (since > 0) had to scan row by row
  // because their change log could not answer it (dropped at its bound, or
  // a cursor older than the log's floor). Full exports (since 0) are not
  // counted: they list every row anyway.
  int64_t export_full_scans = 0;
  int64_t export_log_overflows = 0;  // partition change logs dropped at their bound
};

class EmbeddingTable {
 public:
  // Small enough that a partition's last, partly filled chunk costs little
  // (~0.5 byte per row at 10M rows over 64 partitions).
  static constexpr uint32_t kRowsPerChunk = 1024;

  // `table_id` seeds the initializer. Invariant: num_partitions never
  // changes for the life of the table. REQUIRES: cfg passed
  // ValidateTableConfig.
  static StatusOr<std::unique_ptr<EmbeddingTable>> Create(int table_id,
                                                          const proto::TableConfig& cfg,
                                                          int num_partitions);
  ~EmbeddingTable();

  int table_id() const { return table_id_; }
  int dim() const { return dim_; }
  int state_dim() const { return state_dim_; }
  const proto::TableConfig& config() const { return cfg_; }
  // Bytes of one row record.
  size_t RowStride() const { return stride_; }

  // Writes n*dim floats to `out`, row i for keys[i]. Missing rows are created
  // with the table's initializer, except with admission on: then a missing
  // key gets the held-back value (zeros or the initializer's row) and no
  // row. `version` is only used to log rows a new row evicts.
  void Pull(const uint64_t* keys, size_t n, float* out, uint32_t version = 0);

  // Applies grads[i*dim .. (i+1)*dim) to keys[i] with the optimizer, creating
  // missing rows first (if admitted; else the key's gradient is dropped).
  // Duplicate keys are applied one after another in order. `version` is
  // recorded in each touched row's RowMeta. `event_time_s` (unix s; 0 =
  // unknown) advances the table's event clock (the max ever pushed), which
  // the TTL is measured against; touched rows' last update is stamped with
  // that clock (a late or replayed event refreshes the rows it trains).
  void Push(const uint64_t* keys, size_t n, const float* grads, uint32_t version,
            uint32_t event_time_s = 0);

  // Lets one Pull or Push of at least kParallelMinKeys keys spread its
  // partitions over up to `max_tasks` tasks: the calling thread and
  // `pool`'s threads (not owned; must outlive the table; null or
  // max_tasks <= 1: the caller alone). Partitions are independent (each has
  // its own lock, rows, change log and sketch), so the result is the same
  // as one thread's, key for key. Call before the table is shared.
  static constexpr size_t kParallelMinKeys = 4096;
  void SetRequestPool(ThreadPool* pool, int max_tasks);

  // Evicts every row the TTL has expired (no-op without a TTL), logging
  // deletions with `version`. Returns the number of rows evicted.
  int64_t EvictExpired(uint32_t version);
  // Whether a row with this metadata is past the TTL (checkpoints skip
  // such rows even before the sweep reaches them).
  bool Expired(const RowMeta& meta) const;
  // Newest event time (unix s) any push carried; 0 before the first.
  uint32_t event_clock() const { return clock_.load(std::memory_order_relaxed); }

  // Appends to *keys the keys of rows evicted with a version > `since`, and
  // forgets those with a version <= `since` (the exporter has them). The log
  // holds at most ~4M keys per table; beyond that the oldest half is dropped
  // (counted in TableStats::deletions_dropped; the serving tier then keeps
  // those rows until the next full snapshot).
  void TakeDeletions(uint32_t since, std::vector<uint64_t>* keys);

  // Checkpoint tombstones: a second eviction log, independent of the
  // exporter's, so an incremental checkpoint can delete rows evicted since
  // the previous save (server/table_io.h). Appends to *keys the keys of
  // rows evicted with a version > `since` (every evicted row, pulled-only
  // ones too, since full saves hold those; a key may appear more than
  // once; pull-time evictions carry the shard's next push version) and
  // forgets those with
  // a version <= `since` (the save at `since` succeeded, so no later
  // incremental save needs them). The log holds at most kMaxTombstones keys
  // per table (16 bytes each: 16 MiB); when it overflows it is emptied and
  // the newest version it held is remembered: TombstonesSince then returns
  // false for any `since` below it (the keys are incomplete: only a full
  // save is correct) until a save at or above that version.
  static constexpr size_t kMaxTombstones = size_t{1} << 20;
  bool TombstonesSince(uint32_t since, std::vector<uint64_t>* keys) const;
  // Forgets tombstones with a version <= `version` (after a full save).
  // Both are const: the log is save bookkeeping, not table contents.
  void ForgetTombstones(uint32_t version) const;

  // Delta export: appends to *keys and *values (dim fp32 floats per key,
  // widened from 16-bit storage) every row whose RowMeta::version > since,
  // each key once (pull-created rows, version 0, never). Each partition is
  // answered from its change log (see the header comment) when since >=
  // its floor: the cost is O(keys logged since the floor), and the log is
  // walked in chunks of kLogChunk keys, each under the partition lock, so
  // pushes wait at most one chunk. Otherwise (log not started or dropped at
  // its bound, or since below the floor) the partition's rows are scanned
  // under its lock, as ForEach does; a partition without a log starts one
  // then, with floor = since (or `version_now` when since is 0: the
  // exporter's next request after a full export is at that version).
  // `version_now`: the caller's version at the start of the export; every
  // push up to it has been applied. Rows pushed during the call may be
  // included too. Calls are serialized (an export mutex).
  static constexpr size_t kLogChunk = 4096;
  void ChangedSince(uint32_t since, uint32_t version_now, std::vector<uint64_t>* keys,
                    std::vector<float>* values);

  // Removes the row of `key`, if any, without logging a deletion or
  // tombstone (checkpoint restore applying a tombstone). Returns whether a
  // row was removed.
  bool Erase(uint64_t key);
  // Removes every row whose key `pred` selects, without logging (restore of
  // a full file in an incremental chain). Returns the rows removed. `pred`
  // runs under a partition lock: it must not call back into the table.
  int64_t EraseIf(const std::function<bool(uint64_t key)>& pred);

  // Copies the row's weights (dim floats, widened from fp16/bf16 storage)
  // and, if not null, its state (state_dim floats) and metadata. Returns
  // false (and creates nothing) if the key has no row.
  bool Lookup(uint64_t key, float* weights, float* state = nullptr, RowMeta* meta = nullptr) const;

  // Inserts or overwrites a row (checkpoint restore); may evict another to
  // stay within max_rows. `state` may be null (optimizer initial state). A
  // meta.last_update_s of 0 is stamped with the table's event clock.
  void Upsert(uint64_t key, const float* weights, const float* state, RowMeta meta);

  // Calls fn for every row, partition by partition, holding that partition's
  // lock: do not call back into the table from fn. Weights are fp32 (a
  // per-call buffer for 16-bit storage: valid only during the call).
  using RowVisitor = std::function<void(uint64_t key, const float* weights, const float* state,
                                        const RowMeta& meta)>;
  void ForEach(const RowVisitor& fn) const;

  int64_t size() const;
  TableStats stats() const;

  // A copy of the table as of now, to write a checkpoint from while this
  // table keeps taking pushes (background checkpoint writes,
  // docs/CHECKPOINTS.md): every row record as stored (fp16/bf16 rows stay
  // 16-bit), the index, the deletion log, the event clock and the counters.
  // Each partition is copied under its lock, one memcpy per chunk of
  // kRowsPerChunk rows (the last chunk only up to its last row). It is a
  // consistent cut only if no push runs while it is taken (partitions are
  // copied one after another). The copy has no admission sketch: only read from it
  // (ForEach, Lookup, Expired, size, TakeDeletions), never Pull or Push.
  // *copied_bytes (may be null) is set to the bytes the copy allocated
  // (rows + index + deletion log): the extra memory while it lives. The
  // copy has no change log (its first ChangedSince scans its rows).
  std::unique_ptr<EmbeddingTable> Snapshot(int64_t* copied_bytes = nullptr) const;

 private:
  struct Partition;
  EmbeddingTable(int table_id, const proto::TableConfig& cfg, int num_partitions,
                 std::unique_ptr<Optimizer> opt);

  // Keys of one Pull/Push call grouped by partition (a stable counting
  // sort): partition p's keys are keys[order[j]] for j in
  // [starts[p], starts[p+1]), in call order. `order` is empty when there is
  // one partition (identity).
  // A call's keys grouped by partition. Batch loops walk positions j in
  // partition order and read key[j] and hash[j] sequentially (reading
  // keys[order[j]] instead was a random access into the call's keys, and
  // each key was hashed four times).
  struct Batch {
    std::vector<uint32_t> order;   // position -> index in the call; empty: identity
    std::vector<uint64_t> key;     // position -> key; empty: identity (use the call's)
    std::vector<uint64_t> hash;    // position -> MixKey(key)
    std::vector<uint32_t> starts;  // partition p holds positions [starts[p], starts[p+1])
    std::vector<uint32_t> part;    // scratch: index in the call -> partition
  };
  void GroupByPartition(const uint64_t* keys, size_t n, Batch* batch) const;
  // In a batch loop at position j of `batch` (partition order), prefetches
  // the index slot of the key kSlotPrefetchDistance positions ahead, in
  // whichever partition it falls (without its lock: Partition's hint).
  void PrefetchSlotAhead(const Batch& batch, size_t n, uint32_t j) const;
  // Calls fn(p_begin, p_end) over ranges of partitions that cover them all:
  // one range, or with a request pool and n >= kParallelMinKeys, up to
  // request_tasks_ ranges of about equal keys, run at once (ParallelFor).
  template <typename Fn>
  void ForPartitionRanges(const Batch& batch, size_t n, Fn&& fn);

  // The helpers below REQUIRE part.mu held.
  // Writes the initial weights and optimizer state of a new row record;
  // `tmp` holds dim floats.
  void InitRow(char* row, uint64_t key, float* tmp) const;
  // Whether a push of a key with no row admits it (updates the sketch).
  bool Admit(Partition& part, uint64_t h);
  // Appends a row for `key` (known absent), evicting a victim first if the
  // partition is at capacity. Key and meta set; weights/state are not.
  char* AddRow(Partition& part, uint64_t key, uint64_t h, uint32_t version);
  // Removes row `id`; with `log`, logs a tombstone, and a deletion if the
  // row was ever pushed.
  void RemoveRow(Partition& part, uint32_t id, uint32_t version, bool log = true);
  // Records in the partition's change log that a row's version went from
  // `prev` (0 for a new row) to `now`.
  void LogChange(Partition& part, uint64_t key, uint32_t prev, uint32_t now);
  // Checks up to `budget` rows at the sweep cursor against the TTL.
  int64_t Sweep(Partition& part, uint32_t budget, uint32_t version);
  bool ExpiredAt(uint32_t last_update_s, uint32_t clock) const;

  // A record's metadata after its key: RowHead always; RowAccess only when
  // the table evicts (has_access_: ttl_s or max_rows set), else those
  // RowMeta fields are not stored and read as 0.
  struct RowHead {
    uint32_t update_count = 0;
    uint32_t version = 0;
  };
  struct RowAccess {
    uint32_t last_update_s = 0;
    uint32_t last_access = 0;
  };
  static RowHead* Head(char* row) { return reinterpret_cast<RowHead*>(row + sizeof(uint64_t)); }
  RowAccess* Access(char* row) const {
    return has_access_ ? reinterpret_cast<RowAccess*>(row + sizeof(uint64_t) + sizeof(RowHead))
                       : nullptr;
  }
  RowMeta GetMeta(char* row) const;
  void SetMeta(char* row, const RowMeta& meta) const;

  // Weights of a row record, in storage format.
  char* WeightBytes(char* row) const { return row + header_bytes_; }
  float* State(char* row) const {
    return reinterpret_cast<float*>(row + header_bytes_ + weight_bytes_);
  }
  void ReadWeights(const char* row, float* out) const;
  void WriteWeights(char* row, const float* in) const;

  const int table_id_;
  const proto::TableConfig cfg_;
  const int dim_;
  const int state_dim_;
  const proto::TableConfig::Storage storage_;
  const size_t weight_bytes_;
  const bool has_access_;  // RowAccess stored (TTL or max_rows)
  const bool lru_;         // max_rows: pulls and pushes stamp last_access
  const size_t header_bytes_;
  const size_t stride_;
  // Admission: off when min_count <= 1 and probability == 0.
  const bool admit_all_;
  const uint32_t min_count_;
  const uint64_t admit_threshold_;  // probability * 2^64 (saturated)
  const uint32_t ttl_s_;
  std::unique_ptr<Optimizer> opt_;
  // Each Partition holds its own mutex, which guards all of its fields.
  std::vector<std::unique_ptr<Partition>> partitions_;
  std::atomic<uint32_t> clock_{0};      // max event time pushed (unix s)
  ThreadPool* request_pool_ = nullptr;  // SetRequestPool
  int request_tasks_ = 1;
  std::atomic<int64_t> keys_pulled_{0};
  std::atomic<int64_t> keys_pushed_{0};
  std::atomic<int64_t> held_back_pushes_{0}, held_back_pulls_{0}, admitted_{0};
  std::atomic<int64_t> evicted_ttl_{0}, evicted_capacity_{0}, deletions_dropped_{0};
  std::atomic<int64_t> tombstones_dropped_{0};
  std::atomic<int64_t> export_full_scans_{0}, export_log_overflows_{0};
  // Serializes ChangedSince calls (one walker per change log).
  std::mutex export_mu_;
};

}  // namespace freshet
