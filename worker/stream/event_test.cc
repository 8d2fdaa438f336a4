#include "worker/stream/event.h"

#include <gtest/gtest.h>

namespace freshet {
namespace {

TEST(EventTest, HeaderRoundTrip) {
  const std::string h = FormatEventHeader({"user", "item", "query"});
  EXPECT_EQ(h, "#freshet-events v1\tuser\titem\tquery");
  auto cols = ParseEventHeader(h + "\r");
  ASSERT_TRUE(cols.ok()) << cols.status();
  EXPECT_EQ(*cols, (std::vector<std::string>{"user", "item", "query"}));
}

TEST(EventTest, BadHeaders) {
  EXPECT_FALSE(ParseEventHeader("imp\t1\tr\tu\ti").ok());
  auto v2 = ParseEventHeader("#freshet-events v2\ta");
  ASSERT_FALSE(v2.ok());
  EXPECT_NE(v2.status().message().find("version"), std::string::npos);
  auto dup = ParseEventHeader("#freshet-events v1\ta\ta");
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("duplicate column 'a'"), std::string::npos);
  EXPECT_FALSE(ParseEventHeader("#freshet-events v1\ta\t\tb").ok());
}

TEST(EventTest, ImpressionAndReactionRoundTrip) {
  Event imp;
  imp.kind = EventKind::kImpression;
  imp.ms = 1700000000123;
  imp.request = "r1";
  imp.user = "u7";
  imp.item = "i9";
  imp.oracle = 0.25f;
  imp.values = {"u7", "i9", "cheap shoes", ""};
  const std::string line = FormatEventLine(imp);
  EXPECT_EQ(line, "imp\t1700000000123\tr1\tu7\ti9\t0.25\tu7\ti9\tcheap shoes\t");
  Event back;
  ASSERT_TRUE(ParseEventLine(line, 4, &back).ok());
  EXPECT_EQ(back.kind, EventKind::kImpression);
  EXPECT_EQ(back.ms, imp.ms);
  EXPECT_EQ(back.request, "r1");
  EXPECT_EQ(back.user, "u7");
  EXPECT_EQ(back.item, "i9");
  EXPECT_FLOAT_EQ(back.oracle, 0.25f);
  EXPECT_EQ(back.values, imp.values);

  for (EventKind k : {EventKind::kClick, EventKind::kCart, EventKind::kFav, EventKind::kBuy}) {
    Event r;
    r.kind = k;
    r.ms = 5;
    r.request = "r1";
    r.item = "i9";
    const std::string rl = FormatEventLine(r);
    EXPECT_EQ(rl, std::string(EventKindName(k)) + "\t5\tr1\t\ti9");
    ASSERT_TRUE(ParseEventLine(rl, 4, &back).ok()) << rl;
    EXPECT_EQ(back.kind, k);
    EXPECT_TRUE(back.values.empty());
    EXPECT_EQ(back.user, "");
  }
  // Unknown oracle stays -1.
  ASSERT_TRUE(ParseEventLine("imp\t1\tr\tu\ti\t\ta", 1, &back).ok());
  EXPECT_EQ(back.oracle, -1);
}

TEST(EventTest, ErrorsNameTheField) {
  Event ev;
  auto msg = [&](const std::string& line, size_t cols) {
    Status st = ParseEventLine(line, cols, &ev);
    EXPECT_FALSE(st.ok()) << line;
    return st.message();
  };
  EXPECT_NE(msg("view\t1\tr\tu\ti", 0).find("field 1 (kind)"), std::string::npos);
  EXPECT_NE(msg("click\t-1\tr\tu\ti", 0).find("field 2 (ms)"), std::string::npos);
  EXPECT_NE(msg("click\t12x\tr\tu\ti", 0).find("field 2 (ms): '12x'"), std::string::npos);
  EXPECT_NE(msg("click\t1\t\tu\ti", 0).find("field 3 (request)"), std::string::npos);
  EXPECT_NE(msg("click\t1\tr\tu\t", 0).find("field 5 (item)"), std::string::npos);
  EXPECT_NE(msg("click\t1\tr\tu", 0).find("expected at least 5"), std::string::npos);
  EXPECT_NE(msg("click\t1\tr\tu\ti\tx", 0).find("more"), std::string::npos);
  EXPECT_NE(msg("imp\t1\tr\tu\ti\t1.5\ta", 1).find("field 6 (oracle)"), std::string::npos);
  EXPECT_NE(msg("imp\t1\tr\tu\ti\t0.5\ta", 2).find("expected 8"), std::string::npos);
  EXPECT_NE(msg("imp\t1\tr\tu\ti\t0.5\ta\tb\tc", 2).find("more than"), std::string::npos);
  EXPECT_NE(msg("", 0).find("expected at least 5"), std::string::npos);
}

}  // namespace
}  // namespace freshet
