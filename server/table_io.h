// Saving and loading a server's rows: what a trained model is made of.
//
// File format (little-endian), one file per server shard
// (`<dir>/shard-<i>-of-<n>.rows`):
//   "FRSHROWS"  u32 version (1)  u32 num_tables
//   per table:  u32 name_len, name bytes, u32 dim, u32 state_dim, u64 rows,
//               rows x { u64 key, u32 update_count, u32 version,
//                        dim f32 weights, state_dim f32 optimizer state }
//   trailer:    u64 FNV-1a 64 of every byte before it
// Files are written to a temporary name, fsynced and renamed: a reader never
// sees half a file. Loading checks the magic, sizes and checksum and names
// the file and the problem (DataLoss) on any mismatch.
//
// Thread safety: functions are thread-safe w.r.t. the shard (tables lock).
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "server/parameter_shard.h"

namespace freshet {

std::string ShardFileName(int shard, int num_shards);

// Writes every row of every table of `shard` to `path`.
Status SaveShardRows(const ParameterShard& shard, const std::string& path);

// Upserts the rows in `path` into the tables of `shard` with the same
// names. InvalidArgument if a table is missing or its dim or state size
// differs; DataLoss for a corrupt file.
Status LoadShardRows(const std::string& path, ParameterShard* shard);

// Loads every `*.rows` file of `dir` (a saved model of any number of shards).
Status LoadModelRows(const std::string& dir, ParameterShard* shard);

}  // namespace freshet
