// Readers for the raw public formats the tasks (worker/data/task.h) start
// from: Taobao UserBehavior, UCI Online Retail, TalkingData AdTracking and
// Criteo display-ad logs.
//
// Every reader is a RawReader<Parser>: it reads FileRanges (split across
// workers exactly like example files, see SplitFiles in example_io.h; a
// header line is never a record) and turns each line into a typed record
// with its format's parser. A line that does not parse is a bad record,
// counted and skipped under a BadRecordPolicy exactly as ExampleReader does
// (logged as file:line with the problem, the first 20 per file and then
// every 1000th; Next() fails with InvalidArgument naming the file and the
// counts once more than max(max_bad_records, max_bad_ratio * lines read) are
// bad). A wrong header is not a bad record: Open() fails.
//
//   auto reader = TaobaoReader::OpenFiles({path}, BadRecordPolicy());
//   if (!reader.ok()) return reader.status();
//   TaobaoEvent e;
//   while (true) {
//     FRESHET_ASSIGN_OR_RETURN(bool more, (*reader)->Next(&e));
//     if (!more) break;
//     ...
//   }
//
// Thread safety: a reader is used by one thread at a time; parse functions
// are pure.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "worker/data/example_io.h"

namespace freshet {

// ---- Shared field parsers -------------------------------------------------

// Splits one RFC 4180 CSV record into *fields (cleared first). Quoted fields
// may hold commas and doubled quotes ("" -> "); a quote inside an unquoted
// field is kept as is. Line breaks inside quoted fields are not supported
// (readers are line based): such a record fails with "unterminated quoted
// field". InvalidArgument naming the problem and the field number.
Status SplitCsvLine(std::string_view line, std::vector<std::string>* fields);

// Parses a date-time as UTC into unix seconds. Accepts
//   "YYYY-MM-DD HH:MM:SS", "YYYY-MM-DD HH:MM", "YYYY-MM-DDTHH:MM:SS",
//   "YYYY-MM-DD" (midnight),
//   "M/D/YYYY H:MM" and "M/D/YYYY H:MM:SS" (US order, as the original UCI
//   Online Retail export writes InvoiceDate, e.g. "12/1/2010 8:26"),
// with one- or two-digit month, day, hour, and years 1900..2199. False on
// anything else, including impossible dates (2011-02-30).
bool ParseDateTime(std::string_view s, int64_t* unix_seconds);

// Unix times outside [kMinPlausibleTime, kMaxPlausibleTime) (2000-01-01 to
// 2100-01-01 UTC) are bad records in formats whose times are plain integers:
// a line cut inside its timestamp ("...,pv,15") still parses as a number.
inline constexpr int64_t kMinPlausibleTime = 946684800;
inline constexpr int64_t kMaxPlausibleTime = 4102444800;

// ---- Records --------------------------------------------------------------

enum class TaobaoBehavior : uint8_t { kPv = 0, kCart = 1, kFav = 2, kBuy = 3 };
const char* TaobaoBehaviorName(TaobaoBehavior b);  // "pv", "cart", "fav", "buy"

// Taobao UserBehavior CSV, no header: user_id,item_id,category_id,behavior,ts.
struct TaobaoEvent {
  int64_t user_id = 0;
  int64_t item_id = 0;
  int64_t category_id = 0;
  TaobaoBehavior behavior = TaobaoBehavior::kPv;
  int64_t time = 0;  // unix seconds, in [kMinPlausibleTime, kMaxPlausibleTime)
};

// UCI Online Retail, RFC 4180 CSV with the header
// InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country.
// Cancellations, returns (Quantity <= 0) and rows without a customer are
// valid records: filtering them is the task's business.
struct RetailRow {
  std::string invoice;       // InvoiceNo, e.g. "536365"; cancellations start with 'C'
  std::string stock_code;    // StockCode, non-empty
  std::string description;   // Description, unquoted (may be empty)
  int64_t quantity = 0;      // Quantity (negative for returns)
  int64_t time = 0;          // InvoiceDate (see ParseDateTime), unix seconds UTC
  double unit_price = 0;     // UnitPrice
  int64_t customer_id = -1;  // CustomerID ("17850.0" -> 17850); -1 when empty
  std::string country;       // Country
};

// TalkingData AdTracking train CSV with the header
// ip,app,device,os,channel,click_time,attributed_time,is_attributed.
struct TalkingDataClick {
  int64_t ip = 0;
  int64_t app = 0;
  int64_t device = 0;
  int64_t os = 0;
  int64_t channel = 0;
  int64_t click_time = 0;        // "YYYY-MM-DD HH:MM:SS" UTC -> unix seconds
  int64_t attributed_time = -1;  // -1 when empty
  int is_attributed = 0;         // 0 or 1
};

// Criteo display-ad row: label, I1..I13 (integers), C1..C26 (hex hashes).
// Missing values are empty fields.
struct CriteoRow {
  static constexpr int kNumInts = 13;
  static constexpr int kNumCats = 26;
  int label = 0;
  int64_t id = -1;  // the Id column of the Kaggle CSV layout; -1 without one
  std::array<int64_t, kNumInts> ints{};
  std::array<bool, kNumInts> has_int{};    // false: I(k+1) was empty
  std::array<std::string, kNumCats> cats;  // "" when missing
};

// ---- Parsers --------------------------------------------------------------
// A parser turns one line of its format into a record. OnFirstLine() sees
// each file's first line before the file's records (and may reject the file
// or, for Criteo, learn its layout); Parse() returns InvalidArgument naming
// the problem for a bad record. Parsers are public so tests and tools can
// parse single lines; readers own one each.

class TaobaoParser {
 public:
  using Record = TaobaoEvent;
  // No header: the first line is a record.
  Status OnFirstLine(const std::string& path, std::string_view line, bool* is_header);
  // Exactly 5 fields; ids are non-negative integers; behavior one of
  // pv|cart|fav|buy; the timestamp a plausible unix time (so a line cut
  // inside its timestamp is bad).
  Status Parse(std::string_view line, TaobaoEvent* out);
};

class RetailParser {
 public:
  using Record = RetailRow;
  static constexpr std::string_view kHeader =
      "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country";
  // The first line must be kHeader (a UTF-8 byte-order mark is allowed).
  Status OnFirstLine(const std::string& path, std::string_view line, bool* is_header);
  // 8 RFC 4180 fields; InvoiceNo and StockCode non-empty; Quantity an
  // integer ("6" or "6.0"); InvoiceDate per ParseDateTime; UnitPrice a
  // number; CustomerID empty or an integer.
  Status Parse(std::string_view line, RetailRow* out);

 private:
  std::vector<std::string> fields_;
};

class TalkingDataParser {
 public:
  using Record = TalkingDataClick;
  static constexpr std::string_view kHeader =
      "ip,app,device,os,channel,click_time,attributed_time,is_attributed";
  // The first line must be kHeader (a UTF-8 byte-order mark is allowed).
  Status OnFirstLine(const std::string& path, std::string_view line, bool* is_header);
  // 8 fields; ids are non-negative integers; click_time per ParseDateTime;
  // attributed_time empty or a date-time; is_attributed 0 or 1.
  Status Parse(std::string_view line, TalkingDataClick* out);

 private:
  std::vector<std::string_view> fields_;
};

// Criteo, in the three layouts found in the wild, detected per file from its
// first line:
//   - TSV without header, label I1..I13 C1..C26 (the Kaggle train.txt, the
//     1TB click logs, hillview's criteoTab.csv);
//   - CSV with the header Id,Label,I1..I13,C1..C26 (Kaggle train.csv as
//     re-exported by pandas: integers may read "227.0");
//   - either delimiter with a header naming the label column "Label",
//     "label" or "clicked" first (no Id).
// Rows that lost trailing delimiters (the Kaggle train.txt strips trailing
// empty fields) are padded with empty fields; they must still reach C1
// (15 fields, 16 with Id). More fields than the layout has is bad, as are a
// label other than 0/1, a non-integer I field and a non-hex C field.
class CriteoParser {
 public:
  using Record = CriteoRow;
  Status OnFirstLine(const std::string& path, std::string_view line, bool* is_header);
  Status Parse(std::string_view line, CriteoRow* out);

  // The layout of the file being read.
  char delimiter() const { return delimiter_; }
  bool has_id() const { return has_id_; }

 private:
  char delimiter_ = '\t';
  bool has_id_ = false;
  std::vector<std::string_view> fields_;
};

// Reads a hillview-style Criteo schema (JSON: [{"name": ..., "kind": ...},
// ...], e.g. ../shared/data/criteo/criteo_hillview.schema) and checks it
// describes the 40-column Criteo layout the CriteoParser reads: a label
// column, 13 "Integer" columns, then 26 "String" columns. Returns the column
// names. NotFound for a missing file, InvalidArgument naming the problem.
StatusOr<std::vector<std::string>> ReadCriteoSchema(const std::string& path);

// ---- Readers --------------------------------------------------------------

namespace internal {
class LineSource;
}  // namespace internal

template <typename Parser>
class RawReader {
 public:
  using Record = typename Parser::Record;

  // Opens the ranges: checks now that every file exists and has the right
  // first line. Empty ranges are fine.
  static StatusOr<std::unique_ptr<RawReader>> Open(std::vector<FileRange> ranges,
                                                   BadRecordPolicy policy);
  // Whole files, unsplit.
  static StatusOr<std::unique_ptr<RawReader>> OpenFiles(const std::vector<std::string>& files,
                                                        BadRecordPolicy policy);
  ~RawReader();

  // The next good record into *record. Returns false after the last range;
  // an error past the bad-record limit or on I/O failure.
  StatusOr<bool> Next(Record* record);

  // Records: `lines` read (not counting headers), `examples` good, `bad`;
  // totals, and per file in order of first appearance.
  const ReadStats& stats() const;
  const std::vector<FileReadStats>& file_stats() const;
  // "path:line" of the record last returned by Next().
  std::string Position();

 private:
  RawReader() = default;
  Parser parser_;
  std::unique_ptr<internal::LineSource> source_;
};

using TaobaoReader = RawReader<TaobaoParser>;
using RetailReader = RawReader<RetailParser>;
using TalkingDataReader = RawReader<TalkingDataParser>;
using CriteoReader = RawReader<CriteoParser>;

extern template class RawReader<TaobaoParser>;
extern template class RawReader<RetailParser>;
extern template class RawReader<TalkingDataParser>;
extern template class RawReader<CriteoParser>;

}  // namespace freshet
