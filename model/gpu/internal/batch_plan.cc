#include "model/gpu/internal/batch_plan.h"

#include <glog/logging.h>

#include <algorithm>
#include <cstring>

#include "common/key_dedup.h"

namespace freshet {
namespace gpu_internal {

void BuildBatchPlan(const EncodedBatch& b, const std::vector<proto::Pooling>& pooling,
                    BatchPlan* p) {
  const int n = b.size;
  const int ns = b.num_slots();
  CHECK_EQ(static_cast<int>(pooling.size()), ns);
  p->n = n;
  p->num_slots = ns;
  p->key_base.assign(ns + 1, 0);
  p->row_base.assign(ns + 1, 0);
  uint64_t total = 0;
  for (int s = 0; s < ns; ++s) {
    CHECK_EQ(b.offsets[s].size(), static_cast<size_t>(n) + 1) << "slot " << s;
    CHECK_EQ(b.offsets[s].back(), b.keys[s].size()) << "slot " << s;
    p->key_base[s] = static_cast<uint32_t>(total);
    total += b.keys[s].size();
  }
  CHECK_LT(total, uint64_t{1} << 32) << "batch has too many keys for the GPU plan";
  p->key_base[ns] = static_cast<uint32_t>(total);
  p->num_occ = static_cast<uint32_t>(total);

  p->offsets.resize(static_cast<size_t>(ns) * (n + 1));
  p->occ_row.resize(total);
  p->row_slot.clear();
  p->row_first.clear();
  std::vector<uint32_t> row_count;  // occurrences per row
  uint32_t rows = 0;
  for (int s = 0; s < ns; ++s) {
    const uint32_t kb = p->key_base[s];
    for (int i = 0; i <= n; ++i)
      p->offsets[static_cast<size_t>(s) * (n + 1) + i] = kb + b.offsets[s][i];
    p->row_base[s] = rows;
    const Dedup d = Deduplicate(b.keys[s].data(), b.keys[s].size());
    const uint32_t nu = static_cast<uint32_t>(d.uniq.size());
    p->row_first.resize(rows + nu);
    p->row_slot.resize(rows + nu, static_cast<uint32_t>(s));
    row_count.resize(rows + nu, 0);
    // Walk backwards so the first occurrence is written last.
    for (size_t o = d.inverse.size(); o-- > 0;)
      p->row_first[rows + d.inverse[o]] = static_cast<uint32_t>(o);
    for (size_t o = 0; o < d.inverse.size(); ++o) {
      p->occ_row[kb + o] = rows + d.inverse[o];
      ++row_count[rows + d.inverse[o]];
    }
    rows += nu;
  }
  p->row_base[ns] = rows;
  p->num_rows = rows;

  // CSR of occurrences per row, occurrence order within a row.
  p->row_occ_off.resize(rows + 1);
  p->row_occ_off[0] = 0;
  for (uint32_t u = 0; u < rows; ++u) p->row_occ_off[u + 1] = p->row_occ_off[u] + row_count[u];
  p->occ_example.resize(total);
  p->occ_count.resize(total);
  std::vector<uint32_t> fill(p->row_occ_off.begin(), p->row_occ_off.end() - 1);
  for (int s = 0; s < ns; ++s) {
    const bool mean = pooling[s] == proto::MEAN;
    const uint32_t* off = b.offsets[s].data();
    const uint32_t kb = p->key_base[s];
    for (int i = 0; i < n; ++i) {
      const float count = mean ? static_cast<float>(off[i + 1] - off[i]) : 1.f;
      for (uint32_t k = off[i]; k < off[i + 1]; ++k) {
        const uint32_t c = fill[p->occ_row[kb + k]]++;
        p->occ_example[c] = static_cast<uint32_t>(i);
        p->occ_count[c] = count;
      }
    }
  }
}

void GatherRows(const BatchPlan& p, const std::vector<const float*>& src, int dim, float* rows) {
  const size_t d = static_cast<size_t>(dim);
  for (uint32_t u = 0; u < p.num_rows; ++u) {
    const float* from = src[p.row_slot[u]] + static_cast<size_t>(p.row_first[u]) * d;
    std::memcpy(rows + u * d, from, d * sizeof(float));
  }
}

void ScatterRowGrads(const BatchPlan& p, const float* row_grads, int dim,
                     std::vector<std::vector<float>>* out) {
  const size_t d = static_cast<size_t>(dim);
  out->resize(p.num_slots);
  for (int s = 0; s < p.num_slots; ++s) {
    std::vector<float>& g = (*out)[s];
    g.assign(static_cast<size_t>(p.key_base[s + 1] - p.key_base[s]) * d, 0.f);
    for (uint32_t u = p.row_base[s]; u < p.row_base[s + 1]; ++u) {
      std::memcpy(g.data() + static_cast<size_t>(p.row_first[u]) * d, row_grads + u * d,
                  d * sizeof(float));
    }
  }
}

}  // namespace gpu_internal
}  // namespace freshet
