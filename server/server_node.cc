#include "server/server_node.h"

#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <limits>

#include "common/metrics_registry.h"
#include "server/table_io.h"

namespace freshet {

ServerNode::ServerNode(Transport* transport, const ClusterLayout& layout, ParameterShard* shard,
                       int handler_threads, Millis request_timeout, MetricsRegistry* metrics)
    : transport_(transport),
      layout_(layout),
      shard_(shard),
      request_timeout_(request_timeout),
      pool_(handler_threads),
      clock_(layout.num_workers(), 0),
      pushes_applied_(layout.num_workers(), 0),
      pending_clock_(layout.num_workers()),
      finished_(layout.num_workers(), false) {
  CHECK_EQ(layout.RoleOf(transport->rank()), proto::SERVER) << layout.Describe(transport->rank());
  if (metrics == nullptr) return;
  ParameterShard* sh = shard;
  auto stat = [sh](int64_t ServerStats::*field) {
    return [sh, field] { return static_cast<double>(sh->Stats().*field); };
  };
  metrics->AddCallback("server_pull_requests", "Pull requests applied by this server.", true,
                       stat(&ServerStats::pull_requests));
  metrics->AddCallback("server_push_requests", "Push requests applied by this server.", true,
                       stat(&ServerStats::push_requests));
  metrics->AddCallback("server_keys_pulled", "Keys read by pulls.", true,
                       stat(&ServerStats::keys_pulled));
  metrics->AddCallback("server_keys_pushed", "Keys updated by pushes.", true,
                       stat(&ServerStats::keys_pushed));
  metrics->AddCallback("table_rows", "Rows in this server's shard of every table.", false,
                       stat(&ServerStats::rows));
  metrics->AddCallback("table_bytes", "Bytes of this server's shard of every table.", false,
                       stat(&ServerStats::bytes));
  auto tstat = [sh](int64_t TableStats::*field) {
    return [sh, field] { return static_cast<double>(sh->TotalTableStats().*field); };
  };
  metrics->AddCallback("table_held_back_pushes",
                       "Pushed keys dropped because the key is not admitted yet.", true,
                       tstat(&TableStats::held_back_pushes));
  metrics->AddCallback("table_held_back_pulls",
                       "Pulled keys answered with the held-back value (no row).", true,
                       tstat(&TableStats::held_back_pulls));
  metrics->AddCallback("table_admitted", "Rows created by feature admission.", true,
                       tstat(&TableStats::admitted));
  metrics->AddCallback("table_evicted_ttl", "Rows evicted by the TTL (event time).", true,
                       tstat(&TableStats::evicted_ttl));
  metrics->AddCallback("table_evicted_capacity", "Rows evicted to stay within max_rows.", true,
                       tstat(&TableStats::evicted_capacity));
  metrics->AddCallback("table_deletions_dropped",
                       "Eviction deletions dropped by the bounded log before export.", true,
                       tstat(&TableStats::deletions_dropped));
  metrics->AddCallback("table_export_full_scans",
                       "Partitions a delta export scanned row by row (no usable change log).", true,
                       tstat(&TableStats::export_full_scans));
  metrics->AddCallback("table_export_log_overflows",
                       "Partition change logs dropped at their bound (next export scans rows).",
                       true, tstat(&TableStats::export_log_overflows));
  metrics_.pull_latency = metrics->AddHistogram(
      "server_pull", "Time to apply a pull and queue its reply (handler thread).");
  metrics_.push_latency = metrics->AddHistogram(
      "server_push", "Time to apply a push and queue its ack (handler thread).");
  metrics_.staleness_wait = metrics->AddHistogram(
      "staleness_wait", "Time a pull waited for the staleness bound before it was applied.");
  metrics->AddCallback("staleness_waiting_pulls", "Pulls waiting for the staleness bound now.",
                       false, [this] {
                         MutexLock l(&mu_);
                         return static_cast<double>(deferred_.size());
                       });
  metrics->AddCallback("worker_clock_spread",
                       "Steps between the fastest and the slowest active worker here.", false,
                       [this] {
                         MutexLock l(&mu_);
                         int64_t lo = -1, hi = -1;
                         for (size_t w = 0; w < clock_.size(); ++w) {
                           if (finished_[w]) continue;
                           lo = lo < 0 ? clock_[w] : std::min(lo, clock_[w]);
                           hi = std::max(hi, clock_[w]);
                         }
                         return lo < 0 ? 0.0 : static_cast<double>(hi - lo);
                       });
  metrics_.staleness_timeouts = metrics->AddCounter(
      "staleness_timeouts", "Pulls failed because the staleness bound was not met in time.");
  metrics_.export_requests =
      metrics->AddCounter("server_export_requests", "EXPORT requests answered.");
  metrics_.export_bytes =
      metrics->AddCounter("server_export_bytes", "Bytes of changed rows sent to the exporter.");
}

ServerNode::~ServerNode() {
  pool_.WaitIdle();
  JoinWriter();
}

Message ExportReply(ParameterShard* shard, uint64_t request_id, const ExportRequest& req) {
  const auto t0 = std::chrono::steady_clock::now();
  double encode_ms = 0;
  size_t rows = 0;
  ExportResponseEncoder enc(request_id);
  const uint32_t now = shard->ExportChanged(req.since_version, [&](const ExportedTable& t) {
    const auto e0 = std::chrono::steady_clock::now();
    enc.AddTable(t);
    rows += t.n;
    encode_ms +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - e0).count();
  });
  Message reply = enc.Finish(now);
  // A full export (since 0) at INFO: how long this server took to collect
  // and serialize every row (docs/TABLES.md "Full snapshot cost").
  LOG_IF(INFO, req.since_version == 0)
      << "full export: " << rows << " rows, " << reply.body.size() << " bytes in "
      << std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()
      << " ms (of which encoding " << encode_ms << " ms)";
  return reply;
}

void ServerNode::Reply(const Message& req, Message reply) {
  Status s = transport_->Send(req.peer, std::move(reply));
  if (!s.ok()) {
    LOG(WARNING) << MsgTypeName(req.meta.type) << " reply to " << layout_.Describe(req.peer)
                 << " failed: " << s;
  }
}

void ServerNode::ReplyError(const Message& req, MsgType type, const Status& st) {
  Reply(req, EncodeErrorResponse(
                 type, req.meta.request_id,
                 Status(st.code(), layout_.Describe(transport_->rank()) + ": " + st.message())));
}

void ServerNode::HandlePull(Message msg, const PullRequest& req) {
  const auto start = std::chrono::steady_clock::now();
  // Table and dim first: the reply is sized from them.
  Status st = shard_->CheckRequest(req.table, req.dim);
  if (st.ok()) {
    // The answer goes into a recycled buffer: no fresh pages per pull (a
    // 16 MiB answer mapped afresh each time cost thousands of page faults,
    // issue 16).
    float* rows = nullptr;
    Message reply = EncodePullResponse(
        msg.meta.request_id, req.num_keys, req.dim, &rows,
        transport_->NewBuffer(PullResponseBodyBytes(req.num_keys, req.dim), Transport::kFrameRoom));
    st = shard_->HandlePull(req.table, req.dim, req.keys, req.num_keys, rows);
    if (st.ok()) Reply(msg, std::move(reply));
  }
  if (!st.ok()) ReplyError(msg, MsgType::kPullResponse, st);
  transport_->RecycleBuffer(std::move(msg.body));  // the keys were read
  if (metrics_.pull_latency != nullptr) metrics_.pull_latency->RecordSince(start);
}

void ServerNode::HandlePush(Message msg) {
  const auto start = std::chrono::steady_clock::now();
  StatusOr<PushRequest> req = DecodePushRequest(msg);
  Status st = req.status();
  if (st.ok()) {
    st = shard_->HandlePush(req->table, req->dim, req->keys, req->num_keys, req->grads,
                            req->event_time_s);
    const int w = req->worker;
    if (w >= 0 && w < layout_.num_workers()) {
      MutexLock l(&mu_);
      ++pushes_applied_[w];  // counted even if rejected: the worker sent it
      if (AdvanceClocksLocked()) ReleaseDeferredLocked(false);
    }
  }
  if (st.ok()) {
    Reply(msg, EncodePushResponse(msg.meta.request_id));
  } else {
    ReplyError(msg, MsgType::kPushResponse, st);
  }
  // The gradients are applied: the body (16 MiB for 65,536 dim-64 rows)
  // serves the next message instead of being unmapped (issue 16).
  transport_->RecycleBuffer(std::move(msg.body));
  if (metrics_.push_latency != nullptr) metrics_.push_latency->RecordSince(start);
}

bool ServerNode::AdvanceClocksLocked() {
  int ignored;
  const int64_t before = MinClockLocked(&ignored);
  for (size_t w = 0; w < clock_.size(); ++w) {
    auto& q = pending_clock_[w];
    while (!q.empty() && pushes_applied_[w] >= q.front().second) {
      clock_[w] = std::max(clock_[w], q.front().first);
      q.pop_front();
    }
  }
  return MinClockLocked(&ignored) > before;
}

int64_t ServerNode::MinClockLocked(int* slowest) const {
  int64_t m = std::numeric_limits<int64_t>::max();
  *slowest = -1;
  for (size_t w = 0; w < clock_.size(); ++w) {
    if (finished_[w]) continue;
    if (clock_[w] < m) {
      m = clock_[w];
      *slowest = static_cast<int>(w);
    }
  }
  return m;
}

void ServerNode::ReleaseDeferredLocked(bool check_deadlines) {
  if (deferred_.empty()) return;
  int slowest;
  const int64_t min_clock = MinClockLocked(&slowest);
  const auto now = std::chrono::steady_clock::now();
  std::vector<Deferred> keep;
  for (auto& d : deferred_) {
    if (min_clock >= d.required_clock) {
      if (metrics_.staleness_wait != nullptr) metrics_.staleness_wait->RecordSince(d.since);
      pool_.Schedule(
          [this, m = std::move(d.msg), req = d.req]() mutable { HandlePull(std::move(m), req); });
    } else if (check_deadlines && now >= d.deadline) {
      if (metrics_.staleness_timeouts != nullptr) metrics_.staleness_timeouts->Add();
      const std::string who =
          slowest >= 0 ? layout_.Describe(layout_.WorkerRank(slowest)) : std::string("none");
      ReplyError(d.msg, MsgType::kPullResponse,
                 DeadlineExceeded("pull at step " + std::to_string(d.req.step) + " waited " +
                                  std::to_string(request_timeout_.count()) +
                                  " ms for the staleness bound; slowest is " + who + " at step " +
                                  std::to_string(min_clock)));
    } else {
      keep.push_back(std::move(d));
    }
  }
  deferred_ = std::move(keep);
}

Status ServerNode::Run() {
  const int workers = layout_.num_workers();
  int finished = 0;
  LOG(INFO) << layout_.Describe(transport_->rank()) << " serving " << shard_->num_tables()
            << " tables with " << pool_.num_threads() << " handler threads";
  while (!stop_ && finished < workers) {
    StatusOr<Message> r = transport_->Recv(Millis(50));
    if (!r.ok()) {
      if (r.status().code() == StatusCode::kDeadlineExceeded) {
        MutexLock l(&mu_);
        ReleaseDeferredLocked(true);
        continue;
      }
      return r.status().WithContext(layout_.Describe(transport_->rank()) + " receive");
    }
    Message msg = std::move(r).value();
    switch (msg.meta.type) {
      case MsgType::kPullRequest: {
        StatusOr<PullRequest> req = DecodePullRequest(msg);
        if (!req.ok()) {
          ReplyError(msg, MsgType::kPullResponse, req.status());
          break;
        }
        if (req->staleness >= 0) {
          const int64_t required = req->step - req->staleness;
          MutexLock l(&mu_);
          int slowest;
          if (MinClockLocked(&slowest) < required) {
            const auto now = std::chrono::steady_clock::now();
            // Moving the message keeps req's views into its body valid.
            deferred_.push_back(
                Deferred{std::move(msg), *req, required, now + request_timeout_, now});
            break;
          }
        }
        pool_.Schedule(
            [this, m = std::move(msg), req = *req]() mutable { HandlePull(std::move(m), req); });
        break;
      }
      case MsgType::kPushRequest:
        pool_.Schedule([this, m = std::move(msg)]() mutable { HandlePush(std::move(m)); });
        break;
      case MsgType::kClock: {
        StatusOr<ClockMessage> c = DecodeClock(msg);
        const int w = c.ok() ? c->worker : -1;
        if (w < 0 || w >= workers) {
          LOG(WARNING) << "bad CLOCK from " << layout_.Describe(msg.peer) << ": "
                       << (c.ok() ? "worker " + std::to_string(w) : c.status().ToString());
          break;
        }
        MutexLock l(&mu_);
        pending_clock_[w].emplace_back(c->step, c->pushes_sent);
        if (AdvanceClocksLocked()) ReleaseDeferredLocked(false);
        break;
      }
      case MsgType::kStatsRequest: {
        Status st = DecodeStatsRequest(msg);
        if (!st.ok()) {
          ReplyError(msg, MsgType::kStatsResponse, st);
          break;
        }
        ServerStats s = shard_->Stats();
        s.resident_bytes = ProcessResidentBytes();
        s.minor_faults = ProcessMinorFaults();
        Reply(msg, EncodeStatsResponse(msg.meta.request_id, s));
        break;
      }
      case MsgType::kSave: {
        StatusOr<SaveRequest> req = DecodeSaveRequest(msg);
        if (!req.ok()) {
          ReplyError(msg, MsgType::kSaveResponse, req.status());
          break;
        }
        HandleSave(msg, *req);
        break;
      }
      case MsgType::kSaveStatus: {
        StatusOr<SaveStatusRequest> req = DecodeSaveStatusRequest(msg);
        if (!req.ok()) {
          ReplyError(msg, MsgType::kSaveStatusResponse, req.status());
          break;
        }
        HandleSaveStatus(msg, *req);
        break;
      }
      case MsgType::kLoad: {
        StatusOr<LoadRequest> req = DecodeLoadRequest(msg);
        if (!req.ok()) {
          ReplyError(msg, MsgType::kLoadResponse, req.status());
          break;
        }
        HandleLoad(msg, *req);
        break;
      }
      case MsgType::kExportRequest: {
        StatusOr<ExportRequest> req = DecodeExportRequest(msg);
        if (!req.ok()) {
          ReplyError(msg, MsgType::kExportResponse, req.status());
          break;
        }
        // Scanning tables takes their partition locks briefly; pushes go on.
        pool_.Schedule([this, m = std::move(msg), req = *req]() mutable {
          Message reply = ExportReply(shard_, m.meta.request_id, req);
          if (metrics_.export_requests != nullptr) {
            metrics_.export_requests->Add();
            metrics_.export_bytes->Add(static_cast<int64_t>(reply.body.size()));
          }
          Reply(m, std::move(reply));
        });
        break;
      }
      case MsgType::kShutdown: {
        StatusOr<ShutdownMessage> sd = DecodeShutdown(msg);
        if (!sd.ok()) {
          LOG(WARNING) << "bad SHUTDOWN from " << layout_.Describe(msg.peer) << ": " << sd.status();
          break;
        }
        const int w = sd->worker;
        if (w >= 0 && w < workers) {
          MutexLock l(&mu_);
          if (!finished_[w]) {
            finished_[w] = true;
            ++finished;
            ReleaseDeferredLocked(false);
          }
        }
        break;
      }
      default:
        LOG(WARNING) << "unexpected " << MsgTypeName(msg.meta.type) << " from "
                     << layout_.Describe(msg.peer);
    }
  }
  pool_.WaitIdle();
  JoinWriter();  // an in-flight checkpoint completes before the server exits
  return Status::OK();
}

void ServerNode::JoinWriter() {
  if (writer_.joinable()) writer_.join();
}

void ServerNode::HandleSave(const Message& msg, const SaveRequest& req) {
  // Every acknowledged push is applied; finish queued ones first. Workers
  // send nothing else until this SAVE is answered (the cut), so the copy
  // below is the tables at the cut.
  pool_.WaitIdle();
  // One write in flight: wait for the previous one (the worker counts this
  // as pause).
  JoinWriter();
  const auto t0 = std::chrono::steady_clock::now();
  int64_t bytes = 0;
  std::shared_ptr<ParameterShard> copy(shard_->Snapshot(&bytes));
  const int64_t copy_us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  const int me = layout_.IndexInRole(transport_->rank());
  const std::string path = req.dir + "/" + ShardFileName(me, layout_.num_servers());
  // An incremental checkpoint: the rows pushed since this server's previous
  // successful save. The copy's version covers every copied row.
  const uint32_t now = copy->version();
  uint32_t since = 0;
  {
    MutexLock l(&save_mu_);
    if (req.incremental) since = saved_version_;
    save_ = SaveState();
    save_.dir = req.dir;
    save_.done = false;
  }
  const std::string who = layout_.Describe(transport_->rank());
  LOG(INFO) << who << " copied " << bytes << " bytes of rows in " << copy_us << " us for " << path;
  writer_ = std::thread([this, copy = std::move(copy), path, since, now, who]() mutable {
    const auto w0 = std::chrono::steady_clock::now();
    Status st = SaveShardRows(*copy, path, since);
    copy.reset();  // the extra memory goes as soon as the file is written
    const int64_t us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - w0)
            .count();
    if (st.ok()) {
      LOG(INFO) << who << " wrote " << path << " in " << us / 1000 << " ms (background)";
    } else {
      LOG(ERROR) << who << " failed to write " << path << ": " << st;
    }
    MutexLock l(&save_mu_);
    if (st.ok()) saved_version_ = now;
    save_.done = true;
    save_.status = std::move(st);
    save_.write_us = us;
  });
  Reply(msg, EncodeSaveResponse(msg.meta.request_id, SaveResponse{bytes, copy_us}));
}

void ServerNode::HandleSaveStatus(const Message& msg, const SaveStatusRequest& req) {
  SaveStatusResponse resp;
  Status st;
  {
    MutexLock l(&save_mu_);
    if (save_.dir.empty() || save_.dir != req.dir) {
      st = FailedPrecondition("no SAVE to '" + req.dir + "' was started here (last: '" + save_.dir +
                              "')");
    } else if (save_.done) {
      st = save_.status;
      resp.written = true;
      resp.write_us = save_.write_us;
    }
  }
  if (st.ok()) {
    Reply(msg, EncodeSaveStatusResponse(msg.meta.request_id, resp));
  } else {
    ReplyError(msg, MsgType::kSaveStatusResponse, st);
  }
}

void ServerNode::HandleLoad(const Message& msg, const LoadRequest& req) {
  // Like SAVE: every acknowledged push is applied first, and no write is in
  // flight while the rows change.
  pool_.WaitIdle();
  JoinWriter();
  const int me = layout_.IndexInRole(transport_->rank());
  const std::string path = req.dir + "/" + ShardFileName(me, layout_.num_servers());
  LoadRowsStats stats;
  Status st = ReplaceShardRows(path, shard_, &stats);
  const std::string who = layout_.Describe(transport_->rank());
  if (st.ok()) {
    LOG(INFO) << who << " replaced its rows with the " << stats.rows_kept << " rows of " << path;
  } else {
    LOG(ERROR) << who << " failed to load " << path << ": " << st;
  }
  if (!st.ok()) {
    ReplyError(msg, MsgType::kLoadResponse, st);
    return;
  }
  Reply(msg, EncodeLoadResponse(msg.meta.request_id, LoadResponse{stats.rows_kept}));
}

}  // namespace freshet
