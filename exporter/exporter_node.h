// ExporterNode: the EXPORTER role (the serving shard). It turns the live
// training state into snapshots a serving tier loads, continuously:
//
//   every export.interval_s:  ask every server for the rows pushed since its
//                             last export (EXPORT -> ExportRows), take the
//                             newest dense parameters worker 0 sent
//                             (DENSE_UPDATE), and publish a delta;
//   first (and with export.full_source SERVERS every export.full_interval_s):
//                             the same with every row, as a full snapshot
//                             that starts a new chain and lineage;
//   every export.full_interval_s (full_source COMPACT, the default): a full
//                             snapshot compacted from the published chain on
//                             a thread of its own (exporter/compactor.h),
//                             while deltas go on; the next delta's manifest
//                             starts from it (same lineage: readers do not
//                             reload);
//   on EXPORT_FINAL from worker 0 (training ended): a last delta (so the
//                             last rows are servable quickly), then a last
//                             full snapshot, then answer and return.
// Publishing goes through ExportWriter (exporter/export_dir.h): atomic files,
// manifest, LATEST, retention. The manifest carries the event-time watermark
// and the two freshness clocks (ingest_wall_ms: newest read time included;
// label_wall_ms: newest label-known time included), from which the serving
// tier computes freshness.
//
// Metrics (when a registry is given): snapshots published (full, delta),
// rows and bytes exported, export duration, freshness at publish (publish
// time minus ingest_wall_ms, and minus label_wall_ms), export lag (age of
// the newest published snapshot, read at scrape time) and the event-time
// watermark.
// Watermark: every worker reports its own (newest event time trained, and
// its freshness clocks: Trainer::Options::after_step) in WATERMARK messages
// (worker 0 also in DENSE_UPDATE). The exported watermark and clocks are the
// minimum over the workers that have trained something (watermark > 0; a
// worker without data, e.g. more workers than stream partitions, does not
// hold them at 0; a clock a worker does not know, 0, is skipped), so
// freshness is never better than the slowest worker's.
// EXPORT_FINAL carries the minimum over all workers' final values, gathered
// by worker 0 (docs/STREAMING.md).
//
// Thread safety: Run() on one thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "common/config.h"
#include "common/metrics_registry.h"
#include "common/proto/job.pb.h"
#include "common/ps_wire.h"
#include "common/request_tracker.h"
#include "common/transport.h"
#include "exporter/compactor.h"
#include "exporter/export_dir.h"

namespace freshet {

// Adds the rows of one server's EXPORT_RESPONSE (decoded with
// common/ps_wire.h) to `snap`, whose tables are the job's in order (name and
// dim set). Rows go to SnapshotTable::keys/values; deleted keys (evicted
// rows) to SnapshotTable::deleted, except in a full snapshot (it lists every
// live row, so deletions are implied). Tables the job lacks or with another
// dim are skipped.
void AddExportRows(const ExportResponse& rows, Snapshot* snap);
// The same without copying the rows: adds them as SnapshotTable::spans
// (views into the response's message). REQUIRES: the message outlives
// every use of `snap`.
void AddExportRowViews(const ExportResponse& rows, Snapshot* snap);

struct ExporterStats {
  int64_t fulls = 0;
  int64_t deltas = 0;
  int64_t rows_exported = 0;
  int64_t bytes_written = 0;
  double max_export_ms = 0;
  int64_t failed_publishes = 0;  // exports whose files could not be written
  // Per published delta: time to collect and publish it (ms) and its rows
  // (upserts + deletions), in order; for benchmarks (freshness_bench.sh).
  std::vector<double> delta_ms;
  std::vector<int64_t> delta_rows;
  // Per published delta, in the same order: its version, and delta_ms split
  // into collecting (EXPORT sent to every reply in) and publishing (file
  // write, fsync, manifest); of publishing, the time in fsync (5 calls).
  std::vector<int64_t> delta_version;
  std::vector<double> delta_collect_ms, delta_publish_ms, delta_fsync_ms;
  // Per published full snapshot (ms): total; collecting (EXPORT sent to
  // every reply in, which includes the servers' serialization and the
  // transfer); of that, decoding the replies and copying their rows; and
  // publishing (file write, fsync, manifest).
  std::vector<double> full_ms, full_collect_ms, full_copy_ms, full_publish_ms;
  // Compacted fulls adopted (full_source COMPACT), and per compaction (ms):
  // start to adoption, loading the chain, writing the file.
  int64_t compactions = 0;
  int64_t failed_compactions = 0;  // logged; the next full tick tries again
  std::vector<double> compact_ms, compact_load_ms, compact_write_ms;
  // export.durability ASYNC: per batch the flusher made durable, ms from
  // its oldest publish until it was durable (ExportWriter::TakeDurableLagMs).
  std::vector<double> durable_lag_ms;
  // The q-quantile (0..1) of `ms` (delta_ms, durable_lag_ms, ...); 0 if empty.
  static double Quantile(const std::vector<double>& ms, double q);
  double DeltaMsQuantile(double q) const { return Quantile(delta_ms, q); }
};

class ExporterNode {
 public:
  // Not owned; must outlive Run() (the registry: the node; may be null).
  // REQUIRES: job validated (export defaults filled).
  ExporterNode(Transport* transport, const ClusterLayout& layout, const proto::JobConfig& job,
               std::chrono::milliseconds request_timeout, MetricsRegistry* metrics = nullptr);
  // Waits for a compaction still running.
  ~ExporterNode();

  // Exports until worker 0 sends EXPORT_FINAL (OK), or an error (a server
  // not answering within the deadline, a failed final export). A periodic
  // export whose files cannot be written (after common/file_io.h's retries)
  // is a LOG(ERROR) and counted (stats().failed_publishes, metric
  // export_failed_publishes); the exporter goes on: the published model
  // stays the last good version, the servers' changes are asked for again
  // and go into the next version (a failed full snapshot is retried as a
  // full).
  Status Run();
  const ExporterStats& stats() const { return stats_; }

 private:
  // Collects and publishes one snapshot. Aborted if only the publish (file
  // writing) failed, which the next export retries.
  Status Export(bool full);
  // Handles a message that is not an export response; returns true if it
  // was EXPORT_FINAL (stored in *final_request).
  bool Handle(Message* msg, Message* final_request);
  // A worker's watermark and freshness clocks.
  void Report(int peer, const TrainingClocks& clocks);
  // Starts compacting the published chain on a thread (if there is
  // something to compact and none runs).
  void StartCompaction();
  // Adopts a finished compaction (waiting for it with `wait`); a failed one
  // is logged and counted.
  void FinishCompaction(bool wait);
  // The end of a COMPACT job, after its final delta: compacts the chain on
  // this thread and publishes the result as the last full (the same model
  // and lineage: readers on it load nothing). OK without publishing if the
  // published model is a full snapshot already; an error (nothing
  // published) if the chain cannot be compacted.
  Status CompactFinal();

  Transport* const transport_;
  const ClusterLayout& layout_;
  const proto::JobConfig job_;
  const std::chrono::milliseconds request_timeout_;
  std::unique_ptr<ExportWriter> writer_;
  std::vector<uint32_t> since_;  // per server: version already exported
  uint64_t version_ = 0;
  bool force_full_ = false;      // a full snapshot failed to publish: the next is full
  bool collected_full_ = false;  // this exporter published a full from the servers
  // The compaction under way (StartCompaction), written by its thread until
  // `done`.
  struct Compaction {
    std::thread thread;
    std::atomic<bool> done{false};
    Status status;
    proto::ExportFile entry;
    CompactionStats stats;
    std::chrono::steady_clock::time_point started;
  };
  std::unique_ptr<Compaction> compaction_;
  // Counts and logs an adopted compaction.
  void RecordCompaction(const Compaction& c, const char* what_next);
  // EXPORT requests: ids, the deadline, fan-in (received on Run's thread).
  RequestTracker tracker_;
  // Newest dense parameters from worker 0.
  bool have_dense_ = false;
  std::vector<float> dense_;
  int64_t watermark_ = 0;       // min over reporting workers
  int64_t ingest_wall_ms_ = 0;  // min over reporting workers (known, > 0)
  int64_t label_wall_ms_ = 0;   // min over reporting workers (known, > 0)
  // Latest report per worker rank.
  struct WorkerReport {
    int64_t watermark = 0, wall_ms = 0, label_wall_ms = 0;
  };
  std::map<int, WorkerReport> reports_;
  bool final_watermark_ = false;  // EXPORT_FINAL set the values
  int64_t step_ = 0;
  // EXPORT_FINAL that arrived during an export, answered next.
  bool has_pending_final_ = false;
  Message pending_final_;
  ExporterStats stats_;
  struct Metrics {
    Counter* fulls = nullptr;
    Counter* compactions = nullptr;
    Counter* deltas = nullptr;
    Counter* rows = nullptr;
    Counter* bytes = nullptr;
    Counter* failed = nullptr;
    LatencyHistogram* duration = nullptr;
    Gauge* freshness_s = nullptr;
    Gauge* label_freshness_s = nullptr;
    Gauge* watermark = nullptr;
    std::atomic<int64_t> last_publish_ms{0};  // read by the export lag callback
  };
  std::unique_ptr<Metrics> metrics_;  // null without a registry
};

}  // namespace freshet
