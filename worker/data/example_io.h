// Reading and writing example files (format in model/example.h), with
// input splitting across workers and bad-record accounting.
//
// Splitting. A list of files is cut into `num_shards` contiguous byte ranges
// of the concatenation (so big files split within, small files go whole):
// shard i gets bytes [total*i/n, total*(i+1)/n). A range that starts inside
// a line skips to the next line; a range reads a line if the line starts in
// it (Hadoop's rule), so every line is read by exactly one shard. The header
// line is never an example.
//
// Bad records. A line that does not parse (wrong field count, bad label,
// bad time, bad oracle) is skipped and counted, with a log line naming
// file:line and the problem (the first 20 per file, then every 1000th).
// When more than max(max_bad_records, max_bad_ratio * lines read) lines are
// bad, Next() fails with InvalidArgument naming the file, the counts and the
// last problem: the job stops loudly instead of training on garbage.
//
// Thread safety: a reader or writer is used by one thread at a time.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/example.h"

namespace freshet {
namespace internal {
class LineSource;
}  // namespace internal

struct BadRecordPolicy {
  double max_bad_ratio = 0.001;
  int64_t max_bad_records = 100;
};

struct FileRange {
  std::string path;
  uint64_t begin = 0;  // byte offsets
  uint64_t end = 0;
  // Which input file this is, as the job numbers them (SplitFiles: the index
  // in its `files`); carried into InputInterval::file. -1: unnumbered.
  int file_index = -1;
};

// A stretch of one input file that a reader consumed: whole lines, from the
// first byte of the first line to the first byte after the last one's line
// end. Bad lines inside it are consumed too; `records` counts only the
// examples returned (and not given back with UncountLast).
struct InputInterval {
  int file = -1;  // FileRange::file_index
  uint64_t begin = 0, end = 0;
  int64_t records = 0;
};

// What a stretch of examples (a batch) consumed from its source.
struct ConsumedInput {
  // File sources: contiguous intervals in read order (a batch crossing a
  // range or file boundary has several).
  std::vector<InputInterval> intervals;
  // Live sources: the source's serialized read position after these
  // examples (e.g. TailPosition text); empty for file sources.
  std::string position;
  void Clear() {
    intervals.clear();
    position.clear();
  }
};

// The ranges shard `shard` of `num_shards` reads. A shard that gets no bytes
// (more shards than bytes) gets one empty range, so that its reader still
// learns the columns. NotFound if a file is missing. REQUIRES: 0 <= shard <
// num_shards.
//
// block_bytes == 0: one contiguous slice per shard (as above).
// block_bytes > 0: the concatenation is cut into blocks of block_bytes and
// shard i reads blocks i, i + n, i + 2n, ... (block-cyclic). Training uses
// this on time-ordered files so that all workers move through time together
// instead of worker 0 training on the oldest half while worker 1 trains on
// the newest. The line rule is the same, so every line is still read once.
// Each range's file_index is the index of its file in `files`.
StatusOr<std::vector<FileRange>> SplitFiles(const std::vector<std::string>& files, int shard,
                                            int num_shards, uint64_t block_bytes = 0);

// SplitFiles over parts of files: `spans` (each [begin, end) of its file,
// begin at a line start or 0, file_index carried over) are concatenated in
// order and cut as SplitFiles cuts whole files. SplitFiles(files, ...) is
// SplitRanges of the whole files numbered by their index. A shard with no
// bytes gets one empty range naming a file. REQUIRES: 0 <= shard <
// num_shards, begin <= end.
std::vector<FileRange> SplitRanges(const std::vector<FileRange>& spans, int shard, int num_shards,
                                   uint64_t block_bytes = 0);

// The block size training uses for SplitFiles: about 64 blocks per shard,
// between 64 KiB and 4 MiB.
uint64_t TrainingBlockBytes(const std::vector<std::string>& files, int num_shards);

// Reads and checks the header of an example file: its column names.
StatusOr<std::vector<std::string>> ReadExampleHeader(const std::string& path);

struct ReadStats {
  int64_t lines = 0;     // example lines read (good + bad)
  int64_t examples = 0;  // good
  int64_t bad = 0;
  int64_t bytes = 0;  // bytes of the lines read, newlines included (progress)
};

// ReadStats of one file (the raw readers of worker/data/raw_readers.h report
// these per input file).
struct FileReadStats {
  std::string path;
  ReadStats stats;
};

// Thread safety: one thread uses a source.
//
// Where training reads examples from: example files (ExampleReader) or a
// live event stream (worker/stream/stream_source.h).
class ExampleSource {
 public:
  enum class Outcome {
    kExample,  // *ex holds the next example
    kNotNow,   // none arrived before the deadline (live sources only)
    kEnd,      // no more examples, ever
  };
  virtual ~ExampleSource() = default;
  // The next good example, waiting until `deadline` at most (file readers
  // never wait: they return an example or kEnd). Errors: I/O failures, more
  // bad records than the policy allows.
  virtual StatusOr<Outcome> Poll(Example* ex, std::chrono::steady_clock::time_point deadline) = 0;
  // Lines read, good examples and bad lines so far.
  virtual const ReadStats& stats() const = 0;
  // Fraction of a finite input read so far, in [0, 1]; < 0 when unknown
  // (live sources). For progress displays.
  virtual double FractionRead() const { return -1; }
  // Moves what the examples returned since the previous call consumed into
  // *out (appended to out->intervals; out->position replaced when the
  // source has one). Sources without positions add nothing.
  virtual void TakeConsumed(ConsumedInput* out) { (void)out; }
  // The example last returned is not trained (it failed feature encoding):
  // its line stays consumed but no longer counts as a record.
  virtual void UncountLast() {}
};

class ExampleReader : public ExampleSource {
 public:
  // Opens the ranges (all files must have the same header). Empty ranges are
  // fine (a shard with no data).
  static StatusOr<std::unique_ptr<ExampleReader>> Open(std::vector<FileRange> ranges,
                                                       BadRecordPolicy policy);
  // Whole files, unsplit.
  static StatusOr<std::unique_ptr<ExampleReader>> OpenFiles(const std::vector<std::string>& files,
                                                            BadRecordPolicy policy);
  ~ExampleReader() override;

  const std::vector<std::string>& columns() const { return columns_; }
  // Reads the next good example into *ex. Returns false at the end of the
  // last range; an error past the bad-record limit or on I/O failure.
  // ex->read_unix_ms and ex->label_unix_ms are both set to the wall time
  // of the file read that brought its line in (one clock read per read(2)
  // of 64 KiB, so a line waits in the buffer only while about a thousand
  // lines before it are trained).
  StatusOr<bool> Next(Example* ex);
  // Next() as an ExampleSource: kExample or kEnd.
  StatusOr<Outcome> Poll(Example* ex, std::chrono::steady_clock::time_point deadline) override;
  // Lines read, good examples and bad lines so far, over all ranges.
  const ReadStats& stats() const override;
  // Bytes of all ranges (headers included); stats().bytes / total_bytes()
  // is the fraction read.
  uint64_t total_bytes() const { return total_bytes_; }
  double FractionRead() const override {
    return total_bytes_ > 0 ? std::min(1.0, static_cast<double>(stats().bytes) / total_bytes_)
                            : 0.0;
  }
  // The lines read since the previous call (good and bad), as intervals
  // with their ranges' file_index. Cheap: one interval per contiguous
  // stretch.
  void TakeConsumed(ConsumedInput* out) override;
  void UncountLast() override;

 private:
  ExampleReader() = default;
  // Records the line last read by source_ as consumed.
  void NoteLine(bool good);
  std::vector<InputInterval> consumed_;  // since the last TakeConsumed
  std::vector<std::string> columns_;
  bool header_read_ = false;
  uint64_t total_bytes_ = 0;
  std::unique_ptr<internal::LineSource> source_;  // the lines and the bad-record account
};

// Parses one example line with `num_columns` feature columns. InvalidArgument
// naming the field on failure.
Status ParseExampleLine(const std::string& line, size_t num_columns, Example* ex);
// Formats one example line (no trailing newline). REQUIRES: values have no
// tabs or newlines.
std::string FormatExampleLine(const Example& ex);

// Writes an example file atomically: to `path.tmp`, then renamed over `path`
// by Close(). A writer destroyed without Close() removes its temporary file.
class ExampleWriter {
 public:
  static StatusOr<std::unique_ptr<ExampleWriter>> Open(const std::string& path,
                                                       const std::vector<std::string>& columns);
  ~ExampleWriter();
  // InvalidArgument (nothing written) for a wrong number of values, a label
  // other than 0 or 1, an oracle above 1, or a tab or newline in the user or
  // a value; FailedPrecondition after Close().
  Status Write(const Example& ex);
  // Flushes, syncs and renames the file into place.
  Status Close();
  int64_t written() const { return written_; }

 private:
  ExampleWriter() = default;
  std::string path_, tmp_path_;
  size_t num_columns_ = 0;
  std::FILE* file_ = nullptr;
  int64_t written_ = 0;
  std::string line_;  // reused formatting buffer
};

}  // namespace freshet
