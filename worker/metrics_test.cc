#include "worker/metrics.h"

#include <gtest/gtest.h>

#include <cmath>

namespace freshet {
namespace {

TEST(MetricsTest, AucCountsPairsAndTies) {
  // Positives at 0.9 and 0.4; negatives at 0.5, 0.1. Pairs: (0.9>0.5),
  // (0.9>0.1), (0.4<0.5), (0.4>0.1) -> 3/4.
  EXPECT_DOUBLE_EQ(Auc({0.9f, 0.5f, 0.4f, 0.1f}, {1, 0, 1, 0}), 0.75);
  // A tie between a positive and a negative counts half.
  EXPECT_DOUBLE_EQ(Auc({0.5f, 0.5f, 0.1f}, {1, 0, 0}), 0.75);
  EXPECT_DOUBLE_EQ(Auc({0.1f, 0.2f}, {1, 0}), 0.0);
  EXPECT_TRUE(std::isnan(Auc({0.1f, 0.2f}, {1, 1})));
}

TEST(MetricsTest, LogLoss) {
  EXPECT_NEAR(MeanLogLoss({0.8f, 0.25f}, {1, 0}), -(std::log(0.8) + std::log(0.75)) / 2, 1e-6);
  EXPECT_LT(MeanLogLoss({0.0f}, {1}), 17);  // clipped, finite
}

TEST(MetricsTest, GaucWeightsUsersByImpressions) {
  // User 1: AUC 1 over 2 examples; user 2: AUC 0 over 4 examples; user 3
  // has only negatives and is skipped.
  const std::vector<float> s = {0.9f, 0.1f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
  const std::vector<float> l = {1, 0, 1, 0, 0, 0, 0};
  const std::vector<uint64_t> u = {1, 1, 2, 2, 2, 2, 3};
  int64_t users = 0;
  EXPECT_DOUBLE_EQ(Gauc(s, l, u, &users), (1.0 * 2 + 0.0 * 4) / 6);
  EXPECT_EQ(users, 2);
}

TEST(MetricsTest, RankingHitRateAndNdcg) {
  // Group 1: positive ranks 1st; group 2: positive ranks 3rd (two higher).
  const std::vector<float> s = {0.9f, 0.1f, 0.2f, 0.3f, 0.2f, 0.5f, 0.6f, 0.1f};
  double hr = 0, ndcg = 0;
  RankingMetrics(s, 4, 2, &hr, &ndcg);
  EXPECT_DOUBLE_EQ(hr, 0.5);
  EXPECT_DOUBLE_EQ(ndcg, 0.5);
  RankingMetrics(s, 4, 3, &hr, &ndcg);
  EXPECT_DOUBLE_EQ(hr, 1.0);
  EXPECT_DOUBLE_EQ(ndcg, (1.0 + 1.0 / std::log2(4.0)) / 2);
}

TEST(MetricsTest, WindowAucForgetsOldExamples) {
  WindowAuc w(4);
  for (int i = 0; i < 4; ++i) w.Add(i < 2 ? 0.9f : 0.1f, i < 2 ? 0.0f : 1.0f);  // all wrong
  EXPECT_DOUBLE_EQ(w.Value(), 0.0);
  for (int i = 0; i < 4; ++i) w.Add(i < 2 ? 0.9f : 0.1f, i < 2 ? 1.0f : 0.0f);  // all right
  EXPECT_DOUBLE_EQ(w.Value(), 1.0);
  EXPECT_EQ(w.count(), 4u);
}

TEST(MetricsTest, EvaluateIncludesOracle) {
  EvalResult r = Evaluate({0.9f, 0.2f}, {1, 0}, {1, 1}, {0.6f, 0.7f});
  EXPECT_EQ(r.examples, 2);
  EXPECT_EQ(r.positives, 1);
  EXPECT_DOUBLE_EQ(r.auc, 1.0);
  EXPECT_DOUBLE_EQ(r.oracle_auc, 0.0);
  EXPECT_NE(r.ToJsonFields("holdout_").find("\"holdout_auc\":1.00000"), std::string::npos);
}

}  // namespace
}  // namespace freshet
