// ServedTable: one embedding table as the serving tier holds it: key ->
// weights, persistent (every version immutable, versions share structure).
//
// Why. The serving tier follows a stream of deltas (exporter/export_dir.h)
// while requests score. A delta must cost what it changes, not the model:
// applying it may neither copy the table nor make readers wait. Readers
// take a version (a ServedTable value, which LoadedExport holds) and read it
// without locks for as long as they like; the loader builds the next
// version beside it, sharing every part the delta did not touch, and
// publishes it with one pointer swap (serving/model_watcher.h). The old
// version's unshared parts are freed by its last reader (the shape of
// RocksDB's SuperVersion, with per-chunk copy-on-write).
//
// Layout. Keys hash (their own mix, independent of common/sharding.h) to
// one of L = 2^leaf_bits leaves; a leaf holds the table's keys of that hash
// range, sorted, and their rows, in one allocation:
//   [refs u32][n u32][n x u64 key][n x row]   row = dim x f32, or dim x u16
// (fp16 / bf16 for tables stored in 16 bits on the servers: the values the
// snapshot carries are those 16-bit values widened, so narrowing them back
// is exact and serving holds half the bytes). Leaves hang off mids of
// F = 2^kMidBits pointers, and the root is an array of L / F mids. A leaf
// averages 8-32 rows: the table re-buckets (one O(rows) rebuild, amortized
// like a vector's growth) when the average passes 64.
// Per row that costs the key and the row, plus about (leaf header + malloc
// overhead + one pointer) / rows per leaf, about 2-4 bytes.
//
// Cost. A lookup is a hash, three dependent loads and a search in a
// leaf of about 16 keys. Apply() of k changed rows copies at most k leaves
// and k mids (those the table shares with another version; unshared ones
// change in place) and the root array once (L / F pointers) if shared: O(k x
// (leaf + mid) + L / F), independent of the rows the delta does not touch.
// Copying a ServedTable (taking a version) is one reference count.
//
// Thread safety: a ServedTable value is not synchronized: const methods may
// run on any number of threads at once, a mutation (Apply, Build) needs
// exclusive access to that value. Different values sharing parts may be
// used and destroyed on different threads at once (reference counts are
// atomic); mutating one never changes what another sees.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/proto/table.pb.h"
#include "common/status.h"

namespace freshet {

class ServedTable {
 public:
  enum class Storage : uint8_t { kFp32 = 0, kFp16 = 1, kBf16 = 2 };
  static Storage StorageOf(proto::TableConfig::Storage s);

  // An empty table of dim 0 (no rows; every Lookup misses).
  ServedTable() = default;
  // An empty table. REQUIRES: 1 <= dim <= 4096.
  explicit ServedTable(int dim, Storage storage = Storage::kFp32);

  int dim() const { return dim_; }
  Storage storage() const { return storage_; }
  size_t size() const;
  bool empty() const { return size() == 0; }

  // Copies the row of `key`, widened to fp32, to out[0, dim). Returns false
  // (out untouched) if the table has no row for it.
  bool Lookup(uint64_t key, float* out) const;
  bool contains(uint64_t key) const;
  // The row of `key` in place, or nullptr. Valid while this value (or any
  // copy of it) lives. REQUIRES: storage() == kFp32 (16-bit rows have no
  // fp32 form to point at; use Lookup).
  const float* Find(uint64_t key) const;

  // Replaces the contents with `n` rows (keys[i], values[i*dim, (i+1)*dim));
  // a key listed twice keeps its last row. Sizes the leaves for n rows.
  void Build(const uint64_t* keys, const float* values, size_t n);
  // Applies one delta: removes every key of `deleted` (absent keys are
  // ignored), then inserts or overwrites the `n` rows (a key listed twice
  // keeps its last row). Parts shared with other values are copied first,
  // so no other value changes.
  void Apply(const uint64_t* deleted, size_t num_deleted, const uint64_t* keys, const float* values,
             size_t n);

  // Builds a table from rows that arrive twice, in the same order (two
  // passes over a snapshot file, exporter/model_loader.cc): the first pass
  // Count()s the keys, the second Add()s the rows, which go straight into
  // leaves of their final size. Beyond the result it holds 8 bytes per leaf
  // (counts and fill cursors), about 0.5 byte per row: a full load needs no
  // copy of the file's rows in memory (Build() does, its input).
  class StreamBuilder;

  // Calls fn(key, const float* row) for every row, row widened to fp32 (a
  // buffer valid during the call only), in hash order.
  template <typename Fn>
  void ForEach(Fn&& fn) const;

  // Calls fn(const uint64_t* keys, const float* rows, size_t n) once per
  // non-empty leaf, in hash order: n keys and their rows widened to fp32
  // (fp32 tables: the leaf's own rows, no copy; 16-bit tables: a buffer
  // valid during the call only). Writing a table out (exporter/compactor.h)
  // without a per-row call.
  template <typename Fn>
  void ForEachBatch(Fn&& fn) const;

  // Bytes of what scoring needs: keys and rows (rows x (8 + row bytes)).
  int64_t payload_bytes() const;
  // Bytes this value references: leaves (with headers), mids and the root,
  // shared parts included; without the allocator's own overhead.
  int64_t allocated_bytes() const;
  int leaf_bits() const;

 public:
  // The parts (below), public only so that the helpers in served_table.cc
  // can name them.
  struct Leaf;
  struct Mid;
  struct Root;
  static constexpr int kMidBits = 8;  // F = 256 leaves per mid

 private:
  size_t RowBytes() const;
  const Leaf* LeafOf(uint64_t h) const;
  // Index into the leaf's keys, or -1.
  static int64_t Search(const Leaf* leaf, uint64_t key);
  void WidenRow(const char* row, float* out) const;
  void NarrowRow(const float* in, char* row) const;
  // Makes root_ exclusively ours (clones it if shared).
  Root* MutableRoot();
  // An empty root of 2^bits leaves.
  void ResetRoot(int bits);
  // A new table of 2^bits leaves holding every row of this one.
  void Rebucket(int bits);
  static int BitsFor(size_t rows);

  int dim_ = 0;
  Storage storage_ = Storage::kFp32;
  std::shared_ptr<Root> root_;
};

class ServedTable::StreamBuilder {
 public:
  // For about `rows_hint` rows (it sizes the leaves; any count works).
  // REQUIRES: 1 <= dim <= 4096.
  StreamBuilder(int dim, Storage storage, size_t rows_hint);

  // Pass 1: counts keys (duplicates included).
  void Count(const uint64_t* keys, size_t n);
  // Between the passes: allocates every leaf at its counted size.
  void StartRows();
  // Pass 2: the same rows, in any order. DataLoss if they differ from what
  // was counted (more rows for a leaf than counted: the file changed
  // between the passes).
  Status Add(const uint64_t* keys, const float* values, size_t n);
  // Sorts each leaf by key (a key added twice keeps its last row) and hands
  // out the table. DataLoss if fewer rows were added than counted.
  StatusOr<ServedTable> Finish();

 private:
  ServedTable table_;
  int shift_ = 64;
  bool started_ = false;
  std::vector<uint32_t> count_;  // per leaf: rows counted (pass 1)
  std::vector<uint32_t> fill_;   // per leaf: rows added (pass 2)
  uint64_t counted_ = 0, added_ = 0;
};

// ---- implementation details below ----

struct ServedTable::Leaf {
  std::atomic<uint32_t> refs;
  uint32_t n;
  uint64_t* keys() { return reinterpret_cast<uint64_t*>(this + 1); }
  const uint64_t* keys() const { return reinterpret_cast<const uint64_t*>(this + 1); }
  char* rows() { return reinterpret_cast<char*>(keys() + n); }
  const char* rows() const { return reinterpret_cast<const char*>(keys() + n); }
};

struct ServedTable::Mid {
  std::atomic<uint32_t> refs;
  Leaf* leaves[size_t{1} << kMidBits];
};

struct ServedTable::Root {
  int leaf_bits = 0;
  size_t rows = 0;
  size_t row_bytes = 0;
  std::vector<Mid*> mids;  // null: every leaf of the mid is empty
  Root() = default;
  Root(const Root& other);  // shares (references) every mid
  Root& operator=(const Root&) = delete;
  ~Root();
};

inline size_t ServedTable::size() const { return root_ == nullptr ? 0 : root_->rows; }
inline int ServedTable::leaf_bits() const { return root_ == nullptr ? 0 : root_->leaf_bits; }

template <typename Fn>
void ServedTable::ForEach(Fn&& fn) const {
  const size_t dim = static_cast<size_t>(dim_);
  ForEachBatch([&fn, dim](const uint64_t* keys, const float* rows, size_t n) {
    for (size_t i = 0; i < n; ++i) fn(keys[i], rows + i * dim);
  });
}

template <typename Fn>
void ServedTable::ForEachBatch(Fn&& fn) const {
  if (root_ == nullptr) return;
  std::vector<float> buf;
  const size_t rb = RowBytes();
  const size_t dim = static_cast<size_t>(dim_);
  for (const Mid* mid : root_->mids) {
    if (mid == nullptr) continue;
    for (const Leaf* leaf : mid->leaves) {
      if (leaf == nullptr || leaf->n == 0) continue;
      if (storage_ == Storage::kFp32) {
        fn(leaf->keys(), reinterpret_cast<const float*>(leaf->rows()), size_t{leaf->n});
        continue;
      }
      buf.resize(leaf->n * dim);
      for (uint32_t i = 0; i < leaf->n; ++i) WidenRow(leaf->rows() + i * rb, buf.data() + i * dim);
      fn(leaf->keys(), static_cast<const float*>(buf.data()), size_t{leaf->n});
    }
  }
}

}  // namespace freshet
