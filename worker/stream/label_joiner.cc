#include "worker/stream/label_joiner.h"

#include <glog/logging.h>

namespace freshet {

std::string JoinCounters::ToString() const {
  char buf[320];
  std::snprintf(buf, sizeof(buf),
                "imp %lld joined %lld expired %lld evicted %lld dup %lld/%lld late %lld orphan %lld "
                "mismatched %lld ignored %lld",
                static_cast<long long>(impressions), static_cast<long long>(joined),
                static_cast<long long>(expired), static_cast<long long>(evicted),
                static_cast<long long>(duplicate), static_cast<long long>(dup_labels),
                static_cast<long long>(late),
                static_cast<long long>(orphan), static_cast<long long>(mismatched),
                static_cast<long long>(ignored));
  return buf;
}

std::string JoinCounters::ToJsonFields() const {
  auto f = [](const char* k, int64_t v) { return "\"" + std::string(k) + "\":" + std::to_string(v); };
  return f("impressions", impressions) + "," + f("reactions", reactions) + "," +
         f("joined", joined) + "," + f("expired", expired) + "," + f("evicted", evicted) + "," +
         f("duplicate", duplicate) + "," + f("dup_labels", dup_labels) + "," + f("late", late) + "," + f("orphan", orphan) + "," +
         f("mismatched", mismatched) + "," + f("ignored", ignored) + "," +
         f("early_joined", early_joined);
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
    : options_(options), hold_ms_(options.early_hold_ms < 0 ? options.window_ms : options.early_hold_ms) {
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
  if (e.state == kFree || e.gen != d.gen || e.due != d.due) return false;
  return waiting == (e.state == kWaiting);
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

void LabelJoiner::Emit(Entry* e, float label, std::vector<Example>* out) {
  out->emplace_back();
  Example& ex = out->back();
  ex.label = label;
  ex.time = e->imp_ms / 1000;
  ex.oracle = e->oracle;
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
  e.due = e.imp_ms + options_.window_ms + hold_ms_;
  marker_heap_.push({e.due, slot, e.gen});
}

void LabelJoiner::MakeRoom(std::vector<Example>* out) {
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
    Emit(&slots_[slot], 0, out);
    ++counters_.evicted;
    Free(slot);
  }
}

void LabelJoiner::Add(const Event& ev, std::vector<Example>* out) {
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
    auto early = early_.find(key_);
    if (early != early_.end()) {
      const Early r = early->second;
      early_.erase(early);
      if (!r.user.empty() && !ev.user.empty() && r.user != ev.user) {
        ++counters_.mismatched;
      } else if (r.ms < ev.ms || r.ms > end) {
        ++counters_.late;
      } else {
        MakeRoom(out);
        const uint32_t slot = NewSlot();
        Entry& e = slots_[slot];
        e.imp_ms = ev.ms;
        e.oracle = ev.oracle;
        e.key_len = static_cast<uint32_t>(key_.size());
        e.data = key_;
        e.data += '\t';
        e.data += ev.user;
        for (const auto& v : ev.values) {
          e.data += '\t';
          e.data += v;
        }
        e.state = kWaiting;
        ++waiting_;
        index_.emplace(Key(e), slot);
        Emit(&e, 1, out);
        ++counters_.joined;
        ++counters_.early_joined;
        ToMarker(slot, kPositive);
        return;
      }
    }
    MakeRoom(out);
    const uint32_t slot = NewSlot();
    Entry& e = slots_[slot];
    e.imp_ms = ev.ms;
    e.oracle = ev.oracle;
    e.key_len = static_cast<uint32_t>(key_.size());
    size_t bytes = key_.size() + 1 + ev.user.size();
    for (const auto& v : ev.values) bytes += 1 + v.size();
    e.data.reserve(bytes);
    e.data = key_;
    e.data += '\t';
    e.data += ev.user;
    for (const auto& v : ev.values) {
      e.data += '\t';
      e.data += v;
    }
    e.state = kWaiting;
    e.due = end;
    ++waiting_;
    index_.emplace(Key(e), slot);
    waiting_heap_.push({e.due, slot, e.gen});
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
    auto [er, inserted] = early_.try_emplace(key_, Early{ev.ms, ev.user});
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
        Emit(&e, 1, out);
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
  while (!waiting_heap_.empty() && waiting_heap_.top().due < watermark_) {
    const Due d = waiting_heap_.top();
    waiting_heap_.pop();
    if (!Live(d, true)) continue;
    Emit(&slots_[d.slot], 0, out);
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
  while (!waiting_heap_.empty()) {
    const Due d = waiting_heap_.top();
    waiting_heap_.pop();
    if (!Live(d, true)) continue;
    Emit(&slots_[d.slot], 0, out);
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

}  // namespace freshet
