#include "worker/data/internal/line_source.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <sstream>
#include <utility>

namespace freshet {
namespace internal {
namespace {

// Bytes per read(2). Small on purpose: a line's read clock is the time of
// the read that brought it in (read_unix_ms), and a worker consumes a few
// tens of thousands of lines a second, so a 1 MiB read-ahead (what this
// was) made lines wait up to half a second in the buffer after their clock
// started, and moved the clock in half-second steps (docs/METRICS.md
// "Freshness"). 64 KiB is about a thousand lines: tens of milliseconds.
constexpr size_t kReadChunk = 1 << 16;
constexpr size_t kInitialBuffer = 2 * kReadChunk;  // grows for longer lines
constexpr int kLogFirstBad = 20;
constexpr int kLogEveryBad = 1000;

std::string_view StripCr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// pread that retries on EINTR. Returns bytes read, 0 at EOF, -1 on error.
ssize_t PreadFully(int fd, char* data, size_t n, uint64_t off) {
  while (true) {
    ssize_t r = ::pread(fd, data, n, static_cast<off_t>(off));
    if (r >= 0 || errno != EINTR) return r;
  }
}

}  // namespace

LineSource::LineSource(std::vector<FileRange> ranges, BadRecordPolicy policy,
                       FirstLineFn first_line)
    : ranges_(std::move(ranges)), policy_(policy), first_line_fn_(std::move(first_line)) {
  for (const FileRange& r : ranges_) {
    size_t i = 0;
    while (i < file_stats_.size() && file_stats_[i].path != r.path) ++i;
    if (i == file_stats_.size()) file_stats_.push_back({r.path, ReadStats()});
    file_index_.push_back(i);
  }
}

LineSource::~LineSource() { CloseRange(); }

Status LineSource::OpenFile(const std::string& path, int* fd) {
  *fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (*fd >= 0) return Status::OK();
  std::string msg = "cannot open " + path + ": " + std::strerror(errno);
  return errno == ENOENT ? NotFound(msg) : Internal(msg);
}

Status LineSource::ReadFirstLine(int fd, const std::string& path, std::string* out) {
  out->clear();
  char chunk[4096];
  uint64_t off = 0;
  while (true) {
    ssize_t n = PreadFully(fd, chunk, sizeof(chunk), off);
    if (n < 0) return Internal("cannot read " + path + ": " + std::strerror(errno));
    if (n == 0) break;
    const char* nl = static_cast<const char*>(std::memchr(chunk, '\n', n));
    if (nl != nullptr) {
      out->append(chunk, nl - chunk);
      break;
    }
    out->append(chunk, n);
    off += n;
    if (out->size() > kMaxLineBytes) {
      return InvalidArgument(path + ":1: line longer than " + std::to_string(kMaxLineBytes) +
                             " bytes (not a text file?)");
    }
  }
  if (!out->empty() && out->back() == '\r') out->pop_back();
  return Status::OK();
}

Status LineSource::CheckFirstLines() {
  for (const FileReadStats& f : file_stats_) {
    int fd;
    FRESHET_RETURN_IF_ERROR(OpenFile(f.path, &fd));
    Status st = ReadFirstLine(fd, f.path, &first_line_);
    ::close(fd);
    FRESHET_RETURN_IF_ERROR(st);
    bool is_header = false;
    if (first_line_fn_) FRESHET_RETURN_IF_ERROR(first_line_fn_(f.path, first_line_, &is_header));
  }
  return Status::OK();
}

void LineSource::CloseRange() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status LineSource::OpenRange(size_t i) {
  CloseRange();
  const FileRange& r = ranges_[i];
  if (r.begin >= r.end) return Status::OK();  // an empty range: nothing to read
  FRESHET_RETURN_IF_ERROR(OpenFile(r.path, &fd_));
  bool is_header = false;
  Status st = ReadFirstLine(fd_, r.path, &first_line_);
  if (st.ok() && first_line_fn_) st = first_line_fn_(r.path, first_line_, &is_header);
  if (!st.ok()) {
    CloseRange();
    return st;
  }
  if (buf_.size() < kInitialBuffer) buf_.resize(kInitialBuffer);
  head_ = tail_ = 0;
  eof_ = false;
  range_end_ = r.end;
  lines_in_range_ = 0;
  std::string_view skipped;
  if (r.begin == 0) {
    read_off_ = line_start_ = 0;
    line_base_ = 0;
    first_line_offset_ = 0;
    if (is_header) {
      FRESHET_ASSIGN_OR_RETURN(bool got, RawLine(&skipped));
      if (got) lines_in_range_ = 1;
    }
  } else {
    // The line holding byte begin - 1 belongs to an earlier range (it starts
    // before `begin`); a line starting exactly at `begin` follows its '\n'.
    read_off_ = line_start_ = r.begin - 1;
    FRESHET_ASSIGN_OR_RETURN(bool got, RawLine(&skipped));
    (void)got;
    first_line_offset_ = line_start_;
    line_base_ = -1;
  }
  return Status::OK();
}

Status LineSource::Fill() {
  if (head_ > 0) {
    std::memmove(&buf_[0], buf_.data() + head_, tail_ - head_);
    tail_ -= head_;
    head_ = 0;
  }
  if (tail_ == buf_.size()) buf_.resize(buf_.size() * 2);
  ssize_t n = PreadFully(fd_, &buf_[tail_], std::min(kReadChunk, buf_.size() - tail_), read_off_);
  if (n < 0) return Internal("cannot read " + path() + ": " + std::strerror(errno));
  if (n == 0) eof_ = true;
  tail_ += n;
  read_off_ += n;
  fill_unix_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  return Status::OK();
}

StatusOr<bool> LineSource::RawLine(std::string_view* line) {
  size_t scanned = 0;  // bytes after head_ known to hold no '\n'
  while (true) {
    const char* start = buf_.data() + head_ + scanned;
    const void* nl = std::memchr(start, '\n', tail_ - head_ - scanned);
    if (nl != nullptr) {
      size_t len = static_cast<const char*>(nl) - (buf_.data() + head_);
      *line = StripCr(std::string_view(buf_.data() + head_, len));
      head_ += len + 1;
      line_start_ += len + 1;
      return true;
    }
    scanned = tail_ - head_;
    if (eof_) {
      if (scanned == 0) return false;
      *line = StripCr(std::string_view(buf_.data() + head_, scanned));
      head_ = tail_;
      line_start_ += scanned;
      return true;
    }
    if (scanned > kMaxLineBytes) {
      return InvalidArgument(path() + ": line at byte " + std::to_string(line_start_) +
                             " is longer than " + std::to_string(kMaxLineBytes) +
                             " bytes (not a text file?)");
    }
    FRESHET_RETURN_IF_ERROR(Fill());
  }
}

StatusOr<bool> LineSource::Next(std::string_view* line) {
  can_mark_ = false;
  while (true) {
    if (fd_ < 0) {
      if (next_range_ >= ranges_.size()) return false;
      FRESHET_RETURN_IF_ERROR(OpenRange(next_range_++));
      continue;
    }
    if (line_start_ >= range_end_) {
      CloseRange();
      continue;
    }
    const uint64_t begin = line_start_;
    FRESHET_ASSIGN_OR_RETURN(bool got, RawLine(line));
    if (!got) {
      CloseRange();
      continue;
    }
    last_begin_ = begin;
    last_end_ = line_start_;
    ++lines_in_range_;
    ++stats_.lines;
    ++stats_.examples;
    stats_.bytes += static_cast<int64_t>(line->size()) + 1;
    ReadStats& fs = file_stats_[file_index_[next_range_ - 1]].stats;
    ++fs.lines;
    ++fs.examples;
    fs.bytes += static_cast<int64_t>(line->size()) + 1;
    can_mark_ = true;
    return true;
  }
}

const std::string& LineSource::path() const {
  static const std::string kNone = "(no file)";
  return next_range_ == 0 ? kNone : ranges_[next_range_ - 1].path;
}

int64_t LineSource::line_number() {
  if (line_base_ < 0) {
    if (fd_ < 0) return 0;
    // Count the lines before the range's first line.
    std::string chunk(1 << 20, '\0');
    int64_t count = 0;
    uint64_t off = 0;
    while (off < first_line_offset_) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(chunk.size(), first_line_offset_ - off));
      ssize_t n = PreadFully(fd_, &chunk[0], want, off);
      if (n <= 0) return 0;
      count += std::count(chunk.data(), chunk.data() + n, '\n');
      off += n;
    }
    line_base_ = count;
  }
  return line_base_ + lines_in_range_;
}

Status LineSource::MarkBad(const std::string& problem) {
  CHECK(can_mark_) << "MarkBad() without a new line from Next()";
  can_mark_ = false;
  ReadStats& fs = file_stats_[file_index_[next_range_ - 1]].stats;
  --stats_.examples;
  ++stats_.bad;
  --fs.examples;
  ++fs.bad;
  const int64_t line = line_number();
  if (fs.bad <= kLogFirstBad || fs.bad % kLogEveryBad == 0) {
    LOG(WARNING) << "bad record " << path() << ":" << line << ": " << problem << " (bad record "
                 << fs.bad << " of this file"
                 << (fs.bad == kLogFirstBad ? "; from now on every 1000th is logged" : "") << ")";
  }
  const double limit = std::max(static_cast<double>(policy_.max_bad_records),
                                policy_.max_bad_ratio * static_cast<double>(stats_.lines));
  if (static_cast<double>(stats_.bad) > limit) {
    std::ostringstream msg;
    msg << "too many bad records in " << path() << ": " << stats_.bad << " bad of " << stats_.lines
        << " lines read (" << fs.bad << " of " << fs.lines
        << " in this file), more than max(max_bad_records " << policy_.max_bad_records
        << ", max_bad_ratio " << policy_.max_bad_ratio << " * lines); last at " << path() << ":"
        << line << ": " << problem;
    return InvalidArgument(msg.str());
  }
  return Status::OK();
}

}  // namespace internal
}  // namespace freshet
