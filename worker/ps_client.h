// PsClient: a worker's handle on the parameter servers.
//
// Pull(table, keys) and Push(table, keys, grads) are asynchronous and return
// futures. Each call deduplicates its keys (a push sums the gradients of
// duplicate keys), splits them by shard (common/sharding.h), sends one
// request per shard at once (several, when a shard gets more than
// `max_keys_per_request` keys), and gathers the answers back into the
// caller's key order. At most `max_inflight` requests are outstanding; a call blocks
// until a slot frees (backpressure).
//
// Every request has a deadline (`request_timeout`): a server that does not
// answer in time fails the future with DeadlineExceeded naming the server,
// its rank and the request, so a dead server never hangs a worker. Request
// ids, deadlines and the fan-in of answers are common/request_tracker.h's;
// bodies are encoded and decoded by common/ps_wire.h.
//
// Bounded staleness: see server/server_node.h. The client's step counter
// starts at 0; Clock() ends a step. With staleness k >= 0, a Pull issued in
// step t sees every push made by any worker in steps < t-k. k < 0: no bound.
//
// Metrics (PsClientOptions::metrics): pull and push round-trip latency per
// shard request (send to answer), requests, keys, body bytes out and in,
// failed requests, requests in flight.
//
// Thread safety: all methods may be called from any thread. One background
// thread receives responses and enforces deadlines.
#pragma once

#include <atomic>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/config.h"
#include "common/metrics_registry.h"
#include "common/mutex.h"
#include "common/ps_wire.h"
#include "common/request_tracker.h"
#include "common/sparse_store.h"
#include "common/status.h"
#include "common/transport.h"

namespace freshet {

struct PsClientOptions {
  Millis request_timeout{30000};
  int max_inflight = 64;
  // A shard's part of a call with more keys than this goes out as several
  // requests of at most this many keys (near-equal sizes), all sent at
  // once: the server answers the first while the client still prepares or
  // scatters the others, instead of one large message being built, moved
  // and read in turn (issue 16). Only a call that finds no request of this
  // client in flight is split: with other calls in flight the server and
  // the client already overlap, and more, smaller messages only cost
  // (freshet_ps_bench --pipeline=4: up to 2x slower split). 0: one request
  // per shard, however large.
  int max_keys_per_request = 0;
  // Staleness bound for pulls (see above). -1: asynchronous.
  int staleness = -1;
  // Where the client counts requests, bytes and latency; not owned, must
  // outlive the client. Null: no metrics.
  MetricsRegistry* metrics = nullptr;
};

class PsClient : public SparseStore {
 public:
  // transport and layout are not owned and must outlive the client.
  // table_dims[i] is the dim of table i. REQUIRES: transport's rank is a
  // WORKER in layout.
  static StatusOr<std::unique_ptr<PsClient>> Create(Transport* transport,
                                                    const ClusterLayout& layout,
                                                    std::vector<int> table_dims,
                                                    PsClientOptions options);
  ~PsClient() override;

  // Writes n*dim floats to out (row i for keys[i]). keys and out must stay
  // valid until the future is ready.
  std::future<Status> Pull(int table, const uint64_t* keys, size_t n, float* out) override;
  // Applies grads[n*dim] (row i for keys[i]) on the servers. The future is
  // ready once every server acknowledged. keys and grads are copied before
  // Push returns.
  std::future<Status> Push(int table, const uint64_t* keys, size_t n, const float* grads) override;

  // Ends the current step: tells every server how many pushes this worker
  // sent it, so servers can answer bounded-staleness pulls.
  Status Clock() override;
  int64_t step() const { return step_.load(); }
  // Sent with later PUSH requests (PushRequest::event_time_s) for the TTL.
  void SetEventTime(int64_t unix_s) override { event_time_.store(unix_s); }

  // Asks every server for its stats (synchronous, with the deadline).
  StatusOr<std::vector<ServerStats>> ServerStatsAll();

  // Asks every server to write all its rows under `dir` (created by the
  // caller), as dir/shard-<i>-of-<n>.rows (server/table_io.h), and waits
  // until every file is written: StartSaveTables, then WaitTablesSaved.
  // `incremental`: only the rows pushed since each server's previous save
  // (SaveShardRows changed_since); a server's first save is always full.
  Status SaveTables(const std::string& dir, bool incremental = false);

  // Asks every server to replace all its rows with those it saved under
  // `dir` (SaveTables(dir), full, same server count) and waits for each
  // answer (the request deadline). Every push must be acknowledged first.
  Status LoadTables(const std::string& dir);

  // The two halves of SaveTables, for background checkpoint writes
  // (docs/CHECKPOINTS.md). StartSaveTables returns once every server has
  // copied its rows in memory (the cut; each server then writes its file on
  // a background thread while it keeps serving), with the bytes copied,
  // summed over the servers (the extra server memory while they write).
  // Each answer is awaited with the request deadline.
  StatusOr<int64_t> StartSaveTables(const std::string& dir, bool incremental = false);
  // Polls every server (SAVE_STATUS, backing off from 5 to 100 ms) until its
  // file under `dir` is written. The whole wait has a deadline that grows
  // with the volume: SaveDeadline(bytes) (bytes: what StartSaveTables
  // returned). DeadlineExceeded naming the servers still writing; a failed
  // write is that server's error (naming it). Thread-safe: may run on a
  // background thread while training pulls and pushes.
  Status WaitTablesSaved(const std::string& dir, int64_t bytes);
  // request_timeout + 1 s per 4 MB (a disk slower than 4 MB/s fails the
  // wait).
  Millis SaveDeadline(int64_t bytes) const;

  // Sends `request` (built with common/ps_wire.h) to each rank in `ranks`
  // (any role that answers) and waits for every answer, with the deadline
  // (`timeout`, or the client's request_timeout when it is zero). Returns
  // the answers in rank order, each checked to be the request's response
  // type, of this wire version, and not an error (the first error is
  // returned instead); decode them with ps_wire.
  StatusOr<std::vector<Message>> CallRanks(const std::vector<int>& ranks, const Message& request,
                                           Millis timeout = Millis(0));

  // Tells every server this worker is done. Call once, after the last push
  // completed.
  Status Shutdown();

  int worker_index() const { return worker_index_; }
  int num_servers() const { return layout_.num_servers(); }

 private:
  struct Op;
  struct Metrics {
    LatencyHistogram* pull_latency = nullptr;
    LatencyHistogram* push_latency = nullptr;
    Counter* pull_requests = nullptr;
    Counter* push_requests = nullptr;
    Counter* keys_pulled = nullptr;
    Counter* keys_pushed = nullptr;
    Counter* pull_bytes_out = nullptr;
    Counter* pull_bytes_in = nullptr;
    Counter* push_bytes_out = nullptr;
    Counter* failed_requests = nullptr;
  };
  // Counts a request about to be sent (no-op without a registry).
  void CountSend(MsgType type, size_t keys, size_t body_bytes);

  PsClient(Transport* transport, const ClusterLayout& layout, std::vector<int> table_dims,
           PsClientOptions options);
  Status CheckTable(int table) const;
  // Blocks for a free in-flight slot; DeadlineExceeded after the timeout.
  Status AcquireSlot() EXCLUDES(mu_);
  void ReleaseSlot() EXCLUDES(mu_);
  // The unique keys' indices grouped into requests: by server (in server
  // order), each server's cut into parts of at most max_keys_per_request
  // when `split`.
  std::vector<std::vector<uint32_t>> SplitByServer(const std::vector<uint64_t>& uniq,
                                                   int num_servers, bool split) const;
  // No request of this client in flight.
  bool Idle() const EXCLUDES(mu_);
  // The end of one shard's PULL (reply, or reply null and the failure):
  // checks and scatters the rows (rows[j]: unique-key index of the j-th key
  // sent), frees the slot, counts, and finishes the shard.
  void FinishPull(Op* op, const std::vector<uint32_t>& rows, int server,
                  std::chrono::steady_clock::time_point sent, Message* reply, Status st);
  void FinishPush(Op* op, std::chrono::steady_clock::time_point sent, Message* reply, Status st);
  void ReceiveLoop();
  std::vector<int> ServerRanks() const;
  // Sends requests[i] to server i and runs on_reply for each answer
  // (RequestTracker::Call with the request deadline).
  Status CallAllServers(std::vector<Message> requests,
                        const std::function<Status(size_t, Message*)>& on_reply);

  Transport* const transport_;
  const ClusterLayout& layout_;
  const std::vector<int> table_dims_;
  const PsClientOptions options_;
  const int worker_index_;
  Metrics metrics_;  // all null without a registry
  RequestTracker tracker_;

  std::atomic<int64_t> step_{0};
  std::atomic<int64_t> event_time_{0};
  std::atomic<bool> stop_{false};

  mutable Mutex mu_;
  CondVar slot_cv_;
  int inflight_ GUARDED_BY(mu_) = 0;
  std::vector<int64_t> pushes_sent_ GUARDED_BY(mu_);  // per server
  std::thread receiver_;
};

}  // namespace freshet
