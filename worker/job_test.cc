#include "worker/job.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "worker/data/internal/test_util.h"
#include "worker/data/task.h"

namespace freshet {
namespace {

const char* kTables = R"(
  tables { tables { name: "wide" dim: 1 optimizer { sgd { learning_rate: 0.1 } } }
           tables { name: "emb" dim: 4 optimizer { sgd { learning_rate: 0.1 } } }
           tables { name: "emb8" dim: 8 optimizer { sgd { learning_rate: 0.1 } } } }
)";

StatusOr<proto::JobConfig> Parse(const std::string& body) {
  return ParseJobConfig(std::string(kTables) + body, "job.pbtxt");
}

TEST(JobConfigTest, DefaultsAreFilled) {
  auto job = Parse(R"(
    name: "j" task: "synthetic"
    features { slots { name: "user" table: "emb" } }
    model { kind: DEEPFM wide_table: "wide" hidden: [8] })");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->batch_size(), 512);
  EXPECT_EQ(job->epochs(), 1);
  EXPECT_EQ(JobStaleness(*job), -1);
  EXPECT_EQ(job->work_dir(), "out/synthetic");
  EXPECT_EQ(job->model_dir(), "out/synthetic/model");
  EXPECT_FLOAT_EQ(job->model().dense_learning_rate(), 0.001f);
}

TEST(JobConfigTest, ErrorsNameTheField) {
  auto wide = Parse(R"(task: "t" features { slots { name: "a" table: "emb" } }
                       model { wide_table: "emb" })");
  EXPECT_EQ(wide.status().message(),
            "job.pbtxt: model.wide_table: table 'emb' must have dim 1, has 4");
  auto dims = Parse(R"(task: "t"
    features { slots { name: "a" table: "emb" } slots { name: "b" table: "emb8" } }
    model { kind: DEEPFM wide_table: "wide" })");
  EXPECT_NE(dims.status().message().find("features.slots[1].table: DEEPFM slots must share one "
                                         "embedding dim"),
            std::string::npos)
      << dims.status();
  auto dup = Parse(R"(task: "t"
    features { slots { name: "a" table: "emb" } slots { name: "a" table: "emb" } }
    model { wide_table: "wide" })");
  EXPECT_EQ(dup.status().message(), "job.pbtxt: features.slots[1].name: duplicate slot name 'a'");
  auto nodata = Parse(R"(features { slots { name: "a" } } model { wide_table: "wide" })");
  EXPECT_EQ(nodata.status().message(),
            "job.pbtxt: data.train_files: needs files when no task is named");
  auto stale = Parse(R"(task: "t" staleness: -3 features { slots { name: "a" } }
                        model { wide_table: "wide" })");
  EXPECT_EQ(stale.status().message(), "job.pbtxt: staleness: must be >= -1, got -3");
  // Sub-second exports are fine down to 0.1 s.
  auto fast = Parse(R"(task: "t" features { slots { name: "a" } } model { wide_table: "wide" }
                       export { interval_s: 0.25 })");
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_FLOAT_EQ(fast->export_().interval_s(), 0.25f);
  auto too_fast = Parse(R"(task: "t" features { slots { name: "a" } } model { wide_table: "wide" }
                           export { interval_s: 0.05 })");
  EXPECT_NE(too_fast.status().message().find("export.interval_s: must be 0 (default: 1 s) or at "
                                             "least 0.1 s"),
            std::string::npos)
      << too_fast.status();
  // Label columns (model/example.h) are never features.
  auto leak = Parse(R"(task: "t" features { slots { name: "a" } slots { name: "label:buy" } }
                       model { wide_table: "wide" })");
  EXPECT_EQ(leak.status().message(),
            "job.pbtxt: features.slots[1].name: 'label:buy' is a label column: a feature "
            "reading it trains on the label");
  auto leak_col = Parse(R"(task: "t" features { slots { name: "a" }
                                                dense { name: "d" column: "label:x" } }
                           model { wide_table: "wide" })");
  EXPECT_EQ(leak_col.status().message(),
            "job.pbtxt: features.dense[0].column: 'label:x' is a label column: a feature "
            "reading it trains on the label");
  auto syntax = ParseJobConfig("name: \"x\"\nbatch_size: lots\n", "s.pbtxt");
  EXPECT_NE(syntax.status().message().find("s.pbtxt:2:"), std::string::npos) << syntax.status();
}

TEST(JobConfigTest, StreamSectionDefaultsAndErrors) {
  auto job = Parse(R"(stream { dir: "s" } features { slots { name: "a" } }
                      model { wide_table: "wide" })");
  ASSERT_TRUE(job.ok()) << job.status();  // no data files needed
  EXPECT_TRUE(IsStreamingJob(*job));
  ASSERT_EQ(job->stream().label_events_size(), 1);
  EXPECT_EQ(job->stream().label_events(0), "click");
  EXPECT_FLOAT_EQ(job->stream().window_s(), 30);
  EXPECT_FLOAT_EQ(job->stream().early_hold_s(), 30);
  EXPECT_EQ(job->stream().max_pending(), 1000000);
  EXPECT_EQ(job->stream().max_batch_delay_ms(), 200);
  auto kind = Parse(R"(stream { dir: "s" label_events: "view" } features { slots { name: "a" } }
                       model { wide_table: "wide" })");
  EXPECT_EQ(kind.status().message(),
            "job.pbtxt: stream.label_events[0]: 'view' is not click, cart, fav or buy");
  auto window = Parse(R"(stream { dir: "s" window_s: -1 } features { slots { name: "a" } }
                         model { wide_table: "wide" })");
  EXPECT_EQ(window.status().message(), "job.pbtxt: stream.window_s: must be >= 0");
}

// Every job config the repository ships loads and validates (a new one is
// covered without listing it here).
TEST(JobConfigTest, ShippedJobConfigsLoad) {
  const std::string dir = std::string(FRESHET_SOURCE_DIR) + "/cluster-configs/jobs";
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".pbtxt") continue;
    auto job = LoadJobConfig(entry.path().string());
    EXPECT_TRUE(job.ok()) << entry.path() << ": " << job.status();
    ++n;
  }
  EXPECT_GE(n, 13) << "job configs in " << dir;
}

// Examples an older freshet built (other columns) are rebuilt, not reused:
// a job would otherwise miss a column the current task writes.
TEST(PrepareTaskDataTest, RebuildsExamplesWithOtherColumns) {
  testing_util::TempDir dir;
  const std::string data = dir.File("data");
  testing_util::WriteFile(data + "/taobao/UserBehavior_time_slice.csv",
                          "1,10,100,pv,1511600000\n1,10,100,buy,1511600100\n"
                          "2,10,100,pv,1511700000\n");
  testing_util::WriteFile(data + "/taobao/UserBehavior_815_users.csv", "3,11,100,pv,1511800000\n");
  const std::string work = dir.File("work");
  const std::string old_header = "#freshet-examples v1\tuser\titem\n";
  testing_util::WriteFile(work + "/train.examples", old_header);
  testing_util::WriteFile(work + "/holdout.examples", old_header);
  proto::JobConfig job;
  job.set_task("taobao-conversion");
  job.set_work_dir(work);
  ASSERT_TRUE(PrepareTaskData(&job, data, /*build=*/true).ok());
  auto header = [](const std::string& path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
  };
  std::string want = "#freshet-examples v1";
  for (const std::string& c : TaskExampleColumns("taobao-conversion")) want += "\t" + c;
  EXPECT_EQ(header(work + "/train.examples"), want);
  EXPECT_NE(want.find("\tlabel:buy"), std::string::npos);
  // Current examples are reused as they are (not rebuilt): a marker line
  // appended to them survives.
  std::ofstream(work + "/holdout.examples", std::ios::app) << "# marker\n";
  ASSERT_TRUE(PrepareTaskData(&job, data, /*build=*/true).ok());
  std::stringstream text;
  text << std::ifstream(work + "/holdout.examples").rdbuf();
  EXPECT_NE(text.str().find("# marker"), std::string::npos);
}

TEST(JobConfigTest, ValidationAndEarlyStopping) {
  const std::string base =
      R"(task: "t" features { slots { name: "a" } } model { wide_table: "wide" } )";
  auto ok = Parse(base + "data { validation_fraction: 0.1 } early_stopping { }");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->early_stopping().metric(), "auc");
  EXPECT_EQ(ok->early_stopping().patience(), 1);
  auto plain = Parse(base);
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->has_early_stopping());
  auto range = Parse(base + "data { validation_fraction: 0.7 }");
  EXPECT_EQ(range.status().message(),
            "job.pbtxt: data.validation_fraction: must be in [0, 0.5] (0: no validation split), "
            "got 0.700000");
  EXPECT_FALSE(Parse(base + "data { validation_fraction: -0.1 }").ok());
  auto no_split = Parse(base + "early_stopping { metric: \"auc\" }");
  EXPECT_NE(no_split.status().message().find("job.pbtxt: early_stopping: needs a validation split"),
            std::string::npos)
      << no_split.status();
  auto metric = Parse(base + "data { validation_fraction: 0.1 } early_stopping { metric: \"hr\" }");
  EXPECT_EQ(metric.status().message(),
            "job.pbtxt: early_stopping.metric: 'hr' is not auc, logloss or gauc");
  auto patience = Parse(base + "data { validation_fraction: 0.1 } early_stopping { patience: -1 }");
  EXPECT_EQ(patience.status().message(), "job.pbtxt: early_stopping.patience: must be >= 0");
  auto stream = Parse(base + "data { validation_fraction: 0.1 } stream { dir: \"s\" }");
  EXPECT_NE(stream.status().message().find("data.validation_fraction: is for file jobs"),
            std::string::npos)
      << stream.status();
}

// LAYERED models: every part checked against the slots and tables, errors
// naming the file and the field.
TEST(JobConfigTest, LayeredModelErrorsNameTheField) {
  const std::string slots = R"(task: "t"
    tables { tables { name: "wide" dim: 1 optimizer { sgd { learning_rate: 0.1 } } }
             tables { name: "emb" dim: 4 optimizer { sgd { learning_rate: 0.1 } } }
             tables { name: "emb8" dim: 8 optimizer { sgd { learning_rate: 0.1 } } }
             tables { name: "ffm" dim: 9 optimizer { sgd { learning_rate: 0.1 } } } }
    features { slots { name: "item" table: "emb" }
               slots { name: "recent" table: "emb" multi_valued: true }
               slots { name: "shop" table: "emb8" } })";
  auto parse = [](const std::string& text) { return ParseJobConfig(text, "job.pbtxt"); };
  auto ok = parse(slots + R"(model { kind: LAYERED wide_table: "wide" first_order: true
      interactions: [CROSS, FFM] cross_layers: 2 ffm_table: "ffm" hidden: [8]
      attention { sequence_slot: "recent" query_slot: "item" } })");
  EXPECT_TRUE(ok.ok()) << ok.status();
  auto expect = [&](const std::string& model, const std::string& message) {
    auto job = parse(slots + model);
    EXPECT_FALSE(job.ok()) << model;
    EXPECT_NE(job.status().message().find("job.pbtxt: " + message), std::string::npos)
        << job.status();
  };
  expect(R"(model { kind: LAYERED first_order: true hidden: [4]
      attention { sequence_slot: "shop" query_slot: "item" } })",
         "model.wide_table: is required");
  expect(R"(model { kind: LAYERED hidden: [4]
      attention { sequence_slot: "item" query_slot: "recent" } })",
         "model.attention.sequence_slot: slot 'item' is single-valued");
  expect(R"(model { kind: LAYERED hidden: [4]
      attention { sequence_slot: "recents" query_slot: "item" } })",
         "model.attention.sequence_slot: no slot named 'recents'");
  expect(R"(model { kind: LAYERED hidden: [4]
      attention { sequence_slot: "recent" query_slot: "shop" } })",
         "model.attention.query_slot: slot 'shop' has dim 8, the sequence slot 'recent' 4");
  expect(R"(model { kind: LAYERED interactions: [FFM] ffm_table: "emb8" })",
         "model.ffm_table: table 'emb8' has dim 8, must be num_slots * k (3 slots)");
  expect(R"(model { kind: LAYERED interactions: [FFM] })", "model.ffm_table: is required");
  expect(R"(model { kind: LAYERED interactions: [CROSS] cross_layers: -2 })",
         "model.cross_layers: must be >= 0, got -2");
  expect(R"(model { kind: LAYERED interactions: [FM] })",
         "features.slots[2].table: FM needs one embedding dim for every slot");
  expect(R"(model { kind: LAYERED hidden: [4] attention { sequence_slot: "recent"
      query_slot: "item" hidden: [0] } })",
         "model.attention.hidden[0]: must be > 0");
  expect(R"(model { kind: LAYERED })", "model: LAYERED needs at least one of");
  // Multi-task heads (ESMM).
  auto esmm = parse(slots + R"(model { kind: LAYERED hidden: [8] heads { name: "ctr" }
      heads { name: "ctcvr" label: "label:buy" multiply_by: "ctr" hidden: [4] } })");
  EXPECT_TRUE(esmm.ok()) << esmm.status();
  expect(R"(model { kind: LAYERED hidden: [8] heads { name: "ctr" multiply_by: "ctcvr" }
      heads { name: "ctcvr" label: "label:buy" multiply_by: "ctr" } })",
         "model.heads[0].multiply_by: no earlier head named 'ctcvr'");
  expect(R"(model { kind: LAYERED hidden: [8] heads { name: "ctr" }
      heads { name: "ctcvr" label: "buy" multiply_by: "ctr" } })",
         "model.heads[1].label: must be empty (the main label) or a label column");
  expect(R"(model { kind: LAYERED first_order: true wide_table: "wide"
      heads { name: "ctr" } })",
         "model.heads: the heads' towers read the deep part");
  expect(R"(model { kind: LR wide_table: "wide" heads { name: "ctr" } })",
         "model.heads: only LAYERED models have heads, this one is LR");
}

}  // namespace
}  // namespace freshet
