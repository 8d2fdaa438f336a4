// ServerNode: runs one parameter server over a Transport.
//
// One receive loop takes requests from workers and hands pulls and pushes to
// a thread pool, which applies them to the ParameterShard and replies. The
// shard's tables lock per partition, so requests run in parallel. Every
// message is decoded with common/ps_wire.h, handed to the shard as plain
// structs and pointers, and its reply encoded there too (a pull's rows are
// written straight into the reply's body); a request that does not decode
// (bad body, another wire version) is answered with the error.
//
// Bounded staleness (stale synchronous parallel). Each worker counts its
// steps; a pull carries the worker's step t and its staleness bound k. The
// server answers it only once every worker has finished step t-k-1, i.e.
// every push those workers made in steps < t-k has been applied here. k = 0
// is fully synchronous (a pull sees every push issued before it, by anyone);
// k < 0 means no bound (asynchronous). A worker's CLOCK message says "I
// finished step c and sent you `count` pushes so far"; the server counts the
// worker's step as finished only after applying that many of its pushes, so
// message reordering across handler threads cannot break the bound. A worker
// that sent SHUTDOWN no longer holds anyone back. A pull that waits longer
// than the request timeout gets an error response naming the slowest worker.
//
// Metrics (when a registry is given; common/metrics_registry.h): request and
// key counts, table rows and bytes, handling latency of pulls and pushes,
// time pulls waited for the staleness bound, pulls waiting now, staleness
// timeouts, export requests and bytes.
//
// Checkpoints (docs/CHECKPOINTS.md). SAVE(dir) waits for queued requests,
// copies the shard (ParameterShard::Snapshot: memcpy of row chunks) and
// answers at once with the bytes copied; a writer thread then writes the
// copy to dir/shard-<i>-of-<n>.rows (SaveShardRows: temporary file, fsync,
// rename) and frees it, while pulls and pushes go on. SAVE_STATUS(dir)
// answers whether that write is done (or its error). At most one write is
// in flight: a SAVE that arrives while the previous one is still writing
// waits for it first (peak extra memory: one copy of the shard), and
// SAVE_STATUS answers only about the last SAVE. Run() returns only after the
// in-flight write finished. LOAD(dir) (early stopping's restore of the best
// pass, docs/ARCHITECTURE.md "Validation") waits for queued requests and the
// in-flight write, then replaces every row of the shard with the rows of
// its file under dir (ReplaceShardRows) and answers with the rows loaded;
// workers send nothing else until it is answered.
//
// Thread safety: Run() once, from one thread. Stop() from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/config.h"
#include "common/metrics_registry.h"
#include "common/mutex.h"
#include "common/ps_wire.h"
#include "common/thread_pool.h"
#include "common/transport.h"
#include "server/parameter_shard.h"

namespace freshet {

// What a server answers to EXPORT request `request_id`: the shard's rows
// changed since req.since_version (ParameterShard::ExportChanged), encoded
// as an EXPORT_RESPONSE (common/ps_wire.h) with the shard's new cursor.
Message ExportReply(ParameterShard* shard, uint64_t request_id, const ExportRequest& req);

class ServerNode {
 public:
  // Not owned; all must outlive Run() (the registry: the node). `metrics`
  // may be null (no metrics). REQUIRES: layout.RoleOf(transport->rank()) ==
  // SERVER.
  ServerNode(Transport* transport, const ClusterLayout& layout, ParameterShard* shard,
             int handler_threads, Millis request_timeout, MetricsRegistry* metrics = nullptr);
  ~ServerNode();

  // Serves until every worker has sent SHUTDOWN (OK) or Stop() is called
  // (OK) or the transport fails (its error).
  Status Run();
  void Stop() { stop_ = true; }

 private:
  struct Deferred {
    Message msg;
    PullRequest req;  // decoded from msg (views into its body)
    int64_t required_clock;
    std::chrono::steady_clock::time_point deadline;
    std::chrono::steady_clock::time_point since;  // when it started waiting
  };
  struct Metrics {
    LatencyHistogram* pull_latency = nullptr;
    LatencyHistogram* push_latency = nullptr;
    LatencyHistogram* staleness_wait = nullptr;
    Counter* staleness_timeouts = nullptr;
    Counter* export_requests = nullptr;
    Counter* export_bytes = nullptr;
  };
  // The last SAVE and its background write (save_mu_).
  struct SaveState {
    std::string dir;  // empty: no SAVE yet
    bool done = true;
    Status status;         // the write's result once done
    int64_t write_us = 0;  // how long the write took
  };
  void HandleSave(const Message& msg, const SaveRequest& req) EXCLUDES(save_mu_);  // receive thread
  void HandleSaveStatus(const Message& msg, const SaveStatusRequest& req)
      EXCLUDES(save_mu_);                                       // receive thread
  void HandleLoad(const Message& msg, const LoadRequest& req);  // receive thread
  // Joins the background writer, if any (receive thread or destructor).
  void JoinWriter();
  // REQUIRES: req decoded from msg.
  void HandlePull(Message msg, const PullRequest& req);
  void HandlePush(Message msg) EXCLUDES(mu_);
  // Sends `reply` to the sender of `req`.
  void Reply(const Message& req, Message reply);
  // Answers `req` with an error response of `type`, naming this server.
  void ReplyError(const Message& req, MsgType type, const Status& st);
  // Recomputes finished steps; returns true if the minimum advanced.
  bool AdvanceClocksLocked() REQUIRES(mu_);
  int64_t MinClockLocked(int* slowest) const REQUIRES(mu_);
  void ReleaseDeferredLocked(bool check_deadlines) REQUIRES(mu_);

  Transport* const transport_;
  const ClusterLayout& layout_;
  ParameterShard* const shard_;
  const Millis request_timeout_;
  Mutex save_mu_;
  // The shard version at the last successful SAVE (set by the writer once
  // the file is written); 0 before any: an incremental SAVE then writes
  // every row.
  uint32_t saved_version_ GUARDED_BY(save_mu_) = 0;
  SaveState save_ GUARDED_BY(save_mu_);
  std::thread writer_;  // receive thread (and destructor) only
  ThreadPool pool_;
  std::atomic<bool> stop_{false};
  Metrics metrics_;  // all null without a registry

  Mutex mu_;
  // Per worker index:
  std::vector<int64_t> clock_ GUARDED_BY(mu_);
  std::vector<int64_t> pushes_applied_ GUARDED_BY(mu_);
  std::vector<std::deque<std::pair<int64_t, int64_t>>> pending_clock_ GUARDED_BY(mu_);
  std::vector<bool> finished_ GUARDED_BY(mu_);
  std::vector<Deferred> deferred_ GUARDED_BY(mu_);
};

}  // namespace freshet
