// Validation-driven training end to end (issue 15, part 2): freshet_train
// under mpirun on the synthetic shop (generated, no shared data) with
// data.validation_fraction and early_stopping. Checks the per-pass
// validation metrics in worker 0's JSON line, that the best pass is the one
// the numbers say, that validation examples are never trained on, and that
// the kept model is the best pass's (bit-for-bit the model of a run that
// stops there).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "tests/e2e_util.h"
#include "worker/data/internal/test_util.h"

namespace freshet {
namespace {

const std::string kSrc = FRESHET_SOURCE_DIR;
const std::string kBin = FRESHET_BIN_DIR;

using e2e::CommandResult;
using e2e::Field;
using e2e::Mpirun;
using e2e::RunCommand;

// The numbers of a JSON array field ("key":[a,b,...]); empty when absent.
std::vector<double> List(const std::string& json, const std::string& key) {
  std::smatch m;
  std::vector<double> out;
  if (!std::regex_search(json, m, std::regex("\"" + key + "\":\\[([^\\]]*)\\]"))) return out;
  std::string body = m[1];
  size_t pos = 0;
  while (pos < body.size()) {
    size_t comma = body.find(',', pos);
    if (comma == std::string::npos) comma = body.size();
    out.push_back(std::stod(body.substr(pos, comma - pos)));
    pos = comma + 1;
  }
  return out;
}

// The synthetic job with a validation split and early stopping appended.
std::string WriteJob(const std::string& dir, const std::string& name, const std::string& extra) {
  std::ifstream in(kSrc + "/cluster-configs/jobs/synthetic.pbtxt");
  std::stringstream text;
  text << in.rdbuf();
  const std::string path = dir + "/" + name + ".pbtxt";
  testing_util::WriteFile(path,
                          text.str() + "\ndata { validation_fraction: 0.1 }\n" + extra + "\n");
  return path;
}

class ValidationE2eTest : public ::testing::Test {
 protected:
  // One work dir (the generated shop) for the tests of the suite.
  static void SetUpTestSuite() { dir_ = new testing_util::TempDir(); }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  std::string Train(const std::string& job, const std::string& extra) {
    return kBin + "/freshet_train --task=synthetic --job_config=" + job +
           " --work_dir=" + dir_->path() + "/work " + extra;
  }
  static testing_util::TempDir* dir_;
};
testing_util::TempDir* ValidationE2eTest::dir_ = nullptr;

// Two asynchronous workers, two servers and an exporter (the local
// cluster): every pass reports validation metrics; the best pass is the
// argmax of the AUC list; the run stops `patience` passes after it or at
// `epochs`; the trainer saw only the training part of train, every pass.
TEST_F(ValidationE2eTest, LocalClusterReportsEveryPassAndTheBestOne) {
  const std::string job =
      WriteJob(dir_->path(), "es", "early_stopping { metric: \"auc\" patience: 1 }");
  CommandResult r =
      RunCommand(Mpirun(5) + Train(job, "--epochs=3 --save=false --cluster_config=" + kSrc +
                                            "/cluster-configs/local.pbtxt"));
  ASSERT_EQ(r.rc, 0) << r.output;
  const std::string& j = r.json;
  const std::vector<double> auc = List(j, "validation_auc_by_pass");
  const std::vector<double> logloss = List(j, "validation_logloss_by_pass");
  const int passes = static_cast<int>(Field(j, "passes"));
  ASSERT_GE(passes, 1) << j;
  ASSERT_LE(passes, 3);
  ASSERT_EQ(static_cast<int>(auc.size()), passes) << j;
  ASSERT_EQ(static_cast<int>(logloss.size()), passes) << j;
  for (double a : auc) {
    EXPECT_GT(a, 0.75) << j;  // the shop is learnable: far above chance
    EXPECT_LT(a, 1.0);
  }
  // The best pass is the first maximum of the list; the model kept is it.
  int best = 1;
  for (int p = 1; p <= passes; ++p) {
    if (auc[p - 1] > auc[best - 1]) best = p;
  }
  EXPECT_EQ(Field(j, "best_pass"), best) << j;
  EXPECT_EQ(Field(j, "model_pass"), best) << j;
  EXPECT_NEAR(Field(j, "validation_auc"), auc[best - 1], 1e-5);
  const bool stopped = j.find("\"stopped_early\":true") != std::string::npos;
  if (stopped) {
    EXPECT_EQ(passes - best, 1) << "patience 1: stops one pass after the best: " << j;
    EXPECT_LT(passes, 3);
  } else {
    EXPECT_EQ(passes, 3) << j;
    EXPECT_GE(best, passes - 1) << "patience 1 would have stopped: " << j;
  }
  // The split: about 10% of train, by time; each pass trains exactly the
  // training part (no validation example is ever trained on).
  const double valid = Field(j, "validation_split_examples");
  const double train = Field(j, "validation_train_examples");
  EXPECT_NEAR(valid / (valid + train), 0.1, 0.01) << j;
  EXPECT_EQ(Field(j, "validation_examples"), valid);
  EXPECT_EQ(Field(j, "train_examples"), passes * train) << j;
  EXPECT_EQ(Field(j, "progressive_examples"), train) << j;
  // One status line per pass.
  for (int p = 1; p <= passes; ++p) {
    EXPECT_NE(r.output.find("validation pass " + std::to_string(p) + ": AUC"), std::string::npos)
        << r.output;
  }
}

// Restoring the best pass: with min_delta 0.5 no later pass can improve on
// pass 1, so with patience 1 the job trains 2 passes, stops, and must put
// pass 1's model back (tables on the server and dense parameters). With
// one worker and staleness 0 training is deterministic, so the saved model
// and the holdout scores equal those of a 1-pass run to 1e-5; pass 2's
// model would differ.
TEST_F(ValidationE2eTest, KeepsTheBestPassModel) {
  const std::string es =
      WriteJob(dir_->path(), "md", "early_stopping { metric: \"auc\" patience: 1 min_delta: 0.5 }");
  const std::string plain = WriteJob(dir_->path(), "plain", "");
  const std::string one_worker =
      " --staleness=0 --cluster_config=" + kSrc + "/cluster-configs/bench-1s1w.pbtxt";
  CommandResult stopped = RunCommand(
      Mpirun(2) + Train(es, "--epochs=4 --model_dir=" + dir_->path() + "/es" + one_worker));
  ASSERT_EQ(stopped.rc, 0) << stopped.output;
  EXPECT_EQ(Field(stopped.json, "passes"), 2) << stopped.json;
  EXPECT_EQ(Field(stopped.json, "best_pass"), 1);
  EXPECT_EQ(Field(stopped.json, "model_pass"), 1);
  EXPECT_NE(stopped.json.find("\"stopped_early\":true"), std::string::npos);
  EXPECT_NE(stopped.output.find("kept the model of pass 1"), std::string::npos) << stopped.output;
  CommandResult two = RunCommand(
      Mpirun(2) + Train(plain, "--epochs=2 --model_dir=" + dir_->path() + "/two" + one_worker));
  ASSERT_EQ(two.rc, 0) << two.output;
  CommandResult one = RunCommand(
      Mpirun(2) + Train(plain, "--epochs=1 --model_dir=" + dir_->path() + "/one" + one_worker));
  ASSERT_EQ(one.rc, 0) << one.output;
  // Same passes, same numbers.
  EXPECT_EQ(List(stopped.json, "validation_auc_by_pass"), List(two.json, "validation_auc_by_pass"));
  EXPECT_NEAR(Field(stopped.json, "holdout_auc"), Field(one.json, "holdout_auc"), 1e-5);
  EXPECT_NEAR(Field(stopped.json, "holdout_logloss"), Field(one.json, "holdout_logloss"), 1e-5);
  // Pass 2's model is another model (so the comparison below can fail).
  EXPECT_GT(std::fabs(Field(two.json, "holdout_logloss") - Field(one.json, "holdout_logloss")),
            1e-4);
  CommandResult diff = RunCommand(kBin + "/freshet_model_diff " + dir_->path() + "/es " +
                                  dir_->path() + "/one --tolerance=1e-5");
  EXPECT_EQ(diff.rc, 0) << diff.output;
  EXPECT_NE(diff.output.find("MATCH"), std::string::npos) << diff.output;
  CommandResult differs = RunCommand(kBin + "/freshet_model_diff " + dir_->path() + "/es " +
                                     dir_->path() + "/two --tolerance=1e-5");
  EXPECT_NE(differs.output.find("DIFFER"), std::string::npos) << differs.output;
  // The best-pass snapshot is removed once used.
  EXPECT_FALSE(testing_util::Exists(dir_->path() + "/work/best-pass"));
}

// A job whose training files are out of time order is refused, naming the
// line, before anything trains.
TEST_F(ValidationE2eTest, RejectsTrainingFilesOutOfTimeOrder) {
  const std::string dir = dir_->path() + "/disorder";
  testing_util::WriteFile(
      dir + "/train.examples",
      "#freshet-examples v1\titem\n1\t20\tu\t\ta\n0\t10\tu\t\tb\n1\t30\tu\t\tc\n");
  std::ifstream in(kSrc + "/cluster-configs/jobs/synthetic.pbtxt");
  std::stringstream text;
  text << in.rdbuf();
  std::string job = std::regex_replace(text.str(), std::regex("task: \"synthetic\""), "");
  job = std::regex_replace(job,
                           std::regex("slots \\{ name: \"(user|category|price_bucket|query|"
                                      "surface|position|hour|device|user_recent_items|"
                                      "user_recent_categories)\"[^}]*\\}"),
                           "");
  testing_util::WriteFile(dir + "/job.pbtxt", job + "\nwork_dir: \"" + dir +
                                                  "\"\ndata { train_files: \"" + dir +
                                                  "/train.examples\" validation_fraction: 0.2 }\n");
  CommandResult r = RunCommand(Mpirun(2) + kBin + "/freshet_train --job_config=" + dir +
                               "/job.pbtxt --save=false --cluster_config=" + kSrc +
                               "/cluster-configs/bench-1s1w.pbtxt");
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find(dir + "/train.examples:3: time 10 is before"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace freshet
