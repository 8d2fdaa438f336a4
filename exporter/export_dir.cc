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
constexpr char kDurable[] = "DURABLE";
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
    if (n == kLatest || n == kDurable) {
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

namespace {
// LATEST or DURABLE: one line naming a manifest file.
StatusOr<std::string> ReadPointerFile(const std::string& dir, const char* pointer) {
  const std::string path = ExportPath(dir, pointer);
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
}  // namespace

StatusOr<std::string> ReadLatestManifestName(const std::string& dir) {
  return ReadPointerFile(dir, kLatest);
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

StatusOr<std::unique_ptr<ExportWriter>> ExportWriter::Open(
    const std::string& dir, const proto::JobConfig& job, int retain_full,
    proto::ExportConfig::Durability durability) {
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
  w->durability_ = durability;
  FRESHET_RETURN_IF_ERROR(w->Recover(names));
  if (durability == proto::ExportConfig::ASYNC) {
    w->flusher_ = std::thread([p = w.get()] { p->FlushLoop(); });
  }
  return w;
}

Status ExportWriter::Recover(const std::vector<std::string>& names) {
  const bool has_latest = std::find(names.begin(), names.end(), kLatest) != names.end();
  const bool has_durable = std::find(names.begin(), names.end(), kDurable) != names.end();
  if (!has_latest && !has_durable) return Status::OK();  // nothing published

  StatusOr<proto::ExportManifest> latest =
      has_latest
          ? ReadLatestManifest(dir_)
          : StatusOr<proto::ExportManifest>(NotFound(ExportPath(dir_, kLatest) + ": missing"));
  if (has_durable) {
    FRESHET_ASSIGN_OR_RETURN(const std::string durable_name, ReadPointerFile(dir_, kDurable));
    StatusOr<proto::ExportManifest> durable = ReadManifestFile(ExportPath(dir_, durable_name));
    if (!durable.ok()) {
      return DataLoss(ExportPath(dir_, kDurable) + " names " + durable_name +
                      ", which is not readable: " + durable.status().ToString());
    }
    // What LATEST has beyond DURABLE may not have survived a power loss:
    // its manifest, and every file DURABLE's manifest does not list.
    Status survived = latest.status();
    if (latest.ok() && latest->version() >= durable->version()) {
      std::unordered_set<std::string> durable_files;
      durable_files.insert(durable->full().name());
      for (const auto& d : durable->deltas()) durable_files.insert(d.name());
      std::vector<proto::ExportFile> check;
      if (!durable_files.count(latest->full().name())) check.push_back(latest->full());
      for (const auto& d : latest->deltas()) {
        if (!durable_files.count(d.name())) check.push_back(d);
      }
      for (const proto::ExportFile& f : check) {
        if (!survived.ok()) break;
        survived = ReadExportFile(dir_, f).status();
      }
    } else if (latest.ok()) {
      survived = DataLoss(ExportPath(dir_, kLatest) + " names version " +
                          std::to_string(latest->version()) + ", older than DURABLE's " +
                          std::to_string(durable->version()));
    }
    if (survived.ok()) {
      manifest_ = std::move(*latest);
      // Make what LATEST has beyond DURABLE durable (a killed process leaves
      // it in the page cache only): by the flusher, or now.
      if (manifest_.version() != durable->version()) {  // same version: the same file
        ToFlush f;
        f.manifest = manifest_;
        f.files.push_back(manifest_.full().name());
        for (const auto& d : manifest_.deltas()) f.files.push_back(d.name());
        f.files.push_back(ManifestFileName(manifest_.version()));
        f.published = std::chrono::steady_clock::now();
        if (durability_ == proto::ExportConfig::ASYNC) {
          MutexLock l(&flush_mu_);
          durable_ = *durable;
          to_flush_.push_back(std::move(f));
        } else {
          FRESHET_RETURN_IF_ERROR(FlushBatch({f}));
        }
      } else {
        MutexLock l(&flush_mu_);
        durable_ = *durable;
      }
    } else {
      // A power loss took versions the flusher had not reached: serve the
      // durable one, and start a new lineage above every version published
      // (a reader that saw a lost version must not mistake a new one for it).
      uint64_t highest = durable->version();
      for (const std::string& n : names) {
        uint64_t v;
        bool tmp;
        if (ParseExportFileName(n, &v, &tmp)) highest = std::max(highest, v);
      }
      LOG(WARNING) << ExportPath(dir_, kLatest) << " does not survive (" << survived
                   << "); going back to " << durable_name << " (version " << durable->version()
                   << ", the newest durable one, ExportConfig.durability ASYNC); "
                   << (highest == durable->version() + 1
                           ? "version " + std::to_string(highest) + " is"
                           : "versions " + std::to_string(durable->version() + 1) + "-" +
                                 std::to_string(highest) + " are")
                   << " lost, and the next publish is a full snapshot above version " << highest;
      FRESHET_RETURN_IF_ERROR(WriteFileAtomic(ExportPath(dir_, kLatest), durable_name + "\n"));
      manifest_ = std::move(*durable);
      lost_version_ = highest;
      needs_full_ = true;
      MutexLock l(&flush_mu_);
      durable_ = manifest_;
    }
    if (durability_ == proto::ExportConfig::SYNC) {
      // Every publish from now on is durable when LATEST moves: a DURABLE
      // left behind would only go stale.
      if (::unlink(ExportPath(dir_, kDurable).c_str()) != 0 && errno != ENOENT) {
        LOG(WARNING) << ExportPath(dir_, kDurable) << ": unlink failed: " << std::strerror(errno);
      }
    }
  } else {
    // Continue the published chain (SYNC history: LATEST is durable).
    FRESHET_RETURN_IF_ERROR(latest.status());
    manifest_ = std::move(*latest);
    if (durability_ == proto::ExportConfig::ASYNC) {
      MutexLock l(&flush_mu_);
      durable_ = manifest_;
    }
  }
  const proto::ExportManifest& cur = manifest_;
  if (!SameJobTables(cur.job(), job_)) {
    LOG(WARNING) << dir_ << ": the job's tables differ from the published manifest's; the next "
                 << "publish must be a full snapshot";
    needs_full_ = true;
  }
  // Older retained chains: the newest manifest of each, by its full file.
  std::map<uint64_t, proto::ExportManifest> older;  // full version -> newest manifest
  for (const std::string& n : names) {
    if (!IsManifestName(n)) continue;
    uint64_t v;
    bool tmp;
    ParseExportFileName(n, &v, &tmp);
    if (v >= cur.version()) continue;  // the current one, or never published
    auto m = ReadManifestFile(ExportPath(dir_, n));
    if (!m.ok()) {
      LOG(WARNING) << "ignoring " << m.status();
      continue;
    }
    if (m->full().version() >= cur.full().version()) continue;  // current chain
    auto [it, inserted] = older.try_emplace(m->full().version(), *m);
    if (!inserted && m->version() > it->second.version()) it->second = std::move(*m);
  }
  for (auto& [v, m] : older) chains_.push_back(std::move(m));
  chains_.push_back(cur);
  while (static_cast<int>(chains_.size()) > retain_full_) chains_.erase(chains_.begin());
  return Status::OK();
}

ExportWriter::~ExportWriter() {
  if (!flusher_.joinable()) return;
  {
    MutexLock l(&flush_mu_);
    flush_stop_ = true;
  }
  flush_cv_.SignalAll();
  flusher_.join();
}

void ExportWriter::FlushLoop() {
  while (true) {
    std::vector<ToFlush> batch;
    bool failed;
    {
      MutexLock l(&flush_mu_);
      while (to_flush_.empty() && !flush_stop_) flush_cv_.Wait(&flush_mu_);
      if (to_flush_.empty()) return;  // stopping, and everything is flushed
      for (ToFlush& f : to_flush_) {
        flushing_.push_back(f.manifest);
        batch.push_back(std::move(f));
      }
      to_flush_.clear();
      // After an error nothing is made durable any more: Publish returns it.
      failed = !flush_error_.ok();
    }
    Status st = failed ? Status::OK() : FlushBatch(batch);
    const auto now = std::chrono::steady_clock::now();
    {
      MutexLock l(&flush_mu_);
      flushing_.clear();
      if (failed) {
        // dropped
      } else if (st.ok()) {
        durable_ = batch.back().manifest;
        durable_lag_ms_.push_back(
            std::chrono::duration<double, std::milli>(now - batch.front().published).count());
      } else {
        LOG(ERROR) << dir_ << ": making version " << batch.back().manifest.version()
                   << " durable failed, so no later publish is accepted: " << st;
        flush_error_ = st.WithContext(dir_ + ": making version " +
                                      std::to_string(batch.back().manifest.version()) +
                                      " durable (ExportConfig.durability ASYNC)");
      }
    }
    flush_cv_.SignalAll();
  }
}

Status ExportWriter::FlushBatch(const std::vector<ToFlush>& batch) {
  // Every file of the batch: Retain() keeps them until it is done, so none
  // may be missing. A manifest name repeats when PublishCompacted rewrote
  // it; one fsync covers the file as it is now.
  std::unordered_set<std::string> done;
  for (const ToFlush& f : batch) {
    for (const std::string& name : f.files) {
      if (name.empty() || !done.insert(name).second) continue;
      FRESHET_RETURN_IF_ERROR(SyncFile(ExportPath(dir_, name)));
    }
  }
  FRESHET_RETURN_IF_ERROR(SyncFile(ExportPath(dir_, kLatest)));
  FRESHET_RETURN_IF_ERROR(SyncDirectory(dir_));
  // Every file the newest manifest names is durable, and so is its rename.
  return WriteFileAtomic(ExportPath(dir_, kDurable),
                         ManifestFileName(batch.back().manifest.version()) + "\n");
}

Status ExportWriter::WaitDurable() {
  if (durability_ != proto::ExportConfig::ASYNC) return Status::OK();
  MutexLock l(&flush_mu_);
  while ((!to_flush_.empty() || !flushing_.empty()) && flush_error_.ok()) {
    flush_cv_.Wait(&flush_mu_);
  }
  return flush_error_;
}

std::vector<double> ExportWriter::TakeDurableLagMs() {
  MutexLock l(&flush_mu_);
  std::vector<double> out;
  out.swap(durable_lag_ms_);
  return out;
}

Status ExportWriter::Publish(const Snapshot& snap) {
  {
    MutexLock l(&flush_mu_);
    if (!flush_error_.ok()) return flush_error_;
  }
  const bool have_chain = !manifest_.full().name().empty();
  if ((have_chain || lost_version_ > 0) && snap.version <= highest_version()) {
    return FailedPrecondition(
        dir_ + ": version " + std::to_string(snap.version) +
        " does not increase (published: " + std::to_string(highest_version()) + ")");
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
  // SYNC: the snapshot's rename is made durable by the manifest's directory
  // fsync (same directory, before LATEST is replaced): 5 fsyncs a publish,
  // not 6. ASYNC: none here; the flusher makes it durable.
  const bool async = durability_ == proto::ExportConfig::ASYNC;
  FRESHET_RETURN_IF_ERROR(
      WriteSnapshotFile(snap, ExportPath(dir_, SnapshotFileName(snap.kind, snap.version)), &entry,
                        async ? FileSync::kNone : FileSync::kFile));
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
  return Commit(std::move(next), snap.kind == Snapshot::Kind::kFull || rebased, entry.name());
}

Status ExportWriter::Commit(proto::ExportManifest next, bool starts_chain, std::string written_file,
                            bool rewrite) {
  next.set_created_unix_ms(NowUnixMs());
  *next.mutable_job() = job_;
  const std::string manifest_name = ManifestFileName(next.version());
  const std::string data = EncodeManifestFile(next);
  const bool async = durability_ == proto::ExportConfig::ASYNC;
  const FileSync sync = async ? FileSync::kNone : FileSync::kFileAndDir;
  // SYNC: its directory fsync also makes a snapshot file written just
  // before it (FileSync::kFile, Publish) durable: both renames before
  // LATEST's.
  FRESHET_RETURN_IF_ERROR(WriteFileAtomic(ExportPath(dir_, manifest_name), data,
                                          rewrite ? FileSync::kFileAndDir : sync));
  bytes_written_ += static_cast<int64_t>(data.size());
  // The commit point: LATEST names the new manifest.
  const std::string latest = manifest_name + "\n";
  FRESHET_RETURN_IF_ERROR(WriteFileAtomic(ExportPath(dir_, kLatest), latest, sync));
  bytes_written_ += static_cast<int64_t>(latest.size());
  if (async) {
    ToFlush f;
    f.manifest = next;
    if (!written_file.empty()) f.files.push_back(std::move(written_file));
    f.files.push_back(manifest_name);
    f.published = std::chrono::steady_clock::now();
    {
      MutexLock l(&flush_mu_);
      to_flush_.push_back(std::move(f));
    }
    flush_cv_.SignalAll();
  }

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
  // The compacted full is durable already (the compactor writes it with
  // every fsync); the manifest replaces one of the same name.
  return Commit(std::move(next), /*starts_chain=*/true, "", /*rewrite=*/true);
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
  auto keep_manifest = [&keep](const proto::ExportManifest& m) {
    keep.insert(m.full().name());
    for (const auto& d : m.deltas()) keep.insert(d.name());
    keep.insert(ManifestFileName(m.version()));
  };
  for (const proto::ExportManifest& m : chains_) keep_manifest(m);
  if (durability_ == proto::ExportConfig::ASYNC) {
    // What a power loss falls back to, and what the flusher is yet to sync.
    MutexLock l(&flush_mu_);
    if (durable_.version() > 0) keep_manifest(durable_);
    for (const ToFlush& f : to_flush_) keep_manifest(f.manifest);
    for (const proto::ExportManifest& m : flushing_) keep_manifest(m);
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
