#include "common/request_tracker.h"

#include <glog/logging.h>

#include <deque>
#include <memory>

#include "common/ps_wire.h"

namespace freshet {

using SteadyClock = std::chrono::steady_clock;

RequestTracker::RequestTracker(Transport* transport, std::function<std::string(int)> describe)
    : transport_(transport), describe_(std::move(describe)) {}

std::string RequestTracker::NoResponse(MsgType type, int rank, Millis timeout,
                                       const std::string& detail) const {
  return std::string(MsgTypeName(type)) + " request to " + describe_(rank) +
         " got no response within " + std::to_string(timeout.count()) + " ms" + detail;
}

uint64_t RequestTracker::Send(int rank, Message msg, Millis timeout, Callback done,
                              std::string detail) {
  const MsgType type = msg.meta.type;
  uint64_t id;
  {
    MutexLock l(&mu_);
    id = next_id_++;
    pending_.emplace(id, Pending{rank, type, timeout.count() > 0, SteadyClock::now() + timeout,
                                 timeout, std::move(detail), std::move(done)});
  }
  msg.meta.request_id = id;
  Status st = transport_->Send(rank, std::move(msg));
  if (!st.ok()) {
    Callback cb;
    {
      MutexLock l(&mu_);
      auto it = pending_.find(id);
      if (it == pending_.end()) return id;  // ended meanwhile (FailAll)
      cb = std::move(it->second.done);
      pending_.erase(it);
    }
    cb(nullptr, st.WithContext(std::string(MsgTypeName(type)) + " to " + describe_(rank)));
  }
  return id;
}

bool RequestTracker::Deliver(Message* reply) {
  Callback cb;
  {
    MutexLock l(&mu_);
    auto it = pending_.find(reply->meta.request_id);
    if (it == pending_.end()) return false;
    // Ids are this tracker's: a message from another rank, or of a type
    // that does not answer the request, merely shares the number.
    MsgType want;
    if (it->second.rank != reply->peer || !ResponseTypeOf(it->second.type, &want) ||
        reply->meta.type != want) {
      return false;
    }
    cb = std::move(it->second.done);
    pending_.erase(it);
  }
  cb(reply, Status::OK());
  return true;
}

void RequestTracker::ExpireOverdue() {
  const auto now = SteadyClock::now();
  std::vector<std::pair<Callback, Status>> overdue;
  {
    MutexLock l(&mu_);
    for (auto it = pending_.begin(); it != pending_.end();) {
      const Pending& p = it->second;
      if (!p.has_deadline || now < p.deadline) {
        ++it;
        continue;
      }
      overdue.emplace_back(std::move(it->second.done),
                           DeadlineExceeded(NoResponse(p.type, p.rank, p.timeout, p.detail)));
      it = pending_.erase(it);
    }
  }
  for (auto& [cb, st] : overdue) cb(nullptr, st);
}

void RequestTracker::FailAll(const Status& st) {
  std::vector<Callback> all;
  {
    MutexLock l(&mu_);
    for (auto& [id, p] : pending_) all.push_back(std::move(p.done));
    pending_.clear();
  }
  for (auto& cb : all) cb(nullptr, st);
}

bool RequestTracker::Cancel(uint64_t id) {
  MutexLock l(&mu_);
  return pending_.erase(id) > 0;
}

size_t RequestTracker::outstanding() const {
  MutexLock l(&mu_);
  return pending_.size();
}

namespace {
// The answers of one Call(), handed from whichever thread ends a request to
// the calling thread.
struct CallState {
  Mutex mu;
  CondVar cv;
  std::deque<std::pair<size_t, StatusOr<Message>>> ready GUARDED_BY(mu);
};
}  // namespace

Status RequestTracker::Call(const std::vector<int>& ranks, std::vector<Message> requests,
                            Millis timeout, const std::function<Status(size_t, Message*)>& on_reply,
                            const std::function<void(Message*)>* unsolicited,
                            const std::string& detail) {
  CHECK_EQ(ranks.size(), requests.size());
  const auto deadline = SteadyClock::now() + timeout;
  auto state = std::make_shared<CallState>();
  const size_t n = ranks.size();
  std::vector<uint64_t> ids(n);
  std::vector<MsgType> types(n);
  std::vector<bool> answered(n, false);
  for (size_t i = 0; i < n; ++i) {
    types[i] = requests[i].meta.type;
    // No tracker deadline: this call enforces its own (one for all).
    ids[i] = Send(ranks[i], std::move(requests[i]), Millis(0),
                  [state, i](Message* reply, const Status& st) {
                    MutexLock l(&state->mu);
                    if (reply != nullptr) {
                      state->ready.emplace_back(i, std::move(*reply));
                    } else {
                      state->ready.emplace_back(i, st);
                    }
                    state->cv.Signal();
                  });
  }
  size_t left = n;
  Status result;
  while (left > 0 && result.ok()) {
    std::deque<std::pair<size_t, StatusOr<Message>>> batch;
    {
      MutexLock l(&state->mu);
      batch.swap(state->ready);
    }
    for (auto& [i, r] : batch) {
      answered[i] = true;
      --left;
      result = r.ok() ? on_reply(i, &*r) : r.status();
      if (!result.ok()) break;
    }
    if (left == 0 || !result.ok()) break;
    const auto now = SteadyClock::now();
    if (now >= deadline) {
      for (size_t i = 0; i < n; ++i) {
        if (answered[i]) continue;
        result = DeadlineExceeded(NoResponse(types[i], ranks[i], timeout, detail));
        break;
      }
      break;
    }
    if (unsolicited == nullptr) {
      MutexLock l(&state->mu);
      while (state->ready.empty()) {
        if (state->cv.WaitWithDeadline(&state->mu, deadline)) break;
      }
      continue;
    }
    const auto wait = std::max(Millis(1), std::chrono::duration_cast<Millis>(deadline - now));
    StatusOr<Message> m = transport_->Recv(wait);
    if (!m.ok()) {
      if (m.status().code() != StatusCode::kDeadlineExceeded) result = m.status();
      continue;
    }
    if (!Deliver(&*m)) (*unsolicited)(&*m);
  }
  for (size_t i = 0; i < n; ++i) {
    if (!answered[i]) Cancel(ids[i]);
  }
  return result;
}

}  // namespace freshet
