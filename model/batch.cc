#include "model/batch.h"

namespace freshet {

void EncodedBatch::Reset(int num_slots, int num_dense_features) {
  size = 0;
  num_dense = num_dense_features;
  labels.clear();
  oracle.clear();
  users.clear();
  times.clear();
  dense.clear();
  for (auto& l : extra_labels) l.clear();
  keys.resize(num_slots);
  offsets.resize(num_slots);
  for (int s = 0; s < num_slots; ++s) {
    keys[s].clear();
    offsets[s].assign(1, 0);
  }
}

}  // namespace freshet
