#include "worker/data/example_io.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "worker/data/internal/test_util.h"

namespace freshet {
namespace {

using testing_util::Exists;
using testing_util::ReadFile;
using testing_util::TempDir;
using testing_util::WriteFile;

std::string Header(const std::vector<std::string>& columns) {
  std::string h = "#freshet-examples v1";
  for (const std::string& c : columns) h += "\t" + c;
  return h + "\n";
}

// An example file whose example k has time = first + k (an id to check that
// every line is read once), `n` lines.
std::string ExampleFile(int64_t first, int n, bool trailing_newline = true) {
  std::string s = Header({"a", "b"});
  for (int k = 0; k < n; ++k) {
    s += std::to_string(k % 2) + "\t" + std::to_string(first + k) + "\tu" + std::to_string(k) +
         "\t\tx" + std::to_string(k) + "\t" + std::string(k % 7, 'y');
    if (k + 1 < n || trailing_newline) s += "\n";
  }
  return s;
}

// Reads every example of `ranges`; returns their times.
std::vector<int64_t> ReadTimes(std::vector<FileRange> ranges, ReadStats* stats = nullptr) {
  auto reader = ExampleReader::Open(std::move(ranges), BadRecordPolicy());
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return {};
  EXPECT_EQ((*reader)->columns(), (std::vector<std::string>{"a", "b"}));
  std::vector<int64_t> times;
  Example ex;
  while (true) {
    auto more = (*reader)->Next(&ex);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    times.push_back(ex.time);
  }
  if (stats != nullptr) *stats = (*reader)->stats();
  return times;
}

TEST(ExampleLineTest, FormatParseRoundTrip) {
  Example ex;
  ex.label = 1;
  ex.time = 1511658000;
  ex.user = "u42";
  ex.oracle = 0.25f;
  ex.values = {"item7", "a b c", "", "3.5"};
  const std::string line = FormatExampleLine(ex);
  EXPECT_EQ(line, "1\t1511658000\tu42\t0.25\titem7\ta b c\t\t3.5");
  Example back;
  ASSERT_TRUE(ParseExampleLine(line, 4, &back).ok());
  EXPECT_EQ(back.label, 1);
  EXPECT_EQ(back.time, 1511658000);
  EXPECT_EQ(back.user, "u42");
  EXPECT_FLOAT_EQ(back.oracle, 0.25f);
  EXPECT_EQ(back.values, ex.values);

  ex.label = 0;
  ex.oracle = -1;
  ex.user = "";
  ASSERT_TRUE(ParseExampleLine(FormatExampleLine(ex), 4, &back).ok());
  EXPECT_EQ(back.label, 0);
  EXPECT_EQ(back.oracle, -1);
  EXPECT_EQ(back.user, "");
}

TEST(ExampleLineTest, RejectsBadFields) {
  Example ex;
  struct Case {
    const char* line;
    const char* problem;
  } cases[] = {
      {"2\t5\tu\t\ta", "label"}, {"x\t5\tu\t\ta", "label"},       {"1\t5.5\tu\t\ta", "time"},
      {"1\t\tu\t\ta", "time"},   {"1\t5\tu\t1.5\ta", "oracle"},   {"1\t5\tu\tabc\ta", "oracle"},
      {"1\t5\tu\t", "too few"},  {"1\t5\tu\t\ta\tb", "too many"}, {"", "label"},
  };
  for (const Case& c : cases) {
    Status st = ParseExampleLine(c.line, 1, &ex);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << c.line;
    EXPECT_NE(st.message().find(c.problem), std::string::npos) << c.line << ": " << st;
  }
  EXPECT_TRUE(ParseExampleLine("0\t-5\t\t0\t", 1, &ex).ok());  // one empty value
  EXPECT_TRUE(ParseExampleLine("1\t7\tu\t", 0, &ex).ok());     // no columns
}

TEST(ExampleIoTest, WriteReadRoundTrip) {
  TempDir dir;
  const std::string path = dir.File("x.examples");
  std::vector<Example> written;
  {
    auto w = ExampleWriter::Open(path, {"item", "history", "price"});
    ASSERT_TRUE(w.ok()) << w.status();
    for (int i = 0; i < 100; ++i) {
      Example ex;
      ex.label = i % 3 == 0;
      ex.time = 1000 + i;
      ex.user = i % 5 == 0 ? "" : "user" + std::to_string(i % 7);
      ex.oracle = i % 2 == 0 ? -1.0f : 0.125f * (i % 8);
      ex.values = {"i" + std::to_string(i), i % 4 == 0 ? "" : "h1 h2 h" + std::to_string(i),
                   std::to_string(i * 0.5)};
      ASSERT_TRUE((*w)->Write(ex).ok());
      written.push_back(ex);
    }
    EXPECT_EQ((*w)->written(), 100);
    ASSERT_TRUE((*w)->Close().ok());
  }
  auto header = ReadExampleHeader(path);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(*header, (std::vector<std::string>{"item", "history", "price"}));

  auto reader = ExampleReader::OpenFiles({path}, BadRecordPolicy());
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->columns(), *header);
  Example ex;
  for (const Example& want : written) {
    auto more = (*reader)->Next(&ex);
    ASSERT_TRUE(more.ok() && *more) << more.status();
    EXPECT_EQ(ex.label, want.label);
    EXPECT_EQ(ex.time, want.time);
    EXPECT_EQ(ex.user, want.user);
    EXPECT_FLOAT_EQ(ex.oracle, want.oracle);
    EXPECT_EQ(ex.values, want.values);
  }
  auto more = (*reader)->Next(&ex);
  ASSERT_TRUE(more.ok());
  EXPECT_FALSE(*more);
  EXPECT_EQ((*reader)->stats().lines, 100);
  EXPECT_EQ((*reader)->stats().examples, 100);
  EXPECT_EQ((*reader)->stats().bad, 0);
  // Progress: every byte but the header line's was read.
  std::ifstream in(path);
  std::string header_line;
  std::getline(in, header_line);
  in.seekg(0, std::ios::end);
  const int64_t size = static_cast<int64_t>(in.tellg());
  EXPECT_EQ((*reader)->total_bytes(), static_cast<uint64_t>(size));
  EXPECT_EQ((*reader)->stats().bytes, size - static_cast<int64_t>(header_line.size() + 1));
}

TEST(ExampleIoTest, HeaderErrors) {
  TempDir dir;
  EXPECT_EQ(ReadExampleHeader(dir.File("missing")).status().code(), StatusCode::kNotFound);
  WriteFile(dir.File("bad"), "label\ttime\n1\t2\n");
  auto st = ReadExampleHeader(dir.File("bad")).status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("not a freshet example file"), std::string::npos) << st;
  WriteFile(dir.File("dup"), Header({"a", "a"}));
  EXPECT_EQ(ReadExampleHeader(dir.File("dup")).status().code(), StatusCode::kInvalidArgument);
  WriteFile(dir.File("empty"), "");
  EXPECT_EQ(ReadExampleHeader(dir.File("empty")).status().code(), StatusCode::kInvalidArgument);
  WriteFile(dir.File("nocols"), Header({}));
  auto nocols = ReadExampleHeader(dir.File("nocols"));
  ASSERT_TRUE(nocols.ok()) << nocols.status();
  EXPECT_TRUE(nocols->empty());

  // Files with different headers cannot be read together.
  WriteFile(dir.File("ab"), Header({"a", "b"}));
  WriteFile(dir.File("ac"), Header({"a", "c"}));
  auto r = ExampleReader::OpenFiles({dir.File("ab"), dir.File("ac")}, BadRecordPolicy());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ExampleReader::OpenFiles({dir.File("ab"), dir.File("missing")}, BadRecordPolicy())
                .status()
                .code(),
            StatusCode::kNotFound);
}

TEST(ExampleIoTest, HeaderIsNeverAnExample) {
  TempDir dir;
  WriteFile(dir.File("h"), Header({"a", "b"}));  // header only
  ReadStats stats;
  EXPECT_TRUE(ReadTimes({{dir.File("h"), 0, 100}}, &stats).empty());
  EXPECT_EQ(stats.lines, 0);
  // CRLF line ends read like LF.
  WriteFile(dir.File("crlf"),
            "#freshet-examples v1\ta\tb\r\n1\t5\tu\t\tx\ty\r\n0\t6\tu\t\tx\t\r\n");
  EXPECT_EQ(ReadTimes({{dir.File("crlf"), 0, 1000}}), (std::vector<int64_t>{5, 6}));
}

// An example's read and label times are the wall time of the file read
// that brought its line in: one clock read per read(2) of 64 KiB, so
// lines of one read share it, lines of a later read get a later one, and
// no line waits behind a large read-ahead with its clock running.
TEST(ExampleIoTest, StampsTheReadTimeOfItsBufferFill) {
  auto wall_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  TempDir dir;
  const int n = 100000;  // about 2.5 MB of lines: many reads
  WriteFile(dir.File("big"), ExampleFile(0, n));
  auto reader = ExampleReader::OpenFiles({dir.File("big")}, BadRecordPolicy());
  ASSERT_TRUE(reader.ok()) << reader.status();
  const int64_t before = wall_ms();
  Example ex;
  ASSERT_TRUE(*(*reader)->Next(&ex));
  const int64_t first_fill = ex.read_unix_ms;
  EXPECT_GE(first_fill, before);
  EXPECT_LE(first_fill, wall_ms());
  EXPECT_EQ(ex.label_unix_ms, ex.read_unix_ms);  // a file's label is known when read
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  const int64_t after_sleep = wall_ms();
  int in_first = 1;
  while (true) {
    auto more = (*reader)->Next(&ex);
    ASSERT_TRUE(more.ok() && *more) << "ended after " << in_first << " lines";
    if (ex.read_unix_ms != first_fill) break;
    ++in_first;
  }
  // Lines of the first read kept its time although returned after the
  // sleep; the first line of the next read was read after it. These lines
  // are 22-37 bytes: 64 KiB holds about 2,300 of them (a 1 MiB read-ahead
  // would hold about 37,000).
  EXPECT_GT(in_first, 1000);
  EXPECT_LT(in_first, 3500);
  EXPECT_GE(ex.read_unix_ms, after_sleep);
  EXPECT_EQ(ex.label_unix_ms, ex.read_unix_ms);
}

// Every line is read by exactly one shard, for many shard counts, several
// files (one with only a header, one without a final newline), and more
// shards than lines.
TEST(ExampleIoTest, SplitReadsEveryLineExactlyOnce) {
  TempDir dir;
  const std::vector<std::string> files = {dir.File("f0"), dir.File("f1"), dir.File("f2"),
                                          dir.File("f3"), dir.File("f4")};
  WriteFile(files[0], ExampleFile(0, 37));
  WriteFile(files[1], ExampleFile(1000, 0));  // header only
  WriteFile(files[2], ExampleFile(2000, 1));
  WriteFile(files[3], ExampleFile(3000, 250, /*trailing_newline=*/false));
  WriteFile(files[4], ExampleFile(4000, 3));
  std::vector<int64_t> want;
  for (int k = 0; k < 37; ++k) want.push_back(k);
  want.push_back(2000);
  for (int k = 0; k < 250; ++k) want.push_back(3000 + k);
  for (int k = 0; k < 3; ++k) want.push_back(4000 + k);
  uint64_t total_bytes = 0;
  for (const std::string& f : files) total_bytes += ReadFile(f).size();

  for (int shards : {1, 2, 3, 4, 5, 7, 13, 64, 291, 1000, static_cast<int>(total_bytes) + 17}) {
    std::vector<int64_t> got;
    for (int s = 0; s < shards; ++s) {
      auto ranges = SplitFiles(files, s, shards);
      ASSERT_TRUE(ranges.ok()) << ranges.status();
      ASSERT_FALSE(ranges->empty()) << "a shard always names a file (for its columns)";
      std::vector<int64_t> times = ReadTimes(*ranges);
      EXPECT_TRUE(std::is_sorted(times.begin(), times.end()));
      got.insert(got.end(), times.begin(), times.end());
    }
    EXPECT_EQ(got, want) << shards << " shards";
  }
}

// Block-cyclic splitting (training): still every line exactly once, and
// each shard's lines stay in time order.
TEST(ExampleIoTest, BlockCyclicSplitReadsEveryLineExactlyOnce) {
  TempDir dir;
  const std::vector<std::string> files = {dir.File("f0"), dir.File("f1"), dir.File("f2")};
  WriteFile(files[0], ExampleFile(0, 300));
  WriteFile(files[1], ExampleFile(1000, 0));  // header only
  WriteFile(files[2], ExampleFile(3000, 250, /*trailing_newline=*/false));
  std::vector<int64_t> want;
  for (int k = 0; k < 300; ++k) want.push_back(k);
  for (int k = 0; k < 250; ++k) want.push_back(3000 + k);
  for (uint64_t block : {1u, 7u, 64u, 1000u, 1u << 20}) {
    for (int shards : {1, 2, 3, 5}) {
      std::vector<int64_t> got;
      for (int s = 0; s < shards; ++s) {
        auto ranges = SplitFiles(files, s, shards, block);
        ASSERT_TRUE(ranges.ok()) << ranges.status();
        ASSERT_FALSE(ranges->empty());
        std::vector<int64_t> times = ReadTimes(*ranges);
        EXPECT_TRUE(std::is_sorted(times.begin(), times.end()));
        got.insert(got.end(), times.begin(), times.end());
      }
      std::sort(got.begin(), got.end());
      EXPECT_EQ(got, want) << shards << " shards, block " << block;
    }
  }
  // Interleaving: with 2 shards and small blocks, both shards see early and
  // late lines.
  auto r0 = SplitFiles(files, 0, 2, 256);
  auto r1 = SplitFiles(files, 1, 2, 256);
  ASSERT_TRUE(r0.ok() && r1.ok());
  for (const auto& r : {*r0, *r1}) {
    std::vector<int64_t> t = ReadTimes(r);
    ASSERT_FALSE(t.empty());
    EXPECT_LT(t.front(), 100);
    EXPECT_GT(t.back(), 3100);
  }
}

TEST(ExampleIoTest, SplitRangesCoverTheBytes) {
  TempDir dir;
  WriteFile(dir.File("a"), std::string(100, 'x'));
  WriteFile(dir.File("b"), std::string(50, 'x'));
  auto r0 = SplitFiles({dir.File("a"), dir.File("b")}, 0, 3);
  auto r1 = SplitFiles({dir.File("a"), dir.File("b")}, 1, 3);
  auto r2 = SplitFiles({dir.File("a"), dir.File("b")}, 2, 3);
  ASSERT_TRUE(r0.ok() && r1.ok() && r2.ok());
  ASSERT_EQ(r0->size(), 1u);
  EXPECT_EQ((*r0)[0].begin, 0u);
  EXPECT_EQ((*r0)[0].end, 50u);
  ASSERT_EQ(r1->size(), 1u);
  EXPECT_EQ((*r1)[0].begin, 50u);
  EXPECT_EQ((*r1)[0].end, 100u);
  ASSERT_EQ(r2->size(), 1u);
  EXPECT_EQ((*r2)[0].path, dir.File("b"));
  EXPECT_EQ((*r2)[0].end, 50u);
  EXPECT_EQ(SplitFiles({dir.File("a"), dir.File("nope")}, 0, 2).status().code(),
            StatusCode::kNotFound);
}

TEST(ExampleIoTest, BadLinesAreCountedAndSkipped) {
  TempDir dir;
  std::string s = Header({"a"});
  for (int k = 0; k < 1000; ++k) {
    if (k == 10 || k == 500 || k == 998) {
      s += "1\tnot-a-time\tu\t\tx\n";
    } else {
      s += "0\t" + std::to_string(k) + "\tu\t\tx\n";
    }
  }
  WriteFile(dir.File("f"), s);
  auto reader = ExampleReader::OpenFiles({dir.File("f")}, BadRecordPolicy());
  ASSERT_TRUE(reader.ok());
  Example ex;
  int n = 0;
  while (true) {
    auto more = (*reader)->Next(&ex);
    ASSERT_TRUE(more.ok()) << more.status();
    if (!*more) break;
    ++n;
  }
  EXPECT_EQ(n, 997);
  EXPECT_EQ((*reader)->stats().lines, 1000);
  EXPECT_EQ((*reader)->stats().examples, 997);
  EXPECT_EQ((*reader)->stats().bad, 3);
}

// Past max(max_bad_records, max_bad_ratio * lines) the reader fails, naming
// the file, the line (exact also for a range starting inside the file) and
// the counts.
TEST(ExampleIoTest, BadRecordLimitFailsLoudly) {
  TempDir dir;
  std::string s = Header({"a"});
  for (int k = 0; k < 200; ++k) {
    s += (k == 150 || k == 170 || k == 190) ? "7\t1\tu\t\tx\n" : "0\t1\tu\t\tx\n";
  }
  const std::string path = dir.File("bad.examples");
  WriteFile(path, s);
  BadRecordPolicy policy;
  policy.max_bad_records = 2;
  policy.max_bad_ratio = 0;
  auto reader = ExampleReader::OpenFiles({path}, policy);
  ASSERT_TRUE(reader.ok());
  Example ex;
  Status st;
  while (true) {
    auto more = (*reader)->Next(&ex);
    if (!more.ok()) {
      st = more.status();
      break;
    }
    ASSERT_TRUE(*more) << "reached the end without failing";
  }
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  // The third bad record is example 190, line 192 (after the header).
  EXPECT_NE(st.message().find(path + ":192"), std::string::npos) << st;
  EXPECT_NE(st.message().find("3 bad of 191 lines"), std::string::npos) << st;
  EXPECT_NE(st.message().find("label"), std::string::npos) << st;

  // The same from a range starting mid-file: line numbers stay exact.
  const uint64_t size = s.size();
  auto mid = ExampleReader::Open({{path, size / 2, size}}, policy);
  ASSERT_TRUE(mid.ok());
  while (true) {
    auto more = (*mid)->Next(&ex);
    if (!more.ok()) {
      st = more.status();
      break;
    }
    ASSERT_TRUE(*more) << "reached the end without failing";
  }
  EXPECT_NE(st.message().find(path + ":192"), std::string::npos) << st;

  // The ratio lets the same file through: 3 <= 0.02 * 200.
  policy.max_bad_ratio = 0.02;
  auto lenient = ExampleReader::OpenFiles({path}, policy);
  ASSERT_TRUE(lenient.ok());
  while (true) {
    auto more = (*lenient)->Next(&ex);
    ASSERT_TRUE(more.ok()) << more.status();
    if (!*more) break;
  }
  EXPECT_EQ((*lenient)->stats().bad, 3);
}

TEST(ExampleWriterTest, AtomicRenameOnClose) {
  TempDir dir;
  const std::string path = dir.File("out.examples");
  WriteFile(path, "old contents\n");
  auto w = ExampleWriter::Open(path, {"a"});
  ASSERT_TRUE(w.ok()) << w.status();
  Example ex;
  ex.values = {"v"};
  ASSERT_TRUE((*w)->Write(ex).ok());
  EXPECT_EQ(ReadFile(path), "old contents\n");  // untouched until Close
  EXPECT_TRUE(Exists(path + ".tmp"));
  ASSERT_TRUE((*w)->Close().ok());
  EXPECT_FALSE(Exists(path + ".tmp"));
  EXPECT_EQ(ReadFile(path), "#freshet-examples v1\ta\n0\t0\t\t\tv\n");
  EXPECT_EQ((*w)->Write(ex).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ((*w)->Close().code(), StatusCode::kFailedPrecondition);
}

TEST(ExampleWriterTest, DestroyedWithoutCloseLeavesNoFile) {
  TempDir dir;
  const std::string path = dir.File("never.examples");
  {
    auto w = ExampleWriter::Open(path, {"a", "b"});
    ASSERT_TRUE(w.ok());
    Example ex;
    ex.values = {"x", "y"};
    ASSERT_TRUE((*w)->Write(ex).ok());
    EXPECT_TRUE(Exists(path + ".tmp"));
  }
  EXPECT_FALSE(Exists(path));
  EXPECT_FALSE(Exists(path + ".tmp"));
}

TEST(ExampleWriterTest, RejectsBadExamplesAndPaths) {
  TempDir dir;
  auto w = ExampleWriter::Open(dir.File("w.examples"), {"a", "b"});
  ASSERT_TRUE(w.ok());
  Example ex;
  ex.values = {"x"};
  EXPECT_EQ((*w)->Write(ex).code(), StatusCode::kInvalidArgument);  // wrong count
  ex.values = {"x", "has\ttab"};
  EXPECT_EQ((*w)->Write(ex).code(), StatusCode::kInvalidArgument);
  ex.values = {"x", "has\nnewline"};
  EXPECT_EQ((*w)->Write(ex).code(), StatusCode::kInvalidArgument);
  ex.values = {"x", "y"};
  ex.label = 0.5f;
  EXPECT_EQ((*w)->Write(ex).code(), StatusCode::kInvalidArgument);
  ex.label = 1;
  ex.oracle = 1.5f;
  EXPECT_EQ((*w)->Write(ex).code(), StatusCode::kInvalidArgument);
  ex.oracle = -1;
  ex.user = "a\tb";
  EXPECT_EQ((*w)->Write(ex).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*w)->written(), 0);

  EXPECT_EQ(ExampleWriter::Open(dir.File("c.examples"), {"a", "a"}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ExampleWriter::Open(dir.File("c.examples"), {"a\tb"}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(ExampleWriter::Open(dir.File("no/such/dir/x.examples"), {"a"}).ok());
  EXPECT_FALSE(Exists(dir.File("c.examples.tmp")));
}

}  // namespace
}  // namespace freshet
