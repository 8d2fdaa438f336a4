#include "server/table_io.h"

#include "common/checksum.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>

namespace freshet {
namespace {

constexpr char kMagic[8] = {'F', 'R', 'S', 'H', 'R', 'O', 'W', 'S'};
constexpr uint32_t kVersion = 1;

class Fnv64 {
 public:
  void Update(const void* p, size_t n) { h_ = Fnv1aUpdate(h_, p, n); }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = kFnv1aOffset;
};

// Buffered writer that checksums what it writes.
class Writer {
 public:
  explicit Writer(std::FILE* f) : f_(f) { buf_.reserve(1 << 20); }
  void Put(const void* p, size_t n) {
    hash_.Update(p, n);
    const char* c = static_cast<const char*>(p);
    buf_.insert(buf_.end(), c, c + n);
    if (buf_.size() >= (1 << 20)) Flush();
  }
  template <typename T>
  void PutValue(T v) { Put(&v, sizeof(v)); }
  bool Flush() {
    if (!buf_.empty() && std::fwrite(buf_.data(), 1, buf_.size(), f_) != buf_.size()) ok_ = false;
    buf_.clear();
    return ok_;
  }
  uint64_t hash() const { return hash_.value(); }
  bool ok() const { return ok_; }

 private:
  std::FILE* f_;
  std::vector<char> buf_;
  Fnv64 hash_;
  bool ok_ = true;
};

}  // namespace

std::string ShardFileName(int shard, int num_shards) {
  return "shard-" + std::to_string(shard) + "-of-" + std::to_string(num_shards) + ".rows";
}

Status SaveShardRows(const ParameterShard& shard, const std::string& path, uint32_t changed_since) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return Internal(tmp + ": cannot create: " + std::strerror(errno));
  Writer w(f);
  w.Put(kMagic, sizeof(kMagic));
  w.PutValue<uint32_t>(kVersion);
  w.PutValue<uint32_t>(static_cast<uint32_t>(shard.num_tables()));
  for (int t = 0; t < shard.num_tables(); ++t) {
    const EmbeddingTable* table = shard.table(t);
    const std::string& name = table->config().name();
    w.PutValue<uint32_t>(static_cast<uint32_t>(name.size()));
    w.Put(name.data(), name.size());
    w.PutValue<uint32_t>(static_cast<uint32_t>(table->dim()));
    w.PutValue<uint32_t>(static_cast<uint32_t>(table->state_dim()));
    // Count first: ForEach holds partition locks, rows may be added between
    // calls only if training runs concurrently, which saving excludes.
    uint64_t rows = 0;
    // Rows past their TTL are left out even before the sweep evicts them;
    // an incremental save (changed_since > 0) writes only rows pushed since.
    table->ForEach([&](uint64_t, const float*, const float*, const RowMeta& m) {
      if (!table->Expired(m) && (changed_since == 0 || m.version > changed_since)) ++rows;
    });
    w.PutValue<uint64_t>(rows);
    const size_t wbytes = table->dim() * sizeof(float);
    const size_t sbytes = table->state_dim() * sizeof(float);
    uint64_t written = 0;
    table->ForEach([&](uint64_t key, const float* weights, const float* state, const RowMeta& m) {
      if (written == rows || table->Expired(m) || (changed_since > 0 && m.version <= changed_since)) {
        return;
      }
      w.PutValue<uint64_t>(key);
      w.PutValue<uint32_t>(m.update_count);
      w.PutValue<uint32_t>(m.version);
      w.Put(weights, wbytes);
      if (sbytes) w.Put(state, sbytes);
      ++written;
    });
    if (written != rows) {
      std::fclose(f);
      std::remove(tmp.c_str());
      return Internal(path + ": table '" + name + "' changed while saving");
    }
  }
  const uint64_t sum = w.hash();
  w.Put(&sum, sizeof(sum));
  bool ok = w.Flush() && std::fflush(f) == 0 && fsync(fileno(f)) == 0;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return Internal(path + ": write failed: " + std::strerror(errno));
  }
  return Status::OK();
}

RowFilter RowFilter::ForShard(int shard, int num_shards) {
  const auto [first, last] = SlotRange(shard, num_shards);
  RowFilter f;
  f.first_slot = first;
  f.last_slot = last;
  return f;
}

Status LoadShardRows(const std::string& path, ParameterShard* shard, const RowFilter& filter,
                     LoadRowsStats* stats) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return NotFound(path + ": cannot open: " + std::strerror(errno));
  std::vector<char> data;
  {
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) data.insert(data.end(), buf, buf + n);
    std::fclose(f);
  }
  auto corrupt = [&](const std::string& what) { return DataLoss(path + ": " + what); };
  if (data.size() < sizeof(kMagic) + 8 + sizeof(uint64_t)) return corrupt("truncated header");
  uint64_t stored;
  std::memcpy(&stored, data.data() + data.size() - sizeof(stored), sizeof(stored));
  Fnv64 h;
  h.Update(data.data(), data.size() - sizeof(stored));
  if (h.value() != stored) return corrupt("checksum mismatch (file corrupt or truncated)");
  size_t pos = 0;
  const size_t end = data.size() - sizeof(stored);
  auto take = [&](void* out, size_t n) {
    if (pos + n > end) return false;
    std::memcpy(out, data.data() + pos, n);
    pos += n;
    return true;
  };
  char magic[8];
  uint32_t version = 0, num_tables = 0;
  if (!take(magic, 8) || std::memcmp(magic, kMagic, 8) != 0) return corrupt("bad magic");
  if (!take(&version, 4) || version != kVersion) {
    return corrupt("unsupported version " + std::to_string(version));
  }
  if (!take(&num_tables, 4)) return corrupt("truncated");
  std::map<std::string, EmbeddingTable*> by_name;
  for (int t = 0; t < shard->num_tables(); ++t) by_name[shard->table(t)->config().name()] = shard->table(t);
  // Two passes: the first checks every table header and size, the second
  // applies the rows, so a bad file changes nothing.
  const size_t tables_begin = pos;
  int64_t read = 0, kept = 0;
  for (const bool apply : {false, true}) {
    pos = tables_begin;
    read = kept = 0;
    for (uint32_t t = 0; t < num_tables; ++t) {
      uint32_t name_len = 0, dim = 0, state_dim = 0;
      uint64_t rows = 0;
      if (!take(&name_len, 4) || name_len > 256) return corrupt("bad table name length");
      std::string name(name_len, '\0');
      if (!take(name.data(), name_len) || !take(&dim, 4) || !take(&state_dim, 4) ||
          !take(&rows, 8)) {
        return corrupt("truncated table header");
      }
      auto it = by_name.find(name);
      if (it == by_name.end()) {
        return InvalidArgument(path + ": table '" + name + "' is not configured");
      }
      EmbeddingTable* table = it->second;
      if (static_cast<int>(dim) != table->dim() ||
          static_cast<int>(state_dim) != table->state_dim()) {
        return InvalidArgument(path + ": table '" + name + "' has dim " + std::to_string(dim) +
                               " and state " + std::to_string(state_dim) + ", configured " +
                               std::to_string(table->dim()) + " and " +
                               std::to_string(table->state_dim()));
      }
      const size_t row_bytes = 16 + (static_cast<size_t>(dim) + state_dim) * sizeof(float);
      if (rows > (end - pos) / row_bytes) return corrupt("table '" + name + "' rows truncated");
      if (!apply) {
        pos += rows * row_bytes;
        continue;
      }
      std::vector<float> w(dim), s(state_dim);
      for (uint64_t r = 0; r < rows; ++r) {
        uint64_t key = 0;
        RowMeta meta;
        take(&key, 8);
        take(&meta.update_count, 4);
        take(&meta.version, 4);
        take(w.data(), dim * sizeof(float));
        if (state_dim) take(s.data(), state_dim * sizeof(float));
        ++read;
        if (!filter.Keeps(key)) continue;
        ++kept;
        table->Upsert(key, w.data(), state_dim ? s.data() : nullptr, meta);
      }
    }
    if (pos != end) return corrupt("trailing bytes after the last table");
  }
  if (stats != nullptr) {
    ++stats->files;
    stats->rows_read += read;
    stats->rows_kept += kept;
  }
  return Status::OK();
}

Status LoadModelRows(const std::string& dir, ParameterShard* shard, const RowFilter& filter,
                     LoadRowsStats* stats) {
  DIR* d = opendir(dir.c_str());
  if (!d) return NotFound(dir + ": cannot open model directory");
  std::vector<std::string> files;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".rows") == 0) files.push_back(name);
  }
  closedir(d);
  if (files.empty()) return NotFound(dir + ": no *.rows files (not a saved model?)");
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    FRESHET_RETURN_IF_ERROR(LoadShardRows(dir + "/" + f, shard, filter, stats));
  }
  return Status::OK();
}

}  // namespace freshet
