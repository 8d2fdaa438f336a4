// JobResult: what a worker rank's training job reports (RunWorkerJob,
// worker/job_runner.h): this worker's training figures and, on worker 0,
// the evaluation, the stream's join counters, the checkpoints' pauses and
// the validation passes; with the human-readable summary and the one-line
// JSON summary freshet_train prints last.
//
// Thread safety: a plain value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/proto/job.pb.h"
#include "worker/metrics.h"
#include "worker/stream/label_joiner.h"
#include "worker/trainer.h"

namespace freshet {

// One head's metrics of a multi-task model (ModelHeads, model/model.h):
// its probability (multiply_by applied) against its labels; for a head with
// multiply_by, also its own sigmoid against its labels on the examples whose
// multiplied head's label is 1 (ESMM: pCVR on the clicked examples).
struct HeadEval {
  std::string name, label;  // label "" = the main label
  EvalResult result;
  std::string conditional_on;  // the multiply_by head's name, "" if none
  double conditional_auc = -1;
  // With multiply_by: the multiplied head's probability against this
  // head's labels (ESMM: how well p_ctr alone ranks the buys), the
  // baseline the head's own tower should beat.
  double multiply_by_auc = -1;
  int64_t conditional_examples = 0, conditional_positives = 0;
  std::string ToJson() const;  // {"label":..,"auc":..,...}
};

struct JobResult {
  TrainStats train;               // this worker's
  EvalResult progressive;         // worker 0: over every worker's training examples
  EvalResult holdout;             // worker 0
  double hr10 = -1, ndcg10 = -1;  // worker 0, when the task has a ranking file
  double popularity_auc = -1;     // worker 0: item-popularity baseline on the holdout
  int64_t ranking_groups = 0;
  // Streaming jobs: the join counters and bad event lines summed over all
  // workers (worker 0). The counters of a restored job include the
  // checkpoint's (they count the whole stream, as an uninterrupted job's
  // do); stream_lines counts the event lines this run read.
  bool streaming = false;
  // Worker 0: the minimum over workers of the final watermarks (see
  // ExportFeed::Final).
  int64_t final_watermark = 0, final_ingest_wall_ms = 0, final_label_wall_ms = 0;
  JoinCounters join;
  int64_t stream_bad = 0;
  int64_t stream_lines = 0;
  // Worker 0: periodic checkpoints written (RunOptions::checkpoint), the
  // training pause each cost (ms, from the cut to resuming) and the size of
  // the last one.
  int64_t checkpoints = 0;
  double checkpoint_max_pause_ms = 0, checkpoint_total_pause_ms = 0;
  uint64_t checkpoint_last_bytes = 0;
  // With background table writes (TableCheckpointer::CanSaveInBackground): the time
  // from resuming training to the checkpoint's publication (servers writing,
  // manifest), and the most bytes the servers held copied at once.
  double checkpoint_max_write_ms = 0, checkpoint_total_write_ms = 0;
  int64_t checkpoint_max_copy_bytes = 0;
  // Validation split (DataConfig::validation_fraction; worker 0): its
  // examples and first time, each completed pass's metrics, the best pass
  // by the early-stopping metric (auc without early stopping), 1-based, and
  // the pass whose model the job kept (restored when it is not the last
  // one trained; 0: no validation).
  int64_t validation_examples = 0, validation_train_examples = 0, validation_time = 0;
  std::vector<EvalResult> validation;
  std::string validation_metric;
  int best_pass = 0, model_pass = 0;
  int validation_first_pass = 1;  // a restored job's first pass is its checkpoint's epoch
  // Multi-task models (worker 0): every head's holdout and validation
  // metrics (validation_heads[pass][head]); empty for one-head models.
  // holdout / validation above are the first (main) head's.
  std::vector<HeadEval> holdout_heads;
  std::vector<std::vector<HeadEval>> validation_heads;
  bool stopped_early = false;
  // Human-readable summary lines (holdout metrics beside the oracle and the
  // baseline).
  std::string Summary() const;
  // The one-line JSON summary worker 0 prints last.
  std::string Json(const proto::JobConfig& job, int num_workers, int num_servers) const;
};

}  // namespace freshet
