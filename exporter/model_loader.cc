#include "exporter/model_loader.h"

#include <memory>
#include <utility>

#include "common/config.h"
#include "exporter/export_dir.h"
#include "exporter/snapshot_format.h"

namespace freshet {
namespace {

bool SameFile(const proto::ExportFile& a, const proto::ExportFile& b) {
  return a.name() == b.name() && a.size() == b.size() && a.checksum() == b.checksum() &&
         a.version() == b.version();
}

// The serving storage of job table `name` (16-bit tables stay 16-bit).
ServedTable::Storage StorageFor(const proto::JobConfig& job, const std::string& name) {
  for (const auto& t : job.tables().tables()) {
    if (t.name() == name) return ServedTable::StorageOf(t.storage());
  }
  return ServedTable::Storage::kFp32;
}

// Applies one verified delta of the chain to `out`.
Status ApplyDelta(const std::string& path, Snapshot* snap, LoadedExport* out) {
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
    if (it == out->tables.end()) {
      it = out->tables
               .emplace(st.name, ServedTable(st.dim, StorageFor(out->manifest.job(), st.name)))
               .first;
    } else if (it->second.dim() != st.dim) {
      return DataLoss(path + ": table '" + st.name + "' has dim " + std::to_string(st.dim) +
                      ", the model so far has " + std::to_string(it->second.dim()));
    }
    it->second.Apply(st.deleted.data(), st.deleted.size(), st.keys.data(), st.values.data(),
                     st.keys.size());
  }
  if (snap->has_dense) {
    if (!out->dense.empty() && out->dense.size() != snap->dense.size()) {
      return DataLoss(path + ": " + std::to_string(snap->dense.size()) +
                      " dense params, the model so far has " + std::to_string(out->dense.size()));
    }
    out->dense = std::move(snap->dense);
  }
  return Status::OK();
}

// Loads the full snapshot `entry` into out->tables and out->dense in two
// streaming passes over the file (StreamSnapshotFile): the first verifies
// it and counts each table's keys per leaf, the second puts every row
// straight into its leaf (ServedTable::StreamBuilder). Peak memory is the
// model being built plus a read buffer: the file's rows are never held
// (holding them, as ReadSnapshotFile does, doubled the peak: issue 14).
Status LoadFullSnapshot(const std::string& path, const proto::ExportFile& entry,
                        LoadedExport* out) {
  const proto::JobConfig& job = out->manifest.job();
  std::unordered_map<std::string, std::unique_ptr<ServedTable::StreamBuilder>> builders;
  class Pass : public SnapshotRowSink {
   public:
    Pass(const proto::JobConfig& job, bool counting,
         std::unordered_map<std::string, std::unique_ptr<ServedTable::StreamBuilder>>* builders)
        : job_(job), counting_(counting), builders_(builders) {}
    Status BeginTable(const std::string& name, int dim, uint64_t upserts) override {
      if (!counting_) {
        auto it = builders_->find(name);
        if (it == builders_->end()) {
          return DataLoss("table '" + name + "' appeared between the passes (file changed?)");
        }
        current_ = it->second.get();
        return Status::OK();
      }
      for (const auto& t : job_.tables().tables()) {
        if (t.name() == name && static_cast<int>(t.dim()) != dim) {
          return DataLoss("table '" + name + "' has dim " + std::to_string(dim) +
                          ", the manifest's job says " + std::to_string(t.dim()));
        }
      }
      auto& b = (*builders_)[name];
      b = std::make_unique<ServedTable::StreamBuilder>(dim, StorageFor(job_, name),
                                                       static_cast<size_t>(upserts));
      current_ = b.get();
      return Status::OK();
    }
    Status Rows(const uint64_t* keys, const float* values, size_t n) override {
      if (counting_) {
        current_->Count(keys, n);
        return Status::OK();
      }
      return current_->Add(keys, values, n);
    }
    Status Deletions(const uint64_t* /*keys*/, size_t n) override {
      if (n == 0) return Status::OK();
      return DataLoss("a full snapshot lists " + std::to_string(n) + " deletions");
    }

   private:
    const proto::JobConfig& job_;
    const bool counting_;
    std::unordered_map<std::string, std::unique_ptr<ServedTable::StreamBuilder>>* builders_;
    ServedTable::StreamBuilder* current_ = nullptr;
  };
  Snapshot header;
  {
    Pass count(job, true, &builders);
    FRESHET_RETURN_IF_ERROR(StreamSnapshotFile(path, &entry, &header, &count));
  }
  if (header.kind != Snapshot::Kind::kFull) {
    return DataLoss(path + ": the manifest lists it as a full snapshot but it is not");
  }
  for (auto& [name, b] : builders) b->StartRows();
  {
    Pass fill(job, false, &builders);
    FRESHET_RETURN_IF_ERROR(StreamSnapshotFile(path, &entry, &header, &fill));
  }
  for (auto& [name, b] : builders) {
    StatusOr<ServedTable> t = b->Finish();
    if (!t.ok()) return t.status().WithContext(path);
    b.reset();  // its counts go before the next table's sort
    out->tables[name] = std::move(*t);
  }
  out->dense = std::move(header.dense);
  return Status::OK();
}

// Builds `out` (its manifest set) from the chain's files: from `base` (the
// model of a prefix of the same chain) plus the deltas it lacks, or, with no
// base, from the full snapshot (streamed, LoadFullSnapshot) and every delta.
// The deltas are read and verified first, the full in its first pass,
// before anything of them is applied.
// `first_delta`: the index in out->manifest's deltas of the first one
// `base` lacks (0 without a base).
Status BuildModel(const std::string& dir, const LoadedExport* base, int first_delta,
                  LoadedExport* out) {
  const proto::ExportManifest& m = out->manifest;
  struct File {
    std::string path;
    Snapshot snap;
  };
  auto read = [&](const proto::ExportFile& entry, Snapshot::Kind want) -> StatusOr<File> {
    File f{ExportPath(dir, entry.name()), Snapshot()};
    FRESHET_ASSIGN_OR_RETURN(f.snap, ReadSnapshotFileForEntry(f.path, entry));
    if (f.snap.kind != want) {
      return DataLoss(f.path + ": the manifest lists it as a " +
                      (want == Snapshot::Kind::kFull ? "full snapshot" : "delta") +
                      " but it is not");
    }
    return f;
  };
  std::vector<File> deltas;
  for (int i = base != nullptr ? first_delta : 0; i < m.deltas_size(); ++i) {
    FRESHET_ASSIGN_OR_RETURN(File f, read(m.deltas(i), Snapshot::Kind::kDelta));
    deltas.push_back(std::move(f));
  }
  if (base != nullptr) {
    // Versions share every part a delta does not touch (ServedTable).
    out->dense = base->dense;
    out->tables = base->tables;
  } else {
    out->tables.clear();
    for (const auto& t : m.job().tables().tables()) {
      if (t.dim() < 1 || t.dim() > kMaxTableDim) {  // ServedTable CHECKs it
        return DataLoss(ExportPath(dir, ManifestFileName(m.version())) + ": job.tables '" +
                        t.name() + "' has dim " + std::to_string(t.dim()) + " (want 1.." +
                        std::to_string(kMaxTableDim) + ")");
      }
      out->tables.emplace(
          t.name(), ServedTable(static_cast<int>(t.dim()), ServedTable::StorageOf(t.storage())));
    }
    FRESHET_RETURN_IF_ERROR(LoadFullSnapshot(ExportPath(dir, m.full().name()), m.full(), out));
  }
  for (File& f : deltas) {
    FRESHET_RETURN_IF_ERROR(ApplyDelta(f.path, &f.snap, out));
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
  return SameJobTables(prev.job(), m.job());
}

// `prev`'s model is on `m`'s lineage at a version m's deltas continue: m's
// full is a compaction of the same lineage at a version <= prev's, every
// delta of m up to prev's version is one prev applied too, and m is not
// older. Returns the index of m's first delta after prev's version, or -1.
int LineageContinuation(const proto::ExportManifest& prev, const proto::ExportManifest& m) {
  if (prev.lineage() == 0 || prev.lineage() != m.lineage()) return -1;
  if (m.full().version() > prev.version() || m.version() < prev.version()) return -1;
  if (!SameJobTables(prev.job(), m.job())) return -1;
  int i = 0;
  for (; i < m.deltas_size() && m.deltas(i).version() <= prev.version(); ++i) {
    bool found = false;
    for (const auto& d : prev.deltas()) found = found || SameFile(d, m.deltas(i));
    if (!found) return -1;
  }
  return i;
}

}  // namespace

StatusOr<std::shared_ptr<const LoadedExport>> LoadExportChain(const std::string& dir,
                                                              const proto::ExportManifest& m) {
  auto out = std::make_shared<LoadedExport>();
  out->manifest = m;
  FRESHET_RETURN_IF_ERROR(BuildModel(dir, nullptr, 0, out.get()));
  return std::shared_ptr<const LoadedExport>(std::move(out));
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
    int first_delta = -1;
    if (previous != nullptr && IsPrefixChain(previous->manifest, m)) {
      if (previous->manifest.deltas_size() == m.deltas_size() &&
          previous->manifest.version() == m.version()) {
        return previous;
      }
      first_delta = previous->manifest.deltas_size();
    } else if (previous != nullptr) {
      // A compacted full of previous's lineage: previous already holds its
      // model (or a later one); only the deltas past previous's version.
      first_delta = LineageContinuation(previous->manifest, m);
    }
    next = std::make_shared<LoadedExport>();  // copy-on-write: *previous stays as is
    next->manifest = std::move(m);
    next->incremental = first_delta >= 0;
    st = first_delta >= 0 ? BuildModel(dir, previous.get(), first_delta, next.get())
                          : BuildModel(dir, nullptr, 0, next.get());
    if (st.ok()) return std::shared_ptr<const LoadedExport>(std::move(next));
    if (st.code() != StatusCode::kNotFound) return st;
    // A chain file is missing: fine if the writer moved LATEST on and retired
    // it meanwhile (start over), data loss otherwise.
    auto now = ReadLatestManifestName(dir);
    if (attempt + 1 < kExportReadAttempts && now.ok() && *now != manifest_name) continue;
    return DataLoss(st.message() + " (listed in " + ExportPath(dir, manifest_name) + ")");
  }
}

}  // namespace freshet
