// MpiCollective's deadlines and heartbeats. The heartbeat tests run in any
// process; the MpiCollective tests need 2 ranks (ctest collective_mpi_2r,
// under mpirun) and are skipped otherwise.
#include "common/mpi_collective.h"

#include <gtest/gtest.h>
#include <mpi.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace freshet {
namespace {

using std::chrono::milliseconds;

class MpiEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    int provided = 0;
    ASSERT_EQ(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), MPI_SUCCESS);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  void TearDown() override { MPI_Finalize(); }
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new MpiEnvironment);

int WorldRank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int WorldSize() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// A fresh directory private to this rank.
std::string TempDir(const std::string& what) {
  std::string t =
      (std::filesystem::temp_directory_path() / ("freshet_" + what + "_XXXXXX")).string();
  char* d = mkdtemp(t.data());
  EXPECT_NE(d, nullptr);
  return t;
}

int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

TEST(HeartbeatTest, PublishesAndRefreshes) {
  const std::string dir = TempDir("hb") + "/sub";  // created by Start
  auto p = HeartbeatPublisher::Start(dir, 7, milliseconds(50));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->path(), dir + "/heartbeat-rank7");
  auto r = ReadHeartbeat(dir, 7);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->pid, getpid());
  EXPECT_EQ(r->operation, 0);
  EXPECT_FALSE(r->waiting);
  EXPECT_LE(std::abs(NowMs() - r->unix_ms), 1000);
  const int64_t first = r->unix_ms;
  (*p)->SetOperation(5, true);
  std::this_thread::sleep_for(milliseconds(300));
  r = ReadHeartbeat(dir, 7);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->operation, 5);
  EXPECT_TRUE(r->waiting);
  EXPECT_GT(r->unix_ms, first);  // the thread keeps beating
  // Stopped: the file is no longer refreshed.
  p->reset();
  const int64_t last = ReadHeartbeat(dir, 7)->unix_ms;
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(ReadHeartbeat(dir, 7)->unix_ms, last);
  std::filesystem::remove_all(std::filesystem::path(dir).parent_path());
}

TEST(HeartbeatTest, MissingAndCorruptFiles) {
  const std::string dir = TempDir("hb_bad");
  auto r = ReadHeartbeat(dir, 3);
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  WriteFile(HeartbeatPath(dir, 3), "1700000000000 abc 4 1 host\n");
  r = ReadHeartbeat(dir, 3);
  ASSERT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find(HeartbeatPath(dir, 3) + ":1"), std::string::npos);
  EXPECT_NE(r.status().message().find("'pid'"), std::string::npos);
  WriteFile(HeartbeatPath(dir, 3), "1700000000000 12 4 2 host\n");
  r = ReadHeartbeat(dir, 3);
  ASSERT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("'waiting'"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(HeartbeatTest, ReportNamesSilentBehindAndUnknown) {
  const std::string dir = TempDir("hb_report");
  const int64_t now = 1700000100000;
  WriteFile(HeartbeatPath(dir, 10), std::to_string(now - 500) + " 100 9 1 a\n");    // self
  WriteFile(HeartbeatPath(dir, 11), std::to_string(now - 20000) + " 101 8 1 b\n");  // silent
  WriteFile(HeartbeatPath(dir, 12), std::to_string(now - 700) + " 102 8 0 c\n");    // behind
  WriteFile(HeartbeatPath(dir, 13), std::to_string(now - 300) + " 103 9 1 d\n");    // waiting
  // rank 14: no file
  std::vector<CollectiveMember> members = {{0, 10}, {1, 11}, {2, 12}, {3, 13}, {4, 14}};
  MemberReport r = ReportMembers(members, 0, dir, now, milliseconds(10000), 9, "worker");
  EXPECT_EQ(r.num_silent, 1);
  EXPECT_NE(r.silent.find("worker 1 (rank 11, pid 101 on b): heartbeat 20.0 s old"),
            std::string::npos)
      << r.silent;
  EXPECT_EQ(r.silent.find("rank 12"), std::string::npos) << r.silent;
  EXPECT_NE(r.behind.find("worker 2 (rank 12, pid 102 on c)"), std::string::npos) << r.behind;
  EXPECT_NE(r.behind.find("at operation #8"), std::string::npos) << r.behind;
  EXPECT_EQ(r.behind.find("rank 13"), std::string::npos) << r.behind;  // already waiting
  EXPECT_EQ(r.behind.find("rank 10"), std::string::npos) << r.behind;  // self
  EXPECT_NE(r.unknown.find("worker 4 (rank 14)"), std::string::npos) << r.unknown;
  // A longer silence limit: nobody is silent.
  r = ReportMembers(members, 0, dir, now, milliseconds(30000), 9, "worker");
  EXPECT_EQ(r.num_silent, 0);
  EXPECT_TRUE(r.silent.empty());
  std::filesystem::remove_all(dir);
}

// ---- 2 ranks ----------------------------------------------------------------

// A heartbeat dir both ranks share (rank 0 creates it).
std::string SharedDir(const std::string& what) {
  char buf[512] = {0};
  if (WorldRank() == 0) std::snprintf(buf, sizeof(buf), "%s", TempDir(what).c_str());
  MPI_Bcast(buf, sizeof(buf), MPI_CHAR, 0, MPI_COMM_WORLD);
  return buf;
}

CollectiveOptions TestOptions(const std::string& dir) {
  CollectiveOptions o;
  o.heartbeat_dir = dir;
  o.heartbeat_interval = milliseconds(100);
  o.silence = milliseconds(1500);
  o.deadline = milliseconds(20000);
  o.member_noun = "worker";
  return o;
}

TEST(MpiCollectiveTest, SumsGathersAndBarriers) {
  // Launched by ctest collective_mpi_2r with -np 2 (the plain collective_test
  // entry filters these out): any other size is a broken launch, not a skip.
  ASSERT_EQ(WorldSize(), 2)
      << "MpiCollectiveTest.* runs under mpirun -np 2 (ctest collective_mpi_2r)";
  const std::string dir = SharedDir("coll_ok");
  auto c = MpiCollective::Create(MPI_COMM_WORLD, TestOptions(dir));
  ASSERT_TRUE(c.ok()) << c.status();
  const int r = (*c)->rank();
  std::vector<float> f = {1.f + r, 2.f};
  ASSERT_TRUE((*c)->AllReduceSum(f.data(), f.size()).ok());
  EXPECT_FLOAT_EQ(f[0], 3.f);
  EXPECT_FLOAT_EQ(f[1], 4.f);
  double d = 1e10 + r;
  ASSERT_TRUE((*c)->AllReduceSum(&d, 1).ok());
  EXPECT_DOUBLE_EQ(d, 2e10 + 1);
  std::string all;
  const std::string mine(static_cast<size_t>(r + 1), static_cast<char>('a' + r));
  ASSERT_TRUE((*c)->GatherBytes(mine.data(), mine.size(), &all).ok());
  if (r == 0) {
    EXPECT_EQ(all, "abb");
  }
  ASSERT_TRUE((*c)->Barrier().ok());
  // Every member published its heartbeat, at the last operation (#5).
  for (int w = 0; w < 2; ++w) {
    auto hb = ReadHeartbeat(dir, w);
    ASSERT_TRUE(hb.ok()) << hb.status();
  }
  std::this_thread::sleep_for(milliseconds(250));
  EXPECT_EQ(ReadHeartbeat(dir, r)->operation, 5);
  c->reset();  // stops this rank's heartbeats: none may land in `dir` while it is removed
  MPI_Barrier(MPI_COMM_WORLD);
  if (r == 0) std::filesystem::remove_all(dir);
}

// A live member that is late past the deadline: DEADLINE_EXCEEDED naming it
// as not at the operation; the collective stays failed.
TEST(MpiCollectiveTest, DeadlineNamesTheLateMember) {
  ASSERT_EQ(WorldSize(), 2)
      << "MpiCollectiveTest.* runs under mpirun -np 2 (ctest collective_mpi_2r)";
  const std::string dir = SharedDir("coll_late");
  CollectiveOptions o = TestOptions(dir);
  o.deadline = milliseconds(600);
  auto c = MpiCollective::Create(MPI_COMM_WORLD, o);
  ASSERT_TRUE(c.ok()) << c.status();
  if ((*c)->rank() == 0) {
    const auto t0 = std::chrono::steady_clock::now();
    Status st = (*c)->Barrier();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st;
    EXPECT_NE(st.message().find("barrier #1"), std::string::npos) << st;
    EXPECT_NE(st.message().find("deadline 0.6 s"), std::string::npos) << st;
    EXPECT_NE(st.message().find("not at this operation: worker 1 (rank 1"), std::string::npos)
        << st;
    EXPECT_GE(s, 0.6);
    EXPECT_LT(s, 1.5);
    // Permanent: the next call returns the same error without waiting.
    Status again = (*c)->Barrier();
    EXPECT_EQ(again.message(), st.message());
  } else {
    std::this_thread::sleep_for(milliseconds(2000));  // live, beating, but late
    EXPECT_TRUE((*c)->Barrier().ok());                // completes against rank 0's posted barrier
  }
  const int rank = (*c)->rank();
  c->reset();  // stops this rank's heartbeats: none may land in `dir` while it is removed
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) std::filesystem::remove_all(dir);
}

// A member that stops (SIGSTOP: hung) while the other waits in an
// all-reduce: UNAVAILABLE within about the silence limit, naming it.
TEST(MpiCollectiveTest, SilentMemberIsNamedDeadOrHung) {
  ASSERT_EQ(WorldSize(), 2)
      << "MpiCollectiveTest.* runs under mpirun -np 2 (ctest collective_mpi_2r)";
  const std::string dir = SharedDir("coll_stop");
  auto c = MpiCollective::Create(MPI_COMM_WORLD, TestOptions(dir));
  ASSERT_TRUE(c.ok()) << c.status();
  static float value[1];  // rank 0's request may outlive the failed call
  value[0] = 1.f + (*c)->rank();
  if ((*c)->rank() == 0) {
    const auto t0 = std::chrono::steady_clock::now();
    Status st = (*c)->AllReduceSum(value, 1);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_EQ(st.code(), StatusCode::kUnavailable) << st;
    EXPECT_NE(st.message().find("all-reduce #1 (1 floats) by worker 0 (rank 0)"), std::string::npos)
        << st;
    EXPECT_NE(st.message().find("dead or hung"), std::string::npos) << st;
    EXPECT_NE(st.message().find("worker 1 (rank 1, pid "), std::string::npos) << st;
    EXPECT_GE(s, 1.2);  // about the silence limit (1.5 s after the last beat)
    EXPECT_LT(s, 5.0);
    // Wake rank 1 (its pid from its heartbeat) so the job can end.
    auto hb = ReadHeartbeat(dir, 1);
    ASSERT_TRUE(hb.ok()) << hb.status();
    kill(static_cast<pid_t>(hb->pid), SIGCONT);
  } else {
    raise(SIGSTOP);
    float mine = 2.f;
    EXPECT_TRUE((*c)->AllReduceSum(&mine, 1).ok());
    EXPECT_FLOAT_EQ(mine, 3.f);
  }
  const int rank = (*c)->rank();
  // Stops this rank's heartbeats: one landing in `dir` while rank 0 removed
  // it failed the test ("cannot remove: Directory not empty", 2 runs in ~60).
  c->reset();
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace freshet
