#include "exporter/served_table.h"

#include <glog/logging.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include "common/half.h"
#include "common/sharding.h"

namespace freshet {

namespace {

// Leaf hash of a key: murmur3's fmix64 of the key xor a constant (not the
// sharding hash itself, so one server's keys still spread over every leaf).
inline uint64_t KeyHash(uint64_t key) { return MixKey(key ^ 0x9e3779b97f4a7c15ULL); }

constexpr int kMinLeafBits = 4;
constexpr int kMaxLeafBits = 40;
constexpr size_t kTargetRowsPerLeaf = 16;
constexpr size_t kMaxAvgRowsPerLeaf = 64;

}  // namespace

ServedTable::Storage ServedTable::StorageOf(proto::TableConfig::Storage s) {
  switch (s) {
    case proto::TableConfig::FP16:
      return Storage::kFp16;
    case proto::TableConfig::BF16:
      return Storage::kBf16;
    default:
      return Storage::kFp32;
  }
}

ServedTable::ServedTable(int dim, Storage storage) : dim_(dim), storage_(storage) {
  CHECK(dim >= 1 && dim <= 4096) << "ServedTable: dim " << dim;
}

size_t ServedTable::RowBytes() const {
  return static_cast<size_t>(dim_) * (storage_ == Storage::kFp32 ? 4 : 2);
}

// ---- reference-counted parts ----------------------------------------------

namespace {

template <typename T>
void Ref(T* p) {
  if (p != nullptr) p->refs.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

// Leaves and mids are malloc'ed blocks; these free them when the last
// reference goes.
static void UnrefLeaf(ServedTable::Leaf* leaf);

ServedTable::Root::Root(const Root& other)
    : leaf_bits(other.leaf_bits), rows(other.rows), row_bytes(other.row_bytes), mids(other.mids) {
  for (Mid* m : mids) Ref(m);
}

ServedTable::Root::~Root() {
  for (Mid* m : mids) {
    if (m == nullptr || m->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) continue;
    for (Leaf* leaf : m->leaves) {
      if (leaf != nullptr && leaf->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::free(leaf);
      }
    }
    std::free(m);
  }
}

namespace {

ServedTable::Leaf* NewLeaf(uint32_t n, size_t row_bytes) {
  const size_t bytes = sizeof(ServedTable::Leaf) + n * (sizeof(uint64_t) + row_bytes);
  void* p = std::malloc(bytes);
  if (p == nullptr) throw std::bad_alloc();
  auto* leaf = static_cast<ServedTable::Leaf*>(p);
  new (&leaf->refs) std::atomic<uint32_t>(1);
  leaf->n = n;
  return leaf;
}

}  // namespace

static void UnrefLeaf(ServedTable::Leaf* leaf) {
  if (leaf != nullptr && leaf->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) std::free(leaf);
}

namespace {

ServedTable::Mid* NewMid() {
  void* p = std::calloc(1, sizeof(ServedTable::Mid));
  if (p == nullptr) throw std::bad_alloc();
  auto* mid = static_cast<ServedTable::Mid*>(p);
  new (&mid->refs) std::atomic<uint32_t>(1);
  return mid;
}

}  // namespace

// ---- reads -----------------------------------------------------------------

const ServedTable::Leaf* ServedTable::LeafOf(uint64_t h) const {
  if (root_ == nullptr) return nullptr;
  const uint64_t idx = h >> (64 - root_->leaf_bits);
  const Mid* mid = root_->mids[idx >> kMidBits];
  return mid == nullptr ? nullptr : mid->leaves[idx & ((1u << kMidBits) - 1)];
}

int64_t ServedTable::Search(const Leaf* leaf, uint64_t key) {
  if (leaf == nullptr) return -1;
  const uint64_t* k = leaf->keys();
  const uint64_t* it = std::lower_bound(k, k + leaf->n, key);
  return it != k + leaf->n && *it == key ? it - k : -1;
}

void ServedTable::WidenRow(const char* row, float* out) const {
  const auto* h = reinterpret_cast<const uint16_t*>(row);
  switch (storage_) {
    case Storage::kFp32:
      std::memcpy(out, row, sizeof(float) * dim_);
      break;
    case Storage::kFp16:
      HalvesToFloats(h, out, dim_);
      break;
    case Storage::kBf16:
      for (int i = 0; i < dim_; ++i) out[i] = Bf16ToFloat(h[i]);
      break;
  }
}

void ServedTable::NarrowRow(const float* in, char* row) const {
  auto* h = reinterpret_cast<uint16_t*>(row);
  switch (storage_) {
    case Storage::kFp32:
      std::memcpy(row, in, sizeof(float) * dim_);
      break;
    case Storage::kFp16:
      FloatsToHalves(in, h, dim_);
      break;
    case Storage::kBf16:
      for (int i = 0; i < dim_; ++i) h[i] = FloatToBf16(in[i]);
      break;
  }
}

bool ServedTable::Lookup(uint64_t key, float* out) const {
  const Leaf* leaf = LeafOf(KeyHash(key));
  const int64_t i = Search(leaf, key);
  if (i < 0) return false;
  WidenRow(leaf->rows() + static_cast<size_t>(i) * RowBytes(), out);
  return true;
}

bool ServedTable::contains(uint64_t key) const { return Search(LeafOf(KeyHash(key)), key) >= 0; }

const float* ServedTable::Find(uint64_t key) const {
  CHECK(storage_ == Storage::kFp32) << "ServedTable::Find on a 16-bit table: use Lookup";
  const Leaf* leaf = LeafOf(KeyHash(key));
  const int64_t i = Search(leaf, key);
  if (i < 0) return nullptr;
  return reinterpret_cast<const float*>(leaf->rows() + static_cast<size_t>(i) * RowBytes());
}

int64_t ServedTable::payload_bytes() const {
  return static_cast<int64_t>(size() * (sizeof(uint64_t) + RowBytes()));
}

int64_t ServedTable::allocated_bytes() const {
  if (root_ == nullptr) return 0;
  int64_t bytes = sizeof(Root) + static_cast<int64_t>(root_->mids.capacity() * sizeof(Mid*));
  const size_t rb = RowBytes();
  for (const Mid* mid : root_->mids) {
    if (mid == nullptr) continue;
    bytes += sizeof(Mid);
    for (const Leaf* leaf : mid->leaves) {
      if (leaf != nullptr) bytes += sizeof(Leaf) + leaf->n * (sizeof(uint64_t) + rb);
    }
  }
  return bytes;
}

// ---- writes ----------------------------------------------------------------

int ServedTable::BitsFor(size_t rows) {
  int bits = kMinLeafBits;
  while (bits < kMaxLeafBits && (size_t{1} << bits) * kTargetRowsPerLeaf < rows) ++bits;
  return bits;
}

void ServedTable::ResetRoot(int bits) {
  auto root = std::make_shared<Root>();
  root->leaf_bits = bits;
  root->row_bytes = RowBytes();
  root->mids.assign(std::max<size_t>(1, (size_t{1} << bits) >> kMidBits), nullptr);
  root_ = std::move(root);
}

ServedTable::Root* ServedTable::MutableRoot() {
  if (root_ == nullptr) {
    root_ = std::make_shared<Root>();
    root_->leaf_bits = kMinLeafBits;
    root_->row_bytes = RowBytes();
    root_->mids.assign(1, nullptr);
  } else if (root_.use_count() > 1) {
    root_ = std::make_shared<Root>(*root_);
  }
  return root_.get();
}

namespace {

// One change to a leaf: an upsert of keys[src] (src >= 0) or a deletion.
struct Op {
  uint64_t idx;  // leaf index
  uint64_t key;
  int64_t src;  // row in the caller's values; -1: delete
  size_t seq;   // order: deletions first, then upserts in order
};

}  // namespace

void ServedTable::Build(const uint64_t* keys, const float* values, size_t n) {
  CHECK_GE(dim_, 1) << "ServedTable::Build on a table without a dim";
  ResetRoot(BitsFor(n));
  const size_t num_leaves = size_t{1} << root_->leaf_bits;
  if (n == 0) return;
  if (n > std::numeric_limits<uint32_t>::max()) {  // beyond the 32-bit row order below
    Apply(nullptr, 0, keys, values, n);
    return;
  }
  // Counting sort of the rows by leaf (4 bytes of order per row), then each
  // leaf sorted on its own: no per-row op records and no global sort, so a
  // full load's extra memory is the order array, not a copy of the rows.
  Root* r = root_.get();
  const int shift = 64 - r->leaf_bits;
  std::vector<uint32_t> start(num_leaves + 1, 0);
  for (size_t i = 0; i < n; ++i) ++start[(KeyHash(keys[i]) >> shift) + 1];
  for (size_t l = 0; l < num_leaves; ++l) start[l + 1] += start[l];
  std::vector<uint32_t> order(n);
  {
    std::vector<uint32_t> next(start.begin(), start.end() - 1);
    for (size_t i = 0; i < n; ++i) {
      order[next[KeyHash(keys[i]) >> shift]++] = static_cast<uint32_t>(i);
    }
  }
  const size_t rb = RowBytes();
  constexpr uint64_t kSlotMask = (uint64_t{1} << kMidBits) - 1;
  size_t rows = 0;
  for (size_t l = 0; l < num_leaves; ++l) {
    uint32_t* b = order.data() + start[l];
    uint32_t* e = order.data() + start[l + 1];
    if (b == e) continue;
    // Key order; a key listed twice keeps its last row (the higher index).
    std::sort(b, e, [keys](uint32_t x, uint32_t y) {
      return keys[x] != keys[y] ? keys[x] < keys[y] : x < y;
    });
    uint32_t* w = b;
    for (uint32_t* it = b; it != e; ++it) {
      if (it + 1 != e && keys[it[1]] == keys[*it]) continue;  // a later row of this key follows
      *w++ = *it;
    }
    const uint32_t m = static_cast<uint32_t>(w - b);
    Leaf* leaf = NewLeaf(m, rb);
    for (uint32_t j = 0; j < m; ++j) {
      leaf->keys()[j] = keys[b[j]];
      NarrowRow(values + static_cast<size_t>(b[j]) * dim_, leaf->rows() + j * rb);
    }
    Mid*& mid = r->mids[l >> kMidBits];
    if (mid == nullptr) mid = NewMid();
    mid->leaves[l & kSlotMask] = leaf;
    rows += m;
  }
  r->rows = rows;
}

void ServedTable::Apply(const uint64_t* deleted, size_t num_deleted, const uint64_t* keys,
                        const float* values, size_t n) {
  CHECK_GE(dim_, 1) << "ServedTable::Apply on a table without a dim";
  if (num_deleted == 0 && n == 0) return;
  Root* root = MutableRoot();
  // Grow first if the upserts would overfill the leaves.
  if (root->rows + n > kMaxAvgRowsPerLeaf << root->leaf_bits) {
    Rebucket(BitsFor(root->rows + n));
    root = root_.get();
  }
  const int shift = 64 - root->leaf_bits;
  std::vector<Op> ops;
  ops.reserve(num_deleted + n);
  for (size_t i = 0; i < num_deleted; ++i) {
    ops.push_back({KeyHash(deleted[i]) >> shift, deleted[i], -1, i});
  }
  for (size_t i = 0; i < n; ++i) {
    ops.push_back({KeyHash(keys[i]) >> shift, keys[i], static_cast<int64_t>(i), num_deleted + i});
  }
  std::sort(ops.begin(), ops.end(), [](const Op& a, const Op& b) {
    if (a.idx != b.idx) return a.idx < b.idx;
    if (a.key != b.key) return a.key < b.key;
    return a.seq < b.seq;
  });
  const size_t rb = RowBytes();
  constexpr uint64_t kSlotMask = (uint64_t{1} << kMidBits) - 1;
  std::vector<std::pair<uint64_t, int64_t>> merged;
  // Per leaf group: merge the sorted old keys with the sorted ops.
  for (size_t g = 0; g < ops.size();) {
    const uint64_t idx = ops[g].idx;
    size_t end = g;
    while (end < ops.size() && ops[end].idx == idx) ++end;
    Mid*& mid_ref = root->mids[idx >> kMidBits];
    if (mid_ref == nullptr) {
      mid_ref = NewMid();
    } else if (mid_ref->refs.load(std::memory_order_acquire) > 1) {
      Mid* copy = NewMid();
      for (size_t s = 0; s <= kSlotMask; ++s) {
        copy->leaves[s] = mid_ref->leaves[s];
        Ref(copy->leaves[s]);
      }
      Mid* old = mid_ref;
      mid_ref = copy;
      // `old` is still referenced by another version: only drop our count.
      old->refs.fetch_sub(1, std::memory_order_acq_rel);
    }
    Leaf*& leaf_ref = mid_ref->leaves[idx & kSlotMask];
    const Leaf* old = leaf_ref;
    const uint32_t old_n = old == nullptr ? 0 : old->n;
    // Final state per key of the group: the last op wins (a deletion
    // followed by an upsert of the same key is an upsert).
    // (key, source) in key order: source >= 0 a caller row, else
    // -(old index) - 2.
    merged.clear();
    uint32_t o = 0;
    int64_t delta_rows = 0;
    for (size_t i = g; i < end;) {
      const uint64_t key = ops[i].key;
      while (o < old_n && old->keys()[o] < key) {
        merged.emplace_back(old->keys()[o], -static_cast<int64_t>(o) - 2);
        ++o;
      }
      const bool existed = o < old_n && old->keys()[o] == key;
      size_t last = i;
      while (last + 1 < end && ops[last + 1].key == key) ++last;
      const Op& fin = ops[last];
      if (fin.src >= 0) {
        merged.emplace_back(key, fin.src);
        if (!existed) ++delta_rows;
      } else if (existed) {
        --delta_rows;
      }
      if (existed) ++o;
      i = last + 1;
    }
    while (o < old_n) {
      merged.emplace_back(old->keys()[o], -static_cast<int64_t>(o) - 2);
      ++o;
    }
    Leaf* leaf = nullptr;
    if (!merged.empty()) {
      leaf = NewLeaf(static_cast<uint32_t>(merged.size()), rb);
      uint64_t* out_keys = leaf->keys();
      char* rows = leaf->rows();
      for (size_t r = 0; r < merged.size(); ++r) {
        out_keys[r] = merged[r].first;
        const int64_t src = merged[r].second;
        if (src >= 0) {
          NarrowRow(values + static_cast<size_t>(src) * dim_, rows + r * rb);
        } else {
          std::memcpy(rows + r * rb, old->rows() + static_cast<size_t>(-src - 2) * rb, rb);
        }
      }
    }
    root->rows = static_cast<size_t>(static_cast<int64_t>(root->rows) + delta_rows);
    UnrefLeaf(leaf_ref);
    leaf_ref = leaf;
    g = end;
  }
}

void ServedTable::Rebucket(int bits) {
  std::vector<uint64_t> keys;
  std::vector<float> values;
  keys.reserve(size());
  values.reserve(size() * static_cast<size_t>(dim_));
  ForEach([&](uint64_t key, const float* row) {
    keys.push_back(key);
    values.insert(values.end(), row, row + dim_);
  });
  auto root = std::make_shared<Root>();
  root->leaf_bits = bits;
  root->row_bytes = RowBytes();
  root->mids.assign(std::max<size_t>(1, (size_t{1} << bits) >> kMidBits), nullptr);
  root_ = std::move(root);
  if (!keys.empty()) Apply(nullptr, 0, keys.data(), values.data(), keys.size());
}

// ---- StreamBuilder ---------------------------------------------------------------

ServedTable::StreamBuilder::StreamBuilder(int dim, Storage storage, size_t rows_hint)
    : table_(dim, storage) {
  table_.ResetRoot(BitsFor(rows_hint));
  shift_ = 64 - table_.root_->leaf_bits;
  count_.assign(size_t{1} << table_.root_->leaf_bits, 0);
}

void ServedTable::StreamBuilder::Count(const uint64_t* keys, size_t n) {
  CHECK(!started_) << "StreamBuilder::Count after StartRows";
  for (size_t i = 0; i < n; ++i) ++count_[KeyHash(keys[i]) >> shift_];
  counted_ += n;
}

void ServedTable::StreamBuilder::StartRows() {
  CHECK(!started_) << "StreamBuilder::StartRows twice";
  started_ = true;
  Root* r = table_.root_.get();
  const size_t rb = table_.RowBytes();
  constexpr uint64_t kSlotMask = (uint64_t{1} << kMidBits) - 1;
  for (size_t l = 0; l < count_.size(); ++l) {
    if (count_[l] == 0) continue;
    Mid*& mid = r->mids[l >> kMidBits];
    if (mid == nullptr) mid = NewMid();
    mid->leaves[l & kSlotMask] = NewLeaf(count_[l], rb);
  }
  fill_.assign(count_.size(), 0);
}

Status ServedTable::StreamBuilder::Add(const uint64_t* keys, const float* values, size_t n) {
  CHECK(started_) << "StreamBuilder::Add before StartRows";
  Root* r = table_.root_.get();
  const size_t rb = table_.RowBytes();
  const size_t dim = static_cast<size_t>(table_.dim_);
  constexpr uint64_t kSlotMask = (uint64_t{1} << kMidBits) - 1;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t l = KeyHash(keys[i]) >> shift_;
    if (fill_[l] == count_[l]) {
      return DataLoss("more rows than the first pass counted (" + std::to_string(counted_) +
                      "): the input changed between the passes");
    }
    Leaf* leaf = r->mids[l >> kMidBits]->leaves[l & kSlotMask];
    const uint32_t j = fill_[l]++;
    leaf->keys()[j] = keys[i];
    table_.NarrowRow(values + i * dim, leaf->rows() + j * rb);
  }
  added_ += n;
  return Status::OK();
}

StatusOr<ServedTable> ServedTable::StreamBuilder::Finish() {
  CHECK(started_) << "StreamBuilder::Finish before StartRows";
  if (added_ != counted_) {
    return DataLoss("the second pass gave " + std::to_string(added_) + " rows, the first " +
                    std::to_string(counted_) + ": the input changed between the passes");
  }
  Root* r = table_.root_.get();
  const size_t rb = table_.RowBytes();
  std::vector<char> tmp(rb);
  size_t rows = 0;
  for (Mid* mid : r->mids) {
    if (mid == nullptr) continue;
    for (Leaf*& leaf : mid->leaves) {
      if (leaf == nullptr) continue;
      uint64_t* k = leaf->keys();
      char* row = leaf->rows();
      const uint32_t n = leaf->n;
      // Insertion sort (a leaf holds about 16 rows), stable: of a key added
      // twice, the later row stays after the earlier.
      for (uint32_t i = 1; i < n; ++i) {
        if (k[i - 1] <= k[i]) continue;
        const uint64_t key = k[i];
        std::memcpy(tmp.data(), row + i * rb, rb);
        uint32_t j = i;
        for (; j > 0 && k[j - 1] > key; --j) k[j] = k[j - 1];
        std::memmove(row + (j + 1) * rb, row + j * rb, (i - j) * rb);
        k[j] = key;
        std::memcpy(row + j * rb, tmp.data(), rb);
      }
      // A key listed twice keeps its last row.
      uint32_t m = 0;
      for (uint32_t i = 0; i < n; ++i) {
        if (i + 1 < n && k[i + 1] == k[i]) continue;
        if (m != i) {
          k[m] = k[i];
          std::memcpy(row + m * rb, row + i * rb, rb);
        }
        ++m;
      }
      if (m != n) {
        // Rows start right after the keys: move them to their new place.
        leaf->n = m;
        std::memmove(leaf->rows(), row, m * rb);
      }
      rows += m;
    }
  }
  r->rows = rows;
  started_ = false;
  count_.clear();
  fill_.clear();
  return std::move(table_);
}

}  // namespace freshet
