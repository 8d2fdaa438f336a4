#include "exporter/model_loader.h"

#include <utility>

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
      out->tables.emplace(
          t.name(), ServedTable(static_cast<int>(t.dim()), ServedTable::StorageOf(t.storage())));
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
  return SameJobTables(prev.job(), m.job());
}

}  // namespace

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
    auto now = ReadLatestManifestName(dir);
    if (attempt + 1 < kExportReadAttempts && now.ok() && *now != manifest_name) continue;
    return DataLoss(st.message() + " (listed in " + ExportPath(dir, manifest_name) + ")");
  }
}

}  // namespace freshet
