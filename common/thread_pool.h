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

 private:
  void Loop() EXCLUDES(mu_);
  Mutex mu_;
  CondVar cv_, idle_cv_;
  std::deque<std::function<void()>> tasks_ GUARDED_BY(mu_);
  int running_ GUARDED_BY(mu_) = 0;
  bool stop_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace freshet
