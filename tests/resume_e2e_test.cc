// Exact resume, end to end (docs/CHECKPOINTS.md, "Input positions" and
// "Trained-input ledger"): freshet_train under mpirun trains two example
// files for 2 epochs on 2 workers with a checkpoint every 50 steps and
// stops at step 290 (40 steps after its last checkpoint, at step 250, in
// the second epoch). The checkpoint root is then resumed (`--resume`,
// unchanged otherwise) on 2, 1 and 3 workers, and in a chain (3 workers
// stopped again 40 steps after their checkpoint, then 1 worker). From the
// workers' ledgers: every good record of every epoch is trained exactly once
// when each interrupted run is cut at the checkpoint the next one restored;
// the only duplicates are the records trained after those cuts; every
// ledger interval is whole lines and its record count is the number of
// good lines in it. A changed input file is refused.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e_util.h"
#include "worker/input_ledger.h"

namespace freshet {
namespace {

const std::string kBin = FRESHET_BIN_DIR;
const std::string kOut = std::string(FRESHET_TEST_OUT_DIR) + "/resume";
constexpr int kEpochs = 2;

using e2e::CommandResult;
using e2e::RunCommand;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// An example file of n lines (columns item, cat); every 997th line is bad.
std::string ExampleFile(int seed, int n) {
  std::string s = "#freshet-examples v1\titem\tcat\n";
  for (int k = 0; k < n; ++k) {
    const int v = (k * 7919 + seed * 104729) % 1000;
    s += (k % 997 == 3 ? "7" : std::to_string(v % 3 == 0 ? 1 : 0)) + "\t" +
         std::to_string(1500000000 + k) + "\tu" + std::to_string(v % 50) + "\t\ti" +
         std::to_string(v) + "\tc" + std::to_string(v % 17) + "\n";
  }
  return s;
}

// Line starts and whether each line is a good example, per file.
struct FileLines {
  std::vector<uint64_t> starts;  // of example lines (the header excluded)
  std::vector<bool> good;
  uint64_t size = 0;
};

FileLines Lines(const std::string& text) {
  FileLines f;
  f.size = text.size();
  size_t pos = text.find('\n') + 1;  // after the header
  while (pos < text.size()) {
    f.starts.push_back(pos);
    f.good.push_back(text[pos] != '7');
    const size_t nl = text.find('\n', pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
  }
  return f;
}

std::string Cluster(int workers) {
  const std::string path = kOut + "/cluster-1s" + std::to_string(workers) + "w.pbtxt";
  std::ofstream(path) << "name: \"resume-1s" << workers << "w\"\n"
                      << "roles { role: SERVER count: 1 }\n"
                      << "roles { role: WORKER count: " << workers << " }\n"
                      << "transport { request_timeout_ms: 60000 max_inflight_requests: 16 }\n"
                      << "server { handler_threads: 1 partitions: 8 }\n"
                      << "metrics { port: 0 }\n";
  return path;
}

std::string Train(int workers, const std::string& extra) {
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe "
         "--bind-to none -np " +
         std::to_string(workers + 1) + " " + kBin + "/freshet_train --job_config=" + kOut +
         "/job.pbtxt --cluster_config=" + Cluster(workers) + " --save=false " + extra;
}

struct Batch {
  int epoch, file;
  uint64_t begin, end;
  int64_t records;
};

// One attempt of one worker's ledger.
struct Attempt {
  int64_t restored_from = 0;
  int workers = 0;
  std::vector<Batch> lines;
  std::map<int64_t, size_t> cuts;  // checkpoint id -> number of batch lines before its `c`
};

// Decodes with the ledger's own reader (worker/input_ledger.h).
std::vector<Attempt> ParseLedger(const std::string& path) {
  std::vector<Attempt> out;
  std::istringstream in(ReadFile(path));
  std::string text;
  int n = 0;
  while (std::getline(in, text)) {
    ++n;
    LedgerLine l;
    Status st = ParseLedgerLine(text, &l);
    if (!st.ok()) {
      ADD_FAILURE() << path << ":" << n << ": " << st;
      continue;
    }
    if (l.kind == LedgerLine::Kind::kAttempt) {
      Attempt a;
      a.restored_from = l.restored_from;
      a.workers = l.workers;
      out.push_back(a);
      continue;
    }
    if (out.empty()) {
      ADD_FAILURE() << path << ":" << n << ": a line before any attempt line";
      continue;
    }
    if (l.kind == LedgerLine::Kind::kBatch) {
      out.back().lines.push_back(Batch{l.epoch, l.file, l.begin, l.end, l.records});
    } else {
      out.back().cuts[l.checkpoint_id] = out.back().lines.size();
    }
  }
  return out;
}

class ResumeE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    RunCommand("rm -rf " + kOut + " && mkdir -p " + kOut);
    // Listed out of path order: ledger file indexes are by sorted path.
    files_ = {kOut + "/a.examples", kOut + "/b.examples"};
    std::ofstream(files_[0]) << ExampleFile(1, 14000);
    std::ofstream(files_[1]) << ExampleFile(2, 7000);
    std::ofstream(kOut + "/holdout.examples") << ExampleFile(3, 200);
    std::ofstream(kOut + "/job.pbtxt")
        << "name: \"resume-e2e\"\nbatch_size: 64\nepochs: " << kEpochs
        << "\nstaleness: 2\nstatus_interval_s: 100\nwork_dir: \"" << kOut << "/work\"\n"
        << "data { train_files: \"" << files_[1] << "\" train_files: \"" << files_[0]
        << "\" holdout_files: \"" << kOut << "/holdout.examples\" }\n"
        << "features { slots { name: \"item\" table: \"emb\" } "
           "slots { name: \"cat\" table: \"emb\" } }\n"
        << "tables { tables { name: \"wide\" dim: 1 optimizer { adagrad { learning_rate: 0.1 } } }"
           " tables { name: \"emb\" dim: 4 initializer { kind: NORMAL scale: 0.01 seed: 1 }"
           " optimizer { adagrad { learning_rate: 0.1 } } } }\n"
        << "model { kind: DEEPFM wide_table: \"wide\" hidden: [8] seed: 1 }\n";
    // The first run: 2 workers, checkpoints every 50 steps, stopped at 290
    // (an epoch is about 190 steps).
    first_ = RunCommand(Train(2, "--resume --checkpoint_dir=" + kOut +
                                     "/ckpt "
                                     "--checkpoint_interval_steps=50 --checkpoint_keep=0 "
                                     "--max_steps=290 --input_ledger_dir=" +
                                     kOut + "/ledger"));
  }

  // Copies the first run's checkpoints and ledgers to <kOut>/{ckpt,ledger}-<tag>.
  void CopyFirstRun(const std::string& tag) {
    ASSERT_EQ(first_.rc, 0) << first_.output;
    ASSERT_NE(
        first_.output.find("--resume: no complete checkpoint in " + kOut + "/ckpt, starting fresh"),
        std::string::npos)
        << first_.output;
    ASSERT_EQ(ReadFile(kOut + "/ckpt/CHECKPOINT_LATEST"), "5\n");
    ASSERT_EQ(RunCommand("rm -rf " + kOut + "/ckpt-" + tag + " " + kOut + "/ledger-" + tag +
                         " && cp -r " + kOut + "/ckpt " + kOut + "/ckpt-" + tag + " && cp -r " +
                         kOut + "/ledger " + kOut + "/ledger-" + tag)
                  .rc,
              0);
  }

  // `--resume` on `workers` workers from <kOut>/ckpt-<tag>, appending to
  // <kOut>/ledger-<tag>; expects to restore checkpoint `id` at `step` and,
  // with expect_next, to write checkpoint id + 1 at step + 50.
  void Resume(const std::string& tag, int workers, int64_t id, int64_t step,
              const std::string& extra = "", bool expect_next = true) {
    const std::string ckpt = kOut + "/ckpt-" + tag;
    CommandResult r = RunCommand(Train(workers, "--resume --checkpoint_dir=" + ckpt +
                                                    " --checkpoint_interval_steps=50 "
                                                    "--checkpoint_keep=0 --input_ledger_dir=" +
                                                    kOut + "/ledger-" + tag + " " + extra));
    ASSERT_EQ(r.rc, 0) << r.output;
    const std::string sid = std::to_string(id);
    EXPECT_NE(
        r.output.find("--resume: restoring checkpoint " + sid + " (" + ckpt + "/ckpt-" + sid + ")"),
        std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("restored checkpoint " + sid + ": step " + std::to_string(step) +
                            ", epoch 2,"),
              std::string::npos)
        << r.output;
    // Steps and checkpoint ids continue: the next checkpoint is 50 steps on.
    if (!expect_next) return;
    const std::string next = std::to_string(id + 1);
    EXPECT_NE(ReadFile(ckpt + "/ckpt-" + next + "/MANIFEST")
                  .find("id " + next + "\nstep " + std::to_string(step + 50) + "\n"),
              std::string::npos);
    EXPECT_NE(ReadFile(ckpt + "/ckpt-" + next + "/MANIFEST").find("file worker-0.input "),
              std::string::npos);
  }

  // Merges the ledgers of <kOut>/ledger-<tag> (workers 0..max_workers-1) for
  // a chain of attempts restored from chain[0] = 0, chain[1], ...: in every
  // attempt but the last, the batches before the `c` line of the checkpoint
  // the next attempt restored count, the ones after it are the crash's
  // duplicates. Every good record of every epoch must count exactly once.
  void CheckLedgers(const std::string& tag, int max_workers, const std::vector<int64_t>& chain,
                    const std::vector<int>& chain_workers) {
    std::vector<FileLines> lines = {Lines(ReadFile(files_[0])), Lines(ReadFile(files_[1]))};
    // trained[epoch][file][line]: times trained up to each cut plus in the
    // last attempt; all: also the batches after the cuts.
    using Counts = std::vector<std::vector<std::vector<int>>>;
    Counts trained(kEpochs), all(kEpochs);
    for (int e = 0; e < kEpochs; ++e) {
      for (const auto& f : lines) {
        trained[e].emplace_back(f.starts.size(), 0);
        all[e].emplace_back(f.starts.size(), 0);
      }
    }
    int64_t after_cut_records = 0;
    std::vector<int64_t> attempt_records(chain.size(), 0);
    auto apply = [&](const Batch& b, bool counted) {
      ASSERT_GE(b.file, 0);
      ASSERT_LT(b.file, 2);
      ASSERT_GE(b.epoch, 0);
      ASSERT_LT(b.epoch, kEpochs);
      const FileLines& f = lines[b.file];
      auto first = std::lower_bound(f.starts.begin(), f.starts.end(), b.begin);
      ASSERT_TRUE(first != f.starts.end() && *first == b.begin)
          << "interval begins inside a line: file " << b.file << " byte " << b.begin;
      ASSERT_TRUE(b.end == f.size || std::binary_search(f.starts.begin(), f.starts.end(), b.end))
          << "interval ends inside a line: file " << b.file << " byte " << b.end;
      int64_t good = 0;
      for (size_t i = first - f.starts.begin(); i < f.starts.size() && f.starts[i] < b.end; ++i) {
        if (!f.good[i]) continue;
        ++good;
        ++all[b.epoch][b.file][i];
        if (counted) ++trained[b.epoch][b.file][i];
      }
      EXPECT_EQ(good, b.records) << "records of file " << b.file << " [" << b.begin << ", " << b.end
                                 << ")";
    };
    for (int w = 0; w < max_workers; ++w) {
      const std::vector<Attempt> attempts =
          ParseLedger(kOut + "/ledger-" + tag + "/worker-" + std::to_string(w) + ".ledger");
      size_t expected = 0;
      for (int n : chain_workers) expected += w < n;
      ASSERT_EQ(attempts.size(), expected) << "worker " << w;
      for (const Attempt& a : attempts) {
        const size_t k = std::find(chain.begin(), chain.end(), a.restored_from) - chain.begin();
        ASSERT_LT(k, chain.size()) << "worker " << w << ": restored_from " << a.restored_from;
        EXPECT_EQ(a.workers, chain_workers[k]);
        size_t cut = a.lines.size();
        if (k + 1 < chain.size()) {
          ASSERT_EQ(a.cuts.count(chain[k + 1]), 1u)
              << "worker " << w << ": no 'c " << chain[k + 1] << "' line";
          cut = a.cuts.at(chain[k + 1]);
        }
        for (size_t i = 0; i < a.lines.size(); ++i) {
          apply(a.lines[i], i < cut);
          if (i >= cut) after_cut_records += a.lines[i].records;
          attempt_records[k] += a.lines[i].records;
        }
      }
    }
    // Every attempt trained something; each interrupted one trained 40
    // steps after its cut: those are the only duplicates, nothing is missing.
    for (int64_t r : attempt_records) EXPECT_GT(r, 0);
    EXPECT_GT(after_cut_records, 0);
    int64_t duplicates = 0;
    for (int e = 0; e < kEpochs; ++e) {
      for (size_t f = 0; f < lines.size(); ++f) {
        for (size_t i = 0; i < lines[f].starts.size(); ++i) {
          const int want = lines[f].good[i] ? 1 : 0;
          ASSERT_EQ(trained[e][f][i], want)
              << "epoch " << e << " file " << f << " line " << i + 2 << " trained "
              << trained[e][f][i] << " times up to the cuts and in the last attempt";
          duplicates += all[e][f][i] - want;
        }
      }
    }
    EXPECT_EQ(duplicates, after_cut_records);
  }

  void ResumeAndCheck(int workers) {
    const std::string tag = std::to_string(workers) + "w";
    CopyFirstRun(tag);
    Resume(tag, workers, 5, 250);
    CheckLedgers(tag, std::max(2, workers), {0, 5}, {2, workers});
  }

  static std::vector<std::string> files_;
  static CommandResult first_;
};

std::vector<std::string> ResumeE2eTest::files_;
CommandResult ResumeE2eTest::first_;

TEST_F(ResumeE2eTest, ResumeOnTwoWorkersTrainsEveryRecordOnce) { ResumeAndCheck(2); }
TEST_F(ResumeE2eTest, ResumeOnOneWorkerTrainsEveryRecordOnce) { ResumeAndCheck(1); }
TEST_F(ResumeE2eTest, ResumeOnThreeWorkersTrainsEveryRecordOnce) { ResumeAndCheck(3); }

// Two interruptions: 2 workers stopped at step 290, resumed on 3 workers
// stopped at step 340 (40 steps after its checkpoint 6), resumed on 1
// worker to the end. The second cut inherits the first's trained input.
TEST_F(ResumeE2eTest, ChainedResumesTrainEveryRecordOnce) {
  CopyFirstRun("chain");
  Resume("chain", 3, 5, 250, "--max_steps=340");
  Resume("chain", 1, 6, 300, "", /*expect_next=*/false);  // ends before step 350
  CheckLedgers("chain", 3, {0, 5, 6}, {2, 3, 1});
}

// A changed input file set is refused with a clear error naming it.
TEST_F(ResumeE2eTest, ChangedInputIsRefused) {
  ASSERT_EQ(first_.rc, 0) << first_.output;
  const std::string ckpt = kOut + "/ckpt-changed";
  ASSERT_EQ(RunCommand("rm -rf " + ckpt + " && cp -r " + kOut + "/ckpt " + ckpt).rc, 0);
  const std::string saved = ReadFile(files_[1]);
  std::ofstream(files_[1], std::ios::app) << "0\t1500000000\tu1\t\ti1\tc1\n";
  CommandResult r =
      RunCommand(Train(2, "--resume --checkpoint_dir=" + ckpt + " --checkpoint_interval_steps=50"));
  std::ofstream(files_[1], std::ios::trunc) << saved;
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("input file " + files_[1] + " had "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("restoring input positions needs unchanged input files"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace freshet
