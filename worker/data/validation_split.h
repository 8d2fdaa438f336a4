// The validation split: the last part of the training examples, by event
// time, held out of training and scored after every pass (DataConfig::
// validation_fraction, docs/ARCHITECTURE.md "Validation").
//
// The rule is the tasks' train/holdout rule (worker/data/task.h "Time
// split") applied to the training files: with the n good example lines of
// the files (concatenated in the job's order) and k = floor((1 - f) * n),
// T is the time of line k (0-based); validation is every line with time
// >= T, training every line with time < T. Lines sharing a second therefore
// never straddle the cut, and the validation part holds at least n - k
// lines. The files must be in time order (model/example.h promises it
// within a file; across files the job's order must continue it): a line
// whose time is before its predecessor's is an error naming file and line,
// never a silently wrong split.
//
// The cut is a byte position (file, offset of the first validation line),
// so training and validation are byte ranges that SplitRanges (example_io.h)
// shards like whole files: every worker that is given the same cut trains
// on exactly the lines before it and never reads a validation line in
// training.
//
// Thread safety: free functions, no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/data/example_io.h"

namespace freshet {

struct ValidationCut {
  // The first validation line: file index in the job's list and byte
  // offset of its first byte (a line start).
  int file = 0;
  uint64_t offset = 0;
  int64_t time = 0;  // T: the validation lines are those with time >= T
  int64_t train_examples = 0, validation_examples = 0;
  int64_t bad_lines = 0;  // lines skipped (unparsable), in neither count
};

// Finds the cut of `files` for validation fraction `fraction`. Reads every
// line's time field (one pass to count, one to the cut). Bad lines are
// skipped (training skips them too) within `policy`. InvalidArgument naming
// file:line when times go back, and naming the field when the split leaves
// no training or no validation line. REQUIRES: 0 < fraction < 1.
StatusOr<ValidationCut> FindValidationCut(const std::vector<std::string>& files, double fraction,
                                          const BadRecordPolicy& policy);

// The byte spans before the cut (training) and from it on (validation), as
// whole-file-relative ranges numbered by file index, for SplitRanges.
// `sizes` are the files' sizes in bytes. Empty spans are left out.
std::vector<FileRange> TrainingSpans(const std::vector<std::string>& files,
                                     const std::vector<uint64_t>& sizes, const ValidationCut& cut);
std::vector<FileRange> ValidationSpans(const std::vector<std::string>& files,
                                       const std::vector<uint64_t>& sizes,
                                       const ValidationCut& cut);

}  // namespace freshet
