// CreateCollective under mpirun (2 ranks): device cpu sums through MPI;
// device gpu either fails on every rank alike with a clear error (no GPU or
// no CUDA in the binary) or gives a collective that sums correctly.
#include "common/worker_collective.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace freshet {
namespace {

class MpiEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    int provided = 0;
    ASSERT_EQ(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), MPI_SUCCESS);
  }
  void TearDown() override { MPI_Finalize(); }
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new MpiEnvironment);

void ExpectSums(Collective* c) {
  const int r = c->rank(), n = c->size();
  std::vector<float> f = {1.f + r, -2.f * r, 0.5f};
  ASSERT_TRUE(c->AllReduceSum(f.data(), f.size()).ok());
  EXPECT_FLOAT_EQ(f[0], n + n * (n - 1) / 2.f);
  EXPECT_FLOAT_EQ(f[1], -1.f * n * (n - 1));
  EXPECT_FLOAT_EQ(f[2], 0.5f * n);
  double d = 1e10 + r;
  ASSERT_TRUE(c->AllReduceSum(&d, 1).ok());
  EXPECT_DOUBLE_EQ(d, 1e10 * n + n * (n - 1) / 2.0);
  std::string all;
  const std::string mine(static_cast<size_t>(r + 1), static_cast<char>('a' + r));
  ASSERT_TRUE(c->GatherBytes(mine.data(), mine.size(), &all).ok());
  if (r == 0 && n == 2) {
    EXPECT_EQ(all, "abb");
  }
  EXPECT_TRUE(c->Barrier().ok());
}

// ctest launches this binary with a fixed number of ranks and says how many
// in FRESHET_TEST_WORLD_SIZE (1: worker_collective_test, 2:
// worker_collective_mpi_2r); a launch with another size fails rather than
// quietly testing less.
TEST(CreateCollectiveTest, RunsOnTheLaunchedWorldSize) {
  const char* want = std::getenv("FRESHET_TEST_WORLD_SIZE");
  ASSERT_NE(want, nullptr) << "FRESHET_TEST_WORLD_SIZE is not set (ctest sets it)";
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  EXPECT_EQ(world, std::atoi(want));
}

TEST(CreateCollectiveTest, CpuUsesMpi) {
  std::string chosen;
  auto c = CreateCollective(MPI_COMM_WORLD, DeviceSpec(), &chosen);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(chosen, "mpi");
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  EXPECT_EQ((*c)->size(), world);
  ExpectSums(c->get());
}

TEST(CreateCollectiveTest, GpuIsAnErrorWithoutAGpuAndWorksWithOne) {
  auto spec = ParseDevice("gpu");
  ASSERT_TRUE(spec.ok());
  std::string chosen;
  auto c = CreateCollective(MPI_COMM_WORLD, *spec, &chosen);
  if (!CudaDeviceCount().ok()) {
    // No silent fallback: a clear error, on every rank (none left waiting).
    ASSERT_FALSE(c.ok());
    EXPECT_TRUE(c.status().code() == StatusCode::kUnavailable ||
                c.status().code() == StatusCode::kFailedPrecondition)
        << c.status();
    EXPECT_NE(c.status().message().find("device gpu"), std::string::npos) << c.status();
    return;
  }
  ASSERT_TRUE(c.ok()) << c.status();
  // NCCL when built in and each rank has its own GPU; MPI otherwise (two
  // ranks on one GPU).
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (BuiltWithNccl() && *CudaDeviceCount() >= world) {
    EXPECT_EQ(chosen, "nccl");
  } else {
    EXPECT_EQ(chosen, "mpi");
  }
  ExpectSums(c->get());
}

TEST(DeviceTest, ParseDevice) {
  EXPECT_EQ(ParseDevice("")->kind, DeviceKind::kCpu);
  EXPECT_EQ(ParseDevice("cpu")->ToString(), "cpu");
  EXPECT_EQ(ParseDevice("gpu")->ToString(), "gpu");
  EXPECT_EQ(ParseDevice("gpu:fp32")->ToString(), "gpu");
  EXPECT_EQ(ParseDevice("gpu:tf32")->precision, GemmPrecision::kTf32);
  EXPECT_EQ(ParseDevice("gpu:bf16")->ToString(), "gpu:bf16");
  auto bad = ParseDevice("cuda");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'cuda'"), std::string::npos);
}

TEST(DeviceTest, LocalRankFromEnvironment) {
  // Under mpirun, Open MPI sets OMPI_COMM_WORLD_LOCAL_RANK: on one node it
  // equals the world rank.
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  auto local = LocalRankFromEnv();
  ASSERT_TRUE(local.ok()) << local.status();
  if (std::getenv("OMPI_COMM_WORLD_LOCAL_RANK") != nullptr) {
    EXPECT_EQ(*local, rank);
  }
  if (!BuiltWithCuda()) {
    auto count = CudaDeviceCount();
    ASSERT_FALSE(count.ok());
    EXPECT_EQ(count.status().code(), StatusCode::kFailedPrecondition);
  }
}

TEST(DeviceTest, BadLocalRankIsAnError) {
  // Saved and restored: the other tests read the launcher's real value.
  const char* name = "OMPI_COMM_WORLD_LOCAL_RANK";
  const char* old = std::getenv(name);
  const std::string saved = old != nullptr ? old : "";
  ASSERT_EQ(setenv(name, "two", 1), 0);
  auto bad = LocalRankFromEnv();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("OMPI_COMM_WORLD_LOCAL_RANK='two'"), std::string::npos);
  ASSERT_EQ(setenv(name, "3", 1), 0);
  EXPECT_EQ(*LocalRankFromEnv(), 3);
  if (old != nullptr) {
    setenv(name, saved.c_str(), 1);
  } else {
    unsetenv(name);
  }
}

}  // namespace
}  // namespace freshet
