#include "model/model.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>

#include "model/deepfm_model.h"
#include "model/example.h"
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
  if (config.kind() != proto::ModelConfig::LAYERED &&
      (config.heads_size() > 0 || !config.serving_head().empty())) {
    return InvalidArgument(
        std::string(config.heads_size() > 0 ? "model.heads" : "model.serving_head") +
        ": only LAYERED models have heads, this one is " +
        proto::ModelConfig::Kind_Name(config.kind()));
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
  if (c.heads_size() > 0 && !head) {
    return Bad("model.heads", "the heads' towers read the deep part: needs hidden or cross_layers");
  }
  if (c.heads_size() == 0 && !c.serving_head().empty()) {
    return Bad("model.serving_head", "set, but the model has no heads");
  }
  bool serving_found = c.serving_head().empty();
  for (int k = 0; k < c.heads_size(); ++k) {
    const proto::HeadConfig& h = c.heads(k);
    const std::string f = "model.heads[" + std::to_string(k) + "]";
    if (h.name().empty()) return Bad(f + ".name", "must not be empty");
    int earlier = -1;
    for (int j = 0; j < k; ++j) {
      if (c.heads(j).name() == h.name()) return Bad(f + ".name", "'" + h.name() + "' listed twice");
      if (c.heads(j).name() == h.multiply_by()) earlier = j;
    }
    if (!h.label().empty() && !IsLabelColumn(h.label())) {
      return Bad(f + ".label", "must be empty (the main label) or a label column '" +
                                   std::string(kLabelColumnPrefix) + "...', got '" + h.label() +
                                   "'");
    }
    for (int l = 0; l < h.hidden_size(); ++l) {
      if (h.hidden(l) <= 0) {
        return Bad(f + ".hidden[" + std::to_string(l) + "]",
                   "must be > 0, got " + std::to_string(h.hidden(l)));
      }
    }
    if (!h.multiply_by().empty() && earlier < 0) {
      return Bad(f + ".multiply_by",
                 h.multiply_by() == h.name()
                     ? "a head cannot multiply by itself"
                     : "no earlier head named '" + h.multiply_by() +
                           "' (a head multiplies by one listed before it, so there are no cycles)");
    }
    serving_found = serving_found || h.name() == c.serving_head();
  }
  if (!serving_found) {
    return Bad("model.serving_head", "no head named '" + c.serving_head() + "'");
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

std::vector<ModelHead> ModelHeads(const proto::ModelConfig& config) {
  std::vector<ModelHead> heads;
  if (config.kind() != proto::ModelConfig::LAYERED || config.heads_size() == 0) {
    heads.emplace_back();
    return heads;
  }
  std::vector<std::string> labels;
  for (const proto::HeadConfig& h : config.heads()) {
    ModelHead head;
    head.name = h.name();
    head.label = h.label();
    if (!h.label().empty()) {
      auto it = std::find(labels.begin(), labels.end(), h.label());
      if (it == labels.end()) it = labels.insert(labels.end(), h.label());
      head.label_index = static_cast<int>(it - labels.begin());
    }
    for (size_t j = 0; j < heads.size(); ++j) {
      if (!h.multiply_by().empty() && heads[j].name == h.multiply_by()) {
        head.multiply_by = static_cast<int>(j);
      }
    }
    heads.push_back(std::move(head));
  }
  return heads;
}

std::vector<std::string> ModelLabelColumns(const proto::ModelConfig& config) {
  std::vector<std::string> columns;
  for (const ModelHead& h : ModelHeads(config)) {
    if (h.label_index >= static_cast<int>(columns.size())) columns.push_back(h.label);
  }
  return columns;
}

int ServingHead(const proto::ModelConfig& config) {
  const std::vector<ModelHead> heads = ModelHeads(config);
  for (size_t k = 0; k < heads.size(); ++k) {
    if (!config.serving_head().empty() && heads[k].name == config.serving_head()) {
      return static_cast<int>(k);
    }
  }
  return static_cast<int>(heads.size()) - 1;
}

const float* HeadLabels(const ModelHead& head, const EncodedBatch& batch) {
  if (head.label_index < 0) return batch.labels.data();
  CHECK_LT(head.label_index, static_cast<int>(batch.extra_labels.size()))
      << "the batch lacks label column '" << head.label << "'";
  CHECK_EQ(batch.extra_labels[head.label_index].size(), static_cast<size_t>(batch.size));
  return batch.extra_labels[head.label_index].data();
}

void HeadProbabilities(const std::vector<ModelHead>& heads, const float* logits, int n,
                       float* probs, float* own) {
  for (size_t k = 0; k < heads.size(); ++k) {
    const size_t o = k * static_cast<size_t>(n);
    const int parent = heads[k].multiply_by;
    for (int i = 0; i < n; ++i) {
      const float s = Sigmoid(logits[o + i]);
      if (own != nullptr) own[o + i] = s;
      probs[o + i] = parent < 0 ? s : s * probs[static_cast<size_t>(parent) * n + i];
    }
  }
}

double MultiHeadLoss(const std::vector<ModelHead>& heads, const float* logits,
                     const EncodedBatch& batch, float* dlogits, double* head_loss) {
  const int n = batch.size;
  const int nh = static_cast<int>(heads.size());
  if (nh == 1 && heads[0].multiply_by < 0) {
    const double l = LogLoss(logits, HeadLabels(heads[0], batch), n, dlogits);
    if (head_loss != nullptr) head_loss[0] = l;
    return l;
  }
  if (head_loss != nullptr) std::fill(head_loss, head_loss + nh, 0.0);
  if (n <= 0) return 0;
  const size_t N = static_cast<size_t>(n);
  // Per head and example, in double: s = sigmoid(z), log P, q = 1 - P
  // (computed as (1 - s) + s * q_parent, exact where P is near 1).
  std::vector<double> s(nh * N), logp(nh * N), q(nh * N), up(nh * N, 0.0);
  const double inv_n = 1.0 / n;
  double total = 0;
  for (int k = 0; k < nh; ++k) {
    const float* y = HeadLabels(heads[k], batch);
    const int parent = heads[k].multiply_by;
    double sum = 0;
    for (int i = 0; i < n; ++i) {
      const size_t a = k * N + i;
      const double x = logits[a];
      const double soft_neg = std::log1p(std::exp(-std::fabs(x))) + std::max(-x, 0.0);  // -log s
      const double one_minus_s = 1.0 / (1.0 + std::exp(x));
      s[a] = 1.0 / (1.0 + std::exp(-x));
      if (parent < 0) {
        logp[a] = -soft_neg;
        q[a] = one_minus_s;
        sum += std::log1p(std::exp(-std::fabs(x))) + std::max(x, 0.0) - x * y[i];
      } else {
        const size_t b = parent * N + i;
        logp[a] = -soft_neg + logp[b];
        q[a] = one_minus_s + s[a] * q[b];
        sum += y[i] > 0.5f ? -logp[a] : -std::log(std::max(q[a], 1e-300));
      }
    }
    if (head_loss != nullptr) head_loss[k] = sum * inv_n;
    total += sum * inv_n;
  }
  if (dlogits == nullptr) return total;
  // Backward over heads, children (later heads) first. up[k]: dLoss/dlog P_k
  // from the heads that multiply by k.
  for (int k = nh - 1; k >= 0; --k) {
    const float* y = HeadLabels(heads[k], batch);
    const int parent = heads[k].multiply_by;
    for (int i = 0; i < n; ++i) {
      const size_t a = k * N + i;
      const double one_minus_s = 1.0 / (1.0 + std::exp(static_cast<double>(logits[a])));
      double dz;
      if (parent < 0) {
        dz = (s[a] - y[i]) * inv_n + up[a] * one_minus_s;
      } else {
        // dLoss_k/dlog P = (P - y) / (1 - P) / n.
        const double p = std::exp(logp[a]);
        const double g = (p - y[i]) / std::max(q[a], 1e-300) * inv_n + up[a];
        dz = g * one_minus_s;
        up[parent * N + i] += g;
      }
      dlogits[a] = static_cast<float>(dz);
    }
  }
  return total;
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
