#include "model/features.h"

#include <glog/logging.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "common/checksum.h"
#include "common/sharding.h"

namespace freshet {
namespace {

constexpr uint64_t kFnvOffset = kFnv1aOffset;
constexpr uint64_t kFnvPrime = kFnv1aPrime;
constexpr size_t kMaxValueInMessage = 64;

uint64_t HashBytes(uint64_t salt, const char* data, size_t len) {
  uint64_t h = kFnvOffset ^ MixKey(salt);
  for (size_t i = 0; i < len; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= kFnvPrime;
  }
  return MixKey(h ^ static_cast<uint64_t>(len));
}

// `s`, shortened for error messages.
std::string Quote(const char* data, size_t len) {
  std::string q = "'";
  if (len > kMaxValueInMessage) {
    q.append(data, kMaxValueInMessage);
    q += "...";
  } else {
    q.append(data, len);
  }
  q += "'";
  return q;
}

// Parses the whole of [data, data + len) as a finite float.
bool ParseFloat(const char* data, size_t len, float* out) {
  if (len > 0 && data[0] == '+') {  // from_chars rejects a leading '+'
    ++data;
    --len;
  }
  if (len == 0) return false;
  float v = 0;
  const auto r = std::from_chars(data, data + len, v);
  if (r.ec != std::errc() || r.ptr != data + len || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

}  // namespace

uint64_t HashToken(uint64_t salt, const std::string& token) {
  return HashBytes(salt, token.data(), token.size());
}

StatusOr<std::unique_ptr<FeatureEncoder>> FeatureEncoder::Create(
    const proto::FeatureConfig& config, const std::vector<std::string>& columns,
    const std::vector<std::string>& label_columns) {
  std::unordered_map<std::string, int> index;
  for (size_t c = 0; c < columns.size(); ++c) index.emplace(columns[c], static_cast<int>(c));

  std::unique_ptr<FeatureEncoder> enc(new FeatureEncoder());
  enc->config_ = config;
  std::unordered_set<std::string> names;
  for (int s = 0; s < config.slots_size(); ++s) {
    const proto::SlotConfig& slot = config.slots(s);
    const std::string where = "slots[" + std::to_string(s) + "]";
    if (slot.name().empty()) return InvalidArgument(where + ": empty name");
    if (!names.insert(slot.name()).second) {
      return InvalidArgument("slot '" + slot.name() + "': duplicate slot name");
    }
    const std::string& column = slot.column().empty() ? slot.name() : slot.column();
    const auto it = index.find(column);
    if (it == index.end()) {
      return InvalidArgument("slot '" + slot.name() + "': column '" + column +
                             "' is not in the example header");
    }
    switch (slot.transform()) {
      case proto::SlotConfig::NONE:
      case proto::SlotConfig::LOG2_BUCKET:
        break;
      case proto::SlotConfig::BOUNDARIES: {
        const auto& b = slot.boundaries();
        if (b.empty()) {
          return InvalidArgument("slot '" + slot.name() + "': BOUNDARIES needs boundaries");
        }
        for (int j = 0; j < b.size(); ++j) {
          if (std::isnan(b[j]) || (j > 0 && !(b[j - 1] < b[j]))) {
            return InvalidArgument("slot '" + slot.name() +
                                   "': boundaries must be strictly ascending, boundaries[" +
                                   std::to_string(j) + "] = " + std::to_string(b[j]));
          }
        }
        break;
      }
      default:
        return InvalidArgument("slot '" + slot.name() + "': unknown transform " +
                               std::to_string(static_cast<int>(slot.transform())));
    }
    enc->slot_column_.push_back(it->second);
    enc->salt_.push_back(slot.salt() != 0 ? slot.salt() : HashToken(0, slot.name()));
  }

  names.clear();
  for (int d = 0; d < config.dense_size(); ++d) {
    const proto::DenseConfig& dense = config.dense(d);
    const std::string where = "dense[" + std::to_string(d) + "]";
    if (dense.name().empty()) return InvalidArgument(where + ": empty name");
    if (!names.insert(dense.name()).second) {
      return InvalidArgument("dense feature '" + dense.name() + "': duplicate name");
    }
    const std::string& column = dense.column().empty() ? dense.name() : dense.column();
    const auto it = index.find(column);
    if (it == index.end()) {
      return InvalidArgument("dense feature '" + dense.name() + "': column '" + column +
                             "' is not in the example header");
    }
    if (dense.transform() != proto::DenseConfig::IDENTITY &&
        dense.transform() != proto::DenseConfig::LOG1P) {
      return InvalidArgument("dense feature '" + dense.name() + "': unknown transform " +
                             std::to_string(static_cast<int>(dense.transform())));
    }
    enc->dense_column_.push_back(it->second);
  }
  for (const std::string& label : label_columns) {
    const auto it = index.find(label);
    if (!IsLabelColumn(label) || it == index.end()) {
      return InvalidArgument("model.heads: label column '" + label +
                             "' is not in the example header");
    }
    enc->label_column_.push_back(it->second);
    enc->label_names_.push_back(label);
  }
  return enc;
}

int FeatureEncoder::num_slots() const { return static_cast<int>(slot_column_.size()); }
int FeatureEncoder::num_dense() const { return static_cast<int>(dense_column_.size()); }
const proto::FeatureConfig& FeatureEncoder::config() const { return config_; }

Status FeatureEncoder::Encode(const Example* examples, int n, EncodedBatch* out) const {
  out->Reset(num_slots(), num_dense());
  for (int i = 0; i < n; ++i) {
    Status st = Append(examples[i], out);
    if (!st.ok()) return st.WithContext("example " + std::to_string(i));
  }
  return Status::OK();
}

Status FeatureEncoder::Append(const Example& example, EncodedBatch* out) const {
  const int ns = num_slots();
  const int nd = num_dense();
  if (out->size == 0 && (out->num_slots() != ns || out->num_dense != nd)) {
    out->Reset(ns, nd);
  }
  CHECK_EQ(out->num_slots(), ns) << "batch shape does not match the encoder";
  CHECK_EQ(out->num_dense, nd) << "batch shape does not match the encoder";

  // Appends keys and dense values; on error everything appended is cut off
  // again, so *out is unchanged. keys[s] has offsets[s].back() entries before.
  auto rollback = [&](int slots_touched) {
    for (int s = 0; s < slots_touched; ++s) out->keys[s].resize(out->offsets[s].back());
    out->dense.resize(static_cast<size_t>(out->size) * nd);
  };
  const auto bad_number = [&](const std::string& what, const std::string& column, const char* data,
                              size_t len) {
    return InvalidArgument(what + ", column '" + column + "': value " + Quote(data, len) +
                           " is not a number");
  };
  const auto column_name = [](const auto& cfg) -> const std::string& {
    return cfg.column().empty() ? cfg.name() : cfg.column();
  };

  // Label columns first: a bad one leaves *out untouched.
  for (size_t j = 0; j < label_column_.size(); ++j) {
    const int c = label_column_[j];
    if (c >= static_cast<int>(example.values.size())) {
      return InvalidArgument("label column '" + label_names_[j] + "': example has " +
                             std::to_string(example.values.size()) +
                             " values, the column is number " + std::to_string(c + 1));
    }
    const std::string& v = example.values[c];
    if (v != "0" && v != "1") {
      return InvalidArgument("label column '" + label_names_[j] + "': value " +
                             Quote(v.data(), v.size()) + " is not 0 or 1");
    }
  }

  for (int d = 0; d < nd; ++d) {
    const proto::DenseConfig& cfg = config_.dense(d);
    const int c = dense_column_[d];
    if (c >= static_cast<int>(example.values.size())) {
      rollback(0);
      return InvalidArgument("dense feature '" + cfg.name() + "', column '" + column_name(cfg) +
                             "': example has " + std::to_string(example.values.size()) +
                             " values, the column is number " + std::to_string(c + 1));
    }
    const std::string& v = example.values[c];
    float x = 0;
    if (!v.empty() && !ParseFloat(v.data(), v.size(), &x)) {
      rollback(0);
      return bad_number("dense feature '" + cfg.name() + "'", column_name(cfg), v.data(), v.size());
    }
    if (cfg.transform() == proto::DenseConfig::LOG1P) {
      x = static_cast<float>(std::log1p(std::max(static_cast<double>(x), 0.0)));
    }
    out->dense.push_back(x);
  }

  char buf[32];
  for (int s = 0; s < ns; ++s) {
    const proto::SlotConfig& cfg = config_.slots(s);
    const int c = slot_column_[s];
    if (c >= static_cast<int>(example.values.size())) {
      rollback(s);
      return InvalidArgument("slot '" + cfg.name() + "', column '" + column_name(cfg) +
                             "': example has " + std::to_string(example.values.size()) +
                             " values, the column is number " + std::to_string(c + 1));
    }
    const std::string& v = example.values[c];
    const uint64_t salt = salt_[s];
    std::vector<uint64_t>& keys = out->keys[s];

    // Hashes one token (after the slot's transform); false on a bad number.
    auto add = [&](const char* data, size_t len) {
      if (cfg.transform() == proto::SlotConfig::NONE) {
        keys.push_back(HashBytes(salt, data, len));
        return true;
      }
      float x = 0;
      if (!ParseFloat(data, len, &x)) return false;
      int64_t bucket = 0;
      if (cfg.transform() == proto::SlotConfig::LOG2_BUCKET) {
        bucket = static_cast<int64_t>(std::floor(std::log2(1.0 + std::max(double{x}, 0.0))));
      } else {  // BOUNDARIES
        const auto& b = cfg.boundaries();
        bucket = std::upper_bound(b.begin(), b.end(), x) - b.begin();
      }
      const auto r = std::to_chars(buf, buf + sizeof(buf), bucket);
      keys.push_back(HashBytes(salt, buf, static_cast<size_t>(r.ptr - buf)));
      return true;
    };

    if (!cfg.multi_valued()) {
      if (!v.empty() && !add(v.data(), v.size())) {
        rollback(s + 1);
        return bad_number("slot '" + cfg.name() + "'", column_name(cfg), v.data(), v.size());
      }
      continue;
    }
    size_t pos = 0;
    while (pos < v.size()) {
      if (v[pos] == ' ') {
        ++pos;
        continue;
      }
      size_t end = v.find(' ', pos);
      if (end == std::string::npos) end = v.size();
      if (!add(v.data() + pos, end - pos)) {
        rollback(s + 1);
        return bad_number("slot '" + cfg.name() + "'", column_name(cfg), v.data() + pos, end - pos);
      }
      pos = end;
    }
  }

  // Everything parsed: commit.
  for (int s = 0; s < ns; ++s) {
    out->offsets[s].push_back(static_cast<uint32_t>(out->keys[s].size()));
  }
  out->labels.push_back(example.label);
  if (out->extra_labels.size() != label_column_.size()) {
    CHECK_EQ(out->size, 0) << "batch has other label columns than the encoder";
    out->extra_labels.assign(label_column_.size(), {});
  }
  for (size_t j = 0; j < label_column_.size(); ++j) {
    out->extra_labels[j].push_back(example.values[label_column_[j]] == "1" ? 1.f : 0.f);
  }
  out->oracle.push_back(example.oracle);
  uint64_t user = 0;
  if (!example.user.empty()) {
    user = HashToken(0, example.user);
    if (user == 0) user = 1;
  }
  out->users.push_back(user);
  out->times.push_back(example.time);
  ++out->size;
  return Status::OK();
}

}  // namespace freshet
