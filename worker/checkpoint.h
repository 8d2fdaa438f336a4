// Consistent global checkpoints: layout, manifest and atomic publication.
//
// A checkpoint root (`--checkpoint_dir`) holds
//   ckpt-<id>/                 one checkpoint (id: 1, 2, ... per root)
//     shard-<i>-of-<S>.rows    every server's rows with optimizer state and
//                              RowMeta (server/table_io.h; FNV-1a trailer)
//     dense.bin                the dense parameters (worker 0; FNV trailer)
//     job.pbtxt                the job
//     worker-<w>.position      streaming workers' read positions (if any)
//     MANIFEST                 written last: what the checkpoint is
//   CHECKPOINT_LATEST          the id of the newest complete checkpoint
// A checkpoint is complete iff its MANIFEST exists and every file it lists
// has the listed size and checksum trailer. MANIFEST and CHECKPOINT_LATEST
// are written to a temporary name, fsynced and renamed (and the directory
// fsynced), so a crash at any point leaves either the previous checkpoint
// as the latest or the new one complete; a ckpt-<id>/ without MANIFEST is
// debris and is never restored from.
//
// The protocol that makes the cut consistent (docs/CHECKPOINTS.md) runs in
// job_runner.cc; these are its file operations.
//
// Thread safety: free functions, no shared state; concurrent writers to one
// root are not supported (only worker 0 writes the manifest and pointer).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace freshet {

struct CheckpointFile {
  std::string name;       // relative to the checkpoint directory
  uint64_t bytes = 0;
  uint64_t checksum = 0;  // the file's last 8 bytes (its FNV-1a trailer); 0 for text files
};

struct CheckpointManifest {
  int64_t id = 0;
  int64_t step = 0;        // training steps done at the cut
  // 0: a full checkpoint. Otherwise incremental: its .rows files hold only
  // the rows changed since checkpoint `parent`, restored by loading the
  // chain full -> ... -> this one in order (later rows overwrite).
  int64_t parent = 0;
  int num_servers = 0;
  int num_workers = 0;
  int64_t unix_ms = 0;     // when the cut was taken
  std::vector<CheckpointFile> files;
  uint64_t TotalBytes() const;
};

// "<root>/ckpt-<id>".
std::string CheckpointDir(const std::string& root, int64_t id);

// The id in <root>/CHECKPOINT_LATEST; NotFound if there is none,
// DataLoss if it does not hold a positive integer.
StatusOr<int64_t> LatestCheckpointId(const std::string& root);

// Lists every regular file of `dir` except MANIFEST (sizes; the last 8 bytes
// of .rows and .bin files as checksums) into m->files, then writes
// <dir>/MANIFEST atomically (common/file_io.h: retried, then Internal naming
// the path and errno; a failed write leaves no MANIFEST, so the checkpoint
// stays incomplete and is never restored from). The manifest (format 2) ends
// with "checksum <hex>", the FNV-1a 64 of every byte before that line.
Status WriteManifest(const std::string& dir, CheckpointManifest* m);

// Parses <dir>/MANIFEST and checks that every listed file exists with its
// size and checksum trailer. NotFound without a MANIFEST (an incomplete
// checkpoint); DataLoss naming the file and field on any mismatch, a
// manifest whose own checksum line is missing or wrong included (format 1
// manifests, which have none, are still read).
StatusOr<CheckpointManifest> VerifyCheckpoint(const std::string& dir);

// Points <root>/CHECKPOINT_LATEST at `id` atomically, then deletes the
// checkpoints with ids <= id - keep (keep >= 1; 0: delete none), except
// those the kept ones need (their parent chains).
Status PublishCheckpoint(const std::string& root, int64_t id, int keep);

// What --restore_from names: a checkpoint root (restores its latest), a
// checkpoint directory (verified), or a plain saved model directory
// (dense.bin; no manifest). Returns the directory to load from.
StatusOr<std::string> ResolveRestoreDir(const std::string& path);

// Like ResolveRestoreDir, but returns the whole chain to load, oldest (a
// full checkpoint or plain model) first; the last holds the dense state.
// Every checkpoint of the chain is verified; DataLoss if a parent is gone.
StatusOr<std::vector<std::string>> ResolveRestoreChain(const std::string& path);

}  // namespace freshet
