#include "worker/input_ledger.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "worker/data/internal/test_util.h"

namespace freshet {
namespace {

// What InputLedger writes, ParseLedgerLine reads back field for field.
TEST(InputLedgerTest, WrittenLinesParseBack) {
  testing_util::TempDir dir;
  {
    auto ledger = InputLedger::Open(dir.path(), 1, 3, 7);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    InputInterval a{2, 100, 250, 9}, b{0, 0, 18446744073709551615ull, 0};
    ASSERT_TRUE((*ledger)->AppendBatch(4, {a, b}).ok());
    ASSERT_TRUE((*ledger)->AppendCheckpoint(12, 345).ok());
  }
  std::istringstream in(testing_util::ReadFile(dir.File("worker-1.ledger")));
  std::vector<LedgerLine> lines;
  std::string text;
  while (std::getline(in, text)) {
    LedgerLine l;
    Status st = ParseLedgerLine(text, &l);
    ASSERT_TRUE(st.ok()) << text << ": " << st;
    std::string again;
    AppendLedgerLine(l, &again);
    EXPECT_EQ(again, text + "\n");
    lines.push_back(l);
  }
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0].kind, LedgerLine::Kind::kAttempt);
  EXPECT_GT(lines[0].unix_ms, 1600000000000);
  EXPECT_EQ(lines[0].restored_from, 7);
  EXPECT_EQ(lines[0].workers, 3);
  EXPECT_EQ(lines[1].kind, LedgerLine::Kind::kBatch);
  EXPECT_EQ(lines[1].epoch, 4);
  EXPECT_EQ(lines[1].file, 2);
  EXPECT_EQ(lines[1].begin, 100u);
  EXPECT_EQ(lines[1].end, 250u);
  EXPECT_EQ(lines[1].records, 9);
  EXPECT_EQ(lines[2].end, 18446744073709551615ull);
  EXPECT_EQ(lines[3].kind, LedgerLine::Kind::kCheckpoint);
  EXPECT_EQ(lines[3].checkpoint_id, 12);
  EXPECT_EQ(lines[3].step, 345);
}

TEST(InputLedgerTest, MalformedLinesAreRejectedNamingTheField) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "unknown kind ''"},
      {"x 1 2", "unknown kind 'x'"},
      {"b 0 1 5 4 1", "ends before it begins"},
      {"b 0 1 2 3", "expected 'b <epoch>"},
      {"b 0 1 2 3 4 5", "expected 'b <epoch>"},
      {"b -1 0 0 1 1", "field 2 (epoch)"},
      {"b 0 2147483648 0 1 1", "field 3 (file)"},
      {"b 0 0 0 18446744073709551616 1", "field 5 (end)"},
      {"b 0 0 00 1 1", "field 4 (begin)"},
      {"b 0 0 +0 1 1", "field 4 (begin)"},
      {"b 0  0 0 1 1", "expected 'b <epoch>"},
      {"b 0 0 0 1 1\r", "field 6 (records)"},
      {"c 0 5", "field 2 (checkpoint id)"},
      {"c 1", "expected 'c <checkpoint id> <step>'"},
      {"attempt 1 restored_from 0 workers 0", "field 6 (workers)"},
      {"attempt 1 restored 0 workers 2", "expected 'attempt"},
      {"b 0 0 0 1 1 1 1 1", "more than 7 fields"},
  };
  for (const auto& [text, want] : bad) {
    LedgerLine l;
    Status st = ParseLedgerLine(text, &l);
    ASSERT_FALSE(st.ok()) << text;
    EXPECT_NE(st.message().find(want), std::string::npos) << text << ": " << st;
  }
}

}  // namespace
}  // namespace freshet
