// freshet_ps_bench: parameter-server pull/push throughput and table memory.
//
//   mpirun -np 2 build/bin/freshet_ps_bench --cluster_config=cluster-configs/bench-1s1w.pbtxt
//   mpirun -np 3 build/bin/freshet_ps_bench --cluster_config=cluster-configs/bench-2s1w.pbtxt
//
// Server ranks serve; worker ranks drive load together (their throughput is
// summed); exporter ranks have nothing to do here. For each table dim and
// keys-per-request size, workers keep --pipeline requests in flight for
// --seconds, pulling (then pushing Adagrad gradients to) keys drawn uniformly
// from a --keyspace-row table that was filled beforehand. Then worker 0
// measures table bytes per row (allocated and resident) for --memory_rows.
// With --zipf=s > 0 keys follow a Zipf(s) law over the keyspace instead (key
// rank r has weight 1/r^s: a few hot keys), and the bench also reports how
// the keys of one request spread over the servers after deduplication (the
// busiest server's share; 1/S is perfect balance).
// Prints a table, and as its last line one JSON object with every figure.
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <fstream>
#include <future>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/key_dedup.h"
#include "common/metrics_registry.h"
#include "common/mpi_transport.h"
#include "common/mpi_util.h"
#include "common/sharding.h"
#include "server/embedding_table.h"
#include "server/parameter_shard.h"
#include "server/server_node.h"
#include "tools/bench_cluster.h"
#include "worker/ps_client.h"

DEFINE_string(cluster_config, "cluster-configs/bench-1s1w.pbtxt", "cluster config file");
DEFINE_string(dims, "8,16,64", "comma-separated table dims");
DEFINE_string(keys_per_request, "1024,4096,16384,65536", "comma-separated request sizes");
DEFINE_int64(keyspace, 1000000, "rows per table (filled before timing)");
DEFINE_double(seconds, 1.0, "timed seconds per (dim, size, op) case");
DEFINE_int32(pipeline, 4, "requests each worker keeps in flight");
DEFINE_double(zipf, 0, "key popularity: 0 uniform, s > 0 Zipf with exponent s (hot keys)");
DEFINE_string(memory_rows, "1000000,10000000",
              "row counts for the bytes-per-row figure (dim 16, "
              "Adagrad); empty to skip");
DEFINE_string(storage, "FP32",
              "embedding value storage of the bench tables: FP32, FP16 or BF16 "
              "(optimizer state stays fp32)");

namespace freshet {
namespace {

proto::TablesConfig BenchTables(const std::vector<int64_t>& dims) {
  proto::TablesConfig cfg;
  for (int64_t d : dims) {
    auto* t = cfg.add_tables();
    t->set_name("emb" + std::to_string(d));
    t->set_dim(static_cast<uint32_t>(d));
    t->mutable_initializer()->set_kind(proto::Initializer::UNIFORM);
    t->mutable_initializer()->set_scale(0.01f);
    t->mutable_optimizer()->mutable_adagrad()->set_learning_rate(0.05f);
    proto::TableConfig::Storage storage;
    CHECK(proto::TableConfig::Storage_Parse(FLAGS_storage, &storage))
        << "--storage must be FP32, FP16 or BF16, got " << FLAGS_storage;
    t->set_storage(storage);
  }
  Status st = ValidateTablesConfig(&cfg, "<bench>");
  CHECK(st.ok()) << st;
  return cfg;
}

struct CaseResult {
  std::string op;
  int dim;
  int keys;
  double keys_per_s;
  double gb_per_s;
  double ms_per_request;
  double unique_fraction;  // unique keys / keys per request (dedup)
  double max_shard_share;  // busiest server's share of the unique keys
};

// Draws keys 0..keyspace-1: uniformly, or Zipf(FLAGS_zipf) by inverse CDF.
class KeySampler {
 public:
  KeySampler() {
    if (FLAGS_zipf <= 0) return;
    cdf_.resize(static_cast<size_t>(FLAGS_keyspace));
    double sum = 0;
    for (size_t r = 0; r < cdf_.size(); ++r) cdf_[r] = sum += std::pow(r + 1.0, -FLAGS_zipf);
    for (double& c : cdf_) c /= sum;
  }
  uint64_t operator()(std::mt19937_64& rng) const {
    if (cdf_.empty()) return rng() % static_cast<uint64_t>(FLAGS_keyspace);
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    return static_cast<uint64_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
  }

 private:
  std::vector<double> cdf_;
};

// Runs one timed case on this worker; returns keys moved. All workers start
// together (barrier on the worker communicator).
CaseResult RunCase(PsClient* client, MPI_Comm workers, const KeySampler& sample, int table, int dim,
                   int keys_per_req, bool push) {
  std::mt19937_64 rng(1234 + client->worker_index());
  const int kBatches = 16;  // precomputed key batches, reused round-robin
  std::vector<std::vector<uint64_t>> batches(kBatches, std::vector<uint64_t>(keys_per_req));
  for (auto& b : batches)
    for (auto& k : b) k = sample(rng);
  // What the servers see: unique keys per request, split by shard.
  const int servers = client->num_servers();
  std::vector<int64_t> per_shard(servers, 0);
  int64_t unique = 0;
  for (const auto& b : batches) {
    Dedup d = Deduplicate(b.data(), b.size());
    unique += static_cast<int64_t>(d.uniq.size());
    for (uint64_t k : d.uniq) ++per_shard[ShardOf(k, servers)];
  }
  std::vector<std::vector<float>> bufs(
      FLAGS_pipeline, std::vector<float>(static_cast<size_t>(keys_per_req) * dim, 1e-3f));
  MPI_Barrier(workers);
  const auto t0 = std::chrono::steady_clock::now();
  const auto end = t0 + std::chrono::duration<double>(FLAGS_seconds);
  std::deque<std::future<Status>> inflight;
  int64_t issued = 0, done = 0;
  while (true) {
    const bool time_left = std::chrono::steady_clock::now() < end;
    if (time_left && static_cast<int>(inflight.size()) < FLAGS_pipeline) {
      const auto& keys = batches[issued % kBatches];
      float* buf = bufs[issued % FLAGS_pipeline].data();
      inflight.push_back(push ? client->Push(table, keys.data(), keys.size(), buf)
                              : client->Pull(table, keys.data(), keys.size(), buf));
      ++issued;
      continue;
    }
    if (inflight.empty()) break;
    Status st = inflight.front().get();
    CHECK(st.ok()) << st;
    inflight.pop_front();
    ++done;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t keys_local = done * keys_per_req, keys_total = 0;
  double secs_max = 0;
  MPI_Allreduce(&keys_local, &keys_total, 1, MPI_INT64_T, MPI_SUM, workers);
  MPI_Allreduce(&secs, &secs_max, 1, MPI_DOUBLE, MPI_MAX, workers);
  CaseResult r;
  r.op = push ? "push" : "pull";
  r.dim = dim;
  r.keys = keys_per_req;
  r.keys_per_s = keys_total / secs_max;
  r.gb_per_s = r.keys_per_s * dim * sizeof(float) / 1e9;
  r.ms_per_request = secs * 1e3 / std::max<int64_t>(1, done);
  r.unique_fraction = static_cast<double>(unique) / (static_cast<double>(kBatches) * keys_per_req);
  r.max_shard_share = static_cast<double>(*std::max_element(per_shard.begin(), per_shard.end())) /
                      std::max<int64_t>(1, unique);
  return r;
}

struct MemoryResult {
  int64_t rows;
  double bytes_per_row;
  double resident_per_row;
  double payload_per_row;
};

MemoryResult MeasureMemory(int64_t rows) {
  proto::TablesConfig cfg = BenchTables({16});
  const int64_t rss0 = ProcessResidentBytes();
  auto table = std::move(EmbeddingTable::Create(0, cfg.tables(0), 64)).value();
  std::vector<uint64_t> keys(65536);
  std::vector<float> out(keys.size() * 16);
  for (int64_t base = 0; base < rows; base += keys.size()) {
    const size_t n = static_cast<size_t>(std::min<int64_t>(keys.size(), rows - base));
    for (size_t i = 0; i < n; ++i) keys[i] = MixKey(static_cast<uint64_t>(base + i));
    table->Pull(keys.data(), n, out.data());
  }
  const int64_t rss1 = ProcessResidentBytes();
  const TableStats s = table->stats();
  MemoryResult m;
  m.rows = s.rows;
  m.bytes_per_row = static_cast<double>(s.bytes) / s.rows;
  m.resident_per_row = static_cast<double>(rss1 - rss0) / s.rows;
  // key + weights (4 or 2 bytes) + Adagrad accumulators
  m.payload_per_row = 8 + 16 * (FLAGS_storage == "FP32" ? 4 : 2) + 16 * 4;
  return m;
}

int RunWorker(PsClient* client, const ClusterLayout& layout, MPI_Comm workers,
              const std::vector<int64_t>& dims) {
  const bool leader = client->worker_index() == 0;
  const int nworkers = layout.num_workers();
  // Fill every table: each worker inserts its stripe of the keyspace, 1M
  // keys per pull (bounded buffers even at 100M rows).
  const auto fill_start = std::chrono::steady_clock::now();
  for (size_t t = 0; t < dims.size(); ++t) {
    std::vector<uint64_t> keys;
    std::vector<float> out;
    int64_t k = client->worker_index();
    while (k < FLAGS_keyspace) {
      keys.clear();
      for (; k < FLAGS_keyspace && keys.size() < (1u << 20); k += nworkers) keys.push_back(k);
      out.resize(keys.size() * dims[t]);
      Status st = client->Pull(static_cast<int>(t), keys.data(), keys.size(), out.data()).get();
      CHECK(st.ok()) << st;
    }
  }
  const double fill_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - fill_start).count();
  MPI_Barrier(workers);
  std::vector<CaseResult> results;
  const KeySampler sample;
  if (leader) {
    std::printf(
        "freshet_ps_bench: %d server(s), %d worker(s), %lld rows per table (%s, filled "
        "in %.1f s), pipeline %d, %.1f s per case, keys %s\n",
        layout.num_servers(), nworkers, static_cast<long long>(FLAGS_keyspace),
        FLAGS_storage.c_str(), fill_s, FLAGS_pipeline, FLAGS_seconds,
        FLAGS_zipf > 0 ? ("Zipf(" + std::to_string(FLAGS_zipf) + ")").c_str() : "uniform");
    std::printf("%-5s %4s %8s %14s %9s %10s %7s %10s\n", "op", "dim", "keys/req", "keys/s", "GB/s",
                "ms/req", "unique", "max shard");
  }
  for (size_t t = 0; t < dims.size(); ++t) {
    for (int64_t kpr : ParseList(FLAGS_keys_per_request)) {
      for (bool push : {false, true}) {
        CaseResult r = RunCase(client, workers, sample, static_cast<int>(t),
                               static_cast<int>(dims[t]), static_cast<int>(kpr), push);
        results.push_back(r);
        if (leader) {
          std::printf("%-5s %4d %8d %14.0f %9.3f %10.2f %6.1f%% %9.1f%%\n", r.op.c_str(), r.dim,
                      r.keys, r.keys_per_s, r.gb_per_s, r.ms_per_request, 100 * r.unique_fraction,
                      100 * r.max_shard_share);
          std::fflush(stdout);
        }
      }
    }
  }
  auto stats = client->ServerStatsAll();
  CHECK(stats.ok()) << stats.status();
  MPI_Barrier(workers);
  if (!leader) return 0;
  int64_t server_rows = 0, server_bytes = 0, server_resident = 0;
  for (const auto& s : *stats) {
    server_rows += s.rows;
    server_bytes += s.bytes;
    server_resident += s.resident_bytes;
  }
  std::printf(
      "servers hold %lld rows in %.1f MB (%.1f bytes/row over all dims); server processes "
      "resident %.1f MB (%.1f bytes/row, process overhead included)\n",
      static_cast<long long>(server_rows), server_bytes / 1e6,
      static_cast<double>(server_bytes) / std::max<int64_t>(1, server_rows), server_resident / 1e6,
      static_cast<double>(server_resident) / std::max<int64_t>(1, server_rows));
  std::vector<MemoryResult> mem;
  for (int64_t rows : ParseList(FLAGS_memory_rows)) {
    mem.push_back(MeasureMemory(rows));
    const auto& m = mem.back();
    std::printf(
        "table dim 16 Adagrad, %lld rows: %.1f bytes/row allocated, %.1f resident, "
        "payload %.0f -> %.2fx (bound 1.5x)\n",
        static_cast<long long>(m.rows), m.bytes_per_row, m.resident_per_row, m.payload_per_row,
        m.bytes_per_row / m.payload_per_row);
  }
  std::ostringstream js;
  js << "{\"bench\":\"ps\",\"servers\":" << layout.num_servers() << ",\"workers\":" << nworkers
     << ",\"keyspace\":" << FLAGS_keyspace << ",\"storage\":\"" << FLAGS_storage
     << "\",\"fill_s\":" << fill_s << ",\"server_rows\":" << server_rows
     << ",\"server_bytes\":" << server_bytes << ",\"server_resident_bytes\":" << server_resident
     << ",\"zipf\":" << FLAGS_zipf << ",\"cases\":[";
  for (size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  "%s{\"op\":\"%s\",\"dim\":%d,\"keys_per_request\":%d,\"keys_per_s\":%.0f,"
                  "\"gb_per_s\":%.4f,\"ms_per_request\":%.3f,\"unique_fraction\":%.4f,"
                  "\"max_shard_share\":%.4f}",
                  i ? "," : "", r.op.c_str(), r.dim, r.keys, r.keys_per_s, r.gb_per_s,
                  r.ms_per_request, r.unique_fraction, r.max_shard_share);
    js << buf;
  }
  js << "],\"memory\":[";
  for (size_t i = 0; i < mem.size(); ++i) {
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  "%s{\"rows\":%lld,\"bytes_per_row\":%.2f,\"resident_bytes_per_row\":%.2f,"
                  "\"payload_bytes_per_row\":%.0f,\"ratio\":%.3f}",
                  i ? "," : "", static_cast<long long>(mem[i].rows), mem[i].bytes_per_row,
                  mem[i].resident_per_row, mem[i].payload_per_row,
                  mem[i].bytes_per_row / mem[i].payload_per_row);
    js << buf;
  }
  js << "]}";
  std::printf("%s\n", js.str().c_str());
  return 0;
}

int Main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "parameter-server pull/push throughput and table memory; run under mpirun, e.g.\n"
      "  mpirun -np 2 build/bin/freshet_ps_bench "
      "--cluster_config=cluster-configs/bench-1s1w.pbtxt");
  gflags::ParseCommandLineFlags(&argc, &argv, true);  // before MPI: --help needs no mpirun
  const std::vector<int64_t> dims = ParseList(FLAGS_dims);
  const std::vector<int> table_dims(dims.begin(), dims.end());
  return RunBenchCluster(&argc, &argv, FLAGS_cluster_config, BenchTables(dims), table_dims,
                         [&dims](PsClient* client, const ClusterLayout& layout, MPI_Comm workers) {
                           return RunWorker(client, layout, workers, dims);
                         });
}

}  // namespace
}  // namespace freshet

int main(int argc, char** argv) { return freshet::Main(argc, argv); }
