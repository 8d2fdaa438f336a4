#include "server/embedding_table.h"

#include <glog/logging.h>

#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "common/sharding.h"
#include "server/initializer.h"

namespace freshet {
namespace {

// Index slot: which row, plus 32 hash bits so most probes that hit another
// key's slot are rejected without touching that key's row.
struct Slot {
  uint32_t row;
  uint32_t tag;
};
static_assert(sizeof(Slot) == 8, "index slots are 8 bytes");

constexpr uint32_t kEmptyRow = std::numeric_limits<uint32_t>::max();
constexpr size_t kInitialSlots = 16;  // power of two
// How many keys ahead batch loops prefetch index slots, then rows.
constexpr uint32_t kSlotPrefetchDistance = 12;
constexpr uint32_t kRowPrefetchDistance = 4;

// The partition uses the low 32 hash bits (PartitionOfHash); the tag and the
// probe start use the independent high 32 bits.
inline uint32_t TagOfHash(uint64_t h) { return static_cast<uint32_t>(h >> 32); }

std::unique_ptr<Slot[]> NewSlots(size_t n) {
  std::unique_ptr<Slot[]> slots(new Slot[n]);
  std::memset(slots.get(), 0xff, n * sizeof(Slot));  // every row id = kEmptyRow
  return slots;
}

inline uint64_t KeyOfRow(const char* row) {
  uint64_t key;
  std::memcpy(&key, row, sizeof(key));
  return key;
}

// Stride of a row record: header, weights, state, rounded up to 8 bytes so
// every record's key is aligned.
size_t RowStrideFor(int dim, int state_dim) {
  const size_t bytes =
      sizeof(uint64_t) + sizeof(RowMeta) + sizeof(float) * (static_cast<size_t>(dim) + state_dim);
  return (bytes + 7) & ~size_t{7};
}

}  // namespace

// One hash partition: index + row arena. Every field is guarded by `mu`;
// the methods below REQUIRE `mu` to be held.
struct EmbeddingTable::Partition {
  explicit Partition(size_t row_stride)
      : stride(row_stride),
        chunk_bytes(row_stride * kRowsPerChunk),
        slots(NewSlots(kInitialSlots)),
        mask(kInitialSlots - 1) {}

  char* Row(uint32_t id) const {
    return chunks[id / kRowsPerChunk].get() + static_cast<size_t>(id % kRowsPerChunk) * stride;
  }

  // Batch loops call PrefetchSlot a few keys ahead and PrefetchRow a couple
  // of keys later, when the slot is likely in cache. Both are only hints.
  void PrefetchSlot(uint64_t h) const { __builtin_prefetch(&slots[TagOfHash(h) & mask]); }
  void PrefetchRow(uint64_t h) const {
    const Slot s = slots[TagOfHash(h) & mask];
    if (s.row != kEmptyRow && s.tag == TagOfHash(h)) __builtin_prefetch(Row(s.row));
  }

  // Returns the row record of `key` (with hash h), or nullptr.
  char* Find(uint64_t key, uint64_t h) const {
    const uint32_t tag = TagOfHash(h);
    for (size_t i = tag & mask;; i = (i + 1) & mask) {
      const Slot s = slots[i];
      if (s.row == kEmptyRow) return nullptr;
      if (s.tag == tag) {
        char* row = Row(s.row);
        if (KeyOfRow(row) == key) return row;
      }
    }
  }

  // Returns the row record of `key`, appending a new record if there is none.
  // A new record has its key set and zero meta; weights and state are left
  // for the caller (*created = true).
  char* FindOrAdd(uint64_t key, uint64_t h, bool* created) {
    const uint32_t tag = TagOfHash(h);
    size_t i = tag & mask;
    for (;; i = (i + 1) & mask) {
      const Slot s = slots[i];
      if (s.row == kEmptyRow) break;
      if (s.tag == tag) {
        char* row = Row(s.row);
        if (KeyOfRow(row) == key) {
          *created = false;
          return row;
        }
      }
    }
    if ((static_cast<uint64_t>(num_rows) + 1) * 4 > (static_cast<uint64_t>(mask) + 1) * 3) {
      Grow();  // keep load <= 0.75
      i = tag & mask;
      while (slots[i].row != kEmptyRow) i = (i + 1) & mask;
    }
    CHECK_LT(num_rows, kEmptyRow) << "embedding table partition is full";
    const uint32_t id = num_rows;
    if (id % kRowsPerChunk == 0) {
      // Uninitialized on purpose: rows are written when they are created.
      chunks.push_back(std::unique_ptr<char[]>(new char[chunk_bytes]));
    }
    ++num_rows;
    slots[i] = Slot{id, tag};
    char* row = Row(id);
    std::memcpy(row, &key, sizeof(key));
    *Meta(row) = RowMeta();
    *created = true;
    return row;
  }

  // Doubles the index. Slots carry their tag, so rows are never touched.
  void Grow() {
    const size_t new_size = (mask + 1) * 2;
    const size_t new_mask = new_size - 1;
    std::unique_ptr<Slot[]> grown = NewSlots(new_size);
    for (size_t i = 0; i <= mask; ++i) {
      const Slot s = slots[i];
      if (s.row == kEmptyRow) continue;
      size_t j = s.tag & new_mask;
      while (grown[j].row != kEmptyRow) j = (j + 1) & new_mask;
      grown[j] = s;
    }
    slots = std::move(grown);
    mask = new_mask;
  }

  int64_t Bytes() const {
    return static_cast<int64_t>(sizeof(*this) + (mask + 1) * sizeof(Slot) +
                                chunks.capacity() * sizeof(chunks[0]) +
                                chunks.size() * chunk_bytes);
  }

  mutable std::mutex mu;
  const size_t stride;
  const size_t chunk_bytes;
  std::unique_ptr<Slot[]> slots;  // mask + 1 slots
  size_t mask;
  uint32_t num_rows = 0;                        // row ids [0, num_rows) are live
  std::vector<std::unique_ptr<char[]>> chunks;  // kRowsPerChunk rows each
};

StatusOr<std::unique_ptr<EmbeddingTable>> EmbeddingTable::Create(int table_id,
                                                                 const proto::TableConfig& cfg,
                                                                 int num_partitions) {
  if (num_partitions < 1) {
    return InvalidArgument("table '" + cfg.name() + "': num_partitions must be >= 1, got " +
                           std::to_string(num_partitions));
  }
  if (cfg.dim() < 1 || cfg.dim() > 4096) {
    return InvalidArgument("table '" + cfg.name() + "': dim must be in [1, 4096], got " +
                           std::to_string(cfg.dim()));
  }
  auto opt = Optimizer::Create(cfg.optimizer());
  if (!opt.ok()) return opt.status().WithContext("table '" + cfg.name() + "'");
  return std::unique_ptr<EmbeddingTable>(
      new EmbeddingTable(table_id, cfg, num_partitions, std::move(opt).value()));
}

EmbeddingTable::EmbeddingTable(int table_id, const proto::TableConfig& cfg, int num_partitions,
                               std::unique_ptr<Optimizer> opt)
    : table_id_(table_id),
      cfg_(cfg),
      dim_(static_cast<int>(cfg.dim())),
      state_dim_(opt->StateDim(static_cast<int>(cfg.dim()))),
      stride_(RowStrideFor(dim_, state_dim_)),
      opt_(std::move(opt)) {
  partitions_.reserve(num_partitions);
  for (int p = 0; p < num_partitions; ++p) {
    partitions_.push_back(std::make_unique<Partition>(stride_));
  }
}

EmbeddingTable::~EmbeddingTable() = default;

void EmbeddingTable::GroupByPartition(const uint64_t* keys, size_t n, Batch* batch) const {
  CHECK_LT(n, size_t{kEmptyRow}) << "too many keys in one call";
  const int num_partitions = static_cast<int>(partitions_.size());
  std::vector<uint32_t>& starts = batch->starts;
  starts.assign(num_partitions + 1, 0);
  if (num_partitions == 1) {
    batch->order.clear();
    starts[1] = static_cast<uint32_t>(n);
    return;
  }
  std::vector<uint32_t>& part = batch->part;
  part.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t p = static_cast<uint32_t>(PartitionOfHash(MixKey(keys[i]), num_partitions));
    part[i] = p;
    ++starts[p + 1];
  }
  for (int p = 1; p <= num_partitions; ++p) starts[p] += starts[p - 1];
  // Stable scatter; starts[p] advances to the end of partition p...
  batch->order.resize(n);
  for (size_t i = 0; i < n; ++i) batch->order[starts[part[i]]++] = static_cast<uint32_t>(i);
  // ...so shift it back to the beginnings.
  for (int p = num_partitions; p > 0; --p) starts[p] = starts[p - 1];
  starts[0] = 0;
}

void EmbeddingTable::InitRow(char* row, uint64_t key) const {
  InitializeRow(cfg_.initializer(), table_id_, key, Weights(row), dim_);
  opt_->InitState(State(row), dim_);
}

void EmbeddingTable::Pull(const uint64_t* keys, size_t n, float* out) {
  if (n == 0) return;
  Batch batch;
  GroupByPartition(keys, n, &batch);
  const bool identity = batch.order.empty();
  const size_t row_bytes = sizeof(float) * dim_;
  for (size_t p = 0; p < partitions_.size(); ++p) {
    const uint32_t begin = batch.starts[p];
    const uint32_t end = batch.starts[p + 1];
    if (begin == end) continue;
    Partition& part = *partitions_[p];
    std::lock_guard<std::mutex> lock(part.mu);
    for (uint32_t j = begin; j < end; ++j) {
      if (j + kSlotPrefetchDistance < end) {
        const uint32_t ahead = j + kSlotPrefetchDistance;
        part.PrefetchSlot(MixKey(keys[identity ? ahead : batch.order[ahead]]));
      }
      if (j + kRowPrefetchDistance < end) {
        const uint32_t ahead = j + kRowPrefetchDistance;
        part.PrefetchRow(MixKey(keys[identity ? ahead : batch.order[ahead]]));
      }
      const uint32_t i = identity ? j : batch.order[j];
      const uint64_t key = keys[i];
      bool created;
      char* row = part.FindOrAdd(key, MixKey(key), &created);
      if (created) InitRow(row, key);
      std::memcpy(out + static_cast<size_t>(i) * dim_, Weights(row), row_bytes);
    }
  }
  keys_pulled_.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
}

void EmbeddingTable::Push(const uint64_t* keys, size_t n, const float* grads, uint32_t version) {
  if (n == 0) return;
  Batch batch;
  GroupByPartition(keys, n, &batch);
  const bool identity = batch.order.empty();
  for (size_t p = 0; p < partitions_.size(); ++p) {
    const uint32_t begin = batch.starts[p];
    const uint32_t end = batch.starts[p + 1];
    if (begin == end) continue;
    Partition& part = *partitions_[p];
    std::lock_guard<std::mutex> lock(part.mu);
    for (uint32_t j = begin; j < end; ++j) {
      if (j + kSlotPrefetchDistance < end) {
        const uint32_t ahead = j + kSlotPrefetchDistance;
        part.PrefetchSlot(MixKey(keys[identity ? ahead : batch.order[ahead]]));
      }
      if (j + kRowPrefetchDistance < end) {
        const uint32_t ahead = j + kRowPrefetchDistance;
        part.PrefetchRow(MixKey(keys[identity ? ahead : batch.order[ahead]]));
      }
      // The sort is stable, so duplicates of a key apply in call order.
      const uint32_t i = identity ? j : batch.order[j];
      const uint64_t key = keys[i];
      bool created;
      char* row = part.FindOrAdd(key, MixKey(key), &created);
      if (created) InitRow(row, key);
      RowMeta* meta = Meta(row);
      opt_->Apply(Weights(row), State(row), grads + static_cast<size_t>(i) * dim_, dim_,
                  meta->update_count);
      if (meta->update_count != std::numeric_limits<uint32_t>::max()) ++meta->update_count;
      meta->version = version;
    }
  }
  keys_pushed_.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
}

bool EmbeddingTable::Lookup(uint64_t key, float* weights, float* state, RowMeta* meta) const {
  const uint64_t h = MixKey(key);
  const Partition& part = *partitions_[PartitionOfHash(h, static_cast<int>(partitions_.size()))];
  std::lock_guard<std::mutex> lock(part.mu);
  char* row = part.Find(key, h);
  if (row == nullptr) return false;
  std::memcpy(weights, Weights(row), sizeof(float) * dim_);
  if (state != nullptr) std::memcpy(state, State(row), sizeof(float) * state_dim_);
  if (meta != nullptr) *meta = *Meta(row);
  return true;
}

void EmbeddingTable::Upsert(uint64_t key, const float* weights, const float* state, RowMeta meta) {
  const uint64_t h = MixKey(key);
  Partition& part = *partitions_[PartitionOfHash(h, static_cast<int>(partitions_.size()))];
  std::lock_guard<std::mutex> lock(part.mu);
  bool created;
  char* row = part.FindOrAdd(key, h, &created);
  std::memcpy(Weights(row), weights, sizeof(float) * dim_);
  if (state != nullptr) {
    std::memcpy(State(row), state, sizeof(float) * state_dim_);
  } else {
    opt_->InitState(State(row), dim_);
  }
  *Meta(row) = meta;
}

void EmbeddingTable::ForEach(const RowVisitor& fn) const {
  for (const auto& p : partitions_) {
    std::lock_guard<std::mutex> lock(p->mu);
    for (uint32_t id = 0; id < p->num_rows; ++id) {
      char* row = p->Row(id);
      fn(KeyOfRow(row), Weights(row), State(row), *Meta(row));
    }
  }
}

int64_t EmbeddingTable::size() const {
  int64_t rows = 0;
  for (const auto& p : partitions_) {
    std::lock_guard<std::mutex> lock(p->mu);
    rows += p->num_rows;
  }
  return rows;
}

TableStats EmbeddingTable::stats() const {
  TableStats s;
  s.bytes = static_cast<int64_t>(sizeof(*this) + partitions_.capacity() * sizeof(partitions_[0]));
  for (const auto& p : partitions_) {
    std::lock_guard<std::mutex> lock(p->mu);
    s.rows += p->num_rows;
    s.bytes += p->Bytes();
  }
  s.keys_pulled = keys_pulled_.load(std::memory_order_relaxed);
  s.keys_pushed = keys_pushed_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace freshet
