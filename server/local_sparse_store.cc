#include "server/local_sparse_store.h"

#include <algorithm>
#include <limits>

#include "common/key_dedup.h"

namespace freshet {
namespace {
std::future<Status> Ready(Status st) {
  std::promise<Status> p;
  p.set_value(std::move(st));
  return p.get_future();
}
}  // namespace

std::future<Status> LocalSparseStore::Pull(int table, const uint64_t* keys, size_t n, float* out) {
  if (table < 0 || table >= shard_->num_tables()) {
    return Ready(InvalidArgument("unknown table id " + std::to_string(table)));
  }
  const uint32_t dim = static_cast<uint32_t>(shard_->table(table)->dim());
  return Ready(shard_->HandlePull(table, dim, keys, n, out));
}

std::future<Status> LocalSparseStore::Push(int table, const uint64_t* keys, size_t n,
                                           const float* grads) {
  if (table < 0 || table >= shard_->num_tables()) {
    return Ready(InvalidArgument("unknown table id " + std::to_string(table)));
  }
  const int dim = shard_->table(table)->dim();
  const int64_t et = event_time_.load();
  const uint32_t event_s =
      et <= 0 ? 0u
              : static_cast<uint32_t>(std::min<int64_t>(et, std::numeric_limits<uint32_t>::max()));
  // Same aggregation as PsClient: duplicates summed, each key applied once.
  Dedup d = Deduplicate(keys, n);
  if (!d.has_dups) return Ready(shard_->HandlePush(table, dim, keys, n, grads, event_s));
  std::vector<float> summed;
  SumDuplicateRows(d, grads, dim, &summed);
  return Ready(
      shard_->HandlePush(table, dim, d.uniq.data(), d.uniq.size(), summed.data(), event_s));
}

}  // namespace freshet
