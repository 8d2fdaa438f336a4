// RunWorkerJob (worker/job_runner.h) in one process through its two seams:
// the tables through ShardTableCheckpointer (what `freshet_train --local`
// uses), the exporter feed through a recording ExportFeed. Checks what the
// job hands each seam: every step's clocks, the final model and watermark,
// periodic checkpoints (full and incremental), the best pass's tables, the
// saved model; and that jobs needing a table checkpointer refuse to start
// without one.
#include "apps/train/train_wiring.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/collective.h"
#include "server/local_sparse_store.h"
#include "server/parameter_shard.h"
#include "server/table_io.h"
#include "worker/checkpoint.h"
#include "worker/data/example_io.h"
#include "worker/data/internal/test_util.h"
#include "worker/dense_file.h"
#include "worker/job.h"
#include "worker/job_runner.h"

namespace freshet {
namespace {

using testing_util::Exists;
using testing_util::TempDir;

constexpr int64_t kT0 = 1700000000;  // first example's event time (unix s)

// `n` examples, one per second from kT0 + first, over columns item and cat;
// the label follows the item, so there is something to learn.
void WriteExamples(const std::string& path, int first, int n) {
  auto w = ExampleWriter::Open(path, {"item", "cat"});
  ASSERT_TRUE(w.ok()) << w.status();
  for (int i = first; i < first + n; ++i) {
    Example ex;
    ex.time = kT0 + i;
    ex.user = "u" + std::to_string(i % 7);
    ex.label = (i * 7919) % 3 == 0 ? 1.0f : 0.0f;
    ex.values = {"i" + std::to_string((i * 7919) % 30), "c" + std::to_string(i % 4)};
    ASSERT_TRUE((*w)->Write(ex).ok());
  }
  ASSERT_TRUE((*w)->Close().ok());
}

// The test job over <dir>/train.examples and holdout.examples; `extra`:
// more job fields, `validation`: data.validation_fraction.
proto::JobConfig Job(const std::string& dir, const std::string& extra, double validation = 0) {
  std::string text = "name: 'wiring' batch_size: 8 epochs: 2 staleness: 0\n";
  text += "work_dir: '" + dir + "' model_dir: '" + dir + "/model'\n";
  text += "data { train_files: '" + dir + "/train.examples' holdout_files: '" + dir +
          "/holdout.examples' validation_fraction: " + std::to_string(validation) + " }\n";
  text += R"(
    tables { tables { name: "wide" dim: 1 optimizer { sgd { learning_rate: 0.1 } } }
             tables { name: "emb" dim: 4 optimizer { adagrad { learning_rate: 0.1 } } } }
    features { slots { name: "item" table: "emb" } slots { name: "cat" table: "emb" } }
    model { kind: DEEPFM wide_table: "wide" hidden: [8] }
  )";
  auto job = ParseJobConfig(text + extra, "job.pbtxt");
  EXPECT_TRUE(job.ok()) << job.status();
  return job.ok() ? *job : proto::JobConfig();
}

// Records what the job hands the exporter.
class RecordingFeed : public ExportFeed {
 public:
  void Watermark(const TrainingClocks& c) override { watermarks.push_back(c); }
  void Dense(const Model& model, const TrainingClocks& c) override {
    dense.push_back(c);
    EXPECT_GT(model.NumDenseParams(), 0u);
  }
  Status Final(const Model& model, const TrainingClocks& c) override {
    finals.push_back(c);
    final_dense.assign(model.dense_params(), model.dense_params() + model.NumDenseParams());
    return Status::OK();
  }
  std::vector<TrainingClocks> watermarks, dense, finals;
  std::vector<float> final_dense;
};

struct LocalJob {
  std::unique_ptr<ParameterShard> shard;
  std::unique_ptr<LocalSparseStore> store;
  LocalCollective collective;
  std::unique_ptr<ShardTableCheckpointer> tables;

  explicit LocalJob(const proto::JobConfig& job) {
    shard = std::move(ParameterShard::Create(job.tables(), 4)).value();
    store = std::make_unique<LocalSparseStore>(shard.get());
    tables = std::make_unique<ShardTableCheckpointer>(shard.get());
  }
};

RunOptions Quiet() {
  RunOptions o;
  o.print_status = false;
  return o;
}

TEST(TrainWiringTest, ExportFeedGetsEveryStepAndTheFinalModel) {
  TempDir dir;
  WriteExamples(dir.File("train.examples"), 0, 160);
  WriteExamples(dir.File("holdout.examples"), 160, 40);
  const proto::JobConfig job = Job(dir.path(), "");
  LocalJob local(job);
  RecordingFeed feed;
  RunOptions o = Quiet();
  o.tables = local.tables.get();
  o.export_feed = &feed;
  auto r = RunWorkerJob(job, local.store.get(), &local.collective, o);
  ASSERT_TRUE(r.ok()) << r.status();

  // 160 examples, batch 8, 2 epochs: 40 steps, each reported once to both.
  EXPECT_EQ(r->train.steps, 40);
  ASSERT_EQ(feed.watermarks.size(), 40u);
  ASSERT_EQ(feed.dense.size(), 40u);
  for (size_t i = 0; i < feed.watermarks.size(); ++i) {
    EXPECT_EQ(feed.watermarks[i].step, static_cast<int64_t>(i + 1));
    EXPECT_EQ(feed.dense[i].step, feed.watermarks[i].step);
    EXPECT_EQ(feed.dense[i].watermark, feed.watermarks[i].watermark);
  }
  // The watermark is the newest event time trained: the last training
  // example's by the end of the first pass.
  EXPECT_EQ(feed.watermarks[19].watermark, kT0 + 159);
  ASSERT_EQ(feed.finals.size(), 1u);
  EXPECT_EQ(feed.finals[0].step, 40);
  EXPECT_EQ(feed.finals[0].watermark, kT0 + 159);
  EXPECT_EQ(r->final_watermark, kT0 + 159);

  // The final export is the model that was saved.
  auto saved = ReadDenseParams(job.model_dir() + "/dense.bin");
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(*saved, feed.final_dense);
  EXPECT_TRUE(Exists(job.model_dir() + "/" + ShardFileName(0, 1)));
  EXPECT_TRUE(Exists(job.model_dir() + "/job.pbtxt"));
  EXPECT_GT(r->holdout.examples, 0);
}

TEST(TrainWiringTest, CheckpointsAlternateFullAndIncremental) {
  TempDir dir;
  WriteExamples(dir.File("train.examples"), 0, 160);
  WriteExamples(dir.File("holdout.examples"), 160, 40);
  const proto::JobConfig job = Job(dir.path(), "");
  LocalJob local(job);
  RunOptions o = Quiet();
  o.tables = local.tables.get();
  o.save_model = false;
  o.checkpoint.dir = dir.File("ckpt");
  o.checkpoint.interval_steps = 10;
  o.checkpoint.keep = 0;
  o.checkpoint.full_every = 2;
  auto r = RunWorkerJob(job, local.store.get(), &local.collective, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->checkpoints, 4);  // steps 10, 20, 30, 40
  auto latest = LatestCheckpointId(o.checkpoint.dir);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(*latest, 4);
  for (int64_t id = 1; id <= 4; ++id) {
    auto m = VerifyCheckpoint(CheckpointDir(o.checkpoint.dir, id));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->step, 10 * id);
    // Every second one holds only the rows changed since its parent.
    EXPECT_EQ(m->parent, id % 2 == 0 ? id - 1 : 0) << "checkpoint " << id;
    EXPECT_TRUE(Exists(CheckpointDir(o.checkpoint.dir, id) + "/" + ShardFileName(0, 1)));
  }
  auto chain = ResolveRestoreChain(o.checkpoint.dir);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(chain->size(), 2u);                          // ckpt-3 (full), ckpt-4
  EXPECT_FALSE(Exists(job.model_dir() + "/dense.bin"));  // save_model = false
}

// With early stopping every improving pass's tables go to
// <work_dir>/best-pass through the checkpointer and the kept pass is
// reported; the directory is gone afterwards.
TEST(TrainWiringTest, EarlyStoppingKeepsAPassThroughTheCheckpointer) {
  TempDir dir;
  WriteExamples(dir.File("train.examples"), 0, 200);
  WriteExamples(dir.File("holdout.examples"), 200, 40);
  proto::JobConfig j = Job(dir.path(), "early_stopping { patience: 1 metric: \"logloss\" }", 0.2);
  j.set_epochs(4);
  LocalJob local(j);
  RecordingFeed feed;
  RunOptions o = Quiet();
  o.tables = local.tables.get();
  o.export_feed = &feed;
  auto r = RunWorkerJob(j, local.store.get(), &local.collective, o);
  ASSERT_TRUE(r.ok()) << r.status();
  // The last fifth by time (the float fraction rounds the cut to 41).
  EXPECT_EQ(r->validation_examples + r->validation_train_examples, 200);
  EXPECT_NEAR(r->validation_examples, 40, 1);
  ASSERT_EQ(static_cast<int>(r->validation.size()), r->train.epochs);
  EXPECT_GE(r->best_pass, 1);
  EXPECT_LE(r->best_pass, r->train.epochs);
  EXPECT_EQ(r->model_pass, r->best_pass);
  EXPECT_FALSE(Exists(dir.File("best-pass")));
  // Training never read the validation examples (time >= the cut).
  ASSERT_EQ(feed.finals.size(), 1u);
  EXPECT_EQ(feed.finals[0].watermark, kT0 + r->validation_train_examples - 1);
  EXPECT_EQ(r->validation_time, kT0 + r->validation_train_examples);
}

TEST(TrainWiringTest, JobsThatSaveTablesNeedATableCheckpointer) {
  TempDir dir;
  WriteExamples(dir.File("train.examples"), 0, 80);
  WriteExamples(dir.File("holdout.examples"), 80, 20);
  {
    const proto::JobConfig job = Job(dir.path(), "");
    LocalJob local(job);
    RunOptions o = Quiet();
    o.checkpoint.dir = dir.File("ckpt");
    o.checkpoint.interval_steps = 5;
    auto r = RunWorkerJob(job, local.store.get(), &local.collective, o);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status();
    EXPECT_NE(r.status().message().find("checkpoints need a table save"), std::string::npos);
  }
  {
    const proto::JobConfig job = Job(dir.path(), "early_stopping { patience: 1 }", 0.2);
    LocalJob local(job);
    auto r = RunWorkerJob(job, local.store.get(), &local.collective, Quiet());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status();
    EXPECT_NE(r.status().message().find("early_stopping"), std::string::npos) << r.status();
  }
}

// SaveChanged writes only the rows pushed since the previous save; Load
// puts the saved rows back and drops the rest.
TEST(TrainWiringTest, ShardTableCheckpointerSavesChangedRowsAndLoadsBack) {
  TempDir dir;
  const proto::JobConfig job = Job(dir.path(), "");
  LocalJob local(job);
  ParameterShard* shard = local.shard.get();
  ShardTableCheckpointer& tables = *local.tables;
  const int emb = 1;
  const uint32_t dim = 4;
  std::vector<float> w(dim), g(dim, 0.5f);
  auto pull = [&](uint64_t key) {
    ASSERT_TRUE(shard->HandlePull(emb, dim, &key, 1, w.data()).ok());
  };
  auto push = [&](uint64_t key) {
    ASSERT_TRUE(shard->HandlePush(emb, dim, &key, 1, g.data()).ok());
  };
  for (uint64_t k = 1; k <= 10; ++k) {
    pull(k);
    push(k);
  }
  std::filesystem::create_directories(dir.File("full"));
  std::filesystem::create_directories(dir.File("changed"));
  ASSERT_TRUE(tables.Save(dir.File("full")).ok());
  push(3);
  ASSERT_TRUE(tables.SaveChanged(dir.File("changed")).ok());
  const auto rows = [&](const std::string& d) {
    auto other = std::move(ParameterShard::Create(job.tables(), 4)).value();
    EXPECT_TRUE(ReplaceShardRows(d + "/" + ShardFileName(0, 1), other.get()).ok());
    return other->TotalTableStats().rows;
  };
  EXPECT_EQ(rows(dir.File("full")), 10);
  EXPECT_EQ(rows(dir.File("changed")), 1);
  pull(99);
  push(99);
  ASSERT_TRUE(tables.Load(dir.File("full")).ok());
  EXPECT_EQ(shard->TotalTableStats().rows, 10);
}

}  // namespace
}  // namespace freshet
