// End-to-end training on GPU workers (freshet_train --device=gpu under
// mpirun, one CPU parameter server): the same holdout AUC as the CPU worker
// (within 0.002), and two workers sharing one GPU fall back to the MPI
// all-reduce. Where no GPU exists, those are skipped with the reason, and
// asking for a GPU must fail loudly instead (DeviceSelect*).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <regex>
#include <string>

#include "common/device.h"
#include "tests/e2e_util.h"

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

std::string Train(const std::string& cluster, const std::string& extra) {
  return kBin + "/freshet_train --task=synthetic --job_config=" + kSrc +
         "/cluster-configs/jobs/synthetic.pbtxt --data_dir=" + kData + " --work_dir=" + kOut +
         "/gpu-e2e --save=false --cluster_config=" + kSrc + "/cluster-configs/" + cluster +
         ".pbtxt " + extra;
}

#define SKIP_WITHOUT_GPU()                                                     \
  do {                                                                         \
    auto _count = CudaDeviceCount();                                           \
    if (!_count.ok()) GTEST_SKIP() << "no GPU: " << _count.status().message(); \
  } while (0)

TEST(GpuTrainE2eTest, GpuWorkerReachesCpuWorkerAuc) {
  SKIP_WITHOUT_GPU();
  const std::string common = "--model=deepfm --staleness=0 --max_steps=600 ";
  CommandResult cpu = RunCommand(Mpirun(2) + Train("bench-1s1w", common + "--device=cpu"));
  ASSERT_EQ(cpu.rc, 0) << cpu.output;
  CommandResult gpu = RunCommand(Mpirun(2) + Train("bench-1s1w", common + "--device=gpu"));
  ASSERT_EQ(gpu.rc, 0) << gpu.output;
  EXPECT_NE(gpu.output.find("workers run on device gpu, all-reduce through nccl"),
            std::string::npos)
      << gpu.output;
  const double cpu_auc = Field(cpu.json, "holdout_auc"), gpu_auc = Field(gpu.json, "holdout_auc");
  std::printf("holdout AUC: cpu worker %.4f, gpu worker %.4f\n", cpu_auc, gpu_auc);
  EXPECT_EQ(Field(gpu.json, "steps"), 600);
  EXPECT_NEAR(gpu_auc, cpu_auc, 0.002) << gpu.json << "\n" << cpu.json;
  EXPECT_GT(gpu_auc, 0.75) << gpu.json;  // it learned (oracle ~0.885)
}

TEST(GpuTrainE2eTest, TwoWorkersOnOneGpuAllReduceThroughMpi) {
  SKIP_WITHOUT_GPU();
  CommandResult r =
      RunCommand(Mpirun(3) + Train("bench-1s2w", "--model=deepfm --max_steps=100 --device=gpu"));
  ASSERT_EQ(r.rc, 0) << r.output;
  const std::string via = *CudaDeviceCount() >= 2 ? "nccl" : "mpi";
  EXPECT_NE(r.output.find("all-reduce through " + via), std::string::npos) << r.output;
  EXPECT_EQ(Field(r.json, "workers"), 2);
  EXPECT_GT(Field(r.json, "holdout_auc"), 0.6) << r.json;
}

// Where there is no GPU, --device=gpu is an error naming the reason, on the
// local trainer and on a worker rank under mpirun (no hang, no CPU run).
TEST(DeviceSelectE2eTest, GpuWithoutGpuFailsLoudly) {
  if (CudaDeviceCount().ok()) GTEST_SKIP() << "this machine has a GPU";
  CommandResult local = RunCommand(Train("bench-1s1w", "--local --device=gpu"));
  EXPECT_NE(local.rc, 0) << local.output;
  EXPECT_NE(local.output.find("device gpu"), std::string::npos) << local.output;
  EXPECT_TRUE(local.output.find("no usable CUDA device") != std::string::npos ||
              local.output.find("built without CUDA") != std::string::npos)
      << local.output;
  EXPECT_EQ(local.json, "") << "no training result may be printed";
  CommandResult dist = RunCommand(Mpirun(2) + Train("bench-1s1w", "--model=deepfm --device=gpu"));
  EXPECT_NE(dist.rc, 0) << dist.output;
  EXPECT_NE(dist.output.find("device gpu"), std::string::npos) << dist.output;
  EXPECT_EQ(dist.json, "") << dist.output;
}

TEST(DeviceSelectE2eTest, UnknownDeviceIsRejected) {
  CommandResult r = RunCommand(Train("bench-1s1w", "--local --device=tpu"));
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("'tpu' is not one of cpu, gpu"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace freshet
