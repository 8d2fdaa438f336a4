#include "worker/dense_file.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common/checksum.h"
#include "model/model_factory.h"
#include "worker/job.h"

namespace freshet {
namespace {

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::unique_ptr<Model> TinyModel() {
  auto job = ParseJobConfig(R"(
    name: "j" data { train_files: "unused" }
    tables { tables { name: "wide" dim: 1 optimizer { sgd { learning_rate: 0.1 } } }
             tables { name: "emb" dim: 4 optimizer { sgd { learning_rate: 0.1 } } } }
    features { slots { name: "user" table: "emb" } slots { name: "item" table: "emb" } }
    model { kind: DEEPFM wide_table: "wide" hidden: [8, 4] })",
                            "job.pbtxt");
  EXPECT_TRUE(job.ok()) << job.status();
  auto model = CreateJobModel(*job, 2, 1);
  EXPECT_TRUE(model.ok()) << model.status();
  return std::move(model).value();
}

// Corrupt dense.bin files (the dense half of a saved model) are refused with
// DataLoss naming the file, and leave the model's parameters unchanged.
class DenseFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/freshet-dense-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/dense.bin";
    model_ = TinyModel();
    for (size_t i = 0; i < model_->NumDenseParams(); ++i) {
      model_->dense_params()[i] = 0.25f * static_cast<float>(i);
    }
    ASSERT_TRUE(SaveDense(*model_, path_).ok());
    good_ = ReadBytes(path_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void ExpectRefused(const std::string& bytes, const std::string& what,
                     const std::string& needle = "") {
    std::ofstream(path_, std::ios::binary | std::ios::trunc) << bytes;
    auto fresh = TinyModel();
    const std::vector<float> before(fresh->dense_params(),
                                    fresh->dense_params() + fresh->NumDenseParams());
    Status st = LoadDense(path_, fresh.get());
    ASSERT_FALSE(st.ok()) << what;
    EXPECT_EQ(st.code(), StatusCode::kDataLoss) << what << ": " << st;
    EXPECT_NE(st.message().find(path_), std::string::npos) << what << ": " << st;
    if (!needle.empty()) {
      EXPECT_NE(st.message().find(needle), std::string::npos) << what << ": " << st;
    }
    EXPECT_EQ(
        std::vector<float>(fresh->dense_params(), fresh->dense_params() + fresh->NumDenseParams()),
        before)
        << what;
  }

  std::string dir_, path_, good_;
  std::unique_ptr<Model> model_;
};

TEST_F(DenseFileTest, RoundTrip) {
  auto fresh = TinyModel();
  ASSERT_TRUE(LoadDense(path_, fresh.get()).ok());
  ASSERT_GT(fresh->NumDenseParams(), 10u);
  for (size_t i = 0; i < fresh->NumDenseParams(); ++i) {
    EXPECT_EQ(fresh->dense_params()[i], 0.25f * static_cast<float>(i));
  }
}

TEST_F(DenseFileTest, EveryFlippedByteIsRefused) {
  for (size_t i = 0; i < good_.size(); ++i) {
    std::string bad = good_;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    ExpectRefused(bad, "byte " + std::to_string(i));
  }
}

TEST_F(DenseFileTest, TruncationAndWrongFormatAreRefused) {
  for (size_t len : {size_t{0}, size_t{8}, size_t{16}, good_.size() / 2, good_.size() - 1}) {
    ExpectRefused(good_.substr(0, len), "truncated to " + std::to_string(len),
                  "not a dense parameter file");
  }
  ExpectRefused(good_ + "x", "one byte appended", "not a dense parameter file");
  // Another magic (a future format, or another file) with a valid checksum.
  std::string bad = good_;
  bad[7] = '2';
  const uint64_t h = Fnv1a64(bad.data(), bad.size() - 8);
  std::memcpy(bad.data() + bad.size() - 8, &h, 8);
  ExpectRefused(bad, "magic", "not a dense parameter file");
}

// The model-free reader (freshet_model_diff) reads the same file and
// refuses the optimizer state's magic.
TEST_F(DenseFileTest, ReadDenseParamsWithoutAModel) {
  auto values = ReadDenseParams(path_);
  ASSERT_TRUE(values.ok()) << values.status();
  ASSERT_EQ(values->size(), model_->NumDenseParams());
  for (size_t i = 0; i < values->size(); ++i)
    EXPECT_EQ((*values)[i], 0.25f * static_cast<float>(i));
  const std::string opt = dir_ + "/dense_opt.bin";
  ASSERT_TRUE(SaveDenseOptimizer(*model_, opt).ok());
  auto wrong = ReadDenseParams(opt);
  EXPECT_EQ(wrong.status().code(), StatusCode::kDataLoss) << wrong.status();
  EXPECT_NE(wrong.status().message().find("another magic"), std::string::npos) << wrong.status();
  EXPECT_EQ(ReadDenseParams(dir_ + "/missing.bin").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace freshet
