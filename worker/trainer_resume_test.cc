// What the trainer reports as consumed input: exactly the trained batches'
// (never the prefetched one's) at every checkpoint, for a live source's
// positions and for example files' byte intervals; restored step counters
// continue; and the freshness clocks it reports after each step are the
// trained examples' read and label times, not the batches' cut times.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <string>
#include <vector>

#include "common/collective.h"
#include "common/sparse_store.h"
#include "model/model_factory.h"
#include "server/local_sparse_store.h"
#include "server/parameter_shard.h"
#include "worker/data/input_intervals.h"
#include "worker/job.h"
#include "worker/trainer.h"

namespace freshet {
namespace {

constexpr char kJob[] = R"(
  name: "j" batch_size: 4 epochs: 1 staleness: -1 data { train_files: "unused" }
  tables { tables { name: "wide" dim: 1 optimizer { sgd { learning_rate: 0.1 } } }
           tables { name: "emb" dim: 4 optimizer { sgd { learning_rate: 0.1 } } } }
  features { slots { name: "item" table: "emb" } slots { name: "cat" table: "emb" } }
  model { kind: DEEPFM wide_table: "wide" hidden: [8] })";

// A live source of `n` examples whose position is the number returned.
// Thread safety: one thread.
class CountingSource : public ExampleSource {
 public:
  explicit CountingSource(int n) : n_(n) {}
  StatusOr<Outcome> Poll(Example* ex, std::chrono::steady_clock::time_point) override {
    if (returned_ >= n_) return Outcome::kEnd;
    ex->label = static_cast<float>(returned_ % 2);
    ex->time = 1000 + returned_;
    ex->user = "u";
    ex->oracle = -1;
    ex->values = {"i" + std::to_string(returned_), "c" + std::to_string(returned_ % 5)};
    ++returned_;
    ++stats_.lines;
    ++stats_.examples;
    return Outcome::kExample;
  }
  const ReadStats& stats() const override { return stats_; }
  void TakeConsumed(ConsumedInput* out) override { out->position = std::to_string(returned_); }
  int returned() const { return returned_; }

 private:
  const int n_;
  int returned_ = 0;
  ReadStats stats_;
};

struct Fixture {
  proto::JobConfig job;
  std::unique_ptr<FeatureEncoder> encoder;
  std::unique_ptr<Model> model;
  std::unique_ptr<ParameterShard> shard;
  std::unique_ptr<LocalSparseStore> store;
  LocalCollective collective;

  Fixture() {
    auto j = ParseJobConfig(kJob, "job.pbtxt");
    EXPECT_TRUE(j.ok()) << j.status();
    job = *j;
    encoder = std::move(FeatureEncoder::Create(job.features(), {"item", "cat"})).value();
    model = std::move(CreateJobModel(job, encoder->num_slots(), encoder->num_dense())).value();
    shard = std::move(ParameterShard::Create(job.tables(), 4)).value();
    store = std::make_unique<LocalSparseStore>(shard.get());
  }
  std::unique_ptr<Trainer> Make(Trainer::Options o) {
    return std::move(Trainer::Create(job, encoder.get(), model.get(), store.get(), &collective, o))
        .value();
  }
};

// With prefetching (staleness != 0) the source is one batch ahead of the
// tables at every checkpoint; the position the trainer reports is the end
// of the last trained batch.
TEST(TrainerResumeTest, CheckpointSeesTheLastTrainedBatchNotThePrefetchedOne) {
  Fixture f;
  CountingSource* source = nullptr;
  std::string last_position;
  std::vector<std::string> positions;
  int checkpoints = 0;
  Trainer::Options o;
  o.batch_size = 4;
  o.staleness = -1;
  o.checkpoint_every_steps = 3;
  o.after_batch = [&](int epoch, const ConsumedInput& in) {
    EXPECT_EQ(epoch, 0);
    EXPECT_TRUE(in.intervals.empty());
    last_position = in.position;
    positions.push_back(in.position);
    return Status::OK();
  };
  o.checkpoint = [&](int64_t step) {
    ++checkpoints;
    EXPECT_EQ(last_position, std::to_string(4 * step)) << "checkpoint at step " << step;
    // The reader is ahead: the next batch is already read (prefetch).
    EXPECT_EQ(source->returned(), 4 * (step + 1)) << "checkpoint at step " << step;
    return Status::OK();
  };
  auto trainer = f.Make(o);
  auto stats = trainer->Train([&]() -> StatusOr<std::unique_ptr<ExampleSource>> {
    auto s = std::make_unique<CountingSource>(40);
    source = s.get();
    return std::unique_ptr<ExampleSource>(std::move(s));
  });
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->steps, 10);
  EXPECT_EQ(checkpoints, 3);
  ASSERT_EQ(positions.size(), 10u);
  for (size_t i = 0; i < positions.size(); ++i)
    EXPECT_EQ(positions[i], std::to_string(4 * (i + 1)));
}

// Example files: the intervals reported per trained batch are whole lines
// whose record counts add up to the batch; at a checkpoint they cover
// exactly the examples trained. A restored trainer continues the step
// count and stops at the same max_steps.
TEST(TrainerResumeTest, FileIntervalsCoverExactlyTheTrainedLines) {
  Fixture f;
  // Under the test binary's scratch TMPDIR (removed when the tests end).
  std::string tmpl_path = ::testing::TempDir() + "freshet-resume-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl_path.data()), nullptr);
  const char* tmpl = tmpl_path.c_str();
  const std::string path = std::string(tmpl) + "/train.examples";
  {
    std::ofstream out(path);
    out << "#freshet-examples v1\titem\tcat\n";
    for (int k = 0; k < 50; ++k) {
      out << (k % 2) << "\t" << 1000 + k << "\tu\t\ti" << k << "\tc" << k % 3 << "\n";
    }
  }
  ConsumedSet consumed;
  int64_t records = 0;
  Trainer::Options o;
  o.batch_size = 4;
  o.staleness = -1;
  o.checkpoint_every_steps = 5;
  o.after_batch = [&](int, const ConsumedInput& in) {
    int64_t batch = 0;
    for (const auto& i : in.intervals) {
      EXPECT_EQ(i.file, 0);
      batch += i.records;
    }
    EXPECT_TRUE(batch == 4 || batch == 2) << batch;  // 50 = 12 * 4 + 2
    records += batch;
    AddConsumed(in.intervals, &consumed);
    return Status::OK();
  };
  o.checkpoint = [&](int64_t step) {
    EXPECT_EQ(records, 4 * step);
    // One contiguous interval from the first example line.
    EXPECT_EQ(consumed[0].intervals().size(), 1u);
    return Status::OK();
  };
  auto open = [&]() -> StatusOr<std::unique_ptr<ExampleSource>> {
    auto ranges = SplitFiles({path}, 0, 1);
    FRESHET_RETURN_IF_ERROR(ranges.status());
    FRESHET_ASSIGN_OR_RETURN(auto reader, ExampleReader::Open(*ranges, BadRecordPolicy()));
    return std::unique_ptr<ExampleSource>(std::move(reader));
  };
  o.max_steps = 10;
  auto stats = f.Make(o)->Train(open);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->steps, 10);
  ASSERT_EQ(consumed[0].intervals().size(), 1u);
  const uint64_t header = std::string("#freshet-examples v1\titem\tcat\n").size();
  EXPECT_EQ(consumed[0].intervals()[0].begin, header);

  // Restored at step 10 with what was consumed subtracted: the remaining
  // 10 examples train in steps 11..13 and nothing twice.
  std::vector<int64_t> steps;
  Trainer::Options r = o;
  r.max_steps = 0;
  r.start_step = 10;
  r.checkpoint = nullptr;
  r.checkpoint_every_steps = 0;
  r.after_step = [&](int64_t step, int64_t, int64_t, int64_t) { steps.push_back(step); };
  const ConsumedSet before = consumed;
  auto open_rest = [&]() -> StatusOr<std::unique_ptr<ExampleSource>> {
    auto ranges = SplitFiles({path}, 0, 1);
    FRESHET_RETURN_IF_ERROR(ranges.status());
    FRESHET_ASSIGN_OR_RETURN(
        auto reader, ExampleReader::Open(SubtractConsumed(*ranges, before), BadRecordPolicy()));
    return std::unique_ptr<ExampleSource>(std::move(reader));
  };
  auto rest = f.Make(r)->Train(open_rest);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->steps, 13);
  EXPECT_EQ(rest->examples, 10);
  EXPECT_EQ(steps, (std::vector<int64_t>{11, 12, 13}));
  EXPECT_EQ(records, 50);
  ASSERT_EQ(consumed[0].intervals().size(), 1u);  // the whole file, once
  std::ifstream in(path, std::ios::ate | std::ios::binary);
  EXPECT_EQ(consumed[0].intervals()[0].end, static_cast<uint64_t>(in.tellg()));
  std::remove(path.c_str());
  ::rmdir(tmpl);
}

// A live source that plays a script: examples with given read and label
// times, and kNotNow where the script has a gap (no example this batch).
class ScriptedSource : public ExampleSource {
 public:
  struct Item {
    bool gap = false;
    int64_t read_ms = 0, label_ms = 0;
  };
  explicit ScriptedSource(std::vector<Item> items) : items_(std::move(items)) {}
  StatusOr<Outcome> Poll(Example* ex, std::chrono::steady_clock::time_point) override {
    if (next_ >= items_.size()) return Outcome::kEnd;
    const Item& it = items_[next_++];
    if (it.gap) return Outcome::kNotNow;
    ex->label = static_cast<float>(next_ % 2);
    ex->time = 1000 + static_cast<int64_t>(next_);
    ex->user = "u";
    ex->oracle = -1;
    ex->values = {"i" + std::to_string(next_), "c" + std::to_string(next_ % 5)};
    ex->read_unix_ms = it.read_ms;
    ex->label_unix_ms = it.label_ms;
    ++stats_.lines;
    ++stats_.examples;
    return Outcome::kExample;
  }
  const ReadStats& stats() const override { return stats_; }

 private:
  const std::vector<Item> items_;
  size_t next_ = 0;
  ReadStats stats_;
};

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Each step reports the newest read and label times among the examples it
// trained (the newest is not the batch's last example here), not when the
// batch was cut (these times are long past); a step without examples moves
// both to that empty batch's cut time (everything read is in the model);
// they never go back.
TEST(TrainerResumeTest, ReportsNewestReadAndLabelTimesNotTheCutTime) {
  Fixture f;
  constexpr int64_t kBase = 1700000000000;  // 2023: long before the test runs
  std::vector<ScriptedSource::Item> script = {
      // batch 1: newest read is the first example, newest label the third
      {false, kBase + 40, kBase + 50},
      {false, kBase + 10, kBase + 20},
      {false, kBase + 30, kBase + 900},
      {false, kBase + 20, kBase + 30},
      // batch 2: newer reads, but an older label than batch 1's newest
      {false, kBase + 70, kBase + 80},
      {false, kBase + 90, kBase + 95},
      {false, kBase + 60, kBase + 65},
      {false, kBase + 80, kBase + 85},
      // batch 3: nothing came (a quiet stream)
      {true},
      // batch 4: old examples again (and one with unknown times)
      {false, kBase + 100, kBase + 110},
      {false, 0, 0},
      {false, kBase + 120, kBase + 130},
      {false, kBase + 110, kBase + 115}};
  struct Report {
    int64_t step, read_ms, label_ms;
  };
  std::vector<Report> reports;
  Trainer::Options o;
  o.batch_size = 4;
  o.staleness = -1;  // prefetch: the next batch is cut before a step reports
  o.max_batch_delay_ms = 1;
  o.after_step = [&](int64_t step, int64_t, int64_t read_ms, int64_t label_ms) {
    reports.push_back({step, read_ms, label_ms});
  };
  const int64_t started = WallMs();
  auto stats = f.Make(o)->Train([&]() -> StatusOr<std::unique_ptr<ExampleSource>> {
    return std::unique_ptr<ExampleSource>(std::make_unique<ScriptedSource>(script));
  });
  const int64_t ended = WallMs();
  ASSERT_TRUE(stats.ok()) << stats.status();
  ASSERT_EQ(reports.size(), 4u);
  EXPECT_EQ(reports[0].read_ms, kBase + 40);
  EXPECT_EQ(reports[0].label_ms, kBase + 900);
  EXPECT_EQ(reports[1].read_ms, kBase + 90);
  EXPECT_EQ(reports[1].label_ms, kBase + 900);  // never goes back
  // The empty batch: cut during Train().
  EXPECT_GE(reports[2].read_ms, started);
  EXPECT_LE(reports[2].read_ms, ended);
  EXPECT_GE(reports[2].label_ms, started);
  EXPECT_LE(reports[2].label_ms, ended);
  // Older examples after it do not move the clocks back.
  EXPECT_EQ(reports[3].read_ms, reports[2].read_ms);
  EXPECT_EQ(reports[3].label_ms, reports[2].label_ms);
}

// Applies pushes at once (through a LocalSparseStore) but answers them only
// when the test releases them: pushes still "on the wire".
class HeldPushStore : public SparseStore {
 public:
  explicit HeldPushStore(SparseStore* inner) : inner_(inner) {}
  std::future<Status> Pull(int table, const uint64_t* keys, size_t n, float* out) override {
    return inner_->Pull(table, keys, n, out);
  }
  std::future<Status> Push(int table, const uint64_t* keys, size_t n, const float* grads) override {
    EXPECT_TRUE(inner_->Push(table, keys, n, grads).get().ok());
    held_.emplace_back();
    return held_.back().get_future();
  }
  Status Clock() override { return inner_->Clock(); }
  void ReleaseAll() {
    for (auto& p : held_) p.set_value(Status::OK());
    held_.clear();
  }
  size_t held() const { return held_.size(); }

 private:
  SparseStore* inner_;
  std::vector<std::promise<Status>> held_;
};

// The clocks a step reports cover only examples whose pushes the servers
// have answered: the exporter's cut includes what those clocks claim. With
// every push of steps 1 and 2 unanswered, they report nothing; once those
// are answered, step 3 reports batch 2's newest times (its own pushes are
// still out); after training every push is answered and the trainer's
// final clocks are batch 3's.
TEST(TrainerResumeTest, ClocksAdvanceOnlyAsPushesAreApplied) {
  Fixture f;
  constexpr int64_t kBase = 1700000000000;
  std::vector<ScriptedSource::Item> script;
  for (int b = 0; b < 3; ++b) {
    for (int i = 0; i < 4; ++i) {
      const int64_t t = kBase + 100 * b + 10 * i;
      script.push_back({false, t, t + 5});
    }
  }
  HeldPushStore store(f.store.get());
  struct Report {
    int64_t step, read_ms, label_ms;
  };
  std::vector<Report> reports;
  Trainer::Options o;
  o.batch_size = 4;
  o.staleness = -1;
  o.max_pending_pushes = 100;  // never waits for them itself
  o.max_batch_delay_ms = 1;
  o.after_step = [&](int64_t step, int64_t, int64_t read_ms, int64_t label_ms) {
    reports.push_back({step, read_ms, label_ms});
    EXPECT_GT(store.held(), 0u) << "step " << step;
    if (step == 2 || step == 3) store.ReleaseAll();
  };
  auto trainer =
      std::move(Trainer::Create(f.job, f.encoder.get(), f.model.get(), &store, &f.collective, o))
          .value();
  auto stats = trainer->Train([&]() -> StatusOr<std::unique_ptr<ExampleSource>> {
    return std::unique_ptr<ExampleSource>(std::make_unique<ScriptedSource>(script));
  });
  ASSERT_TRUE(stats.ok()) << stats.status();
  ASSERT_EQ(reports.size(), 3u);
  EXPECT_EQ(reports[0].read_ms, 0);
  EXPECT_EQ(reports[1].read_ms, 0);
  EXPECT_EQ(reports[1].label_ms, 0);
  EXPECT_EQ(reports[2].read_ms, kBase + 130);  // batch 2's newest
  EXPECT_EQ(reports[2].label_ms, kBase + 135);
  EXPECT_EQ(trainer->read_wall_ms(), kBase + 230);  // batch 3's, after training
  EXPECT_EQ(trainer->label_wall_ms(), kBase + 235);
}

}  // namespace
}  // namespace freshet
