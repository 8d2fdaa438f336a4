// Fuzz target: the raw public-format readers (worker/data/raw_readers.h):
// Taobao UserBehavior, UCI Online Retail (RFC 4180 CSV), TalkingData and
// Criteo (three layouts), plus the shared field parsers.
//
// Input byte 0: bits 0-1 pick the format, bit 2 the mode:
//   0: the rest is a file: OnFirstLine on its first line, then Parse on
//      every other line (parsers are pure, so this is fast); each record
//      must be in the documented range;
//   1: the rest is written to a file and read with the format's RawReader
//      (line splitting, CRLF, header checks, bad-record policy).
// Bit 3 set instead: the rest is a Criteo schema for ReadCriteoSchema.
// Every input also goes through SplitCsvLine and ParseDateTime.
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_util.h"
#include "worker/data/raw_readers.h"

namespace freshet {
namespace {

void Check(const TaobaoEvent& e) {
  FUZZ_CHECK(e.user_id >= 0 && e.item_id >= 0 && e.category_id >= 0);
  FUZZ_CHECK(static_cast<int>(e.behavior) <= 3);
  FUZZ_CHECK(e.time >= kMinPlausibleTime && e.time < kMaxPlausibleTime);
}
void Check(const RetailRow& r) {
  FUZZ_CHECK(!r.invoice.empty() && !r.stock_code.empty());
  FUZZ_CHECK(r.customer_id >= -1);
}
void Check(const TalkingDataClick& c) {
  FUZZ_CHECK(c.ip >= 0 && c.app >= 0 && c.device >= 0 && c.os >= 0 && c.channel >= 0);
  FUZZ_CHECK(c.is_attributed == 0 || c.is_attributed == 1);
}
void Check(const CriteoRow& r) { FUZZ_CHECK(r.label == 0 || r.label == 1); }

template <typename Parser>
void ParseLines(std::string_view text) {
  Parser parser;
  typename Parser::Record record;
  fuzz::Input in(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  bool is_header = false;
  if (!parser.OnFirstLine("fuzz.csv", in.Until("\n"), &is_header).ok()) return;
  if (!is_header) {
    // The first line is a record too (Taobao, headerless Criteo): parse it.
    fuzz::Input again(reinterpret_cast<const uint8_t*>(text.data()), text.size());
    in = again;
  }
  while (!in.done()) {
    const std::string_view line = in.Until("\n");
    if (parser.Parse(line, &record).ok()) Check(record);
  }
}

template <typename Reader>
void ReadFile(std::string_view text) {
  const std::string path = fuzz::WriteFile("input.csv", text.data(), text.size());
  BadRecordPolicy lenient;
  lenient.max_bad_records = 1000;
  auto reader = Reader::OpenFiles({path}, lenient);
  if (!reader.ok()) return;
  typename Reader::Record record;
  while (true) {
    StatusOr<bool> more = (*reader)->Next(&record);
    if (!more.ok() || !*more) break;
    Check(record);
  }
}

}  // namespace
}  // namespace freshet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace freshet;
  fuzz::Input in(data, size);
  const uint8_t mode = in.Byte();
  const std::string_view text = in.Rest();

  std::vector<std::string> fields;
  if (SplitCsvLine(text, &fields).ok()) FUZZ_CHECK(!fields.empty());
  int64_t t = 0;
  if (ParseDateTime(text, &t)) {
    // Years 1900..2199 (raw_readers.h).
    FUZZ_CHECK(t >= -2208988800LL && t < 7258118400LL);
  }

  if (mode & 8) {
    const std::string path = fuzz::WriteFile("input.schema", text.data(), text.size());
    auto names = ReadCriteoSchema(path);
    if (names.ok()) FUZZ_CHECK(names->size() == 40);
    return 0;
  }
  const bool file = (mode & 4) != 0;
  switch (mode & 3) {
    case 0:
      file ? ReadFile<TaobaoReader>(text) : ParseLines<TaobaoParser>(text);
      break;
    case 1:
      file ? ReadFile<RetailReader>(text) : ParseLines<RetailParser>(text);
      break;
    case 2:
      file ? ReadFile<TalkingDataReader>(text) : ParseLines<TalkingDataParser>(text);
      break;
    case 3:
      file ? ReadFile<CriteoReader>(text) : ParseLines<CriteoParser>(text);
      break;
  }
  return 0;
}
