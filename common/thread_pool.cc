#include "common/thread_pool.h"

#include <glog/logging.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace freshet {

ThreadPool::ThreadPool(int num_threads) {
  CHECK_GE(num_threads, 1);
  for (int i = 0; i < num_threads; ++i) threads_.emplace_back([this] { Loop(); });
}

ThreadPool::~ThreadPool() {
  {
    MutexLock l(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  for (auto& t : threads_) t.join();
}

void ThreadPool::Schedule(std::function<void()> task) {
  {
    MutexLock l(&mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.Signal();
}

void ThreadPool::WaitIdle() {
  MutexLock l(&mu_);
  while (!(tasks_.empty() && running_ == 0)) idle_cv_.Wait(&mu_);
}

int64_t ThreadPool::tasks_run() const {
  MutexLock l(&mu_);
  return done_;
}

void ThreadPool::Loop() {
  MutexLock l(&mu_);
  while (true) {
    while (!(stop_ || !tasks_.empty())) cv_.Wait(&mu_);
    if (tasks_.empty()) return;  // stop_ and drained
    std::function<void()> task = std::move(tasks_.front());
    tasks_.pop_front();
    ++running_;
    l.Unlock();
    task();
    l.Lock();
    --running_;
    ++done_;
    if (tasks_.empty() && running_ == 0) idle_cv_.SignalAll();
  }
}

void ParallelFor(ThreadPool* pool, int n, const std::function<void(int)>& fn) {
  if (pool == nullptr || n <= 1) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
  Mutex mu;
  CondVar done;
  int left = n - 1;
  for (int i = 1; i < n; ++i) {
    pool->Schedule([&, i] {
      fn(i);
      MutexLock l(&mu);
      if (--left == 0) done.SignalAll();
    });
  }
  fn(0);
  MutexLock l(&mu);
  while (left > 0) done.Wait(&mu);
}

bool SetThisThreadNice(int nice) {
  return setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice) == 0;
}

}  // namespace freshet
