// Fuzz target: example files (worker/data/example_io.h) and the feature
// encoder that reads them (model/features.h).
//
// Input byte 0 picks the mode:
//   even: the rest is one line for ParseExampleLine with (byte 0 / 2) % 8
//         columns; a parsed example must be in range and survive
//         FormatExampleLine -> ParseExampleLine unchanged, and is then
//         encoded (numeric slots and dense transforms see hostile numbers);
//   odd:  the rest is a whole example file (header line first) read with
//         ExampleReader under a lenient bad-record policy, each example
//         encoded as above when the header has the encoder's columns.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "model/features.h"
#include "tests/fuzz/fuzz_util.h"
#include "worker/data/example_io.h"

namespace freshet {
namespace {

constexpr char kFeatures[] = R"pb(
  slots { name: "user" table: "emb" }
  slots { name: "query" table: "emb" multi_valued: true pooling: MEAN }
  slots {
    name: "price_bucket"
    column: "price"
    table: "emb"
    transform: BOUNDARIES
    boundaries: [ 1, 10, 100 ]
  }
  slots { name: "clicks_log2" column: "clicks" table: "emb" transform: LOG2_BUCKET }
  dense { name: "price_log" column: "price" transform: LOG1P }
  dense { name: "clicks" }
)pb";
const std::vector<std::string> kColumns = {"user", "query", "price", "clicks"};

const FeatureEncoder& Encoder() {
  static const FeatureEncoder* encoder = [] {
    proto::FeatureConfig config;
    FUZZ_CHECK(ParseTextConfig(kFeatures, "example_fuzz features", &config).ok());
    auto e = FeatureEncoder::Create(config, kColumns);
    FUZZ_CHECK(e.ok());
    return e->release();
  }();
  return *encoder;
}

void CheckInRange(const Example& ex, size_t num_columns) {
  FUZZ_CHECK(ex.label == 0.0f || ex.label == 1.0f);
  FUZZ_CHECK(ex.oracle == -1.0f || (ex.oracle >= 0.0f && ex.oracle <= 1.0f));
  FUZZ_CHECK(ex.values.size() == num_columns);
}

void Encode(const Example& ex) {
  EncodedBatch batch;
  Status st = Encoder().Encode(&ex, 1, &batch);
  if (!st.ok()) return;  // a bad numeric value: the caller's bad record
  for (float d : batch.dense) FUZZ_CHECK(std::isfinite(d));
}

void FuzzLine(std::string_view rest, size_t num_columns) {
  const std::string line(rest);
  Example ex;
  if (!ParseExampleLine(line, num_columns, &ex).ok()) return;
  CheckInRange(ex, num_columns);
  if (line.find_first_of("\r\n") == std::string::npos) {
    Example again;
    Status st = ParseExampleLine(FormatExampleLine(ex), num_columns, &again);
    FUZZ_CHECK(st.ok());
    FUZZ_CHECK(again.label == ex.label && again.time == ex.time && again.user == ex.user);
    FUZZ_CHECK(again.oracle == ex.oracle && again.values == ex.values);
  }
  if (num_columns == kColumns.size()) Encode(ex);
}

void FuzzFile(std::string_view rest) {
  const std::string path = fuzz::WriteFile("input.examples", rest.data(), rest.size());
  BadRecordPolicy lenient;
  lenient.max_bad_records = 1000;
  auto reader = ExampleReader::OpenFiles({path}, lenient);
  if (!reader.ok()) return;
  const size_t n = (*reader)->columns().size();
  const bool encodable = (*reader)->columns() == kColumns;
  Example ex;
  while (true) {
    StatusOr<bool> more = (*reader)->Next(&ex);
    if (!more.ok()) return;  // past the bad-record limit
    if (!*more) break;
    CheckInRange(ex, n);
    if (encodable) Encode(ex);
  }
  const ReadStats& s = (*reader)->stats();
  FUZZ_CHECK(s.examples + s.bad == s.lines);
}

}  // namespace
}  // namespace freshet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  freshet::fuzz::Input in(data, size);
  const uint8_t mode = in.Byte();
  if (mode % 2 == 0) {
    freshet::FuzzLine(in.Rest(), (mode / 2) % 8);
  } else {
    freshet::FuzzFile(in.Rest());
  }
  return 0;
}
