// freshet_eval: evaluates a saved model (a model_dir written by
// freshet_train: job.pbtxt, dense.bin, shard-*.rows) on the job's holdout
// files, or on example files given with --files. Prints AUC, logloss, GAUC
// and, on generated data, the oracle AUC; the last line is JSON.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <cstdio>
#include <sstream>

#include "common/collective.h"
#include "common/logging.h"
#include "model/features.h"
#include "model/model_factory.h"
#include "server/local_sparse_store.h"
#include "server/parameter_shard.h"
#include "server/table_io.h"
#include "worker/data/example_io.h"
#include "worker/dense_file.h"
#include "worker/job.h"
#include "worker/metrics.h"
#include "worker/trainer.h"

DEFINE_string(model_dir, "out/synthetic/model", "saved model directory");
DEFINE_string(files, "", "comma-separated example files (default: the job's holdout files)");
DEFINE_string(scores_out, "",
              "if set, write each example's probability to this file, one per line (a "
              "multi-task model: the serving head's, as freshet_serve returns)");

namespace freshet {
namespace {

Status Run() {
  FRESHET_ASSIGN_OR_RETURN(proto::JobConfig job, LoadJobConfig(FLAGS_model_dir + "/job.pbtxt"));
  std::vector<std::string> files;
  if (FLAGS_files.empty()) {
    files.assign(job.data().holdout_files().begin(), job.data().holdout_files().end());
  } else {
    std::stringstream ss(FLAGS_files);
    std::string f;
    while (std::getline(ss, f, ',')) {
      if (!f.empty()) files.push_back(f);
    }
  }
  if (files.empty()) return InvalidArgument("no files to evaluate (use --files)");
  FRESHET_ASSIGN_OR_RETURN(auto shard, ParameterShard::Create(job.tables(), 64));
  FRESHET_RETURN_IF_ERROR(LoadModelRows(FLAGS_model_dir, shard.get()));
  FRESHET_ASSIGN_OR_RETURN(std::vector<std::string> columns, ReadExampleHeader(files[0]));
  FRESHET_ASSIGN_OR_RETURN(auto encoder, FeatureEncoder::Create(job.features(), columns,
                                                                ModelLabelColumns(job.model())));
  FRESHET_ASSIGN_OR_RETURN(auto model,
                           CreateJobModel(job, encoder->num_slots(), encoder->num_dense()));
  FRESHET_RETURN_IF_ERROR(LoadDense(FLAGS_model_dir + "/dense.bin", model.get()));
  LocalSparseStore store(shard.get());
  LocalCollective collective;
  Trainer::Options opt;
  opt.batch_size = job.batch_size();
  FRESHET_ASSIGN_OR_RETURN(
      auto trainer, Trainer::Create(job, encoder.get(), model.get(), &store, &collective, opt));
  BadRecordPolicy policy;
  policy.max_bad_ratio = job.data().max_bad_ratio();
  policy.max_bad_records = job.data().max_bad_records();
  FRESHET_ASSIGN_OR_RETURN(auto reader, ExampleReader::OpenFiles(files, policy));
  ScoredSet scored;
  FRESHET_RETURN_IF_ERROR(trainer->Score(reader.get(), &scored));
  if (!FLAGS_scores_out.empty()) {
    std::FILE* f = std::fopen(FLAGS_scores_out.c_str(), "w");
    if (!f) return Internal(FLAGS_scores_out + ": cannot create");
    // The head freshet_serve returns (the only one of most models).
    const int head = ServingHead(job.model());
    const std::vector<float>& probs =
        head == 0 ? scored.probs : scored.heads.at(static_cast<size_t>(head) - 1).probs;
    for (float p : probs) std::fprintf(f, "%.9g\n", p);
    if (std::fclose(f) != 0) return Internal(FLAGS_scores_out + ": write failed");
  }
  const EvalResult r = Evaluate(scored.probs, scored.labels, scored.users, scored.oracle);
  std::printf("model %s on %zu file(s): %lld examples (%lld positive, %lld bad lines skipped)\n",
              FLAGS_model_dir.c_str(), files.size(), static_cast<long long>(r.examples),
              static_cast<long long>(r.positives), static_cast<long long>(reader->stats().bad));
  std::printf("AUC %.4f  logloss %.4f  GAUC %.4f (%lld users)", r.auc, r.logloss, r.gauc,
              static_cast<long long>(r.gauc_users));
  if (r.oracle_auc >= 0) std::printf("  oracle AUC %.4f", r.oracle_auc);
  std::printf("\n{%s}\n", r.ToJsonFields("").c_str());
  // A multi-task model: every further head against its own labels.
  const std::vector<ModelHead> heads = ModelHeads(job.model());
  for (size_t k = 1; k < heads.size() && k - 1 < scored.heads.size(); ++k) {
    const EvalResult h = Evaluate(scored.heads[k - 1].probs, scored.heads[k - 1].labels,
                                  scored.users, std::vector<float>());
    std::printf("head %s (%s): AUC %.4f  logloss %.4f  positives %lld\n", heads[k].name.c_str(),
                heads[k].label.empty() ? "main label" : heads[k].label.c_str(), h.auc, h.logloss,
                static_cast<long long>(h.positives));
  }
  return Status::OK();
}

}  // namespace
}  // namespace freshet

int main(int argc, char** argv) {
  gflags::SetUsageMessage("evaluates a saved freshet model on example files");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  freshet::InitLogging(argv[0]);
  freshet::Status st = freshet::Run();
  if (!st.ok()) {
    std::fprintf(stderr, "freshet_eval: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}
