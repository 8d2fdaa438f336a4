#include "worker/data/raw_readers.h"

#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "worker/data/internal/line_source.h"
#include "worker/data/internal/parse_util.h"

namespace freshet {
namespace {

using internal::ParseInt64;
using internal::ParseIntegral;

std::string Quote(std::string_view s) {
  constexpr size_t kMax = 40;
  std::string out = "\"";
  out.append(s.substr(0, kMax));
  if (s.size() > kMax) out += "...";
  return out + "\"";
}

std::string_view StripBom(std::string_view line) {
  if (line.size() >= 3 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
  return line;
}

Status CheckHeader(const std::string& path, std::string_view line, std::string_view want,
                   const char* format) {
  if (StripBom(line) == want) return Status::OK();
  return InvalidArgument(path + ":1: not a " + format + " file: expected the header \"" +
                         std::string(want) + "\", got " + Quote(line));
}

bool ParseId(std::string_view s, int64_t* out) { return ParseInt64(s, out) && *out >= 0; }

// Reads a run of [min_digits, max_digits] decimal digits at s[*pos].
bool Digits(std::string_view s, size_t* pos, int min_digits, int max_digits, int64_t* v) {
  int n = 0;
  *v = 0;
  while (*pos < s.size() && n < max_digits && s[*pos] >= '0' && s[*pos] <= '9') {
    *v = *v * 10 + (s[*pos] - '0');
    ++*pos;
    ++n;
  }
  return n >= min_digits;
}

bool Expect(std::string_view s, size_t* pos, char c) {
  if (*pos >= s.size() || s[*pos] != c) return false;
  ++*pos;
  return true;
}

bool IsHex(std::string_view s) {
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

// ---- Shared field parsers ---------------------------------------------------

Status SplitCsvLine(std::string_view line, std::vector<std::string>* fields) {
  size_t n = 0;  // fields filled; *fields is resized at the end (keeps capacity)
  size_t i = 0;
  while (true) {
    if (fields->size() <= n) fields->emplace_back();
    std::string& f = (*fields)[n];
    f.clear();
    ++n;
    if (i < line.size() && line[i] == '"') {
      ++i;
      while (true) {
        size_t q = line.find('"', i);
        if (q == std::string_view::npos) {
          return InvalidArgument("unterminated quoted field " + std::to_string(n) +
                                 " (quoted line breaks are not supported)");
        }
        f.append(line.substr(i, q - i));
        if (q + 1 < line.size() && line[q + 1] == '"') {
          f.push_back('"');
          i = q + 2;
          continue;
        }
        i = q + 1;
        break;
      }
      if (i == line.size()) break;
      if (line[i] != ',') {
        return InvalidArgument("characters after the closing quote of field " + std::to_string(n));
      }
      ++i;
    } else {
      size_t comma = line.find(',', i);
      if (comma == std::string_view::npos) {
        f.append(line.substr(i));
        break;
      }
      f.append(line.substr(i, comma - i));
      i = comma + 1;
    }
  }
  fields->resize(n);
  return Status::OK();
}

bool ParseDateTime(std::string_view s, int64_t* unix_seconds) {
  size_t pos = 0;
  int64_t year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  bool has_time = true;
  if (s.size() >= 5 && s[4] == '-') {
    // YYYY-MM-DD[( |T)HH:MM[:SS]]
    if (!Digits(s, &pos, 4, 4, &year) || !Expect(s, &pos, '-') || !Digits(s, &pos, 1, 2, &month) ||
        !Expect(s, &pos, '-') || !Digits(s, &pos, 1, 2, &day)) {
      return false;
    }
    if (pos == s.size()) {
      has_time = false;
    } else if (s[pos] == ' ' || s[pos] == 'T') {
      ++pos;
    } else {
      return false;
    }
  } else {
    // M/D/YYYY H:MM[:SS]
    if (!Digits(s, &pos, 1, 2, &month) || !Expect(s, &pos, '/') || !Digits(s, &pos, 1, 2, &day) ||
        !Expect(s, &pos, '/') || !Digits(s, &pos, 4, 4, &year) || !Expect(s, &pos, ' ')) {
      return false;
    }
  }
  if (has_time) {
    if (!Digits(s, &pos, 1, 2, &hour) || !Expect(s, &pos, ':') || !Digits(s, &pos, 2, 2, &minute)) {
      return false;
    }
    if (pos < s.size() && (!Expect(s, &pos, ':') || !Digits(s, &pos, 2, 2, &second))) {
      return false;
    }
  }
  if (pos != s.size()) return false;
  if (year < 1900 || year > 2199 || month < 1 || month > 12 || day < 1 ||
      day > internal::DaysInMonth(year, static_cast<int>(month)) || hour > 23 || minute > 59 ||
      second > 59) {
    return false;
  }
  *unix_seconds = internal::FromCivil(year, static_cast<int>(month), static_cast<int>(day),
                                      static_cast<int>(hour), static_cast<int>(minute),
                                      static_cast<int>(second));
  return true;
}

const char* TaobaoBehaviorName(TaobaoBehavior b) {
  switch (b) {
    case TaobaoBehavior::kPv:
      return "pv";
    case TaobaoBehavior::kCart:
      return "cart";
    case TaobaoBehavior::kFav:
      return "fav";
    case TaobaoBehavior::kBuy:
      return "buy";
  }
  return "?";
}

// ---- Taobao -------------------------------------------------------------------

Status TaobaoParser::OnFirstLine(const std::string& path, std::string_view line, bool* is_header) {
  *is_header = false;
  return Status::OK();
}

Status TaobaoParser::Parse(std::string_view line, TaobaoEvent* out) {
  std::string_view f[5];
  size_t start = 0;
  for (int i = 0; i < 5; ++i) {
    size_t comma = line.find(',', start);
    if (i < 4 && comma == std::string_view::npos) {
      return InvalidArgument("expected 5 comma-separated fields, got " + std::to_string(i + 1) +
                             " in " + Quote(line));
    }
    if (i == 4 && comma != std::string_view::npos) {
      return InvalidArgument("expected 5 comma-separated fields, got more in " + Quote(line));
    }
    f[i] = line.substr(start,
                       comma == std::string_view::npos ? std::string_view::npos : comma - start);
    start = comma + 1;
  }
  if (!ParseId(f[0], &out->user_id)) return InvalidArgument("bad user_id " + Quote(f[0]));
  if (!ParseId(f[1], &out->item_id)) return InvalidArgument("bad item_id " + Quote(f[1]));
  if (!ParseId(f[2], &out->category_id)) return InvalidArgument("bad category_id " + Quote(f[2]));
  if (f[3] == "pv") {
    out->behavior = TaobaoBehavior::kPv;
  } else if (f[3] == "cart") {
    out->behavior = TaobaoBehavior::kCart;
  } else if (f[3] == "fav") {
    out->behavior = TaobaoBehavior::kFav;
  } else if (f[3] == "buy") {
    out->behavior = TaobaoBehavior::kBuy;
  } else {
    return InvalidArgument("bad behavior " + Quote(f[3]) + " (want pv, cart, fav or buy)");
  }
  if (!ParseInt64(f[4], &out->time)) return InvalidArgument("bad timestamp " + Quote(f[4]));
  if (out->time < kMinPlausibleTime || out->time >= kMaxPlausibleTime) {
    return InvalidArgument("implausible timestamp " + Quote(f[4]) +
                           " (not within 2000..2100; a line cut short?)");
  }
  return Status::OK();
}

// ---- Online Retail --------------------------------------------------------------

Status RetailParser::OnFirstLine(const std::string& path, std::string_view line, bool* is_header) {
  *is_header = true;
  return CheckHeader(path, line, kHeader, "UCI Online Retail");
}

Status RetailParser::Parse(std::string_view line, RetailRow* out) {
  FRESHET_RETURN_IF_ERROR(SplitCsvLine(line, &fields_));
  if (fields_.size() != 8) {
    return InvalidArgument("expected 8 fields, got " + std::to_string(fields_.size()));
  }
  if (fields_[0].empty()) return InvalidArgument("empty InvoiceNo");
  if (fields_[1].empty()) return InvalidArgument("empty StockCode");
  if (!ParseIntegral(fields_[3], &out->quantity)) {
    return InvalidArgument("bad Quantity " + Quote(fields_[3]));
  }
  if (!ParseDateTime(fields_[4], &out->time)) {
    return InvalidArgument("bad InvoiceDate " + Quote(fields_[4]));
  }
  if (!internal::ParseDouble(fields_[5], &out->unit_price)) {
    return InvalidArgument("bad UnitPrice " + Quote(fields_[5]));
  }
  out->customer_id = -1;
  if (!fields_[6].empty() &&
      (!ParseIntegral(fields_[6], &out->customer_id) || out->customer_id < 0)) {
    return InvalidArgument("bad CustomerID " + Quote(fields_[6]));
  }
  out->invoice.swap(fields_[0]);
  out->stock_code.swap(fields_[1]);
  out->description.swap(fields_[2]);
  out->country.swap(fields_[7]);
  return Status::OK();
}

// ---- TalkingData ----------------------------------------------------------------

Status TalkingDataParser::OnFirstLine(const std::string& path, std::string_view line,
                                      bool* is_header) {
  *is_header = true;
  return CheckHeader(path, line, kHeader, "TalkingData AdTracking train");
}

Status TalkingDataParser::Parse(std::string_view line, TalkingDataClick* out) {
  internal::SplitView(line, ',', &fields_);
  if (fields_.size() != 8) {
    return InvalidArgument("expected 8 fields, got " + std::to_string(fields_.size()));
  }
  static const char* const kNames[5] = {"ip", "app", "device", "os", "channel"};
  int64_t* ids[5] = {&out->ip, &out->app, &out->device, &out->os, &out->channel};
  for (int i = 0; i < 5; ++i) {
    if (!ParseId(fields_[i], ids[i])) {
      return InvalidArgument(std::string("bad ") + kNames[i] + " " + Quote(fields_[i]));
    }
  }
  if (!ParseDateTime(fields_[5], &out->click_time)) {
    return InvalidArgument("bad click_time " + Quote(fields_[5]));
  }
  out->attributed_time = -1;
  if (!fields_[6].empty() && !ParseDateTime(fields_[6], &out->attributed_time)) {
    return InvalidArgument("bad attributed_time " + Quote(fields_[6]));
  }
  if (fields_[7] == "0") {
    out->is_attributed = 0;
  } else if (fields_[7] == "1") {
    out->is_attributed = 1;
  } else {
    return InvalidArgument("bad is_attributed " + Quote(fields_[7]) + " (want 0 or 1)");
  }
  return Status::OK();
}

// ---- Criteo ------------------------------------------------------------------------

Status CriteoParser::OnFirstLine(const std::string& path, std::string_view line, bool* is_header) {
  line = StripBom(line);
  delimiter_ = line.find('\t') != std::string_view::npos ? '\t' : ',';
  has_id_ = false;
  *is_header = false;
  if (line.empty()) return Status::OK();  // an empty file
  internal::SplitView(line, delimiter_, &fields_);
  int64_t label;
  if (ParseIntegral(fields_[0], &label)) return Status::OK();  // a record: no header
  std::string first(fields_[0]);
  for (char& c : first) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t want = 1 + CriteoRow::kNumInts + CriteoRow::kNumCats;
  if (first == "id") {
    has_id_ = true;
    ++want;
    std::string second = fields_.size() > 1 ? std::string(fields_[1]) : "";
    for (char& c : second) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (second != "label") {
      return InvalidArgument(
          path + ":1: Criteo header starting with Id must name Label second, got " + Quote(line));
    }
  } else if (first != "label" && first != "clicked") {
    return InvalidArgument(path +
                           ":1: neither a Criteo record nor a Criteo header (Id,Label,... "
                           "or Label,...): " +
                           Quote(line));
  }
  if (fields_.size() != want) {
    return InvalidArgument(path + ":1: Criteo header has " + std::to_string(fields_.size()) +
                           " columns, expected " + std::to_string(want));
  }
  *is_header = true;
  return Status::OK();
}

Status CriteoParser::Parse(std::string_view line, CriteoRow* out) {
  internal::SplitView(line, delimiter_, &fields_);
  const size_t first = has_id_ ? 1 : 0;  // index of the label
  const size_t want = first + 1 + CriteoRow::kNumInts + CriteoRow::kNumCats;
  const size_t min_fields = first + 1 + CriteoRow::kNumInts + 1;
  if (fields_.size() > want) {
    return InvalidArgument("too many fields: " + std::to_string(fields_.size()) + ", expected " +
                           std::to_string(want));
  }
  if (fields_.size() < min_fields) {
    return InvalidArgument("too few fields: " + std::to_string(fields_.size()) +
                           ", expected at least " + std::to_string(min_fields) + " (up to C1)");
  }
  fields_.resize(want, std::string_view());  // rows that lost trailing empty fields
  out->id = -1;
  if (has_id_ && !ParseId(fields_[0], &out->id))
    return InvalidArgument("bad Id " + Quote(fields_[0]));
  int64_t label;
  if (!ParseIntegral(fields_[first], &label) || (label != 0 && label != 1)) {
    return InvalidArgument("bad label " + Quote(fields_[first]) + " (want 0 or 1)");
  }
  out->label = static_cast<int>(label);
  for (int k = 0; k < CriteoRow::kNumInts; ++k) {
    std::string_view f = fields_[first + 1 + k];
    out->has_int[k] = !f.empty();
    out->ints[k] = 0;
    if (!f.empty() && !ParseIntegral(f, &out->ints[k])) {
      return InvalidArgument("bad I" + std::to_string(k + 1) + " " + Quote(f));
    }
  }
  for (int k = 0; k < CriteoRow::kNumCats; ++k) {
    std::string_view f = fields_[first + 1 + CriteoRow::kNumInts + k];
    if (!IsHex(f)) return InvalidArgument("bad C" + std::to_string(k + 1) + " " + Quote(f));
    out->cats[k].assign(f.data(), f.size());
  }
  return Status::OK();
}

StatusOr<std::vector<std::string>> ReadCriteoSchema(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open Criteo schema " + path + ": " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  // A flat JSON array of {"name": "...", "kind": "..."} objects; string
  // values hold no escaped quotes.
  auto string_value = [&](size_t obj_begin, size_t obj_end, const std::string& key,
                          std::string* value) -> bool {
    const std::string quoted = "\"" + key + "\"";
    size_t k = text.find(quoted, obj_begin);
    if (k == std::string::npos || k > obj_end) return false;
    size_t colon = text.find(':', k + quoted.size());
    if (colon == std::string::npos || colon > obj_end) return false;
    size_t open = text.find('"', colon);
    if (open == std::string::npos || open > obj_end) return false;
    size_t close = text.find('"', open + 1);
    if (close == std::string::npos || close > obj_end) return false;
    *value = text.substr(open + 1, close - open - 1);
    return true;
  };
  std::vector<std::string> names, kinds;
  size_t pos = 0;
  while ((pos = text.find('{', pos)) != std::string::npos) {
    size_t end = text.find('}', pos);
    if (end == std::string::npos) return InvalidArgument(path + ": unterminated object");
    std::string name, kind;
    if (!string_value(pos, end, "name", &name) || !string_value(pos, end, "kind", &kind)) {
      return InvalidArgument(path + ": column " + std::to_string(names.size() + 1) +
                             " lacks a \"name\" or \"kind\"");
    }
    names.push_back(name);
    kinds.push_back(kind);
    pos = end + 1;
  }
  const size_t want = 1 + CriteoRow::kNumInts + CriteoRow::kNumCats;
  if (names.size() != want) {
    return InvalidArgument(path + ": " + std::to_string(names.size()) +
                           " columns, the Criteo layout has " + std::to_string(want));
  }
  for (size_t i = 1; i < want; ++i) {
    const char* expect = i <= CriteoRow::kNumInts ? "Integer" : "String";
    if (kinds[i] != expect) {
      return InvalidArgument(path + ": column " + std::to_string(i + 1) + " (" + names[i] +
                             ") is " + kinds[i] + ", the Criteo layout wants " + expect);
    }
  }
  return names;
}

// ---- RawReader -----------------------------------------------------------------------

template <typename Parser>
StatusOr<std::unique_ptr<RawReader<Parser>>> RawReader<Parser>::Open(std::vector<FileRange> ranges,
                                                                     BadRecordPolicy policy) {
  std::unique_ptr<RawReader> reader(new RawReader());
  Parser* parser = &reader->parser_;
  auto first_line = [parser](const std::string& path, std::string_view line,
                             bool* is_header) -> Status {
    return parser->OnFirstLine(path, line, is_header);
  };
  reader->source_ = std::make_unique<internal::LineSource>(std::move(ranges), policy, first_line);
  FRESHET_RETURN_IF_ERROR(reader->source_->CheckFirstLines());
  return reader;
}

template <typename Parser>
StatusOr<std::unique_ptr<RawReader<Parser>>> RawReader<Parser>::OpenFiles(
    const std::vector<std::string>& files, BadRecordPolicy policy) {
  // One shard of one: every file whole.
  FRESHET_ASSIGN_OR_RETURN(std::vector<FileRange> ranges, SplitFiles(files, 0, 1));
  return Open(std::move(ranges), policy);
}

template <typename Parser>
RawReader<Parser>::~RawReader() = default;

template <typename Parser>
StatusOr<bool> RawReader<Parser>::Next(Record* record) {
  std::string_view line;
  while (true) {
    FRESHET_ASSIGN_OR_RETURN(bool got, source_->Next(&line));
    if (!got) return false;
    Status st = parser_.Parse(line, record);
    if (st.ok()) return true;
    FRESHET_RETURN_IF_ERROR(source_->MarkBad(st.message()));
  }
}

template <typename Parser>
const ReadStats& RawReader<Parser>::stats() const {
  return source_->stats();
}

template <typename Parser>
const std::vector<FileReadStats>& RawReader<Parser>::file_stats() const {
  return source_->file_stats();
}

template <typename Parser>
std::string RawReader<Parser>::Position() {
  return source_->path() + ":" + std::to_string(source_->line_number());
}

template class RawReader<TaobaoParser>;
template class RawReader<RetailParser>;
template class RawReader<TalkingDataParser>;
template class RawReader<CriteoParser>;

}  // namespace freshet
