// Saving and loading a server's rows: what a trained model is made of.
//
// File format (little-endian), one file per server shard
// (`<dir>/shard-<i>-of-<n>.rows`), version 2:
//   "FRSHROWS"  u32 version (2)  u32 kind  u32 first_slot  u32 last_slot
//               u32 num_tables
//   per table:  u32 name_len, name bytes, u32 dim, u32 state_dim, u64 rows,
//               rows x { u64 key, u32 update_count, u32 version,
//                        dim f32 weights, state_dim f32 optimizer state },
//               u64 tombstones, tombstones x u64 key
//   trailer:    u64 FNV-1a 64 of every byte before it
// kind: 0 full (every row), 1 incremental (rows pushed since the previous
// save, and tombstones: keys evicted since then, including rows past the
// TTL the sweep has not reached; only kind 1 lists tombstones), 2 rebase
// (every row, written in place of an incremental file when the tombstone
// log overflowed: EmbeddingTable::TombstonesSince). [first_slot, last_slot)
// is the slot range the file covers (common/sharding.h; the shard's, from
// its file name, or all slots). Version 1 files (no kind, range or
// tombstones: "FRSHROWS" u32 1 u32 num_tables, tables without the tombstone
// count) are still read, as full files.
// Files are written through common/file_io.h (temporary name, fsync,
// rename, directory fsync, bounded retries): a reader never sees half a
// file, and a failed save leaves the previous file untouched. Loading checks
// the magic, sizes and checksum and names the file and the problem
// (DataLoss) on any mismatch.
//
// Thread safety: functions are thread-safe w.r.t. the shard (tables lock).
#pragma once

#include <string>
#include <vector>

#include "common/sharding.h"
#include "common/status.h"
#include "server/parameter_shard.h"

namespace freshet {

std::string ShardFileName(int shard, int num_shards);

// Values of a .rows file's `kind`.
inline constexpr uint32_t kRowsFull = 0;
inline constexpr uint32_t kRowsIncremental = 1;
inline constexpr uint32_t kRowsRebase = 2;

// Writes every row of every table of `shard` to `path`; with
// changed_since > 0 only the rows whose RowMeta::version is greater (the
// rows pushed since the shard's version was changed_since: an incremental
// checkpoint, applied over its predecessor) plus the tombstones of rows
// evicted since, or, if the tombstone log overflowed since, every row as a
// rebase file (logged as a warning). REQUIRES: nothing pushes to `shard`
// during the save, and changed_since is 0 or the shard's version() at the
// previous successful save: on success the tombstones up to version() are
// forgotten. Errors: Internal naming the path and errno after the retries
// of common/file_io.h (the file at `path`, if any, is unchanged).
Status SaveShardRows(const ParameterShard& shard, const std::string& path,
                     uint32_t changed_since = 0);

// Which rows a load keeps: those whose key's slot (common/sharding.h SlotOf)
// lies in [first_slot, last_slot). The default keeps every row.
struct RowFilter {
  uint32_t first_slot = 0;
  uint32_t last_slot = kNumSlots;
  // The rows server `shard` of `num_shards` owns (SlotRange).
  // REQUIRES: 0 <= shard < num_shards.
  static RowFilter ForShard(int shard, int num_shards);
  bool Keeps(uint64_t key) const {
    const uint32_t s = SlotOf(key);
    return s >= first_slot && s < last_slot;
  }
};

// Counts of a load: rows read from the files, rows kept by the filter.
struct LoadRowsStats {
  int64_t files = 0;
  int64_t rows_read = 0;
  int64_t rows_kept = 0;
  int64_t rows_deleted = 0;  // rows removed by tombstones
};

// Upserts the rows in `path` that `filter` keeps into the tables of `shard`
// with the same names; an incremental file first removes its tombstones'
// rows, a rebase file first removes every row of its slot range. Loading a
// checkpoint chain full -> incremental ... in order therefore gives the
// live table at the last save (for rows ever pushed; rows only pulled are
// never in incremental files and are recreated alike by the initializer).
// The whole file is verified (checksum) before any row is changed. InvalidArgument if a table is
// missing or its dim or state size differs; DataLoss for a corrupt file. `stats` (may be null) is
// added to.
Status LoadShardRows(const std::string& path, ParameterShard* shard,
                     const RowFilter& filter = RowFilter(), LoadRowsStats* stats = nullptr);

// Replaces every row of every table of `shard` with the rows of `path` (a
// full file): the file is verified first (checksum, tables); then every row
// is erased and the file's rows upserted, so rows created after the save
// are gone and the shard equals the saved one. On a load error after the
// erase the shard is left empty of rows (the caller fails the job).
// REQUIRES: nothing pulls or pushes during the call.
Status ReplaceShardRows(const std::string& path, ParameterShard* shard,
                        LoadRowsStats* stats = nullptr);

// Loads the rows `filter` keeps from every `*.rows` file of `dir` (a saved
// model or checkpoint of any number of shards): restoring onto a different
// number of servers gives each server RowFilter::ForShard(s, S'). NotFound
// if `dir` has no `.rows` file.
Status LoadModelRows(const std::string& dir, ParameterShard* shard,
                     const RowFilter& filter = RowFilter(), LoadRowsStats* stats = nullptr);

}  // namespace freshet
