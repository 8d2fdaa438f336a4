#include "worker/stream/label_joiner.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <unordered_set>

#include "worker/stream/join_state.h"

namespace freshet {

std::string JoinCounters::ToString() const {
  char buf[320];
  std::snprintf(
      buf, sizeof(buf),
      "imp %lld joined %lld expired %lld evicted %lld dup %lld/%lld late %lld orphan %lld "
      "mismatched %lld ignored %lld",
      static_cast<long long>(impressions), static_cast<long long>(joined),
      static_cast<long long>(expired), static_cast<long long>(evicted),
      static_cast<long long>(duplicate), static_cast<long long>(dup_labels),
      static_cast<long long>(late), static_cast<long long>(orphan),
      static_cast<long long>(mismatched), static_cast<long long>(ignored));
  return buf;
}

std::string JoinCounters::ToJsonFields() const {
  auto f = [](const char* k, int64_t v) {
    return "\"" + std::string(k) + "\":" + std::to_string(v);
  };
  return f("impressions", impressions) + "," + f("reactions", reactions) + "," +
         f("joined", joined) + "," + f("expired", expired) + "," + f("evicted", evicted) + "," +
         f("duplicate", duplicate) + "," + f("dup_labels", dup_labels) + "," + f("late", late) +
         "," + f("orphan", orphan) + "," + f("mismatched", mismatched) + "," +
         f("ignored", ignored) + "," + f("early_joined", early_joined);
}

void JoinCounters::Add(const JoinCounters& o) {
  impressions += o.impressions;
  reactions += o.reactions;
  joined += o.joined;
  expired += o.expired;
  evicted += o.evicted;
  duplicate += o.duplicate;
  dup_labels += o.dup_labels;
  late += o.late;
  orphan += o.orphan;
  mismatched += o.mismatched;
  ignored += o.ignored;
  early_joined += o.early_joined;
}

LabelJoiner::LabelJoiner(const JoinOptions& options)
    : options_(options),
      hold_ms_(options.early_hold_ms < 0 ? options.window_ms : options.early_hold_ms) {
  for (EventKind k : options.label_kinds) is_label_[static_cast<int>(k)] = true;
}

StatusOr<std::unique_ptr<LabelJoiner>> LabelJoiner::Create(const JoinOptions& options) {
  if (options.window_ms < 0) return InvalidArgument("join: window must be >= 0");
  if (options.max_pending == 0) return InvalidArgument("join: max_pending must be > 0");
  if (options.label_kinds.empty()) return InvalidArgument("join: no label event kinds");
  for (EventKind k : options.label_kinds) {
    if (k == EventKind::kImpression) return InvalidArgument("join: 'imp' cannot be a label event");
  }
  std::unique_ptr<LabelJoiner> j(new LabelJoiner(options));
  j->index_.reserve(std::min<size_t>(options.max_pending, 1 << 16));
  return j;
}

bool LabelJoiner::Live(const Due& d, bool waiting) const {
  const Entry& e = slots_[d.slot];
  if (e.state == kFree || e.gen != d.gen || DueOf(e) != d.due) return false;
  return waiting == (e.state == kWaiting);
}

uint32_t LabelJoiner::AddWaiting(int64_t imp_ms, int64_t read_unix_ms, int32_t partition,
                                 float oracle, std::string data, uint32_t key_len) {
  const uint32_t slot = NewSlot();
  Entry& e = slots_[slot];
  e.imp_ms = imp_ms;
  e.read_unix_ms = read_unix_ms;
  e.partition = partition;
  e.oracle = oracle;
  e.key_len = key_len;
  e.data = std::move(data);
  e.state = kWaiting;
  ++waiting_;
  index_.emplace(Key(e), slot);
  waiting_heap_.push({DueOf(e), slot, e.gen});
  return slot;
}

uint32_t LabelJoiner::NewSlot() {
  if (!free_.empty()) {
    const uint32_t s = free_.back();
    free_.pop_back();
    return s;
  }
  slots_.emplace_back();
  return static_cast<uint32_t>(slots_.size() - 1);
}

void LabelJoiner::Free(uint32_t slot) {
  Entry& e = slots_[slot];
  if (e.state == kWaiting) --waiting_;
  index_.erase(Key(e));
  e.state = kFree;
  ++e.gen;
  e.data.clear();
  e.data.shrink_to_fit();
  e.key_len = 0;
  free_.push_back(slot);
}

int64_t LabelJoiner::NowUnixMs() const {
  if (options_.now_unix_ms) return options_.now_unix_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void LabelJoiner::Emit(Entry* e, float label, int64_t label_unix_ms, std::vector<Example>* out) {
  out->emplace_back();
  Example& ex = out->back();
  ex.label = label;
  ex.time = e->imp_ms / 1000;
  ex.oracle = e->oracle;
  ex.read_unix_ms = e->read_unix_ms;
  ex.label_unix_ms = std::max(label_unix_ms, e->read_unix_ms);
  // data: "request\titem\tuser\tv_1\t...\tv_n"
  std::string_view rest(e->data);
  rest.remove_prefix(std::min(rest.size(), static_cast<size_t>(e->key_len) + 1));
  size_t tab = rest.find('\t');
  ex.user.assign(rest.substr(0, tab));
  while (tab != std::string_view::npos) {
    rest.remove_prefix(tab + 1);
    tab = rest.find('\t');
    ex.values.emplace_back(rest.substr(0, tab));
  }
}

void LabelJoiner::ToMarker(uint32_t slot, State state) {
  Entry& e = slots_[slot];
  if (e.state == kWaiting) --waiting_;
  // Keep only the key; the index views into data, so re-insert after the
  // buffer shrinks.
  index_.erase(Key(e));
  e.data.resize(e.key_len);
  e.data.shrink_to_fit();
  index_.emplace(Key(e), slot);
  e.state = state;
  marker_heap_.push({DueOf(e), slot, e.gen});
}

void LabelJoiner::MakeRoom(std::vector<Example>* out) {
  int64_t now = -1;  // read once, at the first eviction
  while (index_.size() >= options_.max_pending) {
    while (!marker_heap_.empty() && !Live(marker_heap_.top(), false)) marker_heap_.pop();
    if (!marker_heap_.empty()) {
      const uint32_t slot = marker_heap_.top().slot;
      marker_heap_.pop();
      Free(slot);
      continue;
    }
    while (!waiting_heap_.empty() && !Live(waiting_heap_.top(), true)) waiting_heap_.pop();
    CHECK(!waiting_heap_.empty()) << "join buffer full without entries";
    const uint32_t slot = waiting_heap_.top().slot;
    waiting_heap_.pop();
    if (now < 0) now = NowUnixMs();
    Emit(&slots_[slot], 0, now, out);
    ++counters_.evicted;
    Free(slot);
  }
}

void LabelJoiner::Add(const Event& ev, std::vector<Example>* out) {
  used_ = true;
  key_.assign(ev.request);
  key_ += '\t';
  key_ += ev.item;
  if (ev.kind == EventKind::kImpression) {
    ++counters_.impressions;
    if (index_.count(key_)) {
      ++counters_.duplicate;
      return;
    }
    const int64_t end = ev.ms + options_.window_ms;
    // A label event that came first?
    bool joins_early = false;
    auto early = early_.find(key_);
    if (early != early_.end()) {
      const Early r = early->second;
      early_.erase(early);
      if (!r.user.empty() && !ev.user.empty() && r.user != ev.user) {
        ++counters_.mismatched;
      } else if (r.ms < ev.ms || r.ms > end) {
        ++counters_.late;
      } else {
        joins_early = true;
      }
    }
    MakeRoom(out);
    std::string data;
    size_t bytes = key_.size() + 1 + ev.user.size();
    for (const auto& v : ev.values) bytes += 1 + v.size();
    data.reserve(bytes);
    data = key_;
    data += '\t';
    data += ev.user;
    for (const auto& v : ev.values) {
      data += '\t';
      data += v;
    }
    const uint32_t slot = AddWaiting(ev.ms, ev.read_unix_ms, ev.partition, ev.oracle,
                                     std::move(data), static_cast<uint32_t>(key_.size()));
    if (joins_early) {
      // The label is known now that its impression came.
      Emit(&slots_[slot], 1, ev.read_unix_ms, out);
      ++counters_.joined;
      ++counters_.early_joined;
      ToMarker(slot, kPositive);
      return;
    }
    if (watermark_ > end) AdvanceWatermark(watermark_, out);  // already closed
    return;
  }
  ++counters_.reactions;
  if (!is_label_[static_cast<int>(ev.kind)]) {
    ++counters_.ignored;
    return;
  }
  auto it = index_.find(key_);
  if (it == index_.end()) {
    if (ev.ms + hold_ms_ < watermark_) {
      ++counters_.orphan;  // its impression would have come by now
      return;
    }
    auto [er, inserted] = early_.try_emplace(key_, Early{ev.ms, ev.partition, ev.user});
    if (!inserted) {
      ++counters_.dup_labels;
      return;
    }
    early_order_.emplace_back(ev.ms + hold_ms_, key_);
    while (early_.size() > options_.max_early) {
      auto front = early_.find(early_order_.front().second);
      if (front != early_.end()) {
        early_.erase(front);
        ++counters_.orphan;
      }
      early_order_.pop_front();
    }
    return;
  }
  Entry& e = slots_[it->second];
  const bool in_window = ev.ms >= e.imp_ms && ev.ms <= e.imp_ms + options_.window_ms;
  switch (e.state) {
    case kWaiting: {
      std::string_view rest(e.data);
      rest.remove_prefix(e.key_len + 1);
      const std::string_view user = rest.substr(0, rest.find('\t'));
      if (!user.empty() && !ev.user.empty() && user != ev.user) {
        ++counters_.mismatched;
      } else if (!in_window) {
        ++counters_.late;
      } else {
        Emit(&e, 1, ev.read_unix_ms, out);
        ++counters_.joined;
        ToMarker(it->second, kPositive);
      }
      break;
    }
    case kPositive:
      ++(in_window ? counters_.dup_labels : counters_.late);
      break;
    default:
      ++counters_.late;
      break;
  }
}

void LabelJoiner::ExpireEarly(bool all) {
  while (!early_order_.empty() && (all || early_order_.front().first < watermark_)) {
    auto it = early_.find(early_order_.front().second);
    // Stale when the reaction joined, or the key was re-added later.
    if (it != early_.end() && it->second.ms + hold_ms_ == early_order_.front().first) {
      early_.erase(it);
      ++counters_.orphan;
    }
    early_order_.pop_front();
  }
}

void LabelJoiner::AdvanceWatermark(int64_t watermark_ms, std::vector<Example>* out) {
  if (watermark_ms < watermark_) return;
  watermark_ = watermark_ms;
  int64_t now = -1;  // read once, at the first window that closed
  while (!waiting_heap_.empty() && waiting_heap_.top().due < watermark_) {
    const Due d = waiting_heap_.top();
    waiting_heap_.pop();
    if (!Live(d, true)) continue;
    if (now < 0) now = NowUnixMs();
    Emit(&slots_[d.slot], 0, now, out);
    ++counters_.expired;
    ToMarker(d.slot, kNegative);
  }
  while (!marker_heap_.empty() && marker_heap_.top().due < watermark_) {
    const Due d = marker_heap_.top();
    marker_heap_.pop();
    if (Live(d, false)) Free(d.slot);
  }
  ExpireEarly(false);
}

void LabelJoiner::Flush(std::vector<Example>* out) {
  int64_t now = -1;
  while (!waiting_heap_.empty()) {
    const Due d = waiting_heap_.top();
    waiting_heap_.pop();
    if (!Live(d, true)) continue;
    if (now < 0) now = NowUnixMs();
    Emit(&slots_[d.slot], 0, now, out);
    ++counters_.expired;
    Free(d.slot);
  }
  ExpireEarly(true);
  early_.clear();
  while (!marker_heap_.empty()) {
    if (Live(marker_heap_.top(), false)) Free(marker_heap_.top().slot);
    marker_heap_.pop();
  }
  CHECK_EQ(waiting_, 0u);
}

JoinerState LabelJoiner::SaveState() const {
  JoinerState st;
  st.watermark = watermark_;
  st.counters = counters_;
  st.entries.reserve(index_.size());
  for (const Entry& e : slots_) {
    if (e.state == kFree) continue;
    JoinerState::Entry out;
    out.partition = e.partition;
    out.imp_ms = e.imp_ms;
    out.key.assign(Key(e));
    if (e.state == kWaiting) {
      out.kind = JoinerState::Kind::kWaiting;
      out.oracle = e.oracle;
      // data: "request\titem\tuser\tv_1\t...\tv_n"
      std::string_view rest(e.data);
      rest.remove_prefix(std::min(rest.size(), static_cast<size_t>(e.key_len) + 1));
      size_t tab = rest.find('\t');
      out.user.assign(rest.substr(0, tab));
      while (tab != std::string_view::npos) {
        rest.remove_prefix(tab + 1);
        tab = rest.find('\t');
        out.values.emplace_back(rest.substr(0, tab));
      }
    } else {
      out.kind = e.state == kPositive ? JoinerState::Kind::kPositive : JoinerState::Kind::kNegative;
    }
    st.entries.push_back(std::move(out));
  }
  // Early reactions in arrival order: the live items of early_order_ (an
  // item is stale when its reaction joined or its key came again later).
  std::unordered_set<std::string_view> saved;
  for (const auto& [expiry, key] : early_order_) {
    auto it = early_.find(key);
    if (it == early_.end() || it->second.ms + hold_ms_ != expiry) continue;
    if (!saved.insert(key).second) continue;
    st.early.push_back({it->second.partition, it->second.ms, key, it->second.user});
  }
  return st;
}

Status LabelJoiner::RestoreState(const JoinerState& state) {
  if (used_ || watermark_ != INT64_MIN) {
    return FailedPrecondition("join: a state can only be restored into a new joiner");
  }
  used_ = true;
  counters_ = state.counters;
  watermark_ = state.watermark;
  for (const auto& e : state.entries) {
    if (index_.count(e.key)) {
      // Two old workers' partitions held the same (request, item).
      if (e.kind == JoinerState::Kind::kWaiting) ++counters_.duplicate;
      continue;
    }
    if (e.kind == JoinerState::Kind::kWaiting) {
      std::string data = e.key;
      data += '\t';
      data += e.user;
      for (const auto& v : e.values) {
        data += '\t';
        data += v;
      }
      // The impression's read time is not in the saved state: unknown.
      AddWaiting(e.imp_ms, /*read_unix_ms=*/0, e.partition, e.oracle, std::move(data),
                 static_cast<uint32_t>(e.key.size()));
      continue;
    }
    const uint32_t slot = NewSlot();
    Entry& m = slots_[slot];
    m.imp_ms = e.imp_ms;
    m.partition = e.partition;
    m.key_len = static_cast<uint32_t>(e.key.size());
    m.data = e.key;
    m.state = e.kind == JoinerState::Kind::kPositive ? kPositive : kNegative;
    index_.emplace(Key(m), slot);
    marker_heap_.push({DueOf(m), slot, m.gen});
  }
  for (const auto& r : state.early) {
    if (!early_.try_emplace(r.key, Early{r.ms, r.partition, r.user}).second) continue;
    early_order_.emplace_back(r.ms + hold_ms_, r.key);
  }
  return Status::OK();
}

}  // namespace freshet
