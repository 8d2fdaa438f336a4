// Consistent global checkpoints: layout, manifest and atomic publication.
//
// A checkpoint root (`--checkpoint_dir`) holds
//   ckpt-<id>/                 one checkpoint (id: 1, 2, ... per root)
//     shard-<i>-of-<S>.rows    every server's rows with optimizer state and
//                              RowMeta (server/table_io.h; FNV-1a trailer)
//     dense.bin                the dense parameters (worker 0; FNV trailer)
//     job.pbtxt                the job
//     worker-<w>.input         file jobs: the input each worker had trained
//                              at the cut (InputCut; FNV-1a trailer)
//     worker-<w>.position      streaming workers' read positions at the cut
//     worker-<w>.join          streaming workers' label-join state at the cut
//                              (worker/stream/join_state.h; FNV-1a trailer)
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
// worker/internal/checkpoint_driver.cc; these are its file operations.
//
// Thread safety: free functions, no shared state; concurrent writers to one
// root are not supported (only worker 0 writes the manifest and pointer).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "worker/data/input_intervals.h"

namespace freshet {

struct CheckpointFile {
  std::string name;  // relative to the checkpoint directory
  uint64_t bytes = 0;
  uint64_t checksum = 0;  // the file's last 8 bytes (its FNV-1a trailer); 0 for text files
};

struct CheckpointManifest {
  int64_t id = 0;
  int64_t step = 0;  // training steps done at the cut
  // 0: a full checkpoint. Otherwise incremental: its .rows files hold only
  // the rows changed since checkpoint `parent`, restored by loading the
  // chain full -> ... -> this one in order (later rows overwrite).
  int64_t parent = 0;
  int num_servers = 0;
  int num_workers = 0;
  int64_t unix_ms = 0;  // when the cut was taken
  std::vector<CheckpointFile> files;
  uint64_t TotalBytes() const;
};

// "<root>/ckpt-<id>".
std::string CheckpointDir(const std::string& root, int64_t id);

// The id in <root>/CHECKPOINT_LATEST; NotFound if there is none,
// DataLoss if it does not hold a positive integer.
StatusOr<int64_t> LatestCheckpointId(const std::string& root);

// Lists every regular file of `dir` except MANIFEST (sizes; the last 8 bytes
// of .rows, .bin, .input and .join files as checksums) into m->files, then writes
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

// The id of the newest complete checkpoint under `root`: the highest
// ckpt-<id>/ whose manifest and parent chain verify (a checkpoint whose
// MANIFEST was written but whose CHECKPOINT_LATEST update was lost by a
// crash counts; directories without MANIFEST are skipped). NotFound if
// there is none (or no root).
StatusOr<int64_t> NewestCompleteCheckpoint(const std::string& root);

// The id a new run's first checkpoint under `root` takes: one past both
// CHECKPOINT_LATEST and every ckpt-<id>/ present (complete or debris), so
// a new checkpoint never writes into an old directory. 1 for a new root.
// DataLoss if CHECKPOINT_LATEST is damaged.
StatusOr<int64_t> NextCheckpointId(const std::string& root);

// What --restore_from names: a checkpoint root (restores its latest), a
// checkpoint directory (verified), or a plain saved model directory
// (dense.bin; no manifest). Returns the directory to load from.
StatusOr<std::string> ResolveRestoreDir(const std::string& path);

// Like ResolveRestoreDir, but returns the whole chain to load, oldest (a
// full checkpoint or plain model) first; the last holds the dense state.
// Every checkpoint of the chain is verified; DataLoss if a parent is gone.
StatusOr<std::vector<std::string>> ResolveRestoreChain(const std::string& path);

// Publishing a checkpoint whose table files are still being written by the
// servers in the background (docs/CHECKPOINTS.md "Pause").
struct PendingCheckpoint {
  std::string root;             // the checkpoint root (CHECKPOINT_LATEST)
  std::string dir;              // CheckpointDir(root, manifest.id)
  int keep = 0;                 // PublishCheckpoint's keep
  CheckpointManifest manifest;  // id, step, parent, servers, workers, unix_ms
  double pause_ms = 0;          // the training pause of its cut
  int64_t copied_bytes = 0;     // rows the servers copied at the cut
  // Blocks until every server's file is written (with its own deadline);
  // null: nothing to wait for.
  std::function<Status()> wait_written;
  bool print = false;  // print one line once published
};

struct PublishedCheckpoint {
  Status status;                // OK: MANIFEST and CHECKPOINT_LATEST written
  CheckpointManifest manifest;  // with its files, when OK
  double pause_ms = 0;
  double write_ms = 0;  // from Start() to published
  int64_t copied_bytes = 0;
};

// Publishes one checkpoint at a time on a background thread: waits for its
// files (wait_written), then writes MANIFEST (listing the files) and
// CHECKPOINT_LATEST and prunes (PublishCheckpoint). A failure leaves the
// checkpoint without MANIFEST (never restored) and is returned by Finish().
//
// Thread safety: not thread-safe; Start/Finish/in_flight from one thread
// (worker 0's training thread). The destructor waits for the one in flight.
class CheckpointPublisher {
 public:
  CheckpointPublisher() = default;
  CheckpointPublisher(const CheckpointPublisher&) = delete;
  CheckpointPublisher& operator=(const CheckpointPublisher&) = delete;
  ~CheckpointPublisher();

  // REQUIRES: !in_flight() (call Finish first).
  void Start(PendingCheckpoint p);
  bool in_flight() const { return thread_.joinable(); }
  // Waits for the checkpoint in flight and returns how it went; nullopt if
  // none is in flight.
  std::optional<PublishedCheckpoint> Finish();

 private:
  std::thread thread_;
  PublishedCheckpoint result_;  // written by thread_, read after join
};
// One input file of a job as an input cut names it.
struct InputFileId {
  std::string path;    // as the job names it
  uint64_t bytes = 0;  // its size when the job started
  bool operator==(const InputFileId& o) const { return path == o.path && bytes == o.bytes; }
};

// The job's training files sorted by path, with their sizes: the numbering
// of InputInterval::file, InputCut and the trained-input ledger. NotFound
// naming a missing file.
StatusOr<std::vector<InputFileId>> DescribeInputFiles(const std::vector<std::string>& files);

// The input a file job had trained at a checkpoint's cut: for the cut's
// epoch, the consumed byte intervals per input file (whole lines, merged;
// worker/data/input_intervals.h). Each worker writes its own
// (worker-<w>.input); worker 0's also holds what a restore it continues
// from had inherited, so the union over a checkpoint's workers is the
// epoch's whole trained input.
struct InputCut {
  int worker = 0, num_workers = 0;
  int64_t step = 0;
  int epoch = 0;                   // 0-based
  std::vector<InputFileId> files;  // sorted by path; file indexes point here
  ConsumedSet consumed;            // of `epoch`
};

// "worker-<w>.input".
std::string InputCutFileName(int worker);

// Writes `cut` to `path` (text, then the FNV-1a checksum of the text as an
// 8-byte trailer; temporary file, fsync, rename). Internal on I/O errors.
Status WriteInputCut(const std::string& path, const InputCut& cut);

// Reads a file WriteInputCut wrote. DataLoss naming the file (and line and
// field) if it is truncated, corrupt or malformed; NotFound without it.
StatusOr<InputCut> ReadInputCut(const std::string& path);

// Reads worker-0..num_workers-1.input of checkpoint `dir` and returns their
// union (worker -1). FailedPrecondition naming the checkpoint, file and
// what differs when the job's input `files` are not the ones the checkpoint
// was taken over (another file list, or a file whose size changed: byte
// offsets would be meaningless); DataLoss if the workers' cuts disagree on
// step or epoch or one is damaged; NotFound if the checkpoint has no input
// cuts at all (a streaming job, or one written before they existed).
StatusOr<InputCut> LoadInputCut(const std::string& dir, int num_workers,
                                const std::vector<InputFileId>& files);

}  // namespace freshet
