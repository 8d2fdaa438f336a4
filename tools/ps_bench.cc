// freshet_ps_bench: parameter-server pull/push throughput and table memory.
//
//   mpirun -np 2 build/bin/freshet_ps_bench --cluster_config=cluster-configs/bench-1s1w.pbtxt
//   mpirun -np 3 build/bin/freshet_ps_bench --cluster_config=cluster-configs/bench-2s1w.pbtxt
//   tools/ps_bench.sh   (the issue-16 grid: shm and TCP, table and none, pipeline 1 and 4)
//
// Server ranks serve; worker ranks drive load together (their throughput is
// summed); exporter ranks have nothing to do here. For each table dim and
// keys-per-request size, workers keep --pipeline requests in flight for
// --seconds, pulling (then pushing Adagrad gradients to) keys of a
// --keyspace-row table that was filled beforehand.
//
// Keys. Before any timing, each worker draws a pool of --key_pool keys
// (64 MiB at the default: far larger than the caches), uniformly from the
// keyspace with a fast generator or, with --zipf=s > 0, from a Zipf(s) law
// (key rank r has weight 1/r^s: a few hot keys). Request i takes the i-th
// window of --keys_per_request consecutive keys of the pool, so every request
// carries fresh keys and key generation is not on the timed path. After each
// case the bench reports the unique keys per request (deduplicated, as the
// servers see them) and how they spread over the servers (the busiest
// server's share; 1/S is perfect balance).
//
// --table=none: servers answer pulls with zeros and acknowledge pushes
// without touching a table, through the same message path (the transport
// alone). Over MPI's TCP path: mpirun --mca btl tcp,self (tools/ps_bench.sh
// does both); the header names the BTLs the ranks were given.
//
// Payload GB/s counts the rows' values (dim x 4 bytes per key), not keys or
// headers. The bench also counts minor page faults per request, on the
// worker and on the servers (column "faults w/s"):
// a message buffer that is mapped afresh for every request costs one fault
// per 4 KiB page (issue 16: 16 MB pulls 3-5x slower); --max_faults_per_request
// turns that into a failure.
//
// Then worker 0 measures table bytes per row (allocated and resident) for
// --memory_rows. Prints a table, and as its last line one JSON object with
// every figure.
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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
DEFINE_string(ops, "pull,push", "comma-separated operations to time: pull, push");
DEFINE_string(table, "table",
              "table: servers pull from and push into their tables; none: servers answer "
              "pulls with zeros and ack pushes without touching a table (transport alone)");
DEFINE_int64(key_pool, int64_t{8} << 20,
             "keys drawn before timing; request i takes the i-th window of the pool");
DEFINE_double(max_faults_per_request, -1,
              "fail when a case's worker takes more minor page faults per request "
              "than this (negative: only report)");
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
  double unique_per_request;         // distinct keys per request (what servers see)
  double max_shard_share;            // busiest server's share of the unique keys
  double faults_per_request;         // worker's minor page faults per request
  double server_faults_per_request;  // the servers' (summed), per request
};

// splitmix64: a fast generator (about 1 ns per key), for the key pool.
inline uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Keys 0..keyspace-1 drawn before timing: uniformly (Lemire's multiply-shift
// of a splitmix64 draw), or Zipf(FLAGS_zipf) by inverse CDF. Request i takes
// keys [i*k, (i+1)*k) mod the pool size (windows that would wrap restart at
// 0), so consecutive requests never repeat a window until the pool is used
// up.
class KeyPool {
 public:
  KeyPool(int64_t size, uint64_t seed) : keys_(static_cast<size_t>(size)) {
    uint64_t state = seed;
    const uint64_t space = static_cast<uint64_t>(FLAGS_keyspace);
    if (FLAGS_zipf <= 0) {
      for (auto& k : keys_) {
        k = static_cast<uint64_t>((static_cast<unsigned __int128>(SplitMix64(&state)) * space) >>
                                  64);
      }
      return;
    }
    std::vector<double> cdf(static_cast<size_t>(FLAGS_keyspace));
    double sum = 0;
    for (size_t r = 0; r < cdf.size(); ++r) cdf[r] = sum += std::pow(r + 1.0, -FLAGS_zipf);
    for (double& c : cdf) c /= sum;
    for (auto& k : keys_) {
      const double u = static_cast<double>(SplitMix64(&state) >> 11) * 0x1.0p-53;
      k = static_cast<uint64_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
      if (k >= space) k = space - 1;
    }
  }
  // The keys of request `i` of `per_request` keys.
  const uint64_t* Window(int64_t i, int per_request) const {
    const int64_t windows = static_cast<int64_t>(keys_.size()) / per_request;
    return keys_.data() + (i % windows) * per_request;
  }
  size_t size() const { return keys_.size(); }

 private:
  std::vector<uint64_t> keys_;
};

// Minor page faults of every server process, summed (STATS).
int64_t ServerFaults(PsClient* client) {
  auto stats = client->ServerStatsAll();
  CHECK(stats.ok()) << stats.status();
  int64_t f = 0;
  for (const auto& s : *stats) f += s.minor_faults;
  return f;
}

// Runs one timed case on this worker; returns keys moved. All workers start
// together (barrier on the worker communicator).
CaseResult RunCase(PsClient* client, MPI_Comm workers, const KeyPool& pool, int table, int dim,
                   int keys_per_req, bool push, uint64_t* case_seed) {
  std::vector<std::vector<float>> bufs(
      FLAGS_pipeline, std::vector<float>(static_cast<size_t>(keys_per_req) * dim, 1e-3f));
  // Each case starts at its own place in the pool.
  const int64_t first = static_cast<int64_t>(SplitMix64(case_seed) % 1024);
  const int kWarmup = 3 * FLAGS_pipeline + 2;
  // Warm-up, not timed: a few rounds of --pipeline requests in flight, so
  // connections and the transports' recycled buffers reach their steady
  // state (a buffer pool needs a few buffers of each size in rotation).
  {
    std::deque<std::future<Status>> warm;
    for (int i = 0; i < kWarmup; ++i) {
      if (static_cast<int>(warm.size()) == FLAGS_pipeline) {
        Status st = warm.front().get();
        CHECK(st.ok()) << st;
        warm.pop_front();
      }
      const uint64_t* keys = pool.Window(first + i, keys_per_req);
      float* buf = bufs[i % FLAGS_pipeline].data();
      warm.push_back(push ? client->Push(table, keys, keys_per_req, buf)
                          : client->Pull(table, keys, keys_per_req, buf));
    }
    for (auto& f : warm) {
      Status st = f.get();
      CHECK(st.ok()) << st;
    }
  }
  MPI_Barrier(workers);
  const int64_t server_faults0 = ServerFaults(client);
  const int64_t faults0 = ProcessMinorFaults();
  const auto t0 = std::chrono::steady_clock::now();
  const auto end = t0 + std::chrono::duration<double>(FLAGS_seconds);
  std::deque<std::future<Status>> inflight;
  int64_t issued = 0, done = 0;
  while (true) {
    const bool time_left = std::chrono::steady_clock::now() < end;
    if (time_left && static_cast<int>(inflight.size()) < FLAGS_pipeline) {
      const uint64_t* keys = pool.Window(first + kWarmup + issued, keys_per_req);
      float* buf = bufs[issued % FLAGS_pipeline].data();
      inflight.push_back(push ? client->Push(table, keys, keys_per_req, buf)
                              : client->Pull(table, keys, keys_per_req, buf));
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
  const int64_t faults = ProcessMinorFaults() - faults0;
  const int64_t server_faults = ServerFaults(client) - server_faults0;
  int64_t keys_local = done * keys_per_req, keys_total = 0;
  double secs_max = 0;
  MPI_Allreduce(&keys_local, &keys_total, 1, MPI_INT64_T, MPI_SUM, workers);
  MPI_Allreduce(&secs, &secs_max, 1, MPI_DOUBLE, MPI_MAX, workers);
  // What the servers saw (untimed): unique keys per request, split by shard,
  // over up to 64 of the windows sent.
  const int servers = client->num_servers();
  std::vector<int64_t> per_shard(servers, 0);
  int64_t unique = 0;
  const int64_t sampled = std::max<int64_t>(1, std::min<int64_t>(issued, 64));
  for (int64_t i = 0; i < sampled; ++i) {
    Dedup d = Deduplicate(pool.Window(first + kWarmup + i, keys_per_req), keys_per_req);
    unique += static_cast<int64_t>(d.uniq.size());
    for (uint64_t k : d.uniq) ++per_shard[ShardOf(k, servers)];
  }
  CaseResult r;
  r.op = push ? "push" : "pull";
  r.dim = dim;
  r.keys = keys_per_req;
  r.keys_per_s = keys_total / secs_max;
  r.gb_per_s = r.keys_per_s * dim * sizeof(float) / 1e9;
  r.ms_per_request = secs * 1e3 / std::max<int64_t>(1, done);
  r.unique_per_request = static_cast<double>(unique) / sampled;
  r.max_shard_share = static_cast<double>(*std::max_element(per_shard.begin(), per_shard.end())) /
                      std::max<int64_t>(1, unique);
  r.faults_per_request = static_cast<double>(faults) / std::max<int64_t>(1, done);
  int64_t done_total = 0;
  MPI_Allreduce(&done, &done_total, 1, MPI_INT64_T, MPI_SUM, workers);
  // Every worker asked (each saw all servers' faults over its window): take
  // this worker's view over all workers' requests.
  r.server_faults_per_request =
      static_cast<double>(server_faults) / std::max<int64_t>(1, done_total);
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
  std::vector<uint64_t> keys(65536, 0);  // allocated (and touched) before the baseline
  std::vector<float> out(keys.size() * 16, 0.0f);
  const int64_t rss0 = ProcessResidentBytes();
  auto table = std::move(EmbeddingTable::Create(0, cfg.tables(0), 64)).value();
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

std::vector<std::string> SplitOps(const std::string& s) {
  std::vector<std::string> ops;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    CHECK(item == "pull" || item == "push") << "--ops: expected pull or push, got '" << item << "'";
    ops.push_back(item);
  }
  return ops;
}

int RunWorker(PsClient* client, const ClusterLayout& layout, MPI_Comm workers,
              const std::vector<int64_t>& dims) {
  const bool leader = client->worker_index() == 0;
  const int nworkers = layout.num_workers();
  // Fill every table: each worker inserts its stripe of the keyspace, 1M
  // keys per pull (bounded buffers even at 100M rows).
  const auto fill_start = std::chrono::steady_clock::now();
  // (--table=none: nothing to fill.)
  for (size_t t = 0; t < dims.size() && FLAGS_table == "table"; ++t) {
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
  const std::vector<int64_t> sizes = ParseList(FLAGS_keys_per_request);
  const int64_t max_kpr = sizes.empty() ? 1 : *std::max_element(sizes.begin(), sizes.end());
  const auto pool_start = std::chrono::steady_clock::now();
  const KeyPool pool(std::max<int64_t>(FLAGS_key_pool, 4 * max_kpr),
                     0x5eed0000ull + static_cast<uint64_t>(client->worker_index()));
  const double pool_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - pool_start).count();
  MPI_Barrier(workers);
  std::vector<CaseResult> results;
  const char* btl = std::getenv("OMPI_MCA_btl");
  const std::string transport = btl != nullptr ? std::string("btl ") + btl : "btl default (shm)";
  if (leader) {
    std::printf(
        "freshet_ps_bench: %d server(s), %d worker(s), %lld rows per table (%s, filled "
        "in %.1f s), table=%s, %s, pipeline %d, %.1f s per case, keys %s from a pool of %zu "
        "drawn in %.2f s\n",
        layout.num_servers(), nworkers, static_cast<long long>(FLAGS_keyspace),
        FLAGS_storage.c_str(), fill_s, FLAGS_table.c_str(), transport.c_str(), FLAGS_pipeline,
        FLAGS_seconds,
        FLAGS_zipf > 0 ? ("Zipf(" + std::to_string(FLAGS_zipf) + ")").c_str() : "uniform",
        pool.size(), pool_s);
    std::printf("%-5s %4s %8s %10s %8s %9s %10s %10s %12s\n", "op", "dim", "keys/req", "Mkeys/s",
                "GB/s", "ms/req", "uniq/req", "max shard", "faults w/s");
    std::fflush(stdout);
  }
  bool faults_ok = true;
  uint64_t case_seed = 0xca5e;
  for (size_t t = 0; t < dims.size(); ++t) {
    for (int64_t kpr : sizes) {
      for (const std::string& op : SplitOps(FLAGS_ops)) {
        CaseResult r =
            RunCase(client, workers, pool, static_cast<int>(t), static_cast<int>(dims[t]),
                    static_cast<int>(kpr), op == "push", &case_seed);
        results.push_back(r);
        if (FLAGS_max_faults_per_request >= 0 &&
            std::max(r.faults_per_request, r.server_faults_per_request) >
                FLAGS_max_faults_per_request) {
          faults_ok = false;
        }
        if (leader) {
          std::printf("%-5s %4d %8d %10.2f %8.3f %9.2f %10.0f %9.1f%% %6.0f/%-5.0f\n", r.op.c_str(),
                      r.dim, r.keys, r.keys_per_s / 1e6, r.gb_per_s, r.ms_per_request,
                      r.unique_per_request, 100 * r.max_shard_share, r.faults_per_request,
                      r.server_faults_per_request);
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
  if (server_rows > 0) {
    std::printf(
        "servers hold %lld rows in %.1f MB (%.1f bytes/row over all dims); server processes "
        "resident %.1f MB (%.1f bytes/row, process overhead included)\n",
        static_cast<long long>(server_rows), server_bytes / 1e6,
        static_cast<double>(server_bytes) / std::max<int64_t>(1, server_rows),
        server_resident / 1e6,
        static_cast<double>(server_resident) / std::max<int64_t>(1, server_rows));
  }
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
     << ",\"zipf\":" << FLAGS_zipf << ",\"table\":\"" << FLAGS_table << "\",\"transport\":\""
     << transport << "\",\"pipeline\":" << FLAGS_pipeline << ",\"key_pool\":" << pool.size()
     << ",\"cases\":[";
  for (size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  "%s{\"op\":\"%s\",\"dim\":%d,\"keys_per_request\":%d,\"keys_per_s\":%.0f,"
                  "\"gb_per_s\":%.4f,\"ms_per_request\":%.3f,\"unique_per_request\":%.1f,"
                  "\"max_shard_share\":%.4f,\"faults_per_request\":%.2f,"
                  "\"server_faults_per_request\":%.2f}",
                  i ? "," : "", r.op.c_str(), r.dim, r.keys, r.keys_per_s, r.gb_per_s,
                  r.ms_per_request, r.unique_per_request, r.max_shard_share, r.faults_per_request,
                  r.server_faults_per_request);
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
  if (!faults_ok) {
    std::fprintf(stderr,
                 "freshet_ps_bench: a case took more than %.1f minor page faults per request on "
                 "a worker or the servers (--max_faults_per_request): message buffers are being "
                 "mapped afresh per request\n",
                 FLAGS_max_faults_per_request);
    return 3;
  }
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
  if (FLAGS_table != "table" && FLAGS_table != "none") {
    std::fprintf(stderr, "--table must be 'table' or 'none', got '%s'\n", FLAGS_table.c_str());
    return 1;
  }
  return RunBenchCluster(
      &argc, &argv, FLAGS_cluster_config, BenchTables(dims), table_dims,
      [&dims](PsClient* client, const ClusterLayout& layout, MPI_Comm workers) {
        return RunWorker(client, layout, workers, dims);
      },
      FLAGS_table == "none");
}

}  // namespace
}  // namespace freshet

int main(int argc, char** argv) { return freshet::Main(argc, argv); }
