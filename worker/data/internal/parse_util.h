// Small parsing helpers shared by the readers and tasks of worker/data:
// strict number parsing, field splitting and UTC civil-time conversion.
// None of them allocate except where they fill a vector.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace freshet {
namespace internal {

// The whole of `s` as a decimal integer (optional leading '-' or '+'); no
// spaces, no trailing characters. False otherwise (also on overflow).
bool ParseInt64(std::string_view s, int64_t* out);
// The whole of `s` as a finite decimal floating-point number.
bool ParseDouble(std::string_view s, double* out);
// An integer written either as "17850" or as a float with a zero fraction
// ("17850.0", "1.0"), as spreadsheet exports write integer columns.
bool ParseIntegral(std::string_view s, int64_t* out);

// Splits `s` on `sep` into *fields (cleared first); n separators give n + 1
// fields, so "" gives one empty field.
void SplitView(std::string_view s, char sep, std::vector<std::string_view>* fields);

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil), and back.
int64_t DaysFromCivil(int64_t year, int month, int day);
void CivilFromDays(int64_t days, int64_t* year, int* month, int* day);
int DaysInMonth(int64_t year, int month);

// Broken-down UTC time of unix seconds.
struct CivilTime {
  int64_t year = 1970;
  int month = 1;  // 1..12
  int day = 1;    // 1..31
  int hour = 0;   // 0..23
  int minute = 0;
  int second = 0;
  int day_of_week = 4;  // 0 = Sunday .. 6 = Saturday
};
CivilTime ToCivil(int64_t unix_seconds);
// Unix seconds of a UTC civil time. REQUIRES: fields in range.
int64_t FromCivil(int64_t year, int month, int day, int hour, int minute, int second);

// Appends the decimal text of v to *out.
void AppendInt(int64_t v, std::string* out);

}  // namespace internal
}  // namespace freshet
