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
                                  const float* grads, uint32_t event_time_s) {
  FRESHET_RETURN_IF_ERROR(CheckTable(table, dim));
  push_requests_.fetch_add(1, std::memory_order_relaxed);
  if (transport_only_) return Status::OK();
  const uint32_t version = BeginVersion(/*advance=*/true);
  tables_[table]->Push(keys, n, grads, version, event_time_s);
  EndVersion(version);
  return Status::OK();
}

Status ParameterShard::PullFromBody(const MessageMeta& meta, const std::vector<char>& body,
                                    size_t reserve, std::vector<char>* out) {
  FRESHET_RETURN_IF_ERROR(CheckTable(meta.table, meta.dim));
  const size_t n = meta.num_keys;
  if (body.size() != n * sizeof(uint64_t)) {
    return InvalidArgument("PULL body has " + std::to_string(body.size()) + " bytes, expected " +
                           std::to_string(n * sizeof(uint64_t)) + " for " + std::to_string(n) +
                           " keys");
  }
  const size_t out_bytes = n * meta.dim * sizeof(float);
  out->reserve(out_bytes + reserve);
  out->resize(out_bytes);
  return HandlePull(meta.table, meta.dim, reinterpret_cast<const uint64_t*>(body.data()), n,
                    reinterpret_cast<float*>(out->data()));
}

Status ParameterShard::PushFromBody(const MessageMeta& meta, const std::vector<char>& body) {
  FRESHET_RETURN_IF_ERROR(CheckTable(meta.table, meta.dim));
  const size_t n = meta.num_keys;
  const size_t dim = meta.dim;  // a configured table's: small, so no overflow below
  const size_t want = n * sizeof(uint64_t) + n * dim * sizeof(float);
  if (body.size() != want) {
    return InvalidArgument("PUSH body has " + std::to_string(body.size()) + " bytes, expected " +
                           std::to_string(want) + " for " + std::to_string(n) + " keys of dim " +
                           std::to_string(dim));
  }
  const auto* keys = reinterpret_cast<const uint64_t*>(body.data());
  const auto* grads = reinterpret_cast<const float*>(body.data() + n * sizeof(uint64_t));
  // PUSH carries the batch's event time (unix s) in `watermark` (TTL).
  const int64_t et = meta.watermark;
  const uint32_t event_s =
      et <= 0 ? 0u
              : static_cast<uint32_t>(std::min<int64_t>(et, std::numeric_limits<uint32_t>::max()));
  return HandlePush(meta.table, meta.dim, keys, n, grads, event_s);
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

std::vector<char> ParameterShard::ExportChanged(uint32_t since, uint32_t* version_now) {
  // Pushes still being applied hold the version back (their rows may not
  // carry their version yet when the tables are read).
  *version_now = SettledVersion();
  std::vector<char> out;
  auto put = [&out](const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    out.insert(out.end(), c, c + n);
  };
  const uint32_t num_tables = static_cast<uint32_t>(tables_.size());
  put(&num_tables, 4);
  std::vector<uint64_t> keys, deleted;
  std::vector<float> values;
  for (uint32_t t = 0; t < num_tables; ++t) {
    EmbeddingTable& table = *tables_[t];
    const uint32_t dim = static_cast<uint32_t>(table.dim());
    keys.clear();
    values.clear();
    table.ChangedSince(since, *version_now, &keys, &values);
    const uint64_t n = keys.size();
    out.reserve(out.size() + 24 + n * sizeof(uint64_t) + values.size() * sizeof(float));
    put(&t, 4);
    put(&dim, 4);
    put(&n, 8);
    put(keys.data(), n * sizeof(uint64_t));
    put(values.data(), values.size() * sizeof(float));
    deleted.clear();
    table.TakeDeletions(since, &deleted);
    const uint64_t d = deleted.size();
    put(&d, 8);
    put(deleted.data(), d * sizeof(uint64_t));
  }
  return out;
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

Status ForEachExportedTable(const std::vector<char>& body,
                            const std::function<void(int, int, const uint64_t*, const float*,
                                                     size_t, const uint64_t*, size_t)>& fn) {
  size_t pos = 0;
  auto take = [&](void* out, size_t n) {
    if (n > body.size() - pos) return false;
    if (n > 0) std::memcpy(out, body.data() + pos, n);  // out may be null when n == 0
    pos += n;
    return true;
  };
  uint32_t num_tables = 0;
  if (!take(&num_tables, 4)) return DataLoss("export rows: truncated header");
  std::vector<uint64_t> keys, deleted;
  std::vector<float> values;
  for (uint32_t i = 0; i < num_tables; ++i) {
    uint32_t table = 0, dim = 0;
    uint64_t n = 0;
    if (!take(&table, 4) || !take(&dim, 4) || !take(&n, 8)) {
      return DataLoss("export rows: truncated table " + std::to_string(i));
    }
    // Table dims are 1..kMaxTableDim (ValidateTableConfig); a bigger one
    // would also turn negative as an int.
    if (dim == 0 || dim > kMaxTableDim || table > static_cast<uint32_t>(INT32_MAX)) {
      return DataLoss("export rows: table " + std::to_string(i) + " has id " +
                      std::to_string(table) + " and dim " + std::to_string(dim) + " (dims are 1.." +
                      std::to_string(kMaxTableDim) + ")");
    }
    if (n > (body.size() - pos) / (sizeof(uint64_t) + dim * sizeof(float))) {
      return DataLoss("export rows: truncated table " + std::to_string(i));
    }
    keys.resize(n);
    values.resize(n * dim);
    take(keys.data(), n * sizeof(uint64_t));
    take(values.data(), n * dim * sizeof(float));
    uint64_t d = 0;
    if (!take(&d, 8) || d > (body.size() - pos) / sizeof(uint64_t)) {
      return DataLoss("export rows: truncated deletions of table " + std::to_string(i));
    }
    deleted.resize(d);
    take(deleted.data(), d * sizeof(uint64_t));
    fn(static_cast<int>(table), static_cast<int>(dim), keys.data(), values.data(), n,
       deleted.data(), d);
  }
  if (pos != body.size()) return DataLoss("export rows: trailing bytes");
  return Status::OK();
}

}  // namespace freshet
