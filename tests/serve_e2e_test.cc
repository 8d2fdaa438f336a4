// End to end: training on the local cluster (mpirun) exports continuously;
// a real freshet_serve process follows the export directory; a client keeps
// scoring while models swap. Checks that versions advance, every request
// succeeds once a model is loaded, and the final served scores equal the
// trainer's own forward pass (freshet_eval on the saved model) to 1e-5.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "worker/data/example_io.h"
#include "worker/data/internal/test_util.h"
#include "worker/data/task.h"
#include "worker/job.h"

namespace freshet {
namespace {

const std::string kSrc = FRESHET_SOURCE_DIR;
const std::string kBin = FRESHET_BIN_DIR;
const std::string kOutBase = std::string(FRESHET_TEST_OUT_DIR) + "/serve";

int Sh(const std::string& cmd) {
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// The first n holdout examples as a /score body, in file order, with the
// columns the job's features read (freshet_serve rejects other columns).
nlohmann::json ScoreBody(const std::string& job_config, const std::string& file, int n) {
  auto job = LoadJobConfig(job_config);
  EXPECT_TRUE(job.ok()) << job.status();
  std::set<std::string> used;
  for (const auto& slot : job->features().slots()) {
    used.insert(slot.column().empty() ? slot.name() : slot.column());
  }
  auto reader = ExampleReader::OpenFiles({file}, BadRecordPolicy());
  EXPECT_TRUE(reader.ok()) << reader.status();
  nlohmann::json examples = nlohmann::json::array();
  Example ex;
  while (static_cast<int>(examples.size()) < n) {
    auto more = (*reader)->Next(&ex);
    if (!more.ok() || !*more) break;
    nlohmann::json e = nlohmann::json::object();
    for (size_t c = 0; c < ex.values.size(); ++c) {
      const std::string& col = (*reader)->columns()[c];
      if (used.count(col)) e[col] = ex.values[c];
    }
    examples.push_back(e);
  }
  return {{"examples", examples}};
}

// Trains cluster-configs/jobs/<job>.pbtxt (task `task`: synthetic, from
// freshet_gen, or a task built from ../shared/data) on the local cluster
// with `extra` flags while freshet_serve follows its exports.
void ServeWhileTraining(const std::string& job, const std::string& extra,
                        const std::string& task = "synthetic") {
  const std::string out = kOutBase + "/" + job;
  const std::string job_config = kSrc + "/cluster-configs/jobs/" + job + ".pbtxt";
  ASSERT_EQ(Sh("rm -rf " + out + " && mkdir -p " + out), 0);
  std::string holdout = out + "/holdout.examples";
  if (task == "synthetic") {
    ASSERT_EQ(Sh(kBin + "/freshet_gen --out_dir=" + out + " > /dev/null"), 0);
  } else {
    // The task's examples, built where freshet_train (--work_dir) finds them.
    auto built = BuildTask(task, testing_util::SharedDataDir(), out, BadRecordPolicy());
    ASSERT_TRUE(built.ok()) << built.status();
    holdout = built->holdout_file;
  }
  const std::string export_dir = out + "/export";

  // freshet_serve on a free port, following the (not yet existing) export dir.
  const std::string serve_log = out + "/serve.log";
  const pid_t serve = fork();
  ASSERT_GE(serve, 0);
  if (serve == 0) {
    std::freopen(serve_log.c_str(), "w", stdout);
    std::freopen(serve_log.c_str(), "a", stderr);
    execl((kBin + "/freshet_serve").c_str(), "freshet_serve",
          ("--export_dir=" + export_dir).c_str(), "--port=0", "--poll_ms=50",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int port = 0;
  for (int i = 0; i < 100 && port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::ifstream in(serve_log);
    std::string line;
    while (std::getline(in, line)) {
      const auto at = line.find("listening on ");
      if (at != std::string::npos) port = std::stoi(line.substr(line.rfind(':') + 1));
    }
  }
  ASSERT_GT(port, 0) << "freshet_serve did not report its port";
  {
    // It re-executed itself with huge pages for its heap (same pid;
    // common/malloc_huge_pages.h).
    std::ifstream env("/proc/" + std::to_string(serve) + "/environ");
    std::string all((std::istreambuf_iterator<char>(env)), std::istreambuf_iterator<char>());
    EXPECT_NE(all.find("glibc.malloc.hugetlb=1"), std::string::npos);
  }

  const nlohmann::json body = ScoreBody(job_config, holdout, 50);
  std::atomic<bool> stop{false};
  std::set<uint64_t> versions;
  int64_t ok = 0, before_model = 0, failed = 0;
  std::string first_failure;
  std::thread client([&] {
    httplib::Client cli("127.0.0.1", port);
    while (!stop) {
      auto r = cli.Post("/score", body.dump(), "application/json");
      if (r && r->status == 200) {
        versions.insert(nlohmann::json::parse(r->body)["model_version"].get<uint64_t>());
        ++ok;
      } else if (r && r->status == 503 && versions.empty()) {
        ++before_model;  // nothing exported yet
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      } else {
        if (first_failure.empty()) first_failure = r ? r->body : "no response";
        ++failed;
      }
    }
  });

  const int rc =
      Sh("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun "
         "--oversubscribe --bind-to none -np 5 " +
         kBin +
         "/freshet_train "
         "--task=" +
         task + " --data_dir=" + testing_util::SharedDataDir() + " --job_config=" + job_config +
         " --cluster_config=" + kSrc + "/cluster-configs/local.pbtxt --metrics_port=0 --work_dir=" +
         out + " " + extra + " > " + out + "/train.log 2>&1");
  // Let the server pick up the final full snapshot.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stop = true;
  client.join();
  ASSERT_EQ(rc, 0) << "training failed, see " << out << "/train.log";

  EXPECT_EQ(failed, 0) << first_failure;
  EXPECT_GT(ok, 20);
  EXPECT_GE(versions.size(), 3u) << "the served model version should advance during training";

  // The served model is the exporter's final one...
  httplib::Client cli("127.0.0.1", port);
  auto model = cli.Get("/model");
  ASSERT_TRUE(model && model->status == 200);
  std::ifstream latest(export_dir + "/LATEST");
  std::string manifest;
  latest >> manifest;
  const auto info = nlohmann::json::parse(model->body);
  EXPECT_EQ(manifest,
            "manifest-" +
                std::string(12 - std::to_string(info["version"].get<uint64_t>()).size(), '0') +
                std::to_string(info["version"].get<uint64_t>()) + ".pb");
  // ... and scores exactly as the trainer's forward pass on the saved model.
  auto scored = cli.Post("/score", body.dump(), "application/json");
  ASSERT_TRUE(scored && scored->status == 200);
  const auto served = nlohmann::json::parse(scored->body)["scores"];
  // One score per example sent: an empty or short reply must not pass the
  // comparison below by comparing nothing.
  const size_t sent = body["examples"].size();
  ASSERT_GT(sent, 0u);
  ASSERT_TRUE(served.is_array()) << scored->body;
  ASSERT_EQ(served.size(), sent) << scored->body;
  ASSERT_EQ(Sh(kBin + "/freshet_eval --model_dir=" + out + "/model --scores_out=" + out +
               "/eval_scores.txt > /dev/null"),
            0);
  std::ifstream eval(out + "/eval_scores.txt");
  size_t compared = 0;
  for (size_t i = 0; i < served.size(); ++i) {
    double want = 0;
    ASSERT_TRUE(eval >> want) << "freshet_eval wrote fewer than " << sent << " scores";
    EXPECT_NEAR(served[i].get<double>(), want, 1e-5) << "example " << i;
    ++compared;
  }
  EXPECT_EQ(compared, sent);
  kill(serve, SIGTERM);
  int st = 0;
  waitpid(serve, &st, 0);
}

TEST(ServeE2eTest, ServesFreshModelsWhileTrainingAndMatchesTheTrainer) {
  ServeWhileTraining("synthetic", "");
}

// A LAYERED model (every part: three tables per slot, attention, cross).
TEST(ServeE2eTest, ServesLayeredModelAndMatchesTheTrainer) {
  ServeWhileTraining("synthetic-layered", "--epochs=1");
}

// A multi-task (ESMM) model on taobao-conversion, whose examples carry
// label:buy: freshet_serve returns the serving head (p_ctcvr = p_ctr *
// p_cvr) and freshet_eval --scores_out that head's trainer scores. The
// job trains for a few seconds only, so it exports every 0.1 s (at the
// default 1 s, serving saw just 2 versions in one loaded CI run).
TEST(ServeE2eTest, ServesEsmmModelAndMatchesTheTrainer) {
  FRESHET_REQUIRE_SHARED_DATA("taobao/UserBehavior_time_slice.csv",
                              "taobao/UserBehavior_815_users.csv");
  ServeWhileTraining("taobao-conversion-esmm", "--epochs=2 --export_interval_s=0.1",
                     "taobao-conversion");
}

}  // namespace
}  // namespace freshet
