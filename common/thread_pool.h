// A fixed-size pool of threads running queued tasks in FIFO order.
//
// Thread safety: Schedule() may be called from any thread, including pool
// threads. The destructor runs every task already scheduled, then joins.
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "common/mutex.h"

namespace freshet {

class ThreadPool {
 public:
  // REQUIRES: num_threads >= 1.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void Schedule(std::function<void()> task) EXCLUDES(mu_);
  // Blocks until the queue is empty and no task is running.
  void WaitIdle() EXCLUDES(mu_);
  int num_threads() const { return static_cast<int>(threads_.size()); }
  // Tasks run to completion so far.
  int64_t tasks_run() const EXCLUDES(mu_);

 private:
  void Loop() EXCLUDES(mu_);
  mutable Mutex mu_;
  CondVar cv_, idle_cv_;
  std::deque<std::function<void()>> tasks_ GUARDED_BY(mu_);
  int running_ GUARDED_BY(mu_) = 0;
  int64_t done_ GUARDED_BY(mu_) = 0;
  bool stop_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// Runs fn(0), ..., fn(n - 1) and returns when all have: fn(0) on the
// calling thread, the others as tasks of `pool` (null: all on the caller,
// in order). Never call it from one of `pool`'s own tasks: they could wait
// for each other.
void ParallelFor(ThreadPool* pool, int n, const std::function<void(int)>& fn);

// Sets the calling thread's nice value (this thread only: Linux threads
// have their own) to `nice`, for background work that must yield a busy
// core to the threads that train and export (the exporter's compaction).
// Returns false (errno set) if the kernel refused it.
bool SetThisThreadNice(int nice);

}  // namespace freshet
