#include "exporter/snapshot_format.h"

#include <glog/logging.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <unordered_set>
#include <utility>

#include "common/checksum.h"
#include "common/file_io.h"
#include "common/time_util.h"
#include "exporter/internal/huge_pages.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the .snap format is little-endian; add byte swapping for this host");

namespace freshet {
namespace {

constexpr char kMagic[8] = {'F', 'R', 'S', 'H', 'S', 'N', 'A', 'P'};
// Format 2: XXH64 checksums (trailer and manifest entry); format 1 (FNV-1a
// 64, same layout otherwise) is still read.
constexpr uint32_t kFormatVersion = 2;
constexpr uint32_t kOldestFormatVersion = 1;
constexpr uint32_t kMaxDim = 4096;           // TableConfig.dim's range
constexpr uint32_t kMaxTableNameLen = 1024;  // far above [a-z0-9_]+ names in practice
constexpr size_t kIoChunk = 4 << 20;         // bytes per read(2)
constexpr size_t kHeaderBytes = 8 + 4 + 4 + 8 + 8 + 1;
constexpr size_t kTrailerBytes = 8;
// A manifest file ends with "FRSHMSUM" and the FNV-1a 64 of every byte
// before the hash (docs/SNAPSHOT_FORMAT.md section 4).
constexpr char kManifestTrailerMagic[8] = {'F', 'R', 'S', 'H', 'M', 'S', 'U', 'M'};
constexpr size_t kManifestTrailerBytes = 16;

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Reads a .snap file in kIoChunk-sized reads (common/file_io.h). Tracks the
// checksum of the body (every byte before the 8-byte trailer) as chunks
// arrive: XXH64 if the header says format 2, FNV-1a 64 otherwise (format 1;
// any other format is refused by ParseBody).
class SnapReader {
 public:
  explicit SnapReader(std::string path) : path_(std::move(path)) {}

  Status Open() {
    FRESHET_ASSIGN_OR_RETURN(file_, SequentialFileReader::Open(path_));
    size_ = file_->size();
    body_end_ = size_ >= kTrailerBytes ? size_ - kTrailerBytes : 0;
    // Small files (most deltas) need no 4 MiB buffer; +1 so that a file that
    // grew after fstat is still noticed.
    buf_.resize(static_cast<size_t>(std::min<uint64_t>(kIoChunk, size_ + 1)));
    return Status::OK();
  }

  uint64_t size() const { return size_; }
  // Bytes of the body not consumed yet.
  uint64_t remaining() const { return body_end_ - offset_; }
  // Bytes consumed so far (the file offset parsing has reached).
  uint64_t offset() const { return offset_; }

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
    *body_hash = xxh64_ ? xxh_.digest() : body_hash_;
    char trailer[kTrailerBytes];
    for (size_t i = 0; i < kTrailerBytes; ++i) {
      if (pos_ == len_ && !Refill()) return false;
      trailer[i] = buf_[pos_++];
      ++offset_;
    }
    std::memcpy(stored, trailer, sizeof(*stored));
    return true;
  }

  // The checksum of the whole file (body and trailer) in the file's
  // algorithm. REQUIRES: Finish() returned true.
  uint64_t WholeFileHash(uint64_t stored) const {
    if (!xxh64_) return Fnv1aUpdate(body_hash_, &stored, sizeof(stored));
    Xxh64 whole = xxh_;
    whole.Update(&stored, sizeof(stored));
    return whole.digest();
  }

  // Non-OK if a read(2) failed or the file was shorter than fstat said.
  const Status& io_status() const { return io_status_; }

 private:
  bool Refill() {
    pos_ = 0;
    len_ = 0;
    StatusOr<size_t> n = file_->Read(buf_.data(), buf_.size());
    if (!n.ok()) {
      io_status_ = n.status();
      return false;
    }
    len_ = *n;
    if (len_ == 0) {
      io_status_ = DataLoss(path_ + ": file ended early (changed while reading?)");
      return false;
    }
    if (file_pos_ == 0 && len_ >= 12) {  // magic, then the u32 format version
      uint32_t format = 0;
      std::memcpy(&format, buf_.data() + 8, sizeof(format));
      xxh64_ = format >= 2;
    }
    // Hash the part of the chunk that belongs to the body.
    if (file_pos_ < body_end_) {
      const uint64_t body_part = std::min<uint64_t>(len_, body_end_ - file_pos_);
      if (xxh64_) {
        xxh_.Update(buf_.data(), static_cast<size_t>(body_part));
      } else {
        body_hash_ = Fnv1aUpdate(body_hash_, buf_.data(), static_cast<size_t>(body_part));
      }
    }
    file_pos_ += len_;
    return true;
  }

  std::string path_;
  std::unique_ptr<SequentialFileReader> file_;
  uint64_t size_ = 0;
  uint64_t body_end_ = 0;
  uint64_t offset_ = 0;    // bytes consumed
  uint64_t file_pos_ = 0;  // bytes read from the file
  std::vector<char> buf_;
  size_t pos_ = 0, len_ = 0;
  bool xxh64_ = false;                 // format 2
  uint64_t body_hash_ = kFnv1aOffset;  // format 1
  Xxh64 xxh_;                          // format 2
  Status io_status_;
};

// Collects every table into the Snapshot (ReadSnapshotFile).
class CollectingSink : public SnapshotRowSink {
 public:
  explicit CollectingSink(Snapshot* snap) : snap_(snap) {}
  Status BeginTable(const std::string& name, int dim, uint64_t upserts) override {
    SnapshotTable& t = snap_->tables.emplace_back();
    t.name = name;
    t.dim = dim;
    internal::AssignHuge(&t.keys, upserts, uint64_t{0});
    internal::AssignHuge(&t.values, upserts * static_cast<uint64_t>(dim), 0.0f);
    filled_ = 0;
    return Status::OK();
  }
  Status Rows(const uint64_t* keys, const float* values, size_t n) override {
    SnapshotTable& t = snap_->tables.back();
    const size_t dim = static_cast<size_t>(t.dim);
    std::memcpy(t.keys.data() + filled_, keys, n * sizeof(uint64_t));
    std::memcpy(t.values.data() + filled_ * dim, values, n * dim * sizeof(float));
    filled_ += n;
    return Status::OK();
  }
  Status Deletions(const uint64_t* keys, size_t n) override {
    snap_->tables.back().deleted.assign(keys, keys + n);
    return Status::OK();
  }

 private:
  Snapshot* snap_;
  size_t filled_ = 0;
};

// Parses the body of a snapshot from `r`: the header and dense params into
// *snap, the tables to `sink`. Returns the structural problem (a plain
// message, without the path) or "". A sink error is returned as
// *sink_error (and stops the parse).
std::string ParseBody(SnapReader* r, Snapshot* snap, SnapshotRowSink* sink, Status* sink_error) {
  char magic[8];
  if (!r->Read(magic, sizeof(magic))) return "truncated header";
  if (std::memcmp(magic, kMagic, sizeof(kMagic)) != 0)
    return "bad magic (not a freshet .snap file)";
  uint32_t format = 0, kind = 0;
  uint8_t has_dense = 0;
  if (!r->ReadValue(&format) || !r->ReadValue(&kind) || !r->ReadValue(&snap->version) ||
      !r->ReadValue(&snap->watermark) || !r->ReadValue(&has_dense)) {
    return "truncated header";
  }
  if (format < kOldestFormatVersion || format > kFormatVersion) {
    return "unsupported format version " + std::to_string(format) + " (this reader knows " +
           std::to_string(kOldestFormatVersion) + " to " + std::to_string(kFormatVersion) + ")";
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
  std::unordered_set<std::string> names;
  // Row batches for the sink: about one read chunk each.
  std::vector<uint64_t> batch_keys;
  std::vector<float> batch_values;
  for (uint32_t t = 0; t < num_tables; ++t) {
    SnapshotTable table;  // name and dim only
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
    *sink_error = sink->BeginTable(table.name, table.dim, upserts);
    if (!sink_error->ok()) return "";
    const uint64_t batch = std::max<uint64_t>(1, kIoChunk / row_bytes);
    batch_keys.resize(static_cast<size_t>(std::min(batch, upserts)));
    batch_values.resize(batch_keys.size() * dim);
    for (uint64_t done = 0; done < upserts;) {
      const uint64_t n = std::min(batch, upserts - done);
      if (!r->ReadRows(n, dim, batch_keys.data(), batch_values.data())) {
        return tw + ": truncated rows";
      }
      *sink_error = sink->Rows(batch_keys.data(), batch_values.data(), static_cast<size_t>(n));
      if (!sink_error->ok()) return "";
      done += n;
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
    *sink_error = sink->Deletions(table.deleted.data(), table.deleted.size());
    if (!sink_error->ok()) return "";
  }
  if (r->remaining() != 0) {
    return std::to_string(r->remaining()) + " unexpected bytes after the last table";
  }
  return "";
}

// Streams `path` through `sink`; with `entry`, also checks size, whole-file
// hash and version against the manifest entry.
Status StreamSnapshot(const std::string& path, const proto::ExportFile* entry, Snapshot* snap,
                      SnapshotRowSink* sink) {
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
  Status sink_error;
  std::string problem = ParseBody(&r, snap, sink, &sink_error);
  if (!sink_error.ok()) return sink_error.WithContext(path);
  if (!problem.empty()) problem += " (parsing stopped at byte " + std::to_string(r.offset()) + ")";
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
    const uint64_t whole = r.WholeFileHash(stored);
    if (whole != entry->checksum()) {
      return corrupt("checksum " + Hex64(whole) + " differs from the manifest's " +
                     Hex64(entry->checksum()) + " (file replaced or manifest stale)");
    }
    if (snap->version != entry->version()) {
      return corrupt("holds version " + std::to_string(snap->version) + ", the manifest says " +
                     std::to_string(entry->version()));
    }
  }
  return Status::OK();
}

StatusOr<Snapshot> ReadSnapshot(const std::string& path, const proto::ExportFile* entry) {
  Snapshot snap;
  CollectingSink sink(&snap);
  FRESHET_RETURN_IF_ERROR(StreamSnapshot(path, entry, &snap, &sink));
  return snap;
}

// Appends n rows {u64 key, dim f32} in blocks of up to kIoChunk bytes
// (interleaving keys and rows in a local buffer: one Append per block, not
// two per row).
// Appends rows as {u64 key, dim f32} records in blocks of about kIoChunk,
// gathering small batches (a compaction emits a ServedTable leaf, ~16
// rows, at a time) into one block.
class RowAppender {
 public:
  RowAppender(AtomicFileWriter* w, int dim)
      : w_(w),
        row_floats_(static_cast<size_t>(dim)),
        row_bytes_(sizeof(uint64_t) + row_floats_ * sizeof(float)),
        per_block_(std::max<size_t>(1, kIoChunk / row_bytes_)) {}
  ~RowAppender() { Flush(); }
  void Add(const uint64_t* keys, const float* values, size_t n) {
    rows_ += n;
    for (size_t i = 0; i < n; ++i) {
      if (block_.empty()) block_.resize(per_block_ * row_bytes_);
      char* p = block_.data() + used_ * row_bytes_;
      std::memcpy(p, keys + i, sizeof(uint64_t));
      std::memcpy(p + sizeof(uint64_t), values + i * row_floats_, row_floats_ * sizeof(float));
      if (++used_ == per_block_) Flush();
    }
  }
  void Flush() {
    if (used_ > 0) w_->Append(block_.data(), used_ * row_bytes_);
    used_ = 0;
  }
  uint64_t rows() const { return rows_; }

 private:
  AtomicFileWriter* const w_;
  const size_t row_floats_, row_bytes_, per_block_;
  std::vector<char> block_;
  size_t used_ = 0;
  uint64_t rows_ = 0;
};

}  // namespace

Status WriteSnapshotFile(const Snapshot& snap, const std::string& path, proto::ExportFile* entry,
                         FileSync sync) {
  if (snap.kind != Snapshot::Kind::kFull && snap.kind != Snapshot::Kind::kDelta) {
    return InvalidArgument(path + ": bad snapshot kind");
  }
  std::unordered_set<std::string> names;
  for (const SnapshotTable& t : snap.tables) {
    const std::string tw = path + ": table '" + t.name + "'";
    if (t.name.empty() || t.name.size() > kMaxTableNameLen)
      return InvalidArgument(tw + ": bad name");
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
  FRESHET_RETURN_IF_ERROR(WriteFileAtomicWith(
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
          const uint64_t rows = t.num_rows();
          w->AppendValue<uint64_t>(rows);
          {
            RowAppender out(w, t.dim);
            out.Add(t.keys.data(), t.values.data(), t.keys.size());
            for (const SnapshotTable::RowSpan& span : t.spans) {
              out.Add(span.keys, span.values, span.n);
            }
            if (t.generate) {
              t.generate([&out](const uint64_t* keys, const float* values, size_t n) {
                out.Add(keys, values, n);
              });
            }
            out.Flush();
            if (out.rows() != rows) {
              return Internal(path + ": table '" + t.name + "': " + std::to_string(out.rows()) +
                              " rows written, " + std::to_string(rows) + " announced");
            }
          }
          w->AppendValue<uint64_t>(t.deleted.size());
          w->Append(t.deleted.data(), t.deleted.size() * sizeof(uint64_t));
        }
        w->AppendValue<uint64_t>(w->hash());
        return Status::OK();
      },
      &size, &hash, FileHash::kXxh64, sync));
  entry->Clear();
  entry->set_name(BaseName(path));
  entry->set_size(size);
  entry->set_checksum(hash);
  entry->set_version(snap.version);
  entry->set_watermark(snap.watermark);
  entry->set_created_unix_ms(NowUnixMs());
  return Status::OK();
}

uint64_t SnapshotChecksum(std::string_view file, size_t n) {
  n = std::min(n, file.size());
  uint32_t format = kFormatVersion;
  if (file.size() >= 12) std::memcpy(&format, file.data() + 8, sizeof(format));
  return format == 1 ? Fnv1a64(file.data(), n) : Xxh64Of(file.data(), n);
}

StatusOr<Snapshot> ReadSnapshotFile(const std::string& path) { return ReadSnapshot(path, nullptr); }

Status StreamSnapshotFile(const std::string& path, const proto::ExportFile* entry, Snapshot* header,
                          SnapshotRowSink* sink) {
  *header = Snapshot();
  return StreamSnapshot(path, entry, header, sink);
}

StatusOr<Snapshot> ReadSnapshotFileForEntry(const std::string& path,
                                            const proto::ExportFile& entry) {
  return ReadSnapshot(path, &entry);
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

}  // namespace freshet
