// Shared by the exporter's unit tests (snapshot_format_test.cc,
// export_dir_test.cc, model_loader_test.cc): a scratch directory, raw file
// bytes, small snapshots and a job, and comparisons of snapshots and
// loaded models.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/proto/job.pb.h"
#include "exporter/model_loader.h"
#include "exporter/snapshot_format.h"

namespace freshet {
namespace testing_internal {

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string tmpl = std::string(base ? base : "/tmp") + "/freshet_export_test.XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void WriteBytes(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline uint64_t Fnv(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

// Replaces the trailer with the checksum of the rest, in the algorithm of
// the format the header declares (a "valid" file whose content was edited).
inline std::string Reseal(std::string bytes) {
  const uint64_t h = SnapshotChecksum(bytes, bytes.size() - 8);
  std::memcpy(bytes.data() + bytes.size() - 8, &h, 8);
  return bytes;
}

inline std::set<std::string> ListDir(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.insert(e.path().filename().string());
  }
  return names;
}

inline SnapshotTable MakeTable(const std::string& name, int dim, const std::vector<uint64_t>& keys,
                               float base) {
  SnapshotTable t;
  t.name = name;
  t.dim = dim;
  t.keys = keys;
  for (size_t i = 0; i < keys.size(); ++i) {
    for (int j = 0; j < dim; ++j) t.values.push_back(base + keys[i] * 0.25f + j);
  }
  return t;
}

inline Snapshot MakeFull(uint64_t version) {
  Snapshot s;
  s.kind = Snapshot::Kind::kFull;
  s.version = version;
  s.watermark = 1700000000 + static_cast<int64_t>(version);
  s.has_dense = true;
  s.dense = {1.5f, -2.0f, static_cast<float>(version)};
  s.tables.push_back(MakeTable("user", 4, {1, 2, 3, 100}, static_cast<float>(version)));
  s.tables.push_back(MakeTable("wide", 1, {7, 8}, static_cast<float>(version)));
  return s;
}

inline Snapshot MakeDelta(uint64_t version, const std::vector<uint64_t>& upserts,
                          const std::vector<uint64_t>& deleted) {
  Snapshot s;
  s.kind = Snapshot::Kind::kDelta;
  s.version = version;
  s.watermark = 1700000000 + static_cast<int64_t>(version);
  SnapshotTable t = MakeTable("user", 4, upserts, static_cast<float>(version) * 100);
  t.deleted = deleted;
  s.tables.push_back(std::move(t));
  return s;
}

inline proto::JobConfig MakeJob() {
  proto::JobConfig job;
  job.set_name("export-test");
  auto* t = job.mutable_tables()->add_tables();
  t->set_name("user");
  t->set_dim(4);
  t = job.mutable_tables()->add_tables();
  t->set_name("wide");
  t->set_dim(1);
  t = job.mutable_tables()->add_tables();
  t->set_name("empty");
  t->set_dim(8);
  return job;
}

inline void ExpectSameSnapshot(const Snapshot& a, const Snapshot& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.watermark, b.watermark);
  EXPECT_EQ(a.has_dense, b.has_dense);
  EXPECT_EQ(a.dense, b.dense);
  ASSERT_EQ(a.tables.size(), b.tables.size());
  for (size_t i = 0; i < a.tables.size(); ++i) {
    EXPECT_EQ(a.tables[i].name, b.tables[i].name);
    EXPECT_EQ(a.tables[i].dim, b.tables[i].dim);
    EXPECT_EQ(a.tables[i].keys, b.tables[i].keys);
    EXPECT_EQ(a.tables[i].values, b.tables[i].values);
    EXPECT_EQ(a.tables[i].deleted, b.tables[i].deleted);
  }
}

// Every row of `t` as key -> values (order-independent comparison).
inline std::map<uint64_t, std::vector<float>> Rows(const LoadedTable& t) {
  std::map<uint64_t, std::vector<float>> rows;
  t.ForEach([&](uint64_t key, const float* w) {
    EXPECT_EQ(rows.count(key), 0u) << "key " << key << " listed twice";
    rows[key].assign(w, w + t.dim());
    EXPECT_TRUE(t.contains(key)) << "lookup broken for key " << key;
  });
  EXPECT_EQ(rows.size(), t.size());
  return rows;
}

inline void ExpectSameModel(const LoadedExport& a, const LoadedExport& b) {
  EXPECT_EQ(a.manifest.SerializeAsString(), b.manifest.SerializeAsString());
  EXPECT_EQ(a.dense, b.dense);
  ASSERT_EQ(a.tables.size(), b.tables.size());
  for (const auto& [name, t] : a.tables) {
    auto it = b.tables.find(name);
    ASSERT_TRUE(it != b.tables.end()) << name;
    EXPECT_EQ(t.dim(), it->second.dim()) << name;
    EXPECT_EQ(Rows(t), Rows(it->second)) << name;
  }
}

}  // namespace testing_internal
}  // namespace freshet
