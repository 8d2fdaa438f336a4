// Mutex, MutexLock and CondVar: std::mutex / std::lock_guard /
// std::condition_variable with clang thread-safety annotations
// (common/thread_annotations.h), in the manner of leveldb's port::Mutex and
// absl::Mutex. Declare the data a mutex protects with GUARDED_BY(mu_) and the
// private helpers that expect it held with REQUIRES(mu_); clang
// -Wthread-safety (tools/check_static.sh) then checks every access.
//
//   class Queue {
//    public:
//     void Push(int v) EXCLUDES(mu_) {
//       MutexLock l(&mu_);
//       items_.push_back(v);
//       cv_.Signal();
//     }
//     int Pop() EXCLUDES(mu_) {
//       MutexLock l(&mu_);
//       while (items_.empty()) cv_.Wait(&mu_);
//       ...
//     }
//    private:
//     Mutex mu_;
//     CondVar cv_;
//     std::deque<int> items_ GUARDED_BY(mu_);
//   };
//
// Condition waits take the Mutex, not a predicate: write the loop
// (`while (!cond) cv_.Wait(&mu_);`), because the analysis checks a lambda as a
// separate function that holds no lock.
//
// Thread safety: Mutex and CondVar are thread-safe; a MutexLock belongs to
// the thread that made it. None of them is copyable or movable.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "common/thread_annotations.h"

namespace freshet {

class CondVar;

// A non-recursive exclusive lock (std::mutex).
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  // True, with the lock held, if it was free.
  bool TryLock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis that the calling thread holds the lock (for code it
  // cannot follow, e.g. a callback run under the lock). Not checked at run
  // time: std::mutex does not record its owner.
  void AssertHeld() const ASSERT_CAPABILITY(this) {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds `mu` for its scope (std::lock_guard / std::unique_lock). Unlock() and
// Lock() release and re-take it within the scope; the destructor releases it
// only if it is held.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() {
    if (locked_) mu_->Unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  // REQUIRES: held (not after Unlock() without Lock()).
  void Unlock() RELEASE() {
    locked_ = false;
    mu_->Unlock();
  }
  // REQUIRES: released by Unlock().
  void Lock() ACQUIRE() {
    mu_->Lock();
    locked_ = true;
  }

 private:
  Mutex* const mu_;
  bool locked_ = true;
};

// A condition variable used with a Mutex (std::condition_variable). Waits may
// wake spuriously: call them in a loop that re-checks the condition.
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Atomically releases *mu and blocks until signalled (or spuriously woken),
  // then re-acquires *mu.
  void Wait(Mutex* mu) REQUIRES(*mu) {
    std::unique_lock<std::mutex> l(mu->mu_, std::adopt_lock);
    cv_.wait(l);
    l.release();  // *mu stays held, owned by the caller
  }
  // As Wait(), but gives up at `deadline` (steady clock). True if the
  // deadline passed, false if woken before it (possibly spuriously).
  bool WaitWithDeadline(Mutex* mu, std::chrono::steady_clock::time_point deadline) REQUIRES(*mu) {
    std::unique_lock<std::mutex> l(mu->mu_, std::adopt_lock);
    const bool timed_out = cv_.wait_until(l, deadline) == std::cv_status::timeout;
    l.release();
    return timed_out;
  }
  // WaitWithDeadline(mu, now + timeout).
  template <class Rep, class Period>
  bool WaitWithTimeout(Mutex* mu, std::chrono::duration<Rep, Period> timeout) REQUIRES(*mu) {
    return WaitWithDeadline(mu, std::chrono::steady_clock::now() + timeout);
  }
  // Wakes one waiter (notify_one) / every waiter (notify_all). The caller
  // need not hold the mutex.
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace freshet
