#include "worker/data/example_io.h"

#include <glog/logging.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <set>
#include <string_view>
#include <utility>

#include "worker/data/internal/line_source.h"
#include "worker/data/internal/parse_util.h"

namespace freshet {
namespace {

constexpr std::string_view kMagic = "#freshet-examples v1";

// Parses a header line into its column names.
Status ParseHeader(const std::string& path, std::string_view line,
                   std::vector<std::string>* columns) {
  std::vector<std::string_view> fields;
  internal::SplitView(line, '\t', &fields);
  if (fields[0] != kMagic) {
    return InvalidArgument(
        path + ":1: not a freshet example file: the first line must start with \"" +
        std::string(kMagic) + "\", got \"" + std::string(line.substr(0, 60)) + "\"");
  }
  columns->clear();
  std::set<std::string_view> seen;
  for (size_t i = 1; i < fields.size(); ++i) {
    if (fields[i].empty()) return InvalidArgument(path + ":1: empty column name");
    if (!seen.insert(fields[i]).second) {
      return InvalidArgument(path + ":1: duplicate column \"" + std::string(fields[i]) + "\"");
    }
    columns->emplace_back(fields[i]);
  }
  return Status::OK();
}

bool HasTabOrNewline(const std::string& s) {
  return s.find_first_of("\t\n\r") != std::string::npos;
}

void AppendFloat(float v, std::string* out) {
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  (void)ec;
  out->append(buf, p);
}

void AppendExampleLine(const Example& ex, std::string* out) {
  if (ex.label == 0.0f) {
    out->push_back('0');
  } else if (ex.label == 1.0f) {
    out->push_back('1');
  } else {
    AppendFloat(ex.label, out);
  }
  out->push_back('\t');
  internal::AppendInt(ex.time, out);
  out->push_back('\t');
  out->append(ex.user);
  out->push_back('\t');
  if (ex.oracle >= 0) AppendFloat(ex.oracle, out);
  for (const std::string& v : ex.values) {
    out->push_back('\t');
    out->append(v);
  }
}

}  // namespace

namespace internal {

// ParseExampleLine on a string_view (the readers' lines are views).
Status ParseExampleFields(std::string_view line, size_t num_columns, Example* ex) {
  const size_t want = 4 + num_columns;
  size_t field = 0;
  size_t start = 0;
  ex->values.resize(num_columns);
  while (true) {
    size_t pos = line.find('\t', start);
    std::string_view f =
        line.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start);
    if (field >= want) {
      return InvalidArgument("too many fields: expected " + std::to_string(want) + " (4 + " +
                             std::to_string(num_columns) + " columns)");
    }
    switch (field) {
      case 0: {
        double label;
        if (!ParseDouble(f, &label) || (label != 0 && label != 1)) {
          return InvalidArgument("bad label \"" + std::string(f.substr(0, 40)) +
                                 "\" (want 0 or 1)");
        }
        ex->label = static_cast<float>(label);
        break;
      }
      case 1:
        if (!ParseInt64(f, &ex->time)) {
          return InvalidArgument("bad time \"" + std::string(f.substr(0, 40)) +
                                 "\" (want integer unix seconds)");
        }
        break;
      case 2:
        ex->user.assign(f.data(), f.size());
        break;
      case 3: {
        double oracle = -1;
        if (!f.empty() && (!ParseDouble(f, &oracle) || oracle < 0 || oracle > 1)) {
          return InvalidArgument("bad oracle \"" + std::string(f.substr(0, 40)) +
                                 "\" (want empty or a probability)");
        }
        ex->oracle = static_cast<float>(oracle);
        break;
      }
      default:
        ex->values[field - 4].assign(f.data(), f.size());
    }
    ++field;
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  if (field != want) {
    return InvalidArgument("too few fields: " + std::to_string(field) + ", expected " +
                           std::to_string(want) + " (4 + " + std::to_string(num_columns) +
                           " columns)");
  }
  return Status::OK();
}

}  // namespace internal

StatusOr<std::vector<FileRange>> SplitFiles(const std::vector<std::string>& files, int shard,
                                            int num_shards, uint64_t block_bytes) {
  std::vector<FileRange> spans;
  for (size_t i = 0; i < files.size(); ++i) {
    struct stat st;
    if (::stat(files[i].c_str(), &st) != 0) {
      std::string msg = "cannot stat " + files[i] + ": " + std::strerror(errno);
      return errno == ENOENT ? NotFound(msg) : Internal(msg);
    }
    if (!S_ISREG(st.st_mode)) return InvalidArgument(files[i] + " is not a regular file");
    spans.push_back({files[i], 0, static_cast<uint64_t>(st.st_size), static_cast<int>(i)});
  }
  return SplitRanges(spans, shard, num_shards, block_bytes);
}

std::vector<FileRange> SplitRanges(const std::vector<FileRange>& spans, int shard, int num_shards,
                                   uint64_t block_bytes) {
  CHECK_GT(num_shards, 0);
  CHECK(shard >= 0 && shard < num_shards) << "shard " << shard << " of " << num_shards;
  std::vector<uint64_t> sizes;
  uint64_t total = 0;
  for (const FileRange& s : spans) {
    CHECK_LE(s.begin, s.end) << s.path;
    sizes.push_back(s.end - s.begin);
    total += sizes.back();
  }
  using u128 = unsigned __int128;
  // The byte intervals [lo, hi) of the concatenation this shard owns: one
  // contiguous slice, or every num_shards-th block of block_bytes.
  std::vector<std::pair<uint64_t, uint64_t>> owned;
  if (block_bytes == 0) {
    owned.emplace_back(static_cast<uint64_t>(u128(total) * shard / num_shards),
                       static_cast<uint64_t>(u128(total) * (shard + 1) / num_shards));
  } else {
    for (uint64_t b = static_cast<uint64_t>(shard) * block_bytes; b < total;
         b += static_cast<uint64_t>(num_shards) * block_bytes) {
      owned.emplace_back(b, std::min(total, b + block_bytes));
    }
  }
  const uint64_t lo = owned.empty() ? total : owned.front().first;
  std::vector<FileRange> ranges;
  for (const auto& [olo, ohi] : owned) {
    uint64_t off = 0;
    for (size_t i = 0; i < spans.size(); ++i) {
      const uint64_t b = std::max(olo, off), e = std::min(ohi, off + sizes[i]);
      if (b < e) {
        ranges.push_back({spans[i].path, spans[i].begin + (b - off), spans[i].begin + (e - off),
                          spans[i].file_index});
      }
      off += sizes[i];
    }
  }
  uint64_t off = 0;
  if (ranges.empty() && !spans.empty()) {
    // No bytes for this shard: an empty range still names a file, so the
    // reader knows the columns.
    size_t i = 0;
    while (i + 1 < spans.size() && off + sizes[i] <= lo) off += sizes[i++];
    const uint64_t at = spans[i].begin + std::min(lo - std::min(lo, off), sizes[i]);
    ranges.push_back({spans[i].path, at, at, spans[i].file_index});
  }
  return ranges;
}

uint64_t TrainingBlockBytes(const std::vector<std::string>& files, int num_shards) {
  uint64_t total = 0;
  for (const std::string& f : files) {
    struct stat st;
    if (::stat(f.c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_size);
  }
  const uint64_t per = total / (static_cast<uint64_t>(std::max(1, num_shards)) * 64);
  return std::clamp<uint64_t>(per, 64 << 10, 4 << 20);
}

StatusOr<std::vector<std::string>> ReadExampleHeader(const std::string& path) {
  int fd;
  FRESHET_RETURN_IF_ERROR(internal::LineSource::OpenFile(path, &fd));
  std::string line;
  Status st = internal::LineSource::ReadFirstLine(fd, path, &line);
  ::close(fd);
  FRESHET_RETURN_IF_ERROR(st);
  std::vector<std::string> columns;
  FRESHET_RETURN_IF_ERROR(ParseHeader(path, line, &columns));
  return columns;
}

StatusOr<std::unique_ptr<ExampleReader>> ExampleReader::Open(std::vector<FileRange> ranges,
                                                             BadRecordPolicy policy) {
  std::unique_ptr<ExampleReader> reader(new ExampleReader());
  ExampleReader* r = reader.get();
  // Every file's first line must be the header of the first file.
  auto check_header = [r](const std::string& path, std::string_view line,
                          bool* is_header) -> Status {
    std::vector<std::string> columns;
    FRESHET_RETURN_IF_ERROR(ParseHeader(path, line, &columns));
    if (!r->header_read_) {
      r->columns_ = columns;
      r->header_read_ = true;
    } else if (columns != r->columns_) {
      return InvalidArgument(path + ":1: columns differ from the other example files'");
    }
    *is_header = true;
    return Status::OK();
  };
  for (const FileRange& fr : ranges) reader->total_bytes_ += fr.end - fr.begin;
  reader->source_ = std::make_unique<internal::LineSource>(std::move(ranges), policy, check_header);
  FRESHET_RETURN_IF_ERROR(reader->source_->CheckFirstLines());
  return reader;
}

StatusOr<std::unique_ptr<ExampleReader>> ExampleReader::OpenFiles(
    const std::vector<std::string>& files, BadRecordPolicy policy) {
  // One shard of one: every file whole.
  FRESHET_ASSIGN_OR_RETURN(std::vector<FileRange> ranges, SplitFiles(files, 0, 1));
  return Open(std::move(ranges), policy);
}

ExampleReader::~ExampleReader() = default;

const ReadStats& ExampleReader::stats() const { return source_->stats(); }

StatusOr<ExampleSource::Outcome> ExampleReader::Poll(Example* ex,
                                                     std::chrono::steady_clock::time_point) {
  FRESHET_ASSIGN_OR_RETURN(bool got, Next(ex));
  return got ? Outcome::kExample : Outcome::kEnd;
}

StatusOr<bool> ExampleReader::Next(Example* ex) {
  std::string_view line;
  while (true) {
    FRESHET_ASSIGN_OR_RETURN(bool got, source_->Next(&line));
    if (!got) return false;
    Status st = internal::ParseExampleFields(line, columns_.size(), ex);
    NoteLine(st.ok());
    if (st.ok()) {
      // A file example's label is known when its line is read.
      ex->read_unix_ms = ex->label_unix_ms = source_->read_unix_ms();
      return true;
    }
    FRESHET_RETURN_IF_ERROR(source_->MarkBad(st.message()));
  }
}

void ExampleReader::NoteLine(bool good) {
  const int file = source_->file_index();
  const uint64_t b = source_->line_begin(), e = source_->line_end();
  if (consumed_.empty() || consumed_.back().file != file || consumed_.back().end != b) {
    consumed_.push_back({file, b, e, 0});
  } else {
    consumed_.back().end = e;
  }
  if (good) ++consumed_.back().records;
}

void ExampleReader::TakeConsumed(ConsumedInput* out) {
  out->intervals.insert(out->intervals.end(), consumed_.begin(), consumed_.end());
  consumed_.clear();
}

void ExampleReader::UncountLast() {
  if (!consumed_.empty() && consumed_.back().records > 0) --consumed_.back().records;
}

Status ParseExampleLine(const std::string& line, size_t num_columns, Example* ex) {
  return internal::ParseExampleFields(line, num_columns, ex);
}

std::string FormatExampleLine(const Example& ex) {
  std::string out;
  AppendExampleLine(ex, &out);
  return out;
}

StatusOr<std::unique_ptr<ExampleWriter>> ExampleWriter::Open(
    const std::string& path, const std::vector<std::string>& columns) {
  std::set<std::string> seen;
  for (const std::string& c : columns) {
    if (c.empty() || HasTabOrNewline(c)) {
      return InvalidArgument("bad column name \"" + c + "\" for " + path +
                             " (empty, or has a tab or newline)");
    }
    if (!seen.insert(c).second)
      return InvalidArgument("duplicate column \"" + c + "\" for " + path);
  }
  std::unique_ptr<ExampleWriter> w(new ExampleWriter());
  w->path_ = path;
  w->tmp_path_ = path + ".tmp";
  w->num_columns_ = columns.size();
  w->file_ = std::fopen(w->tmp_path_.c_str(), "wb");
  if (w->file_ == nullptr) {
    return Internal("cannot create " + w->tmp_path_ + ": " + std::strerror(errno));
  }
  std::setvbuf(w->file_, nullptr, _IOFBF, 1 << 20);
  std::string header(kMagic);
  for (const std::string& c : columns) header += "\t" + c;
  header += "\n";
  if (std::fwrite(header.data(), 1, header.size(), w->file_) != header.size()) {
    return Internal("cannot write " + w->tmp_path_ + ": " + std::strerror(errno));
  }
  return w;
}

ExampleWriter::~ExampleWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    ::unlink(tmp_path_.c_str());
  }
}

Status ExampleWriter::Write(const Example& ex) {
  if (file_ == nullptr) return FailedPrecondition("ExampleWriter for " + path_ + " is closed");
  if (ex.values.size() != num_columns_) {
    return InvalidArgument("example has " + std::to_string(ex.values.size()) +
                           " values, the file " + path_ + " has " + std::to_string(num_columns_) +
                           " columns");
  }
  if (ex.label != 0 && ex.label != 1) {
    return InvalidArgument("label " + std::to_string(ex.label) + " is not 0 or 1");
  }
  if (ex.oracle > 1) return InvalidArgument("oracle " + std::to_string(ex.oracle) + " > 1");
  if (HasTabOrNewline(ex.user)) return InvalidArgument("user has a tab or newline");
  for (size_t i = 0; i < ex.values.size(); ++i) {
    if (HasTabOrNewline(ex.values[i])) {
      return InvalidArgument("value of column " + std::to_string(i) + " has a tab or newline");
    }
  }
  line_.clear();
  AppendExampleLine(ex, &line_);
  line_.push_back('\n');
  if (std::fwrite(line_.data(), 1, line_.size(), file_) != line_.size()) {
    return Internal("cannot write " + tmp_path_ + ": " + std::strerror(errno));
  }
  ++written_;
  return Status::OK();
}

Status ExampleWriter::Close() {
  if (file_ == nullptr) return FailedPrecondition("ExampleWriter for " + path_ + " is closed");
  std::FILE* f = file_;
  file_ = nullptr;
  bool ok = std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  int err = errno;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) {
    ::unlink(tmp_path_.c_str());
    return Internal("cannot write " + tmp_path_ + ": " + std::strerror(err));
  }
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    err = errno;
    ::unlink(tmp_path_.c_str());
    return Internal("cannot rename " + tmp_path_ + " to " + path_ + ": " + std::strerror(err));
  }
  return Status::OK();
}

}  // namespace freshet
