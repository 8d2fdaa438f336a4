// BufferPool: recycles large message buffers (std::vector<char>).
//
// Why: a parameter server moves the same few sizes of big message over and
// over (a 65,536-key dim-64 pull answer is 16 MiB). Left to malloc, each
// such buffer may be mapped afresh and unmapped again per message (glibc
// mmaps blocks above its mmap threshold, which it raises only to the largest
// block freed so far, so the history of earlier sizes decides), and every
// page of a fresh mapping costs a page fault plus zeroing: one 16 MiB buffer
// is 4,096 faults, 35 ms -> 100+ ms per pull on a virtualised 2-core box
// (issue 16). std::vector::resize also zero-fills every byte it adds, a
// second full pass over a buffer that is about to be overwritten.
//
// The pool keeps recently freed buffers as they are (size and contents), so
// Take() hands one back by resizing it: no allocation, no page fault, and a
// fill only of the bytes past the buffer's old size (none for the steady
// stream of equal-sized messages). Buffers below kMinPooledBytes are not
// pooled (malloc serves small blocks from its free lists). At most
// max_buffers buffers and max_bytes bytes (defaults kMaxBuffers, kMaxBytes)
// are kept; past the count the smallest are freed (so the many small parts
// of split calls do not evict the large buffers), past the bytes the oldest.
//
// Thread safety: thread-safe (one internal mutex, a leaf lock).
#pragma once

#include <cstddef>
#include <deque>
#include <vector>

#include "common/mutex.h"

namespace freshet {

class BufferPool {
 public:
  static constexpr size_t kMinPooledBytes = size_t{64} << 10;
  static constexpr size_t kMaxBuffers = 32;
  static constexpr size_t kMaxBytes = size_t{512} << 20;

  // Keeps at most `max_buffers` buffers and `max_bytes` bytes of capacity.
  explicit BufferPool(size_t max_buffers = kMaxBuffers, size_t max_bytes = kMaxBytes)
      : max_buffers_(max_buffers), max_bytes_(max_bytes) {}

  // A buffer of size `n` with capacity for `extra` more bytes. When it is a
  // recycled one its bytes are left as they were (not zeroed): the caller
  // overwrites all n. A pooled buffer is reused only when its capacity is at
  // most 4 n + 1 MiB, so a small request does not take a huge buffer. New
  // buffers of a pooled size get a capacity rounded up to 1/8 of a power of
  // two (at most 12.5% more), so the next message, a little larger, fits.
  std::vector<char> Take(size_t n, size_t extra = 0) EXCLUDES(mu_);
  // Returns a buffer for reuse (its contents are discarded).
  void Give(std::vector<char> buf) EXCLUDES(mu_);

  struct Stats {
    int64_t reused = 0;     // Take() served from the pool
    int64_t allocated = 0;  // Take() of a pooled size that had to allocate
    int64_t buffers = 0;    // pooled now
    int64_t bytes = 0;      // pooled now (capacity)
  };
  Stats stats() const EXCLUDES(mu_);

 private:
  const size_t max_buffers_;
  const size_t max_bytes_;
  mutable Mutex mu_;
  std::deque<std::vector<char>> free_ GUARDED_BY(mu_);  // oldest first
  size_t bytes_ GUARDED_BY(mu_) = 0;
  int64_t reused_ GUARDED_BY(mu_) = 0;
  int64_t allocated_ GUARDED_BY(mu_) = 0;
};

// Fixes glibc malloc's thresholds for the whole process: blocks below
// 32 MiB (its largest allowed mmap threshold) always come from its heaps,
// and freed memory stays there until 256 MiB of it sits at a heap's top. By
// default glibc moves its mmap threshold up to the largest block freed so
// far, so whether a 16 MiB block is a fresh mapping (4,096 page faults)
// depends on what the process allocated before (issue 16); the pool covers
// message buffers, this covers every other large per-request block (e.g. a
// client's dedup and gather buffers). Idempotent; MpiSession::Init calls it.
// No-op without glibc.
void TuneMallocForLargeBlocks();

}  // namespace freshet
