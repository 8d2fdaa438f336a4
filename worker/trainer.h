// Trainer: one worker's training loop over its shard of the examples.
//
// Per step: read and encode a batch; pull its embedding rows (grouped per
// table, one pull per table); forward (these pre-update scores are the
// progressive-validation scores); backward; push the sparse gradients
// asynchronously; all-reduce the dense gradient (weighted by each worker's
// batch size) and apply it; Clock().
//
// Gradient scales: the dense gradient is that of the batch-mean loss (the
// workers' batches weighted by size), but a sparse row gets the gradient of
// the batch's summed loss, i.e. the model's mean-loss row gradient times
// the batch size: each example that holds a key contributes its own
// dLoss/dlogit, as in per-example SGD. A row appears in few of a batch's
// examples, so a mean-loss gradient would shrink every row's gradient by
// the batch size: the table optimizer's learning rate, Adagrad's initial
// accumulator (0.1) and clip_norm would mean something different at every
// batch size, and at 256 Adagrad moved the rows at ~1/100 of its rate
// (issue 15: retail LR holdout AUC 0.74 instead of ~0.85). With staleness != 0 the next batch's
// pulls are issued before the current batch computes (prefetch); with
// staleness 0 they are issued after Clock(), so a step sees every earlier
// step's update and a 1-worker run equals the single-process reference.
//
// Workers with uneven shards keep stepping with empty batches until every
// worker is out of data (the all-reduce needs everyone), so all workers run
// the same number of steps. With live sources a worker may have an empty
// batch while its source has not ended: the all-reduce also counts the
// workers whose source is still open, and training ends only when every
// worker's source ended and every batch is empty (steps with no examples
// anywhere apply no dense update).
//
// Thread safety: one thread drives a Trainer.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/collective.h"
#include "common/proto/job.pb.h"
#include "common/sparse_store.h"
#include "model/features.h"
#include "model/model.h"
#include "worker/data/example_io.h"
#include "worker/metrics.h"
#include "worker/train_monitor.h"

namespace freshet {

// Scores of an evaluation set, with what metrics need. probs and labels are
// the model's first (main) head's.
struct ScoredSet {
  std::vector<float> probs, labels, oracle;
  std::vector<uint64_t> users;
  // Multi-task models (ModelHeads, model/model.h): heads[k - 1] for head
  // k >= 1, aligned with probs: its probability (multiply_by applied), its
  // own sigmoid and its labels. Empty for one-head models and for the
  // progressive scores.
  struct Head {
    std::vector<float> probs, own, labels;
  };
  std::vector<Head> heads;
  void Append(const ScoredSet& other);
  std::string Serialize() const;
  // Parses a concatenation of Serialize() outputs.
  static StatusOr<ScoredSet> ParseAll(const std::string& bytes);
};

struct TrainStats {
  int64_t steps = 0;
  int64_t examples = 0;  // this worker
  int64_t global_examples = 0;
  int64_t bad_records = 0;  // this worker: reader + encoder
  double seconds = 0;
  // Time split of this worker's loop, seconds.
  double read_s = 0, pull_s = 0, compute_s = 0, push_s = 0, allreduce_s = 0;
  ScoredSet progressive;       // pre-update scores of the first epoch's examples
  int epochs = 0;              // passes completed (after_epoch called)
  bool stopped_early = false;  // after_epoch asked to stop
};

// Opens this worker's examples: an ExampleReader over its shard of the files,
// or a live stream (worker/stream/stream_source.h).
using ReaderFactory = std::function<StatusOr<std::unique_ptr<ExampleSource>>()>;

class Trainer {
 public:
  struct Options {
    int batch_size = 512;
    int epochs = 1;
    int staleness = -1;
    double status_interval_s = 2.0;
    bool print_status = false;  // the leader prints status lines
    // > 0: stop once the step counter (which starts at start_step) reaches
    // this; a restored job given the same value stops at the same step.
    int64_t max_steps = 0;
    int max_pending_pushes = 4;
    // Sum the dense gradients in GPU memory where the model keeps them
    // there and the collective sums device memory (NCCL); false: always
    // through host memory (worker/dense_reduce.h). Same sums either way.
    bool dense_allreduce_on_device = true;
    // Called after every step (on the training thread) with the step count,
    // the newest event time trained so far (unix s) and this worker's two
    // freshness clocks (wall time, unix ms; docs/METRICS.md "Freshness"):
    //   ingest_wall_ms: the newest Example::read_unix_ms of the examples
    //     whose pushes the servers have applied (a step's clocks advance
    //     only once its pushes, and every earlier one, are applied; with
    //     max_pending_pushes in flight that lags the step a little): the
    //     servers' tables include what this worker read up to then;
    //   label_wall_ms: the newest Example::label_unix_ms applied so far.
    // Both never go back. A step in which this worker trained no example
    // (its source had nothing: a quiet stream, or its shard is done) sets
    // both to at least the time that empty batch was cut: everything the
    // worker had read by then is in the model. Examples with unknown times
    // (0) do not move them. What the exporter needs to report freshness.
    // May be empty.
    std::function<void(int64_t step, int64_t watermark, int64_t ingest_wall_ms,
                       int64_t label_wall_ms)>
        after_step;
    // Where to count steps, examples, loss, AUC and the time split
    // (worker/train_monitor.h); not owned, outlives the trainer. May be null.
    MetricsRegistry* metrics = nullptr;
    // Live sources: a batch is cut after this many ms even when not full (an
    // empty batch when nothing came), so workers keep stepping together and
    // fresh examples are trained on soon. 0: wait for full batches.
    int max_batch_delay_ms = 0;
    // Examples in the sliding window of the status lines' progressive AUC.
    int progressive_window = 50000;
    // > 0: TrainStats::progressive keeps only about the newest this many
    // examples (between this and twice this), so an endless stream does
    // not grow memory. 0: all.
    size_t max_progressive = 0;
    // Appended to every status line (e.g. join counters, watermark, lag).
    std::function<std::string()> status_extra;
    // > 0 with `checkpoint` set: every this many steps, after the step's
    // dense update and clock, the trainer waits until every push it sent
    // is acknowledged (applied by its server) and calls checkpoint(step).
    // Workers step in lockstep, so every worker calls it at the same step:
    // the consistent cut (worker/checkpoint.h). An error ends training.
    int64_t checkpoint_every_steps = 0;
    std::function<Status(int64_t step)> checkpoint;
    // Restored jobs: the step counter starts at start_step (steps, and so
    // checkpoint steps, continue the restored job's) and training starts
    // at epoch start_epoch (0-based; open_shard is then first called for
    // that epoch, and the caller opens what is left of it).
    int64_t start_step = 0;
    int start_epoch = 0;
    // Called after every step (after Clock(), before after_step and the
    // checkpoint callback, on the training thread) with the 0-based epoch and the
    // input the step's own batch consumed (ExampleSource::TakeConsumed of
    // the reads that filled it; never the prefetched next batch's). So at
    // a checkpoint at step k the calls so far describe exactly the input of
    // steps 1..k. An error ends training. May be empty.
    std::function<Status(int epoch, const ConsumedInput& input)> after_batch;
    // Called at the end of every complete pass over the data (not when
    // max_steps cuts one short), on every worker at the same step (workers
    // leave a pass together), after every push of this worker was
    // acknowledged (applied), with the 0-based epoch. Returns true to stop
    // training now: every worker must answer alike (the caller decides
    // collectively, e.g. worker 0 decides and all-reduces). An error ends
    // training. May be empty.
    std::function<StatusOr<bool>(int epoch)> after_epoch;
  };

  // Not owned; all must outlive the trainer. `tables` gives table ids by
  // name (index in the job's tables). REQUIRES: the job passed
  // ValidateJobConfig and the model was created for encoder's shape.
  static StatusOr<std::unique_ptr<Trainer>> Create(const proto::JobConfig& job,
                                                   const FeatureEncoder* encoder, Model* model,
                                                   SparseStore* store, Collective* collective,
                                                   Options options);

  // Trains; `open_shard` opens this worker's training shard or stream
  // (called once per epoch).
  StatusOr<TrainStats> Train(const ReaderFactory& open_shard);
  // This worker's freshness clocks (Options::after_step) after Train
  // returned: every push applied, so they cover everything it trained.
  int64_t read_wall_ms() const { return read_wall_ms_; }
  int64_t label_wall_ms() const { return label_wall_ms_; }
  // Scores every example of `reader` with the current parameters (pulls
  // only, no updates); every head of a multi-task model (ScoredSet::heads).
  Status Score(ExampleReader* reader, ScoredSet* out);

 private:
  struct Step;  // per-batch buffers
  Trainer(const FeatureEncoder* encoder, Model* model, SparseStore* store, Collective* collective,
          Options options);
  // Reads up to batch_size good examples; encoder failures count as bad
  // records under the reader's policy.
  Status ReadBatch(ExampleSource* reader, Step* step, bool* eof);
  void IssuePulls(Step* step);
  Status WaitPulls(Step* step);
  void BuildInput(Step* step);

  const FeatureEncoder* encoder_;
  Model* model_;
  SparseStore* store_;
  Collective* collective_;
  const Options options_;
  // Row roles of a slot's keys, as ModelInput has them: wide, emb, ffm.
  static constexpr int kRoles = 3;
  std::vector<int> dims_;                             // per table id
  std::vector<std::array<int, kRoles>> slot_tables_;  // [slot][role]: table id, -1: none
  std::vector<int> tables_used_;                      // distinct table ids pulled per batch
  std::map<int, size_t> table_pos_;                   // table id -> index in tables_used_
  BadRecordPolicy policy_;
  std::vector<ModelHead> heads_;              // the model's heads (ModelHeads)
  std::vector<float> head_probs_, head_own_;  // Score's scratch
  int64_t encode_bad_ = 0;
  int64_t watermark_ = 0;  // newest event time trained
  // Freshness clocks (Options::after_step), unix ms.
  int64_t read_wall_ms_ = 0, label_wall_ms_ = 0;
  std::unique_ptr<TrainMetrics> metrics_;  // when options.metrics is set
};

}  // namespace freshet
