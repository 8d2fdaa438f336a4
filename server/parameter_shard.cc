#include "server/parameter_shard.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "common/config.h"

namespace freshet {

StatusOr<std::unique_ptr<ParameterShard>> ParameterShard::Create(const proto::TablesConfig& tables,
                                                                 int num_partitions,
                                                                 bool transport_only) {
  auto shard = std::unique_ptr<ParameterShard>(new ParameterShard());
  shard->transport_only_ = transport_only;
  for (int i = 0; i < tables.tables_size(); ++i) {
    FRESHET_ASSIGN_OR_RETURN(auto t, EmbeddingTable::Create(i, tables.tables(i), num_partitions));
    shard->tables_.push_back(std::move(t));
  }
  return shard;
}

Status ParameterShard::CheckRequest(int table, uint32_t dim) const {
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

void ParameterShard::SetRequestThreads(int threads) {
  request_pool_.reset();
  if (threads > 1) request_pool_ = std::make_unique<ThreadPool>(threads - 1);
  for (auto& t : tables_) t->SetRequestPool(request_pool_.get(), threads);
}

Status ParameterShard::HandlePull(int table, uint32_t dim, const uint64_t* keys, size_t n,
                                  float* out) {
  FRESHET_RETURN_IF_ERROR(CheckRequest(table, dim));
  pull_requests_.fetch_add(1, std::memory_order_relaxed);
  if (transport_only_) {
    std::memset(out, 0, n * dim * sizeof(float));
    return Status::OK();
  }
  // Rows a new row evicts are logged with the version the next push will
  // get, so the deletion and the checkpoint tombstone are newer than every
  // save or export that has already happened (version 0 would be forgotten
  // at once and the evicted row come back on restore).
  EmbeddingTable& t = *tables_[table];
  if (t.config().eviction().max_rows() == 0) {  // a pull evicts nothing: no version needed
    t.Pull(keys, n, out);
    return Status::OK();
  }
  const uint32_t version = BeginVersion(/*advance=*/false);
  t.Pull(keys, n, out, version);
  EndVersion(version);
  return Status::OK();
}

Status ParameterShard::HandlePush(int table, uint32_t dim, const uint64_t* keys, size_t n,
                                  const float* grads, int64_t event_time_s) {
  FRESHET_RETURN_IF_ERROR(CheckRequest(table, dim));
  push_requests_.fetch_add(1, std::memory_order_relaxed);
  if (transport_only_) return Status::OK();
  const uint32_t event_s = event_time_s <= 0
                               ? 0u
                               : static_cast<uint32_t>(std::min<int64_t>(
                                     event_time_s, std::numeric_limits<uint32_t>::max()));
  const uint32_t version = BeginVersion(/*advance=*/true);
  tables_[table]->Push(keys, n, grads, version, event_s);
  EndVersion(version);
  return Status::OK();
}

int64_t ParameterShard::EvictExpired() {
  const uint32_t version = BeginVersion(/*advance=*/true);
  int64_t evicted = 0;
  for (auto& t : tables_) evicted += t->EvictExpired(version);
  EndVersion(version);
  return evicted;
}

uint32_t ParameterShard::BeginVersion(bool advance) {
  std::lock_guard<std::mutex> lock(versions_mu_);
  const uint32_t v = version_.load(std::memory_order_relaxed) + 1;
  if (advance) version_.store(v, std::memory_order_relaxed);
  in_flight_.push_back(v);
  return v;
}

void ParameterShard::EndVersion(uint32_t version) {
  std::lock_guard<std::mutex> lock(versions_mu_);
  auto it = std::find(in_flight_.begin(), in_flight_.end(), version);
  *it = in_flight_.back();
  in_flight_.pop_back();
}

uint32_t ParameterShard::SettledVersion() const {
  std::lock_guard<std::mutex> lock(versions_mu_);
  uint32_t v = version_.load(std::memory_order_relaxed);
  for (uint32_t f : in_flight_) v = std::min(v, f - 1);
  return v;
}

TableStats ParameterShard::TotalTableStats() const {
  TableStats s;
  for (const auto& t : tables_) {
    const TableStats ts = t->stats();
    s.rows += ts.rows;
    s.bytes += ts.bytes;
    s.keys_pulled += ts.keys_pulled;
    s.keys_pushed += ts.keys_pushed;
    s.held_back_pushes += ts.held_back_pushes;
    s.held_back_pulls += ts.held_back_pulls;
    s.admitted += ts.admitted;
    s.evicted_ttl += ts.evicted_ttl;
    s.evicted_capacity += ts.evicted_capacity;
    s.deletions_dropped += ts.deletions_dropped;
    s.tombstones_dropped += ts.tombstones_dropped;
    s.export_full_scans += ts.export_full_scans;
    s.export_log_overflows += ts.export_log_overflows;
  }
  return s;
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

uint32_t ParameterShard::ExportChanged(uint32_t since,
                                       const std::function<void(const ExportedTable&)>& emit) {
  // Pushes still being applied hold the version back (their rows may not
  // carry their version yet when the tables are read).
  const uint32_t version_now = SettledVersion();
  std::vector<uint64_t> keys, deleted;
  std::vector<float> values;
  for (size_t t = 0; t < tables_.size(); ++t) {
    EmbeddingTable& table = *tables_[t];
    keys.clear();
    values.clear();
    if (since == 0) {  // every row: size the buffers once (no regrowth copies)
      const size_t rows = static_cast<size_t>(std::max<int64_t>(0, table.size()));
      keys.reserve(rows + rows / 64);
      values.reserve((rows + rows / 64) * static_cast<size_t>(table.dim()));
    }
    table.ChangedSince(since, version_now, &keys, &values);
    deleted.clear();
    table.TakeDeletions(since, &deleted);
    ExportedTable e;
    e.table = static_cast<uint32_t>(t);
    e.dim = static_cast<uint32_t>(table.dim());
    e.keys = keys.data();
    e.weights = values.data();
    e.n = keys.size();
    e.deleted = deleted.data();
    e.num_deleted = deleted.size();
    emit(e);
  }
  return version_now;
}

std::unique_ptr<ParameterShard> ParameterShard::Snapshot(int64_t* copied_bytes) const {
  auto copy = std::unique_ptr<ParameterShard>(new ParameterShard());
  int64_t total = 0;
  for (const auto& t : tables_) {
    int64_t bytes = 0;
    copy->tables_.push_back(t->Snapshot(&bytes));
    total += bytes;
  }
  copy->version_.store(version_.load());
  copy->pull_requests_.store(pull_requests_.load(std::memory_order_relaxed));
  copy->push_requests_.store(push_requests_.load(std::memory_order_relaxed));
  if (copied_bytes != nullptr) *copied_bytes = total;
  return copy;
}

}  // namespace freshet
