#include "common/file_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <glog/logging.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>

#include "common/checksum.h"
#include "common/metrics_registry.h"

namespace freshet {
namespace {

constexpr size_t kBufferBytes = 4 << 20;  // bytes per write(2)
constexpr char kTmpSuffix[] = ".tmp";

struct ErrnoEntry {
  int err;
  const char* name;
};
constexpr ErrnoEntry kErrnoNames[] = {
    {ENOSPC, "ENOSPC"}, {EDQUOT, "EDQUOT"},   {EACCES, "EACCES"}, {EROFS, "EROFS"},
    {EIO, "EIO"},       {EFBIG, "EFBIG"},     {EPERM, "EPERM"},   {ENOENT, "ENOENT"},
    {EMFILE, "EMFILE"}, {EINTR, "EINTR"},     {EAGAIN, "EAGAIN"}, {EEXIST, "EEXIST"},
    {EISDIR, "EISDIR"}, {ENOTDIR, "ENOTDIR"}, {EXDEV, "EXDEV"},   {ENAMETOOLONG, "ENAMETOOLONG"},
};

std::atomic<int64_t> g_files_written{0}, g_retries{0}, g_failures{0}, g_bytes_written{0},
    g_fsyncs{0}, g_writeback_chunks{0};
thread_local int64_t t_fsync_ns = 0;

// fsync(fd), its time added to the calling thread's t_fsync_ns.
int TimedFsync(int fd) {
  g_fsyncs.fetch_add(1, std::memory_order_relaxed);
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = ::fsync(fd);
  const int err = errno;
  t_fsync_ns +=
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  errno = err;
  return rc;
}

Mutex g_policy_mu;
FileWriteRetryPolicy g_policy GUARDED_BY(g_policy_mu);

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// "<file>: <call> failed: <strerror> (<ENAME>)".
Status SysError(const std::string& file, const char* call, int err) {
  return Internal(file + ": " + call + " failed: " + std::strerror(err) + " (" + ErrnoName(err) +
                  ")");
}

}  // namespace

// ---- fault injection ---------------------------------------------------------

FileFaultInjector& FileFaultInjector::Global() {
  static FileFaultInjector* injector = [] {
    auto* f = new FileFaultInjector();
    if (const char* spec = std::getenv("FRESHET_INJECT_WRITE_FAULT"); spec != nullptr && *spec) {
      Status st = f->SetFromSpec(spec);
      if (!st.ok()) {
        LOG(ERROR) << "FRESHET_INJECT_WRITE_FAULT ignored: " << st;
      } else {
        LOG(WARNING) << "FRESHET_INJECT_WRITE_FAULT=" << spec << ": injecting write faults";
      }
    }
    return f;
  }();
  return *injector;
}

void FileFaultInjector::Set(std::string path_substring, int err, int count, FileOp op) {
  MutexLock l(&mu_);
  substring_ = std::move(path_substring);
  err_ = err;
  remaining_ = count;
  op_ = op;
}

Status FileFaultInjector::SetFromSpec(const std::string& spec) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t colon = spec.find(':', start);
    parts.push_back(
        spec.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  const std::string what = "write fault spec '" + spec + "'";
  if (parts.size() < 3 || parts.size() > 4) {
    return InvalidArgument(what + ": expected <path-substring>:<errno-name>:<count>[:<op>]");
  }
  if (parts[0].empty()) return InvalidArgument(what + ": empty path substring");
  const int err = ErrnoFromName(parts[1]);
  if (err == 0) return InvalidArgument(what + ": unknown errno name '" + parts[1] + "'");
  char* end = nullptr;
  const long count = std::strtol(parts[2].c_str(), &end, 10);
  if (parts[2].empty() || *end != '\0' || count < -1 || count == 0 || count > 1000000000) {
    return InvalidArgument(what + ": count must be -1 or a positive integer, got '" + parts[2] +
                           "'");
  }
  FileOp op;
  if (parts.size() == 4) {
    const std::string& o = parts[3];
    if (o == "open")
      op = FileOp::kOpen;
    else if (o == "write")
      op = FileOp::kWrite;
    else if (o == "fsync")
      op = FileOp::kFsync;
    else if (o == "rename")
      op = FileOp::kRename;
    else if (o == "short")
      op = FileOp::kShortWrite;
    else
      return InvalidArgument(what + ": op must be open, write, fsync, rename or short, got '" + o +
                             "'");
  } else {
    op = (err == ENOSPC || err == EDQUOT || err == EIO || err == EFBIG) ? FileOp::kWrite
                                                                        : FileOp::kOpen;
  }
  Set(parts[0], err, static_cast<int>(count), op);
  return Status::OK();
}

void FileFaultInjector::Clear() {
  MutexLock l(&mu_);
  substring_.clear();
  remaining_ = 0;
}

int FileFaultInjector::Check(const std::string& path, FileOp op, bool* short_write) {
  MutexLock l(&mu_);
  if (substring_.empty() || remaining_ == 0) return 0;
  const bool match_op = op_ == op || (op == FileOp::kWrite && op_ == FileOp::kShortWrite);
  if (!match_op || path.find(substring_) == std::string::npos) return 0;
  if (remaining_ > 0) --remaining_;
  ++injected_;
  if (op_ == FileOp::kShortWrite) {
    if (short_write != nullptr) *short_write = true;
    return 0;
  }
  return err_;
}

int64_t FileFaultInjector::injected() const {
  MutexLock l(&mu_);
  return injected_;
}

int ErrnoFromName(const std::string& name) {
  for (const auto& e : kErrnoNames) {
    if (name == e.name) return e.err;
  }
  return 0;
}

std::string ErrnoName(int err) {
  for (const auto& e : kErrnoNames) {
    if (e.err == err) return e.name;
  }
  return "errno " + std::to_string(err);
}

// ---- policy and counters -----------------------------------------------------

FileWriteRetryPolicy GetFileWriteRetryPolicy() {
  MutexLock l(&g_policy_mu);
  return g_policy;
}

void SetFileWriteRetryPolicy(const FileWriteRetryPolicy& policy) {
  CHECK_GE(policy.attempts, 1) << "FileWriteRetryPolicy::attempts";
  MutexLock l(&g_policy_mu);
  g_policy = policy;
}

FileWriteCounters GetFileWriteCounters() {
  FileWriteCounters c;
  c.files_written = g_files_written.load(std::memory_order_relaxed);
  c.retries = g_retries.load(std::memory_order_relaxed);
  c.failures = g_failures.load(std::memory_order_relaxed);
  c.bytes_written = g_bytes_written.load(std::memory_order_relaxed);
  c.fsyncs = g_fsyncs.load(std::memory_order_relaxed);
  c.writeback_chunks = g_writeback_chunks.load(std::memory_order_relaxed);
  return c;
}

int64_t ThisThreadFsyncNanos() { return t_fsync_ns; }

void RegisterFileWriteMetrics(MetricsRegistry* registry) {
  registry->AddCallback("file_writes", "Files written atomically (checkpoints, models, exports).",
                        true,
                        [] { return static_cast<double>(GetFileWriteCounters().files_written); });
  registry->AddCallback("file_write_retries",
                        "Failed file write attempts that were retried (disk full, I/O errors).",
                        true, [] { return static_cast<double>(GetFileWriteCounters().retries); });
  registry->AddCallback("file_write_failures",
                        "File writes that failed after every retry (the file was not replaced).",
                        true, [] { return static_cast<double>(GetFileWriteCounters().failures); });
  registry->AddCallback("file_write_bytes", "Bytes of files written atomically.", true,
                        [] { return static_cast<double>(GetFileWriteCounters().bytes_written); });
  registry->AddCallback(
      "file_fsyncs", "fsync calls of atomic file writes, files and directories (journal commits).",
      true, [] { return static_cast<double>(GetFileWriteCounters().fsyncs); });
  registry->AddCallback(
      "file_writeback_chunks",
      "8 MiB chunks of large atomic file writes sent to disk as written (sync_file_range).", true,
      [] { return static_cast<double>(GetFileWriteCounters().writeback_chunks); });
}

// ---- AtomicFileWriter --------------------------------------------------------

AtomicFileWriter::AtomicFileWriter(std::string path, int fd, FileHash kind)
    : path_(std::move(path)), tmp_(path_ + kTmpSuffix), fd_(fd), kind_(kind), hash_(kFnv1aOffset) {
  buf_.resize(kBufferBytes);
}

StatusOr<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Create(const std::string& path,
                                                                     FileHash hash) {
  const std::string tmp = path + kTmpSuffix;
  if (const int err = FileFaultInjector::Global().Check(tmp, FileOp::kOpen)) {
    return SysError(tmp, "open", err);
  }
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return SysError(tmp, "open", errno);
  return std::unique_ptr<AtomicFileWriter>(new AtomicFileWriter(path, fd, hash));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (committed_) return;
  if (fd_ >= 0) ::close(fd_);
  ::unlink(tmp_.c_str());
}

void AtomicFileWriter::Fail(const std::string& file, const char* call, int err) {
  if (status_.ok()) status_ = SysError(file, call, err);
}

void AtomicFileWriter::WriteOut(const char* p, size_t n) {
  while (n > 0 && status_.ok()) {
    bool short_write = false;
    if (const int err = FileFaultInjector::Global().Check(tmp_, FileOp::kWrite, &short_write)) {
      Fail(tmp_, "write", err);
      return;
    }
    const size_t ask = short_write ? std::max<size_t>(1, n / 2) : n;
    const ssize_t w = ::write(fd_, p, ask);
    if (w < 0) {
      if (errno == EINTR) continue;
      Fail(tmp_, "write", errno);
      return;
    }
    if (w == 0) {  // no progress and no errno: treat as a full device
      Fail(tmp_, "write", ENOSPC);
      return;
    }
    p += w;
    n -= static_cast<size_t>(w);
    written_ += static_cast<uint64_t>(w);
    if (written_ - writeback_from_ >= kWritebackBytes) StartWriteback();
  }
}

void AtomicFileWriter::StartWriteback() {
#ifdef __linux__
  // Advisory: an error here (EIO) comes back from Commit's fsync, which
  // reports it with the path.
  if (writeback_from_ > waiting_from_) {
    ::sync_file_range(
        fd_, static_cast<off_t>(waiting_from_), static_cast<off_t>(writeback_from_ - waiting_from_),
        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
  }
  ::sync_file_range(fd_, static_cast<off_t>(writeback_from_),
                    static_cast<off_t>(written_ - writeback_from_), SYNC_FILE_RANGE_WRITE);
  g_writeback_chunks.fetch_add(1, std::memory_order_relaxed);
#endif
  waiting_from_ = writeback_from_;
  writeback_from_ = written_;
}

void AtomicFileWriter::Flush() {
  if (pos_ > 0) WriteOut(buf_.data(), pos_);
  pos_ = 0;
}

void AtomicFileWriter::Append(const void* p, size_t n) {
  if (n == 0) return;  // p may be null (an empty vector's data())
  if (kind_ == FileHash::kXxh64) {
    xxh_.Update(p, n);
  } else {
    hash_ = Fnv1aUpdate(hash_, p, n);
  }
  bytes_ += n;
  if (!status_.ok()) return;
  if (n > buf_.size() - pos_) {
    Flush();
    if (n >= buf_.size()) {  // larger than the buffer: straight through
      WriteOut(static_cast<const char*>(p), n);
      return;
    }
  }
  std::memcpy(buf_.data() + pos_, p, n);
  pos_ += n;
}

Status AtomicFileWriter::Commit(FileSync sync) {
  CHECK(!committed_ && fd_ >= 0) << path_ << ": Commit() called twice";
  Flush();
  if (status_.ok() && sync != FileSync::kNone) {
    int err = FileFaultInjector::Global().Check(tmp_, FileOp::kFsync);
    if (err == 0 && TimedFsync(fd_) != 0) err = errno;
    if (err != 0) Fail(tmp_, "fsync", err);
  }
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) Fail(tmp_, "close", errno);
  if (status_.ok()) {
    int err = FileFaultInjector::Global().Check(path_, FileOp::kRename);
    if (err == 0 && ::rename(tmp_.c_str(), path_.c_str()) != 0) err = errno;
    if (err != 0) Fail(path_, "rename", err);
  }
  if (!status_.ok()) {
    ::unlink(tmp_.c_str());
    return status_;
  }
  committed_ = true;
  if (sync != FileSync::kFileAndDir) return Status::OK();
  return SyncDirectory(DirOf(path_));
}

Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return SysError(dir, "open (directory fsync)", errno);
  const int rc = TimedFsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return SysError(dir, "fsync (directory)", err);
  return Status::OK();
}

Status SyncFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return NotFound(path + ": gone before its fsync");
    return SysError(path, "open (fsync)", err);
  }
  int err = FileFaultInjector::Global().Check(path, FileOp::kFsync);
  if (err == 0 && TimedFsync(fd) != 0) err = errno;
  ::close(fd);
  if (err != 0) return SysError(path, "fsync", err);
  return Status::OK();
}

// ---- retrying writes ---------------------------------------------------------

Status WriteFileAtomicWith(const std::string& path,
                           const std::function<Status(AtomicFileWriter*)>& fill, uint64_t* bytes,
                           uint64_t* hash, FileHash kind, FileSync sync) {
  const FileWriteRetryPolicy policy = GetFileWriteRetryPolicy();
  std::chrono::milliseconds backoff = policy.first_backoff;
  Status last;
  bool fill_failed = false;
  for (int attempt = 1; attempt <= policy.attempts; ++attempt) {
    last = [&]() -> Status {
      FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> w,
                               AtomicFileWriter::Create(path, kind));
      Status st = fill(w.get());
      if (!st.ok()) {
        fill_failed = true;  // not an I/O error
        return st;
      }
      FRESHET_RETURN_IF_ERROR(w->Commit(sync));
      if (bytes != nullptr) *bytes = w->bytes();
      if (hash != nullptr) *hash = w->hash();
      g_files_written.fetch_add(1, std::memory_order_relaxed);
      g_bytes_written.fetch_add(static_cast<int64_t>(w->bytes()), std::memory_order_relaxed);
      return Status::OK();
    }();
    if (last.ok()) return last;
    // fill's own error (bad input): retrying would fail the same way.
    if (fill_failed) return last;
    if (attempt == policy.attempts) break;
    g_retries.fetch_add(1, std::memory_order_relaxed);
    LOG(WARNING) << "write of " << path << " failed (attempt " << attempt << " of "
                 << policy.attempts << "), retrying in " << backoff.count() << " ms: " << last;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(policy.max_backoff, backoff * 2);
  }
  g_failures.fetch_add(1, std::memory_order_relaxed);
  Status failed(last.code(), last.message() + " [attempt " + std::to_string(policy.attempts) +
                                 " of " + std::to_string(policy.attempts) + "; " + path +
                                 " left as it was]");
  LOG(ERROR) << "giving up writing " << path << ": " << failed;
  return failed;
}

Status WriteFileAtomic(const std::string& path, std::string_view data, FileSync sync) {
  return WriteFileAtomicWith(
      path,
      [&](AtomicFileWriter* w) {
        w->Append(data);
        return Status::OK();
      },
      nullptr, nullptr, FileHash::kFnv1a64, sync);
}

// ---- reading ------------------------------------------------------------------

SequentialFileReader::SequentialFileReader(std::string path, int fd, uint64_t size)
    : path_(std::move(path)), fd_(fd), size_(size) {}

SequentialFileReader::~SequentialFileReader() { ::close(fd_); }

StatusOr<std::unique_ptr<SequentialFileReader>> SequentialFileReader::Open(
    const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return NotFound(path + ": not found");
    return SysError(path, "open", errno);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return SysError(path, "fstat", err);
  }
  return std::unique_ptr<SequentialFileReader>(
      new SequentialFileReader(path, fd, static_cast<uint64_t>(st.st_size)));
}

StatusOr<size_t> SequentialFileReader::Read(void* dst, size_t n) {
  auto* p = static_cast<char*>(dst);
  size_t got = 0;
  while (got < n) {
    const ssize_t k = ::read(fd_, p + got, n - got);
    if (k < 0) {
      if (errno == EINTR) continue;
      return SysError(path_, "read", errno);
    }
    if (k == 0) break;
    got += static_cast<size_t>(k);
  }
  return got;
}

StatusOr<std::string> ReadFileToString(const std::string& path, size_t max_bytes) {
  FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<SequentialFileReader> r,
                           SequentialFileReader::Open(path));
  std::string out;
  char buf[1 << 16];
  for (;;) {
    FRESHET_ASSIGN_OR_RETURN(const size_t n, r->Read(buf, sizeof(buf)));
    if (n == 0) break;
    out.append(buf, n);
    if (out.size() > max_bytes) {
      return FailedPrecondition(path + ": larger than " + std::to_string(max_bytes) + " bytes");
    }
  }
  return out;
}

StatusOr<std::vector<std::string>> ListDirectory(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return SysError(dir, "opendir", errno);
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  return names;
}

}  // namespace freshet
