// Memory and time of the serving tier's full-snapshot load (issue 14:
// serving RSS <= 1.25 x the bytes it serves): writes an export directory
// holding one full snapshot of --rows rows (one table, dim --dim, keys
// spread over the 64-bit space, random weights) with the exporter's own
// writer, then loads it in a fresh process (this binary again, so the
// writer's memory does not count) with the loader freshet_serve uses
// (LoadLatestExport) and reports the process's peak resident size (VmHWM)
// against the bytes the loaded model serves, with the heap on huge pages as
// in freshet_serve (common/malloc_huge_pages.h; FRESHET_MALLOC_HUGE_PAGES=0:
// 4 KiB pages). The resident size before the
// load (libraries, allocator) is printed and also subtracted in
// `peak_over_served_excl_base`. Last line: one JSON object.
//
//   build/bin/freshet_serve_load_bench --rows=10000000 --dim=16
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/malloc_huge_pages.h"
#include "exporter/export_dir.h"
#include "exporter/model_loader.h"

DEFINE_int64(rows, 10000000, "rows in the full snapshot");
DEFINE_int32(dim, 16, "table dim");
DEFINE_string(storage, "fp32",
              "the table's storage on the servers: fp32 or fp16 (serving keeps it)");
DEFINE_string(dir, "",
              "export directory to write (default: a new one under TMPDIR, removed after)");
DEFINE_bool(load_only, false, "internal: load --dir and report (the measuring child)");

namespace freshet {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A field of /proc/self/status in bytes (VmRSS, VmHWM), or -1.
int64_t StatusBytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::atoll(line.c_str() + field.size() + 1) * 1024;
  }
  return -1;
}

proto::JobConfig Job() {
  proto::JobConfig job;
  job.set_name("serve-load-bench");
  auto* t = job.mutable_tables()->add_tables();
  t->set_name("item");
  t->set_dim(static_cast<uint32_t>(FLAGS_dim));
  t->set_storage(FLAGS_storage == "fp16" ? proto::TableConfig::FP16 : proto::TableConfig::FP32);
  return job;
}

int Write(const std::string& dir) {
  auto writer = ExportWriter::Open(dir, Job(), 1);
  if (!writer.ok()) {
    std::fprintf(stderr, "serve_load_bench: %s\n", writer.status().ToString().c_str());
    return 2;
  }
  Snapshot full;
  full.kind = Snapshot::Kind::kFull;
  full.version = 1;
  full.has_dense = true;
  full.dense.assign(1000, 0.5f);
  SnapshotTable& t = full.tables.emplace_back();
  t.name = "item";
  t.dim = FLAGS_dim;
  const size_t n = static_cast<size_t>(FLAGS_rows);
  t.keys.resize(n);
  t.values.resize(n * static_cast<size_t>(FLAGS_dim));
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<float> w(-0.1f, 0.1f);
  for (size_t i = 0; i < n; ++i) t.keys[i] = (i + 1) * 0x9e3779b97f4a7c15ULL;  // distinct
  for (float& v : t.values) v = w(rng);
  const double t0 = Now();
  Status st = (*writer)->Publish(full);
  if (!st.ok()) {
    std::fprintf(stderr, "serve_load_bench: %s\n", st.ToString().c_str());
    return 2;
  }
  std::fprintf(stderr, "serve_load_bench: wrote %zu rows (dim %d, %s) to %s in %.1f s\n", n,
               FLAGS_dim, FLAGS_storage.c_str(), dir.c_str(), Now() - t0);
  return 0;
}

int Load(const std::string& dir) {
  const int64_t rss_before = StatusBytes("VmRSS");
  const double t0 = Now();
  auto model = LoadLatestExport(dir);
  const double load_s = Now() - t0;
  if (!model.ok()) {
    std::fprintf(stderr, "serve_load_bench: %s\n", model.status().ToString().c_str());
    return 2;
  }
  const int64_t peak = StatusBytes("VmHWM");
  const int64_t rss_after = StatusBytes("VmRSS");
  const int64_t served = (*model)->served_bytes();
  const auto file_bytes = static_cast<int64_t>((*model)->manifest.full().size());
  std::printf(
      "full load: %lld rows, %.1f MB served, file %.1f MB, %.2f s; resident before %.1f MB, "
      "peak %.1f MB (%.2fx the served bytes; %.2fx without the resident base), after %.1f MB\n",
      static_cast<long long>(FLAGS_rows), served / 1e6, file_bytes / 1e6, load_s, rss_before / 1e6,
      peak / 1e6, static_cast<double>(peak) / served,
      static_cast<double>(peak - rss_before) / served, rss_after / 1e6);
  std::printf(
      "{\"bench\":\"serve_load\",\"rows\":%lld,\"dim\":%d,\"storage\":\"%s\",\"file_bytes\":%lld,"
      "\"served_bytes\":%lld,\"load_s\":%.3f,\"rss_before_bytes\":%lld,\"peak_rss_bytes\":%lld,"
      "\"rss_after_bytes\":%lld,\"peak_over_served\":%.3f,\"peak_over_served_excl_base\":%.3f,"
      "\"malloc_huge_pages\":%s}\n",
      static_cast<long long>(FLAGS_rows), FLAGS_dim, FLAGS_storage.c_str(),
      static_cast<long long>(file_bytes), static_cast<long long>(served), load_s,
      static_cast<long long>(rss_before), static_cast<long long>(peak),
      static_cast<long long>(rss_after), static_cast<double>(peak) / served,
      static_cast<double>(peak - rss_before) / served,
      TunablesWithMallocHugePages(std::getenv("GLIBC_TUNABLES")).empty() ? "true" : "false");
  return 0;
}

int Main(const char* self) {
  if (FLAGS_storage != "fp32" && FLAGS_storage != "fp16") {
    std::fprintf(stderr, "serve_load_bench: --storage must be fp32 or fp16, not '%s'\n",
                 FLAGS_storage.c_str());
    return 2;
  }
  if (FLAGS_rows < 1 || FLAGS_dim < 1 || FLAGS_dim > 4096) {
    std::fprintf(stderr, "serve_load_bench: --rows must be >= 1 and --dim in 1..4096\n");
    return 2;
  }
  if (FLAGS_load_only) return Load(FLAGS_dir);
  std::string dir = FLAGS_dir;
  const bool temp = dir.empty();
  if (temp) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp ? tmp : "/tmp") + "/serve_load_XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      std::perror("serve_load_bench: mkdtemp");
      return 2;
    }
    dir = pattern;
  }
  int rc = Write(dir);
  if (rc == 0) {
    // The load in a fresh process: the writer's memory must not count.
    const pid_t pid = fork();
    if (pid == 0) {
      const std::string rows = "--rows=" + std::to_string(FLAGS_rows);
      const std::string dim = "--dim=" + std::to_string(FLAGS_dim);
      const std::string storage = "--storage=" + FLAGS_storage;
      const std::string d = "--dir=" + dir;
      execl("/proc/self/exe", self, "--load_only", rows.c_str(), dim.c_str(), storage.c_str(),
            d.c_str(), static_cast<char*>(nullptr));
      std::perror("serve_load_bench: exec");
      _exit(2);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    rc = WIFEXITED(status) ? WEXITSTATUS(status) : 2;
  }
  if (temp) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return rc;
}

}  // namespace
}  // namespace freshet

int main(int argc, char** argv) {
  // As freshet_serve does (common/malloc_huge_pages.h), so the measured load
  // is serving's; FRESHET_MALLOC_HUGE_PAGES=0 measures 4 KiB pages.
  freshet::ReexecWithMallocHugePages(argv);
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  return freshet::Main(argv[0]);
}
