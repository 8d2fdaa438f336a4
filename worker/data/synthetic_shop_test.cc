#include "worker/data/synthetic_shop.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "worker/data/example_io.h"

namespace freshet {
namespace {

// A smaller shop than the default (80k impressions), for speed.
ShopConfig SmallConfig() {
  ShopConfig c;
  c.num_users = 500;
  c.num_items = 250;
  c.num_requests = 8000;
  c.drift_period_s = 86400;  // 7 trending periods over the 7 days
  return c;
}

std::vector<Example> GenerateAll(const ShopConfig& config) {
  auto shop = SyntheticShop::Create(config);
  EXPECT_TRUE(shop.ok()) << shop.status();
  std::vector<Example> all, slate;
  while ((*shop)->NextRequest(&slate)) all.insert(all.end(), slate.begin(), slate.end());
  return all;
}

int Column(const std::string& name) {
  const auto& cols = ShopColumns();
  const auto it = std::find(cols.begin(), cols.end(), name);
  EXPECT_NE(it, cols.end()) << name;
  return static_cast<int>(it - cols.begin());
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string t;
  while (in >> t) out.push_back(t);
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class ShopDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            ("synthetic_shop_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST(SyntheticShopTest, RejectsBadConfigs) {
  EXPECT_TRUE(ValidateShopConfig(ShopConfig()).ok());
  ShopConfig c;
  c.num_users = 0;
  EXPECT_EQ(ValidateShopConfig(c).code(), StatusCode::kInvalidArgument);
  c = ShopConfig();
  c.slate_size = c.num_items + 1;
  EXPECT_EQ(ValidateShopConfig(c).code(), StatusCode::kInvalidArgument);
  c = ShopConfig();
  c.holdout_fraction = 1.0;
  EXPECT_EQ(ValidateShopConfig(c).code(), StatusCode::kInvalidArgument);
  c = ShopConfig();
  c.num_items = c.num_categories - 1;
  auto shop = SyntheticShop::Create(c);
  ASSERT_FALSE(shop.ok());
  EXPECT_NE(shop.status().message().find("num_items"), std::string::npos);

  EXPECT_EQ(*ParseShopLabel("click"), ShopLabel::kClick);
  EXPECT_EQ(*ParseShopLabel("purchase"), ShopLabel::kPurchase);
  EXPECT_FALSE(ParseShopLabel("buy").ok());
}

TEST(SyntheticShopTest, SlatesAreWellFormedAndTimeOrdered) {
  const ShopConfig config = SmallConfig();
  auto shop = SyntheticShop::Create(config);
  ASSERT_TRUE(shop.ok()) << shop.status();
  EXPECT_EQ((*shop)->total_impressions(), config.num_requests * config.slate_size);
  std::vector<Example> slate;
  int64_t requests = 0, last_time = 0;
  const int hour_col = Column("hour"), pos_col = Column("position"), query_col = Column("query"),
            surface_col = Column("surface"), user_col = Column("user");
  while ((*shop)->NextRequest(&slate)) {
    ++requests;
    ASSERT_EQ(slate.size(), static_cast<size_t>(config.slate_size));
    std::set<std::string> items;
    for (int i = 0; i < config.slate_size; ++i) {
      const Example& ex = slate[i];
      ASSERT_EQ(ex.values.size(), ShopColumns().size());
      EXPECT_EQ(ex.time, slate[0].time);
      EXPECT_EQ(ex.user, ex.values[user_col]);
      EXPECT_EQ(ex.values[pos_col], std::to_string(i + 1));
      EXPECT_EQ(ex.values[hour_col], std::to_string((ex.time % 86400) / 3600));
      EXPECT_EQ(ex.values[surface_col] == "search", !ex.values[query_col].empty());
      EXPECT_TRUE(ex.label == 0.0f || ex.label == 1.0f);
      EXPECT_GT(ex.oracle, 0.0f);
      EXPECT_LT(ex.oracle, 1.0f);
      for (const std::string& v : ex.values) {
        EXPECT_EQ(v.find_first_of("\t\n"), std::string::npos);
      }
      items.insert(ex.values[Column("item")]);
    }
    EXPECT_EQ(items.size(), static_cast<size_t>(config.slate_size)) << "duplicate item in a slate";
    EXPECT_GE(slate[0].time, last_time);
    EXPECT_GE(slate[0].time, config.start_time);
    EXPECT_LT(slate[0].time, config.start_time + config.duration_s);
    last_time = slate[0].time;
  }
  EXPECT_EQ(requests, config.num_requests);
  EXPECT_TRUE(slate.empty());
  EXPECT_FALSE((*shop)->NextRequest(&slate));
}

TEST(SyntheticShopTest, RecentItemsAreEarlierClicksOnly) {
  auto shop = SyntheticShop::Create(SmallConfig());
  ASSERT_TRUE(shop.ok()) << shop.status();
  const int recent_col = Column("user_recent_items"), item_col = Column("item");
  std::map<std::string, std::vector<std::string>> history;  // most recent first
  std::vector<Example> slate;
  int64_t requests = 0, with_history = 0;
  while ((*shop)->NextRequest(&slate)) {
    ++requests;
    std::vector<std::string>& h = history[slate[0].user];
    std::string expected;
    for (const std::string& item : h) expected += (expected.empty() ? "" : " ") + item;
    for (const Example& ex : slate) ASSERT_EQ(ex.values[recent_col], expected);
    with_history += !expected.empty();
    // A click at a larger position number counts as more recent.
    for (const Example& ex : slate) {
      if (ex.label > 0.5f) h.insert(h.begin(), ex.values[item_col]);
    }
    if (h.size() > 5) h.resize(5);
  }
  EXPECT_GT(with_history, requests / 2);
}

TEST(SyntheticShopTest, LabelsAreDrawnFromTheOracle) {
  const std::vector<Example> all = GenerateAll(SmallConfig());
  double positives = 0, oracle_sum = 0;
  std::vector<std::pair<float, float>> scored;
  for (const Example& ex : all) {
    positives += ex.label;
    oracle_sum += ex.oracle;
    scored.emplace_back(ex.oracle, ex.label);
  }
  const double n = static_cast<double>(all.size());
  const double rate = positives / n;
  EXPECT_GT(rate, 0.05);
  EXPECT_LT(rate, 0.15);
  EXPECT_NEAR(oracle_sum / n, rate, 4 * std::sqrt(rate * (1 - rate) / n));
  // Calibration per decile of the oracle: observed rate within 4 standard
  // errors of the mean oracle.
  std::sort(scored.begin(), scored.end());
  for (int b = 0; b < 10; ++b) {
    const size_t lo = scored.size() * b / 10, hi = scored.size() * (b + 1) / 10;
    double pos = 0, p = 0, var = 0;
    for (size_t k = lo; k < hi; ++k) {
      pos += scored[k].second;
      p += scored[k].first;
      var += scored[k].first * (1 - scored[k].first);
    }
    EXPECT_NEAR(pos, p, 4 * std::sqrt(var) + 1) << "decile " << b;
  }
}

TEST(SyntheticShopTest, PositionBiasIsVisible) {
  const std::vector<Example> all = GenerateAll(SmallConfig());
  const int pos_col = Column("position");
  double clicks[11] = {0}, shown[11] = {0};
  for (const Example& ex : all) {
    const int pos = std::stoi(ex.values[pos_col]);
    clicks[pos] += ex.label;
    shown[pos] += 1;
  }
  const double ctr1 = clicks[1] / shown[1], ctr5 = clicks[5] / shown[5];
  EXPECT_GT(ctr1, 2.0 * ctr5) << "ctr@1 " << ctr1 << " ctr@5 " << ctr5;
  EXPECT_GT(clicks[5] / shown[5], clicks[10] / shown[10]);
}

TEST(SyntheticShopTest, TrendingCategoryDrifts) {
  const ShopConfig config = SmallConfig();
  auto shop = SyntheticShop::Create(config);
  ASSERT_TRUE(shop.ok()) << shop.status();
  const std::vector<int> trending = (*shop)->trending_categories();
  ASSERT_EQ(trending.size(), 7u);
  std::vector<Example> all, slate;
  while ((*shop)->NextRequest(&slate)) all.insert(all.end(), slate.begin(), slate.end());
  // Pooled over periods: the CTR of a category while it trends, against the
  // same category's CTR in the other periods.
  const int cat_col = Column("category");
  double in_clicks = 0, in_shown = 0, out_clicks = 0, out_shown = 0;
  for (const Example& ex : all) {
    const size_t period = (ex.time - config.start_time) / config.drift_period_s;
    const std::string& cat = ex.values[cat_col];
    for (size_t p = 0; p < trending.size(); ++p) {
      if (cat != "c" + std::to_string(trending[p])) continue;
      if (p == period) {
        in_clicks += ex.label;
        in_shown += 1;
      } else {
        out_clicks += ex.label;
        out_shown += 1;
      }
    }
  }
  ASSERT_GT(in_shown, 500);
  ASSERT_GT(out_shown, 500);
  const double in_ctr = in_clicks / in_shown, out_ctr = out_clicks / out_shown;
  EXPECT_GT(in_ctr, 1.2 * out_ctr) << "trending " << in_ctr << " otherwise " << out_ctr;
}

TEST(SyntheticShopTest, QueryTokensMatchItemCategories) {
  const ShopConfig config = SmallConfig();
  auto shop = SyntheticShop::Create(config);
  ASSERT_TRUE(shop.ok()) << shop.status();
  std::map<std::string, int> word_category;
  for (int c = 0; c < config.num_categories; ++c) {
    for (const std::string& w : (*shop)->category_words(c)) {
      EXPECT_TRUE(word_category.emplace(w, c).second) << "word " << w << " in two categories";
    }
  }
  const int query_col = Column("query"), cat_col = Column("category");
  std::vector<Example> slate;
  double search = 0, matched = 0;
  while ((*shop)->NextRequest(&slate)) {
    for (const Example& ex : slate) {
      if (ex.values[query_col].empty()) continue;
      ++search;
      bool match = false;
      for (const std::string& t : Split(ex.values[query_col])) {
        auto it = word_category.find(t);
        if (it != word_category.end() && "c" + std::to_string(it->second) == ex.values[cat_col]) {
          match = true;
        }
      }
      matched += match;
    }
  }
  ASSERT_GT(search, 0.3 * config.num_requests * config.slate_size);
  // By chance about 1-2 categories in 20 would match.
  EXPECT_GT(matched / search, 0.5);
}

TEST(SyntheticShopTest, PurchaseLabelIsClickAndBuy) {
  ShopConfig config = SmallConfig();
  const std::vector<Example> clicks = GenerateAll(config);
  config.label = ShopLabel::kPurchase;
  const std::vector<Example> buys = GenerateAll(config);
  ASSERT_EQ(clicks.size(), buys.size());
  double num_clicks = 0, num_buys = 0;
  for (size_t i = 0; i < clicks.size(); ++i) {
    ASSERT_EQ(clicks[i].values, buys[i].values) << i;
    EXPECT_LE(buys[i].label, clicks[i].label) << i;
    EXPECT_LE(buys[i].oracle, clicks[i].oracle) << i;
    num_clicks += clicks[i].label;
    num_buys += buys[i].label;
  }
  EXPECT_GT(num_buys, 0.05 * num_clicks);
  EXPECT_LT(num_buys, 0.5 * num_clicks);

  // NextRequest's reactions (the example files' label:buy) are the same
  // draws: a click config's reactions give both labels.
  config.label = ShopLabel::kClick;
  auto shop = SyntheticShop::Create(config);
  ASSERT_TRUE(shop.ok());
  std::vector<Example> slate;
  std::vector<ShopReaction> reactions;
  size_t i = 0;
  while ((*shop)->NextRequest(&slate, &reactions)) {
    ASSERT_EQ(reactions.size(), slate.size());
    for (size_t k = 0; k < slate.size(); ++k, ++i) {
      ASSERT_EQ(reactions[k].click, clicks[i].label > 0.5f) << i;
      ASSERT_EQ(reactions[k].buy, buys[i].label > 0.5f) << i;
      ASSERT_NEAR(reactions[k].p_click, clicks[i].oracle, 1e-6) << i;
      ASSERT_NEAR(reactions[k].p_click * reactions[k].p_buy, buys[i].oracle, 1e-6) << i;
    }
  }
  EXPECT_EQ(i, clicks.size());
  EXPECT_TRUE(reactions.empty());
}

TEST_F(ShopDirTest, WritesDeterministicFilesWithKnownOracleAuc) {
  const ShopConfig config = SmallConfig();
  auto a = WriteSyntheticShop(config, dir_ + "/a");
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = WriteSyntheticShop(config, dir_ + "/b");
  ASSERT_TRUE(b.ok()) << b.status();
  for (const char* name : {"/train.examples", "/holdout.examples", "/shop_info.txt"}) {
    const std::string fa = ReadFile(dir_ + "/a" + name);
    EXPECT_FALSE(fa.empty()) << name;
    EXPECT_EQ(fa, ReadFile(dir_ + "/b" + name)) << name;
  }
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_ + "/a")) {
    ++files;
    EXPECT_EQ(entry.path().extension() == ".tmp", false) << entry.path();
  }
  EXPECT_EQ(files, 3);
  ShopConfig other = config;
  other.seed = 2;
  auto c = WriteSyntheticShop(other, dir_ + "/c");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_NE(ReadFile(dir_ + "/a/train.examples"), ReadFile(dir_ + "/c/train.examples"));

  const ShopSummary& s = *a;
  EXPECT_EQ(s.requests, config.num_requests);
  EXPECT_EQ(s.train_examples + s.holdout_examples, config.num_requests * config.slate_size);
  EXPECT_EQ(s.holdout_examples, config.num_requests / 5 * config.slate_size);
  EXPECT_EQ(s.columns, ShopExampleColumns());
  EXPECT_EQ(s.columns.back(), "label:buy");
  // Purchases: a subset of the clicks, rarer, and their oracle ranks them.
  EXPECT_GT(s.holdout_buys, 0);
  EXPECT_LT(s.holdout_buys, s.holdout_positives);
  EXPECT_LT(s.train_buys, s.train_positives);
  EXPECT_GT(s.oracle_auc_buy_holdout, 0.7);
  EXPECT_LT(s.oracle_auc_buy_holdout, 0.99);
  EXPECT_GT(s.oracle_auc_cvr_holdout, 0.55);
  EXPECT_LT(s.oracle_auc_cvr_holdout, s.oracle_auc_buy_holdout);
  EXPECT_NE(ReadFile(s.info_file).find("oracle_auc_buy_holdout (label:buy): 0."),
            std::string::npos);
  EXPECT_GT(s.oracle_auc_holdout, 0.65);
  EXPECT_LT(s.oracle_auc_holdout, 0.95);
  EXPECT_GT(s.oracle_auc_train, 0.65);
  EXPECT_LT(s.oracle_auc_train, 0.95);
  EXPECT_NE(ReadFile(s.info_file).find("oracle_auc_holdout: "), std::string::npos);
  const std::string json = ShopSummaryJson(s);
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.back(), '}');
  EXPECT_NE(json.find("\"oracle_auc_holdout\": 0."), std::string::npos);

  // Read back through the example reader: counts, columns, time order, and
  // every holdout time at or after every train time.
  auto header = ReadExampleHeader(s.train_file);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(*header, ShopExampleColumns());
  const size_t buy_col = ShopExampleColumns().size() - 1;
  int64_t last_train_time = 0;
  for (const std::string& file : {s.train_file, s.holdout_file}) {
    auto reader = ExampleReader::OpenFiles({file}, BadRecordPolicy());
    ASSERT_TRUE(reader.ok()) << reader.status();
    Example ex;
    int64_t n = 0, positives = 0, buys = 0, first_time = -1, last_time = 0;
    while (true) {
      auto more = (*reader)->Next(&ex);
      ASSERT_TRUE(more.ok()) << more.status();
      if (!*more) break;
      ASSERT_EQ(ex.values.size(), ShopExampleColumns().size());
      const std::string& buy = ex.values[buy_col];
      ASSERT_TRUE(buy == "0" || buy == "1") << buy;
      if (buy == "1") {
        ASSERT_GT(ex.label, 0.5f) << "a purchase without a click";
        ++buys;
      }
      ASSERT_GE(ex.time, last_time);
      if (first_time < 0) first_time = ex.time;
      last_time = ex.time;
      ASSERT_GT(ex.oracle, 0.0f);
      ASSERT_LT(ex.oracle, 1.0f);
      positives += ex.label > 0.5f;
      ++n;
    }
    EXPECT_EQ((*reader)->stats().bad, 0);
    if (file == s.train_file) {
      EXPECT_EQ(n, s.train_examples);
      EXPECT_EQ(positives, s.train_positives);
      EXPECT_EQ(buys, s.train_buys);
      EXPECT_LE(last_time, s.split_time);
      last_train_time = last_time;
    } else {
      EXPECT_EQ(n, s.holdout_examples);
      EXPECT_EQ(positives, s.holdout_positives);
      EXPECT_EQ(buys, s.holdout_buys);
      EXPECT_EQ(first_time, s.split_time);
      EXPECT_GE(first_time, last_train_time);
    }
  }
}

// ---- Interactive API (the closed-loop simulator) ----

ShopConfig InteractiveConfig() {
  ShopConfig c;
  c.num_requests = 1;
  c.duration_s = 3600;
  c.drift_period_s = 300;
  c.trending_boost = 1.5;
  c.trending_candidate_share = 0.2;
  return c;
}

TEST(SyntheticShopInteractiveTest, RequestsAreWellFormedAndTheSameWhateverIsShown) {
  const ShopConfig config = InteractiveConfig();
  auto a = SyntheticShop::Create(config);
  auto b = SyntheticShop::Create(config);
  ASSERT_TRUE(a.ok() && b.ok());
  const int64_t start_ms = config.start_time * 1000;
  ShopRequest ra, rb;
  std::vector<ShopReaction> reactions;
  const int item_col = Column("item"), pos_col = Column("position"), cat_col = Column("category");
  for (int64_t i = 0; i < 2000; ++i) {
    const int64_t t = start_ms + i * 1500;
    (*a)->NextInteractive(t, &ra);
    (*b)->NextInteractive(t, &rb);
    ASSERT_EQ(ra.id, i);
    ASSERT_EQ(ra.time_ms, t);
    ASSERT_EQ(ra.candidates.size(), static_cast<size_t>(3 * config.slate_size));
    ASSERT_EQ(ra.items.size(), ra.candidates.size());
    ASSERT_EQ(ra.p_click1.size(), ra.candidates.size());
    std::set<int> distinct(ra.items.begin(), ra.items.end());
    EXPECT_EQ(distinct.size(), ra.items.size());
    for (size_t c = 0; c < ra.candidates.size(); ++c) {
      const Example& ex = ra.candidates[c];
      ASSERT_EQ(ex.values.size(), ShopColumns().size());
      EXPECT_EQ(ex.values[item_col], "i" + std::to_string(ra.items[c]));
      EXPECT_EQ(ex.values[cat_col], "c" + std::to_string((*a)->ItemCategory(ra.items[c])));
      EXPECT_TRUE(ex.values[pos_col].empty());
      EXPECT_EQ(ex.user, ra.user_token);
      EXPECT_EQ(ex.time, t / 1000);
      EXPECT_FLOAT_EQ(ex.oracle, static_cast<float>(ra.p_click1[c]));
      EXPECT_GT(ra.p_click1[c], 0.0);
      EXPECT_LT(ra.p_click1[c], 1.0);
    }
    // The same traffic (user, candidates, context) in both shops although
    // they show different slates.
    EXPECT_EQ(ra.user, rb.user);
    EXPECT_EQ(ra.items, rb.items);
    EXPECT_EQ(ra.search, rb.search);
    EXPECT_EQ(ra.trending, (*a)->TrendingAt(t / 1000));
    std::vector<int> first, last;
    for (int p = 0; p < config.slate_size; ++p) {
      first.push_back(p);
      last.push_back(static_cast<int>(ra.items.size()) - 1 - p);
    }
    ASSERT_TRUE((*a)->React(ra, first, &reactions).ok());
    ASSERT_TRUE((*b)->React(rb, last, &reactions).ok());
  }
}

TEST(SyntheticShopInteractiveTest, ReactionsFollowTheHiddenModelWithPositionBias) {
  const ShopConfig config = InteractiveConfig();
  auto shop = SyntheticShop::Create(config);
  ASSERT_TRUE(shop.ok());
  const int64_t start_ms = config.start_time * 1000;
  ShopRequest r;
  std::vector<ShopReaction> reactions, again;
  double clicks = 0, expected = 0, buys = 0, expected_buys = 0;
  double pos_clicks[11] = {0};
  int64_t n = 0;
  for (int64_t i = 0; i < 20000; ++i) {
    (*shop)->NextInteractive(start_ms + i * 150, &r);
    std::vector<int> shown;
    for (int p = 0; p < config.slate_size; ++p) shown.push_back((p * 7 + static_cast<int>(i)) % 30);
    // The oracle slate is at least as good as any other.
    EXPECT_GE(SyntheticShop::OracleExpectedClicks(r, config.slate_size) + 1e-12,
              SyntheticShop::ExpectedClicks(r, shown));
    ASSERT_TRUE((*shop)->React(r, shown, &reactions).ok());
    ASSERT_EQ(reactions.size(), shown.size());
    // Reactions depend only on the request and the slate.
    if (i < 20) {
      auto copy = SyntheticShop::Create(config);
      ASSERT_TRUE((*copy)->React(r, shown, &again).ok());
      for (size_t p = 0; p < shown.size(); ++p) EXPECT_EQ(again[p].click, reactions[p].click);
    }
    for (size_t p = 0; p < shown.size(); ++p) {
      const ShopReaction& x = reactions[p];
      EXPECT_DOUBLE_EQ(x.p_click,
                       SyntheticShop::ShownClickProbability(r, shown[p], static_cast<int>(p) + 1));
      EXPECT_TRUE(!x.buy || x.click);
      clicks += x.click;
      buys += x.buy;
      expected += x.p_click;
      expected_buys += x.p_click * x.p_buy;
      pos_clicks[p + 1] += x.click;
      ++n;
    }
  }
  EXPECT_NEAR(clicks / expected, 1.0, 0.05);
  EXPECT_NEAR(buys / expected_buys, 1.0, 0.1);
  EXPECT_GT(pos_clicks[1], 2.0 * pos_clicks[5]);  // the slate order is arbitrary: bias only
  EXPECT_GT(SyntheticShop::Examine(true, 2), SyntheticShop::Examine(true, 3));
  EXPECT_GT(SyntheticShop::Examine(false, 5), SyntheticShop::Examine(true, 5));
  EXPECT_EQ(SyntheticShop::Examine(true, 1), 1.0);
}

TEST(SyntheticShopInteractiveTest, ClicksBecomeRecentItemsAndBadSlatesAreRejected) {
  const ShopConfig config = InteractiveConfig();
  auto shop = SyntheticShop::Create(config);
  ASSERT_TRUE(shop.ok());
  ShopRequest r;
  std::vector<ShopReaction> reactions;
  (*shop)->NextInteractive(config.start_time * 1000, &r);
  EXPECT_EQ((*shop)->React(r, {0, 0}, &reactions).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*shop)->React(r, {30}, &reactions).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*shop)->React(r, {-1}, &reactions).code(), StatusCode::kInvalidArgument);
  // Keep reacting until some user clicks, then that user's next request
  // lists the clicked item first among the recent items.
  const int recent_col = Column("user_recent_items");
  int64_t t = config.start_time * 1000;
  for (int i = 0; i < 5000; ++i) {
    (*shop)->NextInteractive(t += 100, &r);
    ASSERT_TRUE((*shop)->React(r, {0, 1, 2}, &reactions).ok());
    int clicked = -1;
    for (int p = 0; p < 3; ++p) {
      if (reactions[p].click) clicked = r.items[p];
    }
    if (clicked < 0) continue;
    const int user = r.user;
    ShopRequest next;
    do {
      (*shop)->NextInteractive(t += 100, &next);
    } while (next.user != user);
    const std::vector<std::string> recent = Split(next.candidates[0].values[recent_col]);
    ASSERT_FALSE(recent.empty());
    EXPECT_EQ(recent[0], "i" + std::to_string(clicked));
    return;
  }
  FAIL() << "no click in 5000 requests";
}

TEST(SyntheticShopInteractiveTest, TrendingCategoryShiftsAndIsAmongTheCandidates) {
  const ShopConfig config = InteractiveConfig();
  auto shop = SyntheticShop::Create(config);
  ASSERT_TRUE(shop.ok());
  ShopRequest r;
  std::set<int> seen_trends;
  double trending_candidates = 0, candidates = 0, p_trend = 0, n_trend = 0, p_other = 0,
         n_other = 0;
  for (int64_t s = 0; s < config.duration_s; s += 2) {
    (*shop)->NextInteractive((config.start_time + s) * 1000, &r);
    EXPECT_EQ(r.trending, (*shop)->TrendingAt(config.start_time + s));
    seen_trends.insert(r.trending);
    for (size_t c = 0; c < r.items.size(); ++c) {
      const bool trend = (*shop)->ItemCategory(r.items[c]) == r.trending;
      trending_candidates += trend;
      ++candidates;
      (trend ? p_trend : p_other) += r.p_click1[c];
      (trend ? n_trend : n_other) += 1;
    }
  }
  EXPECT_GE(seen_trends.size(), 5u);  // 12 periods, consecutive ones differ
  // Above the ~0.05 a uniform draw would give (small categories cap it
  // below the configured 0.2: candidates are distinct).
  EXPECT_GT(trending_candidates / candidates, 0.12);
  EXPECT_GT(p_trend / n_trend, 1.5 * (p_other / n_other));
}

}  // namespace
}  // namespace freshet
