// Snapshots: the files the exporter publishes and the serving tier loads.
//
// An export directory holds
//   LATEST                     one line: the current manifest's file name
//   manifest-<version>.pb      proto::ExportManifest (binary protobuf)
//   full-<version>.snap        a full snapshot: every row and the dense params
//   delta-<version>.snap       rows changed (and deleted) since the previous file
// A model is the newest full snapshot with its deltas applied in order
// (manifest.full, then manifest.deltas). Every file is written to a temporary
// name, fsynced, renamed, and the directory fsynced; the manifest is published
// the same way and LATEST last, so a reader that follows LATEST never sees a
// half-written file, even if the exporter is killed at any instant.
//
// .snap file layout (little-endian):
//   "FRSHSNAP" u32 format_version(1) u32 kind(0 full, 1 delta)
//   u64 model_version  i64 watermark  u8 has_dense
//   [u64 n, n f32]                                      dense, if has_dense
//   u32 num_tables, per table:
//     u32 name_len, name, u32 dim,
//     u64 upserts, upserts x { u64 key, dim f32 },
//     u64 deletions, deletions x u64 key
//   u64 FNV-1a 64 of every preceding byte
// The layout is specified in docs/SNAPSHOT_FORMAT.md for other readers.
//
// Thread safety: functions are thread-safe; an ExportWriter is used by one
// thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/proto/export.pb.h"
#include "common/proto/job.pb.h"
#include "common/status.h"

namespace freshet {

struct SnapshotTable {
  std::string name;
  int dim = 0;
  std::vector<uint64_t> keys;     // upserted rows
  std::vector<float> values;      // keys.size() * dim
  std::vector<uint64_t> deleted;  // keys removed since the previous file
};

struct Snapshot {
  enum class Kind : uint32_t { kFull = 0, kDelta = 1 };
  Kind kind = Kind::kFull;
  uint64_t version = 0;
  int64_t watermark = 0;
  bool has_dense = false;
  std::vector<float> dense;
  std::vector<SnapshotTable> tables;
};

// Writes `snap` to `path` atomically (tmp, fsync, rename, fsync dir).
// Returns the file's size and checksum in *entry (name = basename of path).
Status WriteSnapshotFile(const Snapshot& snap, const std::string& path, proto::ExportFile* entry);
// Reads and verifies a snapshot file: DataLoss naming the file and the
// problem for a bad magic, truncation or checksum mismatch.
StatusOr<Snapshot> ReadSnapshotFile(const std::string& path);

// The exporter's side: publishes files into an export directory.
class ExportWriter {
 public:
  // Creates `dir` if missing. `retain_full` >= 1: how many full snapshots
  // (with their deltas) to keep; older files are deleted after a publish.
  static StatusOr<std::unique_ptr<ExportWriter>> Open(const std::string& dir,
                                                      const proto::JobConfig& job,
                                                      int retain_full);
  // Writes the file, then a manifest naming it (a full starts a new chain; a
  // delta is appended to the current chain), then LATEST. REQUIRES: a delta
  // only after at least one full; versions increase.
  Status Publish(const Snapshot& snap);
  const proto::ExportManifest& manifest() const { return manifest_; }
  int64_t bytes_written() const { return bytes_written_; }

 private:
  ExportWriter() = default;
  Status Retain();
  std::string dir_;
  proto::JobConfig job_;
  int retain_full_ = 2;
  proto::ExportManifest manifest_;
  std::vector<proto::ExportManifest> chains_;  // one per retained full, oldest first
  int64_t bytes_written_ = 0;
};

// A model state loaded from an export directory: tables as key -> row maps
// and dense params, at one version.
struct LoadedTable {
  int dim = 0;
  std::unordered_map<uint64_t, uint32_t> index;  // key -> row
  std::vector<float> values;                     // row * dim
  // Returns the row's weights or nullptr.
  const float* Find(uint64_t key) const;
};
struct LoadedExport {
  proto::ExportManifest manifest;
  std::vector<float> dense;
  std::unordered_map<std::string, LoadedTable> tables;
};

// Reads LATEST and its manifest (DataLoss / NotFound naming the file).
StatusOr<proto::ExportManifest> ReadLatestManifest(const std::string& dir);
// Loads the model LATEST names: the full snapshot and every delta, each
// checked against the manifest's size and checksum, applied in order
// (upserts replace rows, deletions remove them). Any mismatch fails the
// whole load (the caller keeps its previous model).
StatusOr<std::shared_ptr<const LoadedExport>> LoadLatestExport(const std::string& dir);
// Like LoadLatestExport, but when `previous` is the same chain (same full
// snapshot, its deltas a prefix of the new manifest's), copies it and applies
// only the new deltas. Falls back to a full load otherwise.
StatusOr<std::shared_ptr<const LoadedExport>> LoadLatestExportIncremental(
    const std::string& dir, const std::shared_ptr<const LoadedExport>& previous);

}  // namespace freshet
