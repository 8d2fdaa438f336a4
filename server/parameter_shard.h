// ParameterShard: one server's slice of every table, and the pull/push logic,
// free of any transport: vectors in, vectors out, callable from a unit test.
//
// Thread safety: HandlePull/HandlePush/Stats are thread-safe (tables lock
// per partition).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/proto/table.pb.h"
#include "common/status.h"
#include "common/transport.h"
#include "server/embedding_table.h"

namespace freshet {

class ParameterShard {
 public:
  // REQUIRES: tables passed ValidateTablesConfig. Table ids are indices.
  static StatusOr<std::unique_ptr<ParameterShard>> Create(const proto::TablesConfig& tables,
                                                          int num_partitions);

  int num_tables() const { return static_cast<int>(tables_.size()); }
  // REQUIRES: 0 <= id < num_tables().
  EmbeddingTable* table(int id) { return tables_.at(id).get(); }
  const EmbeddingTable* table(int id) const { return tables_.at(id).get(); }

  // Fills out[n*dim]. InvalidArgument for an unknown table or a dim that
  // does not match the table's.
  Status HandlePull(int table, uint32_t dim, const uint64_t* keys, size_t n, float* out);
  // Applies grads[n*dim] with the table's optimizer.
  Status HandlePush(int table, uint32_t dim, const uint64_t* keys, size_t n, const float* grads);

  ServerStats Stats() const;

 private:
  Status CheckTable(int table, uint32_t dim) const;
  std::vector<std::unique_ptr<EmbeddingTable>> tables_;
  std::atomic<uint32_t> version_{0};
  std::atomic<int64_t> pull_requests_{0}, push_requests_{0};
};

}  // namespace freshet
