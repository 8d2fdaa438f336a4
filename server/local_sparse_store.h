// LocalSparseStore: a SparseStore over tables held in this process
// (ParameterShard), applying pulls and pushes at once. Used by the
// single-process reference trainer and by freshet_eval.
//
// Thread safety: thread-safe (the shard's tables lock per partition).
#pragma once

#include <atomic>

#include "common/sparse_store.h"
#include "server/parameter_shard.h"

namespace freshet {

class LocalSparseStore : public SparseStore {
 public:
  // Not owned: `shard` must outlive the store.
  explicit LocalSparseStore(ParameterShard* shard) : shard_(shard) {}
  std::future<Status> Pull(int table, const uint64_t* keys, size_t n, float* out) override;
  std::future<Status> Push(int table, const uint64_t* keys, size_t n, const float* grads) override;
  Status Clock() override { return Status::OK(); }
  void SetEventTime(int64_t unix_s) override { event_time_.store(unix_s); }

 private:
  ParameterShard* const shard_;
  std::atomic<int64_t> event_time_{0};
};

}  // namespace freshet
