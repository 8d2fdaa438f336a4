// CreateModel's device selection and its error paths (no GPU needed: where a
// GPU exists, the GPU branch checks the model it gets instead).
#include "model/model_factory.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace freshet {
namespace {

ModelShape Shape() {
  ModelShape s;
  s.num_slots = 2;
  s.num_dense = 3;
  s.emb_dim = 4;
  s.pooling = {proto::SUM, proto::MEAN};
  return s;
}

proto::ModelConfig DeepFm() {
  proto::ModelConfig c;
  c.set_kind(proto::ModelConfig::DEEPFM);
  c.add_hidden(8);
  c.set_seed(9);
  return c;
}

TEST(CreateModelTest, CpuIsModelCreate) {
  auto m = CreateModel(DeepFm(), Shape(), DeviceSpec());
  ASSERT_TRUE(m.ok()) << m.status();
  auto ref = Model::Create(DeepFm(), Shape());
  ASSERT_TRUE(ref.ok());
  ASSERT_EQ((*m)->NumDenseParams(), (*ref)->NumDenseParams());
  EXPECT_TRUE(std::equal((*m)->dense_params(), (*m)->dense_params() + (*m)->NumDenseParams(),
                         (*ref)->dense_params()));
  // Bad configs fail the same way on every device.
  proto::ModelConfig bad = DeepFm();
  bad.add_hidden(0);
  auto e = CreateModel(bad, Shape(), DeviceSpec());
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
}

TEST(CreateModelTest, GpuLrIsRejected) {
  proto::ModelConfig lr;
  lr.set_kind(proto::ModelConfig::LR);
  auto m = CreateModel(lr, Shape(), *ParseDevice("gpu"));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("only the DEEPFM model"), std::string::npos) << m.status();
}

TEST(CreateModelTest, GpuWithoutGpuIsAnErrorNotTheCpu) {
  for (const char* spelling : {"gpu", "gpu:tf32", "gpu:bf16"}) {
    auto m = CreateModel(DeepFm(), Shape(), *ParseDevice(spelling));
    if (CudaDeviceCount().ok()) {
      // A GPU exists: the model is the GPU one, initialized like the CPU's.
      ASSERT_TRUE(m.ok()) << m.status();
      auto ref = Model::Create(DeepFm(), Shape());
      ASSERT_TRUE(ref.ok());
      EXPECT_TRUE(std::equal((*m)->dense_params(), (*m)->dense_params() + (*m)->NumDenseParams(),
                             (*ref)->dense_params()));
      continue;
    }
    ASSERT_FALSE(m.ok()) << spelling << " must not fall back to the CPU";
    const StatusCode want =
        BuiltWithCuda() ? StatusCode::kUnavailable : StatusCode::kFailedPrecondition;
    EXPECT_EQ(m.status().code(), want) << m.status();
    EXPECT_NE(m.status().message().find(std::string("device ") + spelling), std::string::npos)
        << m.status();
  }
}

}  // namespace
}  // namespace freshet
