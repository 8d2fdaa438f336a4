#include "worker/job.h"

#include <glog/logging.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/config.h"
#include "model/example.h"
#include "model/model.h"
#include "worker/data/example_io.h"
#include "worker/data/synthetic_shop.h"
#include "worker/data/task.h"

namespace freshet {
namespace {

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

Status Field(const std::string& source, const std::string& field, const std::string& problem) {
  return InvalidArgument(source + ": " + field + ": " + problem);
}

}  // namespace

StatusOr<proto::JobConfig> ParseJobConfig(const std::string& text, const std::string& source) {
  proto::JobConfig job;
  FRESHET_RETURN_IF_ERROR(ParseTextConfig(text, source, &job));
  FRESHET_RETURN_IF_ERROR(ValidateJobConfig(&job, source));
  return job;
}

StatusOr<proto::JobConfig> LoadJobConfig(const std::string& path) {
  FRESHET_ASSIGN_OR_RETURN(std::string text, ReadConfigFile(path));
  return ParseJobConfig(text, path);
}

bool IsStreamingJob(const proto::JobConfig& job) {
  const auto& s = job.stream();
  return !s.dir().empty() || s.tcp_port() > 0 || !s.unix_socket().empty();
}

int JobStaleness(const proto::JobConfig& job) { return job.has_staleness() ? job.staleness() : -1; }

Status ValidateJobConfig(proto::JobConfig* job, const std::string& source) {
  if (job->batch_size() < 0) return Field(source, "batch_size", "must be >= 0");
  if (job->batch_size() == 0) job->set_batch_size(512);
  if (job->epochs() < 0) return Field(source, "epochs", "must be >= 0");
  if (job->epochs() == 0) job->set_epochs(1);
  if (job->status_interval_s() < 0) return Field(source, "status_interval_s", "must be >= 0");
  if (job->status_interval_s() == 0) job->set_status_interval_s(2);
  if (job->has_staleness() && job->staleness() < -1) {
    return Field(source, "staleness", "must be >= -1, got " + std::to_string(job->staleness()));
  }
  if (job->work_dir().empty()) {
    job->set_work_dir("out/" + (job->task().empty() ? job->name() : job->task()));
  }
  if (job->model_dir().empty()) job->set_model_dir(job->work_dir() + "/model");
  auto* ex = job->mutable_export_();
  if (ex->dir().empty()) ex->set_dir(job->work_dir() + "/export");
  if (!(ex->interval_s() == 0 || ex->interval_s() >= 0.1f)) {
    return Field(
        source, "export.interval_s",
        "must be 0 (default: 1 s) or at least 0.1 s, got " + std::to_string(ex->interval_s()));
  }
  if (ex->interval_s() == 0) ex->set_interval_s(1);
  if (ex->full_interval_s() < 0) return Field(source, "export.full_interval_s", "must be >= 0");
  if (ex->full_interval_s() == 0) ex->set_full_interval_s(60);
  if (!(ex->full_timeout_s() >= 0)) {
    return Field(source, "export.full_timeout_s", "must be >= 0");
  }
  if (ex->full_timeout_s() == 0) ex->set_full_timeout_s(600);
  if (ex->retain_full() < 0) return Field(source, "export.retain_full", "must be >= 0");
  if (ex->retain_full() == 0) ex->set_retain_full(3);
  auto* data = job->mutable_data();
  if (data->max_bad_ratio() < 0 || data->max_bad_ratio() > 1) {
    return Field(source, "data.max_bad_ratio", "must be in [0, 1]");
  }
  if (data->max_bad_ratio() == 0) data->set_max_bad_ratio(0.001f);
  if (data->max_bad_records() < 0) return Field(source, "data.max_bad_records", "must be >= 0");
  if (data->max_bad_records() == 0) data->set_max_bad_records(100);
  const bool streaming = IsStreamingJob(*job);
  if (job->task().empty() && data->train_files_size() == 0 && !streaming) {
    return Field(source, "data.train_files", "needs files when no task is named");
  }
  const float vf = data->validation_fraction();
  if (!(vf >= 0 && vf <= 0.5f)) {
    return Field(source, "data.validation_fraction",
                 "must be in [0, 0.5] (0: no validation split), got " + std::to_string(vf));
  }
  if (vf > 0 && streaming) {
    return Field(source, "data.validation_fraction",
                 "is for file jobs; a streaming job has no pass to validate");
  }
  if (job->has_early_stopping()) {
    auto* es = job->mutable_early_stopping();
    if (vf == 0) {
      return Field(source, "early_stopping",
                   "needs a validation split (data.validation_fraction > 0); the holdout is "
                   "never used for a choice");
    }
    if (es->metric().empty()) es->set_metric("auc");
    if (es->metric() != "auc" && es->metric() != "logloss" && es->metric() != "gauc") {
      return Field(source, "early_stopping.metric",
                   "'" + es->metric() + "' is not auc, logloss or gauc");
    }
    if (es->patience() < 0) return Field(source, "early_stopping.patience", "must be >= 0");
    if (es->patience() == 0) es->set_patience(1);
    if (!(es->min_delta() >= 0)) return Field(source, "early_stopping.min_delta", "must be >= 0");
  }
  if (streaming) {
    auto* st = job->mutable_stream();
    for (int i = 0; i < st->label_events_size(); ++i) {
      const std::string& k = st->label_events(i);
      if (k != "click" && k != "cart" && k != "fav" && k != "buy") {
        return Field(source, "stream.label_events[" + std::to_string(i) + "]",
                     "'" + k + "' is not click, cart, fav or buy");
      }
    }
    if (st->label_events_size() == 0) st->add_label_events("click");
    auto non_negative = [&](double v, const char* name) {
      return v < 0 ? Field(source, std::string("stream.") + name, "must be >= 0") : Status::OK();
    };
    FRESHET_RETURN_IF_ERROR(non_negative(st->window_s(), "window_s"));
    FRESHET_RETURN_IF_ERROR(non_negative(st->max_pending(), "max_pending"));
    FRESHET_RETURN_IF_ERROR(non_negative(st->max_batch_delay_ms(), "max_batch_delay_ms"));
    FRESHET_RETURN_IF_ERROR(non_negative(st->progressive_window(), "progressive_window"));
    FRESHET_RETURN_IF_ERROR(non_negative(st->lateness_s(), "lateness_s"));
    FRESHET_RETURN_IF_ERROR(non_negative(st->idle_partition_s(), "idle_partition_s"));
    FRESHET_RETURN_IF_ERROR(non_negative(st->early_hold_s(), "early_hold_s"));
    FRESHET_RETURN_IF_ERROR(non_negative(st->max_early(), "max_early"));
    if (st->tcp_port() < 0 || st->tcp_port() > 65000) {
      return Field(source, "stream.tcp_port", "must be in [0, 65000]");
    }
    if (st->window_s() == 0) st->set_window_s(30);
    if (st->max_pending() == 0) st->set_max_pending(1000000);
    if (st->max_batch_delay_ms() == 0) st->set_max_batch_delay_ms(200);
    if (st->progressive_window() == 0) st->set_progressive_window(20000);
    if (st->idle_partition_s() == 0) st->set_idle_partition_s(1);
    if (st->early_hold_s() == 0) st->set_early_hold_s(st->window_s());
    if (st->max_early() == 0) st->set_max_early(65536);
  }

  FRESHET_RETURN_IF_ERROR(ValidateTablesConfig(job->mutable_tables(), source));
  std::map<std::string, int> dims;
  for (const auto& t : job->tables().tables()) dims[t.name()] = static_cast<int>(t.dim());

  const auto& m = job->model();
  auto* model = job->mutable_model();
  if (m.dense_learning_rate() < 0)
    return Field(source, "model.dense_learning_rate", "must be >= 0");
  if (m.dense_learning_rate() == 0) model->set_dense_learning_rate(0.001f);
  for (int i = 0; i < m.hidden_size(); ++i) {
    if (m.hidden(i) <= 0) {
      return Field(source, "model.hidden[" + std::to_string(i) + "]", "must be > 0");
    }
  }
  if (job->features().slots_size() == 0)
    return Field(source, "features.slots", "at least one slot");
  for (int i = 0; i < job->features().dense_size(); ++i) {
    const auto& d = job->features().dense(i);
    const std::string& column = d.column().empty() ? d.name() : d.column();
    if (IsLabelColumn(column)) {
      return Field(
          source,
          "features.dense[" + std::to_string(i) + "]" + (d.column().empty() ? ".name" : ".column"),
          "'" + column + "' is a label column: a feature reading it trains on the label");
    }
  }
  std::set<std::string> names;
  for (int i = 0; i < job->features().slots_size(); ++i) {
    const auto& s = job->features().slots(i);
    const std::string f = "features.slots[" + std::to_string(i) + "]";
    if (s.name().empty()) return Field(source, f + ".name", "is required");
    if (!names.insert(s.name()).second) {
      return Field(source, f + ".name", "duplicate slot name '" + s.name() + "'");
    }
    const std::string& column = s.column().empty() ? s.name() : s.column();
    if (IsLabelColumn(column)) {
      return Field(source, f + (s.column().empty() ? ".name" : ".column"),
                   "'" + column + "' is a label column: a feature reading it trains on the label");
    }
  }
  // The tables the model reads (wide, per-slot embeddings, FFM) and, for
  // LAYERED, every part against the slots (model/model.h). Errors name the
  // field ("model.attention.sequence_slot: ...").
  auto tables = JobModelTables(*job);
  if (!tables.ok()) return InvalidArgument(source + ": " + tables.status().message());
  const ModelShape shape =
      JobModelShape(*job, job->features().slots_size(), job->features().dense_size());
  Status valid = ValidateModel(m, shape);
  if (!valid.ok()) return InvalidArgument(source + ": " + valid.message());
  return Status::OK();
}

Status PrepareTaskData(proto::JobConfig* job, const std::string& data_dir, bool build) {
  if (job->task().empty() || IsStreamingJob(*job)) return Status::OK();
  const std::string dir = job->work_dir();
  const std::string train = dir + "/train.examples";
  const std::string holdout = dir + "/holdout.examples";
  auto* data = job->mutable_data();
  if (data->train_files_size() == 0) data->add_train_files(train);
  if (data->holdout_files_size() == 0) data->add_holdout_files(holdout);
  if (!build) return Status::OK();
  if (FileExists(train) && FileExists(holdout)) {
    // Reuse what an earlier run built, unless an older freshet wrote it with
    // other columns (e.g. before a label column was added): then rebuild.
    const std::vector<std::string> want =
        job->task() == "synthetic" ? ShopExampleColumns() : TaskExampleColumns(job->task());
    auto reader = ExampleReader::OpenFiles({train, holdout}, BadRecordPolicy());
    if (reader.ok() && (*reader)->columns() == want) return Status::OK();
    std::printf("task %s: the examples in %s %s; rebuilding them\n", job->task().c_str(),
                dir.c_str(),
                reader.ok() ? "have other columns than this freshet writes (an older build)"
                            : ("cannot be read (" + reader.status().ToString() + ")").c_str());
  }
  BadRecordPolicy policy;
  policy.max_bad_ratio = data->max_bad_ratio();
  policy.max_bad_records = data->max_bad_records();
  if (job->task() == "synthetic") {
    ShopConfig cfg;
    LOG(INFO) << "generating the synthetic shop into " << dir;
    FRESHET_ASSIGN_OR_RETURN(ShopSummary s, WriteSyntheticShop(cfg, dir));
    std::printf(
        "synthetic shop: %lld train / %lld holdout impressions, oracle AUC (holdout) %.4f; "
        "label:buy %.4f, among clicks %.4f\n",
        static_cast<long long>(s.train_examples), static_cast<long long>(s.holdout_examples),
        s.oracle_auc_holdout, s.oracle_auc_buy_holdout, s.oracle_auc_cvr_holdout);
    return Status::OK();
  }
  std::printf("building task %s from %s into %s\n", job->task().c_str(), data_dir.c_str(),
              dir.c_str());
  std::fflush(stdout);
  FRESHET_ASSIGN_OR_RETURN(TaskOutput out, BuildTask(job->task(), data_dir, dir, policy));
  std::printf("task %s: %lld train / %lld holdout examples, %lld bad raw records skipped\n",
              job->task().c_str(), static_cast<long long>(out.train_examples),
              static_cast<long long>(out.holdout_examples),
              static_cast<long long>(out.bad_records));
  return Status::OK();
}

}  // namespace freshet
