// freshet_table_bench: one server's table work alone, in one process and one
// thread: EmbeddingTable::Pull and Push (Adagrad) of batches of random keys
// against a filled table, no transport. For A/B runs of table changes on a
// busy box: far less noisy than freshet_ps_bench, and it also prints the
// table's bytes per row.
//
//   build/bin/freshet_table_bench --rows=1000000 --dims=16,64 --batch=16384
//
// Keys come from a pre-drawn pool (uniform over the rows, 8M keys) as in
// freshet_ps_bench; each batch is deduplicated first, as the PS client does.
// Time is the calling thread's CPU time inside Pull/Push (so other processes
// on a shared box do not inflate it, though they still share the caches).
// Prints CPU ns per key for each (dim, op) and, last, one JSON line.
//
// For scale it also times the memory system alone: random 64-byte line
// reads (prefetched 16 ahead, as the table's loops do) over a buffer the
// size of the dim-16 table. A pull or push reads 3-4 such lines per key
// (the index slot, then the row's lines: rows are not line-aligned), so
// that figure times 3-4 is about the least a key can cost in one thread.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/buffer_pool.h"
#include "common/config.h"
#include "common/key_dedup.h"
#include "common/metrics_registry.h"
#include "common/prefetch.h"
#include "server/embedding_table.h"

DEFINE_int64(rows, 1000000, "rows per table (filled before timing)");
DEFINE_string(dims, "16,64", "comma-separated table dims");
DEFINE_int32(batch, 16384, "keys per Pull/Push call (before deduplication)");
DEFINE_int32(partitions, 64, "hash partitions per table");
DEFINE_double(seconds, 1.0, "CPU seconds inside Pull/Push per (dim, op) and rep");
DEFINE_string(storage, "FP32", "FP32, FP16 or BF16");
DEFINE_int32(reps, 1, "timed runs per (dim, op); the median is printed");
DEFINE_string(ops, "pull,push", "operations to time (empty: only fill and measure memory)");

namespace freshet {
namespace {

std::vector<int64_t> ParseInts(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(std::stoll(item));
  }
  return out;
}

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// CPU ns per random 64-byte line read from a `bytes`-byte buffer, reads
// prefetched 16 ahead; median of `reps` runs of 4M reads.
double RandomLineNs(size_t bytes, int reps) {
  const size_t lines = std::max<size_t>(1, bytes / 64);
  std::vector<char> buf(lines * 64, 1);
  std::vector<uint64_t> at(size_t{1} << 22);
  uint64_t st = 7;
  for (auto& a : at) a = (SplitMix64(&st) % lines) * 64;
  std::vector<double> ns;
  uint64_t sum = 0;
  for (int rep = 0; rep < std::max(1, reps); ++rep) {
    const double c0 = ThreadCpuSeconds();
    for (size_t i = 0; i < at.size(); ++i) {
      if (i + 16 < at.size()) PrefetchForRead(buf.data() + at[i + 16]);
      uint64_t v;
      std::memcpy(&v, buf.data() + at[i], sizeof(v));
      sum += v;
    }
    ns.push_back((ThreadCpuSeconds() - c0) * 1e9 / static_cast<double>(at.size()));
  }
  CHECK_NE(sum, 0u);  // keeps the reads
  std::sort(ns.begin(), ns.end());
  return ns[ns.size() / 2];
}

int Main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  TuneMallocForLargeBlocks();  // as in a server process (MpiSession::Init)
  const uint64_t rows = static_cast<uint64_t>(FLAGS_rows);
  std::vector<uint64_t> pool(size_t{8} << 20);
  uint64_t st = 42;
  for (auto& k : pool)
    k = static_cast<uint64_t>((static_cast<unsigned __int128>(SplitMix64(&st)) * rows) >> 64);
  std::printf("freshet_table_bench: %llu rows, batch %d, %d partitions, %s, Adagrad\n",
              static_cast<unsigned long long>(rows), FLAGS_batch, FLAGS_partitions,
              FLAGS_storage.c_str());
  std::printf("%4s %5s %10s %10s %12s\n", "dim", "op", "cpu ns/key", "Mkeys/s", "bytes/row");
  std::ostringstream js;
  js << "{\"bench\":\"table\",\"rows\":" << rows << ",\"batch\":" << FLAGS_batch << ",\"cases\":[";
  bool first_case = true;
  for (int64_t dim : ParseInts(FLAGS_dims)) {
    proto::TableConfig cfg;
    cfg.set_name("t");
    cfg.set_dim(static_cast<uint32_t>(dim));
    cfg.mutable_initializer()->set_kind(proto::Initializer::UNIFORM);
    cfg.mutable_initializer()->set_scale(0.01f);
    cfg.mutable_optimizer()->mutable_adagrad()->set_learning_rate(0.05f);
    proto::TableConfig::Storage storage;
    CHECK(proto::TableConfig::Storage_Parse(FLAGS_storage, &storage)) << FLAGS_storage;
    cfg.set_storage(storage);
    proto::TablesConfig tables;
    *tables.add_tables() = cfg;
    Status vs = ValidateTablesConfig(&tables, "<bench>");
    CHECK(vs.ok()) << vs;
    // Resident bytes per row: the process's resident set before the table
    // exists (fill buffers already allocated and touched) and after it is
    // filled.
    std::vector<uint64_t> keys(65536, 0);
    std::vector<float> out(keys.size() * dim, 0.0f);
    const int64_t rss0 = ProcessResidentBytes();
    auto table = std::move(EmbeddingTable::Create(0, tables.tables(0), FLAGS_partitions)).value();
    {
      for (uint64_t base = 0; base < rows; base += keys.size()) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(keys.size(), rows - base));
        for (size_t i = 0; i < n; ++i) keys[i] = base + i;
        table->Pull(keys.data(), n, out.data());
      }
    }
    const double resident_per_row =
        static_cast<double>(ProcessResidentBytes() - rss0) / static_cast<double>(rows);
    const TableStats ts = table->stats();
    const double bytes_per_row = static_cast<double>(ts.bytes) / std::max<int64_t>(1, ts.rows);
    const double payload = 8.0 + (FLAGS_storage == "FP32" ? 4.0 : 2.0) * dim + 4.0 * dim;
    std::printf(
        "%4lld %5s %10s %10s %12.1f  resident %.1f B/row, payload (key + weights + "
        "accumulators) %.0f\n",
        static_cast<long long>(dim), "fill", "-", "-", bytes_per_row, resident_per_row, payload);
    js << (first_case ? "" : ",") << "{\"dim\":" << dim
       << ",\"op\":\"memory\",\"bytes_per_row\":" << bytes_per_row
       << ",\"resident_bytes_per_row\":" << resident_per_row
       << ",\"payload_bytes_per_row\":" << payload << "}";
    first_case = false;
    std::vector<float> vals(static_cast<size_t>(FLAGS_batch) * dim, 1e-3f);
    size_t at = 0;
    uint32_t version = 1;
    for (const std::string& op_name : {std::string("pull"), std::string("push")}) {
      if (("," + FLAGS_ops + ",").find("," + op_name + ",") == std::string::npos) continue;
      const char* op = op_name.c_str();
      const bool push = op_name == "push";
      std::vector<double> ns;
      for (int rep = 0; rep < FLAGS_reps; ++rep) {
        int64_t keys_done = 0;
        double busy = 0;
        while (busy < FLAGS_seconds) {
          if (at + FLAGS_batch > pool.size()) at = 0;
          Dedup d = Deduplicate(pool.data() + at, FLAGS_batch);  // untimed
          at += FLAGS_batch;
          const double c0 = ThreadCpuSeconds();
          if (push) {
            table->Push(d.uniq.data(), d.uniq.size(), vals.data(), version++);
          } else {
            table->Pull(d.uniq.data(), d.uniq.size(), vals.data());
          }
          busy += ThreadCpuSeconds() - c0;
          keys_done += static_cast<int64_t>(d.uniq.size());
        }
        ns.push_back(busy * 1e9 / std::max<int64_t>(1, keys_done));
      }
      std::sort(ns.begin(), ns.end());
      const double med = ns[ns.size() / 2];
      std::printf("%4lld %5s %10.1f %10.2f %12.1f\n", static_cast<long long>(dim), op, med,
                  1e3 / med, bytes_per_row);
      std::fflush(stdout);
      js << (first_case ? "" : ",") << "{\"dim\":" << dim << ",\"op\":\"" << op
         << "\",\"ns_per_key\":" << med << ",\"bytes_per_row\":" << bytes_per_row << "}";
      first_case = false;
    }
  }
  // The dim-16 fp32 table's size: 160 bytes a row.
  const double line_ns = RandomLineNs(static_cast<size_t>(rows) * 160, FLAGS_reps);
  std::printf(
      "memory: %.1f ns per random 64-byte line over a %.0f MB buffer (one thread, "
      "prefetched)\n",
      line_ns, static_cast<double>(rows) * 160 / 1e6);
  js << "],\"random_line_ns\":" << line_ns << "}";
  std::printf("%s\n", js.str().c_str());
  return 0;
}

}  // namespace
}  // namespace freshet

int main(int argc, char** argv) { return freshet::Main(argc, argv); }
