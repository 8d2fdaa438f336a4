// EmbeddingTable: one server's shard of a sparse embedding table.
//
// Memory layout. The table is split into P hash partitions (P fixed at
// creation; see sharding.h for which partition a key lands in). A partition
// has
//   - an open-addressing index (linear probing, power-of-two capacity, max
//     load 0.75) of 8-byte slots {uint32 row id, uint32 hash tag}, and
//   - a row arena: rows live in fixed-size chunks of kRowsPerChunk rows that
//     never move (growing the index never copies rows).
// A row is one contiguous record, stride RowStride() bytes:
//   [uint64 key][RowMeta (8 bytes)][dim float weights][StateDim float state]
// There is no per-row heap allocation.
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
#include "server/optimizer.h"

namespace freshet {

// Per-row metadata, 8 bytes: what delta export and eviction need.
struct RowMeta {
  uint32_t update_count = 0;  // pushes applied to this row
  uint32_t version = 0;       // table version of the last push (see Push())
};
static_assert(sizeof(RowMeta) == 8, "RowMeta must stay 8 bytes");

struct TableStats {
  int64_t rows = 0;
  int64_t bytes = 0;  // allocated: index + arenas + fixed overhead
  int64_t keys_pulled = 0;
  int64_t keys_pushed = 0;
};

class EmbeddingTable {
 public:
  static constexpr uint32_t kRowsPerChunk = 4096;

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
  // with the table's initializer.
  void Pull(const uint64_t* keys, size_t n, float* out);

  // Applies grads[i*dim .. (i+1)*dim) to keys[i] with the optimizer, creating
  // missing rows first. Duplicate keys are applied one after another in
  // order. `version` is recorded in each touched row's RowMeta.
  void Push(const uint64_t* keys, size_t n, const float* grads, uint32_t version);

  // Copies the row's weights (dim floats) and, if not null, its state
  // (state_dim floats) and metadata. Returns false (and creates nothing) if
  // the key has no row.
  bool Lookup(uint64_t key, float* weights, float* state = nullptr, RowMeta* meta = nullptr) const;

  // Inserts or overwrites a row (checkpoint restore). `state` may be null
  // (optimizer initial state).
  void Upsert(uint64_t key, const float* weights, const float* state, RowMeta meta);

  // Calls fn for every row, partition by partition, holding that partition's
  // lock: do not call back into the table from fn.
  using RowVisitor = std::function<void(uint64_t key, const float* weights, const float* state,
                                        const RowMeta& meta)>;
  void ForEach(const RowVisitor& fn) const;

  int64_t size() const;
  TableStats stats() const;

 private:
  struct Partition;
  EmbeddingTable(int table_id, const proto::TableConfig& cfg, int num_partitions,
                 std::unique_ptr<Optimizer> opt);

  // Keys of one Pull/Push call grouped by partition (a stable counting
  // sort): partition p's keys are keys[order[j]] for j in
  // [starts[p], starts[p+1]), in call order. `order` is empty when there is
  // one partition (identity).
  struct Batch {
    std::vector<uint32_t> part;
    std::vector<uint32_t> order;
    std::vector<uint32_t> starts;
  };
  void GroupByPartition(const uint64_t* keys, size_t n, Batch* batch) const;
  // Writes the initial weights and optimizer state of a new row record.
  void InitRow(char* row, uint64_t key) const;

  float* Weights(char* row) const { return reinterpret_cast<float*>(row + kHeaderBytes); }
  float* State(char* row) const { return Weights(row) + dim_; }
  static RowMeta* Meta(char* row) { return reinterpret_cast<RowMeta*>(row + sizeof(uint64_t)); }

  static constexpr size_t kHeaderBytes = sizeof(uint64_t) + sizeof(RowMeta);

  const int table_id_;
  const proto::TableConfig cfg_;
  const int dim_;
  const int state_dim_;
  const size_t stride_;
  std::unique_ptr<Optimizer> opt_;
  // Each Partition holds its own mutex, which guards all of its fields.
  std::vector<std::unique_ptr<Partition>> partitions_;
  std::atomic<int64_t> keys_pulled_{0};
  std::atomic<int64_t> keys_pushed_{0};
};

}  // namespace freshet
