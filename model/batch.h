// EncodedBatch: a batch of examples after feature encoding, in columnar form:
// what the trainer pulls embeddings for and what models consume.
//
// Slot s of example i owns keys[s][offsets[s][i] .. offsets[s][i+1]): the
// hashed 64-bit keys of its tokens (possibly none). Dense features are
// row-major: dense[i * num_dense + d].
//
// Thread safety: a plain value.
#pragma once

#include <cstdint>
#include <vector>

namespace freshet {

struct EncodedBatch {
  int size = 0;
  int num_dense = 0;
  std::vector<float> labels;                   // [size], 0 or 1
  std::vector<float> oracle;                   // [size], true P(y=1) when known, else -1
  std::vector<uint64_t> users;                 // [size], hashed user id for GAUC, 0 if none
  std::vector<int64_t> times;                  // [size], event time (unix seconds)
  std::vector<std::vector<uint64_t>> keys;     // [num_slots][total keys of slot]
  std::vector<std::vector<uint32_t>> offsets;  // [num_slots][size + 1]
  std::vector<float> dense;                    // [size * num_dense]
  // [label column][size]: the label columns the encoder was asked for
  // (ModelLabelColumns, model/model.h), 0 or 1.
  std::vector<std::vector<float>> extra_labels;

  int num_slots() const { return static_cast<int>(keys.size()); }
  // Resets to an empty batch with the given shape, keeping capacity (and
  // the number of extra label columns, emptied).
  void Reset(int num_slots, int num_dense);
};

}  // namespace freshet
