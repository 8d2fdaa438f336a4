#include "worker/ps_client.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <thread>

#include "common/key_dedup.h"
#include "common/sharding.h"

namespace freshet {
// One Pull or Push call, spread over one request per shard.
struct PsClient::Op {
  std::promise<Status> promise;
  std::atomic<int> remaining{0};
  Mutex mu;
  Status error GUARDED_BY(mu);  // first failure
  // Pull only:
  float* out = nullptr;
  int dim = 0;
  // When keys had duplicates: unique row u is written straight to `out` at
  // the input position of its first occurrence, first[u]; the other
  // occurrences (inverse[i] == u) are copied from there once all shards
  // answered. No temporary buffer of unique rows.
  std::vector<uint32_t> first;
  std::vector<uint32_t> inverse;

  // Where unique row u goes in `out`.
  float* Row(uint32_t u) const {
    return out + static_cast<size_t>(first.empty() ? u : first[u]) * dim;
  }

  // Records one shard's outcome; resolves the future after the last one.
  void FinishShard(const Status& st) EXCLUDES(mu) {
    if (!st.ok()) {
      MutexLock l(&mu);
      if (error.ok()) error = st;
    }
    if (remaining.fetch_sub(1) != 1) return;
    Status final_status;
    {
      MutexLock l(&mu);
      final_status = error;
    }
    if (final_status.ok() && !inverse.empty()) {
      const size_t row = static_cast<size_t>(dim) * sizeof(float);
      for (size_t i = 0; i < inverse.size(); ++i) {
        const uint32_t at = first[inverse[i]];
        if (at != i) std::memcpy(out + i * dim, out + static_cast<size_t>(at) * dim, row);
      }
    }
    promise.set_value(final_status);
  }
};

StatusOr<std::unique_ptr<PsClient>> PsClient::Create(Transport* transport,
                                                     const ClusterLayout& layout,
                                                     std::vector<int> table_dims,
                                                     PsClientOptions options) {
  if (layout.world_size() != transport->size()) {
    return InvalidArgument("cluster config has " + std::to_string(layout.world_size()) +
                           " ranks but the transport has " + std::to_string(transport->size()));
  }
  if (layout.RoleOf(transport->rank()) != proto::WORKER) {
    return InvalidArgument(layout.Describe(transport->rank()) + " is not a worker");
  }
  if (options.max_inflight < 1) return InvalidArgument("max_inflight must be >= 1");
  if (options.max_keys_per_request < 0) {
    return InvalidArgument("max_keys_per_request must be >= 0, got " +
                           std::to_string(options.max_keys_per_request));
  }
  return std::unique_ptr<PsClient>(new PsClient(transport, layout, std::move(table_dims), options));
}

PsClient::PsClient(Transport* transport, const ClusterLayout& layout, std::vector<int> table_dims,
                   PsClientOptions options)
    : transport_(transport),
      layout_(layout),
      table_dims_(std::move(table_dims)),
      options_(options),
      worker_index_(layout.IndexInRole(transport->rank())),
      tracker_(transport, [&layout](int rank) { return layout.Describe(rank); }),
      pushes_sent_(layout.num_servers(), 0) {
  if (MetricsRegistry* m = options.metrics) {
    metrics_.pull_latency =
        m->AddHistogram("pull", "Round trip of one pull request to one server (send to answer).");
    metrics_.push_latency =
        m->AddHistogram("push", "Round trip of one push request to one server (send to ack).");
    metrics_.pull_requests = m->AddCounter("pull_requests", "Pull requests sent (one per shard).");
    metrics_.push_requests = m->AddCounter("push_requests", "Push requests sent (one per shard).");
    metrics_.keys_pulled = m->AddCounter("keys_pulled", "Unique keys pulled.");
    metrics_.keys_pushed = m->AddCounter("keys_pushed", "Unique keys pushed.");
    metrics_.pull_bytes_out = m->AddCounter("pull_bytes_out", "Body bytes of pull requests.");
    metrics_.pull_bytes_in = m->AddCounter("pull_bytes_in", "Body bytes of pull answers (rows).");
    metrics_.push_bytes_out =
        m->AddCounter("push_bytes_out", "Body bytes of push requests (keys and gradients).");
    metrics_.failed_requests = m->AddCounter(
        "failed_requests", "Pull and push requests that failed (error, deadline, shutdown).");
    m->AddCallback("requests_in_flight", "Pull and push requests awaiting an answer.", false,
                   [this] {
                     MutexLock l(&mu_);
                     return static_cast<double>(inflight_);
                   });
  }
  receiver_ = std::thread([this] { ReceiveLoop(); });
}

void PsClient::CountSend(MsgType type, size_t keys, size_t body_bytes) {
  if (metrics_.pull_requests == nullptr) return;
  const bool pull = type == MsgType::kPullRequest;
  (pull ? metrics_.pull_requests : metrics_.push_requests)->Add();
  (pull ? metrics_.keys_pulled : metrics_.keys_pushed)->Add(static_cast<int64_t>(keys));
  (pull ? metrics_.pull_bytes_out : metrics_.push_bytes_out)->Add(static_cast<int64_t>(body_bytes));
}

PsClient::~PsClient() {
  stop_ = true;
  if (receiver_.joinable()) receiver_.join();
  tracker_.FailAll(Unavailable("parameter-server client destroyed"));
}

Status PsClient::CheckTable(int table) const {
  if (table < 0 || table >= static_cast<int>(table_dims_.size())) {
    return InvalidArgument("unknown table id " + std::to_string(table));
  }
  return Status::OK();
}

Status PsClient::AcquireSlot() {
  MutexLock l(&mu_);
  // slot_cv_.wait_for(l, timeout, pred), written as a loop for the analysis.
  const auto deadline = std::chrono::steady_clock::now() + options_.request_timeout;
  while (inflight_ >= options_.max_inflight) {
    if (slot_cv_.WaitWithDeadline(&mu_, deadline)) break;
  }
  if (inflight_ >= options_.max_inflight) {
    return DeadlineExceeded("no request slot freed within " +
                            std::to_string(options_.request_timeout.count()) + " ms (" +
                            std::to_string(inflight_) + " requests in flight)");
  }
  ++inflight_;
  return Status::OK();
}

void PsClient::ReleaseSlot() {
  {
    MutexLock l(&mu_);
    --inflight_;
  }
  slot_cv_.Signal();
}

std::future<Status> PsClient::Pull(int table, const uint64_t* keys, size_t n, float* out) {
  auto op = std::make_shared<Op>();
  std::future<Status> fut = op->promise.get_future();
  Status st = CheckTable(table);
  if (!st.ok() || n == 0) {
    op->promise.set_value(st);
    return fut;
  }
  const int dim = table_dims_[table];
  const int num_servers = layout_.num_servers();
  Dedup d = Deduplicate(keys, n);
  op->out = out;
  op->dim = dim;
  if (d.has_dups) {
    // Unique indices are in first-seen order: u's first occurrence is the
    // first i with inverse[i] == u.
    op->first.resize(d.uniq.size());
    uint32_t seen = 0;
    for (uint32_t i = 0; i < d.inverse.size(); ++i) {
      if (d.inverse[i] == seen) op->first[seen++] = i;
    }
    op->inverse = std::move(d.inverse);
  }
  // Idle() takes the client's mutex: only asked when splitting is on.
  std::vector<std::vector<uint32_t>> parts =
      SplitByServer(d.uniq, num_servers, options_.max_keys_per_request > 0 && Idle());
  op->remaining = static_cast<int>(parts.size());
  for (std::vector<uint32_t>& part : parts) {
    const int s = ShardOf(d.uniq[part[0]], num_servers);
    PullRequest req;
    req.table = table;
    req.dim = static_cast<uint32_t>(dim);
    req.step = step_.load();
    req.staleness = options_.staleness;
    req.num_keys = static_cast<uint32_t>(part.size());
    uint64_t* kp = nullptr;
    // Request bodies come from the transport's pool (recycled once sent):
    // no fresh pages per request (issue 16).
    Message msg = EncodePullRequest(
        req, &kp, transport_->NewBuffer(PullRequestBodyBytes(req.num_keys), Transport::kFrameRoom));
    for (size_t j = 0; j < part.size(); ++j) kp[j] = d.uniq[part[j]];
    Status slot = AcquireSlot();
    if (!slot.ok()) {
      op->FinishShard(slot.WithContext("PULL to " + layout_.Describe(layout_.ServerRank(s))));
      continue;
    }
    CountSend(MsgType::kPullRequest, req.num_keys, msg.body.size());
    const auto sent = std::chrono::steady_clock::now();
    tracker_.Send(
        layout_.ServerRank(s), std::move(msg), options_.request_timeout,
        [this, op, r = std::move(part), s, sent](Message* reply, const Status& st) {
          FinishPull(op.get(), r, s, sent, reply, st);
        },
        " (" + std::to_string(req.num_keys) + " keys): the server is dead, hung or overloaded");
  }
  return fut;
}

bool PsClient::Idle() const {
  MutexLock l(&mu_);
  return inflight_ == 0;
}

std::vector<std::vector<uint32_t>> PsClient::SplitByServer(const std::vector<uint64_t>& uniq,
                                                           int num_servers, bool split) const {
  std::vector<std::vector<uint32_t>> rows(num_servers);
  for (uint32_t u = 0; u < uniq.size(); ++u) rows[ShardOf(uniq[u], num_servers)].push_back(u);
  const size_t most = split && options_.max_keys_per_request > 0
                          ? static_cast<size_t>(options_.max_keys_per_request)
                          : std::numeric_limits<size_t>::max();
  std::vector<std::vector<uint32_t>> parts;
  for (std::vector<uint32_t>& r : rows) {
    if (r.size() <= most) {
      if (!r.empty()) parts.push_back(std::move(r));
      continue;
    }
    // Near-equal parts (not one short tail), each at most `most` keys.
    const size_t n = (r.size() + most - 1) / most;
    for (size_t i = 0; i < n; ++i) {
      const size_t begin = r.size() * i / n;
      const size_t end = r.size() * (i + 1) / n;
      parts.emplace_back(r.begin() + static_cast<std::ptrdiff_t>(begin),
                         r.begin() + static_cast<std::ptrdiff_t>(end));
    }
  }
  return parts;
}

void PsClient::FinishPull(Op* op, const std::vector<uint32_t>& rows, int server,
                          std::chrono::steady_clock::time_point sent, Message* reply, Status st) {
  ReleaseSlot();
  if (st.ok()) {
    StatusOr<PullResponse> resp = DecodePullResponse(*reply);
    if (!resp.ok()) {
      st = resp.status();
    } else if (resp->num_keys != rows.size() || resp->dim != static_cast<uint32_t>(op->dim)) {
      st = DataLoss("PULL response from " + layout_.Describe(layout_.ServerRank(server)) + " has " +
                    std::to_string(resp->num_keys) + " rows of dim " + std::to_string(resp->dim) +
                    ", expected " + std::to_string(rows.size()) + " of dim " +
                    std::to_string(op->dim));
    } else {
      const size_t dim = static_cast<size_t>(op->dim);
      const size_t row_bytes = dim * sizeof(float);
      for (size_t j = 0; j < rows.size(); ++j) {
        std::memcpy(op->Row(rows[j]), resp->rows + j * dim, row_bytes);
      }
    }
  }
  if (metrics_.pull_latency != nullptr) {
    if (!st.ok()) {
      metrics_.failed_requests->Add();
    } else {
      metrics_.pull_latency->RecordSince(sent);
      metrics_.pull_bytes_in->Add(static_cast<int64_t>(reply->body.size()));
    }
  }
  // The rows are copied out: the answer's storage serves a later message
  // (no fresh pages per pull, issue 16).
  if (reply != nullptr) transport_->RecycleBuffer(std::move(reply->body));
  op->FinishShard(st);
}

std::future<Status> PsClient::Push(int table, const uint64_t* keys, size_t n, const float* grads) {
  auto op = std::make_shared<Op>();
  std::future<Status> fut = op->promise.get_future();
  Status st = CheckTable(table);
  if (!st.ok() || n == 0) {
    op->promise.set_value(st);
    return fut;
  }
  const int dim = table_dims_[table];
  const size_t row_bytes = static_cast<size_t>(dim) * sizeof(float);
  const int num_servers = layout_.num_servers();
  const Dedup d = Deduplicate(keys, n);
  // Each unique key's gradient row is summed straight into its request
  // (SumDuplicateRow over the key's chain of input positions), with no
  // buffer of summed rows between (a 16,384-key dim-16 push: 1 MiB less to
  // zero, write and read again); each request is filled and sent in turn, so
  // a split call's first part is on its way while the next is filled.
  const DuplicateChains chains = d.has_dups ? ChainDuplicates(d) : DuplicateChains{};
  std::vector<std::vector<uint32_t>> parts =
      SplitByServer(d.uniq, num_servers, options_.max_keys_per_request > 0 && Idle());
  op->remaining = static_cast<int>(parts.size());
  for (const std::vector<uint32_t>& part : parts) {
    const int s = ShardOf(d.uniq[part[0]], num_servers);
    const size_t ns = part.size();
    PushRequest req;
    req.table = table;
    req.dim = static_cast<uint32_t>(dim);
    req.worker = worker_index_;
    req.event_time_s = event_time_.load();  // the batch's event time, for TTLs
    req.num_keys = static_cast<uint32_t>(ns);
    uint64_t* kp = nullptr;
    float* gp = nullptr;
    Message msg = EncodePushRequest(
        req, &kp, &gp,
        transport_->NewBuffer(PushRequestBodyBytes(req.num_keys, req.dim), Transport::kFrameRoom));
    for (size_t j = 0; j < ns; ++j) {
      const uint32_t u = part[j];
      kp[j] = d.uniq[u];
      if (d.has_dups) {
        SumDuplicateRow(chains, u, grads, dim, gp + j * dim);
      } else {  // unique index u is input position u
        std::memcpy(gp + j * dim, grads + static_cast<size_t>(u) * dim, row_bytes);
      }
    }
    Status slot = AcquireSlot();
    if (!slot.ok()) {
      transport_->RecycleBuffer(std::move(msg.body));
      op->FinishShard(slot.WithContext("PUSH to " + layout_.Describe(layout_.ServerRank(s))));
      continue;
    }
    {
      // Counted before it is sent: a CLOCK sent after this call returns
      // includes it.
      MutexLock l(&mu_);
      ++pushes_sent_[s];
    }
    CountSend(MsgType::kPushRequest, ns, msg.body.size());
    const auto sent = std::chrono::steady_clock::now();
    tracker_.Send(
        layout_.ServerRank(s), std::move(msg), options_.request_timeout,
        [this, op, sent](Message* reply, const Status& st) {
          FinishPush(op.get(), sent, reply, st);
        },
        " (" + std::to_string(ns) + " keys): the server is dead, hung or overloaded");
  }
  return fut;
}

void PsClient::FinishPush(Op* op, std::chrono::steady_clock::time_point sent, Message* reply,
                          Status st) {
  ReleaseSlot();
  if (st.ok()) st = DecodePushResponse(*reply);
  if (metrics_.pull_latency != nullptr) {
    if (!st.ok()) {
      metrics_.failed_requests->Add();
    } else {
      metrics_.push_latency->RecordSince(sent);
    }
  }
  op->FinishShard(st);
}

void PsClient::ReceiveLoop() {
  auto last_scan = std::chrono::steady_clock::now();
  while (!stop_) {
    StatusOr<Message> r = transport_->Recv(Millis(10));
    if (r.ok()) {
      // An answer nobody waits for any more (expired, or its call ended)
      // is dropped; anything else is not for a worker.
      if (!tracker_.Deliver(&*r) && !IsResponseType(r->meta.type)) {
        LOG(WARNING) << "worker got unexpected " << MsgTypeName(r->meta.type) << " from "
                     << layout_.Describe(r->peer);
      }
    } else if (r.status().code() == StatusCode::kUnavailable) {
      tracker_.FailAll(r.status());
      return;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now - last_scan > Millis(10)) {
      tracker_.ExpireOverdue();
      last_scan = now;
    }
  }
}

Status PsClient::Clock() {
  const int64_t step = step_.fetch_add(1) + 1;
  std::vector<int64_t> counts;
  {
    MutexLock l(&mu_);
    counts = pushes_sent_;
  }
  for (int s = 0; s < layout_.num_servers(); ++s) {
    FRESHET_RETURN_IF_ERROR(transport_->Send(
        layout_.ServerRank(s), EncodeClock(ClockMessage{worker_index_, step, counts[s]})));
  }
  return Status::OK();
}

std::vector<int> PsClient::ServerRanks() const {
  std::vector<int> ranks;
  for (int s = 0; s < layout_.num_servers(); ++s) ranks.push_back(layout_.ServerRank(s));
  return ranks;
}

Status PsClient::CallAllServers(std::vector<Message> requests,
                                const std::function<Status(size_t, Message*)>& on_reply) {
  return tracker_.Call(ServerRanks(), std::move(requests), options_.request_timeout, on_reply);
}

StatusOr<std::vector<Message>> PsClient::CallRanks(const std::vector<int>& ranks,
                                                   const Message& request, Millis timeout) {
  MsgType want;
  if (!ResponseTypeOf(request.meta.type, &want)) {
    return InvalidArgument(std::string(MsgTypeName(request.meta.type)) + " gets no response");
  }
  std::vector<Message> requests(ranks.size(), request);
  std::vector<Message> out(ranks.size());
  FRESHET_RETURN_IF_ERROR(tracker_.Call(ranks, std::move(requests),
                                        timeout.count() > 0 ? timeout : options_.request_timeout,
                                        [&](size_t i, Message* reply) {
                                          FRESHET_RETURN_IF_ERROR(CheckEnvelope(*reply, want));
                                          out[i] = std::move(*reply);
                                          return Status::OK();
                                        }));
  return out;
}

StatusOr<std::vector<ServerStats>> PsClient::ServerStatsAll() {
  std::vector<ServerStats> out(layout_.num_servers());
  FRESHET_RETURN_IF_ERROR(
      CallAllServers(std::vector<Message>(layout_.num_servers(), EncodeStatsRequest()),
                     [&](size_t i, Message* reply) {
                       FRESHET_ASSIGN_OR_RETURN(out[i], DecodeStatsResponse(*reply));
                       return Status::OK();
                     }));
  return out;
}

Status PsClient::SaveTables(const std::string& dir, bool incremental) {
  FRESHET_ASSIGN_OR_RETURN(const int64_t bytes, StartSaveTables(dir, incremental));
  return WaitTablesSaved(dir, bytes);
}

StatusOr<int64_t> PsClient::StartSaveTables(const std::string& dir, bool incremental) {
  int64_t bytes = 0;
  FRESHET_RETURN_IF_ERROR(CallAllServers(
      std::vector<Message>(layout_.num_servers(), EncodeSaveRequest(SaveRequest{dir, incremental})),
      [&](size_t, Message* reply) {
        FRESHET_ASSIGN_OR_RETURN(const SaveResponse r, DecodeSaveResponse(*reply));
        bytes += std::max<int64_t>(0, r.bytes_copied);
        return Status::OK();
      }));
  return bytes;
}

Status PsClient::LoadTables(const std::string& dir) {
  return CallAllServers(std::vector<Message>(layout_.num_servers(), EncodeLoadRequest({dir})),
                        [](size_t, Message* reply) { return DecodeLoadResponse(*reply).status(); });
}

Millis PsClient::SaveDeadline(int64_t bytes) const {
  return options_.request_timeout + Millis(std::max<int64_t>(0, bytes) / (4 * 1024));
}

Status PsClient::WaitTablesSaved(const std::string& dir, int64_t bytes) {
  const Millis limit = SaveDeadline(bytes);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::vector<int> writing;
  for (int s = 0; s < layout_.num_servers(); ++s) writing.push_back(layout_.ServerRank(s));
  Millis pause(5);
  while (true) {
    std::vector<int> still;
    FRESHET_RETURN_IF_ERROR(tracker_.Call(
        writing, std::vector<Message>(writing.size(), EncodeSaveStatusRequest({dir})),
        options_.request_timeout, [&](size_t i, Message* reply) {
          FRESHET_ASSIGN_OR_RETURN(const SaveStatusResponse r, DecodeSaveStatusResponse(*reply));
          if (!r.written) still.push_back(writing[i]);
          return Status::OK();
        }));
    std::sort(still.begin(), still.end());  // answers come in any order
    writing = std::move(still);
    if (writing.empty()) return Status::OK();
    if (std::chrono::steady_clock::now() + pause > deadline) {
      std::string who;
      for (int rank : writing) who += (who.empty() ? "" : ", ") + layout_.Describe(rank);
      return DeadlineExceeded(who + " did not finish writing " + dir + " within " +
                              std::to_string(limit.count()) + " ms (" + std::to_string(bytes) +
                              " bytes copied by all servers)");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(Millis(100), pause * 2);
  }
}

Status PsClient::Shutdown() {
  for (int s = 0; s < layout_.num_servers(); ++s) {
    FRESHET_RETURN_IF_ERROR(
        transport_->Send(layout_.ServerRank(s), EncodeShutdown(ShutdownMessage{worker_index_})));
  }
  return Status::OK();
}

}  // namespace freshet
