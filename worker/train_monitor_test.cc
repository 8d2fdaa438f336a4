#include "worker/train_monitor.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "worker/trainer.h"

namespace freshet {
namespace {

std::string Slurp(std::FILE* f) {
  std::rewind(f);
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) s.append(buf, n);
  return s;
}

TEST(StatusLineTest, PlainLinesWithEta) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  StatusLine s(f, /*live=*/false);
  EXPECT_EQ(s.Interval(11), 11);
  s.Show("step 10", 0.25, 30);  // 30 s for a quarter: 90 s left
  s.Show("step 20", -1, 40);    // unknown fraction: no ETA
  s.Finish();
  EXPECT_EQ(Slurp(f), "step 10   25% ETA 1m30s\nstep 20\n");
  std::fclose(f);
}

TEST(StatusLineTest, LiveLineRewritesInPlace) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  StatusLine s(f, /*live=*/true);
  EXPECT_EQ(s.Interval(11), 0.5);
  s.Show("a", 0.5, 10);
  s.Show("b", 1.0, 20);
  s.Finish();
  s.Finish();  // idempotent
  EXPECT_EQ(Slurp(f), "\r\033[Ka   50% ETA 10s\r\033[Kb  100% ETA 0s\n");
  std::fclose(f);
}

TEST(StatusLineTest, FormatDuration) {
  EXPECT_EQ(StatusLine::FormatDuration(0), "0s");
  EXPECT_EQ(StatusLine::FormatDuration(59.4), "59s");
  EXPECT_EQ(StatusLine::FormatDuration(245), "4m05s");
  EXPECT_EQ(StatusLine::FormatDuration(3723), "1h02m03s");
}

TEST(TrainMetricsTest, CountsStepsExamplesAndTimeSplit) {
  MetricsRegistry reg;
  TrainMetrics m(&reg);
  TrainStats st;
  int auc_calls = 0;
  auto auc = [&auc_calls] {
    ++auc_calls;
    return 0.75;
  };
  st.read_s = 0.5;
  st.pull_s = 0.25;
  m.AfterStep(st, 100, 300, 150, auc);
  st.read_s = 1.5;
  m.AfterStep(st, 50, 200, 40, auc);
  EXPECT_EQ(auc_calls, 0);  // at most once a second
  const std::string text = reg.RenderPrometheus();
  EXPECT_NE(text.find("freshet_train_steps_total 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("freshet_train_examples_total 150\n"), std::string::npos);
  EXPECT_NE(text.find("freshet_train_global_examples_total 500\n"), std::string::npos);
  EXPECT_NE(text.find("freshet_train_read_us_total 1500000\n"), std::string::npos);
  EXPECT_NE(text.find("freshet_train_pull_wait_us_total 250000\n"), std::string::npos);
  EXPECT_NE(text.find("freshet_train_step_seconds_count 2\n"), std::string::npos);
}

}  // namespace
}  // namespace freshet
