#include "worker/stream/tail_source.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <thread>

namespace freshet {
namespace {

using Clock = std::chrono::steady_clock;

std::string TempDir(const std::string& name) {
  // Under the test binary's scratch TMPDIR (common/internal/gtest_main.cc),
  // removed when the tests end.
  std::string dir =
      ::testing::TempDir() + "freshet_tail_test_" + name + "_" + std::to_string(getpid());
  std::system(("rm -rf " + dir).c_str());
  mkdir(dir.c_str(), 0755);
  return dir;
}

void Append(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::app | std::ios::binary) << bytes;
}

struct Got {
  std::string text, header, origin;
  int64_t line_no;
  int partition;
};

// Reads until kEnd (or `max_lines`), failing the test on a long stall.
std::vector<Got> ReadAll(TailSource* t, size_t max_lines = SIZE_MAX) {
  std::vector<Got> out;
  const auto give_up = Clock::now() + std::chrono::seconds(60);
  SourceLine line;
  while (out.size() < max_lines && Clock::now() < give_up) {
    auto r = t->Next(&line, Clock::now() + std::chrono::milliseconds(50));
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok() || *r == LineResult::kEnd) break;
    if (*r == LineResult::kLine) {
      out.push_back(
          {std::string(line.text), *line.header, *line.origin, line.line_no, line.partition});
    }
  }
  return out;
}

TEST(TailSourceTest, PartitionNames) {
  EXPECT_EQ(StreamFilePartition("part-0.events"), 0);
  EXPECT_EQ(StreamFilePartition("part-12.events.3"), 12);
  EXPECT_EQ(StreamFilePartition("part-12.events.2026-11-25"), 12);
  EXPECT_EQ(StreamFilePartition("part-1.events.tmp"), -1);
  EXPECT_EQ(StreamFilePartition("part-.events"), -1);
  EXPECT_EQ(StreamFilePartition("part-3.log"), -1);
  EXPECT_EQ(StreamFilePartition("_END"), -1);
  EXPECT_EQ(StreamFilePartition("xpart-1.events"), -1);
}

TEST(TailSourceTest, PositionRoundTripAndErrors) {
  TailPosition p;
  p.files.push_back({"part-0.events", 2049, 77, 1234, 10});
  p.files.push_back({"part-0.events.1", 2049, 78, 0, 0});
  auto back = TailPosition::Parse(p.Serialize());
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->files.size(), 2u);
  EXPECT_EQ(back->files[0].name, "part-0.events");
  EXPECT_EQ(back->files[0].inode, 77u);
  EXPECT_EQ(back->files[0].offset, 1234u);
  EXPECT_EQ(back->files[0].lines, 10);
  auto bad = TailPosition::Parse("freshet-tail-position v1\npart-0.events\t1\t2\tx\t4\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("line 2: field offset"), std::string::npos);
  EXPECT_FALSE(TailPosition::Parse("nope\n").ok());
}

TEST(TailSourceTest, AssignsPartitionsAndSkipsHeaders) {
  const std::string dir = TempDir("assign");
  for (int p = 0; p < 4; ++p) {
    Append(dir + "/part-" + std::to_string(p) + ".events",
           "#freshet-events v1\tc" + std::to_string(p) + "\nA" + std::to_string(p) + "\nB" +
               std::to_string(p) + "\n");
  }
  Append(dir + "/notes.txt", "ignored\n");
  Append(dir + "/_END", "");
  TailOptions o;
  o.dir = dir;
  o.worker = 1;
  o.num_workers = 2;
  auto t = TailSource::Open(o);
  ASSERT_TRUE(t.ok()) << t.status();
  auto got = ReadAll(t->get());
  std::map<int, std::vector<std::string>> by_part;
  for (const auto& g : got) {
    by_part[g.partition].push_back(g.text);
    EXPECT_EQ(g.header, "#freshet-events v1\tc" + std::to_string(g.partition));
    EXPECT_EQ(g.origin, dir + "/part-" + std::to_string(g.partition) + ".events");
  }
  EXPECT_EQ(by_part.size(), 2u);
  EXPECT_EQ(by_part[1], (std::vector<std::string>{"A1", "B1"}));
  EXPECT_EQ(by_part[3], (std::vector<std::string>{"A3", "B3"}));
  EXPECT_EQ(got[0].line_no, 2);  // the header is line 1
  EXPECT_EQ((*t)->Partitions(), (std::vector<int>{1, 3}));
  EXPECT_FALSE(TailSource::Open({dir + "/missing"}).ok());
}

TEST(TailSourceTest, WaitsForCompleteLinesAndDeliversAFinalUnterminatedLine) {
  const std::string dir = TempDir("partial");
  const std::string f = dir + "/part-0.events";
  Append(f, "#freshet-events v1\tx\nfirst\nsec");
  TailOptions o;
  o.dir = dir;
  auto t = TailSource::Open(o);
  ASSERT_TRUE(t.ok());
  SourceLine line;
  auto r = (*t)->Next(&line, Clock::now() + std::chrono::milliseconds(20));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(*r, LineResult::kLine);
  EXPECT_EQ(line.text, "first");
  const auto t0 = Clock::now();
  r = (*t)->Next(&line, Clock::now() + std::chrono::milliseconds(100));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, LineResult::kNone);  // "sec" is incomplete
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(100));
  Append(f, "ond\nthi");
  r = (*t)->Next(&line, Clock::now() + std::chrono::seconds(5));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(*r, LineResult::kLine);
  EXPECT_EQ(line.text, "second");
  Append(dir + "/_END", "");
  auto rest = ReadAll(t->get());
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].text, "thi");
  // The position counts the bytes of the file exactly.
  const TailPosition p = (*t)->Position();
  ASSERT_EQ(p.files.size(), 1u);
  struct stat st;
  stat(f.c_str(), &st);
  EXPECT_EQ(p.files[0].offset, static_cast<uint64_t>(st.st_size));
  EXPECT_EQ(p.files[0].lines, 4);
}

// A producer that appends lines in random pieces (lines split across writes)
// to `parts` partitions and rotates each file every `rotate_every` lines.
void Produce(const std::string& dir, int parts, int lines, int rotate_every, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> fds(parts), rotated(parts, 0);
  auto live = [&](int p) { return dir + "/part-" + std::to_string(p) + ".events"; };
  auto open_new = [&](int p) {
    fds[p] = open(live(p).c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const std::string h = "#freshet-events v1\tcol\n";
    EXPECT_EQ(write(fds[p], h.data(), h.size()), static_cast<ssize_t>(h.size()));
  };
  for (int p = 0; p < parts; ++p) open_new(p);
  for (int i = 0; i < lines; ++i) {
    const int p = i % parts;
    const std::string line = "p" + std::to_string(p) + " n" + std::to_string(i / parts) + "\n";
    const size_t cut = rng() % (line.size() + 1);
    EXPECT_EQ(write(fds[p], line.data(), cut), static_cast<ssize_t>(cut));
    if (rng() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
    EXPECT_EQ(write(fds[p], line.data() + cut, line.size() - cut),
              static_cast<ssize_t>(line.size() - cut));
    if ((i / parts + 1) % rotate_every == 0) {
      close(fds[p]);
      const std::string to = live(p) + "." + std::to_string(++rotated[p]);
      EXPECT_EQ(std::rename(live(p).c_str(), to.c_str()), 0);
      open_new(p);
    }
  }
  for (int p = 0; p < parts; ++p) close(fds[p]);
  close(open((dir + "/_END").c_str(), O_WRONLY | O_CREAT, 0644));
}

// Every produced line exactly once, in order per partition.
void CheckExactlyOnce(const std::vector<Got>& got, int parts, int lines) {
  std::vector<int> next(parts, 0);
  for (const auto& g : got) {
    ASSERT_EQ(g.header, "#freshet-events v1\tcol");
    const int p = g.partition;
    ASSERT_EQ(g.text, "p" + std::to_string(p) + " n" + std::to_string(next[p]))
        << "partition " << p << " from " << g.origin;
    ++next[p];
  }
  for (int p = 0; p < parts; ++p) EXPECT_EQ(next[p], lines / parts) << "partition " << p;
}

TEST(TailSourceTest, AppendsAndRotationsDuringTheRunAreReadExactlyOnce) {
  const std::string dir = TempDir("rotate");
  const int parts = 3, lines = 30000;
  std::thread producer(Produce, dir, parts, lines, 1000, 7);
  TailOptions o;
  o.dir = dir;
  o.read_chunk = 4096;  // many partial reads
  o.scan_interval = std::chrono::milliseconds(5);
  auto t = TailSource::Open(o);
  ASSERT_TRUE(t.ok());
  auto got = ReadAll(t->get());
  producer.join();
  CheckExactlyOnce(got, parts, lines);
  EXPECT_GE((*t)->rotations_seen(), 3);
  EXPECT_EQ((*t)->files_tracked(), static_cast<size_t>(parts * (lines / parts / 1000 + 1)));
}

TEST(TailSourceTest, RestoreFromASavedPositionReadsTheRestExactlyOnce) {
  const std::string dir = TempDir("restore");
  const int parts = 2, lines = 20000;
  std::thread producer(Produce, dir, parts, lines, 700, 11);
  TailOptions o;
  o.dir = dir;
  o.read_chunk = 1000;
  std::vector<Got> got;
  std::string saved;
  {
    auto t = TailSource::Open(o);
    ASSERT_TRUE(t.ok());
    got = ReadAll(t->get(), 7000);
    ASSERT_EQ(got.size(), 7000u);
    saved = (*t)->Position().Serialize();
  }  // the worker "dies" here, mid-stream, with data buffered but not delivered
  auto pos = TailPosition::Parse(saved);
  ASSERT_TRUE(pos.ok());
  auto t = TailSource::Open(o, &*pos);
  ASSERT_TRUE(t.ok());
  auto rest = ReadAll(t->get());
  producer.join();
  got.insert(got.end(), rest.begin(), rest.end());
  CheckExactlyOnce(got, parts, lines);
}

}  // namespace
}  // namespace freshet
