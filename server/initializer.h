// Deterministic row initialization: a new row's weights depend only on
// (initializer seed, table id, key), never on which worker pulled it first or
// on which server holds it (so resharding keeps values).
//
// Thread safety: pure function.
#pragma once

#include <cstdint>

#include "common/proto/table.pb.h"

namespace freshet {

// Writes `dim` initial weights of row `key` of table `table_id` into `out`.
void InitializeRow(const proto::Initializer& init, int table_id, uint64_t key, float* out, int dim);

}  // namespace freshet
