// Key-to-shard mapping: which server holds a key, and which partition of that
// server's table.
//
// The contract (stable across releases; checkpoints depend on it):
//   h         = MixKey(key)                 (murmur3's 64-bit finalizer)
//   slot      = h >> (64 - kSlotBits)       (65,536 fixed hash slots)
//   shard     = slot * num_shards / kNumSlots   (contiguous slot ranges)
//   partition = (h & 0xffffffff) % num_partitions   (independent low bits)
//
// A key's slot never depends on the number of servers, arrival order or
// anything but the key. Each server owns one contiguous range of slots, so a
// checkpoint written by S servers can be loaded by S' servers: each new server
// reads the rows whose slot falls in its range (SlotRange(s, S')), which
// overlaps at most ceil(S/S')+1 of the old files. Partitions use the low hash
// bits, so a server's partitions spread evenly whatever its slot range.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <utility>

namespace freshet {

inline constexpr int kSlotBits = 16;
inline constexpr uint32_t kNumSlots = 1u << kSlotBits;

// murmur3 fmix64: a bijection on uint64 with full avalanche.
inline uint64_t MixKey(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

inline uint32_t SlotOfHash(uint64_t h) { return static_cast<uint32_t>(h >> (64 - kSlotBits)); }
inline uint32_t SlotOf(uint64_t key) { return SlotOfHash(MixKey(key)); }

// REQUIRES: num_shards >= 1.
inline int ShardOfSlot(uint32_t slot, int num_shards) {
  return static_cast<int>((static_cast<uint64_t>(slot) * static_cast<uint64_t>(num_shards)) >>
                          kSlotBits);
}
inline int ShardOf(uint64_t key, int num_shards) { return ShardOfSlot(SlotOf(key), num_shards); }

// REQUIRES: num_partitions >= 1.
inline int PartitionOfHash(uint64_t h, int num_partitions) {
  return static_cast<int>((h & 0xffffffffULL) % static_cast<uint64_t>(num_partitions));
}

// The half-open slot range [first, last) owned by `shard` out of `num_shards`:
// exactly the slots s with ShardOfSlot(s, num_shards) == shard.
std::pair<uint32_t, uint32_t> SlotRange(int shard, int num_shards);

}  // namespace freshet
