// Snapshots: the files the exporter publishes and the serving tier loads.
//
// An export directory holds
//   LATEST                     one line: the current manifest's file name
//   manifest-<version>.pb      proto::ExportManifest (binary protobuf)
//   full-<version>.snap        a full snapshot: every row and the dense params
//   delta-<version>.snap       rows changed (and deleted) since the previous file
// A model is the newest full snapshot with its deltas applied in order
// (manifest.full, then manifest.deltas). Every file is written to a temporary
// name, fsynced, renamed, and the directory fsynced (common/file_io.h, with
// bounded retries on write errors); the manifest is published the same way
// and LATEST last, so a reader that follows LATEST never sees a
// half-written file, even if the exporter is killed at any instant or the
// disk fills up (a failed write leaves LATEST naming the previous manifest).
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
#include "exporter/served_table.h"

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
  // Freshness clocks (unix ms; proto::ExportManifest): the newest read time
  // and the newest label-known time of the examples this version includes;
  // copied into the manifest (not stored in the .snap file).
  int64_t ingest_wall_ms = 0;
  int64_t label_wall_ms = 0;
  bool has_dense = false;
  std::vector<float> dense;
  std::vector<SnapshotTable> tables;
};

// File names inside an export directory, versions zero-padded to 12 digits:
// "full-000000000042.snap", "delta-000000000043.snap",
// "manifest-000000000043.pb".
std::string SnapshotFileName(Snapshot::Kind kind, uint64_t version);
std::string ManifestFileName(uint64_t version);

// Writes `snap` to `path` atomically (tmp, fsync, rename, fsync dir).
// Returns the file's size and checksum in *entry (name = basename of path).
// InvalidArgument if a table's values are not keys * dim, its dim is not in
// 1..4096, two tables share a name, or a full snapshot lists deletions;
// Internal (naming the path) if a system call fails.
Status WriteSnapshotFile(const Snapshot& snap, const std::string& path, proto::ExportFile* entry);
// Reads and verifies a snapshot file: DataLoss naming the file and the
// problem for a bad magic, truncation or checksum mismatch.
StatusOr<Snapshot> ReadSnapshotFile(const std::string& path);
// Reads `dir`/`entry.name()` and checks it against its manifest entry: the
// file size, the FNV-1a 64 of the whole file and the version it declares
// must match (DataLoss naming the file otherwise), besides every check of
// ReadSnapshotFile. NotFound if the file is missing.
StatusOr<Snapshot> ReadExportFile(const std::string& dir, const proto::ExportFile& entry);
// The bytes of a manifest file: the binary proto::ExportManifest, then a
// 16-byte trailer, "FRSHMSUM" and the u64 FNV-1a 64 of every byte before
// the hash (little-endian).
std::string EncodeManifestFile(const proto::ExportManifest& m);
// Parses manifest file bytes, verifying the trailer: DataLoss naming `path`
// for a checksum mismatch, a damaged trailer or bytes that do not parse.
// Bytes without a trailer (manifests written before it existed) are parsed
// unchecked.
StatusOr<proto::ExportManifest> DecodeManifestFile(const std::string& path,
                                                   const std::string& bytes);
// Reads and sanity-checks one manifest file (DataLoss / NotFound naming it):
// its checksum trailer (DecodeManifestFile), its file names must be plain
// names, its versions must increase along the chain and end at the
// manifest's version.
StatusOr<proto::ExportManifest> ReadManifestFile(const std::string& path);

// The exporter's side: publishes files into an export directory.
class ExportWriter {
 public:
  // Creates `dir` if missing. `retain_full` >= 1: how many full snapshots
  // (with their deltas) to keep; older files are deleted after a publish.
  // If `dir` has a LATEST, the writer continues from the manifest it names
  // (a restarted exporter appends to the same chain; the next version must
  // be larger); a LATEST that names a missing or corrupt manifest is an
  // error (DataLoss / NotFound), never silently overwritten. If the job's
  // tables differ from the published manifest's, the next publish must be a
  // full snapshot. Leftover temporary files of a killed writer are removed.
  // At most one writer may use a directory at a time.
  static StatusOr<std::unique_ptr<ExportWriter>> Open(const std::string& dir,
                                                      const proto::JobConfig& job,
                                                      int retain_full);
  // Writes the file, then a manifest naming it (a full starts a new chain; a
  // delta is appended to the current chain), then LATEST. REQUIRES: a delta
  // only after at least one full; versions increase (FailedPrecondition
  // otherwise); every table the job lists has the job's dim
  // (InvalidArgument). After LATEST is durable, Retain() deletes the files
  // of chains older than the newest `retain_full` and every manifest except
  // the newest of each retained chain; a failed deletion is only logged.
  // On an error the published model is unchanged (LATEST still names the
  // previous manifest).
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
  bool needs_full_ = false;  // the job's tables changed since the last manifest
  int64_t bytes_written_ = 0;
};

// A model state loaded from an export directory: tables (ServedTable: key ->
// row, persistent) and dense params, at one version. The loaders hand it out
// as shared_ptr<const LoadedExport> and never change it afterwards, so any
// number of threads may read it without locking. Consecutive versions of a
// chain share every table part a delta did not touch (ServedTable), so
// holding an older version costs only what changed since.
using LoadedTable = ServedTable;
struct LoadedExport {
  proto::ExportManifest manifest;
  std::vector<float> dense;
  std::unordered_map<std::string, LoadedTable> tables;
  // Bytes of what scoring needs: every table's keys and rows (16-bit rows
  // for fp16/bf16 tables) and the dense params.
  int64_t served_bytes() const {
    int64_t bytes = static_cast<int64_t>(dense.size() * sizeof(float));
    for (const auto& [name, t] : tables) bytes += t.payload_bytes();
    return bytes;
  }
};

// Reads LATEST and its manifest (DataLoss / NotFound naming the file):
// NotFound if there is no LATEST, DataLoss if it names a missing or corrupt
// manifest. If the manifest vanished because a writer moved LATEST on and
// retired it meanwhile, LATEST is read again (a few times).
StatusOr<proto::ExportManifest> ReadLatestManifest(const std::string& dir);
// Loads the model LATEST names: the full snapshot and every delta, each
// checked against the manifest's size and checksum (the size before
// parsing; the checksum in the same streaming pass, with every length
// bounded by the bytes that remain; nothing from a file is applied before
// all of it verified), applied in order
// (within one delta its deletions first, then its upserts; upserts replace
// rows, deletions remove them). Every table of the job appears in the
// result (empty if no file has rows for it). Any mismatch fails the whole
// load (the caller keeps its previous model): DataLoss for a corrupt or
// missing file or a table whose dim disagrees with the job or the previous
// file; NotFound if there is no LATEST yet. A file retired by the writer
// during the load (LATEST moved on) makes it start over from LATEST, a few
// times.
StatusOr<std::shared_ptr<const LoadedExport>> LoadLatestExport(const std::string& dir);
// Like LoadLatestExport, but when `previous` is the same chain (same full
// snapshot, its deltas a prefix of the new manifest's), starts from it and
// applies only the new deltas: the result shares every table part the
// deltas do not touch with *previous (copy-on-write per leaf, ServedTable),
// so a load costs O(rows in the new deltas), never a copy of the model.
// Falls back to a full load otherwise. Returns `previous` itself when LATEST
// still names its manifest. Never modifies *previous, so readers of it may
// keep using it.
StatusOr<std::shared_ptr<const LoadedExport>> LoadLatestExportIncremental(
    const std::string& dir, const std::shared_ptr<const LoadedExport>& previous);

}  // namespace freshet
