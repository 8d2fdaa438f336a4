// Fuzz target: what the serving tier reads from an export directory
// (exporter/snapshot_format.h, export_dir.h, model_loader.h): .snap files,
// manifests, LATEST and whole models.
//
// Input byte 0 picks the mode (mod 4):
//   0: the rest is a .snap file for ReadSnapshotFile, as is;
//   1: the same with its checksum trailer repaired, so the structural checks
//      behind the checksum are reached; a file that reads back must write
//      (WriteSnapshotFile) and read again to the same snapshot;
//   2: the rest is a manifest for ReadManifestFile;
//   3: an export directory: the rest is split at "FRSHSPLT" into a manifest
//      file (binary proto::ExportManifest with or without its checksum
//      trailer), the full snapshot and its deltas; the files are written
//      under the names the manifest gives (plain names only), with their
//      manifest entries' size and checksum and the manifest's own trailer
//      repaired when byte 1 is odd, LATEST names the manifest, and
//      LoadLatestExport loads it.
#include <dirent.h>

#include <cstdio>
#include <string>
#include <vector>

#include "exporter/export_dir.h"
#include "exporter/model_loader.h"
#include "exporter/snapshot_format.h"
#include "tests/fuzz/fuzz_util.h"

namespace freshet {
namespace {

bool SameSnapshot(const Snapshot& a, const Snapshot& b) {
  if (a.kind != b.kind || a.version != b.version || a.watermark != b.watermark ||
      a.has_dense != b.has_dense || a.tables.size() != b.tables.size()) {
    return false;
  }
  // Bitwise: NaN payloads must survive too.
  auto same_floats = [](const std::vector<float>& x, const std::vector<float>& y) {
    return x.size() == y.size() &&
           (x.empty() || std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0);
  };
  if (!same_floats(a.dense, b.dense)) return false;
  for (size_t t = 0; t < a.tables.size(); ++t) {
    const SnapshotTable& x = a.tables[t];
    const SnapshotTable& y = b.tables[t];
    if (x.name != y.name || x.dim != y.dim || x.keys != y.keys || x.deleted != y.deleted ||
        !same_floats(x.values, y.values)) {
      return false;
    }
  }
  return true;
}

void ReadSnap(std::string_view bytes, bool repair) {
  const std::string content = repair ? fuzz::WithFnvTrailer(bytes) : std::string(bytes);
  const std::string path = fuzz::WriteFile("input.snap", content.data(), content.size());
  StatusOr<Snapshot> snap = ReadSnapshotFile(path);
  if (!snap.ok()) {
    // Errors name the file.
    FUZZ_CHECK(snap.status().message().find(path) != std::string::npos);
    return;
  }
  if (!repair) return;
  const std::string copy = fuzz::ScratchDir() + "/copy.snap";
  proto::ExportFile entry;
  FUZZ_CHECK(WriteSnapshotFile(*snap, copy, &entry).ok());
  StatusOr<Snapshot> again = ReadSnapshotFile(copy);
  FUZZ_CHECK(again.ok() && SameSnapshot(*snap, *again));
  std::remove(copy.c_str());
}

void ClearDir(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  for (const auto& n : names) std::remove((dir + "/" + n).c_str());
}

bool PlainName(const std::string& n) {
  return !n.empty() && n.size() < 200 && n.find('/') == std::string::npos && n != "." &&
         n != ".." && n.find('\0') == std::string::npos;
}

void LoadDir(fuzz::Input* in) {
  const bool repair = in->Byte() % 2 == 1;
  const std::string dir = fuzz::ScratchDir() + "/export";
  mkdir(dir.c_str(), 0700);
  ClearDir(dir);
  const std::string_view manifest_bytes = in->Until("FRSHSPLT");
  StatusOr<proto::ExportManifest> decoded =
      DecodeManifestFile("fuzz manifest", std::string(manifest_bytes));
  if (!decoded.ok()) return;
  proto::ExportManifest m = std::move(decoded).value();
  std::vector<proto::ExportFile*> entries = {m.mutable_full()};
  for (auto& d : *m.mutable_deltas()) entries.push_back(&d);
  for (proto::ExportFile* e : entries) {
    if (in->done()) break;
    const std::string_view content = in->Until("FRSHSPLT");
    if (!PlainName(e->name()) || e->name() == "LATEST") continue;
    fuzz::WriteFile("export/" + e->name(), content.data(), content.size());
    if (repair) {
      e->set_size(content.size());
      e->set_checksum(SnapshotChecksum(content, content.size()));
    }
  }
  const std::string manifest_name = ManifestFileName(m.version());
  const std::string bytes = repair ? EncodeManifestFile(m) : std::string(manifest_bytes);
  fuzz::WriteFile("export/" + manifest_name, bytes.data(), bytes.size());
  const std::string latest = manifest_name + "\n";
  fuzz::WriteFile("export/LATEST", latest.data(), latest.size());

  auto loaded = LoadLatestExport(dir);
  if (!loaded.ok()) return;
  for (const auto& named : (*loaded)->tables) {
    // Not a structured binding: C++17 lambdas cannot capture one (clang).
    const LoadedTable& table = named.second;
    FUZZ_CHECK(table.dim() > 0);
    size_t rows = 0;
    std::vector<float> row(static_cast<size_t>(table.dim()));
    table.ForEach([&](uint64_t key, const float*) {
      ++rows;
      FUZZ_CHECK(table.Lookup(key, row.data()));
    });
    FUZZ_CHECK(rows == table.size());
  }
}

}  // namespace
}  // namespace freshet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace freshet;
  fuzz::Input in(data, size);
  switch (in.Byte() % 4) {
    case 0:
      ReadSnap(in.Rest(), false);
      break;
    case 1:
      ReadSnap(in.Rest(), true);
      break;
    case 2: {
      const std::string_view rest = in.Rest();
      const std::string path =
          fuzz::WriteFile("manifest-000000000001.pb", rest.data(), rest.size());
      (void)ReadManifestFile(path);
      break;
    }
    case 3:
      LoadDir(&in);
      break;
  }
  return 0;
}
