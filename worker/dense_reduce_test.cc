// DenseReducer (worker/dense_reduce.h): which path it takes, that the host
// and device paths give the same sums, and that the trainer driving a model
// that keeps its dense gradient "on the device" trains bit for bit the same
// model as through host memory. The device here is host memory behind the
// DeviceDenseGradient interface (this box has no GPU); gpu_model_test and
// gpu_train_e2e run GpuDeepFmModel + NCCL where a GPU exists.
#include "worker/dense_reduce.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/collective.h"
#include "model/model_factory.h"
#include "server/local_sparse_store.h"
#include "server/parameter_shard.h"
#include "worker/data/internal/test_util.h"
#include "worker/job.h"
#include "worker/trainer.h"

namespace freshet {
namespace {

// A model around another one that keeps its dense gradient in a buffer of
// its own when Backward gets a null dense_grad, as GpuDeepFmModel keeps it
// in device memory. Stage scales in place and appends the extras; Fetch
// copies out. "stream" is a token the collective must get back.
class StagingModel final : public Model, public DeviceDenseGradient {
 public:
  explicit StagingModel(std::unique_ptr<Model> inner)
      : Model(inner->shape()), inner_(std::move(inner)) {
    // NaN where no gradient was written: a path that forgets to zero shows.
    device_.assign(inner_->NumDenseParams() + 16, std::numeric_limits<float>::quiet_NaN());
  }
  void Forward(const ModelInput& in, float* logits) override {
    valid_ = false;
    inner_->Forward(in, logits);
  }
  void Backward(const ModelInput& in, const float* dlogits, SparseGrads* grads,
                float* dense_grad) override {
    if (dense_grad != nullptr) {
      ++host_backwards;
      inner_->Backward(in, dlogits, grads, dense_grad);
      return;
    }
    inner_->Backward(in, dlogits, grads, device_.data());
    valid_ = true;
  }
  DeviceDenseGradient* device_dense_gradient() override { return this; }
  StatusOr<float*> StageDenseGradient(float scale, const float* extra, size_t n_extra,
                                      void** stream) override {
    const size_t n = inner_->NumDenseParams();
    if (scale == 0.f) {
      std::fill(device_.begin(), device_.begin() + n, 0.f);
    } else {
      EXPECT_TRUE(valid_) << "staged without a Backward";
      for (size_t i = 0; i < n; ++i) device_[i] *= scale;
    }
    std::copy(extra, extra + n_extra, device_.begin() + n);
    valid_ = false;
    ++stages;
    *stream = stream_token();
    return device_.data();
  }
  Status FetchDenseGradient(float* host, size_t n) override {
    std::copy(device_.begin(), device_.begin() + n, host);
    return Status::OK();
  }
  void* stream_token() { return &device_; }
  float* device_buffer() { return device_.data(); }

  size_t NumDenseParams() const override { return inner_->NumDenseParams(); }
  float* dense_params() override { return inner_->dense_params(); }
  void ApplyDenseGradient(const float* grad) override { inner_->ApplyDenseGradient(grad); }

  int host_backwards = 0;
  int stages = 0;

 private:
  std::unique_ptr<Model> inner_;
  std::vector<float> device_;
  bool valid_ = false;
};

// A group whose other members together always contribute `peer` (so a sum
// is visible; none: a group of one), on the host and, when `on_device`, on
// "device" memory too.
class PeerCollective final : public LocalCollective {
 public:
  PeerCollective(bool on_device, std::vector<float> peer)
      : on_device_(on_device), peer_(std::move(peer)) {}
  int size() const override { return peer_.empty() ? 1 : 2; }
  Status AllReduceSum(float* data, size_t n) override {
    host_sizes.push_back(n);
    Add(data, n);
    return Status::OK();
  }
  bool sums_on_device() const override { return on_device_; }
  Status AllReduceSumOnDevice(float* data, size_t n, void* stream) override {
    device_calls.push_back({data, n, stream});
    Add(data, n);
    return Status::OK();
  }
  struct Call {
    float* data;
    size_t n;
    void* stream;
  };
  std::vector<size_t> host_sizes;
  std::vector<Call> device_calls;

 private:
  void Add(float* data, size_t n) {
    for (size_t i = 0; i < n && i < peer_.size(); ++i) data[i] += peer_[i];
  }
  bool on_device_;
  std::vector<float> peer_;
};

constexpr char kDeepFmJob[] = R"(
  name: "j" batch_size: 4 epochs: 2 staleness: 0 data { train_files: "unused" }
  tables { tables { name: "wide" dim: 1 optimizer { adagrad { learning_rate: 0.1 } } }
           tables { name: "emb" dim: 4 initializer { kind: NORMAL scale: 0.1 seed: 3 }
                    optimizer { adagrad { learning_rate: 0.1 } } } }
  features { slots { name: "user" table: "emb" } slots { name: "item" table: "emb" } }
  model { kind: DEEPFM wide_table: "wide" hidden: [8, 4] seed: 5 })";

proto::JobConfig Job() {
  auto job = ParseJobConfig(kDeepFmJob, "job.pbtxt");
  EXPECT_TRUE(job.ok()) << job.status();
  return *job;
}

std::unique_ptr<Model> DeepFm() {
  auto model = CreateJobModel(Job(), 2, 0);
  EXPECT_TRUE(model.ok()) << model.status();
  return std::move(model).value();
}

// One Forward/Backward of a fixed 3-example batch through `model` (rows:
// small fixed values), with dense_grad as the reducer asks.
void OneStep(Model* model, DenseReducer* reducer) {
  EncodedBatch b;
  b.Reset(2, 0);
  std::vector<float> wide(6), emb(24);
  for (int i = 0; i < 3; ++i) {
    for (int s = 0; s < 2; ++s) {
      b.keys[s].push_back(static_cast<uint64_t>(10 * s + i));
      b.offsets[s].push_back(static_cast<uint32_t>(b.keys[s].size()));
    }
    b.labels.push_back(i == 1 ? 1.f : 0.f);
    b.oracle.push_back(-1);
    b.users.push_back(0);
    b.times.push_back(0);
    ++b.size;
  }
  for (size_t i = 0; i < emb.size(); ++i) emb[i] = 0.05f * static_cast<float>(i % 7) - 0.1f;
  for (size_t i = 0; i < wide.size(); ++i) wide[i] = 0.01f * static_cast<float>(i);
  ModelInput in;
  in.batch = &b;
  for (int s = 0; s < 2; ++s) {
    in.wide.push_back(wide.data() + 3 * s);
    in.emb.push_back(emb.data() + 12 * s);
  }
  std::vector<float> logits(3), dlogits(3);
  model->Forward(in, logits.data());
  for (int i = 0; i < 3; ++i) dlogits[i] = (1.f / (1.f + std::exp(-logits[i])) - b.labels[i]) / 3;
  SparseGrads grads;
  model->Backward(in, dlogits.data(), &grads, reducer->backward_dense_out());
}

TEST(DenseReducerTest, TakesTheDevicePathOnlyWhenModelCollectiveAndOptionAllAgree) {
  StagingModel staging(DeepFm());
  std::unique_ptr<Model> plain = DeepFm();
  PeerCollective device_sums(true, {}), host_sums(false, {});
  EXPECT_TRUE(DenseReducer(&staging, &device_sums, true).on_device());
  EXPECT_FALSE(DenseReducer(&staging, &device_sums, false).on_device());
  EXPECT_FALSE(DenseReducer(&staging, &host_sums, true).on_device());
  EXPECT_FALSE(DenseReducer(plain.get(), &device_sums, true).on_device());
  DenseReducer dev(&staging, &device_sums, true), host(&staging, &host_sums, true);
  EXPECT_EQ(dev.backward_dense_out(), nullptr);
  EXPECT_NE(host.backward_dense_out(), nullptr);
}

TEST(DenseReducerTest, DeviceAndHostPathsGiveTheSameSums) {
  const size_t nd = DeepFm()->NumDenseParams();
  std::vector<float> peer(nd + 3);
  for (size_t i = 0; i < peer.size(); ++i) peer[i] = 0.001f * static_cast<float>(i % 13) - 0.004f;
  const float extra[3] = {3.f, 1.25f, 1.f};

  // Host: the plain model's gradient, scaled, plus the peer's.
  std::unique_ptr<Model> plain = DeepFm();
  PeerCollective host_coll(false, peer);
  DenseReducer host(plain.get(), &host_coll, true);
  OneStep(plain.get(), &host);
  std::vector<float> grad(host.backward_dense_out(), host.backward_dense_out() + nd);
  std::vector<float> host_out(nd + 3);
  ASSERT_TRUE(host.Reduce(3.f, extra, 3, host_out.data()).ok());
  ASSERT_EQ(host_coll.host_sizes, std::vector<size_t>{nd + 3});
  double norm = 0;
  for (size_t i = 0; i < nd; ++i) {
    EXPECT_EQ(host_out[i], grad[i] * 3.f + peer[i]) << i;
    norm += std::fabs(grad[i]);
  }
  EXPECT_GT(norm, 0) << "the step produced no dense gradient: the test would prove nothing";
  for (int j = 0; j < 3; ++j) EXPECT_EQ(host_out[nd + j], extra[j] + peer[nd + j]);

  // Device: the same model (same initial parameters) keeping it "on the
  // device"; the collective must sum the model's own buffer, on its stream.
  StagingModel staging(DeepFm());
  PeerCollective dev_coll(true, peer);
  DenseReducer dev(&staging, &dev_coll, true);
  ASSERT_TRUE(dev.on_device());
  OneStep(&staging, &dev);
  EXPECT_EQ(staging.host_backwards, 0);
  std::vector<float> dev_out(nd + 3);
  ASSERT_TRUE(dev.Reduce(3.f, extra, 3, dev_out.data()).ok());
  ASSERT_EQ(dev_coll.device_calls.size(), 1u);
  EXPECT_TRUE(dev_coll.host_sizes.empty()) << "the device path went through host memory";
  EXPECT_EQ(dev_coll.device_calls[0].data, staging.device_buffer());
  EXPECT_EQ(dev_coll.device_calls[0].n, nd + 3);
  EXPECT_EQ(dev_coll.device_calls[0].stream, staging.stream_token());
  EXPECT_EQ(dev_out, host_out);
}

TEST(DenseReducerTest, WeightZeroContributesZerosWithoutABackward) {
  // No Backward ran: the device buffer holds NaN, which must not leak.
  StagingModel staging(DeepFm());
  const size_t nd = staging.NumDenseParams();
  PeerCollective dev_coll(true, {});
  DenseReducer dev(&staging, &dev_coll, true);
  std::vector<float> out(nd + 1, 7.f);
  const float extra[1] = {0.f};
  ASSERT_TRUE(dev.Reduce(0.f, extra, 1, out.data()).ok());
  for (float v : out) EXPECT_EQ(v, 0.f);

  std::unique_ptr<Model> plain = DeepFm();
  PeerCollective host_coll(false, {});
  DenseReducer host(plain.get(), &host_coll, true);
  std::fill(host.backward_dense_out(), host.backward_dense_out() + nd,
            std::numeric_limits<float>::quiet_NaN());
  std::fill(out.begin(), out.end(), 7.f);
  ASSERT_TRUE(host.Reduce(0.f, extra, 1, out.data()).ok());
  for (float v : out) EXPECT_EQ(v, 0.f);
}

using testing_util::VectorSource;

// Trains kDeepFmJob on `examples` with `model` (made for the job) and
// `collective`; returns the dense parameters.
std::vector<float> Train(Model* model, Collective* collective, bool allow_device,
                         const std::vector<Example>& examples) {
  proto::JobConfig job = Job();
  auto encoder = std::move(FeatureEncoder::Create(job.features(), {"user", "item"})).value();
  auto shard = std::move(ParameterShard::Create(job.tables(), 4)).value();
  LocalSparseStore store(shard.get());
  Trainer::Options o;
  o.batch_size = static_cast<int>(job.batch_size());
  o.epochs = static_cast<int>(job.epochs());
  o.staleness = 0;
  o.print_status = false;
  o.dense_allreduce_on_device = allow_device;
  auto trainer =
      std::move(Trainer::Create(job, encoder.get(), model, &store, collective, o)).value();
  auto stats = trainer->Train([&]() -> StatusOr<std::unique_ptr<ExampleSource>> {
    return std::unique_ptr<ExampleSource>(new VectorSource(examples));
  });
  EXPECT_TRUE(stats.ok()) << stats.status();
  return std::vector<float>(model->dense_params(), model->dense_params() + model->NumDenseParams());
}

TEST(DenseReducerTest, TrainerOnTheDevicePathTrainsTheSameModel) {
  std::mt19937 rng(7);
  std::vector<Example> examples;
  for (int i = 0; i < 37; ++i) {  // 10 batches of 4 per pass, the last one short
    Example ex;
    ex.user = "u" + std::to_string(rng() % 5);
    ex.values = {ex.user, "i" + std::to_string(rng() % 7)};
    ex.label = rng() % 3 == 0 ? 1.f : 0.f;
    ex.time = 1000 + i;
    examples.push_back(ex);
  }
  const std::unique_ptr<Model> start = DeepFm();
  const std::vector<float> initial(start->dense_params(),
                                   start->dense_params() + start->NumDenseParams());

  std::unique_ptr<Model> plain = DeepFm();
  PeerCollective host_coll(false, {});
  const std::vector<float> via_host = Train(plain.get(), &host_coll, true, examples);

  StagingModel staging(DeepFm());
  PeerCollective dev_coll(true, {});
  const std::vector<float> via_device = Train(&staging, &dev_coll, true, examples);

  EXPECT_NE(via_host, initial) << "training did not move the dense parameters";
  EXPECT_EQ(via_device, via_host);
  EXPECT_EQ(staging.host_backwards, 0);
  EXPECT_GE(staging.stages, 20);  // one per step: 2 passes of 10 batches
  EXPECT_EQ(dev_coll.device_calls.size(), static_cast<size_t>(staging.stages));
  for (size_t n : dev_coll.host_sizes) {
    EXPECT_NE(n, staging.NumDenseParams() + 3) << "a dense gradient went through host memory";
  }

  // The option off: the same model trains through host memory.
  StagingModel staging_off(DeepFm());
  PeerCollective dev_coll_off(true, {});
  const std::vector<float> forced_host = Train(&staging_off, &dev_coll_off, false, examples);
  EXPECT_EQ(forced_host, via_host);
  EXPECT_TRUE(dev_coll_off.device_calls.empty());
  EXPECT_GT(staging_off.host_backwards, 0);
}

}  // namespace
}  // namespace freshet
