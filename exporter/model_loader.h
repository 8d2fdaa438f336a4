// The serving side of an export directory (exporter/export_dir.h): reads
// the chain LATEST names (a full snapshot and its deltas,
// exporter/snapshot_format.h) into an immutable in-memory model.
//
// Thread safety: the functions are thread-safe; a LoadedExport is never
// changed after a loader returns it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/proto/export.pb.h"
#include "common/status.h"
#include "exporter/served_table.h"

namespace freshet {

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
  // Built from a previous version by applying only new deltas
  // (LoadLatestExportIncremental), not from a full snapshot.
  bool incremental = false;
  // Bytes of what scoring needs: every table's keys and rows (16-bit rows
  // for fp16/bf16 tables) and the dense params.
  int64_t served_bytes() const {
    int64_t bytes = static_cast<int64_t>(dense.size() * sizeof(float));
    for (const auto& [name, t] : tables) bytes += t.payload_bytes();
    return bytes;
  }
};

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
// Also without a common full: when `previous` is on the same lineage
// (manifest.lineage) at a version >= the new manifest's full (a compaction
// of that lineage, exporter/compactor.h) and every delta of the new
// manifest up to previous's version is one previous applied, only the
// deltas after previous's version are applied (the new full is not read).
StatusOr<std::shared_ptr<const LoadedExport>> LoadLatestExportIncremental(
    const std::string& dir, const std::shared_ptr<const LoadedExport>& previous);

// Loads the chain manifest `m` (of `dir`) names, as LoadLatestExport does
// for LATEST's manifest, without reading LATEST (the exporter's compaction:
// the chain it published last, whatever LATEST says meanwhile). NotFound
// if one of its files is gone (retired), DataLoss for a corrupt one.
StatusOr<std::shared_ptr<const LoadedExport>> LoadExportChain(const std::string& dir,
                                                              const proto::ExportManifest& m);

}  // namespace freshet
