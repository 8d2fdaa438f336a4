#include "common/buffer_pool.h"

#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

namespace freshet {
namespace {

constexpr size_t kBig = size_t{1} << 20;

TEST(BufferPoolTest, GivenBufferIsReusedWithoutReallocation) {
  BufferPool pool;
  std::vector<char> a = pool.Take(kBig, 128);
  ASSERT_EQ(a.size(), kBig);
  ASSERT_GE(a.capacity(), kBig + 128);
  std::memset(a.data(), 7, a.size());
  const char* data = a.data();
  pool.Give(std::move(a));
  EXPECT_EQ(pool.stats().buffers, 1);
  std::vector<char> b = pool.Take(kBig - 100, 128);
  EXPECT_EQ(b.data(), data);  // the same memory: no allocation
  EXPECT_EQ(b.size(), kBig - 100);
  EXPECT_GE(b.capacity(), kBig - 100 + 128);
  EXPECT_EQ(b[0], 7);  // recycled bytes are not cleared (callers overwrite)
  EXPECT_EQ(pool.stats().reused, 1);
  EXPECT_EQ(pool.stats().buffers, 0);
}

TEST(BufferPoolTest, GrowingARecycledBufferKeepsItsBytesAndZeroesTheNewOnes) {
  BufferPool pool;
  std::vector<char> a = pool.Take(kBig, kBig);  // capacity 2 MiB
  std::memset(a.data(), 3, a.size());
  pool.Give(std::move(a));
  std::vector<char> b = pool.Take(kBig + 10);
  ASSERT_EQ(b.size(), kBig + 10);
  EXPECT_EQ(b[kBig - 1], 3);
  EXPECT_EQ(b[kBig + 9], 0);  // vector semantics past the old size
}

TEST(BufferPoolTest, ASlightlyLargerMessageFitsARecycledBuffer) {
  BufferPool pool;
  const size_t n = 16'230'000;  // a dim-64 answer of ~63,400 unique rows
  std::vector<char> a = pool.Take(n);
  EXPECT_GE(a.capacity(), n);
  EXPECT_LE(a.capacity(), n + n / 8);
  const char* data = a.data();
  pool.Give(std::move(a));
  std::vector<char> b = pool.Take(n + 100'000);  // the next one has more unique keys
  EXPECT_EQ(b.data(), data);
  EXPECT_EQ(pool.stats().reused, 1);
}

TEST(BufferPoolTest, SmallBuffersAreNotPooled) {
  BufferPool pool;
  pool.Give(std::vector<char>(BufferPool::kMinPooledBytes - 1));
  EXPECT_EQ(pool.stats().buffers, 0);
  std::vector<char> s = pool.Take(100);
  EXPECT_EQ(s.size(), 100u);
  EXPECT_EQ(pool.stats().allocated, 0);  // not a pooled size: plain allocation
}

TEST(BufferPoolTest, TakesTheBestFitAndNeverAHugeBufferForASmallRequest) {
  BufferPool pool;
  std::vector<char> huge = pool.Take(64 * kBig);
  std::vector<char> mid = pool.Take(2 * kBig);
  const char* huge_data = huge.data();
  const char* mid_data = mid.data();
  pool.Give(std::move(huge));
  pool.Give(std::move(mid));
  std::vector<char> a = pool.Take(kBig);  // 2 MiB fits (<= 4 n + 1 MiB); 64 MiB does not
  EXPECT_EQ(a.data(), mid_data);
  std::vector<char> b = pool.Take(kBig);
  EXPECT_NE(b.data(), huge_data);  // allocated instead
  std::vector<char> c = pool.Take(60 * kBig);
  EXPECT_EQ(c.data(), huge_data);
}

TEST(BufferPoolTest, KeepsAtMostMaxBuffersOldestDroppedFirst) {
  BufferPool pool;
  std::vector<std::vector<char>> held;
  for (size_t i = 0; i < BufferPool::kMaxBuffers + 3; ++i) {
    held.push_back(pool.Take(BufferPool::kMinPooledBytes));
  }
  std::vector<const char*> data;
  for (auto& b : held) {
    data.push_back(b.data());
    pool.Give(std::move(b));
  }
  EXPECT_EQ(pool.stats().buffers, static_cast<int64_t>(BufferPool::kMaxBuffers));
  // The newest buffers stayed: every Take now reuses one of them.
  for (size_t i = 0; i < BufferPool::kMaxBuffers; ++i) {
    std::vector<char> b = pool.Take(BufferPool::kMinPooledBytes);
    EXPECT_NE(b.data(), data[0]);
    EXPECT_NE(b.data(), data[1]);
    EXPECT_NE(b.data(), data[2]);
    held[i] = std::move(b);
  }
  EXPECT_EQ(pool.stats().buffers, 0);
  EXPECT_EQ(pool.stats().reused, static_cast<int64_t>(BufferPool::kMaxBuffers));
}

// A flood of small buffers past the count bound frees small ones, never the
// large buffer given before them (reallocating it would cost a page fault
// per 4 KiB: issue 16).
TEST(BufferPoolTest, CountBoundFreesTheSmallestFirst) {
  BufferPool pool;
  std::vector<char> big = pool.Take(16 * kBig);
  const char* big_data = big.data();
  pool.Give(std::move(big));
  std::vector<std::vector<char>> small;
  for (size_t i = 0; i < 2 * BufferPool::kMaxBuffers; ++i) {
    small.push_back(pool.Take(BufferPool::kMinPooledBytes));
  }
  for (auto& b : small) pool.Give(std::move(b));
  EXPECT_EQ(pool.stats().buffers, static_cast<int64_t>(BufferPool::kMaxBuffers));
  const int64_t reused = pool.stats().reused;
  std::vector<char> again = pool.Take(16 * kBig);
  EXPECT_EQ(pool.stats().reused, reused + 1);  // served from the pool
  EXPECT_EQ(again.data(), big_data);
}

TEST(BufferPoolTest, ByteBoundHolds) {
  BufferPool pool(BufferPool::kMaxBuffers, 4 * kBig);
  std::vector<std::vector<char>> held;
  for (int i = 0; i < 6; ++i) held.push_back(pool.Take(kBig));
  for (auto& b : held) pool.Give(std::move(b));
  EXPECT_LE(pool.stats().bytes, static_cast<int64_t>(4 * kBig));
  EXPECT_GE(pool.stats().buffers, 3);
  EXPECT_LE(pool.stats().buffers, 4);
}

TEST(BufferPoolTest, ConcurrentTakeAndGive) {
  BufferPool pool;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&pool, t] {
      for (int i = 0; i < 200; ++i) {
        std::vector<char> b = pool.Take(kBig / 4 + static_cast<size_t>(t) * 4096);
        std::memset(b.data(), t, b.size());
        EXPECT_EQ(b[b.size() - 1], static_cast<char>(t));
        pool.Give(std::move(b));
      }
    });
  }
  for (auto& th : threads) th.join();
  const BufferPool::Stats s = pool.stats();
  EXPECT_EQ(s.reused + s.allocated, 800);
  EXPECT_GT(s.reused, 0);
}

}  // namespace
}  // namespace freshet
