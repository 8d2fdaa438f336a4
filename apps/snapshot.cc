// freshet_snapshot: inspects export directories and .snap files (see
// exporter/snapshot_format.h and docs/SNAPSHOT_FORMAT.md).
//
//   freshet_snapshot info DIR          what LATEST names: version, watermark,
//                                      tables (rows, dims), chain files
//   freshet_snapshot verify DIR|FILE   checks LATEST, the manifest and every
//                                      file of the current chain (or one file)
//   freshet_snapshot diff A B          compares two models (dirs or files)
//
// Exit status: 0 ok / identical, 1 corrupt / different, 2 usage or I/O error.
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/logging.h"
#include "exporter/export_dir.h"
#include "exporter/model_loader.h"
#include "exporter/snapshot_format.h"

DECLARE_bool(help);
DEFINE_double(tolerance, 0.0,
              "diff: largest absolute difference of a value still counted as equal");
DEFINE_int32(examples, 5, "diff: how many differing keys to print per table");
DEFINE_bool(all, false,
            "verify: also check the older retained chains (every manifest-*.pb in DIR)");

namespace freshet {
namespace {

constexpr char kUsage[] =
    "inspects freshet export directories and .snap files.\n"
    "\n"
    "  freshet_snapshot info DIR\n"
    "      the model LATEST names: version, watermark (and as UTC), when it was\n"
    "      published and how long ago, the job, every table with its row count\n"
    "      and dim after loading, dense param count, and the chain's files.\n"
    "  freshet_snapshot verify DIR | FILE.snap\n"
    "      checks LATEST, the manifest and every file of the current chain\n"
    "      (size and checksum against the manifest, structure, trailer) and\n"
    "      that the chain applies; prints 'OK ...' or names the bad file.\n"
    "      With --all, also every older retained chain. A FILE.snap is checked\n"
    "      on its own (structure and trailer checksum).\n"
    "  freshet_snapshot diff A B [--tolerance=T] [--examples=N]\n"
    "      compares two models (each an export dir, its latest model, or a\n"
    "      .snap file): dense params, and every row of every table: counts,\n"
    "      keys only on one side, max |a - b|. Two .snap files also compare\n"
    "      their deletion lists.\n"
    "\n"
    "exit status: 0 ok / identical within --tolerance, 1 corrupt / different,\n"
    "2 bad usage or unreadable input.";

std::string HumanBytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30)) {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", b / double(1ull << 30));
  } else if (b >= (1ull << 20)) {
    std::snprintf(buf, sizeof(buf), "%.2f MiB", b / double(1ull << 20));
  } else if (b >= (1ull << 10)) {
    std::snprintf(buf, sizeof(buf), "%.1f KiB", b / 1024.0);
  } else {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 " B", b);
  }
  return buf;
}

std::string UtcTime(int64_t unix_s) {
  const std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return "?";
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string UtcTimeMs(int64_t unix_ms) {
  char ms[8];
  std::snprintf(ms, sizeof(ms), ".%03d", static_cast<int>(((unix_ms % 1000) + 1000) % 1000));
  std::string s = UtcTime(unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000);
  const size_t sp = s.rfind(' ');
  return sp == std::string::npos ? s : s.substr(0, sp) + ms + s.substr(sp);
}

std::string Age(int64_t unix_ms) {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const double s = (now - unix_ms) / 1000.0;
  char buf[48];
  if (s < 0) {
    std::snprintf(buf, sizeof(buf), "%.1f s in the future", -s);
  } else if (s < 120) {
    std::snprintf(buf, sizeof(buf), "%.1f s ago", s);
  } else if (s < 7200) {
    std::snprintf(buf, sizeof(buf), "%.1f min ago", s / 60);
  } else if (s < 172800) {
    std::snprintf(buf, sizeof(buf), "%.1f h ago", s / 3600);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f days ago", s / 86400);
  }
  return buf;
}

bool IsDir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

const char* KindName(Snapshot::Kind k) { return k == Snapshot::Kind::kFull ? "full" : "delta"; }

void PrintFileLine(const proto::ExportFile& f) {
  std::printf("  %-28s version %-10" PRIu64 " watermark %-12" PRId64 " %10s  created %s\n",
              f.name().c_str(), f.version(), f.watermark(), HumanBytes(f.size()).c_str(),
              UtcTimeMs(f.created_unix_ms()).c_str());
}

// ---- info ---------------------------------------------------------------------

int Info(const std::string& dir) {
  auto m = ReadLatestManifest(dir);
  if (!m.ok()) {
    std::printf("FAILED %s\n", m.status().ToString().c_str());
    return 1;
  }
  std::printf("directory     %s\n", dir.c_str());
  std::printf("manifest      %s\n", ManifestFileName(m->version()).c_str());
  std::printf("version       %" PRIu64 "\n", m->version());
  std::printf("watermark     %" PRId64 " (%s)\n", m->watermark(), UtcTime(m->watermark()).c_str());
  std::printf("created       %s (%s)\n", UtcTimeMs(m->created_unix_ms()).c_str(),
              Age(m->created_unix_ms()).c_str());
  if (m->ingest_wall_ms() != 0) {
    std::printf("read by       %s (%s)\n", UtcTimeMs(m->ingest_wall_ms()).c_str(),
                Age(m->ingest_wall_ms()).c_str());
  }
  if (m->label_wall_ms() != 0) {
    std::printf("labels by     %s (%s)\n", UtcTimeMs(m->label_wall_ms()).c_str(),
                Age(m->label_wall_ms()).c_str());
  }
  std::printf("job           %s%s%s\n",
              m->job().name().empty() ? "(unnamed)" : m->job().name().c_str(),
              m->job().task().empty() ? "" : ", task ", m->job().task().c_str());
  uint64_t chain_bytes = m->full().size();
  for (const auto& d : m->deltas()) chain_bytes += d.size();
  std::printf("chain         1 full + %d deltas, %s\n", m->deltas_size(),
              HumanBytes(chain_bytes).c_str());
  if (m->lineage() != 0) {
    // A full at another version than the lineage's start was compacted.
    std::printf(
        "lineage       from the full collected at version %" PRIu64 "%s\n", m->lineage(),
        m->full().version() != m->lineage() ? " (this full: compacted from the chain)" : "");
  }
  PrintFileLine(m->full());
  for (const auto& d : m->deltas()) PrintFileLine(d);
  // Older chains kept by retention (the newest manifest of each).
  std::error_code ec;
  std::vector<std::string> older;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string n = entry.path().filename().string();
    if (n.rfind("manifest-", 0) == 0 && n.size() > 3 && n.substr(n.size() - 3) == ".pb" &&
        n != ManifestFileName(m->version())) {
      older.push_back(n);
    }
  }
  std::sort(older.begin(), older.end());
  for (const std::string& n : older) {
    auto om = ReadManifestFile(dir + "/" + n);
    if (!om.ok()) {
      std::printf("older chain   %s: %s\n", n.c_str(), om.status().ToString().c_str());
      continue;
    }
    uint64_t bytes = om->full().size();
    for (const auto& d : om->deltas()) bytes += d.size();
    std::printf("older chain   %s: %s + %d deltas, version %" PRIu64 ", %s\n", n.c_str(),
                om->full().name().c_str(), om->deltas_size(), om->version(),
                HumanBytes(bytes).c_str());
  }

  auto loaded = LoadLatestExport(dir);
  if (!loaded.ok()) {
    std::printf("load          FAILED %s\n", loaded.status().ToString().c_str());
    return 1;
  }
  const LoadedExport& e = **loaded;
  if (e.manifest.version() != m->version()) {
    std::printf("(LATEST moved on to version %" PRIu64 " while loading)\n", e.manifest.version());
  }
  std::printf("dense params  %zu\n", e.dense.size());
  std::map<std::string, const LoadedTable*> sorted;
  for (const auto& [name, t] : e.tables) sorted[name] = &t;
  std::printf("tables        %zu\n", sorted.size());
  uint64_t rows = 0;
  for (const auto& [name, t] : sorted) {
    std::printf("  %-28s rows %-12zu dim %d\n", name.c_str(), t->size(), t->dim());
    rows += t->size();
  }
  std::printf("rows          %" PRIu64 "\n", rows);
  return 0;
}

// ---- verify -------------------------------------------------------------------

// Checks every file `m` names; returns "" or the problem.
std::string VerifyChain(const std::string& dir, const proto::ExportManifest& m, uint64_t* rows) {
  auto check = [&](const proto::ExportFile& f, Snapshot::Kind want) -> std::string {
    auto snap = ReadExportFile(dir, f);
    if (!snap.ok()) return snap.status().ToString();
    if (snap->kind != want) {
      return dir + "/" + f.name() + ": is a " + KindName(snap->kind) +
             " snapshot, the manifest lists it as a " + KindName(want);
    }
    for (const auto& t : snap->tables) *rows += t.keys.size();
    return "";
  };
  std::string problem = check(m.full(), Snapshot::Kind::kFull);
  for (int i = 0; problem.empty() && i < m.deltas_size(); ++i) {
    problem = check(m.deltas(i), Snapshot::Kind::kDelta);
  }
  return problem;
}

int VerifyFile(const std::string& path) {
  auto snap = ReadSnapshotFile(path);
  if (!snap.ok()) {
    std::printf("FAILED %s\n", snap.status().ToString().c_str());
    return 1;
  }
  uint64_t rows = 0, deletions = 0;
  for (const auto& t : snap->tables) {
    rows += t.keys.size();
    deletions += t.deleted.size();
  }
  std::printf("OK %s: %s snapshot, version %" PRIu64 ", watermark %" PRId64 ", %zu tables, %" PRIu64
              " rows, %" PRIu64 " deletions, %zu dense params\n",
              path.c_str(), KindName(snap->kind), snap->version, snap->watermark,
              snap->tables.size(), rows, deletions, snap->has_dense ? snap->dense.size() : 0);
  return 0;
}

int VerifyDir(const std::string& dir) {
  auto m = ReadLatestManifest(dir);
  if (!m.ok()) {
    std::printf("FAILED %s\n", m.status().ToString().c_str());
    return 1;
  }
  uint64_t file_rows = 0;
  std::string problem = VerifyChain(dir, *m, &file_rows);
  if (!problem.empty()) {
    std::printf("FAILED %s\n", problem.c_str());
    return 1;
  }
  // The chain must also apply (dims agree with the job and each other).
  auto loaded = LoadLatestExport(dir);
  if (!loaded.ok()) {
    std::printf("FAILED %s\n", loaded.status().ToString().c_str());
    return 1;
  }
  uint64_t rows = 0;
  for (const auto& [name, t] : (*loaded)->tables) rows += t.size();
  int older = 0;
  if (FLAGS_all) {
    std::error_code ec;
    std::vector<std::string> manifests;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      const std::string n = e.path().filename().string();
      if (n.rfind("manifest-", 0) == 0 && n.size() > 3 && n.substr(n.size() - 3) == ".pb" &&
          n != ManifestFileName(m->version())) {
        manifests.push_back(n);
      }
    }
    std::sort(manifests.begin(), manifests.end());
    for (const std::string& n : manifests) {
      auto om = ReadManifestFile(dir + "/" + n);
      if (!om.ok()) {
        std::printf("FAILED %s\n", om.status().ToString().c_str());
        return 1;
      }
      uint64_t r = 0;
      problem = VerifyChain(dir, *om, &r);
      if (!problem.empty()) {
        std::printf("FAILED %s (chain of %s)\n", problem.c_str(), n.c_str());
        return 1;
      }
      ++older;
    }
  }
  std::printf("OK %s: version %" PRIu64 " (%s), 1 full + %d deltas verified, %zu tables, %" PRIu64
              " rows, %zu dense params",
              dir.c_str(), m->version(), ManifestFileName(m->version()).c_str(), m->deltas_size(),
              (*loaded)->tables.size(), rows, (*loaded)->dense.size());
  if (FLAGS_all) std::printf(", %d older manifests verified", older);
  std::printf("\n");
  return 0;
}

// ---- diff ---------------------------------------------------------------------

struct Model {
  std::string label;
  bool from_file = false;
  std::vector<float> dense;
  std::map<std::string, LoadedTable> tables;
  std::map<std::string, std::set<uint64_t>> deleted;  // files only
};

StatusOr<Model> LoadModel(const std::string& path) {
  Model m;
  m.label = path;
  if (IsDir(path)) {
    FRESHET_ASSIGN_OR_RETURN(auto e, LoadLatestExport(path));
    m.dense = e->dense;
    for (const auto& [name, t] : e->tables) m.tables[name] = t;
    m.label += " (version " + std::to_string(e->manifest.version()) + ")";
    return m;
  }
  FRESHET_ASSIGN_OR_RETURN(Snapshot s, ReadSnapshotFile(path));
  m.from_file = true;
  m.label += std::string(" (") + KindName(s.kind) + ", version " + std::to_string(s.version) + ")";
  m.dense = std::move(s.dense);
  for (SnapshotTable& st : s.tables) {
    LoadedTable t(st.dim);
    t.Build(st.keys.data(), st.values.data(), st.keys.size());  // a repeated key: last row
    m.tables[st.name] = std::move(t);
    m.deleted[st.name].insert(st.deleted.begin(), st.deleted.end());
  }
  return m;
}

double AbsDiff(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) {
    return std::isnan(a) && std::isnan(b) ? 0.0 : std::numeric_limits<double>::infinity();
  }
  if (a == b) return 0.0;  // also equal infinities
  return std::fabs(static_cast<double>(a) - static_cast<double>(b));
}

void PrintKeys(const char* what, const std::vector<uint64_t>& keys) {
  if (keys.empty()) return;
  std::printf("    %zu keys %s:", keys.size(), what);
  for (size_t i = 0; i < keys.size() && static_cast<int>(i) < FLAGS_examples; ++i) {
    std::printf(" %" PRIu64, keys[i]);
  }
  std::printf("%s\n", static_cast<int>(keys.size()) > FLAGS_examples ? " ..." : "");
}

int Diff(const std::string& a_path, const std::string& b_path) {
  auto a = LoadModel(a_path);
  auto b = LoadModel(b_path);
  if (!a.ok() || !b.ok()) {
    std::fprintf(stderr, "freshet_snapshot diff: %s\n",
                 (!a.ok() ? a.status() : b.status()).ToString().c_str());
    return 2;
  }
  const double tol = FLAGS_tolerance;
  bool same = true;
  std::printf("A: %s\nB: %s\n", a->label.c_str(), b->label.c_str());

  if (a->dense.size() != b->dense.size()) {
    std::printf("dense: %zu vs %zu params\n", a->dense.size(), b->dense.size());
    same = false;
  } else {
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < a->dense.size(); ++i) {
      const double d = AbsDiff(a->dense[i], b->dense[i]);
      if (d > worst) {
        worst = d;
        at = i;
      }
    }
    std::printf("dense: %zu params, max |diff| %.6g", a->dense.size(), worst);
    if (worst > 0) std::printf(" at [%zu]", at);
    std::printf("\n");
    if (worst > tol) same = false;
  }

  std::set<std::string> names;
  for (const auto& [n, t] : a->tables) names.insert(n);
  for (const auto& [n, t] : b->tables) names.insert(n);
  for (const std::string& name : names) {
    auto ia = a->tables.find(name);
    auto ib = b->tables.find(name);
    if (ia == a->tables.end() || ib == b->tables.end()) {
      const bool in_a = ia != a->tables.end();
      std::printf("table %s: only in %s (%zu rows)\n", name.c_str(), in_a ? "A" : "B",
                  in_a ? ia->second.size() : ib->second.size());
      same = false;
      continue;
    }
    const LoadedTable& ta = ia->second;
    const LoadedTable& tb = ib->second;
    if (ta.dim() != tb.dim()) {
      std::printf("table %s: dim %d vs %d (%zu vs %zu rows)\n", name.c_str(), ta.dim(), tb.dim(),
                  ta.size(), tb.size());
      same = false;
      continue;
    }
    std::vector<uint64_t> only_a, only_b;
    double worst = 0;
    uint64_t worst_key = 0;
    size_t differing = 0;
    std::vector<float> wb(static_cast<size_t>(ta.dim()));
    ta.ForEach([&](uint64_t key, const float* wa) {
      if (!tb.Lookup(key, wb.data())) {
        only_a.push_back(key);
        return;
      }
      double row = 0;
      for (int j = 0; j < ta.dim(); ++j) row = std::max(row, AbsDiff(wa[j], wb[j]));
      if (row > tol) ++differing;
      if (row > worst) {
        worst = row;
        worst_key = key;
      }
    });
    tb.ForEach([&](uint64_t key, const float*) {
      if (!ta.contains(key)) only_b.push_back(key);
    });
    std::sort(only_a.begin(), only_a.end());
    std::sort(only_b.begin(), only_b.end());
    std::printf("table %s: dim %d, rows %zu vs %zu, only in A %zu, only in B %zu, max |diff| %.6g",
                name.c_str(), ta.dim(), ta.size(), tb.size(), only_a.size(), only_b.size(), worst);
    if (worst > 0)
      std::printf(" (key %" PRIu64 ", %zu rows above tolerance)", worst_key, differing);
    std::printf("\n");
    PrintKeys("only in A", only_a);
    PrintKeys("only in B", only_b);
    if (!only_a.empty() || !only_b.empty() || worst > tol) same = false;
  }

  if (a->from_file && b->from_file) {
    std::set<std::string> dnames;
    for (const auto& [n, s] : a->deleted) dnames.insert(n);
    for (const auto& [n, s] : b->deleted) dnames.insert(n);
    for (const std::string& name : dnames) {
      static const std::set<uint64_t> kEmpty;
      const auto& da = a->deleted.count(name) ? a->deleted.at(name) : kEmpty;
      const auto& db = b->deleted.count(name) ? b->deleted.at(name) : kEmpty;
      if (da == db) continue;
      std::vector<uint64_t> only_a, only_b;
      std::set_difference(da.begin(), da.end(), db.begin(), db.end(), std::back_inserter(only_a));
      std::set_difference(db.begin(), db.end(), da.begin(), da.end(), std::back_inserter(only_b));
      std::printf("table %s deletions: %zu vs %zu\n", name.c_str(), da.size(), db.size());
      PrintKeys("deleted only in A", only_a);
      PrintKeys("deleted only in B", only_b);
      same = false;
    }
  }
  std::printf("%s\n", same ? "IDENTICAL" : "DIFFERENT");
  return same ? 0 : 1;
}

int Usage() {
  std::fprintf(stderr,
               "usage: freshet_snapshot info DIR | verify DIR|FILE.snap | diff A B\n"
               "       (freshet_snapshot --help for details)\n");
  return 2;
}

}  // namespace
}  // namespace freshet

int main(int argc, char** argv) {
  gflags::SetUsageMessage(freshet::kUsage);
  gflags::ParseCommandLineNonHelpFlags(&argc, &argv, /*remove_flags=*/true);
  if (FLAGS_help || (argc >= 2 && (std::string(argv[1]) == "help"))) {
    std::printf("freshet_snapshot: %s\n\nflags:\n", freshet::kUsage);
    std::printf(
        "  --tolerance=T  diff: largest absolute difference still counted as equal"
        " (default 0)\n");
    std::printf(
        "  --examples=N   diff: how many differing keys to print per table"
        " (default 5)\n");
    std::printf("  --all          verify: also check the older retained chains\n");
    return 0;
  }
  gflags::HandleCommandLineHelpFlags();
  freshet::InitLogging(argv[0]);  // stderr unless --log_dir
  if (argc < 2) return freshet::Usage();
  const std::string cmd = argv[1];
  if (cmd == "info" && argc == 3) return freshet::Info(argv[2]);
  if (cmd == "verify" && argc == 3) {
    return freshet::IsDir(argv[2]) ? freshet::VerifyDir(argv[2]) : freshet::VerifyFile(argv[2]);
  }
  if (cmd == "diff" && argc == 4) return freshet::Diff(argv[2], argv[3]);
  return freshet::Usage();
}
