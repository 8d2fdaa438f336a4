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

// Issue 18: a line the old parser accepted but that did not survive
// FormatEventLine -> ParseEventLine (found by a libFuzzer round-trip
// harness): a click whose item is byte 0x89 then 85 carriage returns. The
// trailing-CR rule strips one CR per parse, so the item changed each time.
TEST(EventTest, ControlCharactersInTokensAreRejected) {
  Event ev;
  const std::string found = "click\t1\t1\t\t\x89" + std::string(85, '\r');
  Status st = ParseEventLine(found, 0, &ev);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("field 5 (item): control character 0x0d at byte 2"),
            std::string::npos)
      << st;
  // Similar lines: a CR, NUL, DEL, ESC or newline inside any token.
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"click\t1\tr\tu\ti\r\r", "field 5 (item): control character 0x0d"},
      {"click\t1\tr\r\tu\ti", "field 3 (request): control character 0x0d"},
      {std::string("click\t1\tr\tu\0\ti", 14), "field 4 (user): control character 0x00"},
      {"buy\t1\tr\tu\ti\x7f", "field 5 (item): control character 0x7f"},
      {"click\t1\tr\x1b[0m\tu\ti", "field 3 (request): control character 0x1b"},
      {"click\t1\tr\tu\ti\nx", "field 5 (item): control character 0x0a"},
      {"imp\t1\tr\tu\ti\t\ta\tb\r\r", "field 8 (column 2): control character 0x0d"},
      {"imp\t1\tr\tu\ti\t\ta\x01\tb", "field 7 (column 1): control character 0x01"},
  };
  for (const auto& [line, want] : bad) {
    Status s = ParseEventLine(line, line.rfind("imp", 0) == 0 ? 2 : 0, &ev);
    ASSERT_FALSE(s.ok()) << line;
    EXPECT_NE(s.message().find(want), std::string::npos) << s;
  }
  // Still valid: one trailing CR (CRLF), an empty user, bytes >= 0x80, spaces.
  ASSERT_TRUE(ParseEventLine("click\t1\tr\t\t\x89\r", 0, &ev).ok());
  EXPECT_EQ(ev.item, "\x89");
  EXPECT_EQ(ev.user, "");
  ASSERT_TRUE(ParseEventLine("imp\t1\tr\tu\t\xc3\xa9\t\tcheap shoes\t\r", 2, &ev).ok());
  EXPECT_EQ(ev.values, (std::vector<std::string>{"cheap shoes", ""}));
  // Header columns follow the same rule.
  auto h = ParseEventHeader("#freshet-events v1\ta\tb\r\r");
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("header column 2: control character 0x0d"), std::string::npos)
      << h.status();
}

// Every accepted line parses back unchanged after formatting.
TEST(EventTest, AcceptedLinesRoundTrip) {
  const std::vector<std::pair<std::string, size_t>> lines = {
      {"click\t1\t1\t\t\x89\r", 0},
      {"imp\t+7\tr\tu\ti\t0.1234567\ta b\t\r", 2},
      {"imp\t0\tr\t\ti\t-0\t\t", 2},
      {"fav\t0009\tr\tu\ti", 0},
  };
  for (const auto& [line, cols] : lines) {
    Event a, b;
    ASSERT_TRUE(ParseEventLine(line, cols, &a).ok()) << line;
    const std::string formatted = FormatEventLine(a);
    ASSERT_TRUE(ParseEventLine(formatted, cols, &b).ok()) << formatted;
    EXPECT_EQ(a.kind, b.kind);
    EXPECT_EQ(a.ms, b.ms);
    EXPECT_EQ(a.request, b.request);
    EXPECT_EQ(a.user, b.user);
    EXPECT_EQ(a.item, b.item);
    EXPECT_EQ(a.values, b.values);
    EXPECT_EQ(FormatEventLine(b), formatted);
  }
}

}  // namespace
}  // namespace freshet
