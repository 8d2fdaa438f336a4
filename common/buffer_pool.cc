#include "common/buffer_pool.h"

#include <utility>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace freshet {

std::vector<char> BufferPool::Take(size_t n, size_t extra) {
  const size_t want = n + extra;
  if (want >= kMinPooledBytes) {
    MutexLock l(&mu_);
    // Best fit: the smallest pooled buffer that holds `want` bytes, among
    // those already sized >= n (nothing to fill) if any.
    const size_t none = free_.size();
    size_t best = none;
    for (size_t i = 0; i < free_.size(); ++i) {
      const size_t cap = free_[i].capacity();
      if (cap < want || cap > 4 * want + (size_t{1} << 20)) continue;
      const bool sized = free_[i].size() >= n;
      const bool better =
          best == none ||
          (sized != (free_[best].size() >= n) ? sized : cap < free_[best].capacity());
      if (better) best = i;
    }
    if (best != none) {
      std::vector<char> buf = std::move(free_[best]);
      free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(best));
      bytes_ -= buf.capacity();
      ++reused_;
      l.Unlock();
      buf.resize(n);  // fills only bytes past the old size (none when it shrinks)
      return buf;
    }
    ++allocated_;
    // Size classes of 1/8 of a power of two: message sizes vary a little
    // from request to request (unique keys per request), and a buffer a few
    // bytes too small for the next message would be no use.
    size_t step = size_t{1} << (63 - __builtin_clzll(want));
    step /= 8;
    std::vector<char> buf;
    buf.reserve((want + step - 1) / step * step);
    buf.resize(n);
    return buf;
  }
  std::vector<char> buf;
  buf.reserve(want);
  buf.resize(n);
  return buf;
}

void BufferPool::Give(std::vector<char> buf) {
  if (buf.capacity() < kMinPooledBytes) return;
  std::vector<std::vector<char>> drop;  // freed outside the lock
  {
    MutexLock l(&mu_);
    bytes_ += buf.capacity();
    free_.push_back(std::move(buf));
    // Over the count bound, the smallest buffer goes (the oldest of equals):
    // a burst of small messages (a split call's parts) must not push out
    // the large buffers, whose reallocation costs a page fault per 4 KiB.
    while (free_.size() > max_buffers_) {
      size_t smallest = 0;
      for (size_t i = 1; i < free_.size(); ++i) {
        if (free_[i].capacity() < free_[smallest].capacity()) smallest = i;
      }
      bytes_ -= free_[smallest].capacity();
      drop.push_back(std::move(free_[smallest]));
      free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(smallest));
    }
    // Over the byte bound, the oldest go.
    while (bytes_ > max_bytes_) {
      bytes_ -= free_.front().capacity();
      drop.push_back(std::move(free_.front()));
      free_.pop_front();
    }
  }
}

void TuneMallocForLargeBlocks() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

BufferPool::Stats BufferPool::stats() const {
  MutexLock l(&mu_);
  Stats s;
  s.reused = reused_;
  s.allocated = allocated_;
  s.buffers = static_cast<int64_t>(free_.size());
  s.bytes = static_cast<int64_t>(bytes_);
  return s;
}

}  // namespace freshet
