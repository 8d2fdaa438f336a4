#include "worker/stream/stream_source.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "worker/stream/tail_source.h"

namespace freshet {
namespace {

using Clock = std::chrono::steady_clock;

std::string TempDir(const std::string& name) {
  // Under the test binary's scratch TMPDIR (common/internal/gtest_main.cc),
  // removed when the tests end.
  std::string dir =
      ::testing::TempDir() + "freshet_stream_src_test_" + name + "_" + std::to_string(getpid());
  std::system(("rm -rf " + dir).c_str());
  mkdir(dir.c_str(), 0755);
  return dir;
}

std::unique_ptr<StreamExampleSource> Open(const std::string& dir, int64_t max_bad = 100) {
  TailOptions t;
  t.dir = dir;
  auto tail = TailSource::Open(t);
  EXPECT_TRUE(tail.ok()) << tail.status();
  StreamSourceOptions o;
  o.columns = {"item", "user"};
  o.join.window_ms = 1000;
  o.policy.max_bad_records = max_bad;
  o.policy.max_bad_ratio = 0;
  auto s = StreamExampleSource::Create(std::move(tail).value(), o);
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(s).value();
}

// Polls until kEnd; returns the examples, or the error.
StatusOr<std::vector<Example>> Drain(StreamExampleSource* s) {
  std::vector<Example> out;
  Example ex;
  const auto give_up = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < give_up) {
    FRESHET_ASSIGN_OR_RETURN(auto r, s->Poll(&ex, Clock::now() + std::chrono::milliseconds(20)));
    if (r == ExampleSource::Outcome::kEnd) return out;
    if (r == ExampleSource::Outcome::kExample) out.push_back(ex);
  }
  return DeadlineExceeded("stream did not end");
}

TEST(StreamExampleSourceTest, ProjectsColumnsJoinsAndSkipsBadLines) {
  const std::string dir = TempDir("project");
  // Producer columns in another order, with one the job does not read.
  std::ofstream(dir + "/part-0.events") << "#freshet-events v1\tuser\textra\titem\n"
                                        << "imp\t1000\tr1\tu1\ti1\t0.3\tu1\tzzz\ti1\n"
                                        << "imp\t1000\tr1\tu1\ti2\t\tu1\tzzz\ti2\n"
                                        << "click\t1500\tr1\tu1\ti2\n"
                                        << "imp\tnot-a-time\tr1\tu1\ti3\t\tu1\tzzz\ti3\n"
                                        // Issue 18's fuzz finding: an item with control characters
                                        // is a bad record (counted, skipped), not an event.
                                        << "click\t1500\t1\t\t\x89" << std::string(85, '\r') << "\n"
                                        << "imp\t5000\tr2\tu2\ti1\t0.9\tu2\tzzz\ti1\n";
  std::ofstream(dir + "/_END");
  auto s = Open(dir);
  auto got = Drain(s.get());
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 3u);
  // i2 is positive at its click; the others close at the watermark / end.
  EXPECT_EQ((*got)[0].values, (std::vector<std::string>{"i2", "u1"}));
  EXPECT_EQ((*got)[0].label, 1);
  EXPECT_EQ((*got)[0].oracle, -1);
  EXPECT_EQ((*got)[1].values, (std::vector<std::string>{"i1", "u1"}));
  EXPECT_EQ((*got)[1].label, 0);
  EXPECT_FLOAT_EQ((*got)[1].oracle, 0.3f);
  EXPECT_EQ((*got)[1].time, 1);
  EXPECT_EQ((*got)[2].values, (std::vector<std::string>{"i1", "u2"}));
  EXPECT_EQ(s->stats().bad, 2);
  EXPECT_EQ(s->stats().lines, 6);
  EXPECT_EQ(s->stats().examples, 3);
  EXPECT_EQ(s->join_counters().joined, 1);
  EXPECT_EQ(s->join_counters().expired, 2);
  EXPECT_EQ(s->watermark_ms(), 5000);
}

TEST(StreamExampleSourceTest, MissingColumnAndTooManyBadLinesStopLoudly) {
  const std::string dir = TempDir("missing");
  std::ofstream(dir + "/part-0.events") << "#freshet-events v1\tuser\n"
                                        << "imp\t1\tr\tu\ti\t\tu\n";
  std::ofstream(dir + "/_END");
  auto s = Open(dir);
  auto got = Drain(s.get());
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("part-0.events:1: the stream has no column 'item'"),
            std::string::npos)
      << got.status();

  const std::string dir2 = TempDir("bad");
  std::ofstream f(dir2 + "/part-0.events");
  f << "#freshet-events v1\titem\tuser\n";
  for (int i = 0; i < 5; ++i) f << "imp\t1\tr" << i << "\tu\ti\t\n";  // a value short
  f.close();
  std::ofstream(dir2 + "/_END");
  auto s2 = Open(dir2, 3);
  got = Drain(s2.get());
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("4 bad event lines of 4 read; last: "), std::string::npos)
      << got.status();
  EXPECT_NE(got.status().message().find("part-0.events:5: an imp event has 6 fields"),
            std::string::npos)
      << got.status();
}

// The freshness clocks end to end through a tailed file: an example's read
// time is when its impression's line was read; a positive's label time is
// when its click's line was read; a negative's label time is when its
// window closed, which here is after the line that moved the watermark was
// written, at least kGapMs after the impression was read.
TEST(StreamExampleSourceTest, StampsReadAndLabelTimesFromTheLines) {
  constexpr int64_t kGapMs = 60;
  const std::string dir = TempDir("clocks");
  const std::string path = dir + "/part-0.events";
  std::ofstream(path) << "#freshet-events v1\titem\tuser\n"
                      << "imp\t1000\tr1\tu1\ti1\t\ti1\tu1\n"
                      << "imp\t1000\tr1\tu1\ti2\t\ti2\tu1\n";
  auto s = Open(dir);
  const int64_t before_read = WallUnixMs();
  Example ex;
  auto r = s->Poll(&ex, Clock::now() + std::chrono::milliseconds(20));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, ExampleSource::Outcome::kNotNow);  // both wait for a label
  const int64_t after_read = WallUnixMs();
  std::this_thread::sleep_for(std::chrono::milliseconds(kGapMs));
  const int64_t before_append = WallUnixMs();
  // i2's click, then an impression whose time moves the watermark past
  // i1's window (1000 + 1000).
  std::ofstream(path, std::ios::app) << "click\t1500\tr1\tu1\ti2\n"
                                     << "imp\t5000\tr2\tu2\ti3\t\ti3\tu2\n";
  std::ofstream(dir + "/_END");
  auto got = Drain(s.get());
  const int64_t after_end = WallUnixMs();
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 3u);
  const Example& i2 = (*got)[0];
  const Example& i1 = (*got)[1];
  const Example& i3 = (*got)[2];
  ASSERT_EQ(i2.values[0], "i2");
  ASSERT_EQ(i1.values[0], "i1");
  ASSERT_EQ(i3.values[0], "i3");
  EXPECT_EQ(i2.label, 1);
  EXPECT_EQ(i1.label, 0);
  // The impressions of i1 and i2 were read by the first Poll.
  for (const Example* e : {&i1, &i2}) {
    EXPECT_GE(e->read_unix_ms, before_read);
    EXPECT_LE(e->read_unix_ms, after_read);
  }
  // The click and i3 were read after they were appended.
  EXPECT_GE(i2.label_unix_ms, before_append);
  EXPECT_LE(i2.label_unix_ms, after_end);
  EXPECT_GE(i3.read_unix_ms, before_append);
  // i1's window closed after i3's line was read: its label waited.
  EXPECT_GE(i1.label_unix_ms, before_append);
  EXPECT_GE(i1.label_unix_ms - i1.read_unix_ms, kGapMs);
  for (const Example& e : *got) {
    EXPECT_LE(e.read_unix_ms, e.label_unix_ms) << e.values[0];
    EXPECT_LE(e.label_unix_ms, after_end) << e.values[0];
  }
}

}  // namespace
}  // namespace freshet
