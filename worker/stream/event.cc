#include "worker/stream/event.h"

#include <cstdio>

#include "worker/data/internal/parse_util.h"

namespace freshet {
namespace {

constexpr std::string_view kHeaderTag = "#freshet-events v1";
constexpr const char* kNames[kNumEventKinds] = {"imp", "click", "cart", "fav", "buy"};

std::string Quote(std::string_view s) {
  std::string q = "'";
  q.append(s.substr(0, 40));
  if (s.size() > 40) q += "...";
  return q + "'";
}

// The first ASCII control character (0x00-0x1f, 0x7f) of `s`, or npos.
size_t FindControl(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) return i;
  }
  return std::string_view::npos;
}

// InvalidArgument "<what>: control character 0x0d at byte 3 (...)" for the
// control character at token[at].
Status ControlError(std::string_view token, size_t at, const std::string& what) {
  char hex[8];
  std::snprintf(hex, sizeof(hex), "0x%02x", static_cast<unsigned char>(token[at]));
  return InvalidArgument(what + ": control character " + hex + " at byte " +
                         std::to_string(at + 1) + " (tokens hold no control characters)");
}

}  // namespace

const char* EventKindName(EventKind kind) { return kNames[static_cast<int>(kind)]; }

StatusOr<EventKind> ParseEventKind(std::string_view name) {
  for (int k = 0; k < kNumEventKinds; ++k) {
    if (name == kNames[k]) return static_cast<EventKind>(k);
  }
  return InvalidArgument("unknown event kind " + Quote(name) +
                         " (expected imp, click, cart, fav or buy)");
}

std::string FormatEventHeader(const std::vector<std::string>& columns) {
  std::string out(kHeaderTag);
  for (const auto& c : columns) {
    out += '\t';
    out += c;
  }
  return out;
}

StatusOr<std::vector<std::string>> ParseEventHeader(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.substr(0, 16) != kHeaderTag.substr(0, 16)) {
    return InvalidArgument("not a freshet-events header: " + Quote(line));
  }
  std::vector<std::string_view> f;
  internal::SplitView(line, '\t', &f);
  if (f[0] != kHeaderTag) {
    return InvalidArgument("unsupported stream version " + Quote(f[0]) + " (expected " +
                           std::string(kHeaderTag) + ")");
  }
  std::vector<std::string> cols;
  for (size_t i = 1; i < f.size(); ++i) {
    if (f[i].empty()) return InvalidArgument("header column " + std::to_string(i) + " is empty");
    if (const size_t at = FindControl(f[i]); at != std::string_view::npos) {
      return ControlError(f[i], at, "header column " + std::to_string(i));
    }
    for (const auto& c : cols) {
      if (c == f[i]) return InvalidArgument("header: duplicate column " + Quote(f[i]));
    }
    cols.emplace_back(f[i]);
  }
  return cols;
}

void AppendEventLine(const Event& ev, std::string* out) {
  out->append(EventKindName(ev.kind));
  out->push_back('\t');
  internal::AppendInt(ev.ms, out);
  out->push_back('\t');
  out->append(ev.request);
  out->push_back('\t');
  out->append(ev.user);
  out->push_back('\t');
  out->append(ev.item);
  if (ev.kind == EventKind::kImpression) {
    out->push_back('\t');
    if (ev.oracle >= 0) {
      char buf[32];
      const int n = std::snprintf(buf, sizeof(buf), "%.6g", ev.oracle);
      out->append(buf, n);
    }
    for (const auto& v : ev.values) {
      out->push_back('\t');
      out->append(v);
    }
  }
  out->push_back('\n');
}

std::string FormatEventLine(const Event& ev) {
  std::string s;
  AppendEventLine(ev, &s);
  s.pop_back();
  return s;
}

Status ParseEventLine(std::string_view line, size_t num_columns, Event* ev) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // Split by hand: no vector of views per line on the hot path.
  size_t pos = 0;
  int field = 0;
  auto next = [&](std::string_view* out) -> bool {
    if (pos > line.size()) return false;
    const size_t tab = line.find('\t', pos);
    const size_t end = tab == std::string_view::npos ? line.size() : tab;
    *out = line.substr(pos, end - pos);
    pos = end + 1;
    ++field;
    return true;
  };
  std::string_view kind, ms, request, user, item;
  if (!next(&kind) || !next(&ms) || !next(&request) || !next(&user) || !next(&item)) {
    return InvalidArgument("has " + std::to_string(field) +
                           " fields, expected at least 5 (kind, ms, request, user, item)");
  }
  auto k = ParseEventKind(kind);
  if (!k.ok()) return InvalidArgument("field 1 (kind): " + k.status().message());
  ev->kind = *k;
  int64_t t;
  if (!internal::ParseInt64(ms, &t) || t < 0) {
    return InvalidArgument("field 2 (ms): " + Quote(ms) + " is not an integer >= 0");
  }
  ev->ms = t;
  if (request.empty()) return InvalidArgument("field 3 (request) is empty");
  if (item.empty()) return InvalidArgument("field 5 (item) is empty");
  // No allocation unless the line is bad: this runs per event.
  if (size_t at = FindControl(request); at != std::string_view::npos) {
    return ControlError(request, at, "field 3 (request)");
  }
  if (size_t at = FindControl(user); at != std::string_view::npos) {
    return ControlError(user, at, "field 4 (user)");
  }
  if (size_t at = FindControl(item); at != std::string_view::npos) {
    return ControlError(item, at, "field 5 (item)");
  }
  ev->request.assign(request);
  ev->user.assign(user);
  ev->item.assign(item);
  ev->oracle = -1;
  if (ev->kind != EventKind::kImpression) {
    if (pos <= line.size()) {
      return InvalidArgument(std::string("a ") + EventKindName(ev->kind) +
                             " event has 5 fields, this one has more");
    }
    ev->values.clear();
    return Status::OK();
  }
  std::string_view oracle;
  if (!next(&oracle)) return InvalidArgument("an imp event has no field 6 (oracle)");
  if (!oracle.empty()) {
    double o;
    if (!internal::ParseDouble(oracle, &o) || o < 0 || o > 1) {
      return InvalidArgument("field 6 (oracle): " + Quote(oracle) + " is not a number in [0, 1]");
    }
    ev->oracle = static_cast<float>(o);
  }
  ev->values.resize(num_columns);
  for (size_t c = 0; c < num_columns; ++c) {
    std::string_view v;
    if (!next(&v)) {
      return InvalidArgument("an imp event has " + std::to_string(field) + " fields, expected " +
                             std::to_string(6 + num_columns) + " (6 + " +
                             std::to_string(num_columns) + " columns)");
    }
    if (size_t at = FindControl(v); at != std::string_view::npos) {
      return ControlError(
          v, at, "field " + std::to_string(7 + c) + " (column " + std::to_string(c + 1) + ")");
    }
    ev->values[c].assign(v);
  }
  if (pos <= line.size()) {
    return InvalidArgument("an imp event has more than the expected " +
                           std::to_string(6 + num_columns) + " fields");
  }
  return Status::OK();
}

}  // namespace freshet
