#include "server/table_io.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common/checksum.h"
#include "common/config.h"

namespace freshet {
namespace {

proto::TablesConfig Tables() {
  auto t = ParseTablesConfig(R"(
    tables { name: "a" dim: 4 initializer { kind: UNIFORM scale: 0.1 seed: 7 }
             optimizer { sgd { learning_rate: 0.5 } } }
    tables { name: "b" dim: 2 optimizer { adagrad { learning_rate: 0.1 } } }
  )",
                             "t");
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Replaces the checksum trailer with the right one for the bytes before it.
std::string Reseal(std::string bytes) {
  const uint64_t h = Fnv1a64(bytes.data(), bytes.size() - 8);
  std::memcpy(bytes.data() + bytes.size() - 8, &h, 8);
  return bytes;
}

// Corrupt .rows files (checkpoint: a saved model's tables) are refused with
// DataLoss naming the file, and leave the shard untouched.
class RowsCorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Under the test binary's scratch TMPDIR (removed when the tests end).
    std::string tmpl_path = ::testing::TempDir() + "freshet-table-io-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl_path.data()), nullptr);
    const char* tmpl = tmpl_path.c_str();
    dir_ = tmpl;
    path_ = dir_ + "/" + ShardFileName(0, 1);
    auto shard = std::move(ParameterShard::Create(Tables(), 2)).value();
    const uint64_t keys[] = {1, 2, 3};
    const float grads[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    ASSERT_TRUE(shard->HandlePush(0, 4, keys, 3, grads).ok());
    ASSERT_TRUE(shard->HandlePush(1, 2, keys, 2, grads).ok());
    ASSERT_TRUE(SaveShardRows(*shard, path_).ok());
    good_ = ReadBytes(path_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Loads `bytes` as the file; expects `code` with the path (and `needle`)
  // in the message, and no row loaded.
  void ExpectRefused(const std::string& bytes, const std::string& what,
                     StatusCode code = StatusCode::kDataLoss, const std::string& needle = "") {
    WriteBytes(path_, bytes);
    auto shard = std::move(ParameterShard::Create(Tables(), 2)).value();
    Status st = LoadShardRows(path_, shard.get());
    ASSERT_FALSE(st.ok()) << what;
    EXPECT_EQ(st.code(), code) << what << ": " << st;
    EXPECT_NE(st.message().find(path_), std::string::npos) << what << ": " << st;
    if (!needle.empty()) {
      EXPECT_NE(st.message().find(needle), std::string::npos) << what << ": " << st;
    }
    EXPECT_EQ(shard->Stats().rows, 0) << what;
  }

  std::string dir_, path_, good_;
};

TEST_F(RowsCorruptionTest, GoodFileLoads) {
  auto shard = std::move(ParameterShard::Create(Tables(), 2)).value();
  ASSERT_TRUE(LoadShardRows(path_, shard.get()).ok());
  EXPECT_EQ(shard->table(0)->stats().rows, 3);
  EXPECT_EQ(shard->table(1)->stats().rows, 2);
}

TEST_F(RowsCorruptionTest, EveryFlippedByteIsRefused) {
  for (size_t i = 0; i < good_.size(); ++i) {
    for (unsigned char mask : {0x01, 0x80}) {
      std::string bad = good_;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      ExpectRefused(bad, "byte " + std::to_string(i) + " ^ " + std::to_string(mask));
    }
  }
}

TEST_F(RowsCorruptionTest, TruncationIsRefused) {
  const size_t n = good_.size();
  for (size_t len : {size_t{0}, size_t{7}, size_t{8}, size_t{23}, n / 2, n - 9, n - 8, n - 1}) {
    ExpectRefused(good_.substr(0, len), "truncated to " + std::to_string(len));
  }
  ExpectRefused(good_ + "x", "one byte appended");
}

TEST_F(RowsCorruptionTest, StructuralErrorsBehindAValidChecksum) {
  // Version 2 layout: magic 8, version 4, kind 4, slot range 8, tables 4;
  // the first table's name length at 28, its name at 32.
  std::string bad = good_;
  bad[8] = 3;  // format version
  ExpectRefused(Reseal(bad), "version", StatusCode::kDataLoss, "unsupported version 3");
  bad = good_;
  bad[0] = 'X';
  ExpectRefused(Reseal(bad), "magic", StatusCode::kDataLoss, "bad magic");
  bad = good_;
  bad[12] = 7;  // kind
  ExpectRefused(Reseal(bad), "kind", StatusCode::kDataLoss, "bad kind 7");
  bad = good_;
  std::memset(bad.data() + 16, 0xff, 4);  // first slot above the last
  ExpectRefused(Reseal(bad), "slot range", StatusCode::kDataLoss, "bad slot range");
  bad = good_;
  std::memset(bad.data() + 28, 0xff, 4);  // first table's name length
  ExpectRefused(Reseal(bad), "name length", StatusCode::kDataLoss, "bad table name length");
  // Table "a" (name at 32) claims 2^60 rows: refused on the length check.
  bad = good_;
  const uint64_t huge = uint64_t{1} << 60;
  std::memcpy(bad.data() + 32 + 1 + 8, &huge, 8);
  ExpectRefused(Reseal(bad), "row count", StatusCode::kDataLoss, "rows truncated");
  // A full file lists no tombstones; a tombstone count past the end is
  // refused before anything is read.
  const size_t a_tombstones = 32 + 1 + 16 + 3 * 32;
  bad = good_;
  bad[a_tombstones] = 1;
  ExpectRefused(Reseal(bad), "tombstones in a full file", StatusCode::kDataLoss,
                "a full file lists 1 tombstones");
  bad = good_;
  std::memcpy(bad.data() + a_tombstones, &huge, 8);
  ExpectRefused(Reseal(bad), "tombstone count", StatusCode::kDataLoss, "tombstones truncated");
  // A table the shard does not have, or of another dim: InvalidArgument.
  bad = good_;
  bad[32] = 'z';
  ExpectRefused(Reseal(bad), "unknown table", StatusCode::kInvalidArgument, "not configured");
  // Table "b" (after a's 3 rows of 32 bytes and its tombstone count) is of
  // another dim: nothing of table "a" may have been applied either.
  bad = good_;
  const size_t b_header = a_tombstones + 8;
  ASSERT_EQ(bad[b_header + 4], 'b');
  bad[b_header + 5] = 3;  // dim 2 -> 3
  ExpectRefused(Reseal(bad), "dim", StatusCode::kInvalidArgument, "has dim 3");
}

// ReplaceShardRows (early stopping's restore of the best pass): the shard
// equals the saved one afterwards: saved rows have their saved weights and
// optimizer state, rows created after the save are gone; a corrupt file
// changes nothing.
TEST_F(RowsCorruptionTest, ReplaceRestoresTheSavedRowsExactly) {
  auto saved = std::move(ParameterShard::Create(Tables(), 2)).value();
  ASSERT_TRUE(LoadShardRows(path_, saved.get()).ok());
  auto live = std::move(ParameterShard::Create(Tables(), 2)).value();
  ASSERT_TRUE(LoadShardRows(path_, live.get()).ok());
  // Training goes on after the save: rows change, new rows appear.
  const uint64_t keys[] = {1, 9, 10};
  const float grads[12] = {5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7};
  ASSERT_TRUE(live->HandlePush(0, 4, keys, 3, grads).ok());
  ASSERT_TRUE(live->HandlePush(1, 2, keys, 3, grads).ok());
  EXPECT_EQ(live->Stats().rows, saved->Stats().rows + 4);
  // A corrupt file is refused before any row changes.
  std::string bad = good_;
  bad[bad.size() / 2] ^= 1;
  WriteBytes(dir_ + "/bad.rows", bad);
  EXPECT_EQ(ReplaceShardRows(dir_ + "/bad.rows", live.get()).code(), StatusCode::kDataLoss);
  EXPECT_EQ(live->Stats().rows, saved->Stats().rows + 4);
  LoadRowsStats stats;
  ASSERT_TRUE(ReplaceShardRows(path_, live.get(), &stats).ok());
  EXPECT_EQ(stats.rows_kept, saved->Stats().rows);
  EXPECT_EQ(live->Stats().rows, saved->Stats().rows);
  for (int t = 0; t < 2; ++t) {
    const int dim = saved->table(t)->dim(), sd = saved->table(t)->state_dim();
    for (uint64_t key : {1, 2, 3, 9, 10}) {
      std::vector<float> w1(dim), w2(dim), s1(sd + 1), s2(sd + 1);
      const bool in_saved = saved->table(t)->Lookup(key, w1.data(), s1.data());
      const bool in_live = live->table(t)->Lookup(key, w2.data(), s2.data());
      ASSERT_EQ(in_saved, in_live) << "table " << t << " key " << key;
      if (!in_saved) continue;
      EXPECT_EQ(w1, w2) << "table " << t << " key " << key;
      EXPECT_EQ(s1, s2) << "table " << t << " key " << key;
    }
  }
}

}  // namespace
}  // namespace freshet
