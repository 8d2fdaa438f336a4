// End-to-end training tests: real freshet_train processes under mpirun (and
// the single-process reference), on generated data and on the public
// datasets in ../shared/data. Each test runs the binaries, reads the JSON
// line worker 0 prints last, and checks the figures.
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <regex>
#include <string>

#include <gtest/gtest.h>

#include "tests/e2e_util.h"

#include "worker/data/example_io.h"
#include "worker/data/task.h"
#include "worker/metrics.h"

namespace freshet {
namespace {

const std::string kSrc = FRESHET_SOURCE_DIR;
const std::string kBin = FRESHET_BIN_DIR;
const std::string kData = FRESHET_SHARED_DATA_DIR;
const std::string kOut = FRESHET_TEST_OUT_DIR;

using e2e::CommandResult;
using e2e::Field;
using e2e::Mpirun;
using e2e::RunCommand;

std::string Train(const std::string& task, const std::string& work_dir, const std::string& extra) {
  return kBin + "/freshet_train --task=" + task + " --job_config=" + kSrc +
         "/cluster-configs/jobs/" + task + ".pbtxt --data_dir=" + kData + " --work_dir=" +
         kOut + "/" + work_dir + " " + extra;
}

// With one worker and staleness 0 the distributed job is the single-process
// reference step for step: every parameter agrees to 1e-5.
TEST(TrainE2eTest, OneWorkerStalenessZeroMatchesReference) {
  const std::string common = " --staleness=0 --max_steps=80 --epochs=1";
  CommandResult dist = RunCommand(Mpirun(2) + Train("synthetic", "parity", common) +
                        " --cluster_config=" + kSrc + "/cluster-configs/bench-1s1w.pbtxt" +
                        " --model_dir=" + kOut + "/parity/dist");
  ASSERT_EQ(dist.rc, 0) << dist.output;
  CommandResult ref = RunCommand(Train("synthetic", "parity", common) + " --local --model_dir=" + kOut +
                       "/parity/ref");
  ASSERT_EQ(ref.rc, 0) << ref.output;
  EXPECT_EQ(Field(dist.json, "steps"), 80);
  CommandResult diff = RunCommand(kBin + "/freshet_model_diff " + kOut + "/parity/dist " + kOut +
                        "/parity/ref --tolerance=1e-5");
  EXPECT_EQ(diff.rc, 0) << diff.output;
  EXPECT_NE(diff.output.find("MATCH"), std::string::npos) << diff.output;
  // The trained model really moved away from its initialization.
  EXPECT_LT(Field(dist.json, "holdout_logloss"), 0.45) << dist.json;
}

// Two workers pushing asynchronously through two servers: holdout AUC within
// 0.005 of the reference, and at least 97% of the oracle AUC.
TEST(TrainE2eTest, TwoAsyncWorkersReachReferenceAndOracle) {
  CommandResult ref = RunCommand(Train("synthetic", "async", "--local --save=false"));
  ASSERT_EQ(ref.rc, 0) << ref.output;
  CommandResult dist = RunCommand(Mpirun(5) + Train("synthetic", "async", "--cluster_config=" + kSrc +
                                                                    "/cluster-configs/local.pbtxt --metrics_port=0"));
  ASSERT_EQ(dist.rc, 0) << dist.output;
  const double ref_auc = Field(ref.json, "holdout_auc");
  const double auc = Field(dist.json, "holdout_auc");
  const double oracle = Field(dist.json, "holdout_oracle_auc");
  EXPECT_EQ(Field(dist.json, "workers"), 2);
  EXPECT_NEAR(auc, ref_auc, 0.005) << dist.json << "\n" << ref.json;
  EXPECT_GE(auc, 0.97 * oracle) << dist.json;
  // The saved model evaluates to the same AUC in freshet_eval.
  CommandResult eval = RunCommand(kBin + "/freshet_eval --model_dir=" + kOut + "/async/model");
  ASSERT_EQ(eval.rc, 0) << eval.output;
  EXPECT_NEAR(Field(eval.json, "auc"), auc, 1e-4) << eval.output;
}

// Item popularity on the holdout, computed here from the task's files.
double PopularityAuc(const std::string& dir) {
  auto scores = ItemPopularityScores(dir + "/train.examples", dir + "/holdout.examples", "item");
  EXPECT_TRUE(scores.ok()) << scores.status();
  auto reader = ExampleReader::OpenFiles({dir + "/holdout.examples"}, BadRecordPolicy());
  EXPECT_TRUE(reader.ok()) << reader.status();
  std::vector<float> labels;
  Example ex;
  while (true) {
    auto more = (*reader)->Next(&ex);
    if (!more.ok() || !*more) break;
    labels.push_back(ex.label);
  }
  EXPECT_EQ(labels.size(), scores->size());
  return Auc(*scores, labels);
}

void ExpectBeatsPopularity(const std::string& task) {
  CommandResult dist = RunCommand(Mpirun(5) + Train(task, task, "--save=false --cluster_config=" + kSrc +
                                                          "/cluster-configs/local.pbtxt --metrics_port=0"));
  ASSERT_EQ(dist.rc, 0) << dist.output;
  const double baseline = PopularityAuc(kOut + "/" + task);
  const double auc = Field(dist.json, "holdout_auc");
  std::printf("%s: holdout AUC %.4f, item-popularity baseline %.4f\n", task.c_str(), auc, baseline);
  EXPECT_GE(auc, baseline + 0.02) << dist.json;
}

TEST(TrainE2eTest, TaobaoConversionBeatsItemPopularity) {
  ExpectBeatsPopularity("taobao-conversion");
}

TEST(TrainE2eTest, RetailPurchaseBeatsItemPopularity) { ExpectBeatsPopularity("retail-purchase"); }

// Bad lines beyond the limit stop the job with the file and line named.
TEST(TrainE2eTest, TooManyBadRecordsStopLoudly) {
  const std::string dir = kOut + "/bad";
  ASSERT_EQ(RunCommand("mkdir -p " + dir).rc, 0);
  {
    std::ofstream f(dir + "/train.examples");
    f << "#freshet-examples v1\tuser\titem\n";
    for (int i = 0; i < 50; ++i) f << (i % 2) << "\t" << 1000 + i << "\tu1\t\tu" << i << "\ti" << i << "\n";
    for (int i = 0; i < 5; ++i) f << "2\tnot-a-time\tu1\t\tu\ti\n";  // lines 52..56
  }
  std::ofstream(dir + "/job.pbtxt") << R"(
    name: "bad" batch_size: 8 work_dir: ")" << dir << R"("
    data { train_files: ")" << dir << R"(/train.examples" max_bad_records: 2 }
    features { slots { name: "user" table: "emb" } slots { name: "item" table: "emb" } }
    tables { tables { name: "wide" dim: 1 optimizer { sgd { learning_rate: 0.1 } } }
             tables { name: "emb" dim: 4 optimizer { sgd { learning_rate: 0.1 } } } }
    model { kind: LR wide_table: "wide" })";
  CommandResult r = RunCommand(kBin + "/freshet_train --local --job_config=" + dir + "/job.pbtxt");
  EXPECT_NE(r.rc, 0) << r.output;
  // The third bad line (54) crosses the limit of 2; the error names it.
  EXPECT_NE(r.output.find("train.examples:54"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("3 bad of 53 lines"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("INVALID_ARGUMENT"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace freshet
