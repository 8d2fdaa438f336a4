// Job configuration: loading, validation, defaults, and preparing a task's
// example files.
//
// Thread safety: free functions, no shared state.
#pragma once

#include <string>

#include "common/proto/job.pb.h"
#include "common/status.h"

namespace freshet {

// Parses a text-format JobConfig from `path` and validates it. Errors name
// the file with line:column (syntax) or the field (validation).
StatusOr<proto::JobConfig> LoadJobConfig(const std::string& path);
StatusOr<proto::JobConfig> ParseJobConfig(const std::string& text, const std::string& source);

// Fills defaults (batch_size 512, epochs 1, status interval 2 s, staleness
// -1, work_dir out/<task or name>, model_dir work_dir/model, data policy) and
// checks tables, features and model against each other: the wide table
// exists with dim 1; DEEPFM slots' tables exist and share one dim; slot names
// are unique. `source` prefixes errors.
Status ValidateJobConfig(proto::JobConfig* job, const std::string& source);

// Whether the job trains from a live event stream (stream.dir, tcp_port or
// unix_socket set). ValidateJobConfig then also checks the stream section and
// fills its defaults (docs/STREAMING.md), and allows no data files.
bool IsStreamingJob(const proto::JobConfig& job);

// The staleness the job asks for (-1 when unset).
int JobStaleness(const proto::JobConfig& job);

// For a job with a `task` (and no stream), points data.train_files/holdout_files at the
// task's example files in work_dir (unless given), and when `build` is true
// builds them first if they are missing: "synthetic" generates the synthetic
// shop (worker/data/synthetic_shop.h); other names go to BuildTask
// (worker/data/task.h) reading raw files under `data_dir`. Call with
// build=true on one process, then build=false on the others.
Status PrepareTaskData(proto::JobConfig* job, const std::string& data_dir, bool build);

}  // namespace freshet
