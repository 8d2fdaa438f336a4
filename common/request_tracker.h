// RequestTracker: request ids, deadlines, fan-out and fan-in of replies, for
// a rank that sends requests to other ranks over a Transport and waits for
// their answers. PsClient (worker/ps_client.h) and ExporterNode
// (exporter/exporter_node.h) share it; bodies are built and read with
// common/ps_wire.h.
//
// Two ways to receive the answers:
//  - a rank with its own receive thread hands every message it receives to
//    Deliver() (PsClient) and calls ExpireOverdue() every few ms;
//  - a rank that receives on the waiting thread lets Call() do the
//    receiving (ExporterNode): messages that answer none of its requests go
//    to a callback, so the rank keeps handling its other traffic.
//
// A request that gets no answer in time fails with DeadlineExceeded:
//   "<TYPE> request to <rank> got no response within <t> ms<detail>"
// (<rank> as `describe` names it, e.g. "server 1 (rank 1)").
//
// Thread safety: every method may be called from any thread. Callbacks run
// without the tracker's lock, on the thread that delivers, expires, fails or
// sends the request, exactly once per request (never after Cancel()).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"
#include "common/transport.h"

namespace freshet {

class RequestTracker {
 public:
  // How a request ends: with its reply (st OK; the reply's header status is
  // not checked, that is the codec's job) or with reply null and the
  // failure (deadline, failed send, FailAll).
  using Callback = std::function<void(Message* reply, const Status& st)>;

  // `transport` is not owned and must outlive the tracker. `describe(rank)`
  // names a rank in errors.
  RequestTracker(Transport* transport, std::function<std::string(int rank)> describe);
  // Outstanding requests are dropped without their callbacks running.
  ~RequestTracker() = default;

  // Gives `msg` a new request id, records it and sends it to `rank`.
  // `timeout` > 0: ExpireOverdue() fails it after that long, with the error
  // above followed by `detail`; <= 0: no deadline here (the caller waits and
  // Cancel()s). A failed send runs `done` with that error before Send
  // returns. Returns the request id.
  uint64_t Send(int rank, Message msg, Millis timeout, Callback done, std::string detail = "")
      EXCLUDES(mu_);

  // Runs the callback of the request `reply` answers and returns true;
  // false if no request waits for that id (answered, expired or cancelled
  // earlier, or not a response): the caller decides what it is.
  bool Deliver(Message* reply) EXCLUDES(mu_);
  // Fails every request past its deadline (DeadlineExceeded).
  void ExpireOverdue() EXCLUDES(mu_);
  // Fails every outstanding request with `st`.
  void FailAll(const Status& st) EXCLUDES(mu_);
  // Forgets a request without running its callback; false if it already
  // ended.
  bool Cancel(uint64_t id) EXCLUDES(mu_);
  size_t outstanding() const EXCLUDES(mu_);

  // Fan-out and fan-in: sends requests[i] to ranks[i] (same sizes) and
  // waits until every one is answered, one of them fails, or `timeout`
  // passes: DeadlineExceeded naming the first rank (in order) still silent,
  // followed by `detail`. on_reply(i, reply) runs on the calling thread for
  // each answer as it arrives (decode it there; its error, like a failed
  // send, ends the call). Requests still open when the call ends are
  // cancelled: their late answers are not delivered to anyone.
  //
  // `unsolicited` null: another thread Deliver()s the answers. Otherwise
  // this thread receives from the transport until the call ends and hands
  // every message that answers no request to *unsolicited; a receive error
  // other than a timeout ends the call with that error.
  Status Call(const std::vector<int>& ranks, std::vector<Message> requests, Millis timeout,
              const std::function<Status(size_t i, Message* reply)>& on_reply,
              const std::function<void(Message* msg)>* unsolicited = nullptr,
              const std::string& detail = "") EXCLUDES(mu_);

 private:
  struct Pending {
    int rank;
    MsgType type;
    bool has_deadline;
    std::chrono::steady_clock::time_point deadline;
    Millis timeout;
    std::string detail;
    Callback done;
  };
  std::string NoResponse(MsgType type, int rank, Millis timeout, const std::string& detail) const;

  Transport* const transport_;
  const std::function<std::string(int)> describe_;
  mutable Mutex mu_;
  uint64_t next_id_ GUARDED_BY(mu_) = 1;
  std::unordered_map<uint64_t, Pending> pending_ GUARDED_BY(mu_);
};

}  // namespace freshet
