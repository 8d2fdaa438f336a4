#include "server/parameter_shard.h"

namespace freshet {

StatusOr<std::unique_ptr<ParameterShard>> ParameterShard::Create(
    const proto::TablesConfig& tables, int num_partitions) {
  auto shard = std::unique_ptr<ParameterShard>(new ParameterShard());
  for (int i = 0; i < tables.tables_size(); ++i) {
    FRESHET_ASSIGN_OR_RETURN(auto t, EmbeddingTable::Create(i, tables.tables(i), num_partitions));
    shard->tables_.push_back(std::move(t));
  }
  return shard;
}

Status ParameterShard::CheckTable(int table, uint32_t dim) const {
  if (table < 0 || table >= num_tables()) {
    return InvalidArgument("unknown table id " + std::to_string(table) + " (server has " +
                           std::to_string(num_tables()) + " tables)");
  }
  const int want = tables_[table]->dim();
  if (static_cast<int>(dim) != want) {
    return InvalidArgument("table '" + tables_[table]->config().name() + "' has dim " +
                           std::to_string(want) + ", request says " + std::to_string(dim));
  }
  return Status::OK();
}

Status ParameterShard::HandlePull(int table, uint32_t dim, const uint64_t* keys, size_t n,
                                  float* out) {
  FRESHET_RETURN_IF_ERROR(CheckTable(table, dim));
  pull_requests_.fetch_add(1, std::memory_order_relaxed);
  tables_[table]->Pull(keys, n, out);
  return Status::OK();
}

Status ParameterShard::HandlePush(int table, uint32_t dim, const uint64_t* keys, size_t n,
                                  const float* grads) {
  FRESHET_RETURN_IF_ERROR(CheckTable(table, dim));
  push_requests_.fetch_add(1, std::memory_order_relaxed);
  const uint32_t version = version_.fetch_add(1, std::memory_order_relaxed) + 1;
  tables_[table]->Push(keys, n, grads, version);
  return Status::OK();
}

ServerStats ParameterShard::Stats() const {
  ServerStats s;
  for (const auto& t : tables_) {
    TableStats ts = t->stats();
    s.rows += ts.rows;
    s.bytes += ts.bytes;
    s.keys_pulled += ts.keys_pulled;
    s.keys_pushed += ts.keys_pushed;
  }
  s.pull_requests = pull_requests_.load(std::memory_order_relaxed);
  s.push_requests = push_requests_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace freshet
