#include "common/metrics_service.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

namespace freshet {
namespace {

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

TEST(MetricsServiceTest, ServesPrometheusTextAndWritesTheLog) {
  MetricsRegistry reg({{"rank", "0"}, {"role", "server"}});
  Counter* pulls = reg.AddCounter("pull_requests", "Pulls handled.");
  const std::string log =
      ::testing::TempDir() + "/metrics-test-" + std::to_string(getpid()) + ".jsonl";
  std::remove(log.c_str());
  MetricsServiceOptions o;
  o.port = 0;
  o.log_path = log;
  o.interval = std::chrono::milliseconds(50);
  o.log_fields = "\"rank\":0,\"role\":\"server\"";
  auto s = MetricsService::Start(o, &reg);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_GT((*s)->port(), 0);
  pulls->Add(7);
  httplib::Client cli("127.0.0.1", (*s)->port());
  cli.set_connection_timeout(5);
  cli.set_read_timeout(5);
  auto res = cli.Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->get_header_value("Content-Type").find("version=0.0.4"), std::string::npos);
  EXPECT_NE(res->body.find("freshet_pull_requests_total{rank=\"0\",role=\"server\"} 7\n"),
            std::string::npos)
      << res->body;
  auto missing = cli.Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  pulls->Add(1);
  (*s)->Stop();
  const auto lines = ReadLines(log);
  ASSERT_GE(lines.size(), 3u);  // several intervals plus the final line
  for (const auto& l : lines) {
    EXPECT_EQ(l.rfind("{\"unix_ms\":", 0), 0u) << l;
    EXPECT_NE(l.find("\"rank\":0,\"role\":\"server\""), std::string::npos) << l;
  }
  EXPECT_NE(lines.back().find("\"pull_requests\":8,"), std::string::npos) << lines.back();
  // Stopped: the port no longer answers.
  httplib::Client after("127.0.0.1", (*s)->port());
  after.set_connection_timeout(1);
  EXPECT_FALSE(after.Get("/metrics"));
  std::remove(log.c_str());
}

TEST(MetricsServiceTest, ErrorsNameThePortAndThePath) {
  MetricsRegistry reg;
  MetricsServiceOptions o;
  o.port = 0;
  auto first = MetricsService::Start(o, &reg);
  ASSERT_TRUE(first.ok()) << first.status();
  o.port = (*first)->port();
  auto clash = MetricsService::Start(o, &reg);
  ASSERT_FALSE(clash.ok());
  EXPECT_EQ(clash.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(clash.status().message().find(":" + std::to_string(o.port)), std::string::npos)
      << clash.status();
  MetricsServiceOptions bad;
  bad.log_path = "/nonexistent-dir/x/metrics.jsonl";
  auto no_log = MetricsService::Start(bad, &reg);
  ASSERT_FALSE(no_log.ok());
  EXPECT_NE(no_log.status().message().find("/nonexistent-dir/x/metrics.jsonl"), std::string::npos);
  bad.log_path.clear();
  bad.interval = std::chrono::milliseconds(0);
  EXPECT_EQ(MetricsService::Start(bad, &reg).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace freshet
