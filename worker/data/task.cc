// Task registry, inputs, feature configs and the item-popularity baseline.
// The builders live in task_taobao.cc, task_retail.cc, task_talkingdata.cc.
#include "worker/data/task.h"

#include <glog/logging.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <unordered_map>

#include "worker/data/internal/task_util.h"

namespace freshet {
namespace {

constexpr char kTaobao[] = "taobao-conversion";
constexpr char kRetail[] = "retail-purchase";
constexpr char kTalkingData[] = "talkingdata-ctr";

std::string KnownTasks() {
  std::string s;
  for (const std::string& t : TaskNames()) s += (s.empty() ? "" : ", ") + t;
  return s;
}

Status UnknownTask(const std::string& task) {
  return InvalidArgument("unknown task \"" + task + "\" (known: " + KnownTasks() + ")");
}

struct ColumnSpec {
  const char* name;
  bool multi_valued;
};

std::vector<ColumnSpec> TaskColumns(const std::string& task) {
  if (task == kTaobao) {
    return {{"user", false},
            {"item", false},
            {"category", false},
            {"hour", false},
            {"recent_items", true},
            {"recent_categories", true},
            {"event_count_bucket", false},
            {"label:buy", false}};
  }
  if (task == kRetail) {
    return {{"customer", false},
            {"item", false},
            {"country", false},
            {"price_bucket", false},
            {"description_tokens", true},
            {"recent_items", true},
            {"month", false},
            {"day_of_week", false},
            {"hour", false}};
  }
  if (task == kTalkingData) {
    return {{"ip", false},      {"app", false},  {"device", false},        {"os", false},
            {"channel", false}, {"hour", false}, {"app_x_channel", false}, {"os_x_device", false}};
  }
  return {};
}

}  // namespace

namespace internal {

std::vector<std::string> TaskColumnNames(const std::string& task) {
  std::vector<std::string> names;
  for (const ColumnSpec& c : TaskColumns(task)) names.push_back(c.name);
  return names;
}

}  // namespace internal

std::vector<std::string> TaskNames() { return {kTaobao, kRetail, kTalkingData}; }

StatusOr<std::vector<std::string>> TaskInputs(const std::string& task,
                                              const std::string& data_dir) {
  std::vector<std::string> files;
  if (task == kTaobao) {
    files = {data_dir + "/taobao/UserBehavior_time_slice.csv",
             data_dir + "/taobao/UserBehavior_815_users.csv"};
  } else if (task == kRetail) {
    files = {data_dir + "/online_retail/online_retail_to_2011-11-25.csv"};
  } else if (task == kTalkingData) {
    files = {data_dir + "/talkingdata/train_sample.csv"};
  } else {
    return UnknownTask(task);
  }
  for (const std::string& f : files) {
    struct stat st;
    if (::stat(f.c_str(), &st) != 0) {
      return NotFound("input of task " + task + " missing: " + f + ": " + std::strerror(errno));
    }
  }
  return files;
}

StatusOr<TaskOutput> BuildTask(const std::string& task, const std::string& data_dir,
                               const std::string& out_dir, const BadRecordPolicy& policy) {
  if (TaskColumns(task).empty()) return UnknownTask(task);
  FRESHET_ASSIGN_OR_RETURN(std::vector<std::string> inputs, TaskInputs(task, data_dir));
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return Internal("cannot create " + out_dir + ": " + ec.message());
  if (task == kTaobao) return internal::BuildTaobaoConversion(inputs, out_dir, policy);
  if (task == kRetail) return internal::BuildRetailPurchase(inputs, out_dir, policy);
  return internal::BuildTalkingDataCtr(inputs, out_dir, policy);
}

std::vector<std::string> TaskExampleColumns(const std::string& task) {
  return internal::TaskColumnNames(task);
}

StatusOr<proto::FeatureConfig> TaskFeatures(const std::string& task) {
  std::vector<ColumnSpec> columns = TaskColumns(task);
  if (columns.empty()) return UnknownTask(task);
  proto::FeatureConfig config;
  for (const ColumnSpec& c : columns) {
    if (IsLabelColumn(c.name)) continue;
    proto::SlotConfig* slot = config.add_slots();
    slot->set_name(c.name);
    slot->set_column(c.name);
    slot->set_table("emb");
    if (c.multi_valued) {
      slot->set_multi_valued(true);
      slot->set_pooling(proto::MEAN);
    }
  }
  return config;
}

StatusOr<std::vector<float>> ItemPopularityScores(const std::string& train_file,
                                                  const std::string& holdout_file,
                                                  const std::string& item_column) {
  auto column_index = [&](const std::vector<std::string>& columns,
                          const std::string& file) -> StatusOr<size_t> {
    for (size_t i = 0; i < columns.size(); ++i) {
      if (columns[i] == item_column) return i;
    }
    return InvalidArgument("no column \"" + item_column + "\" in " + file);
  };
  struct Counts {
    int64_t n = 0;
    int64_t pos = 0;
  };
  std::unordered_map<std::string, Counts> items;
  int64_t n = 0, pos = 0;
  {
    FRESHET_ASSIGN_OR_RETURN(auto reader,
                             ExampleReader::OpenFiles({train_file}, BadRecordPolicy()));
    FRESHET_ASSIGN_OR_RETURN(size_t col, column_index(reader->columns(), train_file));
    Example ex;
    while (true) {
      FRESHET_ASSIGN_OR_RETURN(bool more, reader->Next(&ex));
      if (!more) break;
      const bool positive = ex.label > 0.5f;
      Counts& c = items[ex.values[col]];
      ++c.n;
      c.pos += positive;
      ++n;
      pos += positive;
    }
  }
  const double p = n > 0 ? static_cast<double>(pos) / n : 0.0;
  constexpr double kA = 1.0;
  std::vector<float> scores;
  FRESHET_ASSIGN_OR_RETURN(auto reader,
                           ExampleReader::OpenFiles({holdout_file}, BadRecordPolicy()));
  FRESHET_ASSIGN_OR_RETURN(size_t col, column_index(reader->columns(), holdout_file));
  Example ex;
  while (true) {
    FRESHET_ASSIGN_OR_RETURN(bool more, reader->Next(&ex));
    if (!more) break;
    auto it = items.find(ex.values[col]);
    if (it == items.end() || p <= 0) {
      scores.push_back(static_cast<float>(p));
    } else {
      scores.push_back(static_cast<float>((it->second.pos + kA) / (it->second.n + kA / p)));
    }
  }
  return scores;
}

}  // namespace freshet
