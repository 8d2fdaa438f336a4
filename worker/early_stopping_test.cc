#include "worker/early_stopping.h"

#include <gtest/gtest.h>

#include <cmath>

namespace freshet {
namespace {

TEST(EarlyStoppingTest, TracksTheBestPassAndStopsAfterPatience) {
  auto es = EarlyStopping::Create("auc", 2, 0);
  ASSERT_TRUE(es.ok());
  EXPECT_TRUE(es->Add(0.70));  // pass 1
  EXPECT_EQ(es->best_pass(), 1);
  EXPECT_TRUE(es->Add(0.72));   // pass 2
  EXPECT_FALSE(es->Add(0.71));  // pass 3: worse
  EXPECT_FALSE(es->Stop());     // patience 2: one bad pass is not enough
  EXPECT_TRUE(es->Add(0.73));   // pass 4 improves: the count restarts
  EXPECT_EQ(es->best_pass(), 4);
  EXPECT_FALSE(es->Add(0.73));  // equal is not better
  EXPECT_FALSE(es->Stop());
  EXPECT_FALSE(es->Add(0.60));
  EXPECT_TRUE(es->Stop());
  EXPECT_EQ(es->best_pass(), 4);
  EXPECT_DOUBLE_EQ(es->best_value(), 0.73);
  EXPECT_EQ(es->passes(), 6);
}

TEST(EarlyStoppingTest, LoglossIsLowerBetter) {
  auto es = EarlyStopping::Create("logloss", 1, 0);
  ASSERT_TRUE(es.ok());
  EvalResult r;
  r.auc = 0.9;
  r.logloss = 0.3;
  r.gauc = 0.6;
  EXPECT_DOUBLE_EQ(es->ValueOf(r), 0.3);
  EXPECT_TRUE(es->Add(0.40));
  EXPECT_TRUE(es->Add(0.35));
  EXPECT_FALSE(es->Stop());
  EXPECT_FALSE(es->Add(0.36));
  EXPECT_TRUE(es->Stop());
  EXPECT_EQ(es->best_pass(), 2);
  auto g = EarlyStopping::Create("gauc", 1, 0);
  ASSERT_TRUE(g.ok());
  EXPECT_DOUBLE_EQ(g->ValueOf(r), 0.6);
  EXPECT_TRUE(g->higher_is_better());
}

TEST(EarlyStoppingTest, MinDeltaAndNan) {
  auto es = EarlyStopping::Create("auc", 1, 0.01);
  ASSERT_TRUE(es.ok());
  EXPECT_FALSE(es->Add(std::nan("")));  // undefined: never the best
  EXPECT_EQ(es->best_pass(), 0);
  EXPECT_TRUE(es->Stop());
  auto es2 = EarlyStopping::Create("auc", 1, 0.01);
  EXPECT_TRUE(es2->Add(0.70));
  EXPECT_FALSE(es2->Add(0.705));  // within min_delta
  EXPECT_TRUE(es2->Stop());
  EXPECT_EQ(es2->best_pass(), 1);
}

TEST(EarlyStoppingTest, PatienceZeroNeverStops) {
  auto es = EarlyStopping::Create("auc", 0, 0);
  ASSERT_TRUE(es.ok());
  es->Add(0.8);
  for (int i = 0; i < 5; ++i) es->Add(0.5);
  EXPECT_FALSE(es->Stop());
  EXPECT_EQ(es->best_pass(), 1);
}

TEST(EarlyStoppingTest, RejectsUnknownMetric) {
  auto es = EarlyStopping::Create("hr10", 1, 0);
  ASSERT_FALSE(es.ok());
  EXPECT_NE(es.status().message().find("early_stopping.metric"), std::string::npos);
}

}  // namespace
}  // namespace freshet
