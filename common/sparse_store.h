// SparseStore: where a trainer's embedding rows live. The seam between the
// training loop and the parameter servers:
//   - PsClient (worker/ps_client.h) talks to remote servers;
//   - LocalSparseStore (server/local_sparse_store.h) keeps the tables in this process, applying
//   pulls and
//     pushes at once (the single-process reference trainer, freshet_eval).
// Both deduplicate keys and sum duplicate gradients the same way
// (common/key_dedup.h), so a 1-worker staleness-0 run matches the local one.
//
// Thread safety: implementations are thread-safe.
#pragma once

#include <cstdint>
#include <future>
#include <memory>

#include "common/status.h"

namespace freshet {

class SparseStore {
 public:
  virtual ~SparseStore() = default;
  // Writes n*dim floats (row i for keys[i]); keys/out live until ready.
  virtual std::future<Status> Pull(int table, const uint64_t* keys, size_t n, float* out) = 0;
  // Applies grads[n*dim]; keys/grads are copied before returning.
  virtual std::future<Status> Push(int table, const uint64_t* keys, size_t n,
                                   const float* grads) = 0;
  // Ends a training step (bounded staleness bookkeeping).
  virtual Status Clock() = 0;
  // Event time (unix s) of the batch whose gradients the next Push calls
  // carry; servers measure row TTLs in it (docs/TABLES.md). Default: ignored.
  virtual void SetEventTime(int64_t /*unix_s*/) {}
};

}  // namespace freshet
