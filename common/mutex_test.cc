#include "common/mutex.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace freshet {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// True if another thread can take `mu` now (it is free), which it then
// releases.
bool FreeElsewhere(Mutex* mu) {
  bool got = false;
  std::thread([&] {
    if (mu->TryLock()) {
      got = true;
      mu->Unlock();
    }
  }).join();
  return got;
}

// A counter whose increments race unless MutexLock excludes them.
class Counter {
 public:
  void Add() EXCLUDES(mu_) {
    MutexLock l(&mu_);
    const int64_t v = n_;
    std::this_thread::yield();  // widen the window a missing lock would leave
    n_ = v + 1;
  }
  int64_t value() const EXCLUDES(mu_) {
    MutexLock l(&mu_);
    return n_;
  }

 private:
  mutable Mutex mu_;
  int64_t n_ GUARDED_BY(mu_) = 0;
};

TEST(MutexTest, MutexLockExcludesOtherThreads) {
  Counter c;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&c] {
      for (int i = 0; i < 2000; ++i) c.Add();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.value(), 4 * 2000);
}

TEST(MutexTest, TryLockFailsWhileHeldElsewhere) {
  Mutex mu;
  mu.Lock();
  EXPECT_FALSE(FreeElsewhere(&mu));
  mu.Unlock();
  EXPECT_TRUE(FreeElsewhere(&mu));
  if (mu.TryLock()) {
    mu.Unlock();
  } else {
    ADD_FAILURE() << "TryLock() failed on a free mutex";
  }
}

TEST(MutexTest, MutexLockUnlockLetsOthersInAndLockRetakes) {
  Mutex mu;
  {
    MutexLock l(&mu);
    l.Unlock();
    EXPECT_TRUE(FreeElsewhere(&mu)) << "the mutex stayed held after MutexLock::Unlock()";
    l.Lock();
    EXPECT_FALSE(FreeElsewhere(&mu)) << "MutexLock::Lock() did not retake the mutex";
  }
  EXPECT_TRUE(FreeElsewhere(&mu)) << "the destructor did not release the retaken mutex";
}

// Takes `mu` by hand after the guard's Unlock(): the analysis cannot model a
// guard that is released before its scope ends and a second holder in the
// same scope, so it is off here.
void UnlockThenLockByHand(Mutex* mu) NO_THREAD_SAFETY_ANALYSIS {
  MutexLock l(mu);
  l.Unlock();
  mu->Lock();  // a hold the guard's destructor must leave alone
}

TEST(MutexTest, DestructorAfterUnlockDoesNotUnlockAgain) {
  Mutex mu;
  UnlockThenLockByHand(&mu);
  EXPECT_FALSE(FreeElsewhere(&mu)) << "MutexLock's destructor unlocked a mutex it had released";
  mu.AssertHeld();  // taken in UnlockThenLockByHand()
  mu.Unlock();
}

TEST(CondVarTest, WaitWithTimeoutTimesOutWithoutSignal) {
  Mutex mu;
  CondVar cv;
  MutexLock l(&mu);
  const auto t0 = Clock::now();
  bool timed_out = false;
  // Spurious wake-ups return false early: retry until the deadline.
  const auto deadline = t0 + milliseconds(50);
  while (!(timed_out = cv.WaitWithDeadline(&mu, deadline))) {
  }
  EXPECT_TRUE(timed_out);
  EXPECT_GE(Clock::now() - t0, milliseconds(50));
  EXPECT_FALSE(FreeElsewhere(&mu)) << "not held again after the wait";
}

TEST(CondVarTest, SignalWakesAWaiterBeforeItsDeadline) {
  Mutex mu;
  CondVar cv;
  bool ready = false;  // guarded by mu (a local: not annotated)
  std::thread signaller([&] {
    std::this_thread::sleep_for(milliseconds(20));
    MutexLock l(&mu);
    ready = true;
    cv.Signal();
  });
  const auto t0 = Clock::now();
  {
    MutexLock l(&mu);
    const auto deadline = t0 + std::chrono::seconds(30);
    while (!ready) {
      if (cv.WaitWithDeadline(&mu, deadline)) break;
    }
    EXPECT_TRUE(ready);
  }
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(10));
  signaller.join();
}

TEST(CondVarTest, SignalAllWakesEveryWaiter) {
  Mutex mu;
  CondVar cv;
  bool go = false;
  std::atomic<int> woken{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 3; ++i) {
    waiters.emplace_back([&] {
      MutexLock l(&mu);
      while (!go) cv.Wait(&mu);
      woken.fetch_add(1);
    });
  }
  std::this_thread::sleep_for(milliseconds(20));
  {
    MutexLock l(&mu);
    go = true;
  }
  cv.SignalAll();
  for (auto& t : waiters) t.join();
  EXPECT_EQ(woken.load(), 3);
}

}  // namespace
}  // namespace freshet
