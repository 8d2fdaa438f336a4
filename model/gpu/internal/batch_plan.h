// BatchPlan: the host-side layout of one batch for the GPU model, built from
// an EncodedBatch before anything is copied to the device.
//
// Keys are deduplicated per slot (common/key_dedup.h, first-seen order):
// only one embedding row per distinct (slot, key) is copied to the device
// ("rows"), and sparse gradients are summed per row on the device, so both
// transfers scale with distinct keys instead of key occurrences.
//
// Numbering:
//   occurrence o: position of a key in the concatenation of batch.keys[0],
//                 batch.keys[1], ... (slot s's keys start at key_base[s])
//   row u:        a distinct key of one slot; slot s's rows are
//                 [row_base[s], row_base[s+1]), in first-seen order
//
// Thread safety: a plain value; BuildBatchPlan is reentrant.
#pragma once

#include <cstdint>
#include <vector>

#include "common/proto/job.pb.h"
#include "model/batch.h"

namespace freshet {
namespace gpu_internal {

struct BatchPlan {
  int n = 0;  // examples
  int num_slots = 0;
  uint32_t num_occ = 0;            // key occurrences, all slots
  uint32_t num_rows = 0;           // distinct (slot, key) rows
  std::vector<uint32_t> key_base;  // [num_slots + 1] first occurrence of each slot
  std::vector<uint32_t> row_base;  // [num_slots + 1] first row of each slot
  // [num_slots * (n + 1)]: occurrences of (example i, slot s) are
  // [offsets[s*(n+1)+i], offsets[s*(n+1)+i+1]) (global occurrence numbers).
  std::vector<uint32_t> offsets;
  std::vector<uint32_t> occ_row;   // [num_occ] row of each occurrence
  std::vector<uint32_t> row_slot;  // [num_rows] slot of each row
  std::vector<uint32_t>
      row_first;  // [num_rows] first occurrence of the row, index in its slot's keys
  // Occurrences grouped by row (CSR), in occurrence order within a row:
  // row u's occurrences are c in [row_occ_off[u], row_occ_off[u+1]).
  std::vector<uint32_t> row_occ_off;  // [num_rows + 1]
  std::vector<uint32_t> occ_example;  // [num_occ] example of occurrence c
  // [num_occ] pooling divisor of occurrence c: the key count of its
  // (example, slot) for MEAN slots, 1 for SUM slots.
  std::vector<float> occ_count;
};

// Fills *plan for `batch` (pooling per slot). Reuses plan's capacity.
// REQUIRES: batch well formed (offsets[s] has size + 1 entries ending at
// keys[s].size(); pooling has one entry per slot); fewer than 2^32 keys.
void BuildBatchPlan(const EncodedBatch& batch, const std::vector<proto::Pooling>& pooling,
                    BatchPlan* plan);

// Copies one pulled row per plan row: rows[u*dim .. +dim) = the slot's
// pulled row at its first occurrence (src[s] is ModelInput.wide[s] or
// .emb[s], aligned with batch.keys[s]; dim 1 for wide). Empty slots may
// have a null src.
void GatherRows(const BatchPlan& plan, const std::vector<const float*>& src, int dim, float* rows);

// The inverse for gradients: (*out)[s] gets one entry of `dim` floats per
// key of slot s: the row's summed gradient at the row's first occurrence
// and zeros at its other occurrences, so that summing duplicates (as every
// SparseStore push does) gives exactly the row's gradient.
void ScatterRowGrads(const BatchPlan& plan, const float* row_grads, int dim,
                     std::vector<std::vector<float>>* out);

}  // namespace gpu_internal
}  // namespace freshet
