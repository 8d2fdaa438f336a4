// Restore with resharding, end to end: freshet_train under mpirun trains the
// synthetic task with 2 servers and saves; `--restore_from --restore_only`
// loads that model onto 3 servers and onto 1 server and saves it again; the
// tables must be identical row for row (keys, weights, optimizer state,
// update counts and versions) and the dense parameters byte for byte. A
// restored 3-server job then keeps training.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "server/parameter_shard.h"
#include "server/table_io.h"
#include "tests/e2e_util.h"
#include "worker/job.h"

namespace freshet {
namespace {

const std::string kSrc = FRESHET_SOURCE_DIR;
const std::string kBin = FRESHET_BIN_DIR;
const std::string kData = FRESHET_SHARED_DATA_DIR;
const std::string kOut = std::string(FRESHET_TEST_OUT_DIR) + "/checkpoint";

using e2e::CommandResult;
using e2e::RunCommand;

// A cluster of `servers` servers and one worker; returns the config path.
std::string Cluster(int servers) {
  const std::string path = kOut + "/cluster-" + std::to_string(servers) + "s1w.pbtxt";
  std::ofstream(path) << "name: \"ckpt-" << servers << "s1w\"\n"
                      << "roles { role: SERVER count: " << servers << " }\n"
                      << "roles { role: WORKER count: 1 }\n"
                      << "transport { request_timeout_ms: 60000 max_inflight_requests: 16 }\n"
                      << "server { handler_threads: 1 partitions: 16 }\n"
                      << "metrics { port: 0 }\n";
  return path;
}

std::string Train(int servers, const std::string& extra) {
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe "
         "--bind-to none -np " +
         std::to_string(servers + 1) + " " + kBin +
         "/freshet_train --task=synthetic --job_config=" + kSrc +
         "/cluster-configs/jobs/synthetic.pbtxt --data_dir=" + kData + " --work_dir=" + kOut +
         "/work --cluster_config=" + Cluster(servers) + " " + extra;
}

struct Row {
  std::vector<float> w, s;
  uint32_t update_count = 0, version = 0;
};
using Rows = std::map<std::pair<int, uint64_t>, Row>;

// Every row of every table of a saved model (or of a checkpoint chain,
// loaded in order), and the number of .rows files read.
Rows LoadChain(const std::vector<std::string>& dirs, int64_t* files) {
  Rows out;
  auto job = LoadJobConfig(dirs.back() + "/job.pbtxt");
  EXPECT_TRUE(job.ok()) << job.status();
  if (!job.ok()) return out;
  auto shard = std::move(ParameterShard::Create(job->tables(), 8)).value();
  LoadRowsStats stats;
  for (const auto& dir : dirs) {
    Status st = LoadModelRows(dir, shard.get(), RowFilter(), &stats);
    EXPECT_TRUE(st.ok()) << st;
  }
  *files = stats.files;
  for (int t = 0; t < shard->num_tables(); ++t) {
    const EmbeddingTable* table = shard->table(t);
    table->ForEach([&](uint64_t key, const float* w, const float* s, const RowMeta& m) {
      Row r;
      r.w.assign(w, w + table->dim());
      r.s.assign(s, s + table->state_dim());
      r.update_count = m.update_count;
      r.version = m.version;
      out[{t, key}] = std::move(r);
    });
  }
  return out;
}

Rows LoadRows(const std::string& dir, int64_t* files) { return LoadChain({dir}, files); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Compares two row sets exactly; returns a description of the first
// difference, empty if identical.
std::string FirstDifference(const Rows& a, const Rows& b) {
  if (a.size() != b.size()) {
    return "row counts differ: " + std::to_string(a.size()) + " vs " + std::to_string(b.size());
  }
  for (const auto& [k, ra] : a) {
    auto it = b.find(k);
    const std::string where =
        "table " + std::to_string(k.first) + " key " + std::to_string(k.second);
    if (it == b.end()) return where + " missing";
    const Row& rb = it->second;
    if (ra.w != rb.w) return where + ": weights differ";
    if (ra.s != rb.s) return where + ": optimizer state differs";
    if (ra.update_count != rb.update_count || ra.version != rb.version) {
      return where + ": metadata differs";
    }
  }
  return "";
}

TEST(CheckpointE2eTest, RestoreOntoThreeAndOneServersGivesIdenticalTables) {
  ASSERT_EQ(RunCommand("mkdir -p " + kOut + "/work").rc, 0);
  const std::string saved = kOut + "/saved-2s";
  RunCommand("rm -rf " + saved + " " + kOut + "/restored-*");
  CommandResult train = RunCommand(Train(2, "--epochs=1 --max_steps=300 --model_dir=" + saved));
  ASSERT_EQ(train.rc, 0) << train.output;
  int64_t files = 0;
  const Rows original = LoadRows(saved, &files);
  EXPECT_EQ(files, 2);
  ASSERT_GT(original.size(), 1000u);
  // Training really wrote optimizer state and metadata (not just init rows).
  int64_t updated = 0;
  for (const auto& [k, r] : original) updated += r.update_count > 0;
  EXPECT_GT(updated, static_cast<int64_t>(original.size() / 2));

  for (int servers : {3, 1}) {
    SCOPED_TRACE("restored onto " + std::to_string(servers) + " servers");
    const std::string out = kOut + "/restored-" + std::to_string(servers) + "s";
    CommandResult r = RunCommand(
        Train(servers, "--restore_from=" + saved + " --restore_only --model_dir=" + out));
    ASSERT_EQ(r.rc, 0) << r.output;
    // Each server reports what it kept; together exactly the saved rows.
    std::regex re("server (\\d+)/(\\d+) restored (\\d+) of (\\d+) rows from 2 files");
    int64_t kept = 0, reports = 0;
    for (std::sregex_iterator it(r.output.begin(), r.output.end(), re), end; it != end; ++it) {
      ++reports;
      kept += std::stoll((*it)[3]);
      EXPECT_EQ(std::stoll((*it)[4]), static_cast<int64_t>(original.size()));
    }
    EXPECT_EQ(reports, servers) << r.output;
    EXPECT_EQ(kept, static_cast<int64_t>(original.size())) << r.output;
    int64_t out_files = 0;
    const Rows restored = LoadRows(out, &out_files);
    EXPECT_EQ(out_files, servers);
    EXPECT_EQ(FirstDifference(original, restored), "");
    EXPECT_EQ(ReadFile(out + "/dense.bin"), ReadFile(saved + "/dense.bin"));
    EXPECT_EQ(ReadFile(out + "/dense_opt.bin"), ReadFile(saved + "/dense_opt.bin"));
  }

  // Training continues on 3 servers from the restored model: every saved row
  // is still there, no update count went back (a fresh start would have
  // fewer rows and small counts) and some kept growing.
  const std::string cont = kOut + "/restored-continued";
  CommandResult c = RunCommand(
      Train(3, "--restore_from=" + saved + " --epochs=1 --max_steps=40 --model_dir=" + cont));
  ASSERT_EQ(c.rc, 0) << c.output;
  int64_t cont_files = 0;
  const Rows continued = LoadRows(cont, &cont_files);
  EXPECT_EQ(cont_files, 3);
  int64_t kept_count = 0, grown = 0;
  for (const auto& [k, r] : original) {
    auto it = continued.find(k);
    if (it == continued.end()) continue;
    ++kept_count;
    EXPECT_GE(it->second.update_count, r.update_count);
    grown += it->second.update_count > r.update_count;
  }
  EXPECT_EQ(kept_count, static_cast<int64_t>(original.size()));
  EXPECT_GT(grown, 0);
  EXPECT_NE(ReadFile(cont + "/dense.bin"), ReadFile(saved + "/dense.bin"));
}

// A periodic checkpoint equals the live tables at its cut: a 1-worker,
// staleness-0 job on 2 servers checkpoints every 40 steps (full, then
// incremental) and runs 100; its step-80 checkpoint (the full step-40 one
// plus the step-80 increment) must equal (row for row, dense byte for byte)
// the model of the same job stopped after 80 steps. The checkpoint root
// then restores onto 3 servers.
TEST(CheckpointE2eTest, PeriodicCheckpointEqualsLiveTablesAtTheCut) {
  ASSERT_EQ(RunCommand("mkdir -p " + kOut + "/work").rc, 0);
  const std::string root = kOut + "/periodic";
  const std::string stopped = kOut + "/stopped-80";
  const std::string resharded = kOut + "/periodic-restored-3s";
  RunCommand("rm -rf " + root + " " + stopped + " " + resharded);
  CommandResult a = RunCommand(Train(2,
                                     "--staleness=0 --epochs=1 --max_steps=100 "
                                     "--checkpoint_dir=" +
                                         root +
                                         " --checkpoint_interval_steps=40 --checkpoint_keep=1 "
                                         "--checkpoint_full_every=2 "
                                         "--model_dir=" +
                                         kOut + "/periodic-model"));
  ASSERT_EQ(a.rc, 0) << a.output;
  EXPECT_NE(a.output.find("\"checkpoints\":2,"), std::string::npos) << a.output;
  EXPECT_NE(a.output.find("checkpoint 1 (full) at step 40:"), std::string::npos) << a.output;
  EXPECT_NE(a.output.find("checkpoint 2 (incremental) at step 80:"), std::string::npos) << a.output;
  // keep=1 keeps the second and, as its parent, the first.
  EXPECT_EQ(ReadFile(root + "/CHECKPOINT_LATEST"), "2\n");
  EXPECT_NE(ReadFile(root + "/ckpt-1/MANIFEST").find("parent 0\n"), std::string::npos);
  EXPECT_NE(ReadFile(root + "/ckpt-2/MANIFEST").find("step 80\nparent 1\n"), std::string::npos);

  CommandResult b =
      RunCommand(Train(2, "--staleness=0 --epochs=1 --max_steps=80 --model_dir=" + stopped));
  ASSERT_EQ(b.rc, 0) << b.output;
  int64_t files = 0;
  const Rows at_cut = LoadChain({root + "/ckpt-1", root + "/ckpt-2"}, &files);
  EXPECT_EQ(files, 4);
  // The increment holds only rows changed after step 40.
  const Rows at_40 = LoadRows(root + "/ckpt-1", &files);
  const Rows increment = LoadRows(root + "/ckpt-2", &files);
  ASSERT_FALSE(increment.empty());
  EXPECT_LT(increment.size(), at_cut.size());
  for (const auto& [k, r] : increment) {
    auto it = at_40.find(k);
    if (it != at_40.end()) {
      EXPECT_GT(r.update_count, it->second.update_count) << "unchanged row " << k.second;
    }
  }
  std::printf("checkpoint rows: full at step 40 %zu, increment at step 80 %zu, state at 80 %zu\n",
              at_40.size(), increment.size(), at_cut.size());
  const Rows live = LoadRows(stopped, &files);
  ASSERT_GT(at_cut.size(), 1000u);
  // The stopped job's holdout scoring pulled (created, never updated) more
  // rows after training; every trained row must be identical, and every
  // checkpointed row must be there as it was.
  Rows trained_cut, trained_live;
  for (const auto& [k, r] : at_cut) {
    if (r.update_count > 0) trained_cut[k] = r;
  }
  for (const auto& [k, r] : live) {
    if (r.update_count > 0) trained_live[k] = r;
  }
  ASSERT_GT(trained_cut.size(), 1000u);
  EXPECT_EQ(FirstDifference(trained_cut, trained_live), "");
  Rows live_subset;
  for (const auto& [k, r] : at_cut) {
    auto it = live.find(k);
    if (it != live.end()) live_subset[k] = it->second;
  }
  EXPECT_EQ(FirstDifference(at_cut, live_subset), "");
  EXPECT_EQ(ReadFile(root + "/ckpt-2/dense.bin"), ReadFile(stopped + "/dense.bin"));
  // The dense Adam state too (step count and moments).
  EXPECT_GT(ReadFile(root + "/ckpt-2/dense_opt.bin").size(), 24u);
  EXPECT_EQ(ReadFile(root + "/ckpt-2/dense_opt.bin"), ReadFile(stopped + "/dense_opt.bin"));

  // The root restores its latest checkpoint, resharded onto 3 servers.
  CommandResult r =
      RunCommand(Train(3, "--restore_from=" + root + " --restore_only --model_dir=" + resharded));
  ASSERT_EQ(r.rc, 0) << r.output;
  const Rows restored = LoadRows(resharded, &files);
  EXPECT_EQ(files, 3);
  EXPECT_EQ(FirstDifference(at_cut, restored), "");
}

// A full disk during the second checkpoint (FRESHET_INJECT_WRITE_FAULT,
// common/file_io.h): the job fails loudly with the file and errno, the
// first checkpoint stays published, and the root still restores it.
TEST(CheckpointE2eTest, DiskFullDuringACheckpointKeepsTheLastGoodOne) {
  ASSERT_EQ(RunCommand("mkdir -p " + kOut + "/work").rc, 0);
  const std::string root = kOut + "/diskfull";
  const std::string restored = kOut + "/diskfull-restored";
  RunCommand("rm -rf " + root + " " + restored);
  CommandResult a = RunCommand(
      "FRESHET_INJECT_WRITE_FAULT=ckpt-2/:ENOSPC:-1 " +
      Train(2,
            "--staleness=0 --epochs=1 --max_steps=100 "
            "--checkpoint_dir=" +
                root + " --checkpoint_interval_steps=40 --checkpoint_full_every=2 --model_dir=" +
                kOut + "/diskfull-model"));
  EXPECT_NE(a.rc, 0) << a.output;
  EXPECT_NE(a.output.find("ckpt-2/"), std::string::npos) << a.output;
  EXPECT_NE(a.output.find("No space left on device (ENOSPC)"), std::string::npos) << a.output;
  EXPECT_NE(a.output.find("giving up writing"), std::string::npos) << a.output;  // LOG(ERROR)
  EXPECT_EQ(ReadFile(root + "/CHECKPOINT_LATEST"), "1\n");
  EXPECT_FALSE(std::ifstream(root + "/ckpt-2/MANIFEST").good());
  CommandResult r =
      RunCommand(Train(2, "--restore_from=" + root + " --restore_only --model_dir=" + restored));
  ASSERT_EQ(r.rc, 0) << r.output;
  int64_t files = 0;
  EXPECT_EQ(FirstDifference(LoadRows(root + "/ckpt-1", &files), LoadRows(restored, &files)), "");
}

}  // namespace
}  // namespace freshet
