// The export directory: what the exporter publishes and the serving tier
// follows. It holds
//   LATEST                     one line: the current manifest's file name
//   DURABLE                    (ASYNC durability) one line: the newest
//                              manifest known to survive a power loss
//   manifest-<version>.pb      proto::ExportManifest (manifest file format)
//   full-<version>.snap        a full snapshot: every row and the dense params
//   delta-<version>.snap       rows changed (and deleted) since the previous file
// (both file formats: exporter/snapshot_format.h). A model is the newest
// full snapshot with its deltas applied in order (manifest.full, then
// manifest.deltas; exporter/model_loader.h loads it). Every file is written
// to a temporary name and renamed; the manifest is published the same way
// and LATEST last, so a reader that follows LATEST never sees a
// half-written file, even if the exporter is killed at any instant or the
// disk fills up (a failed write leaves LATEST naming the previous
// manifest). Durability against a power loss or kernel crash
// (proto::ExportConfig::Durability): SYNC fsyncs every file and the
// directory before LATEST moves (common/file_io.h, with bounded retries);
// ASYNC publishes first and fsyncs on a background thread, which then
// names the version in DURABLE (docs/SNAPSHOT_FORMAT.md section 2).
//
// Thread safety: the free functions are thread-safe; an ExportWriter is
// used by one thread (its ASYNC flusher is internal).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/proto/export.pb.h"
#include "common/proto/job.pb.h"
#include "common/status.h"
#include "exporter/snapshot_format.h"

namespace freshet {

// File names inside an export directory, versions zero-padded to 12 digits:
// "full-000000000042.snap", "delta-000000000043.snap",
// "manifest-000000000043.pb".
std::string SnapshotFileName(Snapshot::Kind kind, uint64_t version);
std::string ManifestFileName(uint64_t version);
// "<dir>/<name>" (just `name` if `dir` is empty).
std::string ExportPath(const std::string& dir, const std::string& name);

// True if both jobs list the same tables (names and dims, in order): a
// chain continues only under the same tables.
bool SameJobTables(const proto::JobConfig& a, const proto::JobConfig& b);

// How many times a reader starts over when the writer moved LATEST on and
// retired a file it was about to read.
inline constexpr int kExportReadAttempts = 5;

// Reads `dir`/`entry.name()` and checks it against its manifest entry
// (ReadSnapshotFileForEntry): DataLoss naming the file on any mismatch or
// a name that is not a plain file name; NotFound if the file is missing.
StatusOr<Snapshot> ReadExportFile(const std::string& dir, const proto::ExportFile& entry);
// Reads and sanity-checks one manifest file (DataLoss / NotFound naming it):
// its checksum trailer (DecodeManifestFile), its file names must be plain
// names, its versions must increase along the chain and end at the
// manifest's version (and match the version in its own file name).
StatusOr<proto::ExportManifest> ReadManifestFile(const std::string& path);
// The manifest file name LATEST holds (trimmed): NotFound if there is no
// LATEST, DataLoss if it does not hold a manifest file name.
StatusOr<std::string> ReadLatestManifestName(const std::string& dir);
// Reads LATEST and its manifest (DataLoss / NotFound naming the file):
// NotFound if there is no LATEST, DataLoss if it names a missing or corrupt
// manifest. If the manifest vanished because a writer moved LATEST on and
// retired it meanwhile, LATEST is read again (a few times).
StatusOr<proto::ExportManifest> ReadLatestManifest(const std::string& dir);

// The exporter's side: publishes files into an export directory.
class ExportWriter {
 public:
  // Creates `dir` if missing. `retain_full` >= 1: how many full snapshots
  // (with their deltas) to keep; older files are deleted after a publish.
  // If `dir` has a LATEST, the writer continues from the manifest it names
  // (a restarted exporter appends to the same chain; the next version must
  // be larger); a LATEST that names a missing or corrupt manifest is an
  // error (DataLoss / NotFound), never silently overwritten, unless the
  // directory has a DURABLE (written under ASYNC durability): then the
  // versions LATEST has beyond DURABLE's are checked (manifest, and every
  // file DURABLE's manifest does not list, read in full), and if one did
  // not survive (a power loss before the flusher reached it) LATEST is set
  // back to DURABLE's manifest with a warning naming what failed, the next
  // publish must be a full snapshot, and versions continue above the
  // highest one published (highest_version()). If the job's tables differ
  // from the published manifest's, the next publish must be a full
  // snapshot. Leftover temporary files of a killed writer are removed. At
  // most one writer may use a directory at a time.
  static StatusOr<std::unique_ptr<ExportWriter>> Open(
      const std::string& dir, const proto::JobConfig& job, int retain_full,
      proto::ExportConfig::Durability durability = proto::ExportConfig::SYNC);
  // ASYNC: waits for the flusher to make every published version durable.
  ~ExportWriter();
  ExportWriter(const ExportWriter&) = delete;
  ExportWriter& operator=(const ExportWriter&) = delete;

  // Writes the file, then a manifest naming it (a full starts a new chain; a
  // delta is appended to the current chain), then LATEST. REQUIRES: a delta
  // only after at least one full; versions increase (FailedPrecondition
  // otherwise); every table the job lists has the job's dim
  // (InvalidArgument). After LATEST is durable, Retain() deletes the files
  // of chains older than the newest `retain_full` and every manifest except
  // the newest of each retained chain; a failed deletion is only logged.
  // On an error the published model is unchanged (LATEST still names the
  // previous manifest).
  //
  // A full starts a new lineage (manifest.lineage = its version); deltas
  // keep it. After AdoptCompactedFull, the next delta's manifest starts
  // from the compacted full instead of the chain's old full.
  Status Publish(const Snapshot& snap);
  const proto::ExportManifest& manifest() const { return manifest_; }

  // Compaction (exporter/compactor.h: a full snapshot made from the chain
  // itself, written on another thread). BeginCompaction: if the published
  // chain has deltas since its full and no compaction is under way, returns
  // the file name the compacted full gets (full-<manifest version>.snap, in
  // the directory) and the manifest to compact, and keeps Retain() from
  // deleting that file (and its temporary) until Adopt or Abandon; ""
  // otherwise. AdoptCompactedFull(entry), with the entry WriteSnapshotFile
  // gave: the next delta's manifest lists that full and the chain's deltas
  // after its version (the same model, the same lineage: readers on the
  // lineage do not reload, exporter/model_loader.h) and retention treats it
  // as the start of a new chain. FailedPrecondition (nothing adopted; the
  // file goes with the next retention) if a full snapshot was published
  // since BeginCompaction or the entry is not the one begun.
  std::string BeginCompaction(proto::ExportManifest* chain);
  Status AdoptCompactedFull(const proto::ExportFile& entry);
  void AbandonCompaction();
  // Publishes the adopted compacted full now, without a new delta, when it
  // covers the published version: that version's manifest is written again
  // (atomically, LATEST unchanged) listing the compacted full alone: the
  // same model, version, lineage, watermark and clocks. Readers on the
  // lineage load nothing; new readers read one file. The end of a job
  // (exporter/exporter_node.h). FailedPrecondition if no compacted full of
  // the published version is adopted.
  Status PublishCompacted();
  int64_t bytes_written() const { return bytes_written_; }
  // The highest version published into this directory, including versions
  // an ASYNC fallback in Open() gave up: the next publish must be above it.
  uint64_t highest_version() const { return std::max(manifest_.version(), lost_version_); }

  // ASYNC: waits until every version published so far is durable (DURABLE
  // names the newest), or returns the flusher's error. SYNC: OK at once.
  Status WaitDurable() EXCLUDES(flush_mu_);
  // ASYNC: for each batch the flusher made durable since the last call,
  // the milliseconds from its oldest publish until it was durable.
  std::vector<double> TakeDurableLagMs() EXCLUDES(flush_mu_);

 private:
  ExportWriter() = default;
  // A published manifest the ASYNC flusher has yet to make durable: the
  // files this publish wrote (the manifest's file name last).
  struct ToFlush {
    proto::ExportManifest manifest;
    std::vector<std::string> files;
    std::chrono::steady_clock::time_point published;
  };
  void FlushLoop() EXCLUDES(flush_mu_);
  // fsyncs a batch's files, LATEST and the directory, then writes DURABLE.
  Status FlushBatch(const std::vector<ToFlush>& batch);
  // Open(): resolves LATEST against DURABLE (see Open).
  Status Recover(const std::vector<std::string>& names);
  // Writes `next` (version set) and LATEST; `starts_chain`: it starts a
  // retained chain (a full, collected or compacted).
  // `written_file`: the snapshot file this publish wrote ("" if none), for
  // the ASYNC flusher. `rewrite`: the manifest's name exists already (a
  // compacted full published at the same version), so it is written with
  // every fsync even under ASYNC: DURABLE may name it, and a power loss
  // must leave it whole, old or new.
  Status Commit(proto::ExportManifest next, bool starts_chain, std::string written_file,
                bool rewrite = false);
  Status Retain();
  std::string dir_;
  proto::JobConfig job_;
  int retain_full_ = 2;
  proto::ExportManifest manifest_;
  std::vector<proto::ExportManifest> chains_;  // one per retained full, oldest first
  bool needs_full_ = false;                    // the job's tables changed since the last manifest
  std::string compacting_;  // BeginCompaction's file name, until adopted/abandoned
  uint64_t compacting_lineage_ = 0;
  bool has_compacted_ = false;  // compacted_ is adopted: the next delta's base
  proto::ExportFile compacted_;
  int64_t bytes_written_ = 0;
  proto::ExportConfig::Durability durability_ = proto::ExportConfig::SYNC;
  uint64_t lost_version_ = 0;  // the highest version a fallback gave up

  // ASYNC durability: the flusher thread and what it shares.
  Mutex flush_mu_;
  CondVar flush_cv_;
  std::deque<ToFlush> to_flush_ GUARDED_BY(flush_mu_);
  // The batch being flushed: Retain() keeps its files.
  std::vector<proto::ExportManifest> flushing_ GUARDED_BY(flush_mu_);
  // The newest durable manifest (what DURABLE names): Retain() keeps its
  // files, the state a power loss falls back to.
  proto::ExportManifest durable_ GUARDED_BY(flush_mu_);
  bool flush_stop_ GUARDED_BY(flush_mu_) = false;
  Status flush_error_ GUARDED_BY(flush_mu_);
  std::vector<double> durable_lag_ms_ GUARDED_BY(flush_mu_);
  std::thread flusher_;
};

}  // namespace freshet
