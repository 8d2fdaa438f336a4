// LineSource: the part every file reader of worker/data shares. It reads the
// lines of a list of byte ranges of files (the Hadoop rule of
// worker/data/example_io.h: a range reads a line iff the line starts in it),
// knows each line's file and line number, and keeps the bad-record account.
//
// Lines. A line is returned without its '\n' and without one trailing '\r'
// (CRLF files read like LF files). The last line of a file may lack its
// '\n'. A line longer than kMaxLineBytes is an error (a binary or corrupt
// file), not a bad record.
//
// First lines. Before the first line of each range is read, `first_line`
// is called with the file's first line (read from byte 0 even when the range
// starts later, so each range knows its file's header). It says whether that
// line is a header; a header is never returned. It may reject the file.
//
// Bad records. The caller parses each line; when a line does not parse it
// calls MarkBad(problem). The line is counted, and logged as
// "file:line: problem" (the first 20 per file, then every 1000th). When more
// than max(max_bad_records, max_bad_ratio * lines read) lines are bad,
// MarkBad returns InvalidArgument naming the file, the counts and the
// problem. Line numbers of ranges that start inside a file are computed
// (by counting the newlines before the range) only when a message needs one.
//
// Thread safety: used by one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "worker/data/example_io.h"

namespace freshet {
namespace internal {

// Called once per range before its lines are read. `first_line` is empty
// for an empty file. Sets *is_header.
using FirstLineFn =
    std::function<Status(const std::string& path, std::string_view first_line, bool* is_header)>;

class LineSource {
 public:
  static constexpr size_t kMaxLineBytes = 64 << 20;

  // Opens nothing yet: files are opened as their ranges are reached, so a
  // missing file fails at the first Next() that needs it. Callers that want
  // early errors call CheckFirstLines() (the readers' Open() does).
  LineSource(std::vector<FileRange> ranges, BadRecordPolicy policy, FirstLineFn first_line);
  ~LineSource();
  LineSource(const LineSource&) = delete;
  LineSource& operator=(const LineSource&) = delete;

  // The next line into *line, valid until the next call. Returns false after
  // the last line of the last range; an error on I/O failure or a bad
  // first line. Counts the line as read and good.
  StatusOr<bool> Next(std::string_view* line);

  // Counts the line last returned by Next() as bad (see above).
  Status MarkBad(const std::string& problem);

  // Calls the first-line function on every distinct file now, so missing
  // files and bad headers fail at open time. Next() still calls it again as
  // each range is reached (it may keep per-file state).
  Status CheckFirstLines();

  // The file of the line last returned by Next() and its 1-based line
  // number (may read the file to count lines; 0 if it cannot).
  const std::string& path() const;
  int64_t line_number();
  // The byte extent of the line last returned by Next() in its file: its
  // first byte and the first byte after its line end (the next line's
  // start, or the file's end). And its range's FileRange::file_index.
  uint64_t line_begin() const { return last_begin_; }
  uint64_t line_end() const { return last_end_; }
  int file_index() const { return next_range_ == 0 ? -1 : ranges_[next_range_ - 1].file_index; }
  // Wall time (unix ms) of the read that completed the line last returned
  // by Next(): one clock read per buffer fill (a read(2) of at most 64 KiB),
  // not per line (a line is returned only once the fill that brought its
  // end is done, and lines already buffered are returned before the next
  // fill). 0 before any read.
  int64_t read_unix_ms() const { return fill_unix_ms_; }

  // Totals over all ranges, and per distinct file in order of appearance.
  const ReadStats& stats() const { return stats_; }
  const std::vector<FileReadStats>& file_stats() const { return file_stats_; }

  // Opens `path` read-only into *fd (caller closes). NotFound or Internal
  // naming the file.
  static Status OpenFile(const std::string& path, int* fd);
  // The first line of an open file, without its line end.
  static Status ReadFirstLine(int fd, const std::string& path, std::string* out);

 private:
  Status OpenRange(size_t i);
  void CloseRange();
  // Fills the buffer; sets eof_ when the file has no more bytes.
  Status Fill();
  // The next raw line starting at line_start_ in the buffer; false at EOF.
  StatusOr<bool> RawLine(std::string_view* line);

  std::vector<FileRange> ranges_;
  BadRecordPolicy policy_;
  FirstLineFn first_line_fn_;
  std::vector<size_t> file_index_;  // per range: index into file_stats_

  size_t next_range_ = 0;  // ranges_[next_range_ - 1] is open when fd_ >= 0
  int fd_ = -1;
  uint64_t range_end_ = 0;
  uint64_t read_off_ = 0;    // file offset of the next byte to read into buf_
  uint64_t line_start_ = 0;  // file offset of the next line
  bool eof_ = false;
  std::string buf_;
  size_t head_ = 0, tail_ = 0;  // unread bytes: buf_[head_, tail_)
  std::string first_line_;

  // Line numbers: the line last returned is line `line_base_ + lines_in_range_`
  // where line_base_ counts the lines before first_line_offset_ (-1: unknown).
  uint64_t first_line_offset_ = 0;
  int64_t line_base_ = 0;
  int64_t lines_in_range_ = 0;

  bool can_mark_ = false;                   // a line was returned and not yet marked bad
  uint64_t last_begin_ = 0, last_end_ = 0;  // extent of the line last returned
  int64_t fill_unix_ms_ = 0;                // wall time of the last Fill()

  ReadStats stats_;
  std::vector<FileReadStats> file_stats_;
};

}  // namespace internal
}  // namespace freshet
