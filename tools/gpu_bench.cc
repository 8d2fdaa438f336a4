// freshet_gpu_bench: DeepFM training throughput of a GPU worker (samples/s
// per GPU) at batch sizes 4k..64k, with the embeddings served by CPU
// parameter-server ranks on the same machine; --device=cpu runs the same
// loop with the CPU DeepFmModel for comparison.
//
//   mpirun -np 2 build/bin/freshet_gpu_bench --cluster_config=cluster-configs/bench-1s1w.pbtxt
//   mpirun -np 2 build/bin/freshet_gpu_bench --device=cpu --batch_sizes=4096,16384
//
// Each worker rank runs the trainer's step on synthetic batches (--slots
// one-hot slots plus --multi_slots multi-valued ones, keys power-law
// distributed over --vocab, --dense features): pull (the next batch's pull
// is issued before this batch computes), forward + backward, push (async;
// the previous step's push overlaps this compute), all-reduce of the dense
// gradient (CreateCollective: NCCL for GPU workers), Adam. Per batch size it
// prints the per-step time split -- pull (issue + wait), host pack, H2D, GPU compute,
// D2H, host unpack, push wait, all-reduce -- and GPU utilization (the
// fraction of wall time the model's stream was busy, from CUDA events).
// Last line: one JSON object with every figure.
//
// Without a GPU (or a binary built without CUDA) --device=gpu prints
// "freshet_gpu_bench: no GPU: <reason>" and exits 77 on every rank, before
// MPI starts.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <future>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/device.h"
#include "common/mpi_transport.h"
#include "common/mpi_util.h"
#include "common/worker_collective.h"
#include "model/model_factory.h"
#include "server/parameter_shard.h"
#include "server/server_node.h"
#include "tools/bench_cluster.h"
#include "worker/dense_reduce.h"
#include "worker/ps_client.h"
#ifdef FRESHET_HAVE_CUDA
#include "model/gpu/gpu_deepfm_model.h"
#endif

DEFINE_string(cluster_config, "cluster-configs/bench-1s1w.pbtxt", "cluster config file");
DEFINE_string(device, "gpu", "cpu, gpu, gpu:tf32 or gpu:bf16");
DEFINE_string(batch_sizes, "4096,8192,16384,32768,65536", "comma-separated batch sizes");
DEFINE_int32(steps, 20, "timed steps per batch size");
DEFINE_int32(warmup, 3, "untimed steps per batch size");
DEFINE_int32(slots, 24, "one-hot categorical slots");
DEFINE_int32(multi_slots, 2, "multi-valued slots (MEAN pooling)");
DEFINE_int32(multi_keys, 8, "max keys per example of a multi-valued slot");
DEFINE_int32(dense, 13, "dense features");
DEFINE_int32(emb_dim, 16, "embedding dim");
DEFINE_string(hidden, "400,400,400", "MLP hidden widths");
DEFINE_bool(dense_allreduce_on_device, true,
            "GPU + NCCL: sum the dense gradients in GPU memory (false: through host memory)");
DEFINE_int64(vocab, 1000000, "distinct keys per slot (power-law popularity)");

namespace freshet {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

proto::TablesConfig Tables() {
  proto::TablesConfig cfg;
  for (auto [name, dim] : {std::pair<const char*, int>{"wide", 1}, {"emb", FLAGS_emb_dim}}) {
    auto* t = cfg.add_tables();
    t->set_name(name);
    t->set_dim(static_cast<uint32_t>(dim));
    t->mutable_initializer()->set_kind(proto::Initializer::UNIFORM);
    t->mutable_initializer()->set_scale(0.01f);
    t->mutable_optimizer()->mutable_adagrad()->set_learning_rate(0.05f);
  }
  Status st = ValidateTablesConfig(&cfg, "<gpu bench>");
  CHECK(st.ok()) << st;
  return cfg;
}

ModelShape Shape() {
  ModelShape s;
  s.num_slots = FLAGS_slots + FLAGS_multi_slots;
  s.num_dense = FLAGS_dense;
  s.emb_dim = FLAGS_emb_dim;
  for (int i = 0; i < s.num_slots; ++i)
    s.pooling.push_back(i < FLAGS_slots ? proto::SUM : proto::MEAN);
  return s;
}

// A synthetic batch; keys of slot s are s * 2^40 + a power-law id.
struct BenchBatch {
  EncodedBatch batch;
  std::vector<uint64_t> keys;     // all slots' keys concatenated (pull/push list)
  std::vector<size_t> slot_base;  // first key of each slot in `keys`
};

BenchBatch MakeBatch(const ModelShape& shape, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::uniform_int_distribution<int> multi(0, FLAGS_multi_keys);
  const double log_vocab = std::log(static_cast<double>(FLAGS_vocab));
  BenchBatch b;
  b.batch.Reset(shape.num_slots, shape.num_dense);
  for (int i = 0; i < n; ++i) {
    for (int s = 0; s < shape.num_slots; ++s) {
      const int c = s < FLAGS_slots ? 1 : multi(rng);
      for (int j = 0; j < c; ++j) {
        const uint64_t id = static_cast<uint64_t>(std::exp(u(rng) * log_vocab)) - 1;
        b.batch.keys[s].push_back((static_cast<uint64_t>(s) << 40) + id);
      }
      b.batch.offsets[s].push_back(static_cast<uint32_t>(b.batch.keys[s].size()));
    }
    for (int d = 0; d < shape.num_dense; ++d) b.batch.dense.push_back(static_cast<float>(u(rng)));
    b.batch.labels.push_back(u(rng) < 0.2 ? 1.f : 0.f);
    b.batch.oracle.push_back(-1);
    b.batch.users.push_back(0);
    b.batch.times.push_back(0);
    ++b.batch.size;
  }
  for (int s = 0; s < shape.num_slots; ++s) {
    b.slot_base.push_back(b.keys.size());
    b.keys.insert(b.keys.end(), b.batch.keys[s].begin(), b.batch.keys[s].end());
  }
  return b;
}

struct Split {
  double wall = 0, pull = 0, compute = 0, pack = 0, h2d = 0, gpu = 0, d2h = 0, unpack = 0, push = 0,
         allreduce = 0;
  int64_t samples = 0;
};

StatusOr<Split> RunBatchSize(PsClient* client, Collective* coll, Model* model, int n) {
  const ModelShape& shape = model->shape();
  const int k = shape.emb_dim;
  constexpr int kDistinct = 4;  // batches cycled (generation stays out of the timing)
  std::vector<BenchBatch> batches;
  for (int i = 0; i < kDistinct; ++i) batches.push_back(MakeBatch(shape, n, 1000 * n + i));
  struct Pulled {
    std::vector<float> wide, emb;
    std::future<Status> fw, fe;
  };
  Pulled pulled[2];
  auto issue = [&](int t) {
    Pulled& p = pulled[t % 2];
    const BenchBatch& b = batches[t % kDistinct];
    p.wide.resize(b.keys.size());
    p.emb.resize(b.keys.size() * k);
    p.fw = client->Pull(0, b.keys.data(), b.keys.size(), p.wide.data());
    p.fe = client->Pull(1, b.keys.data(), b.keys.size(), p.emb.data());
  };
  struct PushBuf {
    std::vector<float> wide, emb;
  };
  std::deque<std::vector<std::future<Status>>> pending;
  std::vector<PushBuf> push_bufs(3);
  DenseReducer reducer(model, coll, FLAGS_dense_allreduce_on_device);
  std::vector<float> dense_grad(model->NumDenseParams()), logits, dlogits;
  SparseGrads grads;
  Split split;
#ifdef FRESHET_HAVE_CUDA
  auto* gpu = dynamic_cast<GpuDeepFmModel*>(model);
  GpuPhaseTimes before;
#endif
  const int total = FLAGS_warmup + FLAGS_steps;
  issue(0);
  Clock::time_point start;
  for (int t = 0; t < total; ++t) {
    if (t == FLAGS_warmup) {
      split = Split();
      start = Clock::now();
#ifdef FRESHET_HAVE_CUDA
      if (gpu != nullptr) before = gpu->times();
#endif
    }
    const BenchBatch& b = batches[t % kDistinct];
    // Pull: issuing the next batch's pull (dedup + shard split happen on this
    // thread) and waiting for this batch's.
    auto t0 = Clock::now();
    if (t + 1 < total) issue(t + 1);
    Pulled& p = pulled[t % 2];
    FRESHET_RETURN_IF_ERROR(p.fw.get());
    FRESHET_RETURN_IF_ERROR(p.fe.get());
    split.pull += Since(t0);

    t0 = Clock::now();
    ModelInput in;
    in.batch = &b.batch;
    for (int s = 0; s < shape.num_slots; ++s) {
      in.wide.push_back(p.wide.data() + b.slot_base[s]);
      in.emb.push_back(p.emb.data() + b.slot_base[s] * k);
    }
    logits.resize(n);
    dlogits.resize(n);
    model->Forward(in, logits.data());
    LogLoss(logits.data(), b.batch.labels.data(), n, dlogits.data());
    model->Backward(in, dlogits.data(), &grads, reducer.backward_dense_out());
    split.compute += Since(t0);

    t0 = Clock::now();
    PushBuf& pb = push_bufs[t % 3];
    pb.wide.resize(b.keys.size());
    pb.emb.resize(b.keys.size() * k);
    for (int s = 0; s < shape.num_slots; ++s) {
      std::memcpy(pb.wide.data() + b.slot_base[s], grads.wide[s].data(),
                  grads.wide[s].size() * sizeof(float));
      std::memcpy(pb.emb.data() + b.slot_base[s] * k, grads.emb[s].data(),
                  grads.emb[s].size() * sizeof(float));
    }
    std::vector<std::future<Status>> fs;
    fs.push_back(client->Push(0, b.keys.data(), b.keys.size(), pb.wide.data()));
    fs.push_back(client->Push(1, b.keys.data(), b.keys.size(), pb.emb.data()));
    pending.push_back(std::move(fs));
    while (pending.size() > 1) {  // the push of step t-1 overlapped step t
      for (auto& f : pending.front()) FRESHET_RETURN_IF_ERROR(f.get());
      pending.pop_front();
    }
    split.push += Since(t0);

    t0 = Clock::now();
    FRESHET_RETURN_IF_ERROR(reducer.Reduce(1.f, nullptr, 0, dense_grad.data()));
    const float inv = 1.f / static_cast<float>(coll->size());
    for (float& g : dense_grad) g *= inv;
    split.allreduce += Since(t0);
    t0 = Clock::now();
    model->ApplyDenseGradient(dense_grad.data());
    split.compute += Since(t0);
    FRESHET_RETURN_IF_ERROR(client->Clock());
    if (t >= FLAGS_warmup) split.samples += n;
  }
  while (!pending.empty()) {
    for (auto& f : pending.front()) FRESHET_RETURN_IF_ERROR(f.get());
    pending.pop_front();
  }
  split.wall = Since(start);
#ifdef FRESHET_HAVE_CUDA
  if (gpu != nullptr) {
    const GpuPhaseTimes& now = gpu->times();
    split.pack = now.pack_s - before.pack_s;
    split.h2d = now.h2d_s - before.h2d_s;
    split.gpu = now.compute_s - before.compute_s;
    split.d2h = now.d2h_s - before.d2h_s;
    split.unpack = now.unpack_s - before.unpack_s;
  }
#endif
  return split;
}

int RunWorker(PsClient* client, MPI_Comm workers, const DeviceSpec& device) {
  std::string via;
  auto coll = CreateCollective(workers, device, &via);
  if (!coll.ok()) {
    std::fprintf(stderr, "freshet_gpu_bench: %s\n", coll.status().ToString().c_str());
    MpiSession::Abort(3);
  }
  proto::ModelConfig config;
  config.set_kind(proto::ModelConfig::DEEPFM);
  for (int64_t h : ParseList(FLAGS_hidden)) config.add_hidden(static_cast<int32_t>(h));
  config.set_seed(1);
  auto model = CreateModel(config, Shape(), device);
  if (!model.ok()) {
    std::fprintf(stderr, "freshet_gpu_bench: %s\n", model.status().ToString().c_str());
    MpiSession::Abort(3);
  }
  const bool leader = (*coll)->rank() == 0;
  const bool in_device_memory =
      DenseReducer(model->get(), coll->get(), FLAGS_dense_allreduce_on_device).on_device();
  if (leader) {
    std::printf(
        "freshet_gpu_bench: device %s, %d worker(s), all-reduce through %s (dense gradients in "
        "%s memory); %d+%d slots, emb_dim %d, hidden %s, %zu dense parameters\n",
        device.ToString().c_str(), (*coll)->size(), via.c_str(), in_device_memory ? "GPU" : "host",
        FLAGS_slots, FLAGS_multi_slots, FLAGS_emb_dim, FLAGS_hidden.c_str(),
        (*model)->NumDenseParams());
    std::printf("%7s %12s %12s | ms/step: %7s %7s %7s %7s %7s %7s %7s %7s %7s | %5s\n", "batch",
                "samples/s/w", "samples/s", "total", "pull", "pack", "h2d", "compute", "d2h",
                "unpack", "push", "allred", "busy");
  }
  std::string json = "{\"bench\":\"gpu_bench\",\"device\":\"" + device.ToString() +
                     "\",\"workers\":" + std::to_string((*coll)->size()) + ",\"allreduce\":\"" +
                     via + "\",\"dense_reduce\":\"" + (in_device_memory ? "device" : "host") +
                     "\",\"results\":[";
  bool first = true;
  for (int64_t n : ParseList(FLAGS_batch_sizes)) {
    auto split = RunBatchSize(client, coll->get(), model->get(), static_cast<int>(n));
    if (!split.ok()) {
      std::fprintf(stderr, "freshet_gpu_bench: batch %lld: %s\n", static_cast<long long>(n),
                   split.status().ToString().c_str());
      MpiSession::Abort(3);
    }
    const Split& s = *split;
    double all_samples = static_cast<double>(s.samples);
    if (!(*coll)->AllReduceSum(&all_samples, 1).ok()) MpiSession::Abort(3);
    const double steps = FLAGS_steps, ms = 1e3 / steps;
    const double per_worker = s.samples / s.wall, total = all_samples / s.wall;
    // GPU busy: stream time (copies + kernels) over wall time.
    const double busy = (s.h2d + s.gpu + s.d2h) / s.wall;
    const bool on_gpu = device.kind == DeviceKind::kGpu;
    // On the CPU, "compute" is the model's wall time; on the GPU it is the
    // stream's kernel time (host pack/unpack and copies are their own rows).
    const double compute = on_gpu ? s.gpu : s.compute;
    if (leader) {
      std::printf(
          "%7lld %12.0f %12.0f | ms/step: %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f "
          "%7.2f | %4.0f%%\n",
          static_cast<long long>(n), per_worker, total, s.wall * ms, s.pull * ms, s.pack * ms,
          s.h2d * ms, compute * ms, s.d2h * ms, s.unpack * ms, s.push * ms, s.allreduce * ms,
          on_gpu ? 100 * busy : 0.0);
      std::fflush(stdout);
      char buf[600];
      std::snprintf(buf, sizeof(buf),
                    "%s{\"batch\":%lld,\"samples_per_s_per_worker\":%.1f,\"samples_per_s\":%.1f,"
                    "\"ms_per_step\":{\"total\":%.3f,\"pull\":%.3f,\"pack\":%.3f,\"h2d\":%.3f,"
                    "\"compute\":%.3f,\"d2h\":%.3f,\"unpack\":%.3f,\"push\":%.3f,"
                    "\"allreduce\":%.3f},\"gpu_busy\":%.3f}",
                    first ? "" : ",", static_cast<long long>(n), per_worker, total, s.wall * ms,
                    s.pull * ms, s.pack * ms, s.h2d * ms, compute * ms, s.d2h * ms, s.unpack * ms,
                    s.push * ms, s.allreduce * ms, on_gpu ? busy : 0.0);
      json += buf;
      first = false;
    }
  }
  if (leader) std::printf("%s]}\n", json.c_str());
  return 0;
}

int Main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);  // before MPI: --help needs no mpirun
  auto device = ParseDevice(FLAGS_device);
  if (!device.ok()) {
    std::fprintf(stderr, "freshet_gpu_bench: %s\n", device.status().ToString().c_str());
    return 1;
  }
  if (device->kind == DeviceKind::kGpu) {
    // Every rank checks, before MPI starts: no rank is left waiting.
    auto count = CudaDeviceCount();
    if (!count.ok()) {
      std::fprintf(stderr, "freshet_gpu_bench: no GPU: %s\n", count.status().ToString().c_str());
      return 77;
    }
  }
  const DeviceSpec spec = *device;
  return RunBenchCluster(&argc, &argv, FLAGS_cluster_config, Tables(), {1, FLAGS_emb_dim},
                         [&spec](PsClient* client, const ClusterLayout&, MPI_Comm workers) {
                           return RunWorker(client, workers, spec);
                         });
}

}  // namespace
}  // namespace freshet

int main(int argc, char** argv) { return freshet::Main(argc, argv); }
