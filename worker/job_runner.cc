#include "worker/job_runner.h"

#include <glog/logging.h>
#include <google/protobuf/text_format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "common/file_io.h"
#include "model/features.h"
#include "model/model_factory.h"
#include "worker/checkpoint.h"
#include "worker/data/example_io.h"
#include "worker/data/input_intervals.h"
#include "worker/data/task.h"
#include "worker/data/validation_split.h"
#include "worker/dense_file.h"
#include "worker/early_stopping.h"
#include "worker/input_ledger.h"
#include "worker/job.h"
#include "worker/stream/socket_source.h"
#include "worker/stream/stream_source.h"
#include "worker/stream/tail_source.h"

namespace freshet {
namespace {

Status MakeDirs(const std::string& path) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!cur.empty() && mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
        return Internal(cur + ": cannot create directory: " + std::strerror(errno));
      }
    }
    if (i < path.size()) cur += path[i];
  }
  return Status::OK();
}

// Thread safety: as the source it forwards to.
// Forwards to a source the job keeps (to read a stream's counters after
// training).
// TakeConsumed gives the tail's read position (TailPosition text) when the
// stream is a TailSource: the position after the examples of the batch.
// With `keep_untrained` (streaming checkpoints) it also keeps a copy of the
// examples of every batch read until Trained() says the trainer trained it:
// at a checkpoint those are the read-ahead batch, which the join state
// saves (the reader's position is past them).
class BorrowedSource : public ExampleSource {
 public:
  BorrowedSource(StreamExampleSource* s, bool keep_untrained)
      : s_(s),
        tail_(dynamic_cast<TailSource*>(s->lines())),
        keep_(keep_untrained && tail_ != nullptr) {}
  StatusOr<Outcome> Poll(Example* ex, std::chrono::steady_clock::time_point deadline) override {
    StatusOr<Outcome> got = s_->Poll(ex, deadline);
    if (keep_ && got.ok() && *got == Outcome::kExample) reading_.push_back(*ex);
    return got;
  }
  const ReadStats& stats() const override { return s_->stats(); }
  void TakeConsumed(ConsumedInput* out) override {
    if (tail_ != nullptr) out->position = tail_->Position().Serialize();
    if (keep_) {
      read_.push_back(std::move(reading_));
      reading_.clear();
    }
  }
  // Failed feature encoding: never trained, so not kept either.
  void UncountLast() override {
    if (keep_ && !reading_.empty()) reading_.pop_back();
  }
  // The trainer trained the batch whose reads gave `input` (after_batch).
  // Batches are trained in the order read; a batch with no position was
  // never read (the trainer's empty batches after the end).
  void Trained(const ConsumedInput& input) {
    if (keep_ && !input.position.empty() && !read_.empty()) read_.pop_front();
  }
  // The examples returned but not trained yet, in order.
  std::vector<Example> Untrained() const {
    std::vector<Example> out;
    for (const auto& batch : read_) out.insert(out.end(), batch.begin(), batch.end());
    out.insert(out.end(), reading_.begin(), reading_.end());
    return out;
  }

 private:
  StreamExampleSource* s_;
  const TailSource* tail_;
  const bool keep_;
  std::vector<Example> reading_;           // since the last TakeConsumed
  std::deque<std::vector<Example>> read_;  // batches read, not yet trained
};

constexpr int kCounterFields = 14;

std::string SerializeCounters(const JoinCounters& c, int64_t bad, int64_t lines) {
  const int64_t v[kCounterFields] = {
      c.impressions, c.reactions,  c.joined,  c.expired,      c.evicted,    c.duplicate, c.late,
      c.orphan,      c.mismatched, c.ignored, c.early_joined, c.dup_labels, bad,         lines};
  return std::string(reinterpret_cast<const char*>(v), sizeof(v));
}

Status SumCounters(const std::string& all, JoinCounters* sum, int64_t* bad, int64_t* lines) {
  constexpr size_t kBytes = kCounterFields * sizeof(int64_t);
  if (all.size() % kBytes != 0) return DataLoss("join counters: gathered a partial record");
  *sum = JoinCounters();
  *bad = 0;
  *lines = 0;
  for (size_t off = 0; off < all.size(); off += kBytes) {
    int64_t v[kCounterFields];
    std::memcpy(v, all.data() + off, kBytes);
    JoinCounters c;
    c.impressions = v[0];
    c.reactions = v[1];
    c.joined = v[2];
    c.expired = v[3];
    c.evicted = v[4];
    c.duplicate = v[5];
    c.late = v[6];
    c.orphan = v[7];
    c.mismatched = v[8];
    c.ignored = v[9];
    c.early_joined = v[10];
    c.dup_labels = v[11];
    sum->Add(c);
    *bad += v[12];
    *lines += v[13];
  }
  return Status::OK();
}

JoinOptions JobJoinOptions(const proto::StreamConfig& s) {
  JoinOptions o;
  o.label_kinds.clear();
  for (const auto& k : s.label_events()) o.label_kinds.push_back(*ParseEventKind(k));
  o.window_ms = static_cast<int64_t>(std::llround(s.window_s() * 1000.0));
  o.max_pending = static_cast<size_t>(s.max_pending());
  o.early_hold_ms = static_cast<int64_t>(std::llround(s.early_hold_s() * 1000.0));
  o.max_early = static_cast<size_t>(s.max_early());
  return o;
}

// This worker's stream: its partitions of the stream directory.
StatusOr<std::unique_ptr<StreamExampleSource>> OpenStream(const proto::JobConfig& job,
                                                          const std::vector<std::string>& columns,
                                                          const BadRecordPolicy& policy, int me,
                                                          int n, const TailPosition* restore) {
  const auto& s = job.stream();
  std::unique_ptr<LineStream> lines;
  if (!s.dir().empty()) {
    // The producer may start after the job: an empty directory is a stream
    // that has not begun.
    FRESHET_RETURN_IF_ERROR(MakeDirs(s.dir()));
    TailOptions t;
    t.dir = s.dir();
    t.worker = me;
    t.num_workers = n;
    FRESHET_ASSIGN_OR_RETURN(lines, TailSource::Open(t, restore));
  } else {
    // Worker i listens on its own port / socket path.
    SocketOptions so;
    if (s.tcp_port() > 0) {
      so.tcp_port = s.tcp_port() + me;
    } else {
      so.unix_socket = s.unix_socket() + "." + std::to_string(me);
    }
    FRESHET_ASSIGN_OR_RETURN(lines, SocketSource::Listen(so));
  }
  StreamSourceOptions o;
  o.columns = columns;
  o.join = JobJoinOptions(s);
  o.policy = policy;
  o.lateness_ms = static_cast<int64_t>(std::llround(s.lateness_s() * 1000.0));
  o.idle_partition = std::chrono::milliseconds(std::llround(s.idle_partition_s() * 1000.0));
  return StreamExampleSource::Create(std::move(lines), o);
}

}  // namespace

std::vector<std::string> StreamColumns(const proto::FeatureConfig& features) {
  std::vector<std::string> cols;
  auto add = [&](const std::string& c) {
    if (std::find(cols.begin(), cols.end(), c) == cols.end()) cols.push_back(c);
  };
  for (const auto& s : features.slots()) add(s.column().empty() ? s.name() : s.column());
  for (const auto& d : features.dense()) add(d.column().empty() ? d.name() : d.column());
  return cols;
}

namespace {

// Worker 0: waits for the checkpoint `publisher` has in flight (if any) and
// adds it to `result`. With `sync_start` (no background writes) the pause
// is measured from it to now, publication included.
// `print`: print the checkpoint line (the background publisher prints its
// own).
Status FinishCheckpoint(CheckpointPublisher* publisher, JobResult* result,
                        std::optional<std::chrono::steady_clock::time_point> sync_start = {},
                        bool print = false) {
  std::optional<PublishedCheckpoint> done = publisher->Finish();
  if (!done) return Status::OK();
  FRESHET_RETURN_IF_ERROR(done->status);
  if (sync_start) {
    done->pause_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - *sync_start)
            .count();
    done->write_ms = 0;
  }
  if (print) {
    const CheckpointManifest& m = done->manifest;
    std::printf(
        "checkpoint %lld (%s) at step %lld: %zu files, %.2f MB, training paused "
        "%.0f ms\n",
        static_cast<long long>(m.id), m.parent > 0 ? "incremental" : "full",
        static_cast<long long>(m.step), m.files.size(), m.TotalBytes() / 1e6, done->pause_ms);
    std::fflush(stdout);
  }
  ++result->checkpoints;
  result->checkpoint_total_pause_ms += done->pause_ms;
  result->checkpoint_max_pause_ms = std::max(result->checkpoint_max_pause_ms, done->pause_ms);
  result->checkpoint_total_write_ms += done->write_ms;
  result->checkpoint_max_write_ms = std::max(result->checkpoint_max_write_ms, done->write_ms);
  result->checkpoint_max_copy_bytes =
      std::max(result->checkpoint_max_copy_bytes, done->copied_bytes);
  result->checkpoint_last_bytes = done->manifest.TotalBytes();
  return Status::OK();
}

// At the end of training: worker 0 waits for the last checkpoint's
// background write and publication; every worker learns whether it failed.
Status FinishLastCheckpoint(bool leader, CheckpointPublisher* publisher, Collective* workers,
                            JobResult* result) {
  Status st = leader ? FinishCheckpoint(publisher, result) : Status::OK();
  float failed = st.ok() ? 0.0f : 1.0f;
  FRESHET_RETURN_IF_ERROR(workers->AllReduceSum(&failed, 1));
  if (!st.ok()) return st.WithContext("the last checkpoint");
  if (failed > 0)
    return Status(StatusCode::kAborted, "worker 0 failed to publish the last checkpoint");
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
  FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<FeatureEncoder> encoder,
                           FeatureEncoder::Create(job.features(), columns));
  FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                           CreateJobModel(job, encoder->num_slots(), encoder->num_dense()));
  if (!options.restore_dir.empty()) {
    FRESHET_RETURN_IF_ERROR(
        LoadDense(options.restore_dir + "/dense.bin", model.get()).WithContext("restoring"));
    // Models saved before the optimizer state was: fresh Adam moments.
    Status st = LoadDenseOptimizer(options.restore_dir + "/dense_opt.bin", model.get());
    if (st.code() == StatusCode::kNotFound) {
      LOG(WARNING) << st << "; the dense optimizer starts afresh";
    } else {
      FRESHET_RETURN_IF_ERROR(st.WithContext("restoring"));
    }
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
  // The validation split: worker 0 finds the cut, every worker takes it
  // (doubles carry the integers exactly up to 2^53).
  const bool validating = !streaming && data.validation_fraction() > 0;
  std::vector<FileRange> train_spans, validation_spans;
  if (validating) {
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
    if (v[0] > 0)
      return Status(StatusCode::kAborted, "worker 0 failed to find the validation split");
    ValidationCut cut;
    cut.file = static_cast<int>(v[1]);
    cut.offset = static_cast<uint64_t>(v[2]);
    cut.time = static_cast<int64_t>(v[3]);
    cut.train_examples = static_cast<int64_t>(v[4]);
    cut.validation_examples = static_cast<int64_t>(v[5]);
    std::vector<uint64_t> sizes(train_files.size());
    for (size_t i = 0; i < train_files.size(); ++i) sizes[i] = input_files[sorted_index[i]].bytes;
    train_spans = TrainingSpans(train_files, sizes, cut);
    validation_spans = ValidationSpans(train_files, sizes, cut);
    result.validation_examples = cut.validation_examples;
    result.validation_train_examples = cut.train_examples;
    result.validation_time = cut.time;
    if (leader && options.print_status) {
      std::printf(
          "validation split: the last %.3g of train by time, %lld examples from time %lld "
          "(%s byte %llu); training on the %lld before\n",
          data.validation_fraction(), static_cast<long long>(cut.validation_examples),
          static_cast<long long>(cut.time), train_files[cut.file].c_str(),
          static_cast<unsigned long long>(cut.offset), static_cast<long long>(cut.train_examples));
      std::fflush(stdout);
    }
  }
  const bool early_stopping = validating && job.has_early_stopping();
  if (early_stopping && options.tables == nullptr) {
    return InvalidArgument(
        "early_stopping keeps the best pass's model and needs a table save and load");
  }
  // A checkpoint restore continues its step count, epoch and input.
  int64_t restored_id = 0, start_step = 0;
  int start_epoch = 0;
  bool restored_input = false;
  ConsumedSet restored_consumed;  // every old worker's trained input of start_epoch
  // Streaming: every old worker's position as of its last trained batch,
  // merged (positions are per file, keyed by file identity; each new worker
  // applies the entries of the partitions it owns, for any worker count).
  std::optional<TailPosition> restored_position;
  // And the join state at the cut: every old worker's, this worker's share
  // merged (JoinStateMerger: by partition, as the positions).
  std::optional<StreamJoinState> restored_join;
  int64_t restored_waiting = 0, restored_examples = 0;  // over all old workers
  if (!options.restore_dir.empty()) {
    auto manifest = VerifyCheckpoint(options.restore_dir);
    if (manifest.ok()) {
      restored_id = manifest->id;
      start_step = manifest->step;
      if (streaming && !job.stream().dir().empty()) {
        TailPosition merged;
        JoinStateMerger join_merger(workers->rank(), workers->size());
        int join_files = 0;
        for (int w = 0; w < manifest->num_workers; ++w) {
          const std::string path =
              options.restore_dir + "/worker-" + std::to_string(w) + ".position";
          std::ifstream in(path);
          if (!in) continue;  // an older checkpoint, or a socket-fed worker
          std::stringstream text;
          text << in.rdbuf();
          auto pos = TailPosition::Parse(text.str());
          if (!pos.ok()) return pos.status().WithContext(path);
          for (auto& f : pos->files) merged.files.push_back(std::move(f));
          // The position and the join state are one cut: a worker that
          // saved a position saved its join state beside it (checkpoints
          // from before join states have none at all).
          const std::string join_path = options.restore_dir + "/" + JoinStateFileName(w);
          auto join = ReadJoinStateFile(join_path);
          if (join.status().code() == StatusCode::kNotFound && join_files == 0 && w == 0) {
            continue;
          }
          if (!join.ok()) return join.status().WithContext("restoring the join state");
          if (join->worker != w || join->step != manifest->step) {
            return DataLoss(join_path + ": worker " + std::to_string(join->worker) + " step " +
                            std::to_string(join->step) + ", the checkpoint's is worker " +
                            std::to_string(w) + " step " + std::to_string(manifest->step));
          }
          ++join_files;
          restored_waiting += static_cast<int64_t>(join->joiner.waiting());
          restored_examples += static_cast<int64_t>(join->examples.size());
          join_merger.Add(std::move(*join));
        }
        if (!merged.files.empty()) restored_position = std::move(merged);
        if (join_files > 0) {
          restored_join = join_merger.Take();
        } else if (restored_position) {
          LOG(WARNING) << options.restore_dir
                       << ": no join state (an older checkpoint): impressions that waited for "
                          "their label window at the cut are lost";
        }
      }
      if (!streaming) {
        auto cut = LoadInputCut(options.restore_dir, manifest->num_workers, input_files);
        if (cut.ok()) {
          restored_input = true;
          start_epoch = cut->epoch;
          restored_consumed = std::move(cut->consumed);
        } else if (cut.status().code() == StatusCode::kNotFound) {
          LOG(WARNING) << cut.status() << "; the input is read from the start";
        } else {
          return cut.status().WithContext("restoring the input position");
        }
      }
      if (leader && options.print_status) {
        uint64_t done = 0, total = 0;
        for (const auto& [f, set] : restored_consumed) done += set.bytes();
        for (const auto& f : input_files) total += f.bytes;
        std::printf(
            "restored checkpoint %lld: step %lld, epoch %d, %s\n",
            static_cast<long long>(restored_id), static_cast<long long>(start_step),
            start_epoch + 1,
            streaming
                ? (restored_position
                       ? "stream positions of " + std::to_string(restored_position->files.size()) +
                             " files restored" +
                             (restored_join
                                  ? ", join state of " + std::to_string(restored_waiting) +
                                        " pending impressions and " +
                                        std::to_string(restored_examples) + " untrained examples"
                                  : std::string(", no join state"))
                       : std::string("stream read from the start (no positions)"))
                      .c_str()
            : restored_input ? (std::to_string(done) + " of " + std::to_string(total) +
                                " input bytes of the epoch already trained")
                                   .c_str()
                             : "input from the start (no input cut)");
        std::fflush(stdout);
      }
    } else if (manifest.status().code() != StatusCode::kNotFound) {
      return manifest.status().WithContext("restoring");
    }
  }
  std::unique_ptr<InputLedger> ledger;
  if (!options.input_ledger_dir.empty()) {
    FRESHET_ASSIGN_OR_RETURN(ledger, InputLedger::Open(options.input_ledger_dir, workers->rank(),
                                                       workers->size(), restored_id));
  }
  // What this worker trained in the current epoch (worker 0: plus what the
  // restored checkpoint's workers had), and the stream position as of its
  // last trained batch.
  int consumed_epoch = start_epoch;
  ConsumedSet epoch_consumed;
  if (leader) epoch_consumed = restored_consumed;
  std::string trained_position;
  Trainer::Options topt;
  topt.batch_size = job.batch_size();
  topt.epochs = job.epochs();
  topt.staleness = JobStaleness(job);
  topt.status_interval_s = job.status_interval_s();
  topt.print_status = leader && options.print_status;
  topt.max_steps = options.max_steps;
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
  // Streaming from a directory: this worker's read position, checkpointed
  // about every second (and at the end) to
  // <work_dir>/stream-positions/worker-<i>.position (TailPosition text,
  // replaced atomically), for the reliability work to resume from.
  std::string position_file;
  if (streaming && !job.stream().dir().empty()) {
    position_file = job.work_dir() + "/stream-positions/worker-" + std::to_string(workers->rank()) +
                    ".position";
    FRESHET_RETURN_IF_ERROR(MakeDirs(job.work_dir() + "/stream-positions"));
  }
  auto last_position = std::chrono::steady_clock::now();
  // `text`: a TailPosition; empty: the reader's current one.
  auto save_position = [&stream, &position_file, &last_position](const std::string& text) {
    last_position = std::chrono::steady_clock::now();
    const auto* tail = stream == nullptr ? nullptr : dynamic_cast<TailSource*>(stream->lines());
    if (tail == nullptr || position_file.empty()) return;
    const std::string tmp = position_file + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << (text.empty() ? tail->Position().Serialize() : text);
      if (!out.flush()) {
        LOG(WARNING) << tmp << ": cannot write the stream position";
        return;
      }
    }
    if (std::rename(tmp.c_str(), position_file.c_str()) != 0) {
      LOG(WARNING) << position_file << ": cannot replace: " << std::strerror(errno);
    }
  };
  topt.after_step = [&options, &model_ptr, leader, &last_step, &last_watermark, &last_wall_ms,
                     &last_label_wall_ms, &save_position, &last_position, &trained_position](
                        int64_t step, int64_t watermark, int64_t wall_ms, int64_t label_wall_ms) {
    last_step = step;
    last_watermark = watermark;
    last_wall_ms = wall_ms;
    last_label_wall_ms = label_wall_ms;
    // As of this step's batch (after_batch ran first), never ahead of
    // what is trained.
    if (std::chrono::steady_clock::now() - last_position >= std::chrono::seconds(1) &&
        !trained_position.empty()) {
      save_position(trained_position);
    }
    if (options.export_feed != nullptr) {
      const TrainingClocks clocks{step, watermark, wall_ms, label_wall_ms};
      options.export_feed->Watermark(clocks);
      if (leader) options.export_feed->Dense(*model_ptr, clocks);
    }
  };
  model_ptr = model.get();
  // Validation after every pass, early stopping and the best pass's
  // snapshot (see RunWorkerJob in the header).
  Trainer* trainer_ptr = nullptr;  // set once created
  // The servers' last SAVE was not a checkpoint (a best-pass snapshot): the
  // next checkpoint must be full, its incremental base is gone.
  bool tables_saved_outside = false;
  std::optional<EarlyStopping> stopper;
  std::vector<float> best_dense, best_dense_opt;  // this worker's copy at the best pass
  const std::string best_dir = job.work_dir() + "/best-pass";
  bool best_saved = false;  // best_dir holds the best pass's tables
  if (validating) {
    const auto& es = job.early_stopping();
    FRESHET_ASSIGN_OR_RETURN(EarlyStopping tracker,
                             early_stopping
                                 ? EarlyStopping::Create(es.metric(), es.patience(), es.min_delta())
                                 : EarlyStopping::Create("auc", 0, 0));
    stopper = std::move(tracker);
    result.validation_metric = stopper->metric();
    topt.after_epoch = [&, leader](int epoch) -> StatusOr<bool> {
      // Every worker's pushes are applied (each trainer drained its own).
      FRESHET_RETURN_IF_ERROR(workers->Barrier());
      BadRecordPolicy vpolicy;
      vpolicy.max_bad_ratio = data.max_bad_ratio();
      vpolicy.max_bad_records = data.max_bad_records();
      ScoredSet mine;
      {
        FRESHET_ASSIGN_OR_RETURN(
            std::unique_ptr<ExampleReader> reader,
            ExampleReader::Open(SplitRanges(validation_spans, workers->rank(), workers->size()),
                                vpolicy));
        FRESHET_RETURN_IF_ERROR(trainer_ptr->Score(reader.get(), &mine).WithContext("validation"));
      }
      std::string all;
      const std::string bytes = mine.Serialize();
      FRESHET_RETURN_IF_ERROR(workers->GatherBytes(bytes.data(), bytes.size(), &all));
      // Worker 0 decides: [improved, stop].
      double decision[2] = {0, 0};
      if (leader) {
        FRESHET_ASSIGN_OR_RETURN(ScoredSet v, ScoredSet::ParseAll(all));
        EvalResult r = Evaluate(v.probs, v.labels, v.users, v.oracle);
        result.validation.push_back(r);
        const bool improved = stopper->Add(stopper->ValueOf(r));
        const bool stop = early_stopping && stopper->Stop();
        decision[0] = improved ? 1 : 0;
        decision[1] = stop ? 1 : 0;
        if (options.print_status) {
          std::printf(
              "validation pass %d: AUC %.4f  logloss %.4f  GAUC %.4f  (%lld examples)%s  best pass "
              "%d (%s %.4f)%s\n",
              epoch + 1, r.auc, r.logloss, r.gauc, static_cast<long long>(r.examples),
              improved ? "  improved" : "", start_epoch + stopper->best_pass(),
              stopper->metric().c_str(), stopper->best_value(),
              stop ? ("  early stop: " + std::to_string(job.early_stopping().patience()) +
                      " pass(es) without improvement")
                         .c_str()
                   : "");
          std::fflush(stdout);
        }
      }
      FRESHET_RETURN_IF_ERROR(workers->AllReduceSum(decision, 2));
      const bool improved = decision[0] > 0, stop = decision[1] > 0;
      const bool last = stop || epoch + 1 >= job.epochs();
      // Snapshot an improving pass that a worse one may follow.
      if (early_stopping && improved && !last) {
        const float* p = model_ptr->dense_params();
        best_dense.assign(p, p + model_ptr->NumDenseParams());
        best_dense_opt = model_ptr->DenseOptimizerState();
        Status st;
        if (leader) {
          st = MakeDirs(best_dir);
          if (st.ok()) st = options.tables->Save(best_dir);
          tables_saved_outside = true;
          best_saved = st.ok();
        }
        float failed = st.ok() ? 0.0f : 1.0f;
        FRESHET_RETURN_IF_ERROR(workers->AllReduceSum(&failed, 1));
        if (!st.ok()) return st.WithContext("saving the best pass's tables to " + best_dir);
        if (failed > 0)
          return Status(StatusCode::kAborted, "worker 0 failed to save the best pass");
      }
      return stop;
    };
  }
  const auto& ck = options.checkpoint;
  int64_t next_checkpoint = 1, checkpoints_taken = 0;
  bool checkpointing = false;
  // Worker 0: publishes checkpoints whose tables the servers write in the
  // background (TableCheckpointer::StartSave); destroyed (joined) before
  // `result` and `options` go away.
  CheckpointPublisher publisher;
  const bool background = options.tables != nullptr && options.tables->CanSaveInBackground();
  if (!ck.dir.empty() && ck.interval_steps > 0) {
    if (options.tables == nullptr) return InvalidArgument("checkpoints need a table save");
    // Ids continue after the root's latest (and after any directory a
    // crashed run left); worker 0 reads it, all agree.
    float id = 0;
    if (leader) {
      FRESHET_RETURN_IF_ERROR(MakeDirs(ck.dir));
      FRESHET_ASSIGN_OR_RETURN(int64_t next, NextCheckpointId(ck.dir));
      id = static_cast<float>(next);
    }
    FRESHET_RETURN_IF_ERROR(workers->AllReduceSum(&id, 1));
    next_checkpoint = static_cast<int64_t>(id);
    topt.checkpoint_every_steps = ck.interval_steps;
    checkpointing = true;
    // The protocol (docs/CHECKPOINTS.md): the trainer has drained this
    // worker's pushes; the barrier makes that true of every worker (the
    // cut); worker 0 has every server copy its rows (written in the
    // background) and writes the dense parameters, each streaming worker
    // its read position; an all-reduce agrees on success and training
    // resumes; worker 0's publisher thread waits for the servers' files,
    // writes MANIFEST last and publishes.
    topt.checkpoint = [&](int64_t step) -> Status {
      const auto t0 = std::chrono::steady_clock::now();
      const std::string dir = CheckpointDir(ck.dir, next_checkpoint);
      // One checkpoint in flight: worker 0 first waits for the previous
      // one's background write (the others wait at the barrier: pause).
      Status st = leader ? FinishCheckpoint(&publisher, &result) : Status::OK();
      if (st.ok() && leader) st = MakeDirs(dir);
      const auto t_waited = std::chrono::steady_clock::now();
      FRESHET_RETURN_IF_ERROR(workers->Barrier());
      const auto t_cut = std::chrono::steady_clock::now();
      // Streams: the reader's position now and the join state now, one
      // cut. The reader is a batch ahead of training (the prefetched batch
      // is read, not trained, so not in the tables): its examples go into
      // the join state with the examples the source has emitted but not
      // returned, so every event line before the position is trained, in
      // the join state, or counted (docs/CHECKPOINTS.md "Streaming
      // restore").
      const auto* tail = stream == nullptr ? nullptr : dynamic_cast<TailSource*>(stream->lines());
      if (st.ok() && tail != nullptr) {
        StreamJoinState join = stream->SaveJoinState();
        join.worker = workers->rank();
        join.num_workers = workers->size();
        join.step = step;
        if (borrowed != nullptr) {
          std::vector<Example> untrained = borrowed->Untrained();
          untrained.insert(untrained.end(), std::make_move_iterator(join.examples.begin()),
                           std::make_move_iterator(join.examples.end()));
          join.examples = std::move(untrained);
        }
        st = WriteJoinStateFile(dir + "/" + JoinStateFileName(workers->rank()), join);
        if (st.ok()) {
          st = WriteFileAtomic(dir + "/worker-" + std::to_string(workers->rank()) + ".position",
                               tail->Position().Serialize());
        }
      }
      if (st.ok() && !streaming) {
        InputCut cut;
        cut.worker = workers->rank();
        cut.num_workers = workers->size();
        cut.step = step;
        cut.epoch = consumed_epoch;
        cut.files = input_files;
        cut.consumed = epoch_consumed;
        st = WriteInputCut(dir + "/" + InputCutFileName(workers->rank()), cut);
      }
      // Incremental: the rows changed since the previous checkpoint of this
      // run, applied over it on restore (its MANIFEST names it as parent).
      const bool incremental = checkpoints_taken > 0 && ck.full_every > 1 &&
                               checkpoints_taken % ck.full_every != 0 &&
                               options.tables->CanSaveChanged() && !tables_saved_outside;
      tables_saved_outside = false;
      int64_t copied = 0;
      auto t_copied = t_cut;
      if (st.ok() && leader) {
        if (background) {
          // Servers copy their rows and answer; they write in the background.
          StatusOr<int64_t> c = options.tables->StartSave(dir, incremental);
          st = c.status();
          if (c.ok()) copied = *c;
        } else {
          st = incremental ? options.tables->SaveChanged(dir) : options.tables->Save(dir);
        }
        t_copied = std::chrono::steady_clock::now();
        if (st.ok()) st = SaveDense(*model_ptr, dir + "/dense.bin");
        if (st.ok()) st = SaveDenseOptimizer(*model_ptr, dir + "/dense_opt.bin");
        if (st.ok()) {
          std::string text;
          google::protobuf::TextFormat::PrintToString(job, &text);
          std::ofstream out(dir + "/job.pbtxt", std::ios::trunc);
          out << text;
          if (!out.flush()) st = Internal(dir + "/job.pbtxt: cannot write");
        }
      }
      // The ledger's `c` line goes in before the workers agree: a worker
      // that dies after the agreement (worker 0 may still publish) has it
      // already, so every checkpoint a restore may name has its `c` line in
      // every worker's ledger. (A `c` line of a checkpoint that then fails
      // is never named by a restore.)
      if (st.ok() && ledger != nullptr) st = ledger->AppendCheckpoint(next_checkpoint, step);
      float failed = st.ok() ? 0.0f : 1.0f;
      FRESHET_RETURN_IF_ERROR(workers->AllReduceSum(&failed, 1));
      if (!st.ok()) return st.WithContext(dir);
      if (failed > 0) return Status(StatusCode::kAborted, dir + ": another worker failed");
      if (leader) {
        PendingCheckpoint p;
        p.root = ck.dir;
        p.dir = dir;
        p.keep = ck.keep;
        p.manifest.id = next_checkpoint;
        p.manifest.step = step;
        p.manifest.parent = incremental ? next_checkpoint - 1 : 0;
        p.manifest.num_servers = ck.num_servers;
        p.manifest.num_workers = workers->size();
        p.manifest.unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
        p.copied_bytes = copied;
        p.print = background && options.print_status;
        if (background) {
          p.wait_written = [tables = options.tables, dir, copied] {
            return tables->WaitSaved(dir, copied);
          };
        }
        const auto t_agreed = std::chrono::steady_clock::now();
        p.pause_ms = std::chrono::duration<double, std::milli>(t_agreed - t0).count();
        auto ms = [](auto a, auto b) {
          return std::chrono::duration<double, std::milli>(b - a).count();
        };
        // Where the pause went (docs/CHECKPOINTS.md "Figures").
        LOG(INFO) << dir << " pause " << p.pause_ms << " ms: previous write " << ms(t0, t_waited)
                  << ", barrier " << ms(t_waited, t_cut) << ", tables " << ms(t_cut, t_copied)
                  << ", dense files + agree " << ms(t_copied, t_agreed);
        publisher.Start(std::move(p));
        // Without background writes the manifest is part of the pause.
        if (!background) {
          FRESHET_RETURN_IF_ERROR(FinishCheckpoint(&publisher, &result, t0, options.print_status));
        }
      }
      ++next_checkpoint;
      ++checkpoints_taken;
      return Status::OK();
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
                                          restored_position ? &*restored_position : nullptr));
      stream = stream_owner.get();
      if (restored_join) {
        FRESHET_RETURN_IF_ERROR(stream->RestoreJoinState(std::move(*restored_join))
                                    .WithContext("restoring the join state"));
        restored_join.reset();
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
      ranges = SplitRanges(train_spans, me, n, TrainingBlockBytes(train_files, n));
    } else {
      FRESHET_ASSIGN_OR_RETURN(ranges,
                               SplitFiles(train_files, me, n, TrainingBlockBytes(train_files, n)));
    }
    for (FileRange& r : ranges) r.file_index = sorted_index[r.file_index];
    // The restored epoch: this worker's share as a fresh job's, minus what
    // every worker of the checkpoint had trained (line-aligned, so the
    // Hadoop rule reads each remaining line once). Later epochs: whole.
    if (restored_input && epochs_opened == 0) ranges = SubtractConsumed(ranges, restored_consumed);
    ++epochs_opened;
    FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<ExampleReader> reader,
                             ExampleReader::Open(std::move(ranges), policy));
    return std::unique_ptr<ExampleSource>(std::move(reader));
  };
  FRESHET_ASSIGN_OR_RETURN(result.train, trainer->Train(open_shard));
  if (checkpointing) {
    FRESHET_RETURN_IF_ERROR(FinishLastCheckpoint(leader, &publisher, workers, &result));
  }
  if (validating) {
    // Every worker learns the best pass (worker 0 kept the metrics).
    double best = leader && stopper->best_pass() > 0 ? start_epoch + stopper->best_pass() : 0;
    FRESHET_RETURN_IF_ERROR(workers->AllReduceSum(&best, 1));
    const int best_pass = static_cast<int>(best);
    result.validation_first_pass = start_epoch + 1;
    const int last_pass = start_epoch + result.train.epochs;  // 1-based
    result.best_pass = best_pass;
    result.stopped_early = result.train.stopped_early;
    result.model_pass = result.train.epochs > 0 ? last_pass : 0;
    if (early_stopping && best_pass > 0 && best_pass != last_pass && result.train.epochs > 0) {
      // The best pass's model back: dense here, rows on the servers.
      if (best_dense.size() != model->NumDenseParams()) {
        return Internal("the best pass " + std::to_string(best_pass) + " was not snapshotted");
      }
      std::memcpy(model->dense_params(), best_dense.data(), best_dense.size() * sizeof(float));
      FRESHET_RETURN_IF_ERROR(model->SetDenseOptimizerState(best_dense_opt));
      Status st = leader ? (best_saved ? options.tables->Load(best_dir)
                                       : Internal(best_dir + ": the best pass was not saved"))
                         : Status::OK();
      float failed = st.ok() ? 0.0f : 1.0f;
      FRESHET_RETURN_IF_ERROR(workers->AllReduceSum(&failed, 1));
      if (!st.ok()) return st.WithContext("restoring the best pass from " + best_dir);
      if (failed > 0)
        return Status(StatusCode::kAborted, "worker 0 failed to restore the best pass");
      result.model_pass = best_pass;
      if (leader && options.print_status) {
        std::printf("kept the model of pass %d (best validation %s %.4f; last pass %d)\n",
                    best_pass, stopper->metric().c_str(), stopper->best_value(), last_pass);
        std::fflush(stdout);
      }
    }
    if (leader && best_saved) {
      std::error_code ec;
      std::filesystem::remove_all(best_dir, ec);
    }
  }
  save_position("");  // the end: everything read was trained or dropped
  if (streaming) {
    // Every worker's join counters, summed on worker 0.
    CHECK(stream != nullptr);
    std::string all;
    const std::string mine =
        SerializeCounters(stream->join_counters(), stream->stats().bad, stream->stats().lines);
    FRESHET_RETURN_IF_ERROR(workers->GatherBytes(mine.data(), mine.size(), &all));
    if (leader) {
      FRESHET_RETURN_IF_ERROR(
          SumCounters(all, &result.join, &result.stream_bad, &result.stream_lines));
    }
  }
  {
    // The final watermark: the minimum over the workers that trained
    // anything (the exporter's EXPORT_FINAL carries it).
    const int64_t mine[3] = {last_watermark, last_wall_ms, last_label_wall_ms};
    std::string all;
    FRESHET_RETURN_IF_ERROR(
        workers->GatherBytes(reinterpret_cast<const char*>(mine), sizeof(mine), &all));
    if (leader) {
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
      result.final_watermark = w;
      result.final_ingest_wall_ms = wall;
      result.final_label_wall_ms = label;
    }
  }
  if (leader && options.export_feed != nullptr) {
    const TrainingClocks clocks{last_step, result.final_watermark, result.final_ingest_wall_ms,
                                result.final_label_wall_ms};
    FRESHET_RETURN_IF_ERROR(options.export_feed->Final(*model, clocks).WithContext("final export"));
  }

  // Holdout: each worker scores its shard; worker 0 gathers (in file order).
  ScoredSet holdout;
  if (!holdout_files.empty()) {
    FRESHET_ASSIGN_OR_RETURN(std::vector<FileRange> ranges, SplitFiles(holdout_files, me, n));
    FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<ExampleReader> reader,
                             ExampleReader::Open(std::move(ranges), policy));
    FRESHET_RETURN_IF_ERROR(trainer->Score(reader.get(), &holdout));
  }
  std::string all_holdout, all_progressive;
  const std::string mine = holdout.Serialize();
  FRESHET_RETURN_IF_ERROR(workers->GatherBytes(mine.data(), mine.size(), &all_holdout));
  const std::string prog = result.train.progressive.Serialize();
  FRESHET_RETURN_IF_ERROR(workers->GatherBytes(prog.data(), prog.size(), &all_progressive));
  if (leader) {
    FRESHET_ASSIGN_OR_RETURN(ScoredSet h, ScoredSet::ParseAll(all_holdout));
    FRESHET_ASSIGN_OR_RETURN(ScoredSet p, ScoredSet::ParseAll(all_progressive));
    result.holdout = Evaluate(h.probs, h.labels, h.users, h.oracle);
    result.progressive = Evaluate(p.probs, p.labels, p.users, p.oracle);
    // Item-popularity baseline on the same holdout, for reference.
    bool has_item = false;
    for (const auto& c : columns) has_item = has_item || c == "item";
    if (has_item && holdout_files.size() == 1 && train_files.size() == 1) {
      auto pop = ItemPopularityScores(train_files[0], holdout_files[0], "item");
      if (pop.ok() && pop->size() == h.labels.size()) result.popularity_auc = Auc(*pop, h.labels);
    }
    // Ranking metrics for tasks that ship groups of 1 positive + 99 negatives.
    const std::string ranking = job.work_dir() + "/holdout_ranking.examples";
    struct stat st;
    if (!job.task().empty() && stat(ranking.c_str(), &st) == 0) {
      FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<ExampleReader> reader,
                               ExampleReader::OpenFiles({ranking}, policy));
      ScoredSet r;
      FRESHET_RETURN_IF_ERROR(trainer->Score(reader.get(), &r));
      result.ranking_groups = static_cast<int64_t>(r.probs.size() / 100);
      RankingMetrics(r.probs, 100, 10, &result.hr10, &result.ndcg10);
    }
    if (options.save_model) {
      FRESHET_RETURN_IF_ERROR(MakeDirs(job.model_dir()));
      FRESHET_RETURN_IF_ERROR(SaveDense(*model, job.model_dir() + "/dense.bin"));
      FRESHET_RETURN_IF_ERROR(SaveDenseOptimizer(*model, job.model_dir() + "/dense_opt.bin"));
      std::string text;
      google::protobuf::TextFormat::PrintToString(job, &text);
      std::ofstream(job.model_dir() + "/job.pbtxt") << text;
      if (options.tables != nullptr) {
        FRESHET_RETURN_IF_ERROR(options.tables->Save(job.model_dir()));
      }
    }
  }
  FRESHET_RETURN_IF_ERROR(workers->Barrier());
  return result;
}

}  // namespace freshet
