#include "exporter/exporter_node.h"

#include <glog/logging.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <map>

#include "common/file_io.h"
#include "common/thread_pool.h"

namespace freshet {

using SteadyClock = std::chrono::steady_clock;

namespace {
// Nice value of the compaction thread (StartCompaction).
constexpr int kCompactionNice = 10;

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

ExporterNode::ExporterNode(Transport* transport, const ClusterLayout& layout,
                           const proto::JobConfig& job, std::chrono::milliseconds request_timeout,
                           MetricsRegistry* metrics)
    : transport_(transport),
      layout_(layout),
      job_(job),
      request_timeout_(request_timeout),
      since_(layout.num_servers(), 0),
      tracker_(transport, [&layout](int rank) { return layout.Describe(rank); }) {
  if (metrics == nullptr) return;
  metrics_ = std::make_unique<Metrics>();
  Metrics* m = metrics_.get();
  m->fulls = metrics->AddCounter("export_full_snapshots",
                                 "Full snapshots collected from the servers and published.");
  m->compactions = metrics->AddCounter(
      "export_compacted_fulls",
      "Full snapshots compacted from the published chain and adopted (export.full_source "
      "COMPACT).");
  m->deltas = metrics->AddCounter("export_delta_snapshots", "Delta snapshots published.");
  m->rows = metrics->AddCounter("export_rows", "Rows written into snapshots.");
  m->bytes = metrics->AddCounter("export_bytes", "Bytes of snapshot files written.");
  m->failed = metrics->AddCounter(
      "export_failed_publishes",
      "Exports whose files could not be written (disk full, I/O errors); retried next time.");
  m->duration = metrics->AddHistogram("export", "Time to collect and publish one snapshot.");
  m->freshness_s = metrics->AddGauge(
      "export_freshness_seconds",
      "At the last publish: publish time minus when training read the newest events it "
      "included (read -> published).");
  m->label_freshness_s = metrics->AddGauge(
      "export_label_freshness_seconds",
      "At the last publish: publish time minus when the newest label it included became known "
      "(label known -> published).");
  m->watermark = metrics->AddGauge("export_watermark",
                                   "Event-time watermark of the last "
                                   "snapshot, unix seconds.");
  metrics->AddCallback("export_lag_seconds",
                       "Seconds since the newest snapshot was published (0 before the first).",
                       false, [m] {
                         const int64_t last = m->last_publish_ms.load();
                         return last == 0 ? 0.0 : (UnixMs() - last) / 1e3;
                       });
}

ExporterNode::~ExporterNode() {
  if (compaction_ != nullptr && compaction_->thread.joinable()) compaction_->thread.join();
}

void ExporterNode::StartCompaction() {
  if (compaction_ != nullptr) return;  // one at a time; the next tick tries again
  proto::ExportManifest chain;
  const std::string name = writer_->BeginCompaction(&chain);
  if (name.empty()) return;  // no deltas since the full: nothing to compact
  compaction_ = std::make_unique<Compaction>();
  Compaction* c = compaction_.get();
  c->started = SteadyClock::now();
  const std::string dir = job_.export_().dir();
  c->thread = std::thread([c, dir, chain = std::move(chain), name] {
    // A compaction is background work: the deltas, and the workers and
    // servers a local cluster shares its cores with, come first. Nice 10
    // (this thread only) weighs it at about a tenth of a normal thread on
    // a busy core; on an idle one it runs at full speed. Before, on the
    // 2-core box, its chain load delayed three 0.25 s deltas by up to
    // 870 ms (docs/BENCHMARKS.md "Freshness and serving").
    if (!SetThisThreadNice(kCompactionNice)) {
      PLOG(WARNING) << "exporter: could not lower the compaction thread's priority";
    }
    StatusOr<proto::ExportFile> entry = CompactChain(dir, chain, name, &c->stats);
    if (entry.ok()) {
      c->entry = std::move(*entry);
    } else {
      c->status = entry.status();
    }
    c->done.store(true, std::memory_order_release);
  });
}

void ExporterNode::FinishCompaction(bool wait) {
  if (compaction_ == nullptr) return;
  if (!wait && !compaction_->done.load(std::memory_order_acquire)) return;
  compaction_->thread.join();
  std::unique_ptr<Compaction> c = std::move(compaction_);
  Status st = c->status;
  if (st.ok()) {
    st = writer_->AdoptCompactedFull(c->entry);
  } else {
    writer_->AbandonCompaction();
  }
  if (!st.ok()) {
    ++stats_.failed_compactions;
    LOG(WARNING) << "exporter: compacting the chain failed (the next full tick tries again): "
                 << st;
    return;
  }
  RecordCompaction(*c, "the next delta's manifest starts from it");
}

void ExporterNode::RecordCompaction(const Compaction& c, const char* what_next) {
  const double ms =
      std::chrono::duration<double, std::milli>(SteadyClock::now() - c.started).count();
  ++stats_.compactions;
  stats_.compact_ms.push_back(ms);
  stats_.compact_load_ms.push_back(c.stats.load_ms);
  stats_.compact_write_ms.push_back(c.stats.write_ms);
  if (metrics_ != nullptr) metrics_->compactions->Add();
  LOG(INFO) << "compacted full v" << c.entry.version() << ": " << c.stats.rows << " rows, "
            << c.stats.bytes << " bytes in " << ms << " ms (loading the chain " << c.stats.load_ms
            << " ms, write+fsync " << c.stats.write_ms << " ms); " << what_next;
}

Status ExporterNode::CompactFinal() {
  if (writer_->manifest().deltas_size() == 0) return Status::OK();  // a full already
  proto::ExportManifest chain;
  const std::string name = writer_->BeginCompaction(&chain);
  if (!name.empty()) {
    // On this thread: the job waits for its last export anyway.
    Compaction c;
    c.started = SteadyClock::now();
    StatusOr<proto::ExportFile> entry = CompactChain(job_.export_().dir(), chain, name, &c.stats);
    Status st = entry.ok() ? writer_->AdoptCompactedFull(*entry) : entry.status();
    if (!st.ok()) {
      if (!entry.ok()) writer_->AbandonCompaction();
      ++stats_.failed_compactions;
      return st;
    }
    c.entry = std::move(*entry);
    RecordCompaction(c, "published as the final full");
  }
  // Else a compaction adopted just now covers the published version (or
  // the chain cannot be compacted: PublishCompacted says so).
  FRESHET_RETURN_IF_ERROR(writer_->PublishCompacted());
  stats_.bytes_written = writer_->bytes_written();
  return Status::OK();
}

void ExporterNode::Report(int peer, const TrainingClocks& clocks) {
  if (final_watermark_) return;
  reports_[peer] = {clocks.watermark, clocks.wall_ms, clocks.label_wall_ms};
  int64_t w = INT64_MAX, wall = INT64_MAX, label = INT64_MAX;
  for (const auto& [rank, r] : reports_) {
    if (r.watermark <= 0) continue;  // nothing trained yet
    w = std::min(w, r.watermark);
    if (r.wall_ms > 0) wall = std::min(wall, r.wall_ms);  // 0: unknown
    if (r.label_wall_ms > 0) label = std::min(label, r.label_wall_ms);
  }
  if (w == INT64_MAX) return;
  watermark_ = w;
  ingest_wall_ms_ = wall == INT64_MAX ? 0 : wall;
  label_wall_ms_ = label == INT64_MAX ? 0 : label;
}

bool ExporterNode::Handle(Message* msg, Message* final_request) {
  switch (msg->meta.type) {
    case MsgType::kWatermark: {
      StatusOr<TrainingClocks> c = DecodeWatermark(*msg);
      if (!c.ok()) {
        LOG(WARNING) << "exporter: ignoring WATERMARK from " << layout_.Describe(msg->peer) << ": "
                     << c.status();
        return false;
      }
      Report(msg->peer, *c);
      return false;
    }
    case MsgType::kDenseUpdate:
    case MsgType::kExportFinal: {
      bool final = false;
      StatusOr<DenseUpdate> u = DecodeDenseUpdate(*msg, &final);
      if (!u.ok()) {
        LOG(WARNING) << "exporter: ignoring " << MsgTypeName(msg->meta.type) << " from "
                     << layout_.Describe(msg->peer) << ": " << u.status();
        return false;
      }
      dense_.assign(u->dense, u->dense + u->num_dense);
      have_dense_ = true;
      step_ = u->clocks.step;
      if (!final) {
        Report(msg->peer, u->clocks);
        return false;
      }
      // Final: worker 0 gathered every worker's final watermark.
      watermark_ = u->clocks.watermark;
      ingest_wall_ms_ = u->clocks.wall_ms;
      label_wall_ms_ = u->clocks.label_wall_ms;
      final_watermark_ = true;
      msg->body.clear();
      *final_request = std::move(*msg);
      return true;
    }
    case MsgType::kExportResponse:
      return false;  // a late answer to an earlier export (it timed out)
    default:
      LOG(WARNING) << "exporter: unexpected " << MsgTypeName(msg->meta.type) << " from "
                   << layout_.Describe(msg->peer);
      return false;
  }
}

double ExporterStats::Quantile(const std::vector<double>& ms, double q) {
  if (ms.empty()) return 0;
  std::vector<double> v = ms;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

void AddExportRows(const ExportResponse& rows, Snapshot* snap) {
  const bool full = snap->kind == Snapshot::Kind::kFull;
  for (const ExportedTable& t : rows.tables) {
    if (t.table >= snap->tables.size()) continue;
    SnapshotTable& st = snap->tables[t.table];
    if (static_cast<int>(t.dim) != st.dim) continue;
    st.keys.insert(st.keys.end(), t.keys, t.keys + t.n);
    st.values.insert(st.values.end(), t.weights, t.weights + t.n * t.dim);
    if (!full) st.deleted.insert(st.deleted.end(), t.deleted, t.deleted + t.num_deleted);
  }
}

void AddExportRowViews(const ExportResponse& rows, Snapshot* snap) {
  const bool full = snap->kind == Snapshot::Kind::kFull;
  for (const ExportedTable& t : rows.tables) {
    if (t.table >= snap->tables.size()) continue;
    SnapshotTable& st = snap->tables[t.table];
    if (static_cast<int>(t.dim) != st.dim) continue;
    if (t.n > 0) st.spans.push_back({t.keys, t.weights, t.n});
    if (!full) st.deleted.insert(st.deleted.end(), t.deleted, t.deleted + t.num_deleted);
  }
}

Status ExporterNode::Export(bool full) {
  const auto t0 = SteadyClock::now();
  Snapshot snap;
  snap.kind = full ? Snapshot::Kind::kFull : Snapshot::Kind::kDelta;
  snap.tables.resize(job_.tables().tables_size());
  for (int t = 0; t < job_.tables().tables_size(); ++t) {
    snap.tables[t].name = job_.tables().tables(t).name();
    snap.tables[t].dim = static_cast<int>(job_.tables().tables(t).dim());
  }
  // A full snapshot copies every row: it gets export.full_timeout_s (600 s
  // when unset), but never less than the transport deadline.
  const double full_s =
      job_.export_().full_timeout_s() > 0 ? job_.export_().full_timeout_s() : 600.0;
  const auto timeout =
      full ? std::max(request_timeout_, std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::duration<double>(full_s)))
           : request_timeout_;
  // The clocks as of the cut: a worker reports them once the servers have
  // applied its pushes (Trainer::Options::after_step), so every report
  // received before the requests go out is covered by the rows they
  // collect. Reports that arrive while collecting are not (their pushes may
  // reach a server after its answer); they count for the next export.
  const int64_t watermark = watermark_, ingest_wall_ms = ingest_wall_ms_,
                label_wall_ms = label_wall_ms_;
  std::vector<int> ranks;
  std::vector<Message> requests;
  for (int s = 0; s < layout_.num_servers(); ++s) {
    ranks.push_back(layout_.ServerRank(s));
    requests.push_back(EncodeExportRequest(ExportRequest{full ? 0 : since_[s]}));
  }
  std::vector<uint32_t> new_since = since_;
  // The servers' responses, kept until the snapshot is written: its rows
  // are views into them (AddExportRowViews), so the model is not copied.
  std::vector<Message> replies(layout_.num_servers());
  double copy_ms = 0;  // decoding replies and copying their rows (Run's thread)
  Message final_request;
  bool got_final = false;
  // Workers' messages that arrive meanwhile are handled as they come.
  const std::function<void(Message*)> other = [&](Message* m) {
    got_final = Handle(m, &final_request) || got_final;
  };
  FRESHET_RETURN_IF_ERROR(tracker_.Call(
      ranks, std::move(requests), timeout,
      [&](size_t s, Message* reply) {
        const auto c0 = SteadyClock::now();
        replies[s] = std::move(*reply);
        StatusOr<ExportResponse> rows = DecodeExportResponse(replies[s]);
        if (!rows.ok()) {
          return rows.status().WithContext("EXPORT response from " +
                                           layout_.Describe(replies[s].peer));
        }
        new_since[s] = rows->version;
        AddExportRowViews(*rows, &snap);
        copy_ms += std::chrono::duration<double, std::milli>(SteadyClock::now() - c0).count();
        return Status::OK();
      },
      &other, full ? " (export.full_timeout_s)" : ""));
  const auto t_collected = SteadyClock::now();
  snap.version = ++version_;
  snap.watermark = watermark;
  snap.ingest_wall_ms = ingest_wall_ms;
  snap.label_wall_ms = label_wall_ms;
  snap.has_dense = have_dense_;
  snap.dense = dense_;
  int64_t rows = 0, deletions = 0;
  for (const auto& t : snap.tables) {
    rows += static_cast<int64_t>(t.num_rows());
    deletions += static_cast<int64_t>(t.deleted.size());
  }
  if (got_final) {
    // Answer after this export; the caller's loop sees it next.
    pending_final_ = std::move(final_request);
    has_pending_final_ = true;
  }
  const int64_t fsync_ns0 = ThisThreadFsyncNanos();
  Status published = writer_->Publish(snap);
  const auto t_published = SteadyClock::now();
  const double fsync_ms = static_cast<double>(ThisThreadFsyncNanos() - fsync_ns0) / 1e6;
  if (!published.ok()) {
    // Nothing is lost: since_ stays, so the servers send these rows (and
    // their deletions, which they keep until acknowledged this way) again
    // for the next version. A failed full is retried as a full.
    ++stats_.failed_publishes;
    if (full) force_full_ = true;
    if (metrics_ != nullptr) metrics_->failed->Add();
    LOG(ERROR) << "exporter: publishing " << (full ? "full" : "delta") << " version "
               << snap.version << " failed; serving keeps version " << writer_->manifest().version()
               << "; the next export retries: " << published;
    return Status(StatusCode::kAborted, published.message());
  }
  since_ = new_since;
  if (full) {
    force_full_ = false;
    collected_full_ = true;
  }
  (full ? stats_.fulls : stats_.deltas) += 1;
  stats_.rows_exported += rows;
  stats_.bytes_written = writer_->bytes_written();
  for (double lag : writer_->TakeDurableLagMs()) stats_.durable_lag_ms.push_back(lag);
  const double ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
  stats_.max_export_ms = std::max(stats_.max_export_ms, ms);
  const double collect_ms = std::chrono::duration<double, std::milli>(t_collected - t0).count();
  const double publish_ms =
      std::chrono::duration<double, std::milli>(t_published - t_collected).count();
  if (!full) {
    stats_.delta_ms.push_back(ms);
    stats_.delta_rows.push_back(rows + deletions);
    stats_.delta_version.push_back(static_cast<int64_t>(snap.version));
    stats_.delta_collect_ms.push_back(collect_ms);
    stats_.delta_publish_ms.push_back(publish_ms);
    stats_.delta_fsync_ms.push_back(fsync_ms);
  }
  if (metrics_ != nullptr) {
    const int64_t now_ms = UnixMs();
    (full ? metrics_->fulls : metrics_->deltas)->Add();
    metrics_->rows->Add(rows);
    metrics_->bytes->Add(stats_.bytes_written - metrics_->bytes->value());
    metrics_->duration->Record(ms / 1e3);
    if (ingest_wall_ms_ > 0) metrics_->freshness_s->Set((now_ms - ingest_wall_ms_) / 1e3);
    if (label_wall_ms_ > 0) {
      metrics_->label_freshness_s->Set((now_ms - label_wall_ms_) / 1e3);
    }
    metrics_->watermark->Set(static_cast<double>(watermark_));
    metrics_->last_publish_ms = now_ms;
  }
  if (full) {
    stats_.full_ms.push_back(ms);
    stats_.full_collect_ms.push_back(collect_ms);
    stats_.full_copy_ms.push_back(copy_ms);
    stats_.full_publish_ms.push_back(publish_ms);
  }
  // Fulls at INFO: where their time goes (docs/TABLES.md "Full snapshot cost").
  LOG_IF(INFO, full) << "exported full v" << snap.version << ": " << rows << " rows, "
                     << writer_->manifest().full().size() << " bytes in " << ms << " ms (collect "
                     << collect_ms << " ms, of which decode+copy " << copy_ms
                     << " ms; write+fsync+manifest " << publish_ms << " ms)";
  VLOG(1) << "exported " << (full ? "full" : "delta") << " v" << snap.version << ": " << rows
          << " rows in " << ms << " ms";
  return Status::OK();
}

Status ExporterNode::Run() {
  const proto::ExportConfig& cfg = job_.export_();
  FRESHET_ASSIGN_OR_RETURN(
      writer_, ExportWriter::Open(cfg.dir(), job_, cfg.retain_full(), cfg.durability()));
  // A restarted exporter continues the chain (above any version an ASYNC
  // power-loss fallback gave up).
  version_ = writer_->highest_version();
  const auto interval = std::chrono::duration_cast<SteadyClock::duration>(
      std::chrono::duration<double>(cfg.interval_s()));
  const auto full_interval = std::chrono::duration_cast<SteadyClock::duration>(
      std::chrono::duration<double>(cfg.full_interval_s()));
  auto next_tick = SteadyClock::now() + interval;
  auto next_full = SteadyClock::now();  // the first export is a full one
  LOG(INFO) << layout_.Describe(transport_->rank()) << " exporting to " << cfg.dir() << " every "
            << cfg.interval_s() << " s";
  const bool compact = cfg.full_source() == proto::ExportConfig::COMPACT;
  while (true) {
    FinishCompaction(/*wait=*/false);
    Message final_request;
    bool final = false;
    if (has_pending_final_) {
      final_request = std::move(pending_final_);
      has_pending_final_ = false;
      final = true;
    } else {
      const auto left = std::chrono::duration_cast<Millis>(next_tick - SteadyClock::now());
      StatusOr<Message> r = transport_->Recv(std::max(Millis(1), left));
      if (r.ok()) {
        final = Handle(&*r, &final_request);
      } else if (r.status().code() != StatusCode::kDeadlineExceeded) {
        return r.status();
      }
    }
    if (final) {
      // First a delta, so the last trained rows are servable at delta speed
      // (a full snapshot copies every row: seconds at millions of rows),
      // then the full snapshot that a restart or a new reader starts from.
      // A delta that cannot be published is left to the full.
      bool delta_published = false;
      if (writer_->manifest().version() > 0 && !force_full_) {
        Status d = Export(/*full=*/false);
        if (!d.ok() && d.code() != StatusCode::kAborted) return d;
        delta_published = d.ok();
      }
      // A compaction still running does not hold that delta back.
      FinishCompaction(/*wait=*/true);
      // With COMPACT, the last full is compacted from the chain, which that
      // delta completed: the same model on the same lineage, so serving
      // applies the last delta and never reloads the model at the end.
      // Otherwise (SERVERS, no delta published, a chain that cannot be
      // compacted, a failed compaction) it is collected from the servers.
      Status st(StatusCode::kFailedPrecondition, "no final full yet");
      if (compact && collected_full_ && delta_published) {
        st = CompactFinal();
        if (!st.ok()) {
          LOG(WARNING) << "exporter: the final full could not be compacted from the chain; "
                          "collecting it from the servers: "
                       << st;
        }
      }
      // The last model matters most: a failed publish is tried again (each
      // attempt after file_io's own retries), then reported to worker 0.
      for (int attempt = 1;
           attempt <= 3 && !st.ok() && (attempt == 1 || st.code() == StatusCode::kAborted);
           ++attempt) {
        st = Export(/*full=*/true);
      }
      // The job's last model is durable before training is told it is done.
      if (st.ok()) st = writer_->WaitDurable();
      for (double ms : writer_->TakeDurableLagMs()) stats_.durable_lag_ms.push_back(ms);
      const uint64_t id = final_request.meta.request_id;
      Message resp =
          st.ok()
              ? EncodeExportFinalResponse(id)
              : EncodeErrorResponse(
                    MsgType::kExportFinalResponse, id,
                    Status(st.code(), layout_.Describe(transport_->rank()) + ": " + st.message()));
      FRESHET_RETURN_IF_ERROR(transport_->Send(final_request.peer, std::move(resp)));
      LOG(INFO) << "exporter done: " << stats_.fulls << " full (collected), " << stats_.compactions
                << " compacted full and " << stats_.deltas << " delta snapshots, "
                << stats_.bytes_written << " bytes";
      return st;
    }
    const auto now = SteadyClock::now();
    if (now >= next_tick) {
      // On a fixed schedule (not interval after the last export ended), so
      // the time an export takes does not stretch the interval; an export
      // that overran starts the next one at once.
      next_tick = std::max(next_tick + interval, now);
      if (have_dense_) {
        bool full = now >= next_full || force_full_;
        if (full) next_full = now + full_interval;
        if (full && compact && collected_full_ && !force_full_) {
          // Compacted beside the deltas; this tick still publishes one.
          StartCompaction();
          full = false;
        }
        Status st = Export(full);
        // A failed publish (disk full, I/O error: logged, counted) is
        // retried by the next export; anything else ends the exporter.
        if (!st.ok() && st.code() != StatusCode::kAborted) return st;
      }
    }
  }
}

}  // namespace freshet
