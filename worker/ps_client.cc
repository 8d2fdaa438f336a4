#include "worker/ps_client.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cstring>
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
  return std::unique_ptr<PsClient>(new PsClient(transport, layout, std::move(table_dims), options));
}

PsClient::PsClient(Transport* transport, const ClusterLayout& layout, std::vector<int> table_dims,
                   PsClientOptions options)
    : transport_(transport),
      layout_(layout),
      table_dims_(std::move(table_dims)),
      options_(options),
      worker_index_(layout.IndexInRole(transport->rank())),
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
  FailAll(Unavailable("parameter-server client destroyed"));
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

uint64_t PsClient::Register(Request req) {
  const uint64_t id = next_id_.fetch_add(1);
  req.sent = std::chrono::steady_clock::now();
  MutexLock l(&mu_);
  if (req.type == MsgType::kPushRequest) ++pushes_sent_[req.server];
  requests_.emplace(id, std::move(req));
  return id;
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
  std::vector<std::vector<uint32_t>> rows(num_servers);
  for (uint32_t u = 0; u < d.uniq.size(); ++u) rows[ShardOf(d.uniq[u], num_servers)].push_back(u);
  int shards = 0;
  for (const auto& r : rows) shards += r.empty() ? 0 : 1;
  op->remaining = shards;
  const auto timeout = options_.request_timeout;
  for (int s = 0; s < num_servers; ++s) {
    if (rows[s].empty()) continue;
    Message msg;
    msg.meta.type = MsgType::kPullRequest;
    msg.meta.table = table;
    msg.meta.num_keys = static_cast<uint32_t>(rows[s].size());
    msg.meta.dim = static_cast<uint32_t>(dim);
    msg.meta.worker = worker_index_;
    msg.meta.clock = step_.load();
    msg.meta.count = options_.staleness;
    msg.body = transport_->NewBuffer(rows[s].size() * sizeof(uint64_t), Transport::kFrameRoom);
    auto* kp = reinterpret_cast<uint64_t*>(msg.body.data());
    for (size_t j = 0; j < rows[s].size(); ++j) kp[j] = d.uniq[rows[s][j]];
    Status slot = AcquireSlot();
    if (!slot.ok()) {
      op->FinishShard(slot.WithContext("PULL to " + layout_.Describe(layout_.ServerRank(s))));
      continue;
    }
    const uint32_t nk = msg.meta.num_keys;
    const uint64_t id = Register(Request{op,
                                         s,
                                         std::move(rows[s]),
                                         std::chrono::steady_clock::now() + timeout,
                                         MsgType::kPullRequest,
                                         nk,
                                         {}});
    msg.meta.request_id = id;
    CountSend(MsgType::kPullRequest, nk, msg.body.size());
    Status sent = transport_->Send(layout_.ServerRank(s), std::move(msg));
    if (!sent.ok()) Complete(id, nullptr, sent);
  }
  return fut;
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
  Dedup d = Deduplicate(keys, n);
  // Gradient row of unique key u: summed over its duplicates when any.
  std::vector<float> summed;
  const float* grad_rows = grads;
  if (d.has_dups) {
    SumDuplicateRows(d, grads, dim, &summed);
    grad_rows = summed.data();
  }
  std::vector<std::vector<uint32_t>> rows(num_servers);
  for (uint32_t u = 0; u < d.uniq.size(); ++u) rows[ShardOf(d.uniq[u], num_servers)].push_back(u);
  int shards = 0;
  for (const auto& r : rows) shards += r.empty() ? 0 : 1;
  op->remaining = shards;
  for (int s = 0; s < num_servers; ++s) {
    if (rows[s].empty()) continue;
    const size_t ns = rows[s].size();
    Message msg;
    msg.meta.type = MsgType::kPushRequest;
    msg.meta.table = table;
    msg.meta.num_keys = static_cast<uint32_t>(ns);
    msg.meta.dim = static_cast<uint32_t>(dim);
    msg.meta.worker = worker_index_;
    msg.meta.clock = step_.load();
    msg.meta.watermark = event_time_.load();  // the batch's event time, for TTLs
    msg.body = transport_->NewBuffer(ns * (sizeof(uint64_t) + row_bytes), Transport::kFrameRoom);
    auto* kp = reinterpret_cast<uint64_t*>(msg.body.data());
    char* gp = msg.body.data() + ns * sizeof(uint64_t);
    for (size_t j = 0; j < ns; ++j) {
      const uint32_t u = rows[s][j];
      kp[j] = d.uniq[u];
      // Without duplicates, unique index u is input position u.
      std::memcpy(gp + j * row_bytes, grad_rows + static_cast<size_t>(u) * dim, row_bytes);
    }
    Status slot = AcquireSlot();
    if (!slot.ok()) {
      op->FinishShard(slot.WithContext("PUSH to " + layout_.Describe(layout_.ServerRank(s))));
      continue;
    }
    const uint64_t id =
        Register(Request{op,
                         s,
                         {},
                         std::chrono::steady_clock::now() + options_.request_timeout,
                         MsgType::kPushRequest,
                         static_cast<uint32_t>(ns),
                         {}});
    msg.meta.request_id = id;
    CountSend(MsgType::kPushRequest, ns, msg.body.size());
    Status sent = transport_->Send(layout_.ServerRank(s), std::move(msg));
    if (!sent.ok()) Complete(id, nullptr, sent);
  }
  return fut;
}

void PsClient::Complete(uint64_t id, Message* resp, const Status& st_in) {
  Request req;
  {
    MutexLock l(&mu_);
    auto it = requests_.find(id);
    if (it == requests_.end()) return;  // already expired or failed
    req = std::move(it->second);
    requests_.erase(it);
  }
  ReleaseSlot();
  Status st = st_in;
  if (st.ok() && resp->meta.status_code != StatusCode::kOk) {
    st = Status(resp->meta.status_code, resp->meta.error);
  }
  if (metrics_.pull_latency != nullptr) {
    if (!st.ok()) {
      metrics_.failed_requests->Add();
    } else if (req.type == MsgType::kPullRequest) {
      metrics_.pull_latency->RecordSince(req.sent);
      metrics_.pull_bytes_in->Add(static_cast<int64_t>(resp->body.size()));
    } else {
      metrics_.push_latency->RecordSince(req.sent);
    }
  }
  if (st.ok() && req.type == MsgType::kPullRequest) {
    Op& op = *req.op;
    const size_t row_bytes = static_cast<size_t>(op.dim) * sizeof(float);
    if (resp->body.size() != req.rows.size() * row_bytes) {
      st = DataLoss("PULL response from " + layout_.Describe(resp->peer) + " has " +
                    std::to_string(resp->body.size()) + " bytes, expected " +
                    std::to_string(req.rows.size() * row_bytes));
    } else {
      const char* src = resp->body.data();
      for (size_t j = 0; j < req.rows.size(); ++j) {
        std::memcpy(op.Row(req.rows[j]), src + j * row_bytes, row_bytes);
      }
    }
  }
  req.op->FinishShard(st);
}

void PsClient::ExpireOverdue() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::pair<uint64_t, std::string>> overdue;
  {
    MutexLock l(&mu_);
    for (const auto& [id, req] : requests_) {
      if (now < req.deadline) continue;
      overdue.emplace_back(id, std::string(MsgTypeName(req.type)) + " request #" +
                                   std::to_string(id) + " to " +
                                   layout_.Describe(layout_.ServerRank(req.server)) + " (" +
                                   std::to_string(req.num_keys) + " keys) got no response within " +
                                   std::to_string(options_.request_timeout.count()) +
                                   " ms: the server is dead, hung or overloaded");
    }
  }
  for (auto& [id, what] : overdue) Complete(id, nullptr, DeadlineExceeded(what));
}

void PsClient::FailAll(const Status& st) {
  std::vector<uint64_t> ids;
  {
    MutexLock l(&mu_);
    for (const auto& kv : requests_) ids.push_back(kv.first);
    for (auto& kv : sync_waiters_) kv.second.set_value(st);
    sync_waiters_.clear();
  }
  for (uint64_t id : ids) Complete(id, nullptr, st);
}

void PsClient::ReceiveLoop() {
  auto last_scan = std::chrono::steady_clock::now();
  while (!stop_) {
    StatusOr<Message> r = transport_->Recv(Millis(10));
    if (r.ok()) {
      Message& m = *r;
      switch (m.meta.type) {
        case MsgType::kPullResponse:
        case MsgType::kPushResponse:
          Complete(m.meta.request_id, &m, Status::OK());
          transport_->RecycleBuffer(std::move(m.body));  // rows copied out: reuse it
          break;
        case MsgType::kStatsResponse:
        case MsgType::kSaveResponse:
        case MsgType::kSaveStatusResponse:
        case MsgType::kExportFinalResponse: {
          std::promise<StatusOr<Message>> p;
          {
            MutexLock l(&mu_);
            auto it = sync_waiters_.find(m.meta.request_id);
            if (it == sync_waiters_.end()) break;  // timed out earlier
            p = std::move(it->second);
            sync_waiters_.erase(it);
          }
          p.set_value(std::move(m));
          break;
        }
        default:
          LOG(WARNING) << "worker got unexpected " << MsgTypeName(m.meta.type) << " from "
                       << layout_.Describe(m.peer);
      }
    } else if (r.status().code() == StatusCode::kUnavailable) {
      FailAll(r.status());
      return;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now - last_scan > Millis(10)) {
      ExpireOverdue();
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
    Message msg;
    msg.meta.type = MsgType::kClock;
    msg.meta.worker = worker_index_;
    msg.meta.clock = step;
    msg.meta.count = counts[s];
    FRESHET_RETURN_IF_ERROR(transport_->Send(layout_.ServerRank(s), std::move(msg)));
  }
  return Status::OK();
}

StatusOr<std::vector<Message>> PsClient::CallAllServers(MsgType type, const std::string& text,
                                                        int64_t count) {
  std::vector<int> ranks;
  for (int s = 0; s < layout_.num_servers(); ++s) ranks.push_back(layout_.ServerRank(s));
  Message request;
  request.meta.type = type;
  request.meta.text = text;
  request.meta.count = count;
  return CallRanks(ranks, request);
}

StatusOr<std::vector<Message>> PsClient::CallRanks(const std::vector<int>& ranks,
                                                   const Message& request, Millis timeout) {
  std::vector<uint64_t> ids;
  std::vector<std::future<StatusOr<Message>>> futs;
  for (int rank : ranks) {
    const uint64_t id = next_id_.fetch_add(1);
    {
      MutexLock l(&mu_);
      futs.push_back(sync_waiters_[id].get_future());
    }
    ids.push_back(id);
    Message msg;
    msg.meta = request.meta;
    msg.meta.request_id = id;
    msg.meta.worker = worker_index_;
    msg.body = request.body;
    FRESHET_RETURN_IF_ERROR(transport_->Send(rank, std::move(msg)));
  }
  std::vector<Message> out;
  const auto deadline =
      std::chrono::steady_clock::now() + (timeout.count() > 0 ? timeout : options_.request_timeout);
  Status failed;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (futs[i].wait_until(deadline) != std::future_status::ready) {
      MutexLock l(&mu_);
      sync_waiters_.erase(ids[i]);
      if (failed.ok()) {
        failed = DeadlineExceeded(
            std::string(MsgTypeName(request.meta.type)) + " request to " +
            layout_.Describe(ranks[i]) + " got no response within " +
            std::to_string((timeout.count() > 0 ? timeout : options_.request_timeout).count()) +
            " ms");
      }
      continue;
    }
    StatusOr<Message> r = futs[i].get();
    if (!r.ok()) {
      if (failed.ok()) failed = r.status();
      continue;
    }
    if (r->meta.status_code != StatusCode::kOk) {
      if (failed.ok()) failed = Status(r->meta.status_code, r->meta.error);
      continue;
    }
    out.push_back(std::move(r).value());
  }
  if (!failed.ok()) return failed;
  return out;
}

StatusOr<std::vector<ServerStats>> PsClient::ServerStatsAll() {
  FRESHET_ASSIGN_OR_RETURN(std::vector<Message> resp, CallAllServers(MsgType::kStatsRequest, ""));
  std::vector<ServerStats> out;
  for (const Message& m : resp) {
    if (m.body.size() != ServerStats::kNumFields * sizeof(int64_t)) {
      return DataLoss("bad STATS_RESPONSE size from " + layout_.Describe(m.peer));
    }
    int64_t f[ServerStats::kNumFields];
    std::memcpy(f, m.body.data(), sizeof(f));
    out.push_back(ServerStats{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]});
  }
  return out;
}

Status PsClient::SaveTables(const std::string& dir, bool incremental) {
  FRESHET_ASSIGN_OR_RETURN(const int64_t bytes, StartSaveTables(dir, incremental));
  return WaitTablesSaved(dir, bytes);
}

StatusOr<int64_t> PsClient::StartSaveTables(const std::string& dir, bool incremental) {
  FRESHET_ASSIGN_OR_RETURN(std::vector<Message> resp,
                           CallAllServers(MsgType::kSave, dir, incremental ? 1 : 0));
  int64_t bytes = 0;
  for (const Message& m : resp) bytes += std::max<int64_t>(0, m.meta.count);
  return bytes;
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
    Message request;
    request.meta.type = MsgType::kSaveStatus;
    request.meta.text = dir;
    std::vector<int> still;
    for (int rank : writing) {
      // One at a time: each answer says which server it is about.
      FRESHET_ASSIGN_OR_RETURN(std::vector<Message> resp, CallRanks({rank}, request));
      if (resp.at(0).meta.count != 1) still.push_back(rank);
    }
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
    Message msg;
    msg.meta.type = MsgType::kShutdown;
    msg.meta.worker = worker_index_;
    FRESHET_RETURN_IF_ERROR(transport_->Send(layout_.ServerRank(s), std::move(msg)));
  }
  return Status::OK();
}

}  // namespace freshet
