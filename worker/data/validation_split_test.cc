#include "worker/data/validation_split.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "worker/data/internal/test_util.h"

namespace freshet {
namespace {

using testing_util::TempDir;
using testing_util::WriteFile;

// An example file whose lines carry `times`; the user field numbers the
// line globally (id0, id1, ...) from `first_id`, so tests can tell lines
// apart even when times repeat.
std::string File(const std::vector<int64_t>& times, int first_id) {
  std::string s = "#freshet-examples v1\titem\n";
  for (size_t i = 0; i < times.size(); ++i) {
    s += "0\t" + std::to_string(times[i]) + "\tid" + std::to_string(first_id + i) + "\t\tx\n";
  }
  return s;
}

std::vector<uint64_t> Sizes(const std::vector<std::string>& files) {
  std::vector<uint64_t> out;
  for (const auto& f : files) {
    struct stat st;
    EXPECT_EQ(::stat(f.c_str(), &st), 0) << f;
    out.push_back(static_cast<uint64_t>(st.st_size));
  }
  return out;
}

// (time, user) of every example the shards of `spans` read, shard by shard.
std::vector<std::pair<int64_t, std::string>> ReadAll(const std::vector<FileRange>& spans,
                                                     int shards, uint64_t block) {
  std::vector<std::pair<int64_t, std::string>> out;
  for (int s = 0; s < shards; ++s) {
    auto reader = ExampleReader::Open(SplitRanges(spans, s, shards, block), BadRecordPolicy());
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return out;
    Example ex;
    while (true) {
      auto got = (*reader)->Next(&ex);
      EXPECT_TRUE(got.ok()) << got.status();
      if (!got.ok() || !*got) break;
      out.emplace_back(ex.time, ex.user);
    }
  }
  return out;
}

TEST(ValidationSplitTest, CutsTheLastFractionByTimeAndNeverSplitsASecond) {
  TempDir dir;
  // 20 examples; times 100..119 except that lines 16..18 share second 115.
  std::vector<int64_t> times;
  for (int i = 0; i < 20; ++i) times.push_back(100 + i);
  times[16] = times[17] = times[18] = 115;  // 115 already at index 15
  WriteFile(dir.File("a"), File(times, 0));
  const std::vector<std::string> files = {dir.File("a")};
  // 0.1: k = 18 -> T = 115, whose first line is index 15: 5 validation.
  auto cut = FindValidationCut(files, 0.1, BadRecordPolicy());
  ASSERT_TRUE(cut.ok()) << cut.status();
  EXPECT_EQ(cut->time, 115);
  EXPECT_EQ(cut->train_examples, 15);
  EXPECT_EQ(cut->validation_examples, 5);
  // 0.25: k = 15 -> T = 115 as well.
  auto cut25 = FindValidationCut(files, 0.25, BadRecordPolicy());
  ASSERT_TRUE(cut25.ok());
  EXPECT_EQ(cut25->train_examples, 15);
  // 0.5: k = 10 -> T = 110, exactly half.
  auto half = FindValidationCut(files, 0.5, BadRecordPolicy());
  ASSERT_TRUE(half.ok());
  EXPECT_EQ(half->time, 110);
  EXPECT_EQ(half->train_examples, 10);
  EXPECT_EQ(half->validation_examples, 10);
  // The byte offset is the start of the first validation line.
  const std::string text = testing_util::ReadFile(files[0]);
  EXPECT_EQ(text.substr(half->offset, 8), "0\t110\tid");
}

// Training spans sharded over any number of workers (block-cyclic, as
// training reads them) read exactly the lines before the cut; validation
// spans exactly the lines from it: no validation line is ever trained on.
TEST(ValidationSplitTest, TrainingAndValidationPartitionTheLinesForAnyShardCount) {
  TempDir dir;
  std::vector<int64_t> t0, t1, t2;
  for (int i = 0; i < 300; ++i) t0.push_back(1000 + i / 3);  // 3 per second
  for (int i = 0; i < 250; ++i) t2.push_back(2000 + i / 2);
  WriteFile(dir.File("f0"), File(t0, 0));
  WriteFile(dir.File("f1"), File(t1, 300));  // header only
  WriteFile(dir.File("f2"), File(t2, 300));
  const std::vector<std::string> files = {dir.File("f0"), dir.File("f1"), dir.File("f2")};
  const std::vector<uint64_t> sizes = Sizes(files);
  for (double fraction : {0.02, 0.1, 0.3, 0.5, 0.6, 0.97}) {
    auto cut = FindValidationCut(files, fraction, BadRecordPolicy());
    ASSERT_TRUE(cut.ok()) << cut.status();
    EXPECT_EQ(cut->train_examples + cut->validation_examples, 550);
    // At least the fraction, and never more than one second's worth above.
    EXPECT_GE(cut->validation_examples,
              static_cast<int64_t>(550 - std::floor((1 - fraction) * 550)));
    EXPECT_LE(cut->validation_examples, 550 - std::floor((1 - fraction) * 550) + 3);
    const auto whole = ReadAll(ValidationSpans(files, sizes, *cut), 1, 0);
    ASSERT_EQ(static_cast<int64_t>(whole.size()), cut->validation_examples) << fraction;
    for (const auto& [t, u] : whole) EXPECT_GE(t, cut->time);
    for (int shards : {1, 2, 3, 7}) {
      for (uint64_t block : {0u, 64u, 1000u}) {
        auto train = ReadAll(TrainingSpans(files, sizes, *cut), shards, block);
        auto valid = ReadAll(ValidationSpans(files, sizes, *cut), shards, 0);
        ASSERT_EQ(static_cast<int64_t>(train.size()), cut->train_examples)
            << fraction << " " << shards << " " << block;
        ASSERT_EQ(static_cast<int64_t>(valid.size()), cut->validation_examples);
        std::set<std::string> seen;
        for (const auto& [t, u] : train) {
          EXPECT_LT(t, cut->time);
          EXPECT_TRUE(seen.insert(u).second) << "read twice: " << u;
        }
        for (const auto& [t, u] : valid) {
          EXPECT_GE(t, cut->time);
          EXPECT_TRUE(seen.insert(u).second) << "a validation line in training: " << u;
        }
        EXPECT_EQ(seen.size(), 550u);
      }
    }
  }
}

TEST(ValidationSplitTest, DeterministicForTheSameFiles) {
  TempDir dir;
  std::vector<int64_t> t;
  for (int i = 0; i < 1000; ++i) t.push_back(50 + i / 7);
  WriteFile(dir.File("a"), File(t, 0));
  auto a = FindValidationCut({dir.File("a")}, 0.1, BadRecordPolicy());
  auto b = FindValidationCut({dir.File("a")}, 0.1, BadRecordPolicy());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->offset, b->offset);
  EXPECT_EQ(a->file, b->file);
  EXPECT_EQ(a->train_examples, b->train_examples);
}

TEST(ValidationSplitTest, RejectsFilesOutOfTimeOrderNamingTheLine) {
  TempDir dir;
  WriteFile(dir.File("a"), File({10, 11, 12}, 0));
  WriteFile(dir.File("b"), File({13, 9, 14}, 3));
  auto cut = FindValidationCut({dir.File("a"), dir.File("b")}, 0.1, BadRecordPolicy());
  ASSERT_FALSE(cut.ok());
  EXPECT_EQ(cut.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(cut.status().message().find(dir.File("b") + ":3"), std::string::npos) << cut.status();
  EXPECT_NE(cut.status().message().find("time order"), std::string::npos);
  // Files listed out of order are out of order too.
  auto swapped = FindValidationCut({dir.File("b"), dir.File("a")}, 0.1, BadRecordPolicy());
  EXPECT_FALSE(swapped.ok());
}

TEST(ValidationSplitTest, RejectsASplitThatLeavesNoTrainingExample) {
  TempDir dir;
  WriteFile(dir.File("a"), File({5, 5, 5, 5, 5, 5, 5, 5, 5, 5}, 0));  // one second
  auto cut = FindValidationCut({dir.File("a")}, 0.1, BadRecordPolicy());
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.status().message().find("data.validation_fraction"), std::string::npos);
  EXPECT_NE(cut.status().message().find("no training example"), std::string::npos);
  WriteFile(dir.File("e"), File({}, 0));
  EXPECT_FALSE(FindValidationCut({dir.File("e")}, 0.1, BadRecordPolicy()).ok());
}

TEST(ValidationSplitTest, SkipsBadLinesWithinThePolicy) {
  TempDir dir;
  std::string text = File({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0);
  text += "garbage line\n";
  WriteFile(dir.File("a"), text);
  auto cut = FindValidationCut({dir.File("a")}, 0.2, BadRecordPolicy());
  ASSERT_TRUE(cut.ok()) << cut.status();
  EXPECT_EQ(cut->bad_lines, 1);
  EXPECT_EQ(cut->train_examples, 8);
  EXPECT_EQ(cut->validation_examples, 2);
  BadRecordPolicy strict;
  strict.max_bad_records = 0;
  strict.max_bad_ratio = 0;
  EXPECT_FALSE(FindValidationCut({dir.File("a")}, 0.2, strict).ok());
}

}  // namespace
}  // namespace freshet
