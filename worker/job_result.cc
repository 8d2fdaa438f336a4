#include "worker/job_result.h"

#include <algorithm>
#include <cstdio>

namespace freshet {
namespace {

std::string Num(double v) { return JsonNumber(v); }

std::string HeadLine(const HeadEval& h) {
  char buf[320];
  std::snprintf(buf, sizeof(buf), "head %s (%s): AUC %.4f  logloss %.4f  positives %lld",
                h.name.c_str(), h.label.empty() ? "main label" : h.label.c_str(), h.result.auc,
                h.result.logloss, static_cast<long long>(h.result.positives));
  std::string s = buf;
  if (!h.conditional_on.empty()) {
    std::snprintf(buf, sizeof(buf),
                  "  own AUC where %s = 1: %.4f (%lld examples, %lld positives)  %s's "
                  "probability alone: AUC %.4f",
                  h.conditional_on.c_str(), h.conditional_auc,
                  static_cast<long long>(h.conditional_examples),
                  static_cast<long long>(h.conditional_positives), h.conditional_on.c_str(),
                  h.multiply_by_auc);
    s += buf;
  }
  return s;
}

}  // namespace

std::string HeadEval::ToJson() const {
  std::string s = "{\"label\":\"" + label + "\",\"auc\":" + Num(result.auc) +
                  ",\"logloss\":" + Num(result.logloss) + ",\"gauc\":" + Num(result.gauc) +
                  ",\"examples\":" + std::to_string(result.examples) +
                  ",\"positives\":" + std::to_string(result.positives);
  if (!conditional_on.empty()) {
    s += ",\"conditional_on\":\"" + conditional_on +
         "\",\"conditional_auc\":" + Num(conditional_auc) +
         ",\"conditional_examples\":" + std::to_string(conditional_examples) +
         ",\"conditional_positives\":" + std::to_string(conditional_positives) +
         ",\"multiply_by_auc\":" + Num(multiply_by_auc);
  }
  return s + "}";
}

std::string JobResult::Json(const proto::JobConfig& job, int num_workers, int num_servers) const {
  std::string s =
      "{\"job\":\"" + job.name() + "\",\"task\":\"" + job.task() + "\",\"model\":\"" +
      proto::ModelConfig::Kind_Name(job.model().kind()) +
      "\",\"workers\":" + std::to_string(num_workers) +
      ",\"servers\":" + std::to_string(num_servers) + ",\"steps\":" + std::to_string(train.steps) +
      ",\"train_examples\":" + std::to_string(train.global_examples) +
      ",\"seconds\":" + Num(train.seconds) +
      ",\"examples_per_s\":" + Num(train.global_examples / std::max(1e-9, train.seconds)) +
      ",\"bad_records_worker0\":" + std::to_string(train.bad_records) + "," +
      progressive.ToJsonFields("progressive_") + "," + holdout.ToJsonFields("holdout_");
  if (!holdout_heads.empty()) {
    s += ",\"heads\":{";
    for (size_t k = 0; k < holdout_heads.size(); ++k) {
      s += (k > 0 ? ",\"" : "\"") + holdout_heads[k].name + "\":" + holdout_heads[k].ToJson();
    }
    s += "}";
  }
  if (popularity_auc >= 0) s += ",\"popularity_baseline_auc\":" + Num(popularity_auc);
  if (ranking_groups > 0) {
    s += ",\"hr_at_10\":" + Num(hr10) + ",\"ndcg_at_10\":" + Num(ndcg10) +
         ",\"ranking_groups\":" + std::to_string(ranking_groups);
  }
  s += ",\"final_watermark\":" + std::to_string(final_watermark) +
       ",\"final_ingest_wall_ms\":" + std::to_string(final_ingest_wall_ms) +
       ",\"final_label_wall_ms\":" + std::to_string(final_label_wall_ms);
  if (checkpoints > 0) {
    s += ",\"checkpoints\":" + std::to_string(checkpoints) +
         ",\"checkpoint_max_pause_ms\":" + Num(checkpoint_max_pause_ms) +
         ",\"checkpoint_mean_pause_ms\":" + Num(checkpoint_total_pause_ms / checkpoints) +
         ",\"checkpoint_last_bytes\":" + std::to_string(checkpoint_last_bytes);
    if (checkpoint_max_copy_bytes > 0) {
      s += ",\"checkpoint_max_write_ms\":" + Num(checkpoint_max_write_ms) +
           ",\"checkpoint_mean_write_ms\":" + Num(checkpoint_total_write_ms / checkpoints) +
           ",\"checkpoint_max_copy_bytes\":" + std::to_string(checkpoint_max_copy_bytes);
    }
  }
  if (!validation.empty() || validation_examples > 0) {
    auto list = [this](auto get) {
      std::string out = "[";
      for (size_t i = 0; i < validation.size(); ++i) {
        out += (i > 0 ? "," : "") + Num(get(validation[i]));
      }
      return out + "]";
    };
    s += ",\"validation_split_examples\":" + std::to_string(validation_examples) +
         ",\"validation_train_examples\":" + std::to_string(validation_train_examples) +
         ",\"validation_time\":" + std::to_string(validation_time) +
         ",\"validation_auc_by_pass\":" + list([](const EvalResult& r) { return r.auc; }) +
         ",\"validation_logloss_by_pass\":" + list([](const EvalResult& r) { return r.logloss; }) +
         ",\"validation_gauc_by_pass\":" + list([](const EvalResult& r) { return r.gauc; }) +
         ",\"validation_first_pass\":" + std::to_string(validation_first_pass) +
         ",\"validation_metric\":\"" + validation_metric +
         "\",\"passes\":" + std::to_string(validation.size()) +
         ",\"best_pass\":" + std::to_string(best_pass) +
         ",\"model_pass\":" + std::to_string(model_pass) +
         ",\"stopped_early\":" + (stopped_early ? "true" : "false");
    if (!validation_heads.empty()) {
      // {"<head>": [auc of pass 1, ...], ...}
      s += ",\"validation_heads_auc_by_pass\":{";
      for (size_t k = 0; k < validation_heads[0].size(); ++k) {
        s += (k > 0 ? ",\"" : "\"") + validation_heads[0][k].name + "\":[";
        for (size_t p = 0; p < validation_heads.size(); ++p) {
          s += (p > 0 ? "," : "") +
               Num(k < validation_heads[p].size() ? validation_heads[p][k].result.auc : -1);
        }
        s += "]";
      }
      s += "}";
    }
    const int at = best_pass - validation_first_pass;
    if (best_pass > 0 && at >= 0 && at < static_cast<int>(validation.size())) {
      s += "," + validation[at].ToJsonFields("validation_");
    }
  }
  if (streaming) {
    s += ",\"stream\":{" + join.ToJsonFields() + ",\"bad_lines\":" + std::to_string(stream_bad) +
         ",\"lines\":" + std::to_string(stream_lines) + "}";
  }
  char split[200];
  std::snprintf(split, sizeof(split),
                ",\"time_split_worker0_s\":{\"read\":%.2f,\"pull\":%.2f,\"compute\":%.2f,"
                "\"push\":%.2f,\"allreduce\":%.2f}}",
                train.read_s, train.pull_s, train.compute_s, train.push_s, train.allreduce_s);
  return s + split;
}

std::string JobResult::Summary() const {
  char buf[512];
  std::string s;
  std::snprintf(buf, sizeof(buf), "trained %lld examples in %lld steps, %.1f s (%.0f examples/s)\n",
                static_cast<long long>(train.global_examples), static_cast<long long>(train.steps),
                train.seconds, train.global_examples / std::max(1e-9, train.seconds));
  s += buf;
  if (streaming) {
    s += "stream join (all workers): " + join.ToString() + " bad lines " +
         std::to_string(stream_bad) + "\n";
  }
  if (!validation.empty()) {
    s += "validation AUC by pass:";
    for (const auto& v : validation) {
      std::snprintf(buf, sizeof(buf), " %.4f", v.auc);
      s += buf;
    }
    std::snprintf(buf, sizeof(buf), "   best pass %d (%s), model of pass %d%s\n", best_pass,
                  validation_metric.c_str(), model_pass, stopped_early ? ", stopped early" : "");
    s += buf;
  }
  std::snprintf(buf, sizeof(buf),
                "progressive AUC %.4f (first pass)   holdout AUC %.4f  logloss %.4f  GAUC %.4f",
                progressive.auc, holdout.auc, holdout.logloss, holdout.gauc);
  s += buf;
  if (holdout.oracle_auc > 0) {
    // Chance-adjusted: how much of the oracle's lift over a coin the model
    // gets, (AUC - 0.5) / (oracle AUC - 0.5); the plain ratio flatters.
    std::snprintf(buf, sizeof(buf), "   oracle AUC %.4f (%.3f of its lift over chance)",
                  holdout.oracle_auc, (holdout.auc - 0.5) / (holdout.oracle_auc - 0.5));
    s += buf;
  }
  if (popularity_auc >= 0) {
    std::snprintf(buf, sizeof(buf), "   item-popularity AUC %.4f", popularity_auc);
    s += buf;
  }
  for (const HeadEval& h : holdout_heads) s += "\nholdout " + HeadLine(h);
  if (ranking_groups > 0) {
    std::snprintf(buf, sizeof(buf), "\nHR@10 %.4f  NDCG@10 %.4f over %lld groups of 1 + 99", hr10,
                  ndcg10, static_cast<long long>(ranking_groups));
    s += buf;
  }
  return s + "\n";
}

}  // namespace freshet
