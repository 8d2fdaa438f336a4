// ExportFeed: what a training job hands to the exporter (exporter/exporter_node.h):
// every worker's clocks after each step (the exporter exports the minimum
// watermark), worker 0's dense parameters after each step, and worker 0's
// final model once training ended. RunWorkerJob (worker/job_runner.h) calls
// it; freshet_train gives one that sends WATERMARK, DENSE_UPDATE and
// EXPORT_FINAL messages to the exporter rank (apps/train/train_wiring.h);
// tests may give one that records the calls. A job without an exporter
// gives none.
//
// Thread safety: called from one thread (the worker's training thread).
#pragma once

#include "common/ps_wire.h"
#include "common/status.h"
#include "model/model.h"

namespace freshet {

class ExportFeed {
 public:
  virtual ~ExportFeed() = default;

  // Every worker, after each of its training steps: the step, its
  // watermark (newest event time trained, unix s) and its freshness clocks
  // (newest read time and label-known time trained, unix ms; see
  // Trainer::Options::after_step). Called on the training path: cheap
  // (implementations send at most every so often); failures are theirs to
  // log.
  virtual void Watermark(const TrainingClocks& clocks) = 0;

  // Worker 0, after each of its training steps (after Watermark): the
  // model's dense parameters and worker 0's clocks. As cheap as Watermark.
  virtual void Dense(const Model& model, const TrainingClocks& clocks) = 0;

  // Worker 0, once, after training ended (and any best pass was restored),
  // before the holdout scoring: the final model, with worker 0's last step
  // and the minimum over the workers that trained anything (watermark > 0)
  // of their final watermarks, and of their final freshness clocks that
  // are known (> 0; 0 where none is). An error fails the job ("final
  // export").
  [[nodiscard]] virtual Status Final(const Model& model, const TrainingClocks& clocks) = 0;
};

}  // namespace freshet
