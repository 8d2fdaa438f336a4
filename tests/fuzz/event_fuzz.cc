// Fuzz target: event lines and headers of `freshet-events v1` streams
// (worker/stream/event.h), the bytes a producer sends over a TCP or Unix
// socket or appends to a stream file.
//
// Input byte 0 picks the mode:
//   mode % 3 == 0: the rest is one event line of a stream with no impression
//                  columns;
//   mode % 3 == 1: the same with 5 impression columns;
//   mode % 3 == 2: the rest is a header line.
// A line ParseEventLine accepts must survive FormatEventLine ->
// ParseEventLine: the second parse succeeds with the same kind, time, ids and
// values, and formats to the same text (the oracle is printed with 6
// significant digits, so the formatted text, not the float, is compared). A
// header ParseEventHeader accepts must parse back to the same columns.
// Issue 18: a click with an item of byte 0x89 and 85 carriage returns broke
// this before tokens were defined (no control characters).
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_util.h"
#include "worker/stream/event.h"

namespace freshet {
namespace {

void FuzzLine(std::string_view line, size_t num_columns) {
  Event ev;
  if (!ParseEventLine(line, num_columns, &ev).ok()) return;
  FUZZ_CHECK(ev.oracle == -1.0f || (ev.oracle >= 0.0f && ev.oracle <= 1.0f));
  FUZZ_CHECK(ev.ms >= 0 && !ev.request.empty() && !ev.item.empty());
  FUZZ_CHECK(ev.values.size() == (ev.kind == EventKind::kImpression ? num_columns : 0));
  const std::string formatted = FormatEventLine(ev);
  Event again;
  Status st = ParseEventLine(formatted, num_columns, &again);
  FUZZ_CHECK(st.ok());
  FUZZ_CHECK(again.kind == ev.kind && again.ms == ev.ms);
  FUZZ_CHECK(again.request == ev.request && again.user == ev.user && again.item == ev.item);
  FUZZ_CHECK(again.values == ev.values);
  FUZZ_CHECK((again.oracle == -1.0f) == (ev.oracle == -1.0f));
  FUZZ_CHECK(FormatEventLine(again) == formatted);
}

void FuzzHeader(std::string_view line) {
  auto cols = ParseEventHeader(line);
  if (!cols.ok()) return;
  auto again = ParseEventHeader(FormatEventHeader(*cols));
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(*again == *cols);
}

}  // namespace
}  // namespace freshet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  freshet::fuzz::Input in(data, size);
  const uint8_t mode = in.Byte();
  switch (mode % 3) {
    case 0:
      freshet::FuzzLine(in.Rest(), 0);
      break;
    case 1:
      freshet::FuzzLine(in.Rest(), 5);
      break;
    default:
      freshet::FuzzHeader(in.Rest());
      break;
  }
  return 0;
}
