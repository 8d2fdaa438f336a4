// Private helpers of the task builders (worker/data/task*.cc): a seeded
// random generator whose draws are the same on every platform, the writer of
// a task's train/holdout files and task_info.txt, and small feature helpers.
//
// Thread safety: values and single-thread objects.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "worker/data/example_io.h"
#include "worker/data/task.h"

namespace freshet {
namespace internal {

// splitmix64: fixed output for a fixed seed on every platform and standard
// library (std::uniform_int_distribution is not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  // Uniform in [0, n). REQUIRES: n > 0.
  uint64_t Uniform(uint64_t n);

 private:
  uint64_t state_;
};

// floor(log2(1 + n)) for n >= 0.
int Log2Bucket(int64_t n);

// `s` with every whitespace character replaced by '_' (a single token).
std::string Token(std::string_view s);

// The time T of the 80% time split (see task.h) of ascending `times`;
// examples with time >= T are the holdout. INT64_MAX when there are none.
int64_t TimeSplitBoundary(const std::vector<int64_t>& sorted_times, double train_fraction);

// Writes out_dir/train.examples and out_dir/holdout.examples and counts.
class SplitWriter {
 public:
  static StatusOr<std::unique_ptr<SplitWriter>> Open(const std::string& out_dir,
                                                     const std::vector<std::string>& columns);
  Status Write(const Example& ex, bool holdout);
  // Closes both files (atomic renames) and fills the file names and counts
  // of *out.
  Status Close(TaskOutput* out);

 private:
  SplitWriter() = default;
  std::string train_path_, holdout_path_;
  std::vector<std::string> columns_;
  std::unique_ptr<ExampleWriter> train_, holdout_;
  int64_t positives_[2] = {0, 0};
};

// Lines "key: value" of task_info.txt.
class TaskInfo {
 public:
  void Add(const std::string& key, const std::string& value) { lines_.emplace_back(key, value); }
  void Add(const std::string& key, int64_t value) { Add(key, std::to_string(value)); }
  // Per-file read statistics of a raw reader, and their bad records into
  // *bad_total.
  void AddReadStats(const std::vector<FileReadStats>& stats, int64_t* bad_total);
  // The common lines (task, counts) of `out`.
  void AddOutput(const TaskOutput& out);
  // Writes out_dir/task_info.txt atomically.
  Status Write(const std::string& out_dir) const;

 private:
  std::vector<std::pair<std::string, std::string>> lines_;
};

// "2017-11-26 01:00:00 UTC".
std::string FormatTime(int64_t unix_seconds);

// The example columns of a known task (task.cc; empty for an unknown one).
std::vector<std::string> TaskColumnNames(const std::string& task);

// The task builders (dispatched by BuildTask). `inputs` as TaskInputs gives.
StatusOr<TaskOutput> BuildTaobaoConversion(const std::vector<std::string>& inputs,
                                           const std::string& out_dir,
                                           const BadRecordPolicy& policy);
StatusOr<TaskOutput> BuildRetailPurchase(const std::vector<std::string>& inputs,
                                         const std::string& out_dir, const BadRecordPolicy& policy);
StatusOr<TaskOutput> BuildTalkingDataCtr(const std::vector<std::string>& inputs,
                                         const std::string& out_dir, const BadRecordPolicy& policy);

}  // namespace internal
}  // namespace freshet
