// ParameterShard: one server's slice of every table, and the pull/push logic,
// free of any transport: pointers in, pointers out, callable from a unit
// test. ServerNode (server_node.h) decodes requests (common/ps_wire.h),
// calls the shard and encodes the replies; the shard never sees a message.
//
// Thread safety: every method is thread-safe (tables lock per partition).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/proto/table.pb.h"
#include "common/ps_wire.h"  // plain structs only: ServerStats, ExportedTable
#include "common/status.h"
#include "server/embedding_table.h"

namespace freshet {

class ParameterShard {
 public:
  // REQUIRES: tables passed ValidateTablesConfig. Table ids are indices.
  // `transport_only` (benchmarks: freshet_ps_bench --table=none): requests
  // are checked and counted as usual, but pulls answer zeros and pushes are
  // acknowledged without touching a table, to measure the transport alone.
  static StatusOr<std::unique_ptr<ParameterShard>> Create(const proto::TablesConfig& tables,
                                                          int num_partitions,
                                                          bool transport_only = false);

  // Up to `threads` threads apply one large pull or push together, split by
  // partition (EmbeddingTable::SetRequestPool): the handler thread that got
  // it and threads - 1 of the shard's own. <= 1: the handler thread alone.
  // Call before the shard serves requests.
  void SetRequestThreads(int threads);

  int num_tables() const { return static_cast<int>(tables_.size()); }
  // REQUIRES: 0 <= id < num_tables().
  EmbeddingTable* table(int id) { return tables_.at(id).get(); }
  const EmbeddingTable* table(int id) const { return tables_.at(id).get(); }

  // OK if `table` exists and has dimension `dim`; InvalidArgument naming
  // the problem otherwise. HandlePull/HandlePush check it too; a server
  // checks it before it allocates a reply, so a hostile request cannot make
  // it allocate more than the request's keys times the row size.
  Status CheckRequest(int table, uint32_t dim) const;

  // Fills out[n*dim] (row i for keys[i]). InvalidArgument for an unknown
  // table or a dim that does not match the table's.
  Status HandlePull(int table, uint32_t dim, const uint64_t* keys, size_t n, float* out);
  // Applies grads[n*dim] with the table's optimizer. `event_time_s`: the
  // newest event time (unix s) of the batch the gradients came from (<= 0:
  // unknown; clamped to u32); the TTL is measured in it
  // (EmbeddingTable::Push).
  Status HandlePush(int table, uint32_t dim, const uint64_t* keys, size_t n, const float* grads,
                    int64_t event_time_s = 0);

  // Sweeps every table's TTL now (EmbeddingTable::EvictExpired) under a new
  // version, so the deletions reach the next export. Returns rows evicted.
  int64_t EvictExpired();

  // Every table's TableStats summed (rows, bytes, admission and eviction
  // counters).
  TableStats TotalTableStats() const;

  ServerStats Stats() const;

  // The shard's push counter: every push gets the next version, recorded in
  // the rows it touched (RowMeta::version).
  uint32_t version() const { return version_.load(); }

  // Rows pushed after version `since`, for the exporter: emit(t) once per
  // table, in table order (t's pointers are valid during the call only);
  // no key is listed twice in a table's rows (common/ps_wire.h encodes
  // them as an EXPORT_RESPONSE). Returns the newest version
  // all of whose pushes (and the ones before it) had been applied when the
  // export began (a push still being applied holds it back): every push up
  // to it is included (later ones may be too, and come again next time:
  // at-least-once). The exporter asks again with that version next, or
  // with the same `since` after a failed publish, or with 0 for a full
  // snapshot. Cost: each table answers from its per-partition change logs
  // (EmbeddingTable::ChangedSince), O(rows changed since the previous
  // cursor + deletions), not O(table); since 0, a cursor older than the
  // previous one, or a log dropped at its bound scans the rows instead
  // (TableStats::export_full_scans counts such delta exports' partitions).
  // Rows that were only pulled (version 0) are never
  // exported: readers initialize them as training does. Deleted keys are
  // rows evicted after `since` (EmbeddingTable::TakeDeletions: deletions at
  // or before `since` are forgotten, the exporter has them); a key can be
  // both deleted and upserted (evicted, then created again): readers apply
  // deletions first.
  uint32_t ExportChanged(uint32_t since, const std::function<void(const ExportedTable&)>& emit);

  // A copy of every table (EmbeddingTable::Snapshot: chunk memcpys under
  // each partition's lock) and of the version, to write a checkpoint from
  // (SaveShardRows) while this shard keeps serving. It is a consistent cut
  // only if no push runs while it is taken (ServerNode waits for its
  // handlers first). Only read from the copy. *copied_bytes (may be null):
  // the bytes the copy allocated, i.e. the extra memory while it lives
  // (about the tables' row bytes; see docs/CHECKPOINTS.md "Memory").
  std::unique_ptr<ParameterShard> Snapshot(int64_t* copied_bytes = nullptr) const;

 private:
  // SetRequestThreads; declared before tables_, so it outlives them.
  std::unique_ptr<ThreadPool> request_pool_;
  // Versions in use by requests still being applied (pushes and
  // EvictExpired with their own version; pulls that may evict with
  // version() + 1), so ExportChanged never reports a version whose
  // changes are not all in the rows yet. BeginVersion advances version_
  // (advance) or takes version_ + 1; EndVersion forgets it.
  uint32_t BeginVersion(bool advance);
  void EndVersion(uint32_t version);
  // The newest version v such that no request with a version <= v is
  // still being applied.
  uint32_t SettledVersion() const;
  std::vector<std::unique_ptr<EmbeddingTable>> tables_;
  mutable std::mutex versions_mu_;   // guards in_flight_ and writes of version_
  std::vector<uint32_t> in_flight_;  // one entry per request being applied
  std::atomic<uint32_t> version_{0};
  std::atomic<int64_t> pull_requests_{0}, push_requests_{0};
  bool transport_only_ = false;
};

}  // namespace freshet
