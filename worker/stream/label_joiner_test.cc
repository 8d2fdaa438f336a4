#include "worker/stream/label_joiner.h"

#include <set>

#include <gtest/gtest.h>

namespace freshet {
namespace {

Event Imp(int64_t ms, const std::string& req, const std::string& item,
          const std::string& user = "u1") {
  Event e;
  e.kind = EventKind::kImpression;
  e.ms = ms;
  e.request = req;
  e.item = item;
  e.user = user;
  e.oracle = 0.5f;
  e.values = {user, item, "q " + req};
  return e;
}

Event React(EventKind kind, int64_t ms, const std::string& req, const std::string& item,
            const std::string& user = "u1") {
  Event e;
  e.kind = kind;
  e.ms = ms;
  e.request = req;
  e.item = item;
  e.user = user;
  return e;
}

Event Click(int64_t ms, const std::string& req, const std::string& item,
            const std::string& user = "u1") {
  return React(EventKind::kClick, ms, req, item, user);
}

std::unique_ptr<LabelJoiner> Make(int64_t window_ms, size_t max_pending = 1000,
                                  std::vector<EventKind> labels = {EventKind::kClick}) {
  JoinOptions o;
  o.window_ms = window_ms;
  o.max_pending = max_pending;
  o.label_kinds = labels;
  auto j = LabelJoiner::Create(o);
  EXPECT_TRUE(j.ok()) << j.status();
  return std::move(j).value();
}

// "item:label" of each emitted example, in order.
std::vector<std::string> Labels(const std::vector<Example>& out) {
  std::vector<std::string> s;
  for (const auto& e : out) s.push_back(e.values[1] + ":" + std::to_string(int(e.label)));
  return s;
}

TEST(LabelJoinerTest, RejectsBadOptions) {
  JoinOptions o;
  o.window_ms = -1;
  EXPECT_FALSE(LabelJoiner::Create(o).ok());
  o.window_ms = 10;
  o.max_pending = 0;
  EXPECT_FALSE(LabelJoiner::Create(o).ok());
  o.max_pending = 10;
  o.label_kinds = {EventKind::kImpression};
  EXPECT_FALSE(LabelJoiner::Create(o).ok());
}

TEST(LabelJoinerTest, WithinAtAndPastTheWindow) {
  auto j = Make(1000);
  std::vector<Example> out;
  j->Add(Imp(10000, "r1", "a"), &out);
  j->Add(Imp(10000, "r1", "b"), &out);
  j->Add(Imp(10000, "r1", "c"), &out);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(j->waiting(), 3u);
  j->Add(Click(10500, "r1", "a"), &out);  // within
  ASSERT_EQ(Labels(out), std::vector<std::string>{"a:1"});
  // The example carries the impression's values, user, oracle and time.
  EXPECT_EQ(out[0].user, "u1");
  EXPECT_EQ(out[0].values, (std::vector<std::string>{"u1", "a", "q r1"}));
  EXPECT_EQ(out[0].time, 10);
  EXPECT_FLOAT_EQ(out[0].oracle, 0.5f);
  j->Add(Click(11000, "r1", "b"), &out);  // exactly at the window's end: counts
  EXPECT_EQ(Labels(out), (std::vector<std::string>{"a:1", "b:1"}));
  j->Add(Click(11001, "r1", "c"), &out);  // 1 ms past: late, no positive
  EXPECT_EQ(out.size(), 2u);
  EXPECT_EQ(j->counters().late, 1);
  // c's window [10000, 11000] closes only when the watermark passes 11000.
  j->AdvanceWatermark(11000, &out);
  EXPECT_EQ(out.size(), 2u);
  j->AdvanceWatermark(11001, &out);
  EXPECT_EQ(Labels(out), (std::vector<std::string>{"a:1", "b:1", "c:0"}));
  EXPECT_EQ(j->waiting(), 0u);
  const JoinCounters& c = j->counters();
  EXPECT_EQ(c.impressions, 3);
  EXPECT_EQ(c.joined, 2);
  EXPECT_EQ(c.expired, 1);
  EXPECT_EQ(c.reactions, 3);
}

TEST(LabelJoinerTest, ZeroWindowNeedsSameMillisecond) {
  auto j = Make(0);
  std::vector<Example> out;
  j->Add(Imp(500, "r", "a"), &out);
  j->Add(Imp(500, "r", "b"), &out);
  j->Add(Click(500, "r", "a"), &out);
  j->Add(Click(501, "r", "b"), &out);
  j->AdvanceWatermark(501, &out);
  EXPECT_EQ(Labels(out), (std::vector<std::string>{"a:1", "b:0"}));
  EXPECT_EQ(j->counters().late, 1);
}

TEST(LabelJoinerTest, Duplicates) {
  auto j = Make(1000);
  std::vector<Example> out;
  j->Add(Imp(0, "r", "a"), &out);
  j->Add(Imp(0, "r", "a"), &out);  // duplicate impression: ignored
  j->Add(Click(10, "r", "a"), &out);
  j->Add(Click(20, "r", "a"), &out);  // second click: duplicate
  EXPECT_EQ(Labels(out), std::vector<std::string>{"a:1"});
  j->Add(Imp(5, "r", "a"), &out);  // impression again after its example: duplicate
  j->AdvanceWatermark(5000, &out);
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(j->counters().duplicate, 2);
  EXPECT_EQ(j->counters().dup_labels, 1);
  EXPECT_EQ(j->counters().impressions, 3);
  EXPECT_EQ(j->counters().emitted(), 1);
}

TEST(LabelJoinerTest, OutOfOrderReactionJoinsWhenTheImpressionComes) {
  auto j = Make(1000);
  std::vector<Example> out;
  j->Add(Click(150, "r", "a"), &out);  // before its impression
  j->Add(Click(160, "r", "b"), &out);  // its impression never comes
  j->Add(Click(170, "r", "c"), &out);  // impression comes, but click is before it
  EXPECT_EQ(j->early(), 3u);
  j->Add(Imp(100, "r", "a"), &out);
  EXPECT_EQ(Labels(out), std::vector<std::string>{"a:1"});
  EXPECT_EQ(j->counters().early_joined, 1);
  j->Add(Imp(200, "r", "c"), &out);
  EXPECT_EQ(j->counters().late, 1);  // click at 170 < impression at 200
  // b waits early_hold_ms (= window) past its time, then is an orphan.
  j->AdvanceWatermark(1160, &out);
  EXPECT_EQ(j->counters().orphan, 0);
  j->AdvanceWatermark(1161, &out);
  EXPECT_EQ(j->counters().orphan, 1);
  EXPECT_EQ(j->early(), 0u);
  j->AdvanceWatermark(1201, &out);
  EXPECT_EQ(Labels(out), (std::vector<std::string>{"a:1", "c:0"}));
  // A label event far older than the watermark is an orphan at once.
  j->Add(Click(10, "x", "y"), &out);
  EXPECT_EQ(j->counters().orphan, 2);
}

TEST(LabelJoinerTest, ReactionAfterTheNegativeIsLateAndUserMismatchIsCounted) {
  auto j = Make(1000);
  std::vector<Example> out;
  j->Add(Imp(0, "r", "a", "u1"), &out);
  j->Add(Imp(1, "r", "b", "u1"), &out);
  j->Add(Click(10, "r", "b", "u2"), &out);  // someone else's click
  EXPECT_EQ(j->counters().mismatched, 1);
  j->AdvanceWatermark(1002, &out);
  EXPECT_EQ(Labels(out), (std::vector<std::string>{"a:0", "b:0"}));
  j->Add(Click(900, "r", "a", "u1"), &out);  // in the window, but after the negative
  EXPECT_EQ(j->counters().late, 1);
  EXPECT_EQ(out.size(), 2u);
}

TEST(LabelJoinerTest, LabelKindsFromOptions) {
  auto j = Make(1000, 100, {EventKind::kBuy, EventKind::kCart});
  std::vector<Example> out;
  j->Add(Imp(0, "r", "a"), &out);
  j->Add(Imp(0, "r", "b"), &out);
  j->Add(Click(5, "r", "a"), &out);  // not a label event here
  j->Add(React(EventKind::kFav, 6, "r", "a"), &out);
  EXPECT_EQ(j->counters().ignored, 2);
  j->Add(React(EventKind::kBuy, 7, "r", "a"), &out);
  j->Add(React(EventKind::kCart, 8, "r", "b"), &out);
  EXPECT_EQ(Labels(out), (std::vector<std::string>{"a:1", "b:1"}));
}

TEST(LabelJoinerTest, FullBufferEvictsTheEarliestWindowAsNegative) {
  auto j = Make(1000, 3);
  std::vector<Example> out;
  j->Add(Imp(30, "r", "a"), &out);
  j->Add(Imp(10, "r", "b"), &out);
  j->Add(Imp(20, "r", "c"), &out);
  EXPECT_TRUE(out.empty());
  j->Add(Imp(40, "r", "d"), &out);  // full: b (window ends first) leaves as a negative
  EXPECT_EQ(Labels(out), std::vector<std::string>{"b:0"});
  EXPECT_EQ(j->counters().evicted, 1);
  EXPECT_EQ(j->entries(), 3u);
  // A positive becomes a marker; a new impression drops the marker first.
  j->Add(Click(50, "r", "a"), &out);
  j->Add(Imp(60, "r", "e"), &out);
  EXPECT_EQ(Labels(out), (std::vector<std::string>{"b:0", "a:1"}));
  EXPECT_EQ(j->counters().evicted, 1);
  j->Flush(&out);
  EXPECT_EQ(Labels(out), (std::vector<std::string>{"b:0", "a:1", "c:0", "d:0", "e:0"}));
  EXPECT_EQ(j->entries(), 0u);
  const JoinCounters& c = j->counters();
  EXPECT_EQ(c.impressions, c.emitted() + c.duplicate);
  EXPECT_EQ(c.reactions, c.joined + c.dup_labels + c.late + c.orphan + c.mismatched + c.ignored);
}

TEST(LabelJoinerTest, CountersAddUpOnAShuffledStream) {
  // 2000 impressions, every third clicked within the window, some clicks out
  // of order, some duplicates: every impression is emitted exactly once.
  auto j = Make(100, 1 << 20);
  std::vector<Event> events;
  int clicks = 0;
  for (int i = 0; i < 2000; ++i) {
    const std::string req = "r" + std::to_string(i / 10), item = "i" + std::to_string(i % 10);
    events.push_back(Imp(i * 7, req, item));
    if (i % 3 == 0) {
      Event c = Click(i * 7 + 50, req, item);
      if (i % 9 == 0) {
        events.insert(events.end() - 1, c);  // before its impression
      } else {
        events.push_back(c);
      }
      ++clicks;
    }
    if (i % 50 == 0) events.push_back(Imp(i * 7, req, item));  // duplicate
  }
  std::vector<Example> out;
  int64_t newest = 0;
  for (const auto& e : events) {
    j->Add(e, &out);
    newest = std::max(newest, e.ms);
    j->AdvanceWatermark(newest - 60, &out);  // a lagging watermark
  }
  j->Flush(&out);
  int pos = 0;
  std::set<std::string> seen;
  for (const auto& e : out) {
    pos += e.label > 0;
    EXPECT_TRUE(seen.insert(e.values[2] + "/" + e.values[1]).second) << "emitted twice";
  }
  EXPECT_EQ(out.size(), 2000u);
  EXPECT_EQ(pos, clicks);
  const JoinCounters& c = j->counters();
  EXPECT_EQ(c.joined, clicks);
  EXPECT_EQ(c.duplicate, 40);
  EXPECT_EQ(c.late + c.orphan + c.mismatched + c.dup_labels, 0);
  EXPECT_EQ(c.reactions, c.joined);
  EXPECT_EQ(c.early_joined, 223);  // i % 9 == 0 for i < 2000
  EXPECT_EQ(c.impressions, c.emitted() + c.duplicate);
}

}  // namespace
}  // namespace freshet
