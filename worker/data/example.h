// Example: one training example as read from an example file, before
// feature encoding (worker/features.h turns examples into EncodedBatch).
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
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace freshet {

struct Example {
  float label = 0;
  int64_t time = 0;
  std::string user;
  float oracle = -1;                // -1: unknown
  std::vector<std::string> values;  // one per column of the file header
};

}  // namespace freshet
