#include "worker/data/raw_readers.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "worker/data/internal/test_util.h"

namespace freshet {
namespace {

using testing_util::SharedDataDir;
using testing_util::TempDir;
using testing_util::WriteFile;

// Reads every record; returns them and fills *stats. Fails the test on error.
template <typename Reader>
std::vector<typename Reader::Record> ReadAll(std::vector<FileRange> ranges,
                                             ReadStats* stats = nullptr,
                                             BadRecordPolicy policy = BadRecordPolicy()) {
  std::vector<typename Reader::Record> out;
  auto reader = Reader::Open(std::move(ranges), policy);
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return out;
  typename Reader::Record r;
  while (true) {
    auto more = (*reader)->Next(&r);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    out.push_back(r);
  }
  if (stats != nullptr) *stats = (*reader)->stats();
  return out;
}

template <typename Reader>
std::vector<typename Reader::Record> ReadFiles(const std::vector<std::string>& files,
                                               ReadStats* stats = nullptr,
                                               BadRecordPolicy policy = BadRecordPolicy()) {
  std::vector<FileRange> ranges;
  for (const std::string& f : files) ranges.push_back({f, 0, testing_util::ReadFile(f).size()});
  return ReadAll<Reader>(ranges, stats, policy);
}

// The error Next() ends with under `policy` (OK if it reaches the end).
template <typename Reader>
Status ReadUntilError(const std::string& file, BadRecordPolicy policy) {
  auto reader = Reader::OpenFiles({file}, policy);
  if (!reader.ok()) return reader.status();
  typename Reader::Record r;
  while (true) {
    auto more = (*reader)->Next(&r);
    if (!more.ok()) return more.status();
    if (!*more) return Status::OK();
  }
}

// ---- Field parsers ---------------------------------------------------------------

TEST(SplitCsvLineTest, Rfc4180) {
  std::vector<std::string> f;
  ASSERT_TRUE(SplitCsvLine("a,b,,c", &f).ok());
  EXPECT_EQ(f, (std::vector<std::string>{"a", "b", "", "c"}));
  ASSERT_TRUE(SplitCsvLine("536381,82567,\"AIRLINE LOUNGE,METAL SIGN\",2", &f).ok());
  EXPECT_EQ(f, (std::vector<std::string>{"536381", "82567", "AIRLINE LOUNGE,METAL SIGN", "2"}));
  ASSERT_TRUE(SplitCsvLine("x,\"RECORD FRAME 7\"\" SINGLE SIZE \",y", &f).ok());
  EXPECT_EQ(f, (std::vector<std::string>{"x", "RECORD FRAME 7\" SINGLE SIZE ", "y"}));
  ASSERT_TRUE(SplitCsvLine("\"LETTER \"\"D\"\" BLING\",\"\",\"\"\"\"", &f).ok());
  EXPECT_EQ(f, (std::vector<std::string>{"LETTER \"D\" BLING", "", "\""}));
  ASSERT_TRUE(SplitCsvLine("\"a,b\",", &f).ok());
  EXPECT_EQ(f, (std::vector<std::string>{"a,b", ""}));
  ASSERT_TRUE(SplitCsvLine("", &f).ok());
  EXPECT_EQ(f, (std::vector<std::string>{""}));
  ASSERT_TRUE(SplitCsvLine("7\" frame,b", &f).ok());  // a quote inside an unquoted field
  EXPECT_EQ(f, (std::vector<std::string>{"7\" frame", "b"}));

  Status st = SplitCsvLine("a,\"unterminated, field", &f);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("unterminated quoted field 2"), std::string::npos) << st;
  st = SplitCsvLine("\"a\"b,c", &f);
  EXPECT_NE(st.message().find("after the closing quote of field 1"), std::string::npos) << st;
}

TEST(ParseDateTimeTest, Formats) {
  int64_t t;
  ASSERT_TRUE(ParseDateTime("2010-12-01 08:26:00", &t));
  EXPECT_EQ(t, 1291191960);
  ASSERT_TRUE(ParseDateTime("2010-12-01 08:26", &t));
  EXPECT_EQ(t, 1291191960);
  ASSERT_TRUE(ParseDateTime("2010-12-01T08:26:00", &t));
  EXPECT_EQ(t, 1291191960);
  ASSERT_TRUE(ParseDateTime("12/1/2010 8:26", &t));
  EXPECT_EQ(t, 1291191960);
  ASSERT_TRUE(ParseDateTime("12/01/2010 08:26:00", &t));
  EXPECT_EQ(t, 1291191960);
  ASSERT_TRUE(ParseDateTime("2017-11-07 09:30:38", &t));
  EXPECT_EQ(t, 1510047038);
  ASSERT_TRUE(ParseDateTime("1970-01-01", &t));
  EXPECT_EQ(t, 0);
  ASSERT_TRUE(ParseDateTime("2012-02-29 23:59:59", &t));
  EXPECT_EQ(t, 1330559999);
  for (const char* bad :
       {"", "2011-02-30 00:00:00", "2011-13-01 00:00:00", "2011-11-11 24:00:00",
        "2011-11-11 10:60:00", "2011-11-11 10:5", "2011-11-11 10:05:00 ", "11/11/11 10:05",
        "2011/11/11 10:05", "13/1/2010 8:26", "abc", "2011-11-11 10:05:00.5", "1511658000"}) {
    EXPECT_FALSE(ParseDateTime(bad, &t)) << bad;
  }
}

// ---- Taobao ------------------------------------------------------------------------

TEST(TaobaoReaderTest, ParsesAndCountsBadLines) {
  TempDir dir;
  const std::string path = dir.File("ub.csv");
  WriteFile(path,
            "1,2268318,2520377,pv,1511544070\n"
            "1,2333346,2520771,cart,1511561733\r\n"
            "2,3,4,fav,1511658000\n"
            "x,3,4,pv,1511658000\n"     // bad user
            "2,3,4,view,1511658000\n"   // bad behavior
            "2,3,4,buy,1511658001,9\n"  // too many fields
            "\n"                        // empty line
            "3,5,6,buy,1511658002\n"
            "301780,543546,4181361,pv,15");  // cut inside the timestamp
  ReadStats stats;
  auto events = ReadFiles<TaobaoReader>({path}, &stats);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].user_id, 1);
  EXPECT_EQ(events[0].item_id, 2268318);
  EXPECT_EQ(events[0].category_id, 2520377);
  EXPECT_EQ(events[0].behavior, TaobaoBehavior::kPv);
  EXPECT_EQ(events[0].time, 1511544070);
  EXPECT_EQ(events[1].behavior, TaobaoBehavior::kCart);
  EXPECT_EQ(events[1].time, 1511561733);  // CRLF stripped
  EXPECT_EQ(events[2].behavior, TaobaoBehavior::kFav);
  EXPECT_EQ(events[3].behavior, TaobaoBehavior::kBuy);
  EXPECT_EQ(stats.lines, 9);
  EXPECT_EQ(stats.examples, 4);
  EXPECT_EQ(stats.bad, 5);
  EXPECT_STREQ(TaobaoBehaviorName(TaobaoBehavior::kFav), "fav");

  auto reader = TaobaoReader::OpenFiles({path}, BadRecordPolicy());
  ASSERT_TRUE(reader.ok());
  TaobaoEvent first;
  ASSERT_TRUE((*reader)->Next(&first).ok());
  EXPECT_EQ((*reader)->Position(), path + ":1");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*reader)->Next(&first).ok());
  EXPECT_EQ((*reader)->Position(), path + ":8");  // lines 4-7 were bad
  ASSERT_EQ((*reader)->file_stats().size(), 1u);
  EXPECT_EQ((*reader)->file_stats()[0].path, path);
  EXPECT_EQ((*reader)->file_stats()[0].stats.bad, 4);

  TaobaoParser p;
  TaobaoEvent e;
  Status st = p.Parse("100370,1968385,1875258,pv", &e);
  EXPECT_NE(st.message().find("expected 5"), std::string::npos) << st;
  st = p.Parse("301780,543546,4181361,pv,15", &e);
  EXPECT_NE(st.message().find("implausible timestamp"), std::string::npos) << st;
}

TEST(TaobaoReaderTest, SplitReadsEveryRecordOnce) {
  TempDir dir;
  std::vector<std::string> files = {dir.File("a.csv"), dir.File("b.csv")};
  std::string a, b;
  for (int i = 0; i < 300; ++i)
    a += std::to_string(i) + ",1,2,pv," + std::to_string(1511658000 + i) + "\n";
  for (int i = 300; i < 333; ++i)
    b += std::to_string(i) + ",1,2,buy," + std::to_string(1511658000 + i) + "\n";
  b += "999,1,2,pv,15";  // cut
  WriteFile(files[0], a);
  WriteFile(files[1], b);
  for (int shards : {1, 2, 3, 8, 50, 1000, 20000}) {
    std::vector<int64_t> users;
    int64_t bad = 0;
    for (int s = 0; s < shards; ++s) {
      auto ranges = SplitFiles(files, s, shards);
      ASSERT_TRUE(ranges.ok());
      ReadStats stats;
      for (const TaobaoEvent& e : ReadAll<TaobaoReader>(*ranges, &stats))
        users.push_back(e.user_id);
      bad += stats.bad;
    }
    ASSERT_EQ(users.size(), 333u) << shards;
    for (int i = 0; i < 333; ++i) EXPECT_EQ(users[i], i);
    EXPECT_EQ(bad, 1) << shards;
  }
}

TEST(RawReaderTest, BadRecordLimitNamesFileAndCounts) {
  TempDir dir;
  const std::string path = dir.File("dirty.csv");
  std::string s;
  for (int i = 0; i < 50; ++i) s += i % 10 == 9 ? "garbage\n" : "1,2,3,pv,1511658000\n";
  WriteFile(path, s);
  BadRecordPolicy policy;
  policy.max_bad_records = 3;
  policy.max_bad_ratio = 0;
  Status st = ReadUntilError<TaobaoReader>(path, policy);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find(path + ":40"), std::string::npos) << st;  // the 4th bad line
  EXPECT_NE(st.message().find("4 bad of 40 lines"), std::string::npos) << st;
  policy.max_bad_records = 5;
  EXPECT_TRUE(ReadUntilError<TaobaoReader>(path, policy).ok());
}

// ---- Online Retail -------------------------------------------------------------------

constexpr char kRetailHeader[] =
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country";

TEST(RetailReaderTest, ParsesQuotedFieldsDatesAndMissingCustomers) {
  TempDir dir;
  const std::string path = dir.File("retail.csv");
  WriteFile(path,
            std::string(kRetailHeader) + "\r\n" +
                "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,"
                "17850.0,United Kingdom\r\n"
                "536381,82567,\"AIRLINE LOUNGE,METAL SIGN\",2,2010-12-01 09:41:00,2.1,15311.0,"
                "United Kingdom\n"
                "536544,90214D,\"LETTER \"\"D\"\" BLING KEY RING\",1,12/1/2010 14:32,0.85,,"
                "United Kingdom\n"
                "C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom\n"
                "536999,X,bad quantity,two,2010-12-01 09:41:00,1,1,UK\n"
                "536999,X,bad date,2,2010-13-01 09:41:00,1,1,UK\n"
                "536999,X,\"unterminated,2,2010-12-01 09:41:00,1,1,UK\n"
                "536999,X,too few fields,2,2010-12-01 09:41:00,1,1\n"
                "578847,21479,WHITE SKULL HOT WATER BOTTLE ,1,2011-11-25 17:31:00,4.25,,"
                "United Kingdom\n");
  ReadStats stats;
  auto rows = ReadFiles<RetailReader>({path}, &stats);
  EXPECT_EQ(stats.lines, 9);
  EXPECT_EQ(stats.bad, 4);
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0].invoice, "536365");
  EXPECT_EQ(rows[0].stock_code, "85123A");
  EXPECT_EQ(rows[0].quantity, 6);
  EXPECT_EQ(rows[0].time, 1291191960);
  EXPECT_DOUBLE_EQ(rows[0].unit_price, 2.55);
  EXPECT_EQ(rows[0].customer_id, 17850);
  EXPECT_EQ(rows[0].country, "United Kingdom");
  EXPECT_EQ(rows[1].description, "AIRLINE LOUNGE,METAL SIGN");
  EXPECT_EQ(rows[1].customer_id, 15311);
  EXPECT_EQ(rows[2].description, "LETTER \"D\" BLING KEY RING");
  EXPECT_EQ(rows[2].customer_id, -1);
  EXPECT_EQ(rows[2].time, 1291213920);  // 2010-12-01 14:32 UTC
  EXPECT_EQ(rows[3].invoice, "C536379");
  EXPECT_EQ(rows[3].quantity, -1);
  EXPECT_EQ(rows[4].description, "WHITE SKULL HOT WATER BOTTLE ");
}

TEST(RetailReaderTest, WrongHeaderFailsOpen) {
  TempDir dir;
  WriteFile(dir.File("r.csv"), "InvoiceNo,StockCode\n1,2\n");
  auto r = RetailReader::OpenFiles({dir.File("r.csv")}, BadRecordPolicy());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(dir.File("r.csv") + ":1"), std::string::npos);
  // A byte-order mark before the header is fine.
  WriteFile(dir.File("bom.csv"), "\xEF\xBB\xBF" + std::string(kRetailHeader) + "\n");
  EXPECT_TRUE(RetailReader::OpenFiles({dir.File("bom.csv")}, BadRecordPolicy()).ok());
  EXPECT_EQ(RetailReader::OpenFiles({dir.File("none.csv")}, BadRecordPolicy()).status().code(),
            StatusCode::kNotFound);
}

// ---- TalkingData -----------------------------------------------------------------------

TEST(TalkingDataReaderTest, Parses) {
  TempDir dir;
  const std::string path = dir.File("td.csv");
  WriteFile(path,
            "ip,app,device,os,channel,click_time,attributed_time,is_attributed\n"
            "87540,12,1,13,497,2017-11-07 09:30:38,,0\n"
            "204158,35,1,13,21,2017-11-08 02:22:13,2017-11-08 02:22:38,1\n"
            "1,2,3,4,5,2017-11-08 02:22:13,,2\n"  // bad label
            "1,2,3,4,5,2017-11-08,,0,9\n");       // too many fields
  ReadStats stats;
  auto clicks = ReadFiles<TalkingDataReader>({path}, &stats);
  EXPECT_EQ(stats.bad, 2);
  ASSERT_EQ(clicks.size(), 2u);
  EXPECT_EQ(clicks[0].ip, 87540);
  EXPECT_EQ(clicks[0].app, 12);
  EXPECT_EQ(clicks[0].device, 1);
  EXPECT_EQ(clicks[0].os, 13);
  EXPECT_EQ(clicks[0].channel, 497);
  EXPECT_EQ(clicks[0].click_time, 1510047038);
  EXPECT_EQ(clicks[0].attributed_time, -1);
  EXPECT_EQ(clicks[0].is_attributed, 0);
  EXPECT_EQ(clicks[1].attributed_time, clicks[1].click_time + 25);
  EXPECT_EQ(clicks[1].is_attributed, 1);

  WriteFile(dir.File("hdr.csv"),
            "..ip,app,device,os,channel,click_time,attributed_time,is_attributed\n");
  EXPECT_EQ(TalkingDataReader::OpenFiles({dir.File("hdr.csv")}, BadRecordPolicy()).status().code(),
            StatusCode::kInvalidArgument);
}

// ---- Criteo ---------------------------------------------------------------------------

std::string CriteoFields(char sep, const std::string& label, int num_cats, bool trailing_empty) {
  std::string s = label;
  for (int i = 1; i <= 13; ++i) s += sep + (i == 4 ? std::string() : std::to_string(i * 10 - 20));
  for (int i = 1; i <= num_cats; ++i) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%08x", 0xabc000 + i);
    s += sep + std::string(trailing_empty && i == num_cats ? "" : buf);
  }
  return s;
}

// A full row whose C1 is not hex.
std::string NonHexRow() {
  std::string row = CriteoFields('\t', "0", 26, false);
  row.replace(row.find("00abc001"), 8, "0zabc001");
  return row;
}

TEST(CriteoReaderTest, TsvWithShortRows) {
  TempDir dir;
  const std::string path = dir.File("criteo.txt");
  WriteFile(path, CriteoFields('\t', "1", 26, false) + "\n" +            // full row
                      CriteoFields('\t', "0", 24, false) + "\n" +        // lost 2 trailing tabs
                      CriteoFields('\t', "0", 26, true) + "\n" +         // empty C26
                      CriteoFields('\t', "0", 0, false) + "\n" +         // too short (no C1)
                      CriteoFields('\t', "0", 26, false) + "\tffff\n" +  // too long
                      CriteoFields('\t', "2", 26, false) + "\n" +        // bad label
                      NonHexRow() + "\n" + CriteoFields('\t', "1", 26, false));  // no final newline
  ReadStats stats;
  auto rows = ReadFiles<CriteoReader>({path}, &stats);
  EXPECT_EQ(stats.lines, 8);
  EXPECT_EQ(stats.bad, 4);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].label, 1);
  EXPECT_EQ(rows[0].id, -1);
  EXPECT_EQ(rows[0].ints[0], -10);
  EXPECT_TRUE(rows[0].has_int[0]);
  EXPECT_FALSE(rows[0].has_int[3]);  // I4 empty
  EXPECT_EQ(rows[0].ints[12], 110);
  EXPECT_EQ(rows[0].cats[0], "00abc001");
  EXPECT_EQ(rows[0].cats[25], "00abc01a");
  EXPECT_EQ(rows[1].cats[23], "00abc018");
  EXPECT_EQ(rows[1].cats[24], "");  // padded
  EXPECT_EQ(rows[1].cats[25], "");
  EXPECT_EQ(rows[2].cats[25], "");
  EXPECT_EQ(rows[3].label, 1);
}

TEST(CriteoReaderTest, CsvWithIdHeader) {
  TempDir dir;
  std::string header = "Id,Label";
  for (int i = 1; i <= 13; ++i) header += ",I" + std::to_string(i);
  for (int i = 1; i <= 26; ++i) header += ",C" + std::to_string(i);
  WriteFile(dir.File("train.csv"),
            header + "\n" + "10000743," + CriteoFields(',', "1", 26, true) + "\n" +
                "10000744,0,1.0,0,1.0,,227.0,1.0,173.0,18.0,50.0,1.0,7.0,1.0,,75ac2fe6" +
                std::string(25, ',') + "\n" + "10000745,1,1.5" + std::string(38, ',') + "\n");
  ReadStats stats;
  auto rows = ReadFiles<CriteoReader>({dir.File("train.csv")}, &stats);
  EXPECT_EQ(stats.lines, 3);  // the header is not a record
  EXPECT_EQ(stats.bad, 1);    // I1 = 1.5 is not an integer
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id, 10000743);
  EXPECT_EQ(rows[0].label, 1);
  EXPECT_EQ(rows[1].id, 10000744);
  EXPECT_EQ(rows[1].ints[4], 227);
  EXPECT_FALSE(rows[1].has_int[3]);
  EXPECT_EQ(rows[1].cats[0], "75ac2fe6");

  WriteFile(dir.File("odd.csv"), "Id,Clicked,I1\n");
  EXPECT_EQ(CriteoReader::OpenFiles({dir.File("odd.csv")}, BadRecordPolicy()).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(CriteoSchemaTest, ChecksTheLayout) {
  TempDir dir;
  std::string json = "[{\"name\":\"clicked\",\"kind\":\"String\"}";
  for (int i = 1; i <= 13; ++i)
    json += ",{\"name\":\"Label" + std::to_string(i) + "\",\"kind\":\"Integer\"}";
  for (int i = 1; i <= 26; ++i)
    json += ",{\"name\":\"Cat" + std::to_string(i) + "\",\"kind\":\"String\"}";
  WriteFile(dir.File("ok.schema"), json + "]");
  auto names = ReadCriteoSchema(dir.File("ok.schema"));
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_EQ(names->size(), 40u);
  EXPECT_EQ((*names)[14], "Cat1");
  WriteFile(dir.File("short.schema"), "[{\"name\":\"clicked\",\"kind\":\"String\"}]");
  EXPECT_EQ(ReadCriteoSchema(dir.File("short.schema")).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadCriteoSchema(dir.File("none.schema")).status().code(), StatusCode::kNotFound);
}

// ---- The real files in ../shared/data ---------------------------------------------------

TEST(RealDataTest, TaobaoTimeSlice) {
  FRESHET_REQUIRE_SHARED_DATA("taobao/UserBehavior_time_slice.csv");
  const std::string path = SharedDataDir() + "/taobao/UserBehavior_time_slice.csv";
  ReadStats stats;
  auto events = ReadFiles<TaobaoReader>({path}, &stats);
  // 96,169 lines: 96,168 complete rows and the cut last line
  // "301780,543546,4181361,pv,15" (timestamp cut short).
  EXPECT_EQ(stats.lines, 96169);
  EXPECT_EQ(stats.examples, 96168);
  EXPECT_EQ(stats.bad, 1);
  ASSERT_EQ(events.size(), 96168u);
  std::map<TaobaoBehavior, int> behaviors;
  std::set<int64_t> users;
  for (const TaobaoEvent& e : events) {
    ++behaviors[e.behavior];
    users.insert(e.user_id);
    EXPECT_GE(e.time, 1511658000);  // 2017-11-26 01:00 UTC
    EXPECT_LE(e.time, 1511664909);
  }
  EXPECT_EQ(users.size(), 58732u);
  EXPECT_EQ(behaviors[TaobaoBehavior::kPv], 85773);
  EXPECT_EQ(behaviors[TaobaoBehavior::kCart], 5292);
  EXPECT_EQ(behaviors[TaobaoBehavior::kFav], 2959);
  EXPECT_EQ(behaviors[TaobaoBehavior::kBuy], 2144);
  // The cut line is the last one.
  BadRecordPolicy strict;
  strict.max_bad_records = 0;
  strict.max_bad_ratio = 0;
  Status st = ReadUntilError<TaobaoReader>(path, strict);
  EXPECT_NE(st.message().find(path + ":96169: implausible timestamp \"15\""), std::string::npos)
      << st;
}

TEST(RealDataTest, Taobao815Users) {
  FRESHET_REQUIRE_SHARED_DATA("taobao/UserBehavior_815_users.csv");
  const std::string path = SharedDataDir() + "/taobao/UserBehavior_815_users.csv";
  ReadStats stats;
  auto events = ReadFiles<TaobaoReader>({path}, &stats);
  // 84,476 lines: 84,475 complete rows and "100370,1968385,1875258,pv" (no
  // timestamp).
  EXPECT_EQ(stats.lines, 84476);
  EXPECT_EQ(stats.examples, 84475);
  EXPECT_EQ(stats.bad, 1);
  std::set<int64_t> users;
  for (const TaobaoEvent& e : events) users.insert(e.user_id);
  EXPECT_EQ(users.size(), 815u);
  BadRecordPolicy strict;
  strict.max_bad_records = 0;
  strict.max_bad_ratio = 0;
  Status st = ReadUntilError<TaobaoReader>(path, strict);
  EXPECT_NE(st.message().find(path + ":84476: expected 5"), std::string::npos) << st;
}

TEST(RealDataTest, TaobaoSplitAcrossShards) {
  FRESHET_REQUIRE_SHARED_DATA("taobao/UserBehavior_time_slice.csv",
                              "taobao/UserBehavior_815_users.csv");
  const std::vector<std::string> files = {SharedDataDir() + "/taobao/UserBehavior_time_slice.csv",
                                          SharedDataDir() + "/taobao/UserBehavior_815_users.csv"};
  for (int shards : {3, 16}) {
    int64_t good = 0, bad = 0;
    for (int s = 0; s < shards; ++s) {
      auto ranges = SplitFiles(files, s, shards);
      ASSERT_TRUE(ranges.ok());
      ReadStats stats;
      good += ReadAll<TaobaoReader>(*ranges, &stats).size();
      bad += stats.bad;
    }
    EXPECT_EQ(good, 96168 + 84475) << shards;
    EXPECT_EQ(bad, 2) << shards;
  }
}

TEST(RealDataTest, OnlineRetail) {
  FRESHET_REQUIRE_SHARED_DATA("online_retail/online_retail_to_2011-11-25.csv");
  ReadStats stats;
  auto rows = ReadFiles<RetailReader>(
      {SharedDataDir() + "/online_retail/online_retail_to_2011-11-25.csv"}, &stats);
  EXPECT_EQ(stats.lines, 502744);
  EXPECT_EQ(stats.bad, 0);
  ASSERT_EQ(rows.size(), 502744u);
  int64_t no_customer = 0, cancellations = 0, kept = 0, with_comma = 0, with_quote = 0;
  int64_t min_time = rows[0].time, max_time = rows[0].time;
  for (const RetailRow& r : rows) {
    no_customer += r.customer_id < 0;
    cancellations += r.invoice[0] == 'C';
    kept += r.customer_id >= 0 && r.invoice[0] != 'C' && r.quantity > 0;
    with_comma += r.description.find(',') != std::string::npos;
    with_quote += r.description.find('"') != std::string::npos;
    min_time = std::min(min_time, r.time);
    max_time = std::max(max_time, r.time);
  }
  EXPECT_EQ(no_customer, 123767);
  EXPECT_EQ(cancellations, 8800);
  EXPECT_EQ(kept, 370556);
  EXPECT_GT(with_comma, 1000);
  EXPECT_GT(with_quote, 10);
  EXPECT_EQ(min_time, 1291191960);  // 2010-12-01 08:26:00
  int64_t last_day;
  ASSERT_TRUE(ParseDateTime("2011-11-25", &last_day));
  EXPECT_GE(max_time, last_day);
  EXPECT_LT(max_time, last_day + 86400);
}

TEST(RealDataTest, TalkingData) {
  FRESHET_REQUIRE_SHARED_DATA("talkingdata/train_sample.csv");
  ReadStats stats;
  auto clicks =
      ReadFiles<TalkingDataReader>({SharedDataDir() + "/talkingdata/train_sample.csv"}, &stats);
  EXPECT_EQ(stats.lines, 100000);
  EXPECT_EQ(stats.bad, 0);
  int64_t positives = 0, with_attributed_time = 0;
  for (const TalkingDataClick& c : clicks) {
    positives += c.is_attributed;
    with_attributed_time += c.attributed_time >= 0;
  }
  EXPECT_EQ(positives, 227);
  EXPECT_EQ(with_attributed_time, 227);
}

TEST(RealDataTest, CriteoSamples) {
  FRESHET_REQUIRE_SHARED_DATA("criteo/criteo_train_head_999.txt", "criteo/criteo_hillview_1000.tsv",
                              "criteo/criteo_kaggle_train_1599rows_with_id.csv");
  const std::string dir = SharedDataDir() + "/criteo/";
  struct Case {
    const char* file;
    int64_t rows;
    int64_t positives;
    bool has_id;
  } cases[] = {
      // 1,000 rows (999 newlines; the last row has none): 498 lost trailing tabs.
      {"criteo_train_head_999.txt", 1000, 205, false},
      {"criteo_hillview_1000.tsv", 1000, 21, false},
      {"criteo_kaggle_train_1599rows_with_id.csv", 1599, 334, true},
  };
  for (const Case& c : cases) {
    ReadStats stats;
    auto rows = ReadFiles<CriteoReader>({dir + c.file}, &stats);
    EXPECT_EQ(stats.lines, c.rows) << c.file;
    EXPECT_EQ(stats.bad, 0) << c.file;
    int64_t positives = 0, ids = 0;
    for (const CriteoRow& r : rows) {
      positives += r.label;
      ids += r.id >= 10000000;
    }
    EXPECT_EQ(positives, c.positives) << c.file;
    EXPECT_EQ(ids, c.has_id ? c.rows : 0) << c.file;
  }
  auto names = ReadCriteoSchema(dir + "criteo_hillview.schema");
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_EQ((*names)[0], "clicked");
  EXPECT_EQ((*names)[39], "Cat26");
}

}  // namespace
}  // namespace freshet
