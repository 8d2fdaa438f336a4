#include "worker/job_runner.h"

#include <glog/logging.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "model/features.h"
#include "model/model_factory.h"
#include "worker/checkpoint.h"
#include "worker/data/example_io.h"
#include "worker/data/input_intervals.h"
#include "worker/data/task.h"
#include "worker/dense_file.h"
#include "worker/input_ledger.h"
#include "worker/internal/checkpoint_driver.h"
#include "worker/internal/job_eval.h"
#include "worker/internal/job_restore.h"
#include "worker/internal/job_stream.h"
#include "worker/job.h"
#include "worker/stream/stream_source.h"

namespace freshet {
namespace {

// Worker 0 learns the minimum over the workers that trained anything
// (watermark > 0) of their final watermarks (`mine`[0]), and of their
// final freshness clocks that are known (> 0; 0 where none is), into
// result->final_*. Collective.
Status GatherFinalClocks(Collective* workers, const std::array<int64_t, 3>& mine,
                         JobResult* result) {
  std::string all;
  FRESHET_RETURN_IF_ERROR(
      workers->GatherBytes(reinterpret_cast<const char*>(mine.data()), sizeof(mine), &all));
  if (workers->rank() != 0) return Status::OK();
  int64_t w = INT64_MAX, wall = INT64_MAX, label = INT64_MAX;
  for (size_t off = 0; off + sizeof(mine) <= all.size(); off += sizeof(mine)) {
    int64_t v[3];
    std::memcpy(v, all.data() + off, sizeof(v));
    if (v[0] <= 0) continue;
    w = std::min(w, v[0]);
    if (v[1] > 0) wall = std::min(wall, v[1]);  // 0: unknown
    if (v[2] > 0) label = std::min(label, v[2]);
  }
  if (w == INT64_MAX) w = 0;
  if (wall == INT64_MAX) wall = 0;
  if (label == INT64_MAX) label = 0;
  result->final_watermark = w;
  result->final_ingest_wall_ms = wall;
  result->final_label_wall_ms = label;
  return Status::OK();
}

// Worker 0: the model into job.model_dir(): dense.bin, dense_opt.bin,
// job.pbtxt and, through `tables` when not null, the tables.
Status SaveModel(const proto::JobConfig& job, const Model& model, TableCheckpointer* tables) {
  FRESHET_RETURN_IF_ERROR(MakeDirs(job.model_dir()));
  FRESHET_RETURN_IF_ERROR(SaveDense(model, job.model_dir() + "/dense.bin"));
  FRESHET_RETURN_IF_ERROR(SaveDenseOptimizer(model, job.model_dir() + "/dense_opt.bin"));
  std::string text;
  google::protobuf::TextFormat::PrintToString(job, &text);
  std::ofstream(job.model_dir() + "/job.pbtxt") << text;
  if (tables != nullptr) FRESHET_RETURN_IF_ERROR(tables->Save(job.model_dir()));
  return Status::OK();
}

}  // namespace

StatusOr<JobResult> RunWorkerJob(proto::JobConfig job, SparseStore* store, Collective* workers,
                                 const RunOptions& options) {
  const bool leader = workers->rank() == 0;
  JobResult result;

  const bool streaming = IsStreamingJob(job);
  result.streaming = streaming;
  // Data: worker 0 builds the task's example files; the others wait. A
  // streaming job has none to build.
  Status prep = leader ? PrepareTaskData(&job, options.data_dir, true) : Status::OK();
  float failed = prep.ok() ? 0.0f : 1.0f;
  FRESHET_RETURN_IF_ERROR(workers->AllReduceSum(&failed, 1));
  if (!prep.ok()) return prep.WithContext("preparing data");
  if (failed > 0) return Status(StatusCode::kAborted, "worker 0 failed to prepare the data");
  if (!leader) FRESHET_RETURN_IF_ERROR(PrepareTaskData(&job, options.data_dir, false));

  const auto& data = job.data();
  // Streaming: the examples have exactly the columns the features read (the
  // stream source projects each producer's header onto them).
  std::vector<std::string> columns;
  if (streaming) {
    columns = StreamColumns(job.features());
  } else {
    FRESHET_ASSIGN_OR_RETURN(columns, ReadExampleHeader(data.train_files(0)));
  }
  // Multi-task heads read label columns: the examples must have them.
  for (int k = 0; k < job.model().heads_size(); ++k) {
    const std::string& label = job.model().heads(k).label();
    if (label.empty()) continue;
    if (streaming) {
      return InvalidArgument("model.heads[" + std::to_string(k) + "].label: '" + label +
                             "': streamed examples have only the main label");
    }
    if (std::find(columns.begin(), columns.end(), label) == columns.end()) {
      return InvalidArgument("model.heads[" + std::to_string(k) + "].label: column '" + label +
                             "' is not in the header of " + data.train_files(0));
    }
  }
  FRESHET_ASSIGN_OR_RETURN(
      std::unique_ptr<FeatureEncoder> encoder,
      FeatureEncoder::Create(job.features(), columns, ModelLabelColumns(job.model())));
  FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                           CreateJobModel(job, encoder->num_slots(), encoder->num_dense()));
  if (!options.restore_dir.empty()) {
    FRESHET_RETURN_IF_ERROR(RestoreDenseState(options.restore_dir, model.get()));
  }
  // Input positions of file jobs: the training files sorted by path number
  // them (InputInterval::file, the checkpoints' input cuts, the ledger).
  const std::vector<std::string> train_files(data.train_files().begin(), data.train_files().end());
  std::vector<InputFileId> input_files;
  std::vector<int> sorted_index(train_files.size());  // job order -> sorted order
  if (!streaming) {
    FRESHET_ASSIGN_OR_RETURN(input_files, DescribeInputFiles(train_files));
    std::vector<int> order(train_files.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return train_files[a] < train_files[b]; });
    for (size_t k = 0; k < order.size(); ++k) sorted_index[order[k]] = static_cast<int>(k);
  }
  // The validation split: worker 0 finds the cut, every worker takes it.
  const bool validating = !streaming && data.validation_fraction() > 0;
  SplitSpans spans;
  if (validating) {
    std::vector<uint64_t> sizes(train_files.size());
    for (size_t i = 0; i < train_files.size(); ++i) sizes[i] = input_files[sorted_index[i]].bytes;
    FRESHET_ASSIGN_OR_RETURN(spans, AgreeValidationSplit(data, train_files, sizes, workers,
                                                         leader && options.print_status, &result));
  }
  const bool early_stopping = validating && job.has_early_stopping();
  if (early_stopping && options.tables == nullptr) {
    return InvalidArgument(
        "early_stopping keeps the best pass's model and needs a table save and load");
  }
  // A checkpoint restore continues its step count, epoch and input.
  RestoredCheckpoint restored;
  if (!options.restore_dir.empty()) {
    FRESHET_ASSIGN_OR_RETURN(
        restored, ReadCheckpointState(job, options.restore_dir, input_files, workers->rank(),
                                      workers->size(), leader && options.print_status));
  }
  const int64_t start_step = restored.start_step;
  const int start_epoch = restored.start_epoch;
  std::unique_ptr<InputLedger> ledger;
  if (!options.input_ledger_dir.empty()) {
    FRESHET_ASSIGN_OR_RETURN(ledger, InputLedger::Open(options.input_ledger_dir, workers->rank(),
                                                       workers->size(), restored.id));
  }
  // What this worker trained in the current epoch (worker 0: plus what the
  // restored checkpoint's workers had), and the stream position as of its
  // last trained batch.
  int consumed_epoch = start_epoch;
  ConsumedSet epoch_consumed;
  if (leader) epoch_consumed = restored.consumed;
  std::string trained_position;
  Trainer::Options topt;
  topt.batch_size = job.batch_size();
  topt.epochs = job.epochs();
  topt.staleness = JobStaleness(job);
  topt.status_interval_s = job.status_interval_s();
  topt.print_status = leader && options.print_status;
  topt.max_steps = options.max_steps;
  topt.dense_allreduce_on_device = options.dense_allreduce_on_device;
  topt.metrics = options.metrics;
  topt.start_step = start_step;
  topt.start_epoch = start_epoch;
  StreamExampleSource* stream = nullptr;  // owned by the job (stream_owner below)
  BorrowedSource* borrowed = nullptr;     // owned by the trainer while it trains
  topt.after_batch = [&](int epoch, const ConsumedInput& input) -> Status {
    if (epoch != consumed_epoch) {
      epoch_consumed.clear();
      consumed_epoch = epoch;
    }
    AddConsumed(input.intervals, &epoch_consumed);
    if (!input.position.empty()) trained_position = input.position;
    if (borrowed != nullptr) borrowed->Trained(input);
    if (ledger != nullptr) return ledger->AppendBatch(epoch, input.intervals);
    return Status::OK();
  };
  if (streaming) {
    topt.epochs = 1;
    topt.max_batch_delay_ms = job.stream().max_batch_delay_ms();
    topt.progressive_window = job.stream().progressive_window();
    topt.max_progressive = 1 << 20;
    topt.status_extra = [&stream]() -> std::string {
      if (stream == nullptr) return "";
      const int64_t w = stream->watermark_ms();
      const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
      char buf[96];
      if (w >= 0) {
        std::snprintf(buf, sizeof(buf), "  watermark %lld  lag %.2f s", static_cast<long long>(w),
                      (now_ms - w) / 1e3);
      } else {
        std::snprintf(buf, sizeof(buf), "  watermark none yet");
      }
      return "join (worker 0) " + stream->join_counters().ToString() + " pending " +
             std::to_string(stream->joiner().waiting()) + buf;
    };
  }
  Model* model_ptr = nullptr;
  // This worker's, after its last step.
  int64_t last_step = 0, last_watermark = 0, last_wall_ms = 0, last_label_wall_ms = 0;
  // Streaming from a directory: this worker's read position, about every
  // second and at the end.
  FRESHET_ASSIGN_OR_RETURN(StreamPositionFile position_file,
                           StreamPositionFile::Create(job, workers->rank()));
  topt.after_step = [&options, &model_ptr, leader, &last_step, &last_watermark, &last_wall_ms,
                     &last_label_wall_ms, &position_file, &stream, &trained_position](
                        int64_t step, int64_t watermark, int64_t wall_ms, int64_t label_wall_ms) {
    last_step = step;
    last_watermark = watermark;
    last_wall_ms = wall_ms;
    last_label_wall_ms = label_wall_ms;
    // As of this step's batch (after_batch ran first), never ahead of
    // what is trained.
    if (position_file.Due() && !trained_position.empty()) {
      position_file.Save(stream, trained_position);
    }
    if (options.export_feed != nullptr) {
      const TrainingClocks clocks{step, watermark, wall_ms, label_wall_ms};
      options.export_feed->Watermark(clocks);
      if (leader) options.export_feed->Dense(*model_ptr, clocks);
    }
  };
  model_ptr = model.get();
  // Periodic checkpoints (null: none); destroyed (its publisher joined)
  // before `result` and `options` go away.
  FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointDriver> checkpoints,
                           CheckpointDriver::Create(job, options, workers, ledger.get(), &result));
  const bool checkpointing = checkpoints != nullptr;
  if (checkpointing) {
    topt.checkpoint_every_steps = options.checkpoint.interval_steps;
    topt.checkpoint = [&](int64_t step) -> Status {
      CutInput input;
      input.stream = stream;
      input.borrowed = borrowed;
      input.epoch = consumed_epoch;
      input.consumed = &epoch_consumed;
      input.files = &input_files;
      return checkpoints->Take(step, *model_ptr, input);
    };
  }
  // Validation after every pass, early stopping and the best pass's
  // snapshot (see RunWorkerJob in the header).
  Trainer* trainer_ptr = nullptr;  // set once created
  std::unique_ptr<PassValidator> validator;
  if (validating) {
    FRESHET_ASSIGN_OR_RETURN(
        validator, PassValidator::Create(job, options, std::move(spans.validation), start_epoch,
                                         workers, &result));
    topt.after_epoch = [&](int epoch) -> StatusOr<bool> {
      return validator->AfterEpoch(epoch, trainer_ptr, model_ptr, checkpoints.get());
    };
  }
  FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer,
                           Trainer::Create(job, encoder.get(), model.get(), store, workers, topt));
  trainer_ptr = trainer.get();
  BadRecordPolicy policy;
  policy.max_bad_ratio = data.max_bad_ratio();
  policy.max_bad_records = data.max_bad_records();
  const std::vector<std::string> holdout_files(data.holdout_files().begin(),
                                               data.holdout_files().end());
  const int me = workers->rank(), n = workers->size();
  std::unique_ptr<StreamExampleSource> stream_owner;  // kept for its counters
  int epochs_opened = 0;
  auto open_shard = [&]() -> StatusOr<std::unique_ptr<ExampleSource>> {
    if (streaming) {
      FRESHET_ASSIGN_OR_RETURN(stream_owner,
                               OpenStream(job, columns, policy, me, n,
                                          restored.position ? &*restored.position : nullptr));
      stream = stream_owner.get();
      if (restored.join) {
        FRESHET_RETURN_IF_ERROR(stream->RestoreJoinState(std::move(*restored.join))
                                    .WithContext("restoring the join state"));
        restored.join.reset();
      }
      if (leader && options.print_status) {
        std::printf("streaming: worker 0 reads %s; window %.1f s, labels",
                    stream->lines()->Describe().c_str(), job.stream().window_s());
        for (const auto& k : job.stream().label_events()) std::printf(" %s", k.c_str());
        std::printf("\n");
        std::fflush(stdout);
      }
      auto source = std::make_unique<BorrowedSource>(stream, checkpointing);
      borrowed = source.get();
      return std::unique_ptr<ExampleSource>(std::move(source));
    }
    std::vector<FileRange> ranges;
    if (validating) {
      ranges = SplitRanges(spans.train, me, n, TrainingBlockBytes(train_files, n));
    } else {
      FRESHET_ASSIGN_OR_RETURN(ranges,
                               SplitFiles(train_files, me, n, TrainingBlockBytes(train_files, n)));
    }
    for (FileRange& r : ranges) r.file_index = sorted_index[r.file_index];
    // The restored epoch: this worker's share as a fresh job's, minus what
    // every worker of the checkpoint had trained (line-aligned, so the
    // Hadoop rule reads each remaining line once). Later epochs: whole.
    if (restored.input && epochs_opened == 0) ranges = SubtractConsumed(ranges, restored.consumed);
    ++epochs_opened;
    FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<ExampleReader> reader,
                             ExampleReader::Open(std::move(ranges), policy));
    return std::unique_ptr<ExampleSource>(std::move(reader));
  };
  FRESHET_ASSIGN_OR_RETURN(result.train, trainer->Train(open_shard));
  if (checkpointing) FRESHET_RETURN_IF_ERROR(checkpoints->FinishLast());
  if (validating) FRESHET_RETURN_IF_ERROR(validator->KeepBestPass(model.get()));
  // The end: everything read was trained or dropped.
  position_file.Save(stream, "");
  if (streaming) {
    // Every worker's join counters, summed on worker 0.
    CHECK(stream != nullptr);
    FRESHET_RETURN_IF_ERROR(GatherJoinCounters(*stream, workers, &result));
  }
  // The final watermark: the minimum over the workers that trained
  // anything (the exporter's EXPORT_FINAL carries it).
  // The clocks as of the end of training (every push applied), not only
  // as of the last after_step.
  last_wall_ms = std::max(last_wall_ms, trainer->read_wall_ms());
  last_label_wall_ms = std::max(last_label_wall_ms, trainer->label_wall_ms());
  FRESHET_RETURN_IF_ERROR(
      GatherFinalClocks(workers, {last_watermark, last_wall_ms, last_label_wall_ms}, &result));
  if (leader && options.export_feed != nullptr) {
    const TrainingClocks clocks{last_step, result.final_watermark, result.final_ingest_wall_ms,
                                result.final_label_wall_ms};
    FRESHET_RETURN_IF_ERROR(options.export_feed->Final(*model, clocks).WithContext("final export"));
  }
  FRESHET_RETURN_IF_ERROR(EvaluateHoldout(job, columns, train_files, holdout_files, policy,
                                          trainer.get(), workers, &result));
  if (leader && options.save_model) {
    FRESHET_RETURN_IF_ERROR(SaveModel(job, *model, options.tables));
  }
  FRESHET_RETURN_IF_ERROR(workers->Barrier());
  return result;
}

}  // namespace freshet
