#include "worker/stream/join_state.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

namespace freshet {
namespace {

// A state with every kind of entry, an early reaction, examples (one
// without values, one with an empty value) and non-zero counters.
StreamJoinState Sample() {
  StreamJoinState s;
  s.worker = 1;
  s.num_workers = 3;
  s.step = 120;
  s.watermark_ms = 1700000000123;
  s.partition_newest = {{1, 1700000000500}, {4, 1700000000123}};
  s.joiner.watermark = 1700000000123;
  JoinerState::Entry w;
  w.kind = JoinerState::Kind::kWaiting;
  w.partition = 4;
  w.imp_ms = 1700000000100;
  w.key = "r7\ti42";
  w.oracle = 0.25f;
  w.user = "u9";
  w.values = {"u9", "i42", "red shoes", ""};
  s.joiner.entries.push_back(w);
  JoinerState::Entry p;
  p.kind = JoinerState::Kind::kPositive;
  p.partition = 1;
  p.imp_ms = 1700000000000;
  p.key = "r6\ti1";
  s.joiner.entries.push_back(p);
  p.kind = JoinerState::Kind::kNegative;
  p.key = "r6\ti2";
  s.joiner.entries.push_back(p);
  s.joiner.early.push_back({1, 1700000000400, "r8\ti3", "u2"});
  s.joiner.counters.impressions = 10;
  s.joiner.counters.reactions = 4;
  s.joiner.counters.joined = 2;
  s.joiner.counters.expired = 5;
  s.joiner.counters.duplicate = 1;
  s.joiner.counters.late = 1;
  s.joiner.counters.early_joined = 1;
  Example a;
  a.label = 1;
  a.time = 1700000000;
  a.user = "u1";
  a.oracle = 0.5f;
  a.values = {"u1", "i7", "q"};
  Example b;
  b.time = 1700000001;
  s.examples = {a, b};
  return s;
}

class JoinStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/join_state_test." + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(JoinStateTest, RoundTripsThroughBytesAndFiles) {
  const StreamJoinState s = Sample();
  auto back = DecodeJoinState(EncodeJoinState(s), "x");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == s);
  EXPECT_EQ(back->joiner.waiting(), 1u);

  const std::string path = dir_ + "/" + JoinStateFileName(1);
  EXPECT_EQ(JoinStateFileName(1), "worker-1.join");
  ASSERT_TRUE(WriteJoinStateFile(path, s).ok());
  auto read = ReadJoinStateFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(*read == s);
  // The file and the in-memory encoding are the same bytes.
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes, EncodeJoinState(s));

  // An empty state too.
  StreamJoinState empty;
  empty.num_workers = 1;
  auto e = DecodeJoinState(EncodeJoinState(empty), "x");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_TRUE(*e == empty);
  EXPECT_EQ(e->joiner.watermark, INT64_MIN);

  EXPECT_EQ(ReadJoinStateFile(dir_ + "/none.join").status().code(), StatusCode::kNotFound);
}

TEST_F(JoinStateTest, EveryTruncationAndFlippedByteIsDataLossNamingTheFile) {
  const std::string good = EncodeJoinState(Sample());
  const std::string path = dir_ + "/worker-1.join";
  auto write = [&](const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
  };
  for (size_t n = 0; n < good.size(); ++n) {
    write(good.substr(0, n));
    auto r = ReadJoinStateFile(path);
    ASSERT_FALSE(r.ok()) << "truncated to " << n << " bytes was accepted";
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << n;
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status();
  }
  for (size_t i = 0; i < good.size(); ++i) {
    for (unsigned char bit : {0x01, 0x80}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ bit);
      write(bad);
      auto r = ReadJoinStateFile(path);
      ASSERT_FALSE(r.ok()) << "byte " << i << " flipped was accepted";
      EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << i;
      EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status();
    }
  }
  // Trailing bytes, with a valid checksum over them.
  std::string longer = good.substr(0, good.size() - 8) + "xx";
  const uint64_t sum = [&] {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : longer) h = (h ^ c) * 0x100000001b3ULL;
    return h;
  }();
  longer.append(reinterpret_cast<const char*>(&sum), 8);
  auto r = DecodeJoinState(longer, "f.join");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("f.join"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("after the last example"), std::string::npos) << r.status();
}

// Old workers 0 and 1 of 2 (partitions 0-3: worker P mod 2) restored onto
// 3 workers and onto 1.
TEST(JoinStateMergerTest, EntriesFollowTheirPartitionExamplesTheirWorker) {
  std::vector<StreamJoinState> old(2);
  for (int w = 0; w < 2; ++w) {
    StreamJoinState& s = old[w];
    s.worker = w;
    s.num_workers = 2;
    s.step = 40;
    s.watermark_ms = 1000 + 100 * w;
    s.joiner.watermark = 1000 + 100 * w;
    s.joiner.counters.impressions = 10 + w;
    for (int p = w; p < 4; p += 2) {
      s.partition_newest[p] = 2000 + p;
      JoinerState::Entry e;
      e.partition = p;
      e.imp_ms = 1500 + p;
      e.key = "r" + std::to_string(p) + "\ti";
      e.user = "u";
      e.values = {"v" + std::to_string(p)};
      s.joiner.entries.push_back(e);
      e.kind = JoinerState::Kind::kNegative;
      e.key = "m" + std::to_string(p) + "\ti";
      e.user.clear();
      e.values.clear();
      s.joiner.entries.push_back(e);
      s.joiner.early.push_back({p, 1900 + p, "e" + std::to_string(p) + "\ti", ""});
    }
    Example ex;
    ex.user = "from" + std::to_string(w);
    s.examples = {ex};
  }
  for (int n : {3, 1, 2}) {
    int64_t entries = 0, early = 0, examples = 0, impressions = 0;
    std::set<int> partitions;
    for (int me = 0; me < n; ++me) {
      JoinStateMerger m(me, n);
      for (const auto& s : old) m.Add(s);
      const StreamJoinState got = m.Take();
      EXPECT_EQ(got.worker, me);
      EXPECT_EQ(got.num_workers, n);
      EXPECT_EQ(got.step, 40);
      for (const auto& e : got.joiner.entries) EXPECT_EQ(e.partition % n, me) << e.key;
      for (const auto& r : got.joiner.early) EXPECT_EQ(r.partition % n, me) << r.key;
      for (const auto& [p, ms] : got.partition_newest) {
        EXPECT_EQ(p % n, me);
        EXPECT_EQ(ms, 2000 + p);
        EXPECT_TRUE(partitions.insert(p).second);
      }
      for (const auto& ex : got.examples) EXPECT_EQ((ex.user == "from1" ? 1 : 0) % n, me);
      entries += static_cast<int64_t>(got.joiner.entries.size());
      early += static_cast<int64_t>(got.joiner.early.size());
      examples += static_cast<int64_t>(got.examples.size());
      impressions += got.joiner.counters.impressions;
      // Watermarks: the minimum over the old workers that gave partitions.
      int64_t want = INT64_MAX;
      for (const auto& s : old) {
        bool gave = false;
        for (const auto& [p, ms] : s.partition_newest) gave = gave || p % n == me;
        if (gave) want = std::min(want, s.joiner.watermark);
      }
      if (want == INT64_MAX) {
        EXPECT_EQ(got.joiner.watermark, INT64_MIN);
        EXPECT_EQ(got.watermark_ms, -1);
      } else {
        EXPECT_EQ(got.joiner.watermark, want) << "n " << n << " worker " << me;
        EXPECT_EQ(got.watermark_ms, want);
      }
      if (n == 2) {
        EXPECT_TRUE(got.joiner == old[me].joiner);  // same count: its own state
      }
    }
    EXPECT_EQ(entries, 8) << n;
    EXPECT_EQ(early, 4) << n;
    EXPECT_EQ(examples, 2) << n;
    EXPECT_EQ(impressions, 21) << n;
    EXPECT_EQ(partitions.size(), 4u);
  }
}

}  // namespace
}  // namespace freshet
