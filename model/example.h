// Example: one training example as read from an example file, before
// feature encoding (model/features.h turns examples into EncodedBatch).
//
// Example files (freshet's own format, written by tasks and freshet_gen):
// UTF-8 text, one example per line, fields separated by tabs.
//   line 1:  #freshet-examples v1<TAB>col_1<TAB>col_2 ...   (feature column names)
//   others:  label<TAB>time<TAB>user<TAB>oracle<TAB>value_1<TAB>value_2 ...
// label is 0 or 1; time is unix seconds (integer); user is any token without
// tabs (empty: none); oracle is the true P(label = 1) or empty when unknown;
// value_i is the raw value of column i: a token, a number, or for
// multi-valued columns space-separated tokens (possibly none). Values never
// contain tabs or newlines. Lines are ordered by time within a file.
//
// Label columns. A column whose name starts with "label:" (e.g. "label:buy",
// taobao-conversion's purchase within the window) holds a further label of
// the example, 0 or 1, beside the main label in the first field: what
// multi-task models train their extra heads on. Features never read a label
// column (job validation refuses a slot or dense feature that does: it would
// train on the answer).
//
// Freshness clocks (not part of the line; set by the source that produced
// the example, docs/METRICS.md "Freshness"): read_unix_ms is the wall time
// at which the worker read the line or event the example came from (for a
// stream: its impression), label_unix_ms the wall time at which its label
// became known (files: the read time; streams: when the label event was
// read for a positive, when the label window closed and the example was
// emitted for a negative). Both 0 when unknown (e.g. examples restored
// from a checkpoint's join state, which does not store them); when both are
// known, read_unix_ms <= label_unix_ms.
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace freshet {

inline constexpr std::string_view kLabelColumnPrefix = "label:";

// Whether `column` names a label column (see above).
inline bool IsLabelColumn(std::string_view column) {
  return column.substr(0, kLabelColumnPrefix.size()) == kLabelColumnPrefix;
}

struct Example {
  float label = 0;
  int64_t time = 0;
  std::string user;
  float oracle = -1;                // -1: unknown
  std::vector<std::string> values;  // one per column of the file header
  int64_t read_unix_ms = 0;         // wall time the source read it (0: unknown)
  int64_t label_unix_ms = 0;        // wall time its label became known (0: unknown)
};

}  // namespace freshet
