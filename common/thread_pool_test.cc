#include "common/thread_pool.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>

namespace freshet {
namespace {

TEST(ThreadPoolTest, WaitIdleReturnsAfterEveryTaskRan) {
  ThreadPool pool(3);
  std::atomic<int> done{0};
  for (int i = 0; i < 200; ++i) {
    pool.Schedule([&done] {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      done.fetch_add(1);
    });
  }
  pool.WaitIdle();
  EXPECT_EQ(done.load(), 200);
}

TEST(ThreadPoolTest, OneThreadRunsTasksInFifoOrder) {
  ThreadPool pool(1);
  std::vector<int> order;  // one pool thread: no race
  for (int i = 0; i < 50; ++i) pool.Schedule([&order, i] { order.push_back(i); });
  pool.WaitIdle();
  ASSERT_EQ(order.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(order[i], i);
}

TEST(ThreadPoolTest, TasksMayScheduleMoreTasks) {
  ThreadPool pool(2);
  std::atomic<int> done{0};
  pool.Schedule([&] {
    for (int i = 0; i < 10; ++i) pool.Schedule([&done] { done.fetch_add(1); });
    done.fetch_add(1);
  });
  // The children are queued while the outer task still counts as running,
  // so WaitIdle() cannot return between them.
  pool.WaitIdle();
  EXPECT_EQ(done.load(), 11);
}

TEST(ThreadPoolTest, DestructorRunsTasksAlreadyScheduled) {
  std::atomic<int> done{0};
  {
    ThreadPool pool(2);
    for (int i = 0; i < 100; ++i) {
      pool.Schedule([&done] {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
        done.fetch_add(1);
      });
    }
  }
  EXPECT_EQ(done.load(), 100);
}

TEST(SetThisThreadNiceTest, ChangesOnlyTheCallingThread) {
  errno = 0;
  const int before = getpriority(PRIO_PROCESS, 0);  // the main thread (tid == pid)
  ASSERT_EQ(errno, 0);
  int seen = -100;
  std::thread t([&] {
    const id_t tid = static_cast<id_t>(syscall(SYS_gettid));
    ASSERT_TRUE(SetThisThreadNice(before + 5 > 19 ? 19 : before + 5));
    errno = 0;
    seen = getpriority(PRIO_PROCESS, tid);
    ASSERT_EQ(errno, 0);
  });
  t.join();
  EXPECT_EQ(seen, before + 5 > 19 ? 19 : before + 5);
  EXPECT_EQ(getpriority(PRIO_PROCESS, 0), before);  // the process's other threads keep theirs
}

}  // namespace
}  // namespace freshet
