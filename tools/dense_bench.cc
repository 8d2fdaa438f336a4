// freshet_dense_bench: the CPU models' dense layers during training, in
// achieved GFLOP/s per core, next to the BLAS alone (cblas_sgemm) on exactly
// the same GEMMs (issue 15 item 6, "CPU efficiency"). No MPI, no servers.
//
//   build/bin/freshet_dense_bench                 # synthetic DeepFM, batches 256,1024,4096
//   build/bin/freshet_dense_bench --job_config=cluster-configs/jobs/synthetic-layered.pbtxt
//   build/bin/freshet_dense_bench --hidden=400,400,400 --batch=4096 --threads=1
//
// The model is the job's (--job_config: its features, tables and model
// sections; --hidden overrides model.hidden), built as the trainer builds a
// CPU model (JobModelShape, Model::Create). Each of --threads threads (default
// one per core: one worker per core, one BLAS thread per call -- the
// trainer's threading, model/internal/gemm.h) owns a model and runs the
// trainer's compute step on random batches: Forward, LogLoss, Backward (the
// dense Adam step, after the all-reduce, is not included). Batches: one key
// per single-valued slot, 1..--max_keys per multi-valued slot, random rows
// and dense features; --batches of them per thread, cycled.
//
// Per batch size, four phases, each --seconds of CPU time on every thread,
// the threads running at once, the phases taking turns in --slice_s slices
// (so a change of load on a shared box hits them alike):
//   step   the model's step, unprobed: the headline figure;
//   split  the same under a DenseProfile timing every GEMM: how much of the
//          step is GEMM (the rest is pooling, FM, bias, activations, copies,
//          embedding gradients) and, per GEMM, its time in the model;
//   sgemm  the GEMMs the step ran (shapes, transposes, leading dimensions,
//          beta, recorded from the model) replayed in order through BlasGemm
//          (cblas_sgemm), each on its own operands, the sequence timed as a
//          whole ("sgemm": nothing warms a GEMM's inputs for it);
//   hot    each of those GEMMs run twice in a row, the second timed ("hot":
//          operands in cache, the BLAS's best on the shape).
// FLOPs are the dense layers' GEMM FLOPs, 2 m n k per GEMM (forward, and
// backward's dW and dX), as the model's DenseProfile counted them. GFLOP/s per
// core = FLOPs / CPU time of a thread, averaged over threads; "total" sums
// the threads; "ratio" is the model's per-core figure over sgemm's, "r.hot"
// over hot's (the stricter one). Times are thread CPU time
// (CLOCK_THREAD_CPUTIME_ID), so other processes on a shared box inflate
// neither side (they still share caches and memory bandwidth); the
// wall-clock total is printed too. --per_gemm lists each GEMM of one step:
// its time in the model (split) and hot.
//
// --check first compares, at every batch size, the GEMM FLOPs the model
// reported with an independent count from the config (the formulas in
// ExpectedFlops), and runs every recorded GEMM of a 5-example step through
// BlasGemm against a plain loop in double; exit 1 on a mismatch.
//
// Last line: one JSON object with every figure.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/proto/job.pb.h"
#include "model/dense_profile.h"
#include "model/model.h"
#include "worker/job.h"

DEFINE_string(job_config, "cluster-configs/jobs/synthetic.pbtxt",
              "job config whose model (features, tables, model sections) is measured");
DEFINE_string(hidden, "", "comma-separated MLP widths replacing model.hidden (empty: the job's)");
DEFINE_string(batch, "256,1024,4096", "comma-separated batch sizes");
DEFINE_int32(threads, 0, "threads, one model each (0: one per core)");
DEFINE_double(seconds, 1.0, "CPU seconds per thread and phase");
DEFINE_double(slice_s, 0.1, "the phases take turns in slices of this many CPU seconds");
DEFINE_int32(max_keys, 8, "most keys per example of a multi-valued slot (uniform 1..max_keys)");
DEFINE_int32(batches, 2, "distinct random batches per thread, cycled");
DEFINE_bool(per_gemm, true, "print each GEMM of the step: time in the model and alone");
DEFINE_bool(check, false,
            "check the FLOP count and the GEMMs (see the file comment); exit 1 if wrong");
DEFINE_uint64(seed, 1, "seed of the random batches");

namespace freshet {
namespace {

std::vector<int> ParseInts(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(std::stoi(item));
  }
  return out;
}

// A random batch and the rows a trainer would have pulled for it.
struct BatchData {
  EncodedBatch batch;
  std::vector<std::vector<float>> wide, emb, ffm;  // per slot
  ModelInput input;
  int64_t seq_keys = 0;  // keys of the attention sequence slot (LAYERED)
};

void MakeBatch(const proto::JobConfig& job, const ModelShape& shape, int n, uint64_t seed,
               BatchData* d) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  std::uniform_int_distribution<int> nkeys(1, std::max(1, FLAGS_max_keys));
  const int ns = shape.num_slots, nd = shape.num_dense;
  EncodedBatch& b = d->batch;
  b.Reset(ns, nd);
  b.size = n;
  b.labels.resize(n);
  for (float& l : b.labels) l = static_cast<float>(rng() & 1);
  b.dense.resize(static_cast<size_t>(n) * nd);
  for (float& x : b.dense) x = 0.5f + u(rng) * 10.f;
  d->wide.assign(ns, {});
  d->emb.assign(ns, {});
  d->ffm.assign(ns, {});
  d->input = ModelInput();
  d->input.batch = &b;
  d->seq_keys = 0;
  for (int s = 0; s < ns; ++s) {
    std::vector<uint32_t>& off = b.offsets[s];
    off.assign(1, 0);
    for (int i = 0; i < n; ++i)
      off.push_back(off.back() + (shape.multi_valued[s] ? nkeys(rng) : 1));
    b.keys[s].resize(off.back());
    for (uint64_t& k : b.keys[s]) k = rng();
    const size_t keys = off.back();
    const int dim = shape.slot_dims.empty() ? shape.emb_dim : shape.slot_dims[s];
    d->wide[s].resize(keys);
    for (float& x : d->wide[s]) x = u(rng);
    if (dim > 0) {
      d->emb[s].resize(keys * dim);
      for (float& x : d->emb[s]) x = u(rng);
    }
    if (shape.ffm_dim > 0) {
      d->ffm[s].resize(keys * shape.ffm_dim);
      for (float& x : d->ffm[s]) x = u(rng);
    }
    if (job.model().has_attention() &&
        shape.slot_names[s] == job.model().attention().sequence_slot()) {
      d->seq_keys = static_cast<int64_t>(keys);
    }
  }
  for (int s = 0; s < ns; ++s) {
    d->input.wide.push_back(d->wide[s].data());
    d->input.emb.push_back(d->emb[s].empty() ? nullptr : d->emb[s].data());
    if (shape.ffm_dim > 0) d->input.ffm.push_back(d->ffm[s].data());
  }
}

// The dense layers' GEMM FLOPs of one training step (forward + backward) of
// `c` at batch n, counted from the config, independently of the model code:
// a dense layer in -> out over n columns runs 3 GEMMs of 2 * in * out * n
// FLOPs (forward W X, backward dW = dZ X^T and dX = W^T dZ; every model here
// needs dX of its first layer too, for the embedding gradients).
//   DEEPFM:  MLP [S * k + dense, hidden..., 1]
//   LAYERED: attention MLP [4k, attention.hidden (default [32])..., 1] over
//            the sequence slot's keys (seq_keys columns, not n); each cross
//            layer D -> D; MLP [D, hidden...]; head [h, 1] with h = the
//            MLP's last width (+ D for PARALLEL cross), or D for cross only
double ExpectedFlops(const proto::ModelConfig& c, const ModelShape& shape, int n,
                     int64_t seq_keys) {
  auto mlp = [](const std::vector<int>& w, double cols) {
    double f = 0;
    for (size_t l = 0; l + 1 < w.size(); ++l) f += 6.0 * w[l] * w[l + 1] * cols;
    return f;
  };
  std::vector<int> hidden(c.hidden().begin(), c.hidden().end());
  if (c.kind() == proto::ModelConfig::DEEPFM) {
    std::vector<int> w{shape.num_slots * shape.emb_dim + shape.num_dense};
    w.insert(w.end(), hidden.begin(), hidden.end());
    w.push_back(1);
    return mlp(w, n);
  }
  if (c.kind() != proto::ModelConfig::LAYERED) return 0;
  double flops = 0;
  int D = shape.num_dense, k_att = 0;
  for (int s = 0; s < shape.num_slots; ++s) {
    D += shape.slot_dims[s];
    if (c.has_attention() && shape.slot_names[s] == c.attention().sequence_slot()) {
      k_att = shape.slot_dims[s];
    }
  }
  if (c.has_attention()) {
    std::vector<int> w{4 * k_att};
    w.insert(w.end(), c.attention().hidden().begin(), c.attention().hidden().end());
    if (w.size() == 1) w.push_back(32);
    w.push_back(1);
    flops += mlp(w, static_cast<double>(seq_keys));
  }
  const int L = std::max(0, c.cross_layers());
  flops += 6.0 * L * D * D * n;
  int head = D;
  if (!hidden.empty()) {
    std::vector<int> w{D};
    w.insert(w.end(), hidden.begin(), hidden.end());
    flops += mlp(w, n);
    head = hidden.back() + (L > 0 && c.cross_mode() == proto::ModelConfig::PARALLEL ? D : 0);
  }
  if (L > 0 || !hidden.empty()) flops += 6.0 * head * n;
  return flops;
}

// Column counts of a call's A and B (column-major, lda / ldb rows).
size_t ASize(const GemmCall& g) {
  return static_cast<size_t>(g.lda) * static_cast<size_t>(g.trans_a ? g.m : g.k);
}
size_t BSize(const GemmCall& g) {
  return static_cast<size_t>(g.ldb) * static_cast<size_t>(g.trans_b ? g.k : g.n);
}
size_t CSize(const GemmCall& g) { return static_cast<size_t>(g.ldc) * static_cast<size_t>(g.n); }

std::string OpName(const GemmCall& g) {
  return std::string(g.trans_a ? "T" : "N") + (g.trans_b ? "T" : "N");
}

// Every call through BlasGemm against a loop in double on random inputs.
bool CheckGemms(const std::vector<GemmCall>& calls, std::string* why) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (size_t i = 0; i < calls.size(); ++i) {
    const GemmCall& g = calls[i];
    std::vector<float> a(ASize(g)), b(BSize(g)), c(CSize(g));
    for (float& x : a) x = u(rng);
    for (float& x : b) x = u(rng);
    for (float& x : c) x = u(rng);
    std::vector<float> want = c;
    for (int col = 0; col < g.n; ++col) {
      for (int row = 0; row < g.m; ++row) {
        double s = 0;
        for (int p = 0; p < g.k; ++p) {
          const double x = g.trans_a ? a[p + static_cast<size_t>(row) * g.lda]
                                     : a[row + static_cast<size_t>(p) * g.lda];
          const double y = g.trans_b ? b[col + static_cast<size_t>(p) * g.ldb]
                                     : b[p + static_cast<size_t>(col) * g.ldb];
          s += x * y;
        }
        float& w = want[row + static_cast<size_t>(col) * g.ldc];
        const double cv = g.beta == 0.f ? 0.0 : static_cast<double>(g.beta) * w;
        w = static_cast<float>(g.alpha * s + cv);
      }
    }
    BlasGemm(g, a.data(), b.data(), c.data());
    for (int col = 0; col < g.n; ++col) {
      for (int row = 0; row < g.m; ++row) {
        const size_t at = row + static_cast<size_t>(col) * g.ldc;
        if (std::abs(c[at] - want[at]) > 1e-4f * (1.f + static_cast<float>(g.k))) {
          std::ostringstream os;
          os << "GEMM " << i << " (" << OpName(g) << " m=" << g.m << " n=" << g.n << " k=" << g.k
             << "): C(" << row << "," << col << ") = " << c[at] << ", a loop gives " << want[at];
          *why = os.str();
          return false;
        }
      }
    }
  }
  return true;
}

// One thread's model, batches and replay buffers.
struct Worker {
  std::unique_ptr<Model> model;
  std::vector<BatchData> batches;
  std::vector<float> logits, dlogits, dense_grad;
  SparseGrads grads;
  std::vector<std::vector<GemmCall>> calls;           // per batch: the step's GEMMs
  std::vector<double> flops;                          // per batch: the step's GEMM FLOPs
  std::vector<std::vector<std::vector<float>>> bufs;  // per batch, per call: A, B, C

  void Step(int i) {
    BatchData& d = batches[i];
    const int n = d.batch.size;
    model->Forward(d.input, logits.data());
    LogLoss(logits.data(), d.batch.labels.data(), n, dlogits.data());
    model->Backward(d.input, dlogits.data(), &grads, dense_grad.data());
  }
  void Replay(int i) {
    const std::vector<GemmCall>& cs = calls[i];
    std::vector<std::vector<float>>& b = bufs[i];
    for (size_t j = 0; j < cs.size(); ++j) {
      BlasGemm(cs[j], b[3 * j].data(), b[3 * j + 1].data(), b[3 * j + 2].data());
    }
  }
};

// What one thread measured in one phase, summed over its slices.
struct PhaseResult {
  int64_t steps = 0, batch0_steps = 0;
  double flops = 0, cpu = 0, gemm = 0;
  // Seconds per call index of batch 0's GEMM sequence (split, timed replay).
  std::vector<double> per_call;
};

enum class Phase { kStep, kSplit, kSgemm, kSgemmHot };

// Runs one slice of `phase` for `seconds` of the thread's CPU time (at least
// two steps), adding to *r.
void RunPhase(Worker* w, Phase phase, double seconds, PhaseResult* r) {
  const int nb = static_cast<int>(w->batches.size());
  const size_t ncalls = w->calls[0].size();
  r->per_call.resize(ncalls, 0.0);
  std::unique_ptr<DenseProfile> profile;
  if (phase == Phase::kSplit) {
    DenseProfile::Options o;
    o.keep_calls = true;
    o.time_calls = true;
    profile = std::make_unique<DenseProfile>(o);
  }
  const double c0 = ThreadCpuSeconds();
  double now = c0;
  for (int64_t done = 0; now - c0 < seconds || done < 2; ++done) {
    const int i = static_cast<int>(r->steps % nb);
    switch (phase) {
      case Phase::kStep:
      case Phase::kSplit:
        w->Step(i);
        break;
      case Phase::kSgemm:
        w->Replay(i);
        break;
      case Phase::kSgemmHot: {
        // Each GEMM twice in a row; the second, on operands the first
        // brought into cache, is timed.
        const std::vector<GemmCall>& cs = w->calls[i];
        std::vector<std::vector<float>>& b = w->bufs[i];
        for (size_t j = 0; j < cs.size(); ++j) {
          BlasGemm(cs[j], b[3 * j].data(), b[3 * j + 1].data(), b[3 * j + 2].data());
          const double t0 = ThreadCpuSeconds();
          BlasGemm(cs[j], b[3 * j].data(), b[3 * j + 1].data(), b[3 * j + 2].data());
          const double t = ThreadCpuSeconds() - t0;
          r->gemm += t;
          if (i == 0 && j < ncalls) r->per_call[j] += t;
        }
        break;
      }
    }
    if (profile != nullptr) {
      r->gemm += profile->seconds();
      if (i == 0) {
        const std::vector<GemmCall>& cs = profile->calls();
        for (size_t j = 0; j < cs.size() && j < ncalls; ++j) r->per_call[j] += cs[j].seconds;
      }
      profile->Reset();
    }
    r->flops += w->flops[i];
    ++r->steps;
    if (i == 0) ++r->batch0_steps;
    now = ThreadCpuSeconds();
  }
  r->cpu += now - c0;
}

struct Summary {
  double step_ms = 0;               // CPU ms per step, mean over threads
  double gemm_ms = 0;               // split, hot: GEMM CPU ms per step
  double gemm_per_core = 0;         // split, hot: GFLOP/s per core of the GEMM time alone
  double per_core = 0;              // GFLOP/s per core (CPU time), mean over threads
  double total = 0;                 // sum over threads
  double wall_total = 0;            // FLOPs of all threads / wall seconds
  std::vector<double> per_call_us;  // per call index, per batch-0 step
};

// One slice of `phase` on every thread at once, added to (*res)[thread];
// adds the slice's wall time to *wall.
void RunThreads(std::vector<Worker>& workers, Phase phase, double seconds,
                std::vector<PhaseResult>* res, double* wall) {
  res->resize(workers.size());
  std::vector<std::thread> threads;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t t = 0; t < workers.size(); ++t) {
    threads.emplace_back(RunPhase, &workers[t], phase, seconds, &(*res)[t]);
  }
  for (std::thread& th : threads) th.join();
  *wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Summary Summarize(const std::vector<PhaseResult>& res, double wall) {
  Summary s;
  double flops = 0;
  s.per_call_us.assign(res[0].per_call.size(), 0.0);
  for (const PhaseResult& r : res) {
    s.step_ms += 1e3 * r.cpu / r.steps / res.size();
    s.gemm_ms += 1e3 * r.gemm / r.steps / res.size();
    if (r.gemm > 0) s.gemm_per_core += r.flops / r.gemm / 1e9 / res.size();
    s.per_core += r.flops / r.cpu / 1e9 / res.size();
    s.total += r.flops / r.cpu / 1e9;
    flops += r.flops;
    for (size_t j = 0; j < s.per_call_us.size() && j < r.per_call.size(); ++j) {
      s.per_call_us[j] += 1e6 * r.per_call[j] / std::max<int64_t>(1, r.batch0_steps) / res.size();
    }
  }
  s.wall_total = flops / wall / 1e9;
  return s;
}

int Main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  StatusOr<proto::JobConfig> loaded = LoadJobConfig(FLAGS_job_config);
  if (!loaded.ok()) {
    std::fprintf(stderr, "freshet_dense_bench: %s\n", loaded.status().ToString().c_str());
    return 2;
  }
  proto::JobConfig job = std::move(loaded).value();
  if (!FLAGS_hidden.empty()) {
    job.mutable_model()->clear_hidden();
    for (int h : ParseInts(FLAGS_hidden)) job.mutable_model()->add_hidden(h);
  }
  const ModelShape shape =
      JobModelShape(job, job.features().slots_size(), job.features().dense_size());
  const std::vector<int> batch_sizes = ParseInts(FLAGS_batch);
  const int threads = FLAGS_threads > 0
                          ? FLAGS_threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  if (batch_sizes.empty() || FLAGS_batches < 1 || !(FLAGS_slice_s > 0)) {
    std::fprintf(stderr,
                 "freshet_dense_bench: --batch must not be empty, --batches >= 1, --slice_s > 0\n");
    return 2;
  }
  auto create = [&]() -> std::unique_ptr<Model> {
    StatusOr<std::unique_ptr<Model>> m = Model::Create(job.model(), shape);
    if (!m.ok()) {
      std::fprintf(stderr, "freshet_dense_bench: %s: %s\n", FLAGS_job_config.c_str(),
                   m.status().ToString().c_str());
      return nullptr;
    }
    return std::move(m).value();
  };
  std::unique_ptr<Model> probe = create();  // also sets the BLAS threads, as in a worker
  if (probe == nullptr) return 2;
  if (probe->num_heads() != 1) {
    std::fprintf(stderr,
                 "freshet_dense_bench: %s: a multi-task model (model.heads) is not supported; "
                 "benchmark its one-head variant\n",
                 FLAGS_job_config.c_str());
    return 2;
  }

  std::string hidden;
  for (int h : job.model().hidden()) hidden += (hidden.empty() ? "" : ",") + std::to_string(h);
  std::printf(
      "freshet_dense_bench: job %s (%s, %s), %d slots, %d dense, hidden [%s], %zu dense params\n"
      "  %d threads (one model each, running at once), GEMMs on %s with %d BLAS thread(s) per "
      "call; times are thread CPU time, %.2f s per thread and phase in %.2f s slices\n",
      job.name().c_str(), proto::ModelConfig::Kind_Name(job.model().kind()).c_str(),
      FLAGS_job_config.c_str(), shape.num_slots, shape.num_dense, hidden.c_str(),
      probe->NumDenseParams(), threads, GemmBackend(), BlasThreads(), FLAGS_seconds, FLAGS_slice_s);

  // The tiny check: every GEMM of a 5-example step against a loop.
  if (FLAGS_check) {
    BatchData d;
    MakeBatch(job, shape, 5, FLAGS_seed, &d);
    std::vector<float> logits(5), dlogits(5), dense_grad(probe->NumDenseParams());
    SparseGrads grads;
    DenseProfile::Options o;
    o.keep_calls = true;
    DenseProfile profile(o);
    probe->Forward(d.input, logits.data());
    LogLoss(logits.data(), d.batch.labels.data(), 5, dlogits.data());
    probe->Backward(d.input, dlogits.data(), &grads, dense_grad.data());
    std::string why;
    if (!CheckGemms(profile.calls(), &why)) {
      std::printf("check FAILED: %s\n", why.c_str());
      return 1;
    }
    std::printf("check: the %zu GEMMs of a 5-example step match a loop in double\n",
                profile.calls().size());
  }

  std::ostringstream js;
  js << "{\"bench\":\"dense\",\"job\":\"" << job.name() << "\",\"kind\":\""
     << proto::ModelConfig::Kind_Name(job.model().kind()) << "\",\"hidden\":[" << hidden
     << "],\"threads\":" << threads << ",\"blas\":\"" << GemmBackend()
     << "\",\"blas_threads\":" << BlasThreads() << ",\"seconds\":" << FLAGS_seconds
     << ",\"cases\":[";
  // Columns: GEMMs and MFLOP per step; CPU ms per step: the model's step,
  // its GEMMs (split), the GEMMs replayed alone; GEMM share of the step;
  // GFLOP/s of the model's step per core, all threads, all threads by the
  // wall clock; sgemm alone per core and all threads, hot per core; the
  // model's per-core figure over sgemm alone and over hot.
  std::printf("%6s %6s %9s %8s %8s %8s %7s | %9s %9s %9s | %9s %9s %9s | %6s %6s\n", "batch",
              "GEMMs", "MFLOP", "step ms", "gemm ms", "sgemm ms", "gemm %", "model/cor",
              "model tot", "wall tot", "sgemm/cor", "sgemm tot", "hot/cor", "ratio", "r.hot");
  std::fflush(stdout);
  bool first = true;
  for (int n : batch_sizes) {
    if (n < 1) {
      std::fprintf(stderr, "freshet_dense_bench: batch sizes must be >= 1\n");
      return 2;
    }
    std::vector<Worker> workers(threads);
    for (int t = 0; t < threads; ++t) {
      Worker& w = workers[t];
      w.model = t == 0 && probe != nullptr ? std::move(probe) : create();
      if (w.model == nullptr) return 2;
      w.batches.resize(FLAGS_batches);
      w.logits.resize(n);
      w.dlogits.resize(n);
      w.dense_grad.resize(w.model->NumDenseParams());
      for (int i = 0; i < FLAGS_batches; ++i) {
        MakeBatch(job, shape, n, FLAGS_seed + 1000003ull * (t + 1) + i, &w.batches[i]);
        // One recorded step per batch: its GEMMs and FLOPs (and buffers sized).
        DenseProfile::Options o;
        o.keep_calls = true;
        DenseProfile profile(o);
        w.Step(i);
        w.calls.push_back(profile.calls());
        w.flops.push_back(profile.flops());
        if (FLAGS_check) {
          const double want = ExpectedFlops(job.model(), shape, n, w.batches[i].seq_keys);
          if (profile.flops() != want) {
            std::printf(
                "check FAILED: batch %d: the model ran %.0f GEMM FLOPs per step, the "
                "config says %.0f\n",
                n, profile.flops(), want);
            return 1;
          }
        }
      }
      if (w.calls[0].empty()) {
        std::printf("freshet_dense_bench: the model runs no GEMMs (kind %s): nothing to measure\n",
                    proto::ModelConfig::Kind_Name(job.model().kind()).c_str());
        return 0;
      }
      std::mt19937_64 rng(FLAGS_seed + 77 + t);
      std::uniform_real_distribution<float> u(-0.05f, 0.05f);
      w.bufs.resize(FLAGS_batches);
      for (int i = 0; i < FLAGS_batches; ++i) {
        for (const GemmCall& g : w.calls[i]) {
          for (size_t size : {ASize(g), BSize(g), CSize(g)}) {
            std::vector<float> v(size);
            for (float& x : v) x = u(rng);
            w.bufs[i].push_back(std::move(v));
          }
        }
      }
    }
    if (FLAGS_check) {
      std::printf("check: batch %d: the model's GEMM FLOPs per step equal the config's count\n", n);
    }
    // The phases take turns in slices, so a change of load on a shared box
    // hits them alike.
    const std::vector<Phase> phases{Phase::kStep, Phase::kSplit, Phase::kSgemm, Phase::kSgemmHot};
    std::vector<std::vector<PhaseResult>> res(phases.size());
    std::vector<double> wall(phases.size(), 0.0);
    const int slices = std::max(1, static_cast<int>(std::lround(FLAGS_seconds / FLAGS_slice_s)));
    for (int sl = 0; sl < slices; ++sl) {
      for (size_t p = 0; p < phases.size(); ++p) {
        RunThreads(workers, phases[p], FLAGS_seconds / slices, &res[p], &wall[p]);
      }
    }
    const Summary step = Summarize(res[0], wall[0]);
    const Summary split = Summarize(res[1], wall[1]);
    const Summary sgemm = Summarize(res[2], wall[2]);
    const Summary hot = Summarize(res[3], wall[3]);
    const Worker& w0 = workers[0];
    const double share = split.step_ms > 0 ? split.gemm_ms / split.step_ms : 0;
    const double ratio = sgemm.per_core > 0 ? step.per_core / sgemm.per_core : 0;
    const double ratio_hot = hot.gemm_per_core > 0 ? step.per_core / hot.gemm_per_core : 0;
    std::printf(
        "%6d %6zu %9.2f %8.3f %8.3f %8.3f %6.1f%% | %9.2f %9.2f %9.2f | %9.2f %9.2f %9.2f | "
        "%5.1f%% %5.1f%%\n",
        n, w0.calls[0].size(), w0.flops[0] / 1e6, step.step_ms, split.gemm_ms, sgemm.step_ms,
        100 * share, step.per_core, step.total, step.wall_total, sgemm.per_core, sgemm.total,
        hot.gemm_per_core, 100 * ratio, 100 * ratio_hot);
    if (FLAGS_per_gemm) {
      std::printf(
          "         GEMMs of one step (batch 0 of each thread; us per call, thread CPU):\n");
      std::printf("         %3s %2s %6s %6s %6s %4s %9s %9s %9s %7s\n", "#", "op", "m", "n", "k",
                  "beta", "MFLOP", "in model", "hot", "hot/in");
      const std::vector<GemmCall>& cs = w0.calls[0];
      for (size_t j = 0; j < cs.size(); ++j) {
        const double in_model = split.per_call_us[j], alone = hot.per_call_us[j];
        std::printf("         %3zu %2s %6d %6d %6d %4.0f %9.3f %9.1f %9.1f %6.0f%%\n", j,
                    OpName(cs[j]).c_str(), cs[j].m, cs[j].n, cs[j].k, cs[j].beta,
                    cs[j].flops() / 1e6, in_model, alone,
                    in_model > 0 ? 100 * alone / in_model : 0.0);
      }
    }
    std::fflush(stdout);
    js << (first ? "" : ",") << "{\"batch\":" << n << ",\"gemms_per_step\":" << w0.calls[0].size()
       << ",\"mflop_per_step\":" << w0.flops[0] / 1e6 << ",\"step_ms\":" << step.step_ms
       << ",\"split_step_ms\":" << split.step_ms << ",\"gemm_in_step_ms\":" << split.gemm_ms
       << ",\"gemm_share\":" << share << ",\"sgemm_ms\":" << sgemm.step_ms
       << ",\"gflops_per_core\":" << step.per_core << ",\"gflops_total\":" << step.total
       << ",\"gflops_wall_total\":" << step.wall_total
       << ",\"sgemm_gflops_per_core\":" << sgemm.per_core
       << ",\"sgemm_gflops_total\":" << sgemm.total
       << ",\"sgemm_hot_gflops_per_core\":" << hot.gemm_per_core
       << ",\"gemm_in_step_gflops_per_core\":" << split.gemm_per_core << ",\"ratio\":" << ratio
       << ",\"ratio_hot\":" << ratio_hot << "}";
    first = false;
  }
  js << "]}";
  std::printf("%s\n", js.str().c_str());
  return 0;
}

}  // namespace
}  // namespace freshet

int main(int argc, char** argv) { return freshet::Main(argc, argv); }
