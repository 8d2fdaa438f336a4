// Behavior events of a `freshet-events v1` stream (docs/EVENT_FORMAT.md):
// impressions with their feature values, and the reactions to them (click,
// cart, fav, buy). Parsing and formatting of event lines.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace freshet {

enum class EventKind : uint8_t { kImpression = 0, kClick, kCart, kFav, kBuy };
constexpr int kNumEventKinds = 5;

// "imp", "click", "cart", "fav", "buy".
const char* EventKindName(EventKind kind);
// The inverse of EventKindName; InvalidArgument naming the token otherwise.
StatusOr<EventKind> ParseEventKind(std::string_view name);

struct Event {
  EventKind kind = EventKind::kImpression;
  int64_t ms = 0;       // event time, unix milliseconds
  std::string request;  // (request, item) identifies an impression
  std::string user;     // may be empty
  std::string item;
  float oracle = -1;                // impressions: true P(click), -1 unknown
  std::vector<std::string> values;  // impressions: one per header column
  // Not part of the line: the stream partition it was read from (set by
  // the reader; the label joiner keeps it with waiting entries so that a
  // checkpoint can hand them to the worker that reads that partition).
  int32_t partition = 0;
  // Not part of the line either: the wall time (unix ms) the reader read it
  // (SourceLine::read_unix_ms); 0 unknown. The label joiner stamps examples
  // with it (Example::read_unix_ms / label_unix_ms).
  int64_t read_unix_ms = 0;
};

// The first line of every file and socket connection, without the newline:
// "#freshet-events v1\tcol_1\t...". REQUIRES: no tabs/newlines in columns.
std::string FormatEventHeader(const std::vector<std::string>& columns);
// Parses a header line (trailing '\r' allowed); InvalidArgument naming what
// is wrong (not a header, unknown version, empty or duplicate column, a
// column with a control character).
StatusOr<std::vector<std::string>> ParseEventHeader(std::string_view line);

// One event line without the newline. Reactions have 5 fields; impressions
// 6 + values.size(). REQUIRES: no tabs or newlines in tokens or values.
std::string FormatEventLine(const Event& ev);
// Appends FormatEventLine(ev) and '\n' to *out (no temporary string).
void AppendEventLine(const Event& ev, std::string* out);

// Parses one event line of a stream with `num_columns` impression columns
// into *ev (its buffers are reused). InvalidArgument naming the field
// ("field 2 (ms): 'x' is not an integer >= 0") on failure; callers prefix
// file:line and count the line as a bad record.
//
// Valid tokens (docs/EVENT_FORMAT.md): request and item are non-empty, user
// may be empty; request, user, item and every column value hold no ASCII
// control character (bytes 0x00-0x1f and 0x7f; a tab ends the field). One
// trailing '\r' (a CRLF line end) is stripped first; any other CR is a
// control character, so the line is rejected. Bytes >= 0x80 are taken as
// they are (UTF-8 is not validated). Every line this accepts survives
// FormatEventLine -> ParseEventLine unchanged (tests/fuzz/event_fuzz.cc).
Status ParseEventLine(std::string_view line, size_t num_columns, Event* ev);

}  // namespace freshet
