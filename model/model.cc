#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "model/deepfm_model.h"
#include "model/layered_model.h"
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

bool HasInteraction(const proto::ModelConfig& c, proto::ModelConfig::Interaction what) {
  for (int i = 0; i < c.interactions_size(); ++i) {
    if (c.interactions(i) == what) return true;
  }
  return false;
}

Status Bad(const std::string& field, const std::string& problem) {
  return InvalidArgument(field + ": " + problem);
}

// LAYERED config against the shape; errors name the config field.
Status ValidateLayered(const proto::ModelConfig& c, const ModelShape& shape) {
  if (static_cast<int>(shape.slot_dims.size()) != shape.num_slots ||
      static_cast<int>(shape.slot_names.size()) != shape.num_slots ||
      static_cast<int>(shape.multi_valued.size()) != shape.num_slots) {
    return InvalidArgument(
        "model shape: LAYERED needs slot_dims, slot_names and multi_valued "
        "for each of the " +
        std::to_string(shape.num_slots) + " slots");
  }
  for (int i = 0; i < c.interactions_size(); ++i) {
    if (!proto::ModelConfig::Interaction_IsValid(c.interactions(i))) {
      return Bad("model.interactions[" + std::to_string(i) + "]", "unknown interaction");
    }
    for (int j = 0; j < i; ++j) {
      if (c.interactions(j) == c.interactions(i)) {
        return Bad("model.interactions[" + std::to_string(i) + "]",
                   proto::ModelConfig::Interaction_Name(c.interactions(i)) + " listed twice");
      }
    }
  }
  const bool fm = HasInteraction(c, proto::ModelConfig::FM);
  const bool ffm = HasInteraction(c, proto::ModelConfig::FFM);
  const bool cross = HasInteraction(c, proto::ModelConfig::CROSS);
  if (c.cross_layers() < 0) {
    return Bad("model.cross_layers", "must be >= 0, got " + std::to_string(c.cross_layers()));
  }
  if (c.cross_layers() > 32) {
    return Bad("model.cross_layers", "at most 32, got " + std::to_string(c.cross_layers()));
  }
  if (cross && c.cross_layers() == 0) {
    return Bad("model.cross_layers", "must be > 0 when model.interactions has CROSS");
  }
  if (!cross && c.cross_layers() > 0) {
    return Bad("model.interactions",
               "cross_layers is " + std::to_string(c.cross_layers()) + " but CROSS is not listed");
  }
  for (int l = 0; l < c.hidden_size(); ++l) {
    if (c.hidden(l) <= 0) {
      return Bad("model.hidden[" + std::to_string(l) + "]",
                 "must be > 0, got " + std::to_string(c.hidden(l)));
    }
  }
  const bool head = c.cross_layers() > 0 || c.hidden_size() > 0;
  if (!c.first_order() && !fm && !ffm && !head) {
    return Bad("model",
               "LAYERED needs at least one of first_order, interactions (FM, FFM, "
               "CROSS) or hidden");
  }
  int embedded = 0, fm_dim = -1;
  for (int s = 0; s < shape.num_slots; ++s) {
    if (shape.slot_dims[s] < 0) {
      return InvalidArgument("model shape: slot " + std::to_string(s) + ": negative dim");
    }
    if (shape.slot_dims[s] == 0) continue;
    ++embedded;
    if (fm && fm_dim >= 0 && shape.slot_dims[s] != fm_dim) {
      return Bad("features.slots[" + std::to_string(s) + "].table",
                 "FM needs one embedding dim for every slot: slot '" + shape.slot_names[s] +
                     "' has " + std::to_string(shape.slot_dims[s]) + ", earlier slots " +
                     std::to_string(fm_dim));
    }
    fm_dim = shape.slot_dims[s];
  }
  if ((fm || head || c.has_attention()) && embedded == 0) {
    return Bad("features.slots",
               "FM, CROSS, hidden and attention need slot embeddings: no slot "
               "has an embedding table");
  }
  if (ffm) {
    if (shape.num_slots == 0 || shape.ffm_dim <= 0 || shape.ffm_dim % shape.num_slots != 0) {
      return Bad("model.ffm_table", "FFM needs a table of dim num_slots * k (" +
                                        std::to_string(shape.num_slots) + " slots), got dim " +
                                        std::to_string(shape.ffm_dim));
    }
  }
  if (c.has_attention()) {
    const auto& a = c.attention();
    auto find = [&](const std::string& name) {
      for (int s = 0; s < shape.num_slots; ++s) {
        if (shape.slot_names[s] == name) return s;
      }
      return -1;
    };
    const int seq = find(a.sequence_slot());
    const int query = find(a.query_slot());
    if (seq < 0) {
      return Bad("model.attention.sequence_slot", "no slot named '" + a.sequence_slot() + "'");
    }
    if (query < 0) {
      return Bad("model.attention.query_slot", "no slot named '" + a.query_slot() + "'");
    }
    if (seq == query) {
      return Bad("model.attention.query_slot", "must differ from the sequence slot");
    }
    if (!shape.multi_valued[seq]) {
      return Bad("model.attention.sequence_slot",
                 "slot '" + a.sequence_slot() +
                     "' is single-valued; attention pools a sequence "
                     "(multi_valued: true)");
    }
    if (shape.slot_dims[seq] <= 0) {
      return Bad("model.attention.sequence_slot",
                 "slot '" + a.sequence_slot() + "' has no embedding table");
    }
    if (shape.slot_dims[query] != shape.slot_dims[seq]) {
      return Bad("model.attention.query_slot",
                 "slot '" + a.query_slot() + "' has dim " + std::to_string(shape.slot_dims[query]) +
                     ", the sequence slot '" + a.sequence_slot() + "' " +
                     std::to_string(shape.slot_dims[seq]) + "; they must be equal");
    }
    for (int l = 0; l < a.hidden_size(); ++l) {
      if (a.hidden(l) <= 0) {
        return Bad("model.attention.hidden[" + std::to_string(l) + "]",
                   "must be > 0, got " + std::to_string(a.hidden(l)));
      }
    }
  }
  const double n = LayeredModel::CountDenseParams(c, shape);
  if (n > static_cast<double>(kMaxDenseParams)) {
    return Bad("model", "LAYERED: " + std::to_string(n) +
                            " dense parameters, more than the limit " +
                            std::to_string(kMaxDenseParams));
  }
  return Status::OK();
}

}  // namespace

Status ValidateModel(const proto::ModelConfig& config, const ModelShape& shape) {
  FRESHET_RETURN_IF_ERROR(ValidateShape(shape));
  FRESHET_RETURN_IF_ERROR(ValidateConfig(config));
  if (config.kind() == proto::ModelConfig::LAYERED) return ValidateLayered(config, shape);
  return Status::OK();
}

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
    case proto::ModelConfig::LAYERED:
      FRESHET_RETURN_IF_ERROR(ValidateLayered(config, shape));
      return std::unique_ptr<Model>(new LayeredModel(config, shape));
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

bool ModelUsesFirstOrder(const proto::ModelConfig& model) {
  return model.kind() != proto::ModelConfig::LAYERED || model.first_order();
}

bool ModelUsesEmbeddings(const proto::ModelConfig& model) {
  switch (model.kind()) {
    case proto::ModelConfig::DEEPFM:
      return true;
    case proto::ModelConfig::LAYERED:
      return HasInteraction(model, proto::ModelConfig::FM) ||
             HasInteraction(model, proto::ModelConfig::CROSS) || model.cross_layers() > 0 ||
             model.hidden_size() > 0 || model.has_attention();
    default:
      return false;
  }
}

ModelShape JobModelShape(const proto::JobConfig& job, int num_slots, int num_dense) {
  ModelShape shape;
  shape.num_slots = num_slots;
  shape.num_dense = num_dense;
  std::map<std::string, int> dims;
  for (const auto& t : job.tables().tables()) dims[t.name()] = static_cast<int>(t.dim());
  const bool layered = job.model().kind() == proto::ModelConfig::LAYERED;
  const bool emb = ModelUsesEmbeddings(job.model());
  for (const auto& s : job.features().slots()) {
    shape.pooling.push_back(s.pooling());
    shape.slot_names.push_back(s.name());
    shape.multi_valued.push_back(s.multi_valued());
    if (layered) {
      const auto it = dims.find(s.table());
      shape.slot_dims.push_back(emb && !s.table().empty() && it != dims.end() ? it->second : 0);
    }
  }
  if (job.model().kind() == proto::ModelConfig::DEEPFM && job.features().slots_size() > 0) {
    const auto it = dims.find(job.features().slots(0).table());
    if (it != dims.end()) shape.emb_dim = it->second;
  }
  if (layered && HasInteraction(job.model(), proto::ModelConfig::FFM)) {
    const auto it = dims.find(job.model().ffm_table());
    if (it != dims.end()) shape.ffm_dim = it->second;
  }
  return shape;
}

StatusOr<ModelTables> JobModelTables(const proto::JobConfig& job) {
  std::map<std::string, int> ids;
  for (int i = 0; i < job.tables().tables_size(); ++i) ids[job.tables().tables(i).name()] = i;
  auto dim = [&](int id) { return static_cast<int>(job.tables().tables(id).dim()); };
  const proto::ModelConfig& m = job.model();
  ModelTables t;
  if (ModelUsesFirstOrder(m)) {
    const auto it = ids.find(m.wide_table());
    if (m.wide_table().empty()) return Bad("model.wide_table", "is required");
    if (it == ids.end()) return Bad("model.wide_table", "no table named '" + m.wide_table() + "'");
    if (dim(it->second) != 1) {
      return Bad("model.wide_table", "table '" + m.wide_table() + "' must have dim 1, has " +
                                         std::to_string(dim(it->second)));
    }
    t.wide = it->second;
  }
  const bool layered = m.kind() == proto::ModelConfig::LAYERED;
  const bool emb = ModelUsesEmbeddings(m);
  for (int s = 0; s < job.features().slots_size(); ++s) {
    const proto::SlotConfig& slot = job.features().slots(s);
    const std::string f = "features.slots[" + std::to_string(s) + "].table";
    int id = -1;
    if (emb && !(layered && slot.table().empty())) {
      const auto it = ids.find(slot.table());
      if (it == ids.end()) return Bad(f, "no table named '" + slot.table() + "'");
      if (t.wide >= 0 && it->second == t.wide) {
        return Bad(f, "must not be the wide table '" + slot.table() + "'");
      }
      id = it->second;
    }
    if (id >= 0 && m.kind() == proto::ModelConfig::DEEPFM && !t.emb.empty() &&
        dim(id) != dim(t.emb[0])) {
      return Bad(f, "DEEPFM slots must share one embedding dim: '" + slot.table() + "' has " +
                        std::to_string(dim(id)) + ", earlier slots " +
                        std::to_string(dim(t.emb[0])));
    }
    t.emb.push_back(id);
  }
  if (layered && HasInteraction(m, proto::ModelConfig::FFM)) {
    const auto it = ids.find(m.ffm_table());
    if (m.ffm_table().empty()) return Bad("model.ffm_table", "is required with FFM");
    if (it == ids.end()) return Bad("model.ffm_table", "no table named '" + m.ffm_table() + "'");
    const int slots = job.features().slots_size();
    if (slots == 0 || dim(it->second) % slots != 0) {
      return Bad("model.ffm_table",
                 "table '" + m.ffm_table() + "' has dim " + std::to_string(dim(it->second)) +
                     ", must be num_slots * k (" + std::to_string(slots) + " slots)");
    }
    if (it->second == t.wide) return Bad("model.ffm_table", "must not be the wide table");
    t.ffm = it->second;
  }
  return t;
}

}  // namespace freshet
