#include "exporter/export_dir.h"

#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <unordered_set>
#include <utility>

#include "common/file_io.h"
#include "common/time_util.h"

namespace freshet {
namespace {

constexpr char kLatest[] = "LATEST";
constexpr char kTmpSuffix[] = ".tmp";
constexpr size_t kMaxManifestBytes = 64u << 20;

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

// Reads a whole small file (manifests, LATEST): DataLoss past 64 MiB.
StatusOr<std::string> ReadSmallFile(const std::string& path) {
  StatusOr<std::string> data = ReadFileToString(path, kMaxManifestBytes);
  if (data.status().code() == StatusCode::kFailedPrecondition) {
    return DataLoss(path + ": larger than 64 MiB, not a manifest");
  }
  return data;
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
  static const Pattern kPatterns[] = {
      {"full-", ".snap"}, {"delta-", ".snap"}, {"manifest-", ".pb"}};
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

}  // namespace

std::string SnapshotFileName(Snapshot::Kind kind, uint64_t version) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s-%012llu.snap",
                kind == Snapshot::Kind::kFull ? "full" : "delta",
                static_cast<unsigned long long>(version));
  return buf;
}

std::string ManifestFileName(uint64_t version) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "manifest-%012llu.pb", static_cast<unsigned long long>(version));
  return buf;
}

std::string ExportPath(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

bool SameJobTables(const proto::JobConfig& a, const proto::JobConfig& b) {
  if (a.tables().tables_size() != b.tables().tables_size()) return false;
  for (int i = 0; i < a.tables().tables_size(); ++i) {
    if (a.tables().tables(i).name() != b.tables().tables(i).name() ||
        a.tables().tables(i).dim() != b.tables().tables(i).dim()) {
      return false;
    }
  }
  return true;
}

StatusOr<Snapshot> ReadExportFile(const std::string& dir, const proto::ExportFile& entry) {
  if (!IsPlainFileName(entry.name())) {
    return DataLoss(dir + ": manifest names a bad file '" + entry.name() + "'");
  }
  return ReadSnapshotFileForEntry(ExportPath(dir, entry.name()), entry);
}

StatusOr<proto::ExportManifest> ReadManifestFile(const std::string& path) {
  FRESHET_ASSIGN_OR_RETURN(const std::string data, ReadSmallFile(path));
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

StatusOr<std::string> ReadLatestManifestName(const std::string& dir) {
  const std::string path = ExportPath(dir, kLatest);
  StatusOr<std::string> read = ReadSmallFile(path);
  if (read.status().code() == StatusCode::kNotFound) {
    return NotFound(path + ": not found (nothing published)");
  }
  FRESHET_RETURN_IF_ERROR(read.status());
  std::string text = std::move(*read);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  if (!IsManifestName(text)) {
    return DataLoss(path + ": holds '" + text.substr(0, 64) + "', not a manifest file name");
  }
  return text;
}

StatusOr<proto::ExportManifest> ReadLatestManifest(const std::string& dir) {
  for (int attempt = 0;; ++attempt) {
    FRESHET_ASSIGN_OR_RETURN(std::string name, ReadLatestManifestName(dir));
    auto m = ReadManifestFile(ExportPath(dir, name));
    if (m.ok() || m.status().code() != StatusCode::kNotFound) return m;
    auto again = ReadLatestManifestName(dir);
    if (attempt + 1 < kExportReadAttempts && again.ok() && *again != name)
      continue;  // writer moved on
    return DataLoss(ExportPath(dir, kLatest) + " names " + name + ", which is missing");
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

  FRESHET_ASSIGN_OR_RETURN(const std::vector<std::string> names, ListDirectory(dir));
  // A killed writer's temporary files are garbage: nothing names them.
  for (const std::string& n : names) {
    uint64_t v;
    bool tmp;
    if (ParseExportFileName(n, &v, &tmp) && tmp) ::unlink(ExportPath(dir, n).c_str());
  }
  if (std::find(names.begin(), names.end(), kLatest) == names.end()) return w;

  // Continue the published chain.
  FRESHET_ASSIGN_OR_RETURN(w->manifest_, ReadLatestManifest(dir));
  const proto::ExportManifest& cur = w->manifest_;
  if (!SameJobTables(cur.job(), job)) {
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
    auto m = ReadManifestFile(ExportPath(dir, n));
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
    return FailedPrecondition(
        dir_ + ": version " + std::to_string(snap.version) +
        " does not increase (published: " + std::to_string(manifest_.version()) + ")");
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
  // The snapshot's rename is made durable by the manifest's directory fsync
  // (same directory, before LATEST is replaced): 5 fsyncs a publish, not 6.
  FRESHET_RETURN_IF_ERROR(
      WriteSnapshotFile(snap, ExportPath(dir_, SnapshotFileName(snap.kind, snap.version)), &entry,
                        DirSync::kDeferred));
  bytes_written_ += static_cast<int64_t>(entry.size());

  proto::ExportManifest next;
  const bool rebased = snap.kind == Snapshot::Kind::kDelta && has_compacted_;
  if (snap.kind == Snapshot::Kind::kFull) {
    *next.mutable_full() = entry;
    next.set_lineage(snap.version);
  } else if (rebased) {
    // The same model from the compacted full: the chain's deltas after it.
    next = manifest_;
    *next.mutable_full() = compacted_;
    next.clear_deltas();
    for (const auto& d : manifest_.deltas()) {
      if (d.version() > compacted_.version()) *next.add_deltas() = d;
    }
    *next.add_deltas() = entry;
  } else {
    next = manifest_;
    *next.add_deltas() = entry;
  }
  next.set_version(snap.version);
  next.set_watermark(snap.watermark);
  next.set_ingest_wall_ms(snap.ingest_wall_ms);
  next.set_label_wall_ms(snap.label_wall_ms);
  return Commit(std::move(next), snap.kind == Snapshot::Kind::kFull || rebased);
}

Status ExportWriter::Commit(proto::ExportManifest next, bool starts_chain) {
  next.set_created_unix_ms(NowUnixMs());
  *next.mutable_job() = job_;
  const std::string manifest_name = ManifestFileName(next.version());
  const std::string data = EncodeManifestFile(next);
  // Its directory fsync also makes a snapshot file written just before it
  // (DirSync::kDeferred, Publish) durable: both renames before LATEST's.
  FRESHET_RETURN_IF_ERROR(WriteFileAtomic(ExportPath(dir_, manifest_name), data));
  bytes_written_ += static_cast<int64_t>(data.size());
  // The commit point: LATEST names the new manifest.
  const std::string latest = manifest_name + "\n";
  FRESHET_RETURN_IF_ERROR(WriteFileAtomic(ExportPath(dir_, kLatest), latest));
  bytes_written_ += static_cast<int64_t>(latest.size());

  manifest_ = std::move(next);
  needs_full_ = false;
  has_compacted_ = false;  // adopted by this manifest, or superseded by a full
  if (starts_chain || chains_.empty()) {
    chains_.push_back(manifest_);
    while (static_cast<int>(chains_.size()) > retain_full_) chains_.erase(chains_.begin());
  } else {
    chains_.back() = manifest_;
  }
  Status st = Retain();
  if (!st.ok()) LOG(WARNING) << "retention after publishing " << manifest_name << ": " << st;
  return Status::OK();
}

Status ExportWriter::PublishCompacted() {
  if (!has_compacted_ || compacted_.version() != manifest_.version()) {
    return FailedPrecondition(dir_ + ": no compacted full snapshot of the published version " +
                              std::to_string(manifest_.version()) + " is adopted" +
                              (has_compacted_ ? " (the adopted one is of version " +
                                                    std::to_string(compacted_.version()) + ")"
                                              : std::string()));
  }
  // The published version's manifest again, its model now read from the
  // compacted full: the same version, lineage, watermark and clocks.
  proto::ExportManifest next = manifest_;
  *next.mutable_full() = compacted_;
  next.clear_deltas();
  return Commit(std::move(next), /*starts_chain=*/true);
}

std::string ExportWriter::BeginCompaction(proto::ExportManifest* chain) {
  if (!compacting_.empty() || manifest_.full().name().empty() || manifest_.deltas_size() == 0 ||
      needs_full_ || manifest_.lineage() == 0 ||
      (has_compacted_ && compacted_.version() == manifest_.version())) {
    return "";
  }
  // After an adoption not yet published, compact from the chain as
  // published (LATEST); the adopted one is replaced.
  compacting_ = SnapshotFileName(Snapshot::Kind::kFull, manifest_.version());
  compacting_lineage_ = manifest_.lineage();
  *chain = manifest_;
  return compacting_;
}

Status ExportWriter::AdoptCompactedFull(const proto::ExportFile& entry) {
  const std::string begun = compacting_;
  compacting_.clear();
  if (begun.empty() || entry.name() != begun) {
    return FailedPrecondition(dir_ + ": compacted full " + entry.name() +
                              " was not begun (BeginCompaction: '" + begun + "')");
  }
  if (manifest_.lineage() != compacting_lineage_ || entry.version() > manifest_.version()) {
    return FailedPrecondition(dir_ + ": compacted full " + entry.name() + " of lineage " +
                              std::to_string(compacting_lineage_) +
                              " is stale: a full snapshot started lineage " +
                              std::to_string(manifest_.lineage()));
  }
  compacted_ = entry;
  has_compacted_ = true;
  return Status::OK();
}

void ExportWriter::AbandonCompaction() { compacting_.clear(); }

Status ExportWriter::Retain() {
  std::unordered_set<std::string> keep;
  if (!compacting_.empty()) {
    keep.insert(compacting_);
    keep.insert(compacting_ + kTmpSuffix);
  }
  if (has_compacted_) keep.insert(compacted_.name());
  for (const proto::ExportManifest& m : chains_) {
    keep.insert(m.full().name());
    for (const auto& d : m.deltas()) keep.insert(d.name());
    keep.insert(ManifestFileName(m.version()));
  }
  FRESHET_ASSIGN_OR_RETURN(const std::vector<std::string> names, ListDirectory(dir_));
  Status result;
  for (const std::string& n : names) {
    uint64_t v;
    bool tmp;
    if (!ParseExportFileName(n, &v, &tmp) || keep.count(n) > 0) continue;
    const std::string path = ExportPath(dir_, n);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT && result.ok()) {
      const int err = errno;
      result =
          Internal(path + ": unlink failed: " + std::strerror(err) + " (" + ErrnoName(err) + ")");
    }
  }
  return result;
}

}  // namespace freshet
