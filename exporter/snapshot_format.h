// The two file formats of an export directory, each encoder beside its
// decoder: .snap files (full and delta snapshots) and manifest files. The
// directory around them (LATEST, file names, retention) is
// exporter/export_dir.h; loading a chain into a model is
// exporter/model_loader.h.
//
// .snap file layout (little-endian):
//   "FRSHSNAP" u32 format_version(2) u32 kind(0 full, 1 delta)
//   u64 model_version  i64 watermark  u8 has_dense
//   [u64 n, n f32]                                      dense, if has_dense
//   u32 num_tables, per table:
//     u32 name_len, name, u32 dim,
//     u64 upserts, upserts x { u64 key, dim f32 },
//     u64 deletions, deletions x u64 key
//   u64 checksum of every preceding byte: XXH64 (format 2, written) or
//       FNV-1a 64 (format 1, still read; otherwise the same layout)
// A manifest entry (proto::ExportFile.checksum) holds the checksum of the
// whole file in the same algorithm.
// A manifest file is the binary proto::ExportManifest, then "FRSHMSUM" and
// the u64 FNV-1a 64 of every byte before the hash.
// Both layouts are specified in docs/SNAPSHOT_FORMAT.md for other readers.
//
// Thread safety: every function is thread-safe (no shared state).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/file_io.h"
#include "common/proto/export.pb.h"
#include "common/status.h"

namespace freshet {

struct SnapshotTable {
  std::string name;
  int dim = 0;
  std::vector<uint64_t> keys;     // upserted rows
  std::vector<float> values;      // keys.size() * dim
  std::vector<uint64_t> deleted;  // keys removed since the previous file
  // More upserted rows, held elsewhere (the exporter's received EXPORT
  // responses, so a full snapshot is written without copying the model):
  // n keys at `keys`, n * dim values at `values`. The writer writes them
  // after keys/values, in order; the caller keeps them alive while the
  // Snapshot is used. Readers never fill them.
  struct RowSpan {
    const uint64_t* keys = nullptr;
    const float* values = nullptr;
    size_t n = 0;
  };
  std::vector<RowSpan> spans;
  // More upserted rows, produced while the file is written (the exporter's
  // compaction writes a model held in ServedTables without copying it):
  // generate(emit) calls emit(keys, values, n) (n * dim values, valid
  // during the call) for exactly generated_rows rows in all; the writer
  // writes them after the spans and fails (Internal, no file) on another
  // count. Readers never fill it.
  using RowEmitter = std::function<void(const uint64_t* keys, const float* values, size_t n)>;
  std::function<void(const RowEmitter&)> generate;
  size_t generated_rows = 0;
  // Upserted rows: keys.size() plus every span's n plus generated_rows.
  size_t num_rows() const {
    size_t n = keys.size() + (generate ? generated_rows : 0);
    for (const RowSpan& s : spans) n += s.n;
    return n;
  }
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

// ---- .snap files --------------------------------------------------------------

// Writes `snap` to `path` atomically (tmp, fsync, rename, fsync dir, less
// what `sync` leaves out: common/file_io.h, with bounded retries). Returns the
// file's size and checksum in *entry (name = basename of path).
// InvalidArgument if a table's values are not keys * dim, its dim is not in
// 1..4096, two tables share a name, or a full snapshot lists deletions;
// Internal (naming the path) if a system call fails.
Status WriteSnapshotFile(const Snapshot& snap, const std::string& path, proto::ExportFile* entry,
                         FileSync sync = FileSync::kFileAndDir);
// Reads and verifies a snapshot file in one streaming pass, every length
// bounded by the bytes that remain: DataLoss naming the file and the
// problem for a bad magic, truncation or checksum mismatch; NotFound if it
// is missing; Internal (naming the file and errno) if a read fails.
StatusOr<Snapshot> ReadSnapshotFile(const std::string& path);
// ReadSnapshotFile, also checking the file against its manifest entry: the
// file size (before parsing), the FNV-1a 64 of the whole file and the
// version it declares must match (DataLoss naming the file otherwise).
StatusOr<Snapshot> ReadSnapshotFileForEntry(const std::string& path,
                                            const proto::ExportFile& entry);

// Receives a snapshot's tables as StreamSnapshotFile parses them, in file
// order: BeginTable, then Rows in batches (file order, about 4 MiB each)
// until the table's upserts are all given, then Deletions once.
class SnapshotRowSink {
 public:
  virtual ~SnapshotRowSink() = default;
  virtual Status BeginTable(const std::string& name, int dim, uint64_t upserts) = 0;
  virtual Status Rows(const uint64_t* keys, const float* values, size_t n) = 0;
  virtual Status Deletions(const uint64_t* keys, size_t n) = 0;
};
// Parses `path` like ReadSnapshotFileForEntry (with `entry` non-null:
// checked against it too) but hands the tables' rows to `sink` instead of
// holding them: memory is the read buffer and one batch, whatever the
// file's size. *header gets the header and the dense params (tables left
// empty). The checksum is known only at the end: everything the sink got
// is unverified until this returns OK. A sink's error stops the parse and
// is returned with the path.
Status StreamSnapshotFile(const std::string& path, const proto::ExportFile* entry, Snapshot* header,
                          SnapshotRowSink* sink);

// The checksum of bytes [0, n) of `file` (the bytes of a .snap file, n <=
// file.size()) in the algorithm of the format version its header declares:
// XXH64 for format 2 and later or a header too short to say, FNV-1a 64 for
// format 1. n = file.size(): what a manifest entry holds; n = size - 8: what
// the trailer holds.
uint64_t SnapshotChecksum(std::string_view file, size_t n);

// ---- manifest files -----------------------------------------------------------

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

}  // namespace freshet
