// KeyIndex: the key -> row map of a loaded table (exporter/snapshot.h's
// LoadedTable), built for a serving tier that loads millions of rows and
// then only looks them up.
//
// An open-addressing hash table of 16-byte slots {key, row}: linear probing,
// load factor at most 1/2, backward-shift deletion (no tombstones, so a
// table that sees many deltas never degrades). A lookup touches one or two
// cache lines and no pointers; copying the index (copy-on-write model
// updates) is one memcpy. Building 1M entries takes tens of milliseconds,
// against hundreds for std::unordered_map (one heap node per entry).
//
// Slot placement uses its own mix of the key (murmur3 fmix64 of the key
// xor a constant), independent of the sharding hash in common/sharding.h, so
// the keys of one server shard or partition still spread evenly.
//
// Thread safety: const methods may run concurrently; a mutation needs
// exclusive access. A value: copyable and movable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace freshet {

class KeyIndex {
 public:
  // "No row". Rows stored must be smaller.
  static constexpr uint32_t kNone = 0xffffffffu;

  KeyIndex() = default;
  KeyIndex(const KeyIndex& other);
  KeyIndex& operator=(const KeyIndex& other);
  KeyIndex(KeyIndex&&) noexcept = default;
  KeyIndex& operator=(KeyIndex&&) noexcept = default;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Number of slots (0 or a power of two >= 16).
  size_t capacity() const { return slots_.size(); }

  // The row of `key`, or kNone.
  uint32_t Find(uint64_t key) const {
    if (size_ == 0) return kNone;
    for (size_t i = Home(key);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.row == kNone) return kNone;
      if (s.key == key) return s.row;
    }
  }
  bool contains(uint64_t key) const { return Find(key) != kNone; }

  // Maps key -> row if the key is absent and returns kNone; otherwise leaves
  // the map unchanged and returns the key's row. REQUIRES: row != kNone.
  uint32_t Insert(uint64_t key, uint32_t row);
  // Maps key -> row, inserting or overwriting. REQUIRES: row != kNone.
  void Set(uint64_t key, uint32_t row);
  // Removes the key; returns its row, or kNone if it was absent.
  uint32_t Erase(uint64_t key);
  // Makes room for `n` keys without rehashing.
  void Reserve(size_t n);
  void Clear();

  // Calls fn(key, row) for every entry, in slot order.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (const Slot& s : slots_) {
      if (s.row != kNone) fn(s.key, s.row);
    }
  }

 private:
  struct Slot {
    uint64_t key;
    uint32_t row;  // kNone: empty
  };

  size_t Home(uint64_t key) const {
    uint64_t h = key ^ 0x5bd1e9955bd1e995ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return static_cast<size_t>(h) & mask_;
  }
  // Rehashes into `capacity` slots (a power of two above 2 * size_).
  void Rehash(size_t capacity);

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace freshet
