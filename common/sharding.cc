#include "common/sharding.h"

namespace freshet {

std::pair<uint32_t, uint32_t> SlotRange(int shard, int num_shards) {
  // Smallest slot s with s * n >> kSlotBits >= shard is ceil(shard * 2^b / n).
  auto first_of = [num_shards](int sh) -> uint32_t {
    const uint64_t num = static_cast<uint64_t>(sh) << kSlotBits;
    return static_cast<uint32_t>((num + num_shards - 1) / num_shards);
  };
  return {first_of(shard), first_of(shard + 1)};
}

}  // namespace freshet
