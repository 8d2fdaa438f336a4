// taobao-conversion (see worker/data/task.h).
#include <algorithm>
#include <unordered_map>
#include <vector>

#include "worker/data/internal/parse_util.h"
#include "worker/data/internal/task_util.h"
#include "worker/data/raw_readers.h"

namespace freshet {
namespace internal {
namespace {

constexpr int64_t kWindow = 86400;  // label window after the pv, seconds
constexpr int kHistory = 10;        // recent items / categories

struct Event {
  int64_t user;
  int64_t item;
  int64_t category;
  int64_t time;
  TaobaoBehavior behavior;
  uint8_t file;  // index of the input file

  bool SameRow(const Event& o) const {
    return user == o.user && item == o.item && category == o.category && time == o.time &&
           behavior == o.behavior;
  }
};

struct UserItem {
  int64_t user;
  int64_t item;
  bool operator==(const UserItem& o) const { return user == o.user && item == o.item; }
};

struct UserItemHash {
  size_t operator()(const UserItem& k) const {
    uint64_t h = static_cast<uint64_t>(k.user) * 0x9e3779b97f4a7c15ULL;
    h ^= static_cast<uint64_t>(k.item) + 0x7f4a7c159e3779b9ULL + (h << 6) + (h >> 2);
    return static_cast<size_t>(h);
  }
};

// A user's events so far: the count and the last kHistory (item, category).
struct UserState {
  int64_t count = 0;
  int64_t items[kHistory] = {};
  int64_t categories[kHistory] = {};
  void Add(const Event& e) {
    const int slot = static_cast<int>(count % kHistory);
    items[slot] = e.item;
    categories[slot] = e.category;
    ++count;
  }
  // Space-separated, most recent first.
  void Recent(const int64_t* values, std::string* out) const {
    out->clear();
    const int64_t n = std::min<int64_t>(count, kHistory);
    for (int64_t i = 0; i < n; ++i) {
      if (i > 0) out->push_back(' ');
      AppendInt(values[(count - 1 - i) % kHistory], out);
    }
  }
};

// Drops, within each run of equal times, the rows of a later file identical
// to a not yet matched row of an earlier file. Returns how many it dropped.
int64_t DropCrossFileDuplicates(std::vector<Event>* events) {
  std::vector<Event> out;
  out.reserve(events->size());
  std::vector<char> matched;
  int64_t dropped = 0;
  const std::vector<Event>& ev = *events;
  for (size_t a = 0; a < ev.size();) {
    size_t b = a;
    bool several_files = false;
    while (b < ev.size() && ev[b].time == ev[a].time) {
      several_files |= ev[b].file != ev[a].file;
      ++b;
    }
    if (!several_files) {
      out.insert(out.end(), ev.begin() + a, ev.begin() + b);
    } else {
      matched.assign(b - a, 0);
      for (size_t i = a; i < b; ++i) {
        bool duplicate = false;
        for (size_t j = a; j < b && !duplicate; ++j) {
          if (ev[j].file < ev[i].file && !matched[j - a] && ev[j].SameRow(ev[i])) {
            matched[j - a] = 1;
            duplicate = true;
          }
        }
        if (duplicate) {
          ++dropped;
        } else {
          out.push_back(ev[i]);
        }
      }
    }
    a = b;
  }
  events->swap(out);
  return dropped;
}

}  // namespace

StatusOr<TaskOutput> BuildTaobaoConversion(const std::vector<std::string>& inputs,
                                           const std::string& out_dir,
                                           const BadRecordPolicy& policy) {
  TaskInfo info;
  info.Add("task", "taobao-conversion");
  TaskOutput output;

  // Read every file (each under its own bad-record account).
  std::vector<Event> events;
  for (size_t f = 0; f < inputs.size(); ++f) {
    FRESHET_ASSIGN_OR_RETURN(auto reader, TaobaoReader::OpenFiles({inputs[f]}, policy));
    TaobaoEvent e;
    while (true) {
      FRESHET_ASSIGN_OR_RETURN(bool more, reader->Next(&e));
      if (!more) break;
      events.push_back(
          {e.user_id, e.item_id, e.category_id, e.time, e.behavior, static_cast<uint8_t>(f)});
    }
    info.AddReadStats(reader->file_stats(), &output.bad_records);
  }
  const int64_t rows = static_cast<int64_t>(events.size());
  std::stable_sort(events.begin(), events.end(),
                   [](const Event& a, const Event& b) { return a.time < b.time; });
  const int64_t duplicates = DropCrossFileDuplicates(&events);
  info.Add("combine",
           "union of the input files: stable sort by time (file order on ties), then rows of a "
           "later file identical to a row of an earlier file at the same second are dropped");
  info.Add("rows_read", rows);
  info.Add("cross_file_duplicates_dropped", duplicates);
  info.Add("events", static_cast<int64_t>(events.size()));

  // Conversion (cart, fav or buy) and buy times per (user, item), ascending;
  // pv times for the split.
  std::unordered_map<UserItem, std::vector<int64_t>, UserItemHash> conversions, buys;
  std::vector<int64_t> pv_times;
  for (const Event& e : events) {
    if (e.behavior == TaobaoBehavior::kPv) {
      pv_times.push_back(e.time);
    } else {
      conversions[{e.user, e.item}].push_back(e.time);
      if (e.behavior == TaobaoBehavior::kBuy) buys[{e.user, e.item}].push_back(e.time);
    }
  }
  // Whether `times` (ascending) has one in [t, t + kWindow].
  auto within_window = [](const auto& map, const UserItem& key, int64_t t) {
    auto it = map.find(key);
    if (it == map.end()) return false;
    auto at = std::lower_bound(it->second.begin(), it->second.end(), t);
    return at != it->second.end() && *at <= t + kWindow;
  };
  const int64_t split = TimeSplitBoundary(pv_times, 0.8);
  info.Add("split", "time split at 80% of pv examples: holdout = time >= " + FormatTime(split));

  const std::vector<std::string> columns = TaskColumnNames("taobao-conversion");
  FRESHET_ASSIGN_OR_RETURN(auto writer, SplitWriter::Open(out_dir, columns));
  std::unordered_map<int64_t, UserState> users;
  users.reserve(events.size() / 2);
  const UserState empty_state;
  Example ex;
  ex.values.resize(columns.size());
  for (size_t a = 0; a < events.size();) {
    size_t b = a;
    while (b < events.size() && events[b].time == events[a].time) ++b;
    // Examples of this second see only the events of earlier seconds.
    for (size_t i = a; i < b; ++i) {
      const Event& e = events[i];
      if (e.behavior != TaobaoBehavior::kPv) continue;
      const bool label = within_window(conversions, UserItem{e.user, e.item}, e.time);
      const bool buy = within_window(buys, UserItem{e.user, e.item}, e.time);
      auto u = users.find(e.user);
      const UserState& state = u == users.end() ? empty_state : u->second;
      ex.label = label ? 1.0f : 0.0f;
      ex.time = e.time;
      ex.user = std::to_string(e.user);
      ex.values[0] = ex.user;
      ex.values[1] = std::to_string(e.item);
      ex.values[2] = std::to_string(e.category);
      ex.values[3] = std::to_string(ToCivil(e.time).hour);
      state.Recent(state.items, &ex.values[4]);
      state.Recent(state.categories, &ex.values[5]);
      ex.values[6] = std::to_string(Log2Bucket(state.count));
      ex.values[7] = buy ? "1" : "0";  // label:buy
      FRESHET_RETURN_IF_ERROR(writer->Write(ex, e.time >= split));
    }
    for (size_t i = a; i < b; ++i) users[events[i].user].Add(events[i]);
    a = b;
  }
  FRESHET_RETURN_IF_ERROR(writer->Close(&output));
  info.Add("users", static_cast<int64_t>(users.size()));
  info.AddOutput(output);
  FRESHET_RETURN_IF_ERROR(info.Write(out_dir));
  return output;
}

}  // namespace internal
}  // namespace freshet
