#include "tests/ps_scenario.h"

#include <chrono>
#include <cmath>
#include <thread>

#include "common/sharding.h"

namespace freshet::testing {
namespace {

constexpr float kLr[2] = {1.0f, 0.5f};
constexpr float kInit[2] = {0.25f, -0.5f};
constexpr int kDim[2] = {4, 3};

// Gradient of coordinate j of key i from worker w in step t, given the value
// v the worker last pulled. A multiple of 1/32 in [-2, 2].
float Grad(float v, int i, int j, int w, int t) {
  const float q = std::round(v * 8.0f) / 8.0f;  // multiple of 1/8
  const float c = static_cast<float>((i * 7 + w * 3 + t + j) % 5 + 1) / 16.0f;
  return q / 2.0f + c;
}

bool PushesAt(int i, int t) { return (i + t) % 2 == 0; }

}  // namespace

proto::TablesConfig ScenarioTables() {
  proto::TablesConfig cfg;
  for (int t = 0; t < 2; ++t) {
    auto* tc = cfg.add_tables();
    tc->set_name(t == 0 ? "user" : "item");
    tc->set_dim(kDim[t]);
    tc->mutable_initializer()->set_kind(proto::Initializer::CONSTANT);
    tc->mutable_initializer()->set_scale(kInit[t]);
    tc->mutable_optimizer()->mutable_sgd()->set_learning_rate(kLr[t]);
  }
  return cfg;
}

std::vector<int> ScenarioDims() { return {kDim[0], kDim[1]}; }

uint64_t ScenarioKey(int i) { return MixKey(static_cast<uint64_t>(i) + 12345) ^ 0x5bd1e995ULL; }

std::vector<float> ReferenceState(const ScenarioSpec& spec, int table, int num_workers, int steps) {
  const int dim = kDim[table];
  std::vector<float> s(static_cast<size_t>(spec.num_keys) * dim, kInit[table]);
  for (int t = 0; t < steps; ++t) {
    for (int i = 0; i < spec.num_keys; ++i) {
      if (!PushesAt(i, t)) continue;
      for (int j = 0; j < dim; ++j) {
        float& v = s[static_cast<size_t>(i) * dim + j];
        float g = 0;
        for (int w = 0; w < num_workers; ++w) g += Grad(v, i, j, w, t);
        v -= kLr[table] * g;
      }
    }
  }
  return s;
}

Status RunScenarioWorker(PsClient* client, int num_workers, const ScenarioSpec& spec) {
  const int w = client->worker_index();
  const int n = spec.num_keys;
  // last[table][i*dim+j]: the value this worker last pulled (init before any).
  std::vector<std::vector<float>> last(2);
  for (int tb = 0; tb < 2; ++tb) last[tb].assign(static_cast<size_t>(n) * kDim[tb], kInit[tb]);

  for (int t = 0; t <= spec.steps; ++t) {
    const bool final_step = t == spec.steps;
    for (int tb = 0; tb < 2; ++tb) {
      const int dim = kDim[tb];
      const std::vector<float> ref = ReferenceState(spec, tb, num_workers, t);
      // Pull: odd parity keys, every key in the last step; every 4th twice.
      std::vector<uint64_t> keys;
      std::vector<int> idx;
      for (int i = 0; i < n; ++i) {
        if (!final_step && PushesAt(i, t)) continue;
        keys.push_back(ScenarioKey(i));
        idx.push_back(i);
        if (i % 4 == 0) {
          keys.push_back(ScenarioKey(i));
          idx.push_back(i);
        }
      }
      std::vector<float> out(keys.size() * dim);
      Status st = client->Pull(tb, keys.data(), keys.size(), out.data()).get();
      if (!st.ok())
        return st.WithContext("worker " + std::to_string(w) + " step " + std::to_string(t) +
                              " pull");
      for (size_t k = 0; k < keys.size(); ++k) {
        for (int j = 0; j < dim; ++j) {
          const float got = out[k * dim + j];
          const float want = ref[static_cast<size_t>(idx[k]) * dim + j];
          if (got != want) {
            return Internal("worker " + std::to_string(w) + " step " + std::to_string(t) +
                            " table " + std::to_string(tb) + " key index " +
                            std::to_string(idx[k]) + " coord " + std::to_string(j) + ": pulled " +
                            std::to_string(got) + ", reference " + std::to_string(want));
          }
          last[tb][static_cast<size_t>(idx[k]) * dim + j] = got;
        }
      }
      if (final_step) continue;
      // Push: even parity keys; every 5th key split into two halves.
      std::vector<uint64_t> pkeys;
      std::vector<float> grads;
      for (int i = 0; i < n; ++i) {
        if (!PushesAt(i, t)) continue;
        std::vector<float> g(dim);
        for (int j = 0; j < dim; ++j)
          g[j] = Grad(last[tb][static_cast<size_t>(i) * dim + j], i, j, w, t);
        if (i % 5 == 0) {
          for (int half = 0; half < 2; ++half) {
            pkeys.push_back(ScenarioKey(i));
            for (int j = 0; j < dim; ++j) grads.push_back(g[j] / 2.0f);
          }
        } else {
          pkeys.push_back(ScenarioKey(i));
          grads.insert(grads.end(), g.begin(), g.end());
        }
      }
      if (spec.skew_ms > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(spec.skew_ms * w));
      }
      st = client->Push(tb, pkeys.data(), pkeys.size(), grads.data()).get();
      if (!st.ok())
        return st.WithContext("worker " + std::to_string(w) + " step " + std::to_string(t) +
                              " push");
    }
    if (!final_step) FRESHET_RETURN_IF_ERROR(client->Clock());
  }
  return Status::OK();
}

}  // namespace freshet::testing
