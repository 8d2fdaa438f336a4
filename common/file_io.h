// Durable, atomic file writes: the one seam every checkpoint, model and
// export file goes through, with bounded retries and fault injection; and
// the matching reads (a sequential reader, a bounded whole-file read, a
// directory listing) with errors in the same form.
//
// A file is written to "<path>.tmp" (same directory, so the rename is
// atomic), fsynced, closed, renamed over <path>, and the directory fsynced
// so the rename itself is durable. On any failure the temporary file is
// removed and <path> is left exactly as it was: a reader sees the previous
// complete file or the new complete file, never a mix.
//
// Errors (open, write, fsync, close, rename; ENOSPC, EDQUOT, EACCES, EROFS,
// EIO, ...) are Internal statuses naming the path, the failed call and the
// errno text, e.g.
//   "ckpt-3/shard-0-of-2.rows.tmp: write failed: No space left on device
//    (ENOSPC) [attempt 4 of 4]".
// Short writes are continued (write(2) may write fewer bytes than asked).
//
// WriteFileAtomic* retry a failed attempt from the start (a new temporary
// file) with exponential back-off, FileWriteRetryPolicy::attempts times in
// all; each retry is a LOG(WARNING) and counted, a final failure is a
// LOG(ERROR) and counted (FileWriteCounters, exported as metrics by
// RegisterFileWriteMetrics).
//
// Fault injection (tests). FileFaultInjector::Global() fails chosen system
// calls on paths containing a substring with a chosen errno, a given number
// of times. It is also set from the environment variable
//   FRESHET_INJECT_WRITE_FAULT=<path-substring>:<errno-name>:<count>[:<op>]
// read once, on first use (multi-process tests set it for one rank's
// command line). <count> -1 fails every time; <op> is open, write, fsync,
// rename or short (write(2) writes half of what it is asked, which the
// writer must continue); without it ENOSPC, EDQUOT, EIO and EFBIG fail
// write(2), every other errno fails open(2).
//
// Thread safety: AtomicFileWriter is used by one thread at a time; the free
// functions, the injector, the counters and the retry policy are
// thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/checksum.h"
#include "common/mutex.h"
#include "common/status.h"

namespace freshet {

class MetricsRegistry;

// The system calls a fault can be injected into.
enum class FileOp { kOpen, kWrite, kFsync, kRename, kShortWrite };

// Process-global fault injector for the writers in this file.
// Thread safety: every method is thread-safe.
class FileFaultInjector {
 public:
  // The process-wide instance (on first use it parses
  // FRESHET_INJECT_WRITE_FAULT; a malformed value is a LOG(ERROR) and
  // ignored).
  static FileFaultInjector& Global();

  // Fails the next `count` calls of `op` on paths containing
  // `path_substring` with `err` (count -1: every call). Replaces any fault
  // set before.
  void Set(std::string path_substring, int err, int count, FileOp op) EXCLUDES(mu_);
  // Parses "<path-substring>:<errno-name>:<count>[:<op>]" and Set()s it.
  // InvalidArgument naming the field on a malformed spec.
  Status SetFromSpec(const std::string& spec) EXCLUDES(mu_);
  void Clear() EXCLUDES(mu_);

  // Called by the writers before `op` on `path`: the errno to fail with, or
  // 0 to go ahead. kWrite calls also match a kShortWrite fault, for which
  // *short_write is set to true and 0 returned (the caller writes half).
  int Check(const std::string& path, FileOp op, bool* short_write = nullptr) EXCLUDES(mu_);
  // Faults injected so far.
  int64_t injected() const EXCLUDES(mu_);

 private:
  FileFaultInjector() = default;
  mutable Mutex mu_;
  std::string substring_ GUARDED_BY(mu_);  // empty: no fault
  int err_ GUARDED_BY(mu_) = 0;
  int remaining_ GUARDED_BY(mu_) = 0;  // -1: forever
  FileOp op_ GUARDED_BY(mu_) = FileOp::kWrite;
  int64_t injected_ GUARDED_BY(mu_) = 0;
};

// errno <-> "ENOSPC". ErrnoFromName: 0 for an unknown name.
int ErrnoFromName(const std::string& name);
std::string ErrnoName(int err);

// How WriteFileAtomic* retry a failed write.
struct FileWriteRetryPolicy {
  int attempts = 4;                              // in all, >= 1
  std::chrono::milliseconds first_backoff{100};  // doubled after every retry
  std::chrono::milliseconds max_backoff{2000};
};
// The process-wide policy (tests shorten the back-off).
FileWriteRetryPolicy GetFileWriteRetryPolicy();
void SetFileWriteRetryPolicy(const FileWriteRetryPolicy& policy);

// Process-wide counts since start.
struct FileWriteCounters {
  int64_t files_written = 0;     // committed files
  int64_t retries = 0;           // failed attempts that were retried
  int64_t failures = 0;          // writes that failed after every attempt
  int64_t bytes_written = 0;     // bytes of committed files
  int64_t fsyncs = 0;            // fsync calls, files' and directories' (SyncDirectory)
  int64_t writeback_chunks = 0;  // AtomicFileWriter::kWritebackBytes chunks started early
};
FileWriteCounters GetFileWriteCounters();
// Nanoseconds the calling thread has spent in fsync (files' and
// directories') of atomic file writes since it started: a caller times its
// own syncs apart from other threads' (the exporter's publishes beside its
// compaction thread).
int64_t ThisThreadFsyncNanos();
// Adds the counters to `registry` as file_writes, file_write_retries,
// file_write_failures, file_write_bytes, file_fsyncs and
// file_writeback_chunks (callback counters).
void RegisterFileWriteMetrics(MetricsRegistry* registry);

// One atomic file write (no retries). Append buffers (4 MiB) and keeps the
// FNV-1a 64 (common/checksum.h) of everything appended; errors are sticky
// and reported by Commit(). Destroying an uncommitted writer removes the
// temporary file.
// Writeback as it goes (Linux): every kWritebackBytes written start the
// kernel writing them out (sync_file_range) and wait for the chunk before,
// so a large file (a 4 GB full snapshot) never holds more than two chunks
// of dirty pages. Without it the page cache collects gigabytes, and every
// small fsync meanwhile (a delta, a manifest: a journal commit that must
// first write the dirty data of the blocks it allocated) waits behind them
// for up to a second; and Commit's fsync writes everything at once.
// Thread safety: one thread at a time.
// The checksum an AtomicFileWriter keeps of what it writes (common/checksum.h).
enum class FileHash { kFnv1a64, kXxh64 };
// What committing a file makes durable before it returns:
//   kFileAndDir  the file's data (fsync) and its rename (the directory's
//                fsync);
//   kFile        the data only: the rename is visible at once but survives a
//                crash only after the directory's next fsync (SyncDirectory,
//                or another file committed in the same directory with
//                kFileAndDir), which must come before anything that names
//                the file is made durable. It saves one fsync (one journal
//                commit) per file when several files are published together
//                (exporter/export_dir.cc);
//   kNone        nothing: the rename is visible at once, and a killed process
//                never leaves a torn file (the page cache holds it), but the
//                file survives a power loss or kernel crash only once
//                SyncFile(path) and SyncDirectory have run. For writers that
//                make their files durable off their critical path (the
//                export directory's ASYNC durability, exporter/export_dir.h).
enum class FileSync { kFileAndDir, kFile, kNone };

class AtomicFileWriter {
 public:
  // Creates "<path>.tmp" (truncating a leftover one). Internal naming the
  // path and errno if it cannot. `hash` chooses what hash() computes.
  static StatusOr<std::unique_ptr<AtomicFileWriter>> Create(const std::string& path,
                                                            FileHash hash = FileHash::kFnv1a64);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void Append(const void* p, size_t n);
  void Append(std::string_view s) { Append(s.data(), s.size()); }
  template <typename T>
  void AppendValue(T v) {
    Append(&v, sizeof(v));
  }
  // The checksum (FNV-1a 64 or XXH64, as created) and count of every byte
  // appended so far.
  uint64_t hash() const { return kind_ == FileHash::kXxh64 ? xxh_.digest() : hash_; }
  uint64_t bytes() const { return bytes_; }
  // The first error so far (OK if none).
  const Status& status() const { return status_; }

  // Flushes, fsyncs (unless kNone), closes, renames over the final path and
  // (kFileAndDir) fsyncs the directory. On failure the temporary file is removed and the final
  // path is untouched (unless only the directory fsync failed: then the new
  // file is in place but its rename may not survive a crash). Call once.
  Status Commit(FileSync sync = FileSync::kFileAndDir);
  const std::string& path() const { return path_; }

  static constexpr uint64_t kWritebackBytes = 8 << 20;

 private:
  AtomicFileWriter(std::string path, int fd, FileHash kind);
  void Flush();
  void WriteOut(const char* p, size_t n);
  void StartWriteback();
  void Fail(const std::string& file, const char* call, int err);

  const std::string path_;
  const std::string tmp_;
  int fd_;
  bool committed_ = false;
  std::vector<char> buf_;
  size_t pos_ = 0;
  const FileHash kind_;
  uint64_t hash_;  // FNV-1a 64 (kFnv1a64)
  Xxh64 xxh_;      // kXxh64
  uint64_t bytes_ = 0;
  uint64_t written_ = 0;         // bytes write(2) took so far
  uint64_t writeback_from_ = 0;  // start of the bytes not yet under writeback
  uint64_t waiting_from_ = 0;    // the chunk under writeback: [waiting_from_, writeback_from_)
  Status status_;
};

// Writes `path` atomically with retries: `fill` writes the content into a
// fresh AtomicFileWriter on every attempt (it must write the same bytes
// each time) and may return an error of its own, which is not retried.
// *bytes and *hash (may be null) receive the committed file's size and
// checksum (`kind`: FNV-1a 64 by default). `sync` as for
// AtomicFileWriter::Commit.
Status WriteFileAtomicWith(const std::string& path,
                           const std::function<Status(AtomicFileWriter*)>& fill,
                           uint64_t* bytes = nullptr, uint64_t* hash = nullptr,
                           FileHash kind = FileHash::kFnv1a64,
                           FileSync sync = FileSync::kFileAndDir);
// The same for content already in memory.
Status WriteFileAtomic(const std::string& path, std::string_view data,
                       FileSync sync = FileSync::kFileAndDir);

// fsyncs a directory (after a rename or unlink in it). Internal naming it.
Status SyncDirectory(const std::string& dir);
// fsyncs a file by its path (a file committed with FileSync::kNone; its
// rename also needs SyncDirectory). NotFound if it is gone (deleted or
// renamed over since), Internal naming it otherwise. Counted and timed like
// the writers' fsyncs.
Status SyncFile(const std::string& path);

// ---- reading ------------------------------------------------------------------

// Reads one file front to back into caller buffers (no buffering of its
// own, so a caller sizes its own chunks). Errors name the file like the
// writers': NotFound "<path>: not found" if it does not exist, Internal
// "<path>: <call> failed: <strerror> (<ENAME>)" for any other failed call.
// Thread safety: one thread at a time.
class SequentialFileReader {
 public:
  static StatusOr<std::unique_ptr<SequentialFileReader>> Open(const std::string& path);
  ~SequentialFileReader();
  SequentialFileReader(const SequentialFileReader&) = delete;
  SequentialFileReader& operator=(const SequentialFileReader&) = delete;

  // The file's size when it was opened (fstat); the file may change after.
  uint64_t size() const { return size_; }
  // Reads up to `n` bytes into `dst`, continuing short reads and EINTR:
  // fewer than `n` only at the end of the file (0 there).
  StatusOr<size_t> Read(void* dst, size_t n);
  const std::string& path() const { return path_; }

 private:
  SequentialFileReader(std::string path, int fd, uint64_t size);
  const std::string path_;
  int fd_;
  uint64_t size_;
};

// Reads the whole file at `path`, which must hold at most `max_bytes`:
// FailedPrecondition "<path>: larger than <max_bytes> bytes" otherwise;
// NotFound / Internal as SequentialFileReader.
StatusOr<std::string> ReadFileToString(const std::string& path, size_t max_bytes);

// The names in `dir` (without "." and ".."), in no particular order.
// Internal naming the directory and errno if it cannot be listed.
StatusOr<std::vector<std::string>> ListDirectory(const std::string& dir);

}  // namespace freshet
