// NcclCollective under mpirun. One rank per GPU: with one GPU, one rank sums
// through NCCL; two ranks on one GPU must be refused on both ranks alike
// (FailedPrecondition, before NCCL is touched), two ranks on two GPUs sum.
// Skipped, with the reason, where no GPU exists.
#include "common/nccl_collective.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <string>
#include <vector>

#include "common/device.h"

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

#define SKIP_WITHOUT_GPU()                                                     \
  do {                                                                         \
    auto _count = CudaDeviceCount();                                           \
    if (!_count.ok()) GTEST_SKIP() << "no GPU: " << _count.status().message(); \
  } while (0)

int WorldSize() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// Sums through NCCL on this rank's GPU (one GPU per rank).
void ExpectNcclSums() {
  auto gpu = SelectLocalGpu();
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  auto c = NcclCollective::Create(MPI_COMM_WORLD, *gpu);
  ASSERT_TRUE(c.ok()) << c.status();
  NcclCollective& nc = **c;
  const int r = nc.rank(), n = nc.size();
  ASSERT_EQ(n, WorldSize());

  // Host floats, sizes across the staging buffer's growth.
  for (size_t len : {size_t{1}, size_t{1000}, size_t{1} << 20}) {
    std::vector<float> v(len);
    for (size_t i = 0; i < len; ++i) v[i] = static_cast<float>((i % 97) * (r + 1));
    ASSERT_TRUE(nc.AllReduceSum(v.data(), v.size()).ok());
    const float factor = n * (n + 1) / 2.f;
    for (size_t i = 0; i < len; i += 4099) ASSERT_FLOAT_EQ(v[i], (i % 97) * factor) << i;
    ASSERT_FLOAT_EQ(v[len - 1], ((len - 1) % 97) * factor);
  }
  std::vector<double> d = {1e12 + r, -0.25};
  ASSERT_TRUE(nc.AllReduceSum(d.data(), d.size()).ok());
  EXPECT_DOUBLE_EQ(d[0], 1e12 * n + n * (n - 1) / 2.0);
  EXPECT_DOUBLE_EQ(d[1], -0.25 * n);

  // Device memory, in place on a caller's stream.
  const size_t len = 3000;
  std::vector<float> h(len, 1.5f + r);
  void* mem = nullptr;
  ASSERT_EQ(cudaMalloc(&mem, len * sizeof(float)), cudaSuccess);
  float* dev = static_cast<float*>(mem);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dev, h.data(), len * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_TRUE(nc.AllReduceSumDevice(dev, len, s).ok());
  ASSERT_EQ(cudaMemcpy(h.data(), dev, len * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_FLOAT_EQ(h[0], 1.5f * n + n * (n - 1) / 2.f);
  EXPECT_FLOAT_EQ(h[len - 1], h[0]);
  // The same through the Collective interface (what DenseReducer calls).
  Collective& as_collective = nc;
  ASSERT_TRUE(as_collective.sums_on_device());
  ASSERT_TRUE(as_collective.AllReduceSumOnDevice(dev, len, s).ok());
  ASSERT_EQ(cudaMemcpy(h.data(), dev, len * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_FLOAT_EQ(h[0], (1.5f * n + n * (n - 1) / 2.f) * n);
  cudaStreamDestroy(s);
  cudaFree(dev);

  // Gather and barrier go through MPI.
  std::string all;
  const std::string mine(1, static_cast<char>('a' + r));
  ASSERT_TRUE(nc.GatherBytes(mine.data(), 1, &all).ok());
  if (r == 0) {
    EXPECT_EQ(all.size(), static_cast<size_t>(n));
  }
  EXPECT_TRUE(nc.Barrier().ok());
}

// Run with one rank (nccl_collective_mpi_1r).
TEST(NcclCollectiveTest, OneRank) {
  SKIP_WITHOUT_GPU();
  ASSERT_EQ(WorldSize(), 1) << "run under mpirun -np 1";
  ExpectNcclSums();
}

// Run with two ranks (nccl_collective_mpi_2r): with two GPUs, real sums;
// with one, both ranks drive GPU 0 and must be refused alike, before NCCL
// (which would refuse or hang) is touched.
TEST(NcclCollectiveTest, TwoRanks) {
  SKIP_WITHOUT_GPU();
  ASSERT_EQ(WorldSize(), 2) << "run under mpirun -np 2";
  if (*CudaDeviceCount() >= 2) {
    ExpectNcclSums();
    return;
  }
  auto c = NcclCollective::Create(MPI_COMM_WORLD, 0);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition) << c.status();
  EXPECT_NE(c.status().message().find("same GPU"), std::string::npos) << c.status();
}

}  // namespace
}  // namespace freshet
