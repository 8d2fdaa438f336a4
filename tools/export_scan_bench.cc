// Cost of one delta export on a server (docs/TABLES.md "Delta export
// cost"): fills a ParameterShard with --rows rows (one table, dim --dim,
// fp32, Adagrad, --partitions partitions), then, for each K in --changed,
// --rounds times: pushes K random existing keys (requests of 4096 keys, as
// a worker sends them) and times ExportReply (ParameterShard::ExportChanged, encoded) twice on the
// same rows:
//   log:  at the exporter's cursor, answered from the change logs;
//   scan: then with a cursor one below the logs' floor, so every partition
//         is scanned row by row (what every export did before the logs).
// Prints one line per K and a JSON line per K last.
//
//   build/bin/freshet_export_scan_bench --rows=1000000 --changed=10000,100000
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/buffer_pool.h"
#include "common/config.h"
#include "common/ps_wire.h"
#include "server/parameter_shard.h"
#include "server/server_node.h"

DEFINE_int64(rows, 1000000, "rows in the table");
DEFINE_string(changed, "10000,100000", "comma-separated keys pushed between exports");
DEFINE_int32(rounds, 5, "exports timed per K and path");
DEFINE_int32(dim, 16, "table dim");
DEFINE_int32(partitions, 64, "partitions per table (the server default)");

namespace freshet {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU seconds of this thread: on a shared box the wall time also counts
// the time other processes held the cores.
double CpuNow() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

int Main() {
  auto tables = ParseTablesConfig("tables { name: \"emb\" dim: " + std::to_string(FLAGS_dim) +
                                      " initializer { kind: UNIFORM scale: 0.01 } optimizer { "
                                      "adagrad { learning_rate: 0.05 } } }",
                                  "export_scan_bench");
  if (!tables.ok()) {
    std::fprintf(stderr, "%s\n", tables.status().ToString().c_str());
    return 1;
  }
  auto shard_or = ParameterShard::Create(*tables, FLAGS_partitions);
  if (!shard_or.ok()) {
    std::fprintf(stderr, "%s\n", shard_or.status().ToString().c_str());
    return 1;
  }
  ParameterShard& shard = **shard_or;
  const uint32_t dim = static_cast<uint32_t>(FLAGS_dim);
  constexpr size_t kRequest = 4096;
  std::vector<uint64_t> keys(kRequest);
  std::vector<float> grads(kRequest * dim, 0.01f);
  auto push = [&](size_t n) {
    Status st = shard.HandlePush(0, dim, keys.data(), n, grads.data());
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", st.ToString().c_str());
      std::exit(1);
    }
  };
  // Keys 0..rows-1, spread by the table's hash.
  const double t_fill = Now();
  for (int64_t base = 0; base < FLAGS_rows; base += kRequest) {
    const size_t n = static_cast<size_t>(std::min<int64_t>(kRequest, FLAGS_rows - base));
    for (size_t i = 0; i < n; ++i) keys[i] = static_cast<uint64_t>(base) + i;
    push(n);
  }
  const double fill_s = Now() - t_fill;
  const int64_t bytes_before = shard.TotalTableStats().bytes;
  uint32_t cursor = 0;
  const double t_full = Now(), c_full = CpuNow();
  // What a server does with an EXPORT request: the shard's changed rows,
  // encoded into the reply (ExportReply). Returns the body's bytes.
  auto export_since = [&shard](uint32_t since, uint32_t* now) {
    const Message reply = ExportReply(&shard, 1, ExportRequest{since});
    StatusOr<ExportResponse> decoded = DecodeExportResponse(reply);
    CHECK(decoded.ok()) << decoded.status();
    *now = decoded->version;
    return reply.body.size();
  };
  export_since(0, &cursor);  // the exporter's first, full export; starts the logs
  const double full_ms = 1e3 * (Now() - t_full), full_cpu_ms = 1e3 * (CpuNow() - c_full);
  std::printf("filled %lld rows in %.1f s; full export (since 0): %.1f ms (cpu %.1f)\n",
              static_cast<long long>(FLAGS_rows), fill_s, full_ms, full_cpu_ms);

  std::mt19937_64 rng(1);
  std::stringstream list(FLAGS_changed);
  std::string item;
  while (std::getline(list, item, ',')) {
    const int64_t k = std::stoll(item);
    double scan_ms = 0, log_ms = 0, scan_cpu_ms = 0, log_cpu_ms = 0;
    size_t scan_bytes = 0, log_bytes = 0;
    int64_t log_bytes_peak = 0;
    for (int r = 0; r < FLAGS_rounds; ++r) {
      for (int64_t done = 0; done < k; done += kRequest) {
        const size_t n = static_cast<size_t>(std::min<int64_t>(kRequest, k - done));
        for (size_t i = 0; i < n; ++i) keys[i] = rng() % static_cast<uint64_t>(FLAGS_rows);
        push(n);
      }
      log_bytes_peak = std::max(log_bytes_peak, shard.TotalTableStats().bytes - bytes_before);
      // The log walk at the exporter's cursor sets the logs' floor to it;
      // then a scan at cursor - 1 (below the floor) lists the same rows
      // plus those stamped exactly `cursor` (at most one request's).
      uint32_t now = 0, ignored = 0;
      double t0 = Now(), c0 = CpuNow();
      const size_t logged = export_since(cursor, &now);
      log_ms += 1e3 * (Now() - t0);
      log_cpu_ms += 1e3 * (CpuNow() - c0);
      t0 = Now();
      c0 = CpuNow();
      const size_t scanned = export_since(cursor - 1, &ignored);
      scan_ms += 1e3 * (Now() - t0);
      scan_cpu_ms += 1e3 * (CpuNow() - c0);
      scan_bytes += scanned;
      log_bytes += logged;
      cursor = now;
    }
    const TableStats s = shard.TotalTableStats();
    const double rows_per_export = static_cast<double>(log_bytes) / FLAGS_rounds / (8 + 4.0 * dim);
    const double n = FLAGS_rounds;
    std::printf(
        "rows %lld, %lld keys pushed per interval (%.0f distinct rows exported): scan %.2f ms "
        "(cpu %.2f), log %.2f ms (cpu %.2f) per export; log memory %.1f MiB at most\n",
        static_cast<long long>(FLAGS_rows), static_cast<long long>(k), rows_per_export, scan_ms / n,
        scan_cpu_ms / n, log_ms / n, log_cpu_ms / n, log_bytes_peak / 1048576.0);
    std::printf(
        "{\"rows\":%lld,\"changed\":%lld,\"partitions\":%d,\"scan_ms\":%.3f,\"scan_cpu_ms\":%.3f,"
        "\"log_ms\":%.3f,\"log_cpu_ms\":%.3f,\"scan_body_bytes\":%.0f,\"export_full_scans\":%lld,"
        "\"log_bytes_peak\":%lld}\n",
        static_cast<long long>(FLAGS_rows), static_cast<long long>(k), FLAGS_partitions,
        scan_ms / n, scan_cpu_ms / n, log_ms / n, log_cpu_ms / n, scan_bytes / n,
        static_cast<long long>(s.export_full_scans), static_cast<long long>(log_bytes_peak));
  }
  return 0;
}

}  // namespace
}  // namespace freshet

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  // As in a server process (MpiSession::Init): without it glibc's dynamic
  // mmap threshold decides, from what this process freed before, whether a
  // 7 MB export body is a fresh mapping (page faults and zero-fill on every
  // export), and the bench measured that instead of the server.
  freshet::TuneMallocForLargeBlocks();
  return freshet::Main();
}
