// Compaction: a full snapshot made from an export chain itself, the newest
// full with its deltas applied (exactly the model a reader of the chain
// serves), for export.full_source COMPACT. The servers are not asked for
// any row, and it runs beside the exporter's deltas (ExporterNode starts it
// on a thread of its own, at nice 10): a periodic full costs O(model) of
// the exporter's I/O and memory, never a pause of the deltas.
//
//   ExportWriter::BeginCompaction   (exporter's thread) which chain, which file
//   CompactChain                    (compaction thread) load it, write the full
//   ExportWriter::AdoptCompactedFull (exporter's thread) the next delta's
//                                   manifest starts from it
//
// The compacted full at version V holds the model at V, so the manifest that
// adopts it keeps the lineage and lists the chain's deltas after V; readers
// at a version >= V go on applying deltas (exporter/model_loader.h).
// Rows a server deleted but whose deletion never reached a delta (a
// deletion log dropped at its bound: TableStats::deletions_dropped) stay
// in a compacted full (as in every serving reader of the chain); a full
// collected from the servers (an exporter's first, or every one with
// full_source SERVERS) drops them.
//
// Memory: the chain's model (ServedTable, about the served bytes: 16-bit
// tables stay 16-bit) while the file is written from it; no copy of the
// rows beyond one 4 MiB write block. docs/SNAPSHOT_FORMAT.md "Compaction".
//
// Thread safety: CompactChain is thread-safe (it writes only `file_name`).
#pragma once

#include <cstdint>
#include <string>

#include "common/proto/export.pb.h"
#include "common/status.h"

namespace freshet {

struct CompactionStats {
  int64_t rows = 0;     // rows written
  int64_t bytes = 0;    // file size
  double load_ms = 0;   // loading the chain
  double write_ms = 0;  // writing the file (with fsync)
};

// Loads the chain `chain` (a manifest of `dir`; LoadExportChain) and writes
// it as the full snapshot `dir`/`file_name` at chain.version(), with the
// chain's watermark and dense parameters. Returns the file's manifest
// entry. Errors: the chain's (NotFound if a file was retired meanwhile,
// DataLoss if one is corrupt) or the write's (Internal naming the path).
StatusOr<proto::ExportFile> CompactChain(const std::string& dir, const proto::ExportManifest& chain,
                                         const std::string& file_name,
                                         CompactionStats* stats = nullptr);

}  // namespace freshet
