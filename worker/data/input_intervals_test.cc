#include "worker/data/input_intervals.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "worker/data/internal/test_util.h"

namespace freshet {
namespace {

using testing_util::TempDir;
using testing_util::WriteFile;

std::vector<ByteInterval> V(const IntervalSet& s) { return s.intervals(); }

TEST(IntervalSetTest, MergesOverlappingAndTouchingInAnyOrder) {
  IntervalSet s;
  s.Add(10, 20);
  s.Add(30, 40);
  s.Add(5, 5);  // empty: ignored
  EXPECT_EQ(V(s), (std::vector<ByteInterval>{{10, 20}, {30, 40}}));
  s.Add(20, 25);  // touches the first
  EXPECT_EQ(V(s), (std::vector<ByteInterval>{{10, 25}, {30, 40}}));
  s.Add(0, 3);  // before everything
  EXPECT_EQ(V(s), (std::vector<ByteInterval>{{0, 3}, {10, 25}, {30, 40}}));
  s.Add(24, 31);  // bridges two
  EXPECT_EQ(V(s), (std::vector<ByteInterval>{{0, 3}, {10, 40}}));
  s.Add(2, 50);  // swallows all
  EXPECT_EQ(V(s), (std::vector<ByteInterval>{{0, 50}}));
  EXPECT_EQ(s.bytes(), 50u);
  EXPECT_TRUE(s.Contains(0));
  EXPECT_TRUE(s.Contains(49));
  EXPECT_FALSE(s.Contains(50));
  IntervalSet t;
  t.Add(60, 70);
  t.Add(50, 55);
  s.AddAll(t);
  EXPECT_EQ(V(s), (std::vector<ByteInterval>{{0, 55}, {60, 70}}));
  EXPECT_FALSE(s.Contains(57));
}

TEST(IntervalSetTest, RandomAddsEqualABitmap) {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    IntervalSet s;
    std::vector<bool> bits(300, false);
    for (int k = 0; k < 12; ++k) {
      const uint64_t b = rng() % 300, e = b + rng() % 40;
      s.Add(b, std::min<uint64_t>(e, 300));
      for (uint64_t i = b; i < std::min<uint64_t>(e, 300); ++i) bits[i] = true;
    }
    uint64_t count = 0;
    for (uint64_t i = 0; i < 300; ++i) {
      ASSERT_EQ(s.Contains(i), bits[i]) << "round " << round << " byte " << i;
      count += bits[i];
    }
    EXPECT_EQ(s.bytes(), count);
    for (size_t i = 1; i < s.intervals().size(); ++i) {
      EXPECT_LT(s.intervals()[i - 1].end, s.intervals()[i].begin);  // disjoint, not touching
    }
  }
}

TEST(SubtractConsumedTest, CutsRangesAroundConsumedIntervals) {
  ConsumedSet c;
  c[0].Add(10, 20);
  c[0].Add(30, 40);
  c[1].Add(0, 100);
  std::vector<FileRange> ranges = {
      {"a", 0, 15, 0}, {"a", 25, 50, 0}, {"b", 5, 50, 1}, {"c", 0, 9, 2}};
  auto out = SubtractConsumed(ranges, c);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].begin, 0u);
  EXPECT_EQ(out[0].end, 10u);
  EXPECT_EQ(out[1].begin, 25u);
  EXPECT_EQ(out[1].end, 30u);
  EXPECT_EQ(out[2].begin, 40u);
  EXPECT_EQ(out[2].end, 50u);
  EXPECT_EQ(out[3].path, "c");  // no consumed intervals: whole
  EXPECT_EQ(out[3].end, 9u);
  // Everything consumed: one empty range that still names a file.
  auto none = SubtractConsumed({{"b", 5, 50, 1}}, c);
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0].path, "b");
  EXPECT_EQ(none[0].begin, none[0].end);
}

std::string Header() { return "#freshet-examples v1\ta\n"; }

// A file of `n` example lines whose time field is a unique id starting at
// `first`; line lengths vary, some lines end in CRLF, every 37th line is
// bad (a label of 7), and the last line has no newline.
std::string ExampleFile(int64_t first, int n, std::vector<int64_t>* good) {
  std::string s = Header();
  for (int k = 0; k < n; ++k) {
    const bool bad = k % 37 == 5;
    s += (bad ? "7" : std::to_string(k % 2)) + "\t" + std::to_string(first + k) + "\tu\t\tv" +
         std::string(static_cast<size_t>(k * 7919 % 23), 'x');
    if (!bad) good->push_back(first + k);
    if (k + 1 < n) s += k % 5 == 0 ? "\r\n" : "\n";
  }
  return s;
}

struct ReadResult {
  std::vector<int64_t> ids;
  std::vector<InputInterval> intervals;
};

// Reads at most `limit` examples of `ranges` (-1: all), noting what was
// consumed.
ReadResult ReadSome(std::vector<FileRange> ranges, int limit) {
  ReadResult r;
  BadRecordPolicy policy;
  policy.max_bad_ratio = 0.2;
  auto reader = ExampleReader::Open(std::move(ranges), policy);
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return r;
  Example ex;
  ConsumedInput in;
  while (limit < 0 || static_cast<int>(r.ids.size()) < limit) {
    auto got = (*reader)->Next(&ex);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok() || !*got) break;
    r.ids.push_back(ex.time);
  }
  (*reader)->TakeConsumed(&in);
  r.intervals = in.intervals;
  return r;
}

// A first run with `old_n` workers reads a random prefix of each worker's
// share (recording what it consumed); a restore onto 1..4 workers splits
// the files for the new count and subtracts the union. Every good line must
// be read exactly once over both runs, and the consumed intervals' record
// counts must equal what the first run returned.
TEST(SubtractConsumedTest, SplitAfterSubtractionReadsEveryLineOnce) {
  TempDir dir;
  std::vector<int64_t> good;
  const std::vector<std::string> files = {dir.File("a.examples"), dir.File("b.examples")};
  WriteFile(files[0], ExampleFile(0, 700, &good));
  WriteFile(files[1], ExampleFile(100000, 333, &good));
  std::mt19937 rng(11);
  for (int old_n = 1; old_n <= 4; ++old_n) {
    for (uint64_t block : {uint64_t{0}, uint64_t{97}, uint64_t{1000}}) {
      for (int trial = 0; trial < 3; ++trial) {
        std::map<int64_t, int> seen;
        ConsumedSet consumed;
        for (int w = 0; w < old_n; ++w) {
          auto ranges = SplitFiles(files, w, old_n, block);
          ASSERT_TRUE(ranges.ok()) << ranges.status();
          const int limit = static_cast<int>(rng() % (1200 / old_n));
          ReadResult r = ReadSome(*ranges, limit);
          int64_t records = 0;
          for (const InputInterval& i : r.intervals) {
            records += i.records;
            EXPECT_GE(i.file, 0);
            EXPECT_LT(i.file, 2);
          }
          EXPECT_EQ(records, static_cast<int64_t>(r.ids.size()));
          for (int64_t id : r.ids) ++seen[id];
          AddConsumed(r.intervals, &consumed);
        }
        for (int new_n = 1; new_n <= 4; ++new_n) {
          SCOPED_TRACE("old " + std::to_string(old_n) + " new " + std::to_string(new_n) +
                       " block " + std::to_string(block) + " trial " + std::to_string(trial));
          std::map<int64_t, int> all = seen;
          for (int w = 0; w < new_n; ++w) {
            auto ranges = SplitFiles(files, w, new_n, block);
            ASSERT_TRUE(ranges.ok()) << ranges.status();
            std::vector<FileRange> left = SubtractConsumed(*ranges, consumed);
            for (const FileRange& r : left) {
              // Pieces start where SplitFiles did or at a line start.
              bool split_start = false;
              for (const FileRange& o : *ranges)
                split_start |= o.path == r.path && o.begin == r.begin;
              if (!split_start && r.begin > 0) {
                const std::string bytes = testing_util::ReadFile(r.path);
                EXPECT_EQ(bytes[r.begin - 1], '\n') << r.path << " at " << r.begin;
              }
            }
            for (int64_t id : ReadSome(left, -1).ids) ++all[id];
          }
          ASSERT_EQ(all.size(), good.size());
          for (int64_t id : good) {
            ASSERT_EQ(all[id], 1) << "record " << id;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace freshet
