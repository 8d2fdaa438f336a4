#include "worker/data/task.h"

#include <glog/logging.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "worker/data/internal/test_util.h"
#include "worker/data/raw_readers.h"

namespace freshet {
namespace {

using testing_util::Exists;
using testing_util::ReadFile;
using testing_util::SharedDataDir;
using testing_util::TempDir;
using testing_util::WriteFile;

constexpr int64_t kT0 = 1511658000;  // 2017-11-26 01:00:00 UTC

std::vector<Example> ReadExamples(const std::string& path, std::vector<std::string>* columns) {
  std::vector<Example> out;
  auto reader = ExampleReader::OpenFiles({path}, BadRecordPolicy());
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return out;
  if (columns != nullptr) *columns = (*reader)->columns();
  Example ex;
  while (true) {
    auto more = (*reader)->Next(&ex);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    out.push_back(ex);
  }
  EXPECT_EQ((*reader)->stats().bad, 0) << path;
  return out;
}

std::string Row(int64_t user, int64_t item, int64_t category, const char* behavior, int64_t t) {
  return std::to_string(user) + "," + std::to_string(item) + "," + std::to_string(category) + "," +
         behavior + "," + std::to_string(t) + "\n";
}

// The hand-made Taobao fixture: two overlapping files (see the expected
// examples in TaobaoLabelsAndHistory).
void WriteTaobaoFixture(const std::string& data_dir) {
  WriteFile(data_dir + "/taobao/UserBehavior_time_slice.csv",
            Row(1, 10, 100, "pv", kT0) +              // a1
                Row(1, 11, 101, "pv", kT0 + 10) +     // a2
                Row(2, 10, 100, "pv", kT0 + 10) +     // a3
                Row(2, 10, 100, "pv", kT0 + 10) +     // a7: repeated within a file: kept
                Row(1, 10, 100, "cart", kT0 + 100) +  // a4
                Row(1, 12, 102, "fav", kT0 + 100) +   // a5
                Row(1, 12, 102, "pv", kT0 + 100) +    // a6
                "1,10,100,pv,15");                    // cut last line: bad
  WriteFile(data_dir + "/taobao/UserBehavior_815_users.csv",
            Row(1, 10, 100, "pv", kT0) +                         // b1 = a1: dropped
                Row(1, 10, 100, "cart", kT0 + 100) +             // b2 = a4: dropped
                Row(1, 11, 101, "buy", kT0 + 10 + 86401) +       // b3: 1 s after a2's window
                Row(1, 11, 101, "pv", kT0 + 10 + 86401) +        // b4
                Row(2, 20, 200, "pv", kT0 + 86400 + 5 * 3600) +  // b5
                Row(3, 30, 300, "pv", kT0 + 200) +               // b6
                Row(3, 30, 300, "buy", kT0 + 200 + 86400) +      // b7: window end, inclusive
                Row(2, 10, 100, "buy", kT0 + 9) +                // b8: before a3
                Row(2, 10, 100, "pv", kT0 + 10) +                // b9 = a3: dropped
                "3,30,300,pv");                                  // cut: bad
}

TEST(TaskTest, Names) {
  EXPECT_EQ(TaskNames(),
            (std::vector<std::string>{"taobao-conversion", "retail-purchase", "talkingdata-ctr"}));
  TempDir dir;
  auto st = BuildTask("nope", dir.path(), dir.File("out"), BadRecordPolicy()).status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("taobao-conversion, retail-purchase, talkingdata-ctr"),
            std::string::npos)
      << st;
  EXPECT_EQ(TaskInputs("nope", dir.path()).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(
      BuildTask("retail-purchase", dir.path(), dir.File("out"), BadRecordPolicy()).status().code(),
      StatusCode::kNotFound);
  EXPECT_EQ(TaskFeatures("nope").status().code(), StatusCode::kInvalidArgument);
}

TEST(TaskTest, FeaturesMatchColumns) {
  TempDir dir;
  WriteTaobaoFixture(dir.path());
  auto out = BuildTask("taobao-conversion", dir.path(), dir.File("out"), BadRecordPolicy());
  ASSERT_TRUE(out.ok()) << out.status();
  for (const std::string& task : TaskNames()) {
    auto features = TaskFeatures(task);
    ASSERT_TRUE(features.ok()) << features.status();
    std::set<std::string> multi;
    for (const auto& slot : features->slots()) {
      EXPECT_EQ(slot.table(), "emb");
      EXPECT_EQ(slot.column(), slot.name());
      if (slot.multi_valued()) {
        multi.insert(slot.name());
        EXPECT_EQ(slot.pooling(), proto::MEAN);
      }
    }
    EXPECT_EQ(features->dense_size(), 0);
    if (task == "taobao-conversion") {
      std::vector<std::string> names;
      for (const auto& slot : features->slots()) names.push_back(slot.name());
      std::vector<std::string> feature_columns;
      for (const std::string& c : out->columns) {
        if (!IsLabelColumn(c)) feature_columns.push_back(c);
      }
      EXPECT_EQ(names, feature_columns);
      EXPECT_EQ(feature_columns.size() + 1, out->columns.size()) << "label:buy";
      EXPECT_EQ(multi, (std::set<std::string>{"recent_items", "recent_categories"}));
    } else if (task == "retail-purchase") {
      EXPECT_EQ(features->slots_size(), 9);
      EXPECT_EQ(multi, (std::set<std::string>{"description_tokens", "recent_items"}));
    } else {
      EXPECT_EQ(features->slots_size(), 8);
      EXPECT_TRUE(multi.empty());
    }
  }
}

// Labels, history features, the cross-file de-duplication and the 80% split,
// all computed by hand (see WriteTaobaoFixture).
TEST(TaskTest, TaobaoLabelsAndHistory) {
  TempDir dir;
  WriteTaobaoFixture(dir.path());
  auto out = BuildTask("taobao-conversion", dir.path(), dir.File("out"), BadRecordPolicy());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->columns,
            (std::vector<std::string>{"user", "item", "category", "hour", "recent_items",
                                      "recent_categories", "event_count_bucket", "label:buy"}));
  EXPECT_EQ(out->bad_records, 2);
  EXPECT_EQ(out->train_examples, 6);
  EXPECT_EQ(out->holdout_examples, 2);
  EXPECT_EQ(out->train_positives, 3);
  EXPECT_EQ(out->holdout_positives, 1);

  struct Want {
    float label;
    int64_t time;
    std::vector<std::string> values;
  };
  const std::vector<Want> want = {
      // Last value: label:buy. a1: carted 100 s later (no buy).
      {1, kT0, {"1", "10", "100", "1", "", "", "0", "0"}},
      // a2: the buy comes 86,401 s later.
      {0, kT0 + 10, {"1", "11", "101", "1", "10", "100", "1", "0"}},
      // a3 and its in-file repeat a7: u2 bought i10 1 s before.
      {0, kT0 + 10, {"2", "10", "100", "1", "10", "100", "1", "0"}},
      {0, kT0 + 10, {"2", "10", "100", "1", "10", "100", "1", "0"}},
      // a6: the fav at the same second counts; a4 and a5 (same second) are
      // not history.
      {1, kT0 + 100, {"1", "12", "102", "1", "11 10", "101 100", "1", "0"}},
      // b6: the buy exactly 86,400 s later counts.
      {1, kT0 + 200, {"3", "30", "300", "1", "", "", "0", "1"}},
      // holdout: b4, with the buy at the same second; 5 earlier events.
      {1, kT0 + 86411, {"1", "11", "101", "1", "12 12 10 11 10", "102 102 100 101 100", "2", "1"}},
      // b5: u2's 3 earlier events (b8, a3, a7), at 06:00.
      {0, kT0 + 86400 + 5 * 3600, {"2", "20", "200", "6", "10 10 10", "100 100 100", "2", "0"}},
  };
  std::vector<Example> got = ReadExamples(out->train_file, nullptr);
  std::vector<Example> holdout = ReadExamples(out->holdout_file, nullptr);
  got.insert(got.end(), holdout.begin(), holdout.end());
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].label, want[i].label) << "example " << i;
    EXPECT_EQ(got[i].time, want[i].time) << "example " << i;
    EXPECT_EQ(got[i].user, want[i].values[0]) << "example " << i;
    EXPECT_EQ(got[i].oracle, -1) << "example " << i;
    EXPECT_EQ(got[i].values, want[i].values) << "example " << i;
  }
  const std::string info = ReadFile(dir.File("out/task_info.txt"));
  EXPECT_NE(info.find("cross_file_duplicates_dropped: 3\n"), std::string::npos) << info;
  EXPECT_NE(info.find("bad=1"), std::string::npos) << info;
}

// ---- retail-purchase ----------------------------------------------------------

constexpr char kRetailHeader[] =
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n";

std::string RetailLine(const std::string& invoice, const std::string& code,
                       const std::string& description, int quantity, const std::string& date,
                       const std::string& price, const std::string& customer,
                       const std::string& country = "United Kingdom") {
  return invoice + "," + code + "," + description + "," + std::to_string(quantity) + "," + date +
         "," + price + "," + customer + "," + country + "\n";
}

TEST(TaskTest, RetailHandComputed) {
  TempDir dir;
  WriteFile(
      dir.File("online_retail/online_retail_to_2011-11-25.csv"),
      std::string(kRetailHeader) +
          RetailLine("1001", "A", "\"RED, BIG Mug\"", 6, "2011-01-03 10:00:00", "2.55", "100.0") +
          RetailLine("1001", "B", "Blue \"\"Jar\"\" jar", 1, "2011-01-03 10:00:00", "0.42",
                     "100.0") +
          RetailLine("1001", "A", "RED MUG again", 2, "2011-01-03 10:00:00", "2.55",
                     "100.0") +  // same item twice: one positive
          RetailLine("1002", "Z", "no customer", 1, "2011-01-03 11:00:00", "1", "") +
          RetailLine("C1003", "A", "cancelled", -1, "2011-01-03 12:00:00", "1", "100.0") +
          RetailLine("1004", "A", "returned", -2, "2011-01-03 12:00:00", "1", "100.0") +
          RetailLine("1005", "B", "BLUE JAR NEW", 3, "2011-02-05 09:30:00", "8", "200.0", "EIRE") +
          RetailLine("1006", "C", "Clock", 1, "2011-02-05 09:30:00", "0", "300.0") +
          RetailLine("1007", "C", "Clock", 1, "2011-11-12 00:00:00", "20", "100.0") +
          "1008,X,bad,1,never,1,100.0,UK\n");
  auto out = BuildTask("retail-purchase", dir.path(), dir.File("out"), BadRecordPolicy());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->columns, (std::vector<std::string>{"customer", "item", "country", "price_bucket",
                                                    "description_tokens", "recent_items", "month",
                                                    "day_of_week", "hour"}));
  EXPECT_EQ(out->bad_records, 1);
  std::vector<Example> train = ReadExamples(out->train_file, nullptr);
  std::vector<Example> holdout = ReadExamples(out->holdout_file, nullptr);
  // 1001 (A, B; nothing seen before: no negatives); 1005 and 1006 at the same
  // second: both see {A, B}; 1007 (holdout) sees {A, B, C}.
  ASSERT_EQ(train.size(), 2u + (1 + 1) + (1 + 2));
  ASSERT_EQ(holdout.size(), 1u + 2);
  EXPECT_EQ(out->train_positives, 4);
  EXPECT_EQ(out->holdout_positives, 1);
  // 2011-01-03 was a Monday.
  EXPECT_EQ(train[0].values, (std::vector<std::string>{"100", "A", "United_Kingdom", "1",
                                                       "red big mug", "", "1", "1", "10"}));
  EXPECT_EQ(train[0].label, 1);
  EXPECT_EQ(train[1].values, (std::vector<std::string>{"100", "B", "United_Kingdom", "-2",
                                                       "blue jar", "", "1", "1", "10"}));
  // 1005: B is in the invoice, so its one negative is A (last seen as "RED
  // MUG again" at 2.55). 2011-02-05 was a Saturday.
  EXPECT_EQ(train[2].label, 1);
  EXPECT_EQ(train[2].user, "200");
  EXPECT_EQ(train[2].values,
            (std::vector<std::string>{"200", "B", "EIRE", "3", "blue jar new", "", "2", "6", "9"}));
  EXPECT_EQ(train[3].label, 0);
  EXPECT_EQ(train[3].values, (std::vector<std::string>{"200", "A", "EIRE", "1", "red mug again", "",
                                                       "2", "6", "9"}));
  // 1006: C unseen (1005 is at the same second); negatives A and B, price
  // bucket of C's price 0.
  EXPECT_EQ(train[4].values[1], "C");
  EXPECT_EQ(train[4].values[3], "nonpositive");
  EXPECT_EQ(train[5].values[1], "A");
  EXPECT_EQ(train[6].values[1], "B");
  // B as last seen before 1006: in 1001 (1005 is at the same second).
  EXPECT_EQ(train[6].values[4], "blue jar");
  EXPECT_EQ(train[6].values[3], "-2");
  // 1007: customer 100 bought A, B before (most recent first).
  EXPECT_EQ(holdout[0].values, (std::vector<std::string>{"100", "C", "United_Kingdom", "4", "clock",
                                                         "B A", "11", "6", "0"}));
  EXPECT_EQ(holdout[1].values[1], "A");
  EXPECT_EQ(holdout[2].values[1], "B");
  EXPECT_EQ(holdout[1].values[5], "B A");
  // Fewer than 99 candidates: no ranking group.
  std::vector<Example> ranking = ReadExamples(dir.File("out/holdout_ranking.examples"), nullptr);
  EXPECT_TRUE(ranking.empty());
}

// A generated retail file with 300 items: negatives are always seen before
// the invoice and never in it; holdout ranking groups hold 100 lines.
void WriteRetailFixture(const std::string& data_dir) {
  std::string s = kRetailHeader;
  uint64_t x = 12345;
  auto next = [&x]() {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return x >> 33;
  };
  for (int inv = 0; inv < 400; ++inv) {
    const bool holdout = inv >= 340;
    char date[32];
    std::snprintf(date, sizeof(date), "2011-%02d-%02d %02d:%02d:00", holdout ? 11 : 1 + inv / 34,
                  holdout ? 12 + (inv - 340) / 10 : 1 + inv % 28, 8 + inv % 10, inv % 3 * 20);
    const int lines = 1 + next() % 8;
    for (int l = 0; l < lines; ++l) {
      // Early invoices walk through all items, so every item is seen.
      const int item = inv < 60 ? (inv * 5 + l) % 300 : next() % 300;
      s +=
          RetailLine(std::to_string(5000 + inv), "I" + std::to_string(item),
                     "\"Item " + std::to_string(item) + ", size " + std::to_string(item % 4) + "\"",
                     1 + next() % 5, date, std::to_string(0.5 + item % 13),
                     std::to_string(100 + inv % 23) + ".0");
    }
  }
  WriteFile(data_dir + "/online_retail/online_retail_to_2011-11-25.csv", s);
}

TEST(TaskTest, RetailNegativesAreSeenAndNotInInvoice) {
  TempDir dir;
  WriteRetailFixture(dir.path());
  auto out = BuildTask("retail-purchase", dir.path(), dir.File("out"), BadRecordPolicy());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->bad_records, 0);
  EXPECT_GT(out->holdout_positives, 50);

  // The invoices as the raw file has them: (customer, time) -> items.
  std::map<std::pair<std::string, int64_t>, std::set<std::string>> invoices;
  {
    auto reader = RetailReader::OpenFiles(
        {dir.File("online_retail/online_retail_to_2011-11-25.csv")}, BadRecordPolicy());
    ASSERT_TRUE(reader.ok());
    RetailRow r;
    while (true) {
      auto more = (*reader)->Next(&r);
      ASSERT_TRUE(more.ok());
      if (!*more) break;
      invoices[{std::to_string(r.customer_id), r.time}].insert(r.stock_code);
    }
  }
  // First time each item appears in any invoice.
  std::map<std::string, int64_t> first_seen;
  for (const auto& [key, items] : invoices) {
    for (const std::string& item : items) {
      auto it = first_seen.find(item);
      if (it == first_seen.end() || key.second < it->second) first_seen[item] = key.second;
    }
  }
  auto check = [&](const std::vector<Example>& examples, int group_size) {
    int64_t negatives = 0;
    int64_t last_time = 0;
    for (size_t i = 0; i < examples.size(); ++i) {
      const Example& ex = examples[i];
      EXPECT_GE(ex.time, last_time);
      last_time = ex.time;
      const auto& items = invoices.at({ex.user, ex.time});
      if (ex.label == 1) {
        EXPECT_TRUE(items.count(ex.values[1])) << i;
        if (group_size > 0) {
          EXPECT_EQ(i % group_size, 0u) << i;
        }
        continue;
      }
      ++negatives;
      EXPECT_FALSE(items.count(ex.values[1])) << "negative in its invoice, line " << i;
      EXPECT_LT(first_seen.at(ex.values[1]), ex.time) << "negative not seen before, line " << i;
      if (group_size > 0) {
        EXPECT_NE(i % group_size, 0u) << i;
      }
    }
    return negatives;
  };
  std::vector<Example> train = ReadExamples(out->train_file, nullptr);
  std::vector<Example> holdout = ReadExamples(out->holdout_file, nullptr);
  EXPECT_EQ(check(train, 0), static_cast<int64_t>(train.size()) - out->train_positives);
  EXPECT_EQ(check(holdout, 0), 4 * out->holdout_positives);
  for (const Example& ex : holdout) EXPECT_GE(ex.time, 1321056000);  // 2011-11-12
  for (const Example& ex : train) EXPECT_LT(ex.time, 1321056000);
  // Distinct negatives per positive.
  for (size_t i = 0; i + 4 < holdout.size(); i += 5) {
    ASSERT_EQ(holdout[i].label, 1);
    std::set<std::string> drawn;
    for (size_t j = i + 1; j <= i + 4; ++j) drawn.insert(holdout[j].values[1]);
    EXPECT_EQ(drawn.size(), 4u);
  }

  std::vector<Example> ranking = ReadExamples(dir.File("out/holdout_ranking.examples"), nullptr);
  ASSERT_EQ(static_cast<int64_t>(ranking.size()), 100 * out->holdout_positives);
  EXPECT_EQ(check(ranking, 100), 99 * out->holdout_positives);
  for (size_t g = 0; g < ranking.size(); g += 100) {
    std::set<std::string> items;
    for (size_t j = g; j < g + 100; ++j) {
      EXPECT_EQ(ranking[j].time, ranking[g].time);
      EXPECT_EQ(ranking[j].user, ranking[g].user);
      items.insert(ranking[j].values[1]);
    }
    EXPECT_EQ(items.size(), 100u) << "group at line " << g;
  }
}

// ---- talkingdata-ctr --------------------------------------------------------------

void WriteTalkingDataFixture(const std::string& data_dir, int n) {
  std::string s = "ip,app,device,os,channel,click_time,attributed_time,is_attributed\n";
  for (int i = 0; i < n; ++i) {
    const int k = (i * 37) % n;  // shuffled times, all distinct
    char date[32];
    std::snprintf(date, sizeof(date), "2017-11-%02d %02d:%02d:%02d", 6 + k / 24, k % 24, k % 60,
                  (k * 7) % 60);
    const bool positive = k % 9 == 0;
    s += std::to_string(1000 + k) + "," + std::to_string(k % 5) + ",1," + std::to_string(k % 3) +
         "," + std::to_string(400 + k % 4) + "," + date + "," + (positive ? date : "") + "," +
         (positive ? "1" : "0") + "\n";
  }
  WriteFile(data_dir + "/talkingdata/train_sample.csv", s);
}

TEST(TaskTest, TalkingDataSplitAt80Percent) {
  TempDir dir;
  WriteTalkingDataFixture(dir.path(), 50);
  auto out = BuildTask("talkingdata-ctr", dir.path(), dir.File("out"), BadRecordPolicy());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->columns, (std::vector<std::string>{"ip", "app", "device", "os", "channel", "hour",
                                                    "app_x_channel", "os_x_device"}));
  EXPECT_EQ(out->train_examples, 40);
  EXPECT_EQ(out->holdout_examples, 10);
  std::vector<Example> train = ReadExamples(out->train_file, nullptr);
  std::vector<Example> holdout = ReadExamples(out->holdout_file, nullptr);
  ASSERT_EQ(train.size(), 40u);
  ASSERT_EQ(holdout.size(), 10u);
  int64_t positives = 0;
  for (size_t i = 0; i < train.size(); ++i) {
    const Example& ex = train[i];
    if (i > 0) {
      EXPECT_GT(ex.time, train[i - 1].time);
    }
    EXPECT_LT(ex.time, holdout[0].time);
    // Example i (time order) is the fixture's k = i.
    EXPECT_EQ(ex.user, std::to_string(1000 + i));
    EXPECT_EQ(ex.values[0], ex.user);
    EXPECT_EQ(ex.values[1], std::to_string(i % 5));
    EXPECT_EQ(ex.values[5], std::to_string(i % 24));
    EXPECT_EQ(ex.values[6], std::to_string(i % 5) + "_" + std::to_string(400 + i % 4));
    EXPECT_EQ(ex.values[7], std::to_string(i % 3) + "_1");
    EXPECT_EQ(ex.label, i % 9 == 0 ? 1 : 0);
    positives += ex.label == 1;
  }
  EXPECT_EQ(out->train_positives, positives);
}

TEST(TaskTest, Deterministic) {
  TempDir dir;
  WriteTaobaoFixture(dir.path());
  WriteRetailFixture(dir.path());
  WriteTalkingDataFixture(dir.path(), 200);
  for (const std::string& task : TaskNames()) {
    auto a = BuildTask(task, dir.path(), dir.File("a/" + task), BadRecordPolicy());
    auto b = BuildTask(task, dir.path(), dir.File("b/" + task), BadRecordPolicy());
    ASSERT_TRUE(a.ok() && b.ok()) << task;
    for (const char* file : {"train.examples", "holdout.examples", "holdout_ranking.examples"}) {
      const std::string fa = dir.File("a/" + task + "/" + file);
      const std::string fb = dir.File("b/" + task + "/" + file);
      ASSERT_EQ(Exists(fa), Exists(fb));
      if (!Exists(fa)) continue;
      EXPECT_EQ(ReadFile(fa), ReadFile(fb)) << task << " " << file;
      EXPECT_FALSE(Exists(fa + ".tmp"));
    }
  }
}

TEST(TaskTest, ItemPopularityScores) {
  TempDir dir;
  auto write = [&](const std::string& path, const std::vector<std::pair<std::string, int>>& rows) {
    auto w = ExampleWriter::Open(path, {"user", "item"});
    ASSERT_TRUE(w.ok());
    Example ex;
    for (const auto& [item, label] : rows) {
      ex.label = static_cast<float>(label);
      ex.values = {"u", item};
      ASSERT_TRUE((*w)->Write(ex).ok());
    }
    ASSERT_TRUE((*w)->Close().ok());
  };
  // 8 examples, 2 positives: p = 0.25, a / p = 4.
  write(dir.File("train"),
        {{"a", 1}, {"a", 1}, {"a", 0}, {"b", 0}, {"b", 0}, {"b", 0}, {"b", 0}, {"c", 0}});
  write(dir.File("holdout"), {{"a", 0}, {"b", 1}, {"z", 0}, {"c", 0}});
  auto scores = ItemPopularityScores(dir.File("train"), dir.File("holdout"), "item");
  ASSERT_TRUE(scores.ok()) << scores.status();
  ASSERT_EQ(scores->size(), 4u);
  EXPECT_FLOAT_EQ((*scores)[0], 3.0f / 7.0f);  // (2 + 1) / (3 + 4)
  EXPECT_FLOAT_EQ((*scores)[1], 1.0f / 8.0f);  // (0 + 1) / (4 + 4)
  EXPECT_FLOAT_EQ((*scores)[2], 0.25f);        // unseen: p
  EXPECT_FLOAT_EQ((*scores)[3], 1.0f / 5.0f);  // (0 + 1) / (1 + 4)
  EXPECT_EQ(ItemPopularityScores(dir.File("train"), dir.File("holdout"), "nope").status().code(),
            StatusCode::kInvalidArgument);
}

// ---- The real data ----------------------------------------------------------------

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(RealTaskTest, TaobaoConversion) {
  FRESHET_REQUIRE_SHARED_DATA("taobao/UserBehavior_time_slice.csv",
                              "taobao/UserBehavior_815_users.csv");
  TempDir dir;
  const auto start = std::chrono::steady_clock::now();
  auto out = BuildTask("taobao-conversion", SharedDataDir(), dir.path(), BadRecordPolicy());
  ASSERT_TRUE(out.ok()) << out.status();
  LOG(INFO) << "taobao-conversion built in " << SecondsSince(start) << " s";
  EXPECT_EQ(out->bad_records, 2);  // the two cut last lines
  // 180,643 good rows, 81 cross-file duplicates, 161,575 pv events; 2,806
  // are followed by a cart/fav/buy of the item within a day (cross-checked
  // with an independent script).
  const int64_t n = out->train_examples + out->holdout_examples;
  EXPECT_EQ(n, 161575);
  EXPECT_EQ(out->train_positives + out->holdout_positives, 2806);
  EXPECT_NEAR(static_cast<double>(out->holdout_examples) / n, 0.2, 0.001);
  EXPECT_EQ(out->holdout_examples, 32315);
  EXPECT_EQ(out->holdout_positives, 1017);
  const std::string info = ReadFile(dir.File("task_info.txt"));
  EXPECT_NE(info.find("cross_file_duplicates_dropped: 81\n"), std::string::npos) << info;
}

TEST(RealTaskTest, RetailPurchase) {
  FRESHET_REQUIRE_SHARED_DATA("online_retail/online_retail_to_2011-11-25.csv");
  TempDir dir;
  const auto start = std::chrono::steady_clock::now();
  auto out = BuildTask("retail-purchase", SharedDataDir(), dir.path(), BadRecordPolicy());
  ASSERT_TRUE(out.ok()) << out.status();
  LOG(INFO) << "retail-purchase built in " << SecondsSince(start) << " s";
  EXPECT_EQ(out->bad_records, 0);
  // 361,600 distinct (invoice, StockCode) positives, 30,083 of them in the
  // holdout; 4 negatives each, except 28 missing in the first invoices
  // (fewer than 4 items seen before them).
  EXPECT_EQ(out->train_positives + out->holdout_positives, 361600);
  EXPECT_EQ(out->holdout_positives, 30083);
  EXPECT_EQ(out->holdout_examples, 5 * 30083);
  EXPECT_EQ(out->train_examples, 5 * (361600 - 30083) - 28);
  const std::string info = ReadFile(dir.File("task_info.txt"));
  EXPECT_NE(info.find("ranking_groups: 30083\n"), std::string::npos) << info;
}

TEST(RealTaskTest, TalkingDataCtr) {
  FRESHET_REQUIRE_SHARED_DATA("talkingdata/train_sample.csv");
  TempDir dir;
  auto out = BuildTask("talkingdata-ctr", SharedDataDir(), dir.path(), BadRecordPolicy());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->bad_records, 0);
  EXPECT_EQ(out->train_examples + out->holdout_examples, 100000);
  EXPECT_EQ(out->train_positives + out->holdout_positives, 227);
  // 20,000 plus one example sharing the boundary second.
  EXPECT_EQ(out->holdout_examples, 20001);
  EXPECT_EQ(out->holdout_positives, 45);
}

}  // namespace
}  // namespace freshet
