// Test helpers for serving/: a tiny DeepFM job, random model states published
// with ExportWriter, and the trainer's own forward pass (Trainer::Score over a
// LocalSparseStore) as the reference serving must match.
//
// Thread safety: plain functions; a TempDir is used by one thread.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/proto/job.pb.h"
#include "common/status.h"
#include "exporter/export_dir.h"
#include "model/example.h"

namespace freshet {
namespace serving_testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents by
// the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A validated DEEPFM job (emb dim 4, hidden [8, 4]) with columns
//   user   slot (NONE)
//   item   slot (NONE)
//   query  slot, multi-valued, MEAN
//   tags   slot, multi-valued, SUM
//   price  slot price_bucket (BOUNDARIES 1, 10, 100) and dense price_log
//          (LOG1P): two features reading one column
//   age    dense (IDENTITY)
// Tables: wide (dim 1, UNIFORM 0.05) and emb (dim 4, NORMAL 0.1).
proto::JobConfig TinyJob();

// Model parameters: dense params and rows by table name.
struct State {
  std::vector<float> dense;
  std::map<std::string, std::map<uint64_t, std::vector<float>>> rows;
};

// A state for `job`: the model's initial dense params plus noise (so biases
// and dense weights are not zero), and rows with random values for
// `keep_fraction` of the distinct keys `examples` (aligned with `columns`)
// encode to, in every table a slot reads. The other keys stay missing (the
// initializer path).
State RandomState(const proto::JobConfig& job, const std::vector<std::string>& columns,
                  const std::vector<Example>& examples, double keep_fraction, std::mt19937* rng);

// A full snapshot of `state` at `version`.
Snapshot FullSnapshot(const proto::JobConfig& job, const State& state, uint64_t version);
// A delta from `before` to `after` (changed or new rows, deleted rows; the
// dense params when they differ).
Snapshot DeltaSnapshot(const proto::JobConfig& job, const State& before, const State& after,
                       uint64_t version);

// Trainer::Score over a LocalSparseStore holding `state` (rows Upserted into
// a ParameterShard; missing keys are created by the pull, as in training),
// with the state's dense params and `examples` written to an example file
// with header `columns` in `dir`. Returns the probabilities of the head
// serving returns (ServingHead, model/model.h; a multi-task model's file
// also gets its label columns, which the scores do not depend on).
StatusOr<std::vector<float>> ReferenceScores(const proto::JobConfig& job, const State& state,
                                             const std::vector<std::string>& columns,
                                             const std::vector<Example>& examples,
                                             const std::string& dir);

// Random examples over `columns` (TinyJob's, in the given order): tokens
// from small vocabularies plus some never-seen ones, multi-valued columns
// with 0-3 tokens, a few empty values.
std::vector<Example> RandomExamples(const std::vector<std::string>& columns, int n,
                                    std::mt19937* rng);

// Writes `m` as manifest-<m.version()>.pb in `dir` and points LATEST at it
// (for publishing hand-made, e.g. corrupt, exports).
Status WriteManifestAndLatest(const std::string& dir, const proto::ExportManifest& m);

}  // namespace serving_testing
}  // namespace freshet
