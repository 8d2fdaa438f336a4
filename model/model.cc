#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "model/deepfm_model.h"
#include "model/lr_model.h"

namespace freshet {
namespace {

// Upper bound on dense parameters: they are all-reduced every step.
constexpr size_t kMaxDenseParams = size_t{1} << 30;

Status ValidateShape(const ModelShape& shape) {
  if (shape.num_slots < 0 || shape.num_dense < 0 || shape.emb_dim < 0) {
    return InvalidArgument("model shape: negative size (num_slots " +
                           std::to_string(shape.num_slots) + ", num_dense " +
                           std::to_string(shape.num_dense) + ", emb_dim " +
                           std::to_string(shape.emb_dim) + ")");
  }
  if (static_cast<int>(shape.pooling.size()) != shape.num_slots) {
    return InvalidArgument("model shape: " + std::to_string(shape.pooling.size()) +
                           " pooling entries for " + std::to_string(shape.num_slots) + " slots");
  }
  for (int s = 0; s < shape.num_slots; ++s) {
    if (shape.pooling[s] != proto::SUM && shape.pooling[s] != proto::MEAN) {
      return InvalidArgument("model shape: slot " + std::to_string(s) + ": unknown pooling " +
                             std::to_string(static_cast<int>(shape.pooling[s])));
    }
  }
  return Status::OK();
}

Status ValidateConfig(const proto::ModelConfig& config) {
  if (!(config.dense_learning_rate() >= 0) || !std::isfinite(config.dense_learning_rate())) {
    return InvalidArgument("model: dense_learning_rate must be >= 0, got " +
                           std::to_string(config.dense_learning_rate()));
  }
  if (!(config.dense_l2() >= 0) || !std::isfinite(config.dense_l2())) {
    return InvalidArgument("model: dense_l2 must be >= 0, got " +
                           std::to_string(config.dense_l2()));
  }
  return Status::OK();
}

}  // namespace

StatusOr<std::unique_ptr<Model>> Model::Create(const proto::ModelConfig& config,
                                               const ModelShape& shape) {
  FRESHET_RETURN_IF_ERROR(ValidateShape(shape));
  FRESHET_RETURN_IF_ERROR(ValidateConfig(config));
  switch (config.kind()) {
    case proto::ModelConfig::LR:
      return std::unique_ptr<Model>(new LrModel(config, shape));
    case proto::ModelConfig::DEEPFM: {
      if (shape.emb_dim <= 0) {
        return InvalidArgument("model DEEPFM: emb_dim must be > 0, got " +
                               std::to_string(shape.emb_dim));
      }
      if (shape.num_slots <= 0) {
        return InvalidArgument("model DEEPFM: needs at least one slot");
      }
      std::vector<int> hidden;
      for (int l = 0; l < config.hidden_size(); ++l) {
        if (config.hidden(l) <= 0) {
          return InvalidArgument("model DEEPFM: hidden[" + std::to_string(l) +
                                 "] must be > 0, got " + std::to_string(config.hidden(l)));
        }
        hidden.push_back(config.hidden(l));
      }
      // Overflow-safe size check before allocating.
      double approx = 1.0 + shape.num_dense;
      double width = static_cast<double>(shape.num_slots) * shape.emb_dim + shape.num_dense;
      hidden.push_back(1);
      for (int h : hidden) {
        approx += width * h + h;
        width = h;
      }
      if (approx > static_cast<double>(kMaxDenseParams) ||
          static_cast<double>(shape.num_slots) * shape.emb_dim + shape.num_dense > 1e9) {
        return InvalidArgument("model DEEPFM: " + std::to_string(approx) +
                               " dense parameters, more than the limit " +
                               std::to_string(kMaxDenseParams));
      }
      return std::unique_ptr<Model>(new DeepFmModel(config, shape));
    }
    default:
      return InvalidArgument("model: unknown kind " + std::to_string(config.kind()));
  }
}

float Sigmoid(float x) {
  if (x >= 0) return 1.f / (1.f + std::exp(-x));
  const float e = std::exp(x);
  return e / (1.f + e);
}

double LogLoss(const float* logits, const float* labels, int n, float* dlogits) {
  if (n <= 0) return 0;
  double total = 0;
  const float inv_n = 1.f / static_cast<float>(n);
  for (int i = 0; i < n; ++i) {
    const double x = logits[i];
    const double y = labels[i];
    // -[y log s(x) + (1 - y) log(1 - s(x))] = log(1 + e^-|x|) + max(x, 0) - x y
    total += std::log1p(std::exp(-std::fabs(x))) + std::max(x, 0.0) - x * y;
    if (dlogits != nullptr) dlogits[i] = (Sigmoid(logits[i]) - labels[i]) * inv_n;
  }
  return total / n;
}

ModelShape JobModelShape(const proto::JobConfig& job, int num_slots, int num_dense) {
  ModelShape shape;
  shape.num_slots = num_slots;
  shape.num_dense = num_dense;
  for (const auto& s : job.features().slots()) shape.pooling.push_back(s.pooling());
  if (job.model().kind() == proto::ModelConfig::DEEPFM && job.features().slots_size() > 0) {
    for (const auto& t : job.tables().tables()) {
      if (t.name() == job.features().slots(0).table()) shape.emb_dim = static_cast<int>(t.dim());
    }
  }
  return shape;
}

}  // namespace freshet
