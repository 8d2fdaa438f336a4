// freshet_model_diff: compares two saved models (freshet_train model dirs)
// parameter by parameter: dense parameters, and every row of every table
// (weights; the same keys must exist in both). Prints the largest absolute
// differences; exits 1 if any exceeds --tolerance (a NaN or infinite
// weight on either side is an infinite difference), 2 on errors.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <vector>

#include "apps/model_diff/param_diff.h"
#include "common/logging.h"
#include "model/features.h"
#include "server/parameter_shard.h"
#include "server/table_io.h"
#include "worker/dense_file.h"
#include "worker/job.h"

DEFINE_double(tolerance, 1e-5, "largest allowed absolute difference");

namespace freshet {
namespace {

struct Loaded {
  proto::JobConfig job;
  std::unique_ptr<ParameterShard> shard;
  std::vector<float> dense;
};

StatusOr<Loaded> Load(const std::string& dir) {
  Loaded m;
  FRESHET_ASSIGN_OR_RETURN(m.job, LoadJobConfig(dir + "/job.pbtxt"));
  FRESHET_ASSIGN_OR_RETURN(m.shard, ParameterShard::Create(m.job.tables(), 16));
  FRESHET_RETURN_IF_ERROR(LoadModelRows(dir, m.shard.get()));
  FRESHET_ASSIGN_OR_RETURN(m.dense, ReadDenseParams(dir + "/dense.bin"));
  return m;
}

int Run(const std::string& a_dir, const std::string& b_dir) {
  auto a = Load(a_dir);
  auto b = Load(b_dir);
  if (!a.ok() || !b.ok()) {
    std::fprintf(stderr, "freshet_model_diff: %s\n",
                 (!a.ok() ? a.status() : b.status()).ToString().c_str());
    return 2;
  }
  if (a->dense.size() != b->dense.size()) {
    std::printf("dense parameter counts differ: %zu vs %zu\n", a->dense.size(), b->dense.size());
    return 1;
  }
  double worst = 0;
  // Non-finite differences (NaN or infinite weights) count as infinite.
  const double dense_max =
      internal::MaxParamDiff(a->dense.data(), b->dense.data(), a->dense.size());
  std::printf("dense: %zu parameters, max |diff| %.3g\n", a->dense.size(), dense_max);
  worst = std::max(worst, dense_max);
  for (int t = 0; t < a->shard->num_tables(); ++t) {
    const EmbeddingTable* ta = a->shard->table(t);
    const EmbeddingTable* tb = b->shard->table(t);
    const int dim = ta->dim();
    std::vector<float> wb(dim);
    int64_t rows = 0, missing = 0;
    double table_max = 0;
    ta->ForEach([&](uint64_t key, const float* w, const float*, const RowMeta&) {
      ++rows;
      if (!tb->Lookup(key, wb.data())) {
        ++missing;
        return;
      }
      table_max = std::max(table_max, internal::MaxParamDiff(w, wb.data(), dim));
    });
    std::printf("table %s: %lld rows vs %lld, %lld missing in the second, max |diff| %.3g\n",
                ta->config().name().c_str(), static_cast<long long>(rows),
                static_cast<long long>(tb->size()), static_cast<long long>(missing), table_max);
    if (missing > 0 || rows != tb->size()) worst = INFINITY;
    worst = std::max(worst, table_max);
  }
  const bool ok = worst <= FLAGS_tolerance;
  std::printf("%s: max |diff| %.3g, tolerance %.3g\n", ok ? "MATCH" : "DIFFER", worst,
              FLAGS_tolerance);
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace freshet

int main(int argc, char** argv) {
  gflags::SetUsageMessage("usage: freshet_model_diff MODEL_DIR_A MODEL_DIR_B [--tolerance=1e-5]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  freshet::InitLogging(argv[0]);
  if (argc != 3) {
    gflags::ShowUsageWithFlags(argv[0]);
    return 2;
  }
  return freshet::Run(argv[1], argv[2]);
}
