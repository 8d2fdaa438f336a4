#include "worker/internal/job_eval.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "worker/data/task.h"
#include "worker/data/validation_split.h"
#include "worker/internal/job_stream.h"
#include "worker/metrics.h"

namespace freshet {

std::vector<HeadEval> EvaluateHeads(const proto::ModelConfig& model, const ScoredSet& scored) {
  const std::vector<ModelHead> heads = ModelHeads(model);
  std::vector<HeadEval> out;
  if (heads.size() < 2) return out;
  const std::vector<float> no_oracle;
  auto labels_of = [&](size_t k) -> const std::vector<float>& {
    return k == 0 ? scored.labels : scored.heads[k - 1].labels;
  };
  for (size_t k = 0; k < heads.size(); ++k) {
    HeadEval e;
    e.name = heads[k].name;
    e.label = heads[k].label;
    if (k > 0 && k - 1 >= scored.heads.size()) break;  // not scored per head
    e.result = Evaluate(k == 0 ? scored.probs : scored.heads[k - 1].probs, labels_of(k),
                        scored.users, no_oracle);
    if (heads[k].multiply_by >= 0) {
      const size_t parent = static_cast<size_t>(heads[k].multiply_by);
      e.conditional_on = heads[parent].name;
      const std::vector<float>& given = labels_of(parent);
      std::vector<float> own, y;
      for (size_t i = 0; i < given.size(); ++i) {
        if (given[i] <= 0.5f) continue;
        own.push_back(scored.heads[k - 1].own[i]);
        y.push_back(labels_of(k)[i]);
        e.conditional_positives += y.back() > 0.5f;
      }
      e.conditional_examples = static_cast<int64_t>(own.size());
      e.conditional_auc = Auc(own, y);
      e.multiply_by_auc =
          Auc(parent == 0 ? scored.probs : scored.heads[parent - 1].probs, labels_of(k));
    }
    out.push_back(std::move(e));
  }
  return out;
}

StatusOr<SplitSpans> AgreeValidationSplit(const proto::DataConfig& data,
                                          const std::vector<std::string>& train_files,
                                          const std::vector<uint64_t>& sizes, Collective* workers,
                                          bool print, JobResult* result) {
  const bool leader = workers->rank() == 0;
  BadRecordPolicy split_policy;
  split_policy.max_bad_ratio = data.max_bad_ratio();
  split_policy.max_bad_records = data.max_bad_records();
  StatusOr<ValidationCut> found = ValidationCut();
  if (leader) found = FindValidationCut(train_files, data.validation_fraction(), split_policy);
  double v[6] = {0, 0, 0, 0, 0, 0};
  if (leader) {
    v[0] = found.ok() ? 0 : 1;
    if (found.ok()) {
      v[1] = found->file;
      v[2] = static_cast<double>(found->offset);
      v[3] = static_cast<double>(found->time);
      v[4] = static_cast<double>(found->train_examples);
      v[5] = static_cast<double>(found->validation_examples);
    }
  }
  FRESHET_RETURN_IF_ERROR(workers->AllReduceSum(v, 6));
  if (!found.ok()) return found.status().WithContext("the validation split");
  if (v[0] > 0) return Status(StatusCode::kAborted, "worker 0 failed to find the validation split");
  ValidationCut cut;
  cut.file = static_cast<int>(v[1]);
  cut.offset = static_cast<uint64_t>(v[2]);
  cut.time = static_cast<int64_t>(v[3]);
  cut.train_examples = static_cast<int64_t>(v[4]);
  cut.validation_examples = static_cast<int64_t>(v[5]);
  SplitSpans spans;
  spans.train = TrainingSpans(train_files, sizes, cut);
  spans.validation = ValidationSpans(train_files, sizes, cut);
  result->validation_examples = cut.validation_examples;
  result->validation_train_examples = cut.train_examples;
  result->validation_time = cut.time;
  if (print) {
    std::printf(
        "validation split: the last %.3g of train by time, %lld examples from time %lld "
        "(%s byte %llu); training on the %lld before\n",
        data.validation_fraction(), static_cast<long long>(cut.validation_examples),
        static_cast<long long>(cut.time), train_files[cut.file].c_str(),
        static_cast<unsigned long long>(cut.offset), static_cast<long long>(cut.train_examples));
    std::fflush(stdout);
  }
  return spans;
}

PassValidator::PassValidator(const proto::JobConfig& job, const RunOptions& options,
                             std::vector<FileRange> validation_spans, int start_epoch,
                             Collective* workers, JobResult* result, EarlyStopping stopper)
    : job_(job),
      options_(options),
      validation_spans_(std::move(validation_spans)),
      start_epoch_(start_epoch),
      workers_(workers),
      result_(result),
      leader_(workers->rank() == 0),
      early_stopping_(job.has_early_stopping()),
      stopper_(std::move(stopper)),
      best_dir_(job.work_dir() + "/best-pass") {}

StatusOr<std::unique_ptr<PassValidator>> PassValidator::Create(
    const proto::JobConfig& job, const RunOptions& options, std::vector<FileRange> validation_spans,
    int start_epoch, Collective* workers, JobResult* result) {
  const auto& es = job.early_stopping();
  FRESHET_ASSIGN_OR_RETURN(EarlyStopping tracker,
                           job.has_early_stopping()
                               ? EarlyStopping::Create(es.metric(), es.patience(), es.min_delta())
                               : EarlyStopping::Create("auc", 0, 0));
  result->validation_metric = tracker.metric();
  return std::unique_ptr<PassValidator>(new PassValidator(
      job, options, std::move(validation_spans), start_epoch, workers, result, std::move(tracker)));
}

StatusOr<bool> PassValidator::AfterEpoch(int epoch, Trainer* trainer, Model* model,
                                         CheckpointDriver* checkpoints) {
  // Every worker's pushes are applied (each trainer drained its own).
  FRESHET_RETURN_IF_ERROR(workers_->Barrier());
  BadRecordPolicy vpolicy;
  vpolicy.max_bad_ratio = job_.data().max_bad_ratio();
  vpolicy.max_bad_records = job_.data().max_bad_records();
  ScoredSet mine;
  {
    FRESHET_ASSIGN_OR_RETURN(
        std::unique_ptr<ExampleReader> reader,
        ExampleReader::Open(SplitRanges(validation_spans_, workers_->rank(), workers_->size()),
                            vpolicy));
    FRESHET_RETURN_IF_ERROR(trainer->Score(reader.get(), &mine).WithContext("validation"));
  }
  std::string all;
  const std::string bytes = mine.Serialize();
  FRESHET_RETURN_IF_ERROR(workers_->GatherBytes(bytes.data(), bytes.size(), &all));
  // Worker 0 decides: [improved, stop].
  double decision[2] = {0, 0};
  if (leader_) {
    FRESHET_ASSIGN_OR_RETURN(ScoredSet v, ScoredSet::ParseAll(all));
    EvalResult r = Evaluate(v.probs, v.labels, v.users, v.oracle);
    result_->validation.push_back(r);
    std::vector<HeadEval> heads = EvaluateHeads(job_.model(), v);
    if (!heads.empty()) result_->validation_heads.push_back(heads);
    const bool improved = stopper_.Add(stopper_.ValueOf(r));
    const bool stop = early_stopping_ && stopper_.Stop();
    decision[0] = improved ? 1 : 0;
    decision[1] = stop ? 1 : 0;
    if (options_.print_status) {
      std::printf(
          "validation pass %d: AUC %.4f  logloss %.4f  GAUC %.4f  (%lld examples)%s  best pass "
          "%d (%s %.4f)%s\n",
          epoch + 1, r.auc, r.logloss, r.gauc, static_cast<long long>(r.examples),
          improved ? "  improved" : "", start_epoch_ + stopper_.best_pass(),
          stopper_.metric().c_str(), stopper_.best_value(),
          stop ? ("  early stop: " + std::to_string(job_.early_stopping().patience()) +
                  " pass(es) without improvement")
                     .c_str()
               : "");
      for (const HeadEval& h : heads) {
        std::printf("validation pass %d head %s: AUC %.4f  logloss %.4f", epoch + 1, h.name.c_str(),
                    h.result.auc, h.result.logloss);
        if (!h.conditional_on.empty()) {
          std::printf("  own AUC where %s = 1: %.4f", h.conditional_on.c_str(), h.conditional_auc);
        }
        std::printf("\n");
      }
      std::fflush(stdout);
    }
  }
  FRESHET_RETURN_IF_ERROR(workers_->AllReduceSum(decision, 2));
  const bool improved = decision[0] > 0, stop = decision[1] > 0;
  const bool last = stop || epoch + 1 >= job_.epochs();
  // Snapshot an improving pass that a worse one may follow.
  if (early_stopping_ && improved && !last) {
    const float* p = model->dense_params();
    best_dense_.assign(p, p + model->NumDenseParams());
    best_dense_opt_ = model->DenseOptimizerState();
    Status st;
    if (leader_) {
      st = MakeDirs(best_dir_);
      if (st.ok()) st = options_.tables->Save(best_dir_);
      if (checkpoints != nullptr) checkpoints->TablesSavedOutside();
      best_saved_ = st.ok();
    }
    float failed = st.ok() ? 0.0f : 1.0f;
    FRESHET_RETURN_IF_ERROR(workers_->AllReduceSum(&failed, 1));
    if (!st.ok()) return st.WithContext("saving the best pass's tables to " + best_dir_);
    if (failed > 0) return Status(StatusCode::kAborted, "worker 0 failed to save the best pass");
  }
  return stop;
}

Status PassValidator::KeepBestPass(Model* model) {
  // Every worker learns the best pass (worker 0 kept the metrics).
  double best = leader_ && stopper_.best_pass() > 0 ? start_epoch_ + stopper_.best_pass() : 0;
  FRESHET_RETURN_IF_ERROR(workers_->AllReduceSum(&best, 1));
  const int best_pass = static_cast<int>(best);
  result_->validation_first_pass = start_epoch_ + 1;
  const int last_pass = start_epoch_ + result_->train.epochs;  // 1-based
  result_->best_pass = best_pass;
  result_->stopped_early = result_->train.stopped_early;
  result_->model_pass = result_->train.epochs > 0 ? last_pass : 0;
  if (early_stopping_ && best_pass > 0 && best_pass != last_pass && result_->train.epochs > 0) {
    // The best pass's model back: dense here, rows on the servers.
    if (best_dense_.size() != model->NumDenseParams()) {
      return Internal("the best pass " + std::to_string(best_pass) + " was not snapshotted");
    }
    std::memcpy(model->dense_params(), best_dense_.data(), best_dense_.size() * sizeof(float));
    FRESHET_RETURN_IF_ERROR(model->SetDenseOptimizerState(best_dense_opt_));
    Status st = leader_ ? (best_saved_ ? options_.tables->Load(best_dir_)
                                       : Internal(best_dir_ + ": the best pass was not saved"))
                        : Status::OK();
    float failed = st.ok() ? 0.0f : 1.0f;
    FRESHET_RETURN_IF_ERROR(workers_->AllReduceSum(&failed, 1));
    if (!st.ok()) return st.WithContext("restoring the best pass from " + best_dir_);
    if (failed > 0) return Status(StatusCode::kAborted, "worker 0 failed to restore the best pass");
    result_->model_pass = best_pass;
    if (leader_ && options_.print_status) {
      std::printf("kept the model of pass %d (best validation %s %.4f; last pass %d)\n", best_pass,
                  stopper_.metric().c_str(), stopper_.best_value(), last_pass);
      std::fflush(stdout);
    }
  }
  if (leader_ && best_saved_) {
    std::error_code ec;
    std::filesystem::remove_all(best_dir_, ec);
  }
  return Status::OK();
}

Status EvaluateHoldout(const proto::JobConfig& job, const std::vector<std::string>& columns,
                       const std::vector<std::string>& train_files,
                       const std::vector<std::string>& holdout_files, const BadRecordPolicy& policy,
                       Trainer* trainer, Collective* workers, JobResult* result) {
  // Holdout: each worker scores its shard; worker 0 gathers (in file order).
  ScoredSet holdout;
  if (!holdout_files.empty()) {
    FRESHET_ASSIGN_OR_RETURN(std::vector<FileRange> ranges,
                             SplitFiles(holdout_files, workers->rank(), workers->size()));
    FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<ExampleReader> reader,
                             ExampleReader::Open(std::move(ranges), policy));
    FRESHET_RETURN_IF_ERROR(trainer->Score(reader.get(), &holdout));
  }
  std::string all_holdout, all_progressive;
  const std::string mine = holdout.Serialize();
  FRESHET_RETURN_IF_ERROR(workers->GatherBytes(mine.data(), mine.size(), &all_holdout));
  const std::string prog = result->train.progressive.Serialize();
  FRESHET_RETURN_IF_ERROR(workers->GatherBytes(prog.data(), prog.size(), &all_progressive));
  if (workers->rank() == 0) {
    FRESHET_ASSIGN_OR_RETURN(ScoredSet h, ScoredSet::ParseAll(all_holdout));
    FRESHET_ASSIGN_OR_RETURN(ScoredSet p, ScoredSet::ParseAll(all_progressive));
    result->holdout = Evaluate(h.probs, h.labels, h.users, h.oracle);
    result->holdout_heads = EvaluateHeads(job.model(), h);
    result->progressive = Evaluate(p.probs, p.labels, p.users, p.oracle);
    // Item-popularity baseline on the same holdout, for reference.
    bool has_item = false;
    for (const auto& c : columns) has_item = has_item || c == "item";
    if (has_item && holdout_files.size() == 1 && train_files.size() == 1) {
      auto pop = ItemPopularityScores(train_files[0], holdout_files[0], "item");
      if (pop.ok() && pop->size() == h.labels.size()) result->popularity_auc = Auc(*pop, h.labels);
    }
    // Ranking metrics for tasks that ship groups of 1 positive + 99 negatives.
    const std::string ranking = job.work_dir() + "/holdout_ranking.examples";
    struct stat st;
    if (!job.task().empty() && stat(ranking.c_str(), &st) == 0) {
      FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<ExampleReader> reader,
                               ExampleReader::OpenFiles({ranking}, policy));
      ScoredSet r;
      FRESHET_RETURN_IF_ERROR(trainer->Score(reader.get(), &r));
      result->ranking_groups = static_cast<int64_t>(r.probs.size() / 100);
      RankingMetrics(r.probs, 100, 10, &result->hr10, &result->ndcg10);
    }
  }
  return Status::OK();
}

}  // namespace freshet
