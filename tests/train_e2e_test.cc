// End-to-end training tests: real freshet_train processes under mpirun (and
// the single-process reference), on generated data and on the public
// datasets in ../shared/data. Each test runs the binaries, reads the JSON
// line worker 0 prints last, and checks the figures.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <string>

#include "common/checksum.h"
#include "common/file_io.h"
#include "tests/e2e_util.h"
#include "worker/data/example_io.h"
#include "worker/data/internal/test_util.h"
#include "worker/data/task.h"
#include "worker/job.h"
#include "worker/metrics.h"

namespace freshet {
namespace {

const std::string kSrc = FRESHET_SOURCE_DIR;
const std::string kBin = FRESHET_BIN_DIR;
const std::string kOut = FRESHET_TEST_OUT_DIR;

using e2e::CommandResult;
using e2e::Field;
using e2e::Mpirun;
using e2e::RunCommand;

std::string Train(const std::string& task, const std::string& work_dir, const std::string& extra) {
  return kBin + "/freshet_train --task=" + task + " --job_config=" + kSrc +
         "/cluster-configs/jobs/" + task + ".pbtxt --data_dir=" + testing_util::SharedDataDir() +
         " --work_dir=" + kOut + "/" + work_dir + " " + extra;
}

// As Train, with the job config cluster-configs/jobs/<job>.pbtxt.
std::string TrainJob(const std::string& job, const std::string& task, const std::string& work_dir,
                     const std::string& extra) {
  return kBin + "/freshet_train --task=" + task + " --job_config=" + kSrc +
         "/cluster-configs/jobs/" + job + ".pbtxt --data_dir=" + testing_util::SharedDataDir() +
         " --work_dir=" + kOut + "/" + work_dir + " " + extra;
}

// With one worker and staleness 0 the distributed job is the single-process
// reference step for step: every parameter agrees to 1e-5.
TEST(TrainE2eTest, OneWorkerStalenessZeroMatchesReference) {
  const std::string common = " --staleness=0 --max_steps=80 --epochs=1";
  CommandResult dist =
      RunCommand(Mpirun(2) + Train("synthetic", "parity", common) + " --cluster_config=" + kSrc +
                 "/cluster-configs/bench-1s1w.pbtxt" + " --model_dir=" + kOut + "/parity/dist");
  ASSERT_EQ(dist.rc, 0) << dist.output;
  CommandResult ref = RunCommand(Train("synthetic", "parity", common) +
                                 " --local --model_dir=" + kOut + "/parity/ref");
  ASSERT_EQ(ref.rc, 0) << ref.output;
  EXPECT_EQ(Field(dist.json, "steps"), 80);
  CommandResult diff = RunCommand(kBin + "/freshet_model_diff " + kOut + "/parity/dist " + kOut +
                                  "/parity/ref --tolerance=1e-5");
  EXPECT_EQ(diff.rc, 0) << diff.output;
  EXPECT_NE(diff.output.find("MATCH"), std::string::npos) << diff.output;
  // The trained model beats the base-rate predictor (every example scored
  // at the holdout's positive rate), not just a loose constant bound.
  auto holdout = ExampleReader::OpenFiles({kOut + "/parity/holdout.examples"}, BadRecordPolicy());
  ASSERT_TRUE(holdout.ok()) << holdout.status();
  double n = 0, pos = 0;
  Example ex;
  while (true) {
    auto more = (*holdout)->Next(&ex);
    ASSERT_TRUE(more.ok()) << more.status();
    if (!*more) break;
    ++n;
    pos += ex.label;
  }
  ASSERT_GT(n, 0);
  const double p = pos / n;
  ASSERT_GT(p, 0);
  ASSERT_LT(p, 1);
  const double base_logloss = -(p * std::log(p) + (1 - p) * std::log(1 - p));
  std::printf("holdout: %.0f examples, positive rate %.4f, base-rate logloss %.4f\n", n, p,
              base_logloss);
  EXPECT_LT(Field(dist.json, "holdout_logloss"), base_logloss - 0.005) << dist.json;

  // A model with a NaN weight never matches (issue 18: std::max dropped NaN).
  ASSERT_EQ(RunCommand("rm -rf " + kOut + "/parity/nan && cp -r " + kOut + "/parity/dist " + kOut +
                       "/parity/nan")
                .rc,
            0);
  {
    // The first parameter (after the magic and the count) becomes NaN, with
    // the checksum trailer repaired: freshet_model_diff reads dense.bin
    // through worker/dense_file.h, which refuses a file whose checksum fails.
    const std::string path = kOut + "/parity/nan/dense.bin";
    std::string bytes;
    {
      std::ifstream in(path, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    ASSERT_GE(bytes.size(), 28u);
    const float nan = NAN;
    std::memcpy(bytes.data() + 16, &nan, sizeof(nan));
    const uint64_t h = Fnv1a64(bytes.data(), bytes.size() - 8);
    std::memcpy(bytes.data() + bytes.size() - 8, &h, sizeof(h));
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.good());
  }
  CommandResult nan_diff = RunCommand(kBin + "/freshet_model_diff " + kOut + "/parity/nan " + kOut +
                                      "/parity/dist --tolerance=1e-5");
  EXPECT_EQ(nan_diff.rc, 1) << nan_diff.output;
  EXPECT_NE(nan_diff.output.find("DIFFER"), std::string::npos) << nan_diff.output;
  // A dense.bin whose checksum fails is an error (2) naming the file, not a
  // difference.
  {
    std::fstream dense(kOut + "/parity/nan/dense.bin",
                       std::ios::binary | std::ios::in | std::ios::out);
    ASSERT_TRUE(dense.good());
    const float one = 1.0f;
    dense.seekp(16);
    dense.write(reinterpret_cast<const char*>(&one), sizeof(one));
    ASSERT_TRUE(dense.good());
  }
  CommandResult bad_diff = RunCommand(kBin + "/freshet_model_diff " + kOut + "/parity/nan " + kOut +
                                      "/parity/dist --tolerance=1e-5");
  EXPECT_EQ(bad_diff.rc, 2) << bad_diff.output;
  EXPECT_NE(bad_diff.output.find("nan/dense.bin: checksum mismatch"), std::string::npos)
      << bad_diff.output;
}

// The same for a LAYERED model using every part (first order, FM, FFM,
// cross, MLP, target attention: three tables pulled and pushed per slot).
TEST(TrainE2eTest, LayeredOneWorkerStalenessZeroMatchesReference) {
  const std::string common = " --staleness=0 --max_steps=60 --epochs=1";
  CommandResult dist =
      RunCommand(Mpirun(2) + TrainJob("synthetic-layered", "synthetic", "parity", common) +
                 " --cluster_config=" + kSrc + "/cluster-configs/bench-1s1w.pbtxt" +
                 " --model_dir=" + kOut + "/parity/layered-dist");
  ASSERT_EQ(dist.rc, 0) << dist.output;
  CommandResult ref = RunCommand(TrainJob("synthetic-layered", "synthetic", "parity", common) +
                                 " --local --model_dir=" + kOut + "/parity/layered-ref");
  ASSERT_EQ(ref.rc, 0) << ref.output;
  EXPECT_EQ(Field(dist.json, "steps"), 60);
  // The model trained (far from the 0.5 of an untrained one), so a match is
  // not two copies of the initialization.
  EXPECT_GT(Field(dist.json, "holdout_auc"), 0.65) << dist.json;
  CommandResult diff = RunCommand(kBin + "/freshet_model_diff " + kOut + "/parity/layered-dist " +
                                  kOut + "/parity/layered-ref --tolerance=1e-5");
  EXPECT_EQ(diff.rc, 0) << diff.output;
  EXPECT_NE(diff.output.find("MATCH"), std::string::npos) << diff.output;
  // Every table the model reads was trained: the diff compared ffm rows.
  EXPECT_NE(diff.output.find("ffm"), std::string::npos) << diff.output;
}

// Two workers pushing asynchronously through two servers: holdout AUC within
// 0.005 of the reference, and at least 97% of the oracle AUC.
TEST(TrainE2eTest, TwoAsyncWorkersReachReferenceAndOracle) {
  CommandResult ref = RunCommand(Train("synthetic", "async", "--local --save=false"));
  ASSERT_EQ(ref.rc, 0) << ref.output;
  CommandResult dist =
      RunCommand(Mpirun(5) + Train("synthetic", "async",
                                   "--cluster_config=" + kSrc +
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

// The job's model, or the one `extra` names (--model=lr), beats item
// popularity by `margin`.
void ExpectBeatsPopularity(const std::string& task, const std::string& extra = "",
                           double margin = 0.02) {
  CommandResult dist =
      RunCommand(Mpirun(5) + Train(task, task,
                                   "--save=false --cluster_config=" + kSrc +
                                       "/cluster-configs/local.pbtxt --metrics_port=0 " + extra));
  ASSERT_EQ(dist.rc, 0) << dist.output;
  const double baseline = PopularityAuc(kOut + "/" + task);
  const double auc = Field(dist.json, "holdout_auc");
  std::printf("%s %s: holdout AUC %.4f, item-popularity baseline %.4f\n", task.c_str(),
              extra.c_str(), auc, baseline);
  EXPECT_GE(auc, baseline + margin) << dist.json;
}

TEST(TrainE2eTest, TaobaoConversionBeatsItemPopularity) {
  FRESHET_REQUIRE_SHARED_DATA("taobao/UserBehavior_time_slice.csv",
                              "taobao/UserBehavior_815_users.csv");
  ExpectBeatsPopularity("taobao-conversion");
}

TEST(TrainE2eTest, RetailPurchaseBeatsItemPopularity) {
  FRESHET_REQUIRE_SHARED_DATA("online_retail/online_retail_to_2011-11-25.csv");
  ExpectBeatsPopularity("retail-purchase");
}

// Issue 15: LR scored 0.742 against item popularity's 0.819 (sparse rows got
// the batch-mean loss's gradient, ~1/256 of the per-example one); it scores
// 0.8386 now. A linear model over item, price and description gets less
// above popularity than the DeepFM job's 0.02, hence 0.01.
TEST(TrainE2eTest, RetailPurchaseLrBeatsItemPopularity) {
  FRESHET_REQUIRE_SHARED_DATA("online_retail/online_retail_to_2011-11-25.csv");
  ExpectBeatsPopularity("retail-purchase", "--model=lr", 0.01);
}

// --embedding_dim overrides every table's dim but the wide table's; a
// field-aware FM table takes it as k (dim num_slots * k), so tools/tune.sh
// --dims can search FFM jobs (a plain dim made the job invalid).
TEST(TrainE2eTest, EmbeddingDimFlagSetsTheFfmTablesK) {
  const std::string out = kOut + "/write-job.pbtxt";
  CommandResult r = RunCommand(kBin + "/freshet_train --task=retail-purchase --job_config=" + kSrc +
                               "/cluster-configs/jobs/retail-purchase-ffm.pbtxt" +
                               " --embedding_dim=6 --write_job=" + out);
  ASSERT_EQ(r.rc, 0) << r.output;
  auto text = ReadFileToString(out, 1 << 20);
  ASSERT_TRUE(text.ok()) << text.status();
  auto job = ParseJobConfig(*text, out);
  ASSERT_TRUE(job.ok()) << job.status();
  std::map<std::string, uint32_t> dims;
  for (const auto& t : job->tables().tables()) dims[t.name()] = t.dim();
  EXPECT_EQ(dims["wide"], 1u);
  EXPECT_EQ(dims["emb"], 6u);
  EXPECT_EQ(dims["ffm"], 6u * static_cast<uint32_t>(job->features().slots_size()));
  EXPECT_EQ(job->features().slots_size(), 9);
}

// Bad lines beyond the limit stop the job with the file and line named.
TEST(TrainE2eTest, TooManyBadRecordsStopLoudly) {
  const std::string dir = kOut + "/bad";
  ASSERT_EQ(RunCommand("mkdir -p " + dir).rc, 0);
  {
    std::ofstream f(dir + "/train.examples");
    f << "#freshet-examples v1\tuser\titem\n";
    for (int i = 0; i < 50; ++i)
      f << (i % 2) << "\t" << 1000 + i << "\tu1\t\tu" << i << "\ti" << i << "\n";
    for (int i = 0; i < 5; ++i) f << "2\tnot-a-time\tu1\t\tu\ti\n";  // lines 52..56
  }
  std::ofstream(dir + "/job.pbtxt") << R"(
    name: "bad" batch_size: 8 work_dir: ")"
                                    << dir << R"("
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
