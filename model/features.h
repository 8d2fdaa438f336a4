// FeatureEncoder: turns Examples (raw column values) into an EncodedBatch of
// hashed slot keys and dense floats, as a FeatureConfig says.
//
// Key of a token t in slot s: HashToken(salt_s, t) = a 64-bit hash of the
// token's bytes seeded with the slot's salt (salt 0 in the config means
// HashToken(0, slot name)). Numeric slots first map the value to its bucket
// index, whose decimal text is the token. An empty single-valued value gives
// the slot no key for that example. Multi-valued columns split on spaces;
// empty tokens (repeated, leading or trailing spaces) are skipped.
//
// Numbers (numeric slots, dense features) are parsed with std::from_chars in
// the C locale, whole value, an optional leading '+'; they must be finite
// floats. An empty dense value is a missing value and encodes as 0 (before
// the transform). Transforms:
//   slot LOG2_BUCKET: floor(log2(1 + max(x, 0))), computed in double
//   slot BOUNDARIES:  index of the first boundary > x (boundaries.size() if
//                     none), compared as floats
//   dense LOG1P:      log(1 + max(x, 0))
// Users: EncodedBatch.users[i] = HashToken(0, user), or 0 for an empty user
// (a hash of 0 becomes 1).
//
// Thread safety: immutable after Create(); Encode() is const and may run on
// several threads with different batches.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/proto/job.pb.h"
#include "common/status.h"
#include "model/batch.h"
#include "model/example.h"

namespace freshet {

// 64-bit hash of `token` seeded with `salt` (stable across platforms and
// releases: keys in tables and snapshots depend on it). The definition, over
// the token's bytes b_0 .. b_{n-1} as unsigned 8-bit values, in uint64
// arithmetic (MixKey is murmur3's fmix64, common/sharding.h):
//   h = 0xcbf29ce484222325 ^ MixKey(salt)
//   for each byte: h = (h ^ b_i) * 0x100000001b3        (FNV-1a 64)
//   return MixKey(h ^ n)
// HashToken(0, "abc") == 0xec56ac5ddf8b1126 (pinned by features_test.cc).
uint64_t HashToken(uint64_t salt, const std::string& token);

class FeatureEncoder {
 public:
  // Resolves each slot's and dense feature's column against `columns` (an
  // example file's header). InvalidArgument naming the slot and the missing
  // column, or a bad transform (BOUNDARIES without ascending boundaries).
  // `label_columns` (ModelLabelColumns, model/model.h: what a multi-task
  // model's heads train on) are read into EncodedBatch::extra_labels, in
  // this order; each must be a "label:" column of the header
  // (InvalidArgument naming model.heads and the column otherwise). Their
  // values must be "0" or "1": anything else fails the example.
  static StatusOr<std::unique_ptr<FeatureEncoder>> Create(
      const proto::FeatureConfig& config, const std::vector<std::string>& columns,
      const std::vector<std::string>& label_columns = {});

  int num_slots() const;
  int num_dense() const;
  const proto::FeatureConfig& config() const;
  // The label columns given to Create, in EncodedBatch::extra_labels order.
  const std::vector<std::string>& label_columns() const { return label_names_; }

  // Encodes examples[0..n) into *out (Reset first). InvalidArgument naming
  // the example index, column and value when a numeric value or a label
  // column's value does not parse or the example has too few values (the caller counts it as a bad
  // record). On error *out holds the examples before the bad one.
  Status Encode(const Example* examples, int n, EncodedBatch* out) const;
  // Encodes one example appended to *out (out->size grows by one). On error
  // *out is unchanged (InvalidArgument as for Encode, without the index).
  // An empty *out (size 0) of another shape is Reset to this encoder's shape;
  // REQUIRES otherwise: *out has num_slots() slots and num_dense() features.
  Status Append(const Example& example, EncodedBatch* out) const;

 private:
  FeatureEncoder() = default;
  proto::FeatureConfig config_;
  std::vector<int> slot_column_;   // column index per slot
  std::vector<uint64_t> salt_;     // per slot
  std::vector<int> dense_column_;  // column index per dense feature
  std::vector<int> label_column_;  // column index per label column
  std::vector<std::string> label_names_;
};

}  // namespace freshet
