#include "exporter/snapshot.h"

#include "common/checksum.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <glog/logging.h>

#include "common/file_io.h"
#include "exporter/internal/huge_pages.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the .snap format is little-endian; add byte swapping for this host");

namespace freshet {
namespace {

constexpr char kMagic[8] = {'F', 'R', 'S', 'H', 'S', 'N', 'A', 'P'};
constexpr uint32_t kFormatVersion = 1;
constexpr uint32_t kMaxDim = 4096;           // TableConfig.dim's range
constexpr uint32_t kMaxTableNameLen = 1024;  // far above [a-z0-9_]+ names in practice
constexpr size_t kIoChunk = 4 << 20;         // bytes per read(2)/write(2)
constexpr size_t kHeaderBytes = 8 + 4 + 4 + 8 + 8 + 1;
constexpr size_t kTrailerBytes = 8;
constexpr char kLatest[] = "LATEST";
constexpr char kTmpSuffix[] = ".tmp";
constexpr int kLoadAttempts = 5;
// A manifest file ends with "FRSHMSUM" and the FNV-1a 64 of every byte
// before the hash (docs/SNAPSHOT_FORMAT.md section 4).
constexpr char kManifestTrailerMagic[8] = {'F', 'R', 'S', 'H', 'M', 'S', 'U', 'M'};
constexpr size_t kManifestTrailerBytes = 16;  // restarts of a load racing a writer's retention

constexpr uint64_t kFnvOffset = kFnv1aOffset;
inline uint64_t FnvUpdate(uint64_t h, const void* p, size_t n) { return Fnv1aUpdate(h, p, n); }

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, v);
  return buf;
}

// Internal("<path>: <call> failed: <errno text> [snapshot.cc:<line>]").
Status SysError(const std::string& path, const char* call, int line, int err) {
  return Internal(path + ": " + call + " failed: " + std::strerror(err) + " [snapshot.cc:" +
                  std::to_string(line) + "]");
}
// Evaluates a POSIX call that returns -1 on failure and returns the error
// (with the expression and line) from the enclosing function.
#define FRESHET_SYSCALL(expr, path)                                    \
  do {                                                                 \
    if ((expr) < 0) return SysError((path), #expr, __LINE__, errno);   \
  } while (0)

class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }
  // Closes now and reports close(2)'s result (it can report a failed write).
  int Close() {
    const int fd = fd_;
    fd_ = -1;
    return ::close(fd);
  }

 private:
  int fd_;
};

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find('/') == std::string::npos && name.find('\0') == std::string::npos;
}

// Writes `path` atomically with retries (common/file_io.h): `fill` writes
// the content; on failure the temporary file is removed and `path` is
// untouched.
Status AtomicWriteFile(const std::string& path, const std::function<void(AtomicFileWriter*)>& fill,
                       uint64_t* size, uint64_t* hash) {
  return WriteFileAtomicWith(
      path,
      [&](AtomicFileWriter* w) {
        fill(w);
        return Status::OK();
      },
      size, hash);
}

Status AtomicWriteString(const std::string& path, const std::string& data, uint64_t* size) {
  uint64_t hash = 0;
  return AtomicWriteFile(path, [&](AtomicFileWriter* w) { w->Append(data); }, size, &hash);
}

// Reads a whole small file (manifests, LATEST).
Status ReadSmallFile(const std::string& path, std::string* out) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return NotFound(path + ": not found");
    return SysError(path, "open", __LINE__, errno);
  }
  out->clear();
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return SysError(path, "read", __LINE__, errno);
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > (64u << 20)) return DataLoss(path + ": larger than 64 MiB, not a manifest");
  }
  return Status::OK();
}

// Reads a .snap file in kIoChunk-sized read(2) calls. Tracks the hash of the
// body (every byte before the 8-byte trailer) as chunks arrive.
class SnapReader {
 public:
  explicit SnapReader(std::string path) : path_(std::move(path)) {}

  Status Open() {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      if (errno == ENOENT) return NotFound(path_ + ": not found");
      return SysError(path_, "open", __LINE__, errno);
    }
    struct stat st;
    FRESHET_SYSCALL(::fstat(fd_, &st), path_);
    size_ = static_cast<uint64_t>(st.st_size);
    body_end_ = size_ >= kTrailerBytes ? size_ - kTrailerBytes : 0;
    // Small files (most deltas) need no 4 MiB buffer; +1 so that a file that
    // grew after fstat is still noticed.
    buf_.resize(static_cast<size_t>(std::min<uint64_t>(kIoChunk, size_ + 1)));
    return Status::OK();
  }
  ~SnapReader() {
    if (fd_ >= 0) ::close(fd_);
  }

  uint64_t size() const { return size_; }
  // Bytes of the body not consumed yet.
  uint64_t remaining() const { return body_end_ - offset_; }

  // Copies the next n body bytes to `out`; false past the body's end or on a
  // short file (status() says which).
  bool Read(void* out, size_t n) {
    if (n > remaining()) return false;
    auto* dst = static_cast<char*>(out);
    while (n > 0) {
      if (pos_ == len_ && !Refill()) return false;
      const size_t k = std::min(n, len_ - pos_);
      std::memcpy(dst, buf_.data() + pos_, k);
      pos_ += k;
      offset_ += k;
      dst += k;
      n -= k;
    }
    return true;
  }
  template <typename T>
  bool ReadValue(T* v) {
    return Read(v, sizeof(T));
  }

  // Reads n rows of {u64 key, dim f32} into keys[0, n) and values[0, n*dim),
  // copying straight out of the buffer for every row that does not straddle
  // a chunk boundary.
  bool ReadRows(uint64_t n, size_t dim, uint64_t* keys, float* values) {
    const size_t row_bytes = sizeof(uint64_t) + dim * sizeof(float);
    if (n > remaining() / row_bytes) return false;
    uint64_t i = 0;
    while (i < n) {
      if (pos_ == len_ && !Refill()) return false;
      const uint64_t whole = std::min<uint64_t>((len_ - pos_) / row_bytes, n - i);
      if (whole == 0) {  // the row straddles two chunks
        if (!Read(keys + i, sizeof(uint64_t)) || !Read(values + i * dim, dim * sizeof(float))) {
          return false;
        }
        ++i;
        continue;
      }
      const char* p = buf_.data() + pos_;
      for (uint64_t k = 0; k < whole; ++k, ++i, p += row_bytes) {
        std::memcpy(keys + i, p, sizeof(uint64_t));
        std::memcpy(values + i * dim, p + sizeof(uint64_t), dim * sizeof(float));
      }
      pos_ += whole * row_bytes;
      offset_ += whole * row_bytes;
    }
    return true;
  }

  // Consumes the rest of the body (hashing it) and reads the trailer. Sets
  // *body_hash (hash of the body) and *stored (the trailer).
  bool Finish(uint64_t* body_hash, uint64_t* stored) {
    while (offset_ < body_end_) {
      if (pos_ == len_ && !Refill()) return false;
      const size_t k = static_cast<size_t>(std::min<uint64_t>(len_ - pos_, body_end_ - offset_));
      pos_ += k;
      offset_ += k;
    }
    *body_hash = body_hash_;
    char trailer[kTrailerBytes];
    for (size_t i = 0; i < kTrailerBytes; ++i) {
      if (pos_ == len_ && !Refill()) return false;
      trailer[i] = buf_[pos_++];
      ++offset_;
    }
    std::memcpy(stored, trailer, sizeof(*stored));
    return true;
  }

  // Non-OK if a read(2) failed or the file was shorter than fstat said.
  const Status& io_status() const { return io_status_; }

 private:
  bool Refill() {
    pos_ = 0;
    len_ = 0;
    while (len_ < buf_.size()) {
      const ssize_t n = ::read(fd_, buf_.data() + len_, buf_.size() - len_);
      if (n < 0) {
        if (errno == EINTR) continue;
        io_status_ = SysError(path_, "read", __LINE__, errno);
        return false;
      }
      if (n == 0) break;
      len_ += static_cast<size_t>(n);
    }
    if (len_ == 0) {
      io_status_ = DataLoss(path_ + ": file ended early (changed while reading?)");
      return false;
    }
    // Hash the part of the chunk that belongs to the body.
    if (file_pos_ < body_end_) {
      const uint64_t body_part = std::min<uint64_t>(len_, body_end_ - file_pos_);
      body_hash_ = FnvUpdate(body_hash_, buf_.data(), static_cast<size_t>(body_part));
    }
    file_pos_ += len_;
    return true;
  }

  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  uint64_t body_end_ = 0;
  uint64_t offset_ = 0;    // bytes consumed
  uint64_t file_pos_ = 0;  // bytes read from the file
  std::vector<char> buf_;
  size_t pos_ = 0, len_ = 0;
  uint64_t body_hash_ = kFnvOffset;
  Status io_status_;
};

// Parses the body of a snapshot from `r`. Returns the structural problem (a
// plain message, without the path) or "".
std::string ParseBody(SnapReader* r, Snapshot* snap) {
  char magic[8];
  if (!r->Read(magic, sizeof(magic))) return "truncated header";
  if (std::memcmp(magic, kMagic, sizeof(kMagic)) != 0) return "bad magic (not a freshet .snap file)";
  uint32_t format = 0, kind = 0;
  uint8_t has_dense = 0;
  if (!r->ReadValue(&format) || !r->ReadValue(&kind) || !r->ReadValue(&snap->version) ||
      !r->ReadValue(&snap->watermark) || !r->ReadValue(&has_dense)) {
    return "truncated header";
  }
  if (format != kFormatVersion) {
    return "unsupported format version " + std::to_string(format) + " (this reader knows " +
           std::to_string(kFormatVersion) + ")";
  }
  if (kind > 1) return "bad kind " + std::to_string(kind);
  snap->kind = static_cast<Snapshot::Kind>(kind);
  if (has_dense > 1) return "bad has_dense byte " + std::to_string(has_dense);
  snap->has_dense = has_dense == 1;
  if (snap->has_dense) {
    uint64_t n = 0;
    if (!r->ReadValue(&n)) return "truncated dense count";
    if (n > r->remaining() / sizeof(float)) {
      return "dense count " + std::to_string(n) + " exceeds the remaining " +
             std::to_string(r->remaining()) + " bytes";
    }
    snap->dense.resize(n);
    if (!r->Read(snap->dense.data(), n * sizeof(float))) return "truncated dense params";
  }
  uint32_t num_tables = 0;
  if (!r->ReadValue(&num_tables)) return "truncated table count";
  // Each table takes at least 4 + 4 + 8 + 8 bytes.
  if (num_tables > r->remaining() / 24) {
    return "table count " + std::to_string(num_tables) + " exceeds the remaining " +
           std::to_string(r->remaining()) + " bytes";
  }
  snap->tables.resize(num_tables);
  std::unordered_set<std::string> names;
  for (uint32_t t = 0; t < num_tables; ++t) {
    SnapshotTable& table = snap->tables[t];
    const std::string where = "table #" + std::to_string(t);
    uint32_t name_len = 0;
    if (!r->ReadValue(&name_len)) return where + ": truncated name length";
    if (name_len == 0 || name_len > kMaxTableNameLen || name_len > r->remaining()) {
      return where + ": bad name length " + std::to_string(name_len) + " (" +
             std::to_string(r->remaining()) + " bytes remain)";
    }
    table.name.resize(name_len);
    if (!r->Read(table.name.data(), name_len)) return where + ": truncated name";
    const std::string tw = "table '" + table.name + "'";
    if (!names.insert(table.name).second) return "duplicate " + tw;
    uint32_t dim = 0;
    if (!r->ReadValue(&dim)) return tw + ": truncated dim";
    if (dim == 0 || dim > kMaxDim) return tw + ": dim " + std::to_string(dim) + " out of range";
    table.dim = static_cast<int>(dim);
    uint64_t upserts = 0;
    if (!r->ReadValue(&upserts)) return tw + ": truncated upsert count";
    const uint64_t row_bytes = sizeof(uint64_t) + uint64_t{dim} * sizeof(float);
    if (upserts > r->remaining() / row_bytes) {
      return tw + ": " + std::to_string(upserts) + " upserts of " + std::to_string(row_bytes) +
             " bytes exceed the remaining " + std::to_string(r->remaining()) + " bytes";
    }
    internal::AssignHuge(&table.keys, upserts, uint64_t{0});
    internal::AssignHuge(&table.values, upserts * dim, 0.0f);
    if (!r->ReadRows(upserts, dim, table.keys.data(), table.values.data())) {
      return tw + ": truncated rows";
    }
    uint64_t deletions = 0;
    if (!r->ReadValue(&deletions)) return tw + ": truncated deletion count";
    if (deletions > r->remaining() / sizeof(uint64_t)) {
      return tw + ": " + std::to_string(deletions) + " deletions exceed the remaining " +
             std::to_string(r->remaining()) + " bytes";
    }
    if (deletions > 0 && snap->kind == Snapshot::Kind::kFull) {
      return tw + ": a full snapshot lists " + std::to_string(deletions) + " deletions";
    }
    table.deleted.resize(deletions);
    if (!r->Read(table.deleted.data(), deletions * sizeof(uint64_t))) {
      return tw + ": truncated deletions";
    }
  }
  if (r->remaining() != 0) {
    return std::to_string(r->remaining()) + " unexpected bytes after the last table";
  }
  return "";
}

// Reads `path`; with `entry`, also checks size, whole-file hash and version
// against the manifest entry.
StatusOr<Snapshot> ReadSnapshot(const std::string& path, const proto::ExportFile* entry) {
  SnapReader r(path);
  FRESHET_RETURN_IF_ERROR(r.Open());
  auto corrupt = [&](const std::string& what) { return DataLoss(path + ": " + what); };
  if (entry != nullptr && r.size() != entry->size()) {
    return corrupt("size " + std::to_string(r.size()) + " bytes, the manifest says " +
                   std::to_string(entry->size()));
  }
  if (r.size() < kHeaderBytes + 4 + kTrailerBytes) {
    return corrupt("truncated: " + std::to_string(r.size()) + " bytes is too short for a snapshot");
  }
  Snapshot snap;
  const std::string problem = ParseBody(&r, &snap);
  if (!r.io_status().ok()) return r.io_status();
  // Hash the rest of the body either way: a checksum mismatch says "corrupt"
  // more precisely than the structural symptom of it.
  uint64_t body_hash = 0, stored = 0;
  if (!r.Finish(&body_hash, &stored)) {
    if (!r.io_status().ok()) return r.io_status();
    return corrupt("truncated");
  }
  if (body_hash != stored) {
    return corrupt("checksum mismatch: trailer says " + Hex64(stored) + ", content hashes to " +
                   Hex64(body_hash) + (problem.empty() ? "" : " (then also: " + problem + ")"));
  }
  if (!problem.empty()) return corrupt(problem);
  if (entry != nullptr) {
    const uint64_t whole = FnvUpdate(body_hash, &stored, sizeof(stored));
    if (whole != entry->fnv1a64()) {
      return corrupt("checksum " + Hex64(whole) + " differs from the manifest's " +
                     Hex64(entry->fnv1a64()) + " (file replaced or manifest stale)");
    }
    if (snap.version != entry->version()) {
      return corrupt("holds version " + std::to_string(snap.version) + ", the manifest says " +
                     std::to_string(entry->version()));
    }
  }
  return snap;
}

// "full-", "delta-" + digits + ".snap", "manifest-" + digits + ".pb";
// sets *version. `tmp`: also accepts those names + ".tmp", and "LATEST.tmp".
bool ParseExportFileName(const std::string& name, uint64_t* version, bool* is_tmp) {
  std::string n = name;
  *is_tmp = false;
  const size_t tl = std::strlen(kTmpSuffix);
  if (n.size() > tl && n.compare(n.size() - tl, tl, kTmpSuffix) == 0) {
    *is_tmp = true;
    n.resize(n.size() - tl);
    if (n == kLatest) {
      *version = 0;
      return true;
    }
  }
  struct Pattern {
    const char* prefix;
    const char* suffix;
  };
  static const Pattern kPatterns[] = {{"full-", ".snap"}, {"delta-", ".snap"}, {"manifest-", ".pb"}};
  for (const Pattern& p : kPatterns) {
    const size_t pl = std::strlen(p.prefix), sl = std::strlen(p.suffix);
    if (n.size() <= pl + sl || n.compare(0, pl, p.prefix) != 0 ||
        n.compare(n.size() - sl, sl, p.suffix) != 0) {
      continue;
    }
    const std::string digits = n.substr(pl, n.size() - pl - sl);
    if (digits.empty() || digits.size() > 20 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return false;
    }
    *version = std::strtoull(digits.c_str(), nullptr, 10);
    return true;
  }
  return false;
}

bool IsManifestName(const std::string& name) {
  uint64_t v;
  bool tmp;
  return name.rfind("manifest-", 0) == 0 && ParseExportFileName(name, &v, &tmp) && !tmp;
}

Status ListDir(const std::string& dir, std::vector<std::string>* names) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return SysError(dir, "opendir", __LINE__, errno);
  names->clear();
  while (struct dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names->push_back(n);
  }
  ::closedir(d);
  return Status::OK();
}

// The name LATEST holds (trimmed), checked to be a manifest file name.
StatusOr<std::string> ReadLatestName(const std::string& dir) {
  const std::string path = JoinPath(dir, kLatest);
  std::string text;
  Status st = ReadSmallFile(path, &text);
  if (st.code() == StatusCode::kNotFound) return NotFound(path + ": not found (nothing published)");
  FRESHET_RETURN_IF_ERROR(st);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  if (!IsManifestName(text)) {
    return DataLoss(path + ": holds '" + text.substr(0, 64) + "', not a manifest file name");
  }
  return text;
}

bool SameFile(const proto::ExportFile& a, const proto::ExportFile& b) {
  return a.name() == b.name() && a.size() == b.size() && a.fnv1a64() == b.fnv1a64() &&
         a.version() == b.version();
}

bool SameTables(const proto::JobConfig& a, const proto::JobConfig& b) {
  if (a.tables().tables_size() != b.tables().tables_size()) return false;
  for (int i = 0; i < a.tables().tables_size(); ++i) {
    if (a.tables().tables(i).name() != b.tables().tables(i).name() ||
        a.tables().tables(i).dim() != b.tables().tables(i).dim()) {
      return false;
    }
  }
  return true;
}

// The serving storage of job table `name` (16-bit tables stay 16-bit).
ServedTable::Storage StorageFor(const proto::JobConfig& job, const std::string& name) {
  for (const auto& t : job.tables().tables()) {
    if (t.name() == name) return ServedTable::StorageOf(t.storage());
  }
  return ServedTable::Storage::kFp32;
}

// Applies one verified file of the chain to `out`.
Status ApplySnapshot(const std::string& path, Snapshot* snap, LoadedExport* out) {
  const bool full = snap->kind == Snapshot::Kind::kFull;
  const proto::TablesConfig& job_tables = out->manifest.job().tables();
  auto job_dim = [&](const std::string& name) -> int {
    for (const auto& t : job_tables.tables()) {
      if (t.name() == name) return static_cast<int>(t.dim());
    }
    return -1;
  };
  for (SnapshotTable& st : snap->tables) {
    const int jd = job_dim(st.name);
    if (jd >= 0 && jd != st.dim) {
      return DataLoss(path + ": table '" + st.name + "' has dim " + std::to_string(st.dim) +
                      ", the manifest's job says " + std::to_string(jd));
    }
    auto it = out->tables.find(st.name);
    if (full) {
      ServedTable t(st.dim, StorageFor(out->manifest.job(), st.name));
      t.Build(st.keys.data(), st.values.data(), st.keys.size());
      out->tables[st.name] = std::move(t);
      st = SnapshotTable();  // free as we go
      continue;
    }
    if (it == out->tables.end()) {
      it = out->tables.emplace(st.name, ServedTable(st.dim, StorageFor(out->manifest.job(), st.name)))
               .first;
    } else if (it->second.dim() != st.dim) {
      return DataLoss(path + ": table '" + st.name + "' has dim " + std::to_string(st.dim) +
                      ", the model so far has " + std::to_string(it->second.dim()));
    }
    it->second.Apply(st.deleted.data(), st.deleted.size(), st.keys.data(), st.values.data(),
                     st.keys.size());
  }
  if (full) {
    out->dense = std::move(snap->dense);
  } else if (snap->has_dense) {
    if (!out->dense.empty() && out->dense.size() != snap->dense.size()) {
      return DataLoss(path + ": " + std::to_string(snap->dense.size()) +
                      " dense params, the model so far has " + std::to_string(out->dense.size()));
    }
    out->dense = std::move(snap->dense);
  }
  return Status::OK();
}

// Builds `out` (its manifest set) from the chain's files: from `base` (the
// model of a prefix of the same chain) plus the deltas it lacks, or, with no
// base, from the full snapshot and every delta. Every file is read and
// verified before anything is built, and the deltas are read first so each
// table's arrays can be sized once for the rows they add.
Status BuildModel(const std::string& dir, const LoadedExport* base, LoadedExport* out) {
  const proto::ExportManifest& m = out->manifest;
  struct File {
    std::string path;
    Snapshot snap;
  };
  auto read = [&](const proto::ExportFile& entry, Snapshot::Kind want) -> StatusOr<File> {
    File f{JoinPath(dir, entry.name()), Snapshot()};
    FRESHET_ASSIGN_OR_RETURN(f.snap, ReadSnapshot(f.path, &entry));
    if (f.snap.kind != want) {
      return DataLoss(f.path + ": the manifest lists it as a " +
                      (want == Snapshot::Kind::kFull ? "full snapshot" : "delta") +
                      " but it is not");
    }
    return f;
  };
  std::vector<File> deltas;
  for (int i = base != nullptr ? base->manifest.deltas_size() : 0; i < m.deltas_size(); ++i) {
    FRESHET_ASSIGN_OR_RETURN(File f, read(m.deltas(i), Snapshot::Kind::kDelta));
    deltas.push_back(std::move(f));
  }
  if (base != nullptr) {
    // Versions share every part a delta does not touch (ServedTable).
    out->dense = base->dense;
    out->tables = base->tables;
  } else {
    FRESHET_ASSIGN_OR_RETURN(File full, read(m.full(), Snapshot::Kind::kFull));
    out->tables.clear();
    for (const auto& t : m.job().tables().tables()) {
      out->tables.emplace(t.name(),
                          ServedTable(static_cast<int>(t.dim()), ServedTable::StorageOf(t.storage())));
    }
    FRESHET_RETURN_IF_ERROR(ApplySnapshot(full.path, &full.snap, out));
  }
  for (File& f : deltas) {
    FRESHET_RETURN_IF_ERROR(ApplySnapshot(f.path, &f.snap, out));
    f.snap = Snapshot();  // free as we go
  }
  return Status::OK();
}

// `previous`'s chain is a prefix of `m`'s: same full, same first deltas.
bool IsPrefixChain(const proto::ExportManifest& prev, const proto::ExportManifest& m) {
  if (!SameFile(prev.full(), m.full()) || prev.deltas_size() > m.deltas_size()) return false;
  for (int i = 0; i < prev.deltas_size(); ++i) {
    if (!SameFile(prev.deltas(i), m.deltas(i))) return false;
  }
  return SameTables(prev.job(), m.job());
}

}  // namespace

std::string SnapshotFileName(Snapshot::Kind kind, uint64_t version) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s-%012llu.snap", kind == Snapshot::Kind::kFull ? "full" : "delta",
                static_cast<unsigned long long>(version));
  return buf;
}

std::string ManifestFileName(uint64_t version) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "manifest-%012llu.pb", static_cast<unsigned long long>(version));
  return buf;
}

Status WriteSnapshotFile(const Snapshot& snap, const std::string& path, proto::ExportFile* entry) {
  if (snap.kind != Snapshot::Kind::kFull && snap.kind != Snapshot::Kind::kDelta) {
    return InvalidArgument(path + ": bad snapshot kind");
  }
  std::unordered_set<std::string> names;
  for (const SnapshotTable& t : snap.tables) {
    const std::string tw = path + ": table '" + t.name + "'";
    if (t.name.empty() || t.name.size() > kMaxTableNameLen) return InvalidArgument(tw + ": bad name");
    if (!names.insert(t.name).second) return InvalidArgument(tw + ": listed twice");
    if (t.dim < 1 || t.dim > static_cast<int>(kMaxDim)) {
      return InvalidArgument(tw + ": dim " + std::to_string(t.dim) + " out of range 1..4096");
    }
    if (t.values.size() != t.keys.size() * static_cast<size_t>(t.dim)) {
      return InvalidArgument(tw + ": " + std::to_string(t.values.size()) + " values for " +
                             std::to_string(t.keys.size()) + " keys of dim " +
                             std::to_string(t.dim));
    }
    if (snap.kind == Snapshot::Kind::kFull && !t.deleted.empty()) {
      return InvalidArgument(tw + ": a full snapshot cannot list deletions");
    }
  }
  uint64_t size = 0, hash = 0;
  FRESHET_RETURN_IF_ERROR(AtomicWriteFile(
      path,
      [&](AtomicFileWriter* w) {
        w->Append(kMagic, sizeof(kMagic));
        w->AppendValue<uint32_t>(kFormatVersion);
        w->AppendValue<uint32_t>(static_cast<uint32_t>(snap.kind));
        w->AppendValue<uint64_t>(snap.version);
        w->AppendValue<int64_t>(snap.watermark);
        w->AppendValue<uint8_t>(snap.has_dense ? 1 : 0);
        if (snap.has_dense) {
          w->AppendValue<uint64_t>(snap.dense.size());
          w->Append(snap.dense.data(), snap.dense.size() * sizeof(float));
        }
        w->AppendValue<uint32_t>(static_cast<uint32_t>(snap.tables.size()));
        for (const SnapshotTable& t : snap.tables) {
          w->AppendValue<uint32_t>(static_cast<uint32_t>(t.name.size()));
          w->Append(t.name.data(), t.name.size());
          w->AppendValue<uint32_t>(static_cast<uint32_t>(t.dim));
          w->AppendValue<uint64_t>(t.keys.size());
          const size_t row_bytes = static_cast<size_t>(t.dim) * sizeof(float);
          for (size_t i = 0; i < t.keys.size(); ++i) {
            w->AppendValue<uint64_t>(t.keys[i]);
            w->Append(t.values.data() + i * t.dim, row_bytes);
          }
          w->AppendValue<uint64_t>(t.deleted.size());
          w->Append(t.deleted.data(), t.deleted.size() * sizeof(uint64_t));
        }
        w->AppendValue<uint64_t>(w->hash());
      },
      &size, &hash));
  entry->Clear();
  entry->set_name(BaseName(path));
  entry->set_size(size);
  entry->set_fnv1a64(hash);
  entry->set_version(snap.version);
  entry->set_watermark(snap.watermark);
  entry->set_created_unix_ms(NowUnixMs());
  return Status::OK();
}

StatusOr<Snapshot> ReadSnapshotFile(const std::string& path) { return ReadSnapshot(path, nullptr); }

StatusOr<Snapshot> ReadExportFile(const std::string& dir, const proto::ExportFile& entry) {
  if (!IsPlainFileName(entry.name())) {
    return DataLoss(dir + ": manifest names a bad file '" + entry.name() + "'");
  }
  return ReadSnapshot(JoinPath(dir, entry.name()), &entry);
}

std::string EncodeManifestFile(const proto::ExportManifest& m) {
  std::string data;
  CHECK(m.SerializeToString(&data)) << "cannot serialize an ExportManifest";
  data.append(kManifestTrailerMagic, sizeof(kManifestTrailerMagic));
  const uint64_t h = Fnv1a64(data.data(), data.size());
  data.append(reinterpret_cast<const char*>(&h), sizeof(h));
  return data;
}

StatusOr<proto::ExportManifest> DecodeManifestFile(const std::string& path,
                                                   const std::string& bytes) {
  auto bad = [&](const std::string& what) { return DataLoss(path + ": " + what); };
  size_t proto_bytes = bytes.size();
  if (bytes.size() >= kManifestTrailerBytes) {
    // A trailer is recognised by its magic; one that is merely damaged (at
    // least half of the magic's bytes in place) is corruption, not a
    // manifest from before the trailer existed.
    const char* t = bytes.data() + bytes.size() - kManifestTrailerBytes;
    int same = 0;
    for (size_t i = 0; i < sizeof(kManifestTrailerMagic); ++i) {
      same += t[i] == kManifestTrailerMagic[i];
    }
    if (same == static_cast<int>(sizeof(kManifestTrailerMagic))) {
      uint64_t stored = 0;
      std::memcpy(&stored, t + sizeof(kManifestTrailerMagic), sizeof(stored));
      const uint64_t h = Fnv1a64(bytes.data(), bytes.size() - sizeof(stored));
      if (h != stored) {
        return bad("manifest checksum mismatch: trailer says " + Hex64(stored) +
                   ", content hashes to " + Hex64(h) + " (corrupt manifest)");
      }
      proto_bytes = bytes.size() - kManifestTrailerBytes;
    } else if (same * 2 >= static_cast<int>(sizeof(kManifestTrailerMagic))) {
      return bad("damaged manifest checksum trailer (corrupt manifest)");
    }
    // Else: a manifest written before the trailer (format 1), unchecked.
  }
  proto::ExportManifest m;
  if (!m.ParseFromArray(bytes.data(), static_cast<int>(proto_bytes))) {
    return bad("cannot parse as an ExportManifest");
  }
  return m;
}

StatusOr<proto::ExportManifest> ReadManifestFile(const std::string& path) {
  std::string data;
  FRESHET_RETURN_IF_ERROR(ReadSmallFile(path, &data));
  FRESHET_ASSIGN_OR_RETURN(proto::ExportManifest m, DecodeManifestFile(path, data));
  auto bad = [&](const std::string& what) { return DataLoss(path + ": " + what); };
  uint64_t name_version = 0;
  bool tmp = false;
  const std::string base = BaseName(path);
  if (ParseExportFileName(base, &name_version, &tmp) && !tmp && IsManifestName(base) &&
      name_version != m.version()) {
    return bad("holds version " + std::to_string(m.version()) + " but is named for " +
               std::to_string(name_version));
  }
  if (!IsPlainFileName(m.full().name())) return bad("no valid full snapshot file name");
  uint64_t prev = m.full().version();
  for (const proto::ExportFile& d : m.deltas()) {
    if (!IsPlainFileName(d.name())) return bad("bad delta file name '" + d.name() + "'");
    if (d.version() <= prev) {
      return bad("delta " + d.name() + " has version " + std::to_string(d.version()) +
                 ", not above the previous file's " + std::to_string(prev));
    }
    prev = d.version();
  }
  if (prev != m.version()) {
    return bad("version " + std::to_string(m.version()) + " but its last file has version " +
               std::to_string(prev));
  }
  return m;
}

StatusOr<proto::ExportManifest> ReadLatestManifest(const std::string& dir) {
  for (int attempt = 0;; ++attempt) {
    FRESHET_ASSIGN_OR_RETURN(std::string name, ReadLatestName(dir));
    auto m = ReadManifestFile(JoinPath(dir, name));
    if (m.ok() || m.status().code() != StatusCode::kNotFound) return m;
    auto again = ReadLatestName(dir);
    if (attempt + 1 < kLoadAttempts && again.ok() && *again != name) continue;  // writer moved on
    return DataLoss(JoinPath(dir, kLatest) + " names " + name + ", which is missing");
  }
}

StatusOr<std::shared_ptr<const LoadedExport>> LoadLatestExport(const std::string& dir) {
  return LoadLatestExportIncremental(dir, nullptr);
}

StatusOr<std::shared_ptr<const LoadedExport>> LoadLatestExportIncremental(
    const std::string& dir, const std::shared_ptr<const LoadedExport>& previous) {
  for (int attempt = 0;; ++attempt) {
    FRESHET_ASSIGN_OR_RETURN(proto::ExportManifest m, ReadLatestManifest(dir));
    const std::string manifest_name = ManifestFileName(m.version());
    std::shared_ptr<LoadedExport> next;
    Status st;
    if (previous != nullptr && IsPrefixChain(previous->manifest, m)) {
      if (previous->manifest.deltas_size() == m.deltas_size() &&
          previous->manifest.version() == m.version()) {
        return previous;
      }
      next = std::make_shared<LoadedExport>();  // copy-on-write: *previous stays as is
      next->manifest = std::move(m);
      st = BuildModel(dir, previous.get(), next.get());
    } else {
      next = std::make_shared<LoadedExport>();
      next->manifest = std::move(m);
      st = BuildModel(dir, nullptr, next.get());
    }
    if (st.ok()) return std::shared_ptr<const LoadedExport>(std::move(next));
    if (st.code() != StatusCode::kNotFound) return st;
    // A chain file is missing: fine if the writer moved LATEST on and retired
    // it meanwhile (start over), data loss otherwise.
    auto now = ReadLatestName(dir);
    if (attempt + 1 < kLoadAttempts && now.ok() && *now != manifest_name) continue;
    return DataLoss(st.message() + " (listed in " + JoinPath(dir, manifest_name) + ")");
  }
}

// ---- ExportWriter --------------------------------------------------------------

StatusOr<std::unique_ptr<ExportWriter>> ExportWriter::Open(const std::string& dir,
                                                           const proto::JobConfig& job,
                                                           int retain_full) {
  if (retain_full < 1) {
    return InvalidArgument("ExportWriter(" + dir + "): retain_full must be >= 1, got " +
                           std::to_string(retain_full));
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Internal(dir + ": cannot create directory: " + ec.message());
  std::unique_ptr<ExportWriter> w(new ExportWriter());
  w->dir_ = dir;
  w->job_ = job;
  w->retain_full_ = retain_full;

  std::vector<std::string> names;
  FRESHET_RETURN_IF_ERROR(ListDir(dir, &names));
  // A killed writer's temporary files are garbage: nothing names them.
  for (const std::string& n : names) {
    uint64_t v;
    bool tmp;
    if (ParseExportFileName(n, &v, &tmp) && tmp) ::unlink(JoinPath(dir, n).c_str());
  }
  if (std::find(names.begin(), names.end(), kLatest) == names.end()) return w;

  // Continue the published chain.
  FRESHET_ASSIGN_OR_RETURN(w->manifest_, ReadLatestManifest(dir));
  const proto::ExportManifest& cur = w->manifest_;
  if (!SameTables(cur.job(), job)) {
    LOG(WARNING) << dir << ": the job's tables differ from the published manifest's; the next "
                 << "publish must be a full snapshot";
    w->needs_full_ = true;
  }
  // Older retained chains: the newest manifest of each, by its full file.
  std::map<uint64_t, proto::ExportManifest> older;  // full version -> newest manifest
  for (const std::string& n : names) {
    if (!IsManifestName(n)) continue;
    uint64_t v;
    bool tmp;
    ParseExportFileName(n, &v, &tmp);
    if (v >= cur.version()) continue;  // the current one, or never published
    auto m = ReadManifestFile(JoinPath(dir, n));
    if (!m.ok()) {
      LOG(WARNING) << "ignoring " << m.status();
      continue;
    }
    if (m->full().version() >= cur.full().version()) continue;  // current chain
    auto [it, inserted] = older.try_emplace(m->full().version(), *m);
    if (!inserted && m->version() > it->second.version()) it->second = std::move(*m);
  }
  for (auto& [v, m] : older) w->chains_.push_back(std::move(m));
  w->chains_.push_back(cur);
  while (static_cast<int>(w->chains_.size()) > retain_full) w->chains_.erase(w->chains_.begin());
  return w;
}

Status ExportWriter::Publish(const Snapshot& snap) {
  const bool have_chain = !manifest_.full().name().empty();
  if (have_chain && snap.version <= manifest_.version()) {
    return FailedPrecondition(dir_ + ": version " + std::to_string(snap.version) +
                              " does not increase (published: " +
                              std::to_string(manifest_.version()) + ")");
  }
  if (snap.kind == Snapshot::Kind::kDelta && (!have_chain || needs_full_)) {
    return FailedPrecondition(dir_ + ": a delta (version " + std::to_string(snap.version) +
                              ") needs a full snapshot first" +
                              (needs_full_ ? " (the job's tables changed)" : ""));
  }
  for (const SnapshotTable& t : snap.tables) {
    for (const auto& jt : job_.tables().tables()) {
      if (jt.name() == t.name && static_cast<int>(jt.dim()) != t.dim) {
        return InvalidArgument(dir_ + ": table '" + t.name + "' has dim " + std::to_string(t.dim) +
                               ", the job says " + std::to_string(jt.dim()));
      }
    }
  }
  proto::ExportFile entry;
  FRESHET_RETURN_IF_ERROR(
      WriteSnapshotFile(snap, JoinPath(dir_, SnapshotFileName(snap.kind, snap.version)), &entry));
  bytes_written_ += static_cast<int64_t>(entry.size());

  proto::ExportManifest next;
  if (snap.kind == Snapshot::Kind::kFull) {
    *next.mutable_full() = entry;
  } else {
    next = manifest_;
    *next.add_deltas() = entry;
  }
  next.set_version(snap.version);
  next.set_watermark(snap.watermark);
  next.set_ingest_wall_ms(snap.ingest_wall_ms);
  next.set_label_wall_ms(snap.label_wall_ms);
  next.set_created_unix_ms(NowUnixMs());
  *next.mutable_job() = job_;
  const std::string manifest_name = ManifestFileName(snap.version);
  const std::string data = EncodeManifestFile(next);
  uint64_t size = 0;
  FRESHET_RETURN_IF_ERROR(AtomicWriteString(JoinPath(dir_, manifest_name), data, &size));
  bytes_written_ += static_cast<int64_t>(size);
  // The commit point: LATEST names the new manifest.
  FRESHET_RETURN_IF_ERROR(AtomicWriteString(JoinPath(dir_, kLatest), manifest_name + "\n", &size));
  bytes_written_ += static_cast<int64_t>(size);

  manifest_ = std::move(next);
  needs_full_ = false;
  if (snap.kind == Snapshot::Kind::kFull || chains_.empty()) {
    chains_.push_back(manifest_);
    while (static_cast<int>(chains_.size()) > retain_full_) chains_.erase(chains_.begin());
  } else {
    chains_.back() = manifest_;
  }
  Status st = Retain();
  if (!st.ok()) LOG(WARNING) << "retention after publishing " << manifest_name << ": " << st;
  return Status::OK();
}

Status ExportWriter::Retain() {
  std::unordered_set<std::string> keep;
  for (const proto::ExportManifest& m : chains_) {
    keep.insert(m.full().name());
    for (const auto& d : m.deltas()) keep.insert(d.name());
    keep.insert(ManifestFileName(m.version()));
  }
  std::vector<std::string> names;
  FRESHET_RETURN_IF_ERROR(ListDir(dir_, &names));
  Status result;
  for (const std::string& n : names) {
    uint64_t v;
    bool tmp;
    if (!ParseExportFileName(n, &v, &tmp) || keep.count(n) > 0) continue;
    const std::string path = JoinPath(dir_, n);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT && result.ok()) {
      result = SysError(path, "unlink", __LINE__, errno);
    }
  }
  return result;
}

}  // namespace freshet
