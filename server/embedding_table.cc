#include "server/embedding_table.h"

#include <glog/logging.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "common/half.h"
#include "common/prefetch.h"
#include "common/sharding.h"
#include "server/initializer.h"

namespace freshet {
namespace {

// Index slot, 4 bytes: the row id in the low kRowBits bits and a 6-bit hash
// tag above it, so 63 of 64 probes that hit another key's slot are rejected
// without touching that key's row. All ones: empty.
using Slot = uint32_t;
constexpr int kRowBits = 26;
constexpr uint32_t kRowMask = (uint32_t{1} << kRowBits) - 1;
constexpr Slot kEmptySlot = std::numeric_limits<uint32_t>::max();
// Row ids are < kRowMask (a slot of row kRowMask and tag 63 would read as
// empty): at most 67,108,863 rows per partition.
constexpr uint32_t kMaxPartitionRows = kRowMask;
// Batch loops (Pull, Push) handle at most this many keys per call.
constexpr size_t kMaxBatchKeys = std::numeric_limits<uint32_t>::max() - 1;
inline uint32_t SlotRow(Slot s) { return s & kRowMask; }
constexpr size_t kInitialSlots = 16;  // power of two
// How many keys ahead batch loops prefetch index slots, then rows.
constexpr uint32_t kSlotPrefetchDistance = 16;
constexpr uint32_t kRowPrefetchDistance = 6;
// Slots past the home slot that a row prefetch looks at for the key's tag.
constexpr int kRowPrefetchProbes = 8;

// The partition uses the low 32 hash bits (PartitionOfHash, a modulus: its
// low bits for a power-of-two partition count); the probe start uses the
// independent high 32 bits, the tag bits 26..31.
inline size_t HomeOfHash(uint64_t h) { return static_cast<size_t>(h >> 32); }
inline uint32_t TagOfHash(uint64_t h) { return static_cast<uint32_t>(h >> kRowBits) & 63u; }
inline Slot MakeSlot(uint32_t row, uint64_t h) { return row | (TagOfHash(h) << kRowBits); }
inline bool TagMatches(Slot s, uint64_t h) { return (s >> kRowBits) == TagOfHash(h); }

// An index array. From 64 KiB up it is its own mapping, so the array a
// Grow() replaces goes back to the kernel instead of staying resident in
// malloc's heap (at 10M rows the replaced arrays add up to ~2 bytes a row).
class SlotArray {
 public:
  static constexpr size_t kMapBytes = size_t{64} << 10;
  // n slots, every one empty (kEmptySlot).
  explicit SlotArray(size_t n) : n_(n) {
    const size_t bytes = n * sizeof(Slot);
    if (bytes >= kMapBytes) {
      void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      CHECK(p != MAP_FAILED) << "mmap of a " << bytes << "-byte table index failed";
      p_ = static_cast<Slot*>(p);
    } else {
      p_ = new Slot[n];
    }
    std::memset(p_, 0xff, bytes);
  }
  ~SlotArray() { Free(); }
  SlotArray(SlotArray&& o) noexcept : p_(o.p_), n_(o.n_) {
    o.p_ = nullptr;
    o.n_ = 0;
  }
  SlotArray& operator=(SlotArray&& o) noexcept {
    if (this != &o) {
      Free();
      p_ = o.p_;
      n_ = o.n_;
      o.p_ = nullptr;
      o.n_ = 0;
    }
    return *this;
  }
  Slot& operator[](size_t i) const { return p_[i]; }
  Slot* get() const { return p_; }

 private:
  void Free() {
    if (p_ == nullptr) return;
    if (n_ * sizeof(Slot) >= kMapBytes) {
      munmap(p_, n_ * sizeof(Slot));
    } else {
      delete[] p_;
    }
    p_ = nullptr;
  }
  Slot* p_ = nullptr;
  size_t n_ = 0;
};

inline uint64_t KeyOfRow(const char* row) {
  uint64_t key;
  std::memcpy(&key, row, sizeof(key));
  return key;
}

// Bytes of a row's weights in storage format, padded to 4 so the fp32
// state after them is aligned.
size_t WeightBytesFor(int dim, proto::TableConfig::Storage storage) {
  if (storage == proto::TableConfig::FP32) return sizeof(float) * static_cast<size_t>(dim);
  return (sizeof(uint16_t) * static_cast<size_t>(dim) + 3) & ~size_t{3};
}

// Stride of a row record: header, weights, state, rounded up to 8 bytes so
// every record's key is aligned.
size_t RowStrideFor(size_t header_bytes, size_t weight_bytes, int state_dim) {
  const size_t bytes = header_bytes + weight_bytes + sizeof(float) * state_dim;
  return (bytes + 7) & ~size_t{7};
}

inline uint64_t Mix64(uint64_t x) {  // splitmix64 finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

// Victims are the worst of this many sampled rows.
constexpr int kEvictionSamples = 8;
// Deletions a table's log holds (split over its partitions).
constexpr size_t kMaxDeletionLog = size_t{1} << 22;
// A partition's change log holds at most max(2 x rows, this) keys.
constexpr size_t kMinChangeLogBound = 4096;

struct Deletion {
  uint64_t key;
  uint32_t version;
};

}  // namespace

// One hash partition: index + row arena. Every field is guarded by `mu`;
// the methods below REQUIRE `mu` to be held.
struct EmbeddingTable::Partition {
  explicit Partition(size_t row_stride)
      : stride(row_stride),
        chunk_bytes(row_stride * kRowsPerChunk),
        slots(kInitialSlots),
        mask(kInitialSlots - 1) {
    PublishHint();
  }

  char* Row(uint32_t id) const {
    return chunks[id / kRowsPerChunk].get() + static_cast<size_t>(id % kRowsPerChunk) * stride;
  }

  // Batch loops call PrefetchSlot a few keys ahead and PrefetchRow a couple
  // of keys later, when the slot is likely in cache. Both are only hints.
  void PrefetchSlot(uint64_t h) const { PrefetchForRead(&slots[HomeOfHash(h) & mask]); }
  // Every cache line of the row's first `span` bytes (the loop's working
  // set: key and weights for a pull, the whole record for a push). Rows are
  // not line-aligned, so a dim-16 pull reads 2 or 3 lines, not 1.
  // The row is the first slot of the key's probe run whose tag matches: at
  // the table's load (0.375-0.75) a third or more of the keys sit past their
  // home slot, and a prefetch that looked at the home slot alone left each
  // of them a demand miss (a third of a dim-16 pull's time, perf).
  void PrefetchRow(uint64_t h, size_t span) const {
    size_t i = HomeOfHash(h) & mask;
    Slot s = slots[i];
    for (int probe = 0; s != kEmptySlot && !TagMatches(s, h); ++probe) {
      if (probe == kRowPrefetchProbes) return;
      i = (i + 1) & mask;
      s = slots[i];
    }
    if (s == kEmptySlot) return;
    PrefetchRange(Row(SlotRow(s)), span);
  }
  // For a loop at position j of [.., end) over keys key_at(position): the
  // slot kSlotPrefetchDistance positions ahead, the row's first `span` bytes
  // kRowPrefetchDistance ahead.
  template <typename Index, typename KeyAt>
  void PrefetchAhead(Index j, Index end, size_t span, KeyAt&& key_at) const {
    if (j + kSlotPrefetchDistance < end) PrefetchSlot(MixKey(key_at(j + kSlotPrefetchDistance)));
    if (j + kRowPrefetchDistance < end) PrefetchRow(MixKey(key_at(j + kRowPrefetchDistance)), span);
  }
  // A batch loop's rows, for the keys at positions [begin, end) of this
  // partition: on entering it, the first kRowPrefetchDistance rows
  // (PrefetchRowsAtEntry); then, at position j, the row kRowPrefetchDistance
  // ahead (PrefetchRowAhead). Their slots were prefetched earlier, across
  // partitions, by EmbeddingTable::PrefetchSlotAhead.
  // `hash` is the batch's hashes in position order.
  void PrefetchRowsAtEntry(uint32_t begin, uint32_t end, size_t span, const uint64_t* hash) const {
    const uint32_t last = std::min(end, begin + kRowPrefetchDistance);
    for (uint32_t k = begin; k < last; ++k) PrefetchRow(hash[k], span);
  }
  void PrefetchRowAhead(uint32_t j, uint32_t end, size_t span, const uint64_t* hash) const {
    if (j + kRowPrefetchDistance < end) PrefetchRow(hash[j + kRowPrefetchDistance], span);
  }

  // (slots, mask) as of the last change, for prefetching a slot without the
  // lock: a batch loop, still in one partition, prefetches the slots of keys
  // in the next ones (with 1,024 keys over 64 partitions, 16 a partition, a
  // look-ahead that stopped at the partition's end prefetched no slot at
  // all). Republished under mu whenever slots change; a stale pair only
  // makes the hint useless, since a prefetch never faults.
  std::atomic<uintptr_t> hint_slots{0};
  std::atomic<size_t> hint_mask{0};
  void PublishHint() {
    hint_slots.store(reinterpret_cast<uintptr_t>(slots.get()), std::memory_order_relaxed);
    hint_mask.store(mask, std::memory_order_relaxed);
  }
  void PrefetchSlotHint(uint64_t h) const {
    const uintptr_t base = hint_slots.load(std::memory_order_relaxed);
    const size_t m = hint_mask.load(std::memory_order_relaxed);
    PrefetchForRead(reinterpret_cast<const void*>(base + (HomeOfHash(h) & m) * sizeof(Slot)));
  }

  // Returns the row record of `key` (with hash h), or nullptr.
  char* Find(uint64_t key, uint64_t h) const {
    for (size_t i = HomeOfHash(h) & mask;; i = (i + 1) & mask) {
      const Slot s = slots[i];
      if (s == kEmptySlot) return nullptr;
      if (TagMatches(s, h)) {
        char* row = Row(SlotRow(s));
        if (KeyOfRow(row) == key) return row;
      }
    }
  }

  // Appends a record for `key` (REQUIRES: absent) and sets its key; the rest
  // of the record is left for the caller.
  char* Insert(uint64_t key, uint64_t h) {
    CHECK_LT(num_rows, kMaxPartitionRows) << "embedding table partition is full ("
                                          << kMaxPartitionRows << " rows; use more partitions)";
    if ((static_cast<uint64_t>(num_rows) + 1) * 4 > (static_cast<uint64_t>(mask) + 1) * 3) {
      Grow();  // keep load <= 0.75
    }
    size_t i = HomeOfHash(h) & mask;
    while (slots[i] != kEmptySlot) i = (i + 1) & mask;
    const uint32_t id = num_rows;
    if (id / kRowsPerChunk >= chunks.size()) {
      // Uninitialized on purpose: rows are written when they are created.
      chunks.push_back(std::unique_ptr<char[]>(new char[chunk_bytes]));
    }
    ++num_rows;
    slots[i] = MakeSlot(id, h);
    char* row = Row(id);
    std::memcpy(row, &key, sizeof(key));
    return row;
  }

  // Index slot of row `id`, whose key hashes to h.
  size_t SlotOfRow(uint32_t id, uint64_t h) const {
    for (size_t i = HomeOfHash(h) & mask;; i = (i + 1) & mask) {
      if (slots[i] != kEmptySlot && SlotRow(slots[i]) == id) return i;
      CHECK_NE(slots[i], kEmptySlot) << "row " << id << " missing from the index";
    }
  }

  // Home slot of the key of the row in slot s (reads that row: slots keep
  // only 6 hash bits).
  size_t HomeOfSlot(Slot s) const { return HomeOfHash(MixKey(KeyOfRow(Row(SlotRow(s))))) & mask; }

  // Empties slot i, shifting later slots of the probe run back so every key
  // stays reachable from its home slot (no tombstones).
  void EraseSlot(size_t i) {
    size_t j = i;
    while (true) {
      j = (j + 1) & mask;
      if (slots[j] == kEmptySlot) break;
      const size_t home = HomeOfSlot(slots[j]);
      // Slot j may move to i unless its home lies cyclically in (i, j].
      const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
      if (!stays) {
        slots[i] = slots[j];
        i = j;
      }
    }
    std::memset(&slots[i], 0xff, sizeof(Slot));
  }

  uint32_t NextTick() { return ++tick; }
  uint64_t NextRandom() {
    rng += 0x9e3779b97f4a7c15ull;
    return Mix64(rng);
  }

  // Doubles the index, rehashing every row's key: the rows are read in id
  // order, chunk after chunk (sequential, not random, accesses).
  void Grow() {
    const size_t new_size = (mask + 1) * 2;
    const size_t new_mask = new_size - 1;
    SlotArray grown(new_size);
    for (uint32_t id = 0; id < num_rows; ++id) {
      const uint64_t h = MixKey(KeyOfRow(Row(id)));
      size_t j = HomeOfHash(h) & new_mask;
      while (grown[j] != kEmptySlot) j = (j + 1) & new_mask;
      grown[j] = MakeSlot(id, h);
    }
    slots = std::move(grown);
    mask = new_mask;
    PublishHint();
  }

  int64_t Bytes() const {
    return static_cast<int64_t>(
        sizeof(*this) + (mask + 1) * sizeof(Slot) + chunks.capacity() * sizeof(chunks[0]) +
        chunks.size() * chunk_bytes + sketch.capacity() + deleted.capacity() * sizeof(Deletion) +
        tombstones.capacity() * sizeof(Deletion) + log.capacity() * sizeof(uint64_t));
  }

  size_t LogBound() const {
    return std::max<size_t>(2 * static_cast<size_t>(num_rows), kMinChangeLogBound);
  }
  // Forgets the change log (the next export scans the rows).
  void DropLog() {
    std::vector<uint64_t>().swap(log);
    log_valid = false;
  }

  mutable std::mutex mu;
  const size_t stride;
  const size_t chunk_bytes;
  SlotArray slots;  // mask + 1 slots
  size_t mask;
  uint32_t num_rows = 0;                        // row ids [0, num_rows) are live
  std::vector<std::unique_ptr<char[]>> chunks;  // kRowsPerChunk rows each
  uint64_t capacity = 0;                        // max rows; 0 = unbounded
  std::vector<uint8_t> sketch;                  // depth x sketch_width counters
  uint32_t sketch_width = 0;
  uint32_t sketch_depth = 0;
  uint64_t sketch_counted = 0;      // counted pushes since the last halving
  uint64_t sketch_halve_after = 0;  // 0: never halve
  uint64_t sketch_halvings = 0;
  uint32_t tick = 0;    // access clock (LRU), wraps
  uint64_t rng = 0;     // admission coins and eviction samples
  uint32_t cursor = 0;  // TTL sweep position
  std::vector<Deletion> deleted;
  size_t max_deleted = 0;
  // Checkpoint tombstones (TombstonesSince); on overflow emptied, and
  // tombstones_lost raised to the newest version it held.
  std::vector<Deletion> tombstones;
  size_t max_tombstones = 0;
  uint32_t tombstones_lost = 0;
  // Change log (header comment, ChangedSince). Invariant while log_valid:
  // every row with version > log_floor has its key in `log`.
  std::vector<uint64_t> log;
  uint32_t log_floor = 0;
  bool log_valid = false;       // false: not started yet, or dropped at its bound
  bool log_overflowed = false;  // dropped at its bound since the last export
  bool log_walking = false;     // an export is walking it: keys ahead may be unvisited
  // No key is in `log` twice. Cleared by an append that may repeat a key:
  // one during a walk (the key may be ahead), one after a row was removed
  // (its stale key may be there), or a version drop to <= floor of a
  // logged row (a later push appends it again).
  bool log_unique = true;
  bool log_removed = false;  // a row was removed since the last walk began
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
  const uint64_t max_rows = cfg.eviction().max_rows();
  if (max_rows != 0 && max_rows < static_cast<uint64_t>(num_partitions)) {
    return InvalidArgument("table '" + cfg.name() + "': eviction.max_rows " +
                           std::to_string(max_rows) + " is below the partition count " +
                           std::to_string(num_partitions));
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
      storage_(cfg.storage()),
      weight_bytes_(WeightBytesFor(dim_, storage_)),
      has_access_(cfg.eviction().ttl_s() != 0 || cfg.eviction().max_rows() != 0),
      lru_(cfg.eviction().max_rows() != 0),
      header_bytes_(sizeof(uint64_t) + sizeof(RowHead) + (has_access_ ? sizeof(RowAccess) : 0)),
      stride_(RowStrideFor(header_bytes_, weight_bytes_, state_dim_)),
      admit_all_(cfg.admission().min_count() <= 1 && !(cfg.admission().probability() > 0)),
      min_count_(cfg.admission().min_count()),
      admit_threshold_(cfg.admission().probability() >= 1
                           ? std::numeric_limits<uint64_t>::max()
                           : static_cast<uint64_t>(static_cast<double>(std::max(
                                                       0.0f, cfg.admission().probability())) *
                                                   18446744073709551616.0)),
      ttl_s_(cfg.eviction().ttl_s()),
      opt_(std::move(opt)) {
  const uint64_t max_rows = cfg.eviction().max_rows();
  const uint32_t width =
      cfg.admission().sketch_width() == 0 ? (1u << 20) : cfg.admission().sketch_width();
  const uint32_t depth = cfg.admission().sketch_depth() == 0 ? 4 : cfg.admission().sketch_depth();
  partitions_.reserve(num_partitions);
  for (int p = 0; p < num_partitions; ++p) {
    auto part = std::make_unique<Partition>(stride_);
    if (max_rows != 0) {
      part->capacity =
          max_rows / num_partitions + (static_cast<uint64_t>(p) < max_rows % num_partitions);
    }
    if (!admit_all_ && min_count_ > 1) {
      part->sketch_width = std::max<uint32_t>(64, width / static_cast<uint32_t>(num_partitions));
      part->sketch_depth = depth;
      part->sketch.assign(static_cast<size_t>(part->sketch_width) * depth, 0);
      const uint64_t halve = cfg.admission().halve_every();
      if (halve != 0) {
        part->sketch_halve_after =
            std::max<uint64_t>(1, halve / static_cast<uint64_t>(num_partitions));
      }
    }
    part->rng = Mix64(cfg.initializer().seed() ^ (static_cast<uint64_t>(table_id) << 32) ^
                      static_cast<uint64_t>(p));
    part->max_deleted = std::max<size_t>(1024, kMaxDeletionLog / num_partitions);
    part->max_tombstones = std::max<size_t>(64, kMaxTombstones / num_partitions);
    partitions_.push_back(std::move(part));
  }
}

EmbeddingTable::~EmbeddingTable() = default;

void EmbeddingTable::GroupByPartition(const uint64_t* keys, size_t n, Batch* batch) const {
  CHECK_LT(n, kMaxBatchKeys) << "too many keys in one call";
  const int num_partitions = static_cast<int>(partitions_.size());
  std::vector<uint32_t>& starts = batch->starts;
  starts.assign(num_partitions + 1, 0);
  std::vector<uint64_t>& hash = batch->hash;
  hash.resize(n);
  if (num_partitions == 1) {
    batch->order.clear();
    batch->key.clear();
    for (size_t i = 0; i < n; ++i) hash[i] = MixKey(keys[i]);
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
  // Stable scatter of (index, key, hash); starts[p] advances to the end of
  // partition p...
  std::vector<uint32_t>& order = batch->order;
  std::vector<uint64_t>& key = batch->key;
  order.resize(n);
  key.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t pos = starts[part[i]]++;
    order[pos] = static_cast<uint32_t>(i);
    key[pos] = keys[i];
    hash[pos] = MixKey(keys[i]);
  }
  // ...so shift it back to the beginnings.
  for (int p = num_partitions; p > 0; --p) starts[p] = starts[p - 1];
  starts[0] = 0;
}

void EmbeddingTable::PrefetchSlotAhead(const Batch& batch, size_t n, uint32_t j) const {
  const size_t pos = size_t{j} + kSlotPrefetchDistance;
  if (pos >= n) return;
  const uint64_t h = batch.hash[pos];
  partitions_[PartitionOfHash(h, static_cast<int>(partitions_.size()))]->PrefetchSlotHint(h);
}

void EmbeddingTable::ReadWeights(const char* row, float* out) const {
  const char* w = row + header_bytes_;
  switch (storage_) {
    case proto::TableConfig::FP16: {
      HalvesToFloats(reinterpret_cast<const uint16_t*>(w), out, dim_);
      return;
    }
    case proto::TableConfig::BF16: {
      const uint16_t* h = reinterpret_cast<const uint16_t*>(w);
      for (int d = 0; d < dim_; ++d) out[d] = Bf16ToFloat(h[d]);
      return;
    }
    default:
      std::memcpy(out, w, sizeof(float) * dim_);
  }
}

void EmbeddingTable::WriteWeights(char* row, const float* in) const {
  char* w = WeightBytes(row);
  switch (storage_) {
    case proto::TableConfig::FP16: {
      FloatsToHalves(in, reinterpret_cast<uint16_t*>(w), dim_);
      return;
    }
    case proto::TableConfig::BF16: {
      uint16_t* h = reinterpret_cast<uint16_t*>(w);
      for (int d = 0; d < dim_; ++d) h[d] = FloatToBf16(in[d]);
      return;
    }
    default:
      std::memcpy(w, in, sizeof(float) * dim_);
  }
}

void EmbeddingTable::InitRow(char* row, uint64_t key, float* tmp) const {
  if (storage_ == proto::TableConfig::FP32) {
    InitializeRow(cfg_.initializer(), table_id_, key, reinterpret_cast<float*>(WeightBytes(row)),
                  dim_);
  } else {
    InitializeRow(cfg_.initializer(), table_id_, key, tmp, dim_);
    WriteWeights(row, tmp);
  }
  opt_->InitState(State(row), dim_);
}

bool EmbeddingTable::Admit(Partition& part, uint64_t h) {
  if (admit_all_) return true;
  if (admit_threshold_ != 0 && part.NextRandom() < admit_threshold_) return true;
  if (min_count_ <= 1) return false;
  // Count-min sketch with conservative update: raise only the counters that
  // equal the minimum, so the estimate over-counts less.
  size_t idx[8];
  uint32_t est = 255;
  const uint32_t width = part.sketch_width;
  for (uint32_t d = 0; d < part.sketch_depth; ++d) {
    const uint64_t g = Mix64(h + (d + 1) * 0x9e3779b97f4a7c15ull);
    idx[d] = d * static_cast<size_t>(width) + static_cast<size_t>(((g >> 32) * width) >> 32);
    est = std::min<uint32_t>(est, part.sketch[idx[d]]);
  }
  const uint32_t next = std::min<uint32_t>(255, est + 1);
  for (uint32_t d = 0; d < part.sketch_depth; ++d) {
    if (part.sketch[idx[d]] < next) part.sketch[idx[d]] = static_cast<uint8_t>(next);
  }
  if (part.sketch_halve_after != 0 && ++part.sketch_counted >= part.sketch_halve_after) {
    // Age every count (the sketch is a few MiB at most; amortised over
    // sketch_halve_after pushes this is a fraction of a byte per push).
    for (uint8_t& c : part.sketch) c = static_cast<uint8_t>(c >> 1);
    part.sketch_counted = 0;
    ++part.sketch_halvings;
  }
  return next >= min_count_;
}

char* EmbeddingTable::AddRow(Partition& part, uint64_t key, uint64_t h, uint32_t version) {
  if (part.capacity != 0 && part.num_rows >= part.capacity) {
    // Evict the worst of a few sampled rows (LRU: oldest access; LFU:
    // fewest pushes, then oldest access).
    const uint32_t now = part.tick;
    const bool lfu = cfg_.eviction().policy() == proto::EvictionConfig::LFU;
    uint32_t victim = 0;
    bool have = false;
    uint32_t best_age = 0, best_count = 0;
    for (int k = 0; k < kEvictionSamples; ++k) {
      const uint32_t id = static_cast<uint32_t>(part.NextRandom() % part.num_rows);
      char* r = part.Row(id);
      const uint32_t count = Head(r)->update_count;
      const uint32_t age = now - Access(r)->last_access;  // wraps correctly
      const bool worse =
          !have ||
          (lfu ? (count < best_count || (count == best_count && age > best_age)) : age > best_age);
      if (worse) {
        victim = id;
        best_age = age;
        best_count = count;
        have = true;
      }
    }
    RemoveRow(part, victim, version);
    evicted_capacity_.fetch_add(1, std::memory_order_relaxed);
  }
  char* row = part.Insert(key, h);
  *Head(row) = RowHead{};
  if (RowAccess* a = Access(row)) {
    a->last_update_s = clock_.load(std::memory_order_relaxed);
    a->last_access = part.NextTick();
  }
  return row;
}

void EmbeddingTable::LogChange(Partition& part, uint64_t key, uint32_t prev, uint32_t now) {
  if (!part.log_valid) return;
  if (prev > part.log_floor) {
    // Logged already. If it drops to <= floor, a later push logs it again.
    if (now <= part.log_floor) part.log_unique = false;
    return;
  }
  if (now <= part.log_floor) return;
  if (!part.log_walking && part.log.size() >= part.LogBound()) {
    part.DropLog();
    part.log_overflowed = true;
    export_log_overflows_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (part.log_walking || part.log_removed) part.log_unique = false;
  part.log.push_back(key);
}

void EmbeddingTable::RemoveRow(Partition& part, uint32_t id, uint32_t version, bool log) {
  char* row = part.Row(id);
  const uint64_t key = KeyOfRow(row);
  part.log_removed = true;               // its key may stay in the change log
  if (log && Head(row)->version != 0) {  // ever pushed, so maybe exported: log it
    if (part.deleted.size() >= part.max_deleted) {
      const size_t drop = part.deleted.size() / 2;
      part.deleted.erase(part.deleted.begin(), part.deleted.begin() + drop);
      deletions_dropped_.fetch_add(static_cast<int64_t>(drop), std::memory_order_relaxed);
    }
    part.deleted.push_back(Deletion{key, version});
  }
  // Every evicted row may be in a full checkpoint (pulled-only rows too:
  // resurrected, they would take max_rows room from trained rows).
  if (log) {
    if (part.tombstones.size() >= part.max_tombstones) {
      // Only a full save can stand in for the lost keys: remember the
      // newest version they cover and start over.
      uint32_t newest = part.tombstones_lost;
      for (const Deletion& d : part.tombstones) newest = std::max(newest, d.version);
      part.tombstones_lost = newest;
      tombstones_dropped_.fetch_add(static_cast<int64_t>(part.tombstones.size()),
                                    std::memory_order_relaxed);
      part.tombstones.clear();
    }
    part.tombstones.push_back(Deletion{key, version});
  }
  part.EraseSlot(part.SlotOfRow(id, MixKey(key)));
  const uint32_t last = part.num_rows - 1;
  if (id != last) {
    char* src = part.Row(last);
    const size_t moved = part.SlotOfRow(last, MixKey(KeyOfRow(src)));
    std::memcpy(row, src, stride_);
    part.slots[moved] = (part.slots[moved] & ~kRowMask) | id;
  }
  --part.num_rows;
  // Keep at most one empty chunk, so memory follows the row count down.
  const size_t needed = (static_cast<size_t>(part.num_rows) + kRowsPerChunk - 1) / kRowsPerChunk;
  while (part.chunks.size() > needed + 1) part.chunks.pop_back();
}

bool EmbeddingTable::ExpiredAt(uint32_t last_update_s, uint32_t clock) const {
  return ttl_s_ != 0 && last_update_s != 0 && clock > last_update_s &&
         clock - last_update_s > ttl_s_;
}

bool EmbeddingTable::Expired(const RowMeta& meta) const {
  return ExpiredAt(meta.last_update_s, clock_.load(std::memory_order_relaxed));
}

RowMeta EmbeddingTable::GetMeta(char* row) const {
  RowMeta m;
  m.update_count = Head(row)->update_count;
  m.version = Head(row)->version;
  if (const RowAccess* a = Access(row)) {
    m.last_update_s = a->last_update_s;
    m.last_access = a->last_access;
  }
  return m;
}

void EmbeddingTable::SetMeta(char* row, const RowMeta& m) const {
  *Head(row) = RowHead{m.update_count, m.version};
  if (RowAccess* a = Access(row)) *a = RowAccess{m.last_update_s, m.last_access};
}

int64_t EmbeddingTable::Sweep(Partition& part, uint32_t budget, uint32_t version) {
  const uint32_t clock = clock_.load(std::memory_order_relaxed);
  int64_t evicted = 0;
  for (uint32_t b = 0; b < budget && part.num_rows > 0; ++b) {
    if (part.cursor >= part.num_rows) part.cursor = 0;
    RowAccess* a = Access(part.Row(part.cursor));         // stored: the table has a TTL
    if (a->last_update_s == 0) a->last_update_s = clock;  // restored rows start now
    if (ExpiredAt(a->last_update_s, clock)) {
      RemoveRow(part, part.cursor, version);  // the last row moves here: check it next
      ++evicted;
    } else {
      ++part.cursor;
    }
  }
  if (evicted > 0) evicted_ttl_.fetch_add(evicted, std::memory_order_relaxed);
  return evicted;
}

int64_t EmbeddingTable::EvictExpired(uint32_t version) {
  if (ttl_s_ == 0) return 0;
  int64_t evicted = 0;
  for (auto& p : partitions_) {
    std::lock_guard<std::mutex> lock(p->mu);
    p->cursor = 0;
    evicted += Sweep(*p, p->num_rows, version);
  }
  return evicted;
}

void EmbeddingTable::TakeDeletions(uint32_t since, std::vector<uint64_t>* keys) {
  for (auto& p : partitions_) {
    std::lock_guard<std::mutex> lock(p->mu);
    size_t kept = 0;
    for (const Deletion& d : p->deleted) {
      if (d.version <= since) continue;
      keys->push_back(d.key);
      p->deleted[kept++] = d;
    }
    p->deleted.resize(kept);
  }
}

bool EmbeddingTable::TombstonesSince(uint32_t since, std::vector<uint64_t>* keys) const {
  bool complete = true;
  for (const auto& p : partitions_) {
    std::lock_guard<std::mutex> lock(p->mu);
    if (p->tombstones_lost > since) complete = false;
    size_t kept = 0;
    for (const Deletion& d : p->tombstones) {
      if (d.version <= since) continue;
      keys->push_back(d.key);
      p->tombstones[kept++] = d;
    }
    p->tombstones.resize(kept);
  }
  return complete;
}

void EmbeddingTable::ForgetTombstones(uint32_t version) const {
  for (auto& p : partitions_) {
    std::lock_guard<std::mutex> lock(p->mu);
    size_t kept = 0;
    for (const Deletion& d : p->tombstones) {
      if (d.version > version) p->tombstones[kept++] = d;
    }
    p->tombstones.resize(kept);
  }
}

bool EmbeddingTable::Erase(uint64_t key) {
  const uint64_t h = MixKey(key);
  Partition& part = *partitions_[PartitionOfHash(h, static_cast<int>(partitions_.size()))];
  std::lock_guard<std::mutex> lock(part.mu);
  for (size_t i = HomeOfHash(h) & part.mask;; i = (i + 1) & part.mask) {
    const Slot s = part.slots[i];
    if (s == kEmptySlot) return false;
    const uint32_t id = SlotRow(s);
    if (TagMatches(s, h) && KeyOfRow(part.Row(id)) == key) {
      if (part.cursor > id) part.cursor = id;  // the moved last row is still checked
      RemoveRow(part, id, 0, /*log=*/false);
      return true;
    }
  }
}

int64_t EmbeddingTable::EraseIf(const std::function<bool(uint64_t key)>& pred) {
  int64_t removed = 0;
  for (auto& p : partitions_) {
    std::lock_guard<std::mutex> lock(p->mu);
    for (uint32_t id = 0; id < p->num_rows;) {
      if (pred(KeyOfRow(p->Row(id)))) {
        RemoveRow(*p, id, 0, /*log=*/false);  // the last row moves here: check it next
        ++removed;
      } else {
        ++id;
      }
    }
    p->cursor = 0;
  }
  return removed;
}

void EmbeddingTable::SetRequestPool(ThreadPool* pool, int max_tasks) {
  request_pool_ = max_tasks > 1 ? pool : nullptr;
  request_tasks_ = request_pool_ != nullptr ? max_tasks : 1;
}

template <typename Fn>
void EmbeddingTable::ForPartitionRanges(const Batch& batch, size_t n, Fn&& fn) {
  const size_t num_partitions = partitions_.size();
  // At least kParallelMinKeys / 2 keys per task: below that a task costs
  // more to hand over than it saves.
  const size_t tasks = request_pool_ == nullptr || n < kParallelMinKeys
                           ? 1
                           : std::min<size_t>({static_cast<size_t>(request_tasks_),
                                               n / (kParallelMinKeys / 2), num_partitions});
  if (tasks <= 1) {
    fn(size_t{0}, num_partitions);
    return;
  }
  std::vector<size_t> cut(tasks + 1, num_partitions);
  cut[0] = 0;
  size_t p = 0;
  for (size_t t = 1; t < tasks; ++t) {
    const size_t target = n * t / tasks;
    while (p < num_partitions && batch.starts[p] < target) ++p;
    cut[t] = p;
  }
  ParallelFor(request_pool_, static_cast<int>(tasks),
              [&](int t) { fn(cut[static_cast<size_t>(t)], cut[static_cast<size_t>(t) + 1]); });
}

void EmbeddingTable::Pull(const uint64_t* keys, size_t n, float* out, uint32_t version) {
  if (n == 0) return;
  Batch batch;
  GroupByPartition(keys, n, &batch);
  const bool identity = batch.order.empty();
  const uint64_t* sorted_keys = identity ? keys : batch.key.data();
  const uint64_t* hashes = batch.hash.data();
  const size_t row_bytes = sizeof(float) * dim_;
  std::atomic<int64_t> held_back_total{0};
  ForPartitionRanges(batch, n, [&](size_t p_begin, size_t p_end) {
    std::vector<float> tmp(dim_);
    int64_t held_back = 0;
    for (size_t p = p_begin; p < p_end; ++p) {
      const uint32_t begin = batch.starts[p];
      const uint32_t end = batch.starts[p + 1];
      if (begin == end) continue;
      Partition& part = *partitions_[p];
      std::lock_guard<std::mutex> lock(part.mu);
      part.PrefetchRowsAtEntry(begin, end, header_bytes_ + weight_bytes_, hashes);
      for (uint32_t j = begin; j < end; ++j) {
        if (j + kSlotPrefetchDistance < end) {
          part.PrefetchSlot(hashes[j + kSlotPrefetchDistance]);
        } else {
          PrefetchSlotAhead(batch, n, j);  // in a later partition
        }
        part.PrefetchRowAhead(j, end, header_bytes_ + weight_bytes_, hashes);
        if (j + kRowPrefetchDistance < n) {  // the output row it will fill (any partition)
          const uint32_t ahead = j + kRowPrefetchDistance;
          PrefetchRange</*kForWrite=*/true>(
              out + static_cast<size_t>(identity ? ahead : batch.order[ahead]) * dim_, row_bytes);
        }
        const uint32_t i = identity ? j : batch.order[j];
        const uint64_t key = sorted_keys[j];
        const uint64_t h = hashes[j];
        float* dst = out + static_cast<size_t>(i) * dim_;
        char* row = part.Find(key, h);
        if (row == nullptr) {
          if (!admit_all_) {
            if (cfg_.admission().held_back_value() == proto::AdmissionConfig::INITIALIZER) {
              InitializeRow(cfg_.initializer(), table_id_, key, dst, dim_);
            } else {
              std::memset(dst, 0, row_bytes);
            }
            ++held_back;
            continue;
          }
          row = AddRow(part, key, h, version);
          InitRow(row, key, tmp.data());
        }
        if (lru_) Access(row)->last_access = part.NextTick();
        if (storage_ == proto::TableConfig::FP32) {
          std::memcpy(dst, WeightBytes(row), row_bytes);
        } else {
          ReadWeights(row, dst);
        }
      }
    }
    held_back_total.fetch_add(held_back, std::memory_order_relaxed);
  });
  keys_pulled_.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
  const int64_t held_back = held_back_total.load(std::memory_order_relaxed);
  if (held_back > 0) held_back_pulls_.fetch_add(held_back, std::memory_order_relaxed);
}

void EmbeddingTable::Push(const uint64_t* keys, size_t n, const float* grads, uint32_t version,
                          uint32_t event_time_s) {
  if (n == 0) return;
  // Advance the event clock (a max) before stamping rows.
  uint32_t clock = clock_.load(std::memory_order_relaxed);
  while (event_time_s > clock &&
         !clock_.compare_exchange_weak(clock, event_time_s, std::memory_order_relaxed)) {
  }
  // Rows are stamped with the clock, not with the push's own time: a late
  // event (an asynchronous worker behind the others, or a later pass of a
  // multi-epoch job replaying old event times) was just trained on, so its
  // rows must not expire at the next sweep. Stamped with its own time, every
  // row a second pass touched was more than ttl_s behind the clock and was
  // evicted at once (retail-purchase, 5 passes, ttl 1 h: 45M evictions for
  // 18k rows, holdout AUC 0.58).
  const uint32_t stamp = clock_.load(std::memory_order_relaxed);
  Batch batch;
  GroupByPartition(keys, n, &batch);
  const bool identity = batch.order.empty();
  const uint64_t* sorted_keys = identity ? keys : batch.key.data();
  const uint64_t* hashes = batch.hash.data();
  const bool fp32 = storage_ == proto::TableConfig::FP32;
  const size_t grad_bytes = sizeof(float) * dim_;
  std::atomic<int64_t> held_back_total{0}, admitted_total{0};
  ForPartitionRanges(batch, n, [&](size_t p_begin, size_t p_end) {
    std::vector<float> tmp(dim_);
    int64_t held_back = 0, admitted = 0;
    for (size_t p = p_begin; p < p_end; ++p) {
      const uint32_t begin = batch.starts[p];
      const uint32_t end = batch.starts[p + 1];
      if (begin == end) continue;
      Partition& part = *partitions_[p];
      std::lock_guard<std::mutex> lock(part.mu);
      part.PrefetchRowsAtEntry(begin, end, stride_, hashes);
      for (uint32_t j = begin; j < end; ++j) {
        if (j + kSlotPrefetchDistance < end) {
          part.PrefetchSlot(hashes[j + kSlotPrefetchDistance]);
        } else {
          PrefetchSlotAhead(batch, n, j);  // in a later partition
        }
        part.PrefetchRowAhead(j, end, stride_, hashes);
        if (j + kRowPrefetchDistance < n) {  // the gradient it will apply (any partition)
          const uint32_t ahead = j + kRowPrefetchDistance;
          PrefetchRange(grads + static_cast<size_t>(identity ? ahead : batch.order[ahead]) * dim_,
                        grad_bytes);
        }
        // The sort is stable, so duplicates of a key apply in call order.
        const uint32_t i = identity ? j : batch.order[j];
        const uint64_t key = sorted_keys[j];
        const uint64_t h = hashes[j];
        char* row = part.Find(key, h);
        if (row == nullptr) {
          if (!Admit(part, h)) {
            ++held_back;
            continue;
          }
          if (!admit_all_) ++admitted;
          row = AddRow(part, key, h, version);
          InitRow(row, key, tmp.data());
        }
        RowHead* meta = Head(row);
        const float* g = grads + static_cast<size_t>(i) * dim_;
        if (fp32) {
          opt_->Apply(reinterpret_cast<float*>(WeightBytes(row)), State(row), g, dim_,
                      meta->update_count);
        } else {
          ReadWeights(row, tmp.data());
          opt_->Apply(tmp.data(), State(row), g, dim_, meta->update_count);
          WriteWeights(row, tmp.data());
        }
        if (meta->update_count != std::numeric_limits<uint32_t>::max()) ++meta->update_count;
        LogChange(part, key, meta->version, version);
        meta->version = version;
        if (RowAccess* a = Access(row)) {
          a->last_update_s = stamp;
          if (lru_) a->last_access = part.NextTick();
        }
      }
      // Amortized TTL sweep: a couple of rows per key pushed keeps expired
      // rows from piling up without a background thread.
      if (ttl_s_ != 0) Sweep(part, 2 * (end - begin) + 2, version);
    }
    held_back_total.fetch_add(held_back, std::memory_order_relaxed);
    admitted_total.fetch_add(admitted, std::memory_order_relaxed);
  });
  keys_pushed_.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
  const int64_t held_back = held_back_total.load(std::memory_order_relaxed);
  const int64_t admitted = admitted_total.load(std::memory_order_relaxed);
  if (held_back > 0) held_back_pushes_.fetch_add(held_back, std::memory_order_relaxed);
  if (admitted > 0) admitted_.fetch_add(admitted, std::memory_order_relaxed);
}

bool EmbeddingTable::Lookup(uint64_t key, float* weights, float* state, RowMeta* meta) const {
  const uint64_t h = MixKey(key);
  const Partition& part = *partitions_[PartitionOfHash(h, static_cast<int>(partitions_.size()))];
  std::lock_guard<std::mutex> lock(part.mu);
  char* row = part.Find(key, h);
  if (row == nullptr) return false;
  ReadWeights(row, weights);
  if (state != nullptr) std::memcpy(state, State(row), sizeof(float) * state_dim_);
  if (meta != nullptr) *meta = GetMeta(row);
  return true;
}

void EmbeddingTable::Upsert(uint64_t key, const float* weights, const float* state, RowMeta meta) {
  const uint64_t h = MixKey(key);
  Partition& part = *partitions_[PartitionOfHash(h, static_cast<int>(partitions_.size()))];
  std::lock_guard<std::mutex> lock(part.mu);
  char* row = part.Find(key, h);
  if (row == nullptr) row = AddRow(part, key, h, meta.version);
  WriteWeights(row, weights);
  if (state != nullptr) {
    std::memcpy(State(row), state, sizeof(float) * state_dim_);
  } else {
    opt_->InitState(State(row), dim_);
  }
  if (meta.last_update_s == 0) meta.last_update_s = clock_.load(std::memory_order_relaxed);
  meta.last_access = part.NextTick();
  LogChange(part, key, Head(row)->version, meta.version);
  SetMeta(row, meta);
}

void EmbeddingTable::ForEach(const RowVisitor& fn) const {
  std::vector<float> tmp(storage_ == proto::TableConfig::FP32 ? 0 : dim_);
  for (const auto& p : partitions_) {
    std::lock_guard<std::mutex> lock(p->mu);
    for (uint32_t id = 0; id < p->num_rows; ++id) {
      char* row = p->Row(id);
      const float* w = reinterpret_cast<const float*>(WeightBytes(row));
      if (!tmp.empty()) {
        ReadWeights(row, tmp.data());
        w = tmp.data();
      }
      fn(KeyOfRow(row), w, State(row), GetMeta(row));
    }
  }
}

void EmbeddingTable::ChangedSince(uint32_t since, uint32_t version_now, std::vector<uint64_t>* keys,
                                  std::vector<float>* values) {
  std::lock_guard<std::mutex> export_lock(export_mu_);
  const bool fp32 = storage_ == proto::TableConfig::FP32;
  const size_t dim = static_cast<size_t>(dim_);
  auto emit = [&](const char* row) {
    keys->push_back(KeyOfRow(row));
    const size_t at = values->size();
    values->resize(at + dim);
    if (fp32) {
      std::memcpy(values->data() + at, WeightBytes(const_cast<char*>(row)), sizeof(float) * dim);
    } else {
      ReadWeights(row, values->data() + at);
    }
  };
  int scanned = 0, overflowed = 0;
  std::vector<uint32_t> perm;
  for (auto& pp : partitions_) {
    Partition& part = *pp;
    const size_t first = keys->size();
    {
      std::lock_guard<std::mutex> lock(part.mu);
      if (!part.log_valid || since < part.log_floor) {
        // Scan the rows (the whole partition under its lock: rows move when
        // one is removed, so a scan in pieces could miss one). A partition
        // without a log starts one here.
        const bool start = !part.log_valid;
        const uint32_t floor = since == 0 ? version_now : since;
        if (since > 0) ++scanned;
        if (part.log_overflowed) ++overflowed;
        for (uint32_t id = 0; id < part.num_rows; ++id) {
          char* row = part.Row(id);
          const uint32_t v = Head(row)->version;
          if (v > since) emit(row);
          if (start && v > floor) part.log.push_back(KeyOfRow(row));
        }
        if (start) {
          part.log_valid = true;
          part.log_overflowed = false;
          part.log_floor = floor;
          part.log_unique = true;
          part.log_removed = false;
        }
        continue;
      }
      // Pushes from now on log against the new floor, so a row pushed
      // during the walk is appended (and walked) if its key was dropped.
      part.log_floor = since;
      part.log_walking = true;
      part.log_removed = false;
    }
    size_t r = 0, w = 0;  // read and write positions: the log is compacted in place
    bool may_repeat = false;
    while (true) {
      std::lock_guard<std::mutex> lock(part.mu);
      std::vector<uint64_t>& log = part.log;
      const size_t end = std::min(log.size(), r + kLogChunk);
      for (; r < end; ++r) {
        part.PrefetchAhead(r, end, header_bytes_ + weight_bytes_,
                           [&log](size_t k) { return log[k]; });
        const uint64_t key = log[r];
        char* row = part.Find(key, MixKey(key));
        if (row == nullptr || Head(row)->version <= since) continue;
        emit(row);
        log[w++] = key;
      }
      if (r < log.size()) continue;  // next chunk (pushes may have appended more)
      log.resize(w);
      part.log_walking = false;
      may_repeat = !part.log_unique;
      if (may_repeat) {
        std::sort(log.begin(), log.end());
        log.erase(std::unique(log.begin(), log.end()), log.end());
        part.log_unique = true;
      }
      // Give back memory after a burst (the bound follows the rows).
      if (log.capacity() > 4 * std::max(log.size(), kMinChangeLogBound)) log.shrink_to_fit();
      break;
    }
    if (!may_repeat) continue;
    // A key logged twice was emitted twice: keep its last copy (read last,
    // so the newest value). Keys of one partition only.
    const size_t n = keys->size() - first;
    perm.resize(n);
    for (size_t i = 0; i < n; ++i) perm[i] = static_cast<uint32_t>(i);
    const uint64_t* k = keys->data() + first;
    std::sort(perm.begin(), perm.end(),
              [k](uint32_t a, uint32_t b) { return k[a] != k[b] ? k[a] < k[b] : a < b; });
    std::vector<bool> keep(n, true);
    bool any = false;
    for (size_t i = 0; i + 1 < n; ++i) {
      if (k[perm[i]] == k[perm[i + 1]]) {
        keep[perm[i]] = false;
        any = true;
      }
    }
    if (!any) continue;
    size_t out = first;
    for (size_t i = 0; i < n; ++i) {
      if (!keep[i]) continue;
      const size_t src = first + i;
      if (out != src) {
        (*keys)[out] = (*keys)[src];
        std::memmove(values->data() + out * dim, values->data() + src * dim, sizeof(float) * dim);
      }
      ++out;
    }
    keys->resize(out);
    values->resize(out * dim);
  }
  if (scanned > 0) {
    export_full_scans_.fetch_add(scanned, std::memory_order_relaxed);
    LOG(INFO) << "table '" << cfg_.name() << "': delta export since version " << since
              << " scanned " << scanned << " of " << partitions_.size()
              << " partitions row by row: " << overflowed
              << " had dropped their change log at its bound of max(2 x rows, "
              << kMinChangeLogBound
              << ") keys, the rest had no log yet or one that starts after the cursor";
  } else if (overflowed > 0) {
    LOG(INFO) << "table '" << cfg_.name() << "': " << overflowed
              << " partitions' change logs had outgrown their bound; rebuilt by a full export";
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
    s.sketch_halvings += static_cast<int64_t>(p->sketch_halvings);
  }
  s.keys_pulled = keys_pulled_.load(std::memory_order_relaxed);
  s.keys_pushed = keys_pushed_.load(std::memory_order_relaxed);
  s.held_back_pushes = held_back_pushes_.load(std::memory_order_relaxed);
  s.held_back_pulls = held_back_pulls_.load(std::memory_order_relaxed);
  s.admitted = admitted_.load(std::memory_order_relaxed);
  s.evicted_ttl = evicted_ttl_.load(std::memory_order_relaxed);
  s.evicted_capacity = evicted_capacity_.load(std::memory_order_relaxed);
  s.deletions_dropped = deletions_dropped_.load(std::memory_order_relaxed);
  s.tombstones_dropped = tombstones_dropped_.load(std::memory_order_relaxed);
  s.export_full_scans = export_full_scans_.load(std::memory_order_relaxed);
  s.export_log_overflows = export_log_overflows_.load(std::memory_order_relaxed);
  return s;
}

std::unique_ptr<EmbeddingTable> EmbeddingTable::Snapshot(int64_t* copied_bytes) const {
  auto opt = Optimizer::Create(cfg_.optimizer());
  CHECK(opt.ok()) << "table '" << cfg_.name() << "': " << opt.status();  // validated at Create
  std::unique_ptr<EmbeddingTable> copy(new EmbeddingTable(
      table_id_, cfg_, static_cast<int>(partitions_.size()), std::move(opt).value()));
  int64_t bytes = 0;
  for (size_t i = 0; i < partitions_.size(); ++i) {
    const Partition& src = *partitions_[i];
    Partition& dst = *copy->partitions_[i];
    std::vector<uint8_t>().swap(dst.sketch);  // the copy never admits
    std::lock_guard<std::mutex> lock(src.mu);
    const size_t num_slots = src.mask + 1;
    dst.slots = SlotArray(num_slots);
    std::memcpy(dst.slots.get(), src.slots.get(), num_slots * sizeof(Slot));
    dst.mask = src.mask;
    dst.PublishHint();
    dst.num_rows = src.num_rows;
    const size_t used_chunks =
        (static_cast<size_t>(src.num_rows) + kRowsPerChunk - 1) / kRowsPerChunk;
    dst.chunks.reserve(used_chunks);
    for (size_t c = 0; c < used_chunks; ++c) {
      const size_t rows = std::min<size_t>(kRowsPerChunk, src.num_rows - c * kRowsPerChunk);
      // Rows past num_rows are never read, so the last chunk stops at its
      // last row.
      dst.chunks.push_back(std::unique_ptr<char[]>(new char[rows * src.stride]));
      std::memcpy(dst.chunks.back().get(), src.chunks[c].get(), rows * src.stride);
      bytes += static_cast<int64_t>(rows * src.stride);
    }
    dst.capacity = src.capacity;
    dst.tick = src.tick;
    dst.rng = src.rng;
    dst.cursor = src.cursor;
    dst.deleted = src.deleted;
    dst.max_deleted = src.max_deleted;
    bytes += static_cast<int64_t>(num_slots * sizeof(Slot) + dst.deleted.size() * sizeof(Deletion));
  }
  copy->clock_.store(clock_.load());
  copy->keys_pulled_.store(keys_pulled_.load());
  copy->keys_pushed_.store(keys_pushed_.load());
  copy->held_back_pushes_.store(held_back_pushes_.load());
  copy->held_back_pulls_.store(held_back_pulls_.load());
  copy->admitted_.store(admitted_.load());
  copy->evicted_ttl_.store(evicted_ttl_.load());
  copy->evicted_capacity_.store(evicted_capacity_.load());
  copy->deletions_dropped_.store(deletions_dropped_.load());
  copy->tombstones_dropped_.store(tombstones_dropped_.load());
  copy->export_full_scans_.store(export_full_scans_.load());
  copy->export_log_overflows_.store(export_log_overflows_.load());
  if (copied_bytes != nullptr) *copied_bytes = bytes;
  return copy;
}

}  // namespace freshet
