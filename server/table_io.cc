#include "server/table_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <tuple>

#include "common/checksum.h"
#include "common/file_io.h"

namespace freshet {
namespace {

constexpr char kMagic[8] = {'F', 'R', 'S', 'H', 'R', 'O', 'W', 'S'};
constexpr uint32_t kVersion = 2;  // 1: no kind, slot range or tombstones (still read)

class Fnv64 {
 public:
  void Update(const void* p, size_t n) { h_ = Fnv1aUpdate(h_, p, n); }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = kFnv1aOffset;
};

// The keys a file's tables delete: per table, sorted and unique.
using Tombstones = std::vector<std::vector<uint64_t>>;

Status WriteRows(const ParameterShard& shard, uint32_t kind, uint32_t changed_since,
                 const Tombstones& tombstones, const std::string& path, AtomicFileWriter* w) {
  w->Append(kMagic, sizeof(kMagic));
  w->AppendValue<uint32_t>(kVersion);
  w->AppendValue<uint32_t>(kind);
  // The slot range the file covers: the shard's (file name), else all.
  uint32_t first = 0, last = kNumSlots;
  int i = 0, n = 0;
  const std::string base = path.substr(path.rfind('/') + 1);
  if (std::sscanf(base.c_str(), "shard-%d-of-%d.rows", &i, &n) == 2 && n > 0 && i >= 0 && i < n) {
    std::tie(first, last) = SlotRange(i, n);
  }
  w->AppendValue<uint32_t>(first);
  w->AppendValue<uint32_t>(last);
  w->AppendValue<uint32_t>(static_cast<uint32_t>(shard.num_tables()));
  for (int t = 0; t < shard.num_tables(); ++t) {
    const EmbeddingTable* table = shard.table(t);
    const std::string& name = table->config().name();
    w->AppendValue<uint32_t>(static_cast<uint32_t>(name.size()));
    w->Append(name.data(), name.size());
    w->AppendValue<uint32_t>(static_cast<uint32_t>(table->dim()));
    w->AppendValue<uint32_t>(static_cast<uint32_t>(table->state_dim()));
    // Count first: ForEach holds partition locks, rows may be added between
    // calls only if training runs concurrently, which saving excludes.
    // Rows past their TTL are left out even before the sweep evicts them;
    // an incremental save writes only rows pushed since changed_since.
    auto keep = [&](const RowMeta& m) {
      return !table->Expired(m) && (changed_since == 0 || m.version > changed_since);
    };
    uint64_t rows = 0;
    table->ForEach([&](uint64_t, const float*, const float*, const RowMeta& m) {
      if (keep(m)) ++rows;
    });
    w->AppendValue<uint64_t>(rows);
    const size_t wbytes = table->dim() * sizeof(float);
    const size_t sbytes = table->state_dim() * sizeof(float);
    uint64_t written = 0;
    table->ForEach([&](uint64_t key, const float* weights, const float* state, const RowMeta& m) {
      if (written == rows || !keep(m)) return;
      w->AppendValue<uint64_t>(key);
      w->AppendValue<uint32_t>(m.update_count);
      w->AppendValue<uint32_t>(m.version);
      w->Append(weights, wbytes);
      if (sbytes) w->Append(state, sbytes);
      ++written;
    });
    if (written != rows) return Internal(path + ": table '" + name + "' changed while saving");
    const std::vector<uint64_t>& dead = tombstones[t];
    w->AppendValue<uint64_t>(dead.size());
    w->Append(dead.data(), dead.size() * sizeof(uint64_t));
  }
  w->AppendValue<uint64_t>(w->hash());
  return Status::OK();
}

}  // namespace

std::string ShardFileName(int shard, int num_shards) {
  return "shard-" + std::to_string(shard) + "-of-" + std::to_string(num_shards) + ".rows";
}

Status SaveShardRows(const ParameterShard& shard, const std::string& path, uint32_t changed_since) {
  // Nothing is pushed while saving, so `now` covers every row written.
  const uint32_t now = shard.version();
  uint32_t kind = kRowsFull;
  Tombstones tombstones(shard.num_tables());
  if (changed_since > 0) {
    kind = kRowsIncremental;
    for (int t = 0; t < shard.num_tables(); ++t) {
      const EmbeddingTable* table = shard.table(t);
      std::vector<uint64_t>& dead = tombstones[t];
      if (!table->TombstonesSince(changed_since, &dead)) {
        LOG(WARNING) << path << ": table '" << table->config().name()
                     << "' evicted more rows since the previous save than its tombstone log "
                        "holds; writing every row instead (a rebase)";
        kind = kRowsRebase;
      }
      // Rows past the TTL that the sweep has not reached yet are left out
      // of the file: delete them from the chain too.
      if (table->config().eviction().ttl_s() != 0) {
        table->ForEach([&](uint64_t key, const float*, const float*, const RowMeta& m) {
          if (table->Expired(m)) dead.push_back(key);
        });
      }
      std::sort(dead.begin(), dead.end());
      dead.erase(std::unique(dead.begin(), dead.end()), dead.end());
    }
    if (kind == kRowsRebase) {
      for (auto& dead : tombstones) dead.clear();
    }
  }
  const uint32_t since = kind == kRowsIncremental ? changed_since : 0;
  FRESHET_RETURN_IF_ERROR(WriteFileAtomicWith(path, [&](AtomicFileWriter* w) {
    return WriteRows(shard, kind, since, tombstones, path, w);
  }));
  // The next incremental save starts from `now`: older tombstones are done.
  for (int t = 0; t < shard.num_tables(); ++t) shard.table(t)->ForgetTombstones(now);
  return Status::OK();
}

RowFilter RowFilter::ForShard(int shard, int num_shards) {
  const auto [first, last] = SlotRange(shard, num_shards);
  RowFilter f;
  f.first_slot = first;
  f.last_slot = last;
  return f;
}

namespace {

// LoadShardRows; with `replace_all`, every row of every table is erased
// once the file is verified, before its rows go in (ReplaceShardRows).
Status LoadRows(const std::string& path, ParameterShard* shard, const RowFilter& filter,
                LoadRowsStats* stats, bool replace_all) {
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
  uint32_t version = 0, num_tables = 0, kind = kRowsFull;
  uint32_t first_slot = 0, last_slot = kNumSlots;
  if (!take(magic, 8) || std::memcmp(magic, kMagic, 8) != 0) return corrupt("bad magic");
  if (!take(&version, 4) || version < 1 || version > kVersion) {
    return corrupt("unsupported version " + std::to_string(version) + " (1.." +
                   std::to_string(kVersion) + " are known)");
  }
  if (version >= 2) {
    if (!take(&kind, 4) || !take(&first_slot, 4) || !take(&last_slot, 4)) {
      return corrupt("truncated header");
    }
    if (kind > kRowsRebase) return corrupt("bad kind " + std::to_string(kind));
    if (first_slot > last_slot || last_slot > kNumSlots) {
      return corrupt("bad slot range [" + std::to_string(first_slot) + ", " +
                     std::to_string(last_slot) + ")");
    }
  }
  if (!take(&num_tables, 4)) return corrupt("truncated");
  std::map<std::string, EmbeddingTable*> by_name;
  for (int t = 0; t < shard->num_tables(); ++t)
    by_name[shard->table(t)->config().name()] = shard->table(t);
  // Two passes: the first checks every table header and size, the second
  // applies the rows, so a bad file changes nothing.
  const size_t tables_begin = pos;
  int64_t read = 0, kept = 0, deleted = 0;
  for (const bool apply : {false, true}) {
    pos = tables_begin;
    read = kept = deleted = 0;
    if (apply && replace_all) {
      for (auto& [name, table] : by_name) {
        (void)name;
        table->EraseIf([](uint64_t) { return true; });
      }
    }
    if (apply && kind == kRowsRebase) {
      // The file holds every row of its slot range: what the chain loaded
      // there before is replaced.
      for (auto& [name, table] : by_name) {
        (void)name;
        table->EraseIf([&](uint64_t key) {
          const uint32_t s = SlotOf(key);
          return s >= first_slot && s < last_slot;
        });
      }
    }
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
      const size_t rows_pos = pos;
      pos += rows * row_bytes;
      uint64_t dead = 0;
      if (version >= 2) {
        if (!take(&dead, 8) || dead > (end - pos) / sizeof(uint64_t)) {
          return corrupt("table '" + name + "' tombstones truncated");
        }
        if (kind != kRowsIncremental && dead != 0) {
          return corrupt("table '" + name + "': a full file lists " + std::to_string(dead) +
                         " tombstones");
        }
      }
      const size_t dead_pos = pos;
      pos += dead * sizeof(uint64_t);
      if (!apply) continue;
      // Tombstones first: a key evicted and created again since the
      // previous save is in both, and must end up present.
      for (uint64_t d = 0; d < dead; ++d) {
        uint64_t key = 0;
        std::memcpy(&key, data.data() + dead_pos + d * sizeof(uint64_t), sizeof(key));
        if (filter.Keeps(key) && table->Erase(key)) ++deleted;
      }
      const size_t saved_pos = pos;
      pos = rows_pos;
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
      pos = saved_pos;
    }
    if (pos != end) return corrupt("trailing bytes after the last table");
  }
  if (stats != nullptr) {
    ++stats->files;
    stats->rows_read += read;
    stats->rows_kept += kept;
    stats->rows_deleted += deleted;
  }
  return Status::OK();
}

}  // namespace

Status LoadShardRows(const std::string& path, ParameterShard* shard, const RowFilter& filter,
                     LoadRowsStats* stats) {
  return LoadRows(path, shard, filter, stats, /*replace_all=*/false);
}

Status ReplaceShardRows(const std::string& path, ParameterShard* shard, LoadRowsStats* stats) {
  return LoadRows(path, shard, RowFilter(), stats, /*replace_all=*/true);
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
