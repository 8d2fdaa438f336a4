#include "worker/stream/label_joiner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "worker/stream/join_state.h"

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

// A stream with every case: impressions on 4 partitions (by request),
// clicks in and past the window, clicks before their impression, duplicate
// impressions and clicks, non-label reactions, user mismatches, clicks
// without impression. `watermark_after[k]`: the watermark to advance to
// after event k (a lagging one, as a source's).
struct Stream {
  std::vector<Event> events;
  std::vector<int64_t> watermark_after;
};

Stream MakeStream(int requests, int64_t window_ms, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<std::pair<int64_t, Event>> timed;  // (when written, event)
  for (int r = 0; r < requests; ++r) {
    const int64_t t = 1000000 + r * 40 + static_cast<int64_t>(u(rng) * 30);
    const std::string req = "r" + std::to_string(r);
    const std::string user = "u" + std::to_string(r % 17);
    for (int i = 0; i < 3; ++i) {
      const std::string item = "i" + std::to_string((r * 7 + i) % 50);
      Event imp = Imp(t, req, item, user);
      imp.partition = r % 4;
      timed.push_back({t, imp});
      if (u(rng) < 0.03) timed.push_back({t + 5, imp});  // duplicate
      const double x = u(rng);
      if (x < 0.35) {
        Event c = Click(t + static_cast<int64_t>(u(rng) * window_ms * 1.3), req, item,
                        u(rng) < 0.03 ? "other" : user);
        c.partition = imp.partition;
        const bool early = u(rng) < 0.1;
        timed.push_back({early ? t - 1 : c.ms, c});
        if (u(rng) < 0.05) timed.push_back({c.ms + 3, c});  // a second click
      } else if (x < 0.4) {
        Event cart = React(EventKind::kCart, t + 10, req, item, user);
        cart.partition = imp.partition;
        timed.push_back({t + 10, cart});
      }
    }
    if (u(rng) < 0.02) {  // a click whose impression never comes
      Event c = Click(t + 3, req, "nope", user);
      c.partition = r % 4;
      timed.push_back({t + 3, c});
    }
  }
  std::stable_sort(timed.begin(), timed.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  Stream s;
  int64_t newest = 0;
  for (auto& [when, ev] : timed) {
    newest = std::max(newest, ev.ms);
    s.events.push_back(std::move(ev));
    s.watermark_after.push_back(s.events.size() % 7 == 0 ? newest - 200 : INT64_MIN);
  }
  return s;
}

// One example as a comparable string.
std::string Describe(const Example& e) {
  std::string s = std::to_string(e.label) + "|" + std::to_string(e.time) + "|" + e.user + "|" +
                  std::to_string(e.oracle);
  for (const auto& v : e.values) s += "|" + v;
  return s;
}

std::vector<std::string> Sorted(const std::vector<Example>& out) {
  std::vector<std::string> s;
  for (const auto& e : out) s.push_back(Describe(e));
  std::sort(s.begin(), s.end());
  return s;
}

// Feeds events [from, to) to the joiners: event k to joiners[partition %
// joiners.size()], every watermark to all.
void Feed(const Stream& s, size_t from, size_t to, const std::vector<LabelJoiner*>& joiners,
          std::vector<Example>* out) {
  for (size_t k = from; k < to; ++k) {
    joiners[s.events[k].partition % joiners.size()]->Add(s.events[k], out);
    if (s.watermark_after[k] != INT64_MIN) {
      for (LabelJoiner* j : joiners) j->AdvanceWatermark(s.watermark_after[k], out);
    }
  }
}

TEST(LabelJoinerTest, JoiningAfterARestoreGivesWhatAnUninterruptedJoinerGives) {
  constexpr int64_t kWindow = 2000;
  const Stream s = MakeStream(1500, kWindow, 3);
  auto make = [&] {
    JoinOptions o;
    o.window_ms = kWindow;
    o.max_pending = 1 << 20;
    return std::move(LabelJoiner::Create(o)).value();
  };
  auto whole = make();
  std::vector<Example> want;
  Feed(s, 0, s.events.size(), {whole.get()}, &want);
  whole->Flush(&want);
  const JoinCounters& wc = whole->counters();
  // The stream has every case.
  EXPECT_GT(wc.joined, 0);
  EXPECT_GT(wc.expired, 0);
  EXPECT_GT(wc.early_joined, 0);
  EXPECT_GT(wc.duplicate, 0);
  EXPECT_GT(wc.dup_labels, 0);
  EXPECT_GT(wc.late, 0);
  EXPECT_GT(wc.orphan, 0);
  EXPECT_GT(wc.mismatched, 0);
  EXPECT_GT(wc.ignored, 0);

  size_t max_waiting = 0, max_markers = 0, max_early = 0;
  for (size_t cut : {size_t{0}, size_t{1}, s.events.size() / 3, s.events.size() / 2 + 1,
                     s.events.size() - 5, s.events.size()}) {
    SCOPED_TRACE("cut after event " + std::to_string(cut));
    auto before = make();
    std::vector<Example> got;
    Feed(s, 0, cut, {before.get()}, &got);
    StreamJoinState saved;
    saved.num_workers = 1;
    saved.joiner = before->SaveState();
    EXPECT_EQ(saved.joiner.waiting(), before->waiting());
    EXPECT_EQ(saved.joiner.entries.size(), before->entries());
    EXPECT_EQ(saved.joiner.early.size(), before->early());
    max_waiting = std::max(max_waiting, before->waiting());
    max_markers = std::max(max_markers, before->entries() - before->waiting());
    max_early = std::max(max_early, before->early());
    // Through the file format, then onto 1 worker (the same) and 2.
    auto decoded = DecodeJoinState(EncodeJoinState(saved), "mem");
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    for (int n : {1, 2}) {
      SCOPED_TRACE(std::to_string(n) + " joiners after the restore");
      std::vector<std::unique_ptr<LabelJoiner>> after;
      std::vector<LabelJoiner*> ptrs;
      for (int me = 0; me < n; ++me) {
        JoinStateMerger m(me, n);
        m.Add(*decoded);
        after.push_back(make());
        ASSERT_TRUE(after.back()->RestoreState(m.Take().joiner).ok());
        ptrs.push_back(after.back().get());
      }
      // A restored joiner takes no second state.
      EXPECT_EQ(after[0]->RestoreState(saved.joiner).code(), StatusCode::kFailedPrecondition);
      std::vector<Example> all = got;
      Feed(s, cut, s.events.size(), ptrs, &all);
      JoinCounters sum;
      for (auto& j : after) {
        j->Flush(&all);
        sum.Add(j->counters());
      }
      EXPECT_EQ(Sorted(all), Sorted(want));
      EXPECT_TRUE(sum == wc) << sum.ToString() << " vs " << wc.ToString();
    }
  }
  EXPECT_GT(max_waiting, 10u);
  EXPECT_GT(max_markers, 10u);
  EXPECT_GT(max_early, 0u);
}

// The freshness clocks (docs/METRICS.md "Freshness") with an injected wall
// clock: an example's read time is when its impression was read; its label
// time is when its label event was read (positive), when the impression
// came after its label event (early join), or when the window closed or
// the buffer evicted it (negatives: the clock at emission).
TEST(LabelJoinerTest, StampsReadAndLabelTimes) {
  int64_t wall = 0;
  JoinOptions o;
  o.window_ms = 1000;
  o.max_pending = 8;
  o.now_unix_ms = [&wall] { return wall; };
  auto j = std::move(LabelJoiner::Create(o)).value();
  auto read_at = [](Event e, int64_t read_ms) {
    e.read_unix_ms = read_ms;
    return e;
  };
  std::vector<Example> out;
  wall = 100;
  j->Add(read_at(Imp(10000, "r1", "a"), 100), &out);
  j->Add(read_at(Imp(10000, "r1", "b"), 110), &out);
  j->Add(read_at(Click(10200, "r1", "c"), 115), &out);  // before its impression
  j->Add(read_at(Imp(10100, "r1", "c"), 120), &out);
  ASSERT_EQ(Labels(out), (std::vector<std::string>{"c:1"}));
  EXPECT_EQ(out[0].read_unix_ms, 120);
  EXPECT_EQ(out[0].label_unix_ms, 120);  // known once both were read
  wall = 300;
  j->Add(read_at(Click(10500, "r1", "a"), 300), &out);
  ASSERT_EQ(Labels(out), (std::vector<std::string>{"c:1", "a:1"}));
  EXPECT_EQ(out[1].read_unix_ms, 100);
  EXPECT_EQ(out[1].label_unix_ms, 300);
  // b's window (ends at 11000) closes when the watermark passes it, 5 s of
  // wall time after b was read.
  wall = 5110;
  j->AdvanceWatermark(11001, &out);
  ASSERT_EQ(Labels(out), (std::vector<std::string>{"c:1", "a:1", "b:0"}));
  EXPECT_EQ(out[2].read_unix_ms, 110);
  EXPECT_EQ(out[2].label_unix_ms, 5110);
  EXPECT_GE(out[2].label_unix_ms - out[2].read_unix_ms, 5000);
  // Eviction: a full buffer emits the earliest window early, at the clock.
  out.clear();
  auto small = [&] {
    JoinOptions s = o;
    s.max_pending = 1;
    return std::move(LabelJoiner::Create(s)).value();
  }();
  small->Add(read_at(Imp(20000, "r2", "x"), 6000), &out);
  wall = 6050;
  small->Add(read_at(Imp(20001, "r2", "y"), 6040), &out);
  ASSERT_EQ(Labels(out), (std::vector<std::string>{"x:0"}));
  EXPECT_EQ(out[0].read_unix_ms, 6000);
  EXPECT_EQ(out[0].label_unix_ms, 6050);
  // Flush at the end of the stream: the clock at the flush.
  wall = 7000;
  small->Flush(&out);
  ASSERT_EQ(Labels(out), (std::vector<std::string>{"x:0", "y:0"}));
  EXPECT_EQ(out[1].read_unix_ms, 6040);
  EXPECT_EQ(out[1].label_unix_ms, 7000);
  // A label time is never below the read time, even if the clock was set
  // back (e.g. an NTP step) between the two.
  out.clear();
  wall = 1;
  j->Add(read_at(Imp(30000, "r3", "z"), 9000), &out);
  j->AdvanceWatermark(40000, &out);
  ASSERT_EQ(Labels(out), (std::vector<std::string>{"z:0"}));
  EXPECT_EQ(out[0].label_unix_ms, 9000);
  // Restored waiting impressions have no read time (the state does not
  // keep it): 0, unknown; the label time is still stamped.
  auto fresh = std::move(LabelJoiner::Create(o)).value();
  fresh->Add(read_at(Imp(50000, "r4", "w"), 9500), &out);
  auto restored = std::move(LabelJoiner::Create(o)).value();
  ASSERT_TRUE(restored->RestoreState(fresh->SaveState()).ok());
  out.clear();
  restored->Add(read_at(Click(50100, "r4", "w"), 9900), &out);
  ASSERT_EQ(Labels(out), (std::vector<std::string>{"w:1"}));
  EXPECT_EQ(out[0].read_unix_ms, 0);
  EXPECT_EQ(out[0].label_unix_ms, 9900);
}

}  // namespace
}  // namespace freshet
