#include "worker/data/validation_split.h"

#include <glog/logging.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string_view>

namespace freshet {
namespace {

// Calls fn(file, line_number, offset, line) for every line of every file
// after its header (line numbers 1-based, the header is line 1); stops
// early when fn returns false.
Status ForEachLine(const std::vector<std::string>& files,
                   const std::function<bool(int file, int64_t line_no, uint64_t offset,
                                            std::string_view line)>& fn) {
  std::vector<char> buf(1 << 20);
  std::string carry;
  for (size_t f = 0; f < files.size(); ++f) {
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> in(std::fopen(files[f].c_str(), "rb"),
                                                       &std::fclose);
    if (!in) return NotFound(files[f] + ": cannot open: " + std::strerror(errno));
    carry.clear();
    uint64_t carry_offset = 0, pos = 0;
    int64_t line_no = 0;
    bool stop = false;
    auto emit = [&](std::string_view line, uint64_t offset) {
      ++line_no;
      if (line_no == 1) return;  // the header
      if (line.empty()) return;
      if (!fn(static_cast<int>(f), line_no, offset, line)) stop = true;
    };
    while (!stop) {
      const size_t got = std::fread(buf.data(), 1, buf.size(), in.get());
      if (got == 0) {
        if (std::ferror(in.get())) return Internal(files[f] + ": read error");
        break;
      }
      size_t start = 0;
      for (size_t i = 0; i < got && !stop; ++i) {
        if (buf[i] != '\n') continue;
        if (carry.empty()) {
          emit(std::string_view(buf.data() + start, i - start), pos + start);
        } else {
          carry.append(buf.data() + start, i - start);
          emit(carry, carry_offset);
          carry.clear();
        }
        start = i + 1;
      }
      if (!stop && start < got) {
        if (carry.empty()) carry_offset = pos + start;
        carry.append(buf.data() + start, got - start);
      }
      pos += got;
    }
    if (!stop && !carry.empty()) emit(carry, carry_offset);  // no final newline
    if (stop) return Status::OK();
  }
  return Status::OK();
}

// The time field of an example line (label TAB time TAB ...); false if it
// does not parse.
bool LineTime(std::string_view line, int64_t* t) {
  const size_t a = line.find('\t');
  if (a == std::string_view::npos) return false;
  const size_t b = line.find('\t', a + 1);
  if (b == std::string_view::npos) return false;
  const char* first = line.data() + a + 1;
  const char* last = line.data() + b;
  auto [p, ec] = std::from_chars(first, last, *t);
  return ec == std::errc() && p == last;
}

}  // namespace

StatusOr<ValidationCut> FindValidationCut(const std::vector<std::string>& files, double fraction,
                                          const BadRecordPolicy& policy) {
  CHECK(fraction > 0 && fraction < 1) << fraction;
  // Pass 1: count the good lines and check the time order.
  int64_t n = 0, bad = 0, lines = 0;
  int64_t prev = INT64_MIN;
  std::string prev_where;
  Status order;
  FRESHET_RETURN_IF_ERROR(
      ForEachLine(files, [&](int f, int64_t line_no, uint64_t, std::string_view line) {
        ++lines;
        int64_t t;
        if (!LineTime(line, &t)) {
          ++bad;
          return true;
        }
        if (t < prev) {
          order = InvalidArgument(
              files[f] + ":" + std::to_string(line_no) + ": time " + std::to_string(t) +
              " is before the previous example's " + std::to_string(prev) + " (" + prev_where +
              "); data.validation_fraction splits by time and needs the training files in time "
              "order (within each file, and across files in the order data.train_files lists "
              "them)");
          return false;
        }
        if (t != prev) prev_where = files[f] + ":" + std::to_string(line_no);
        prev = t;
        ++n;
        return true;
      }));
  FRESHET_RETURN_IF_ERROR(order);
  const double limit = std::max<double>(policy.max_bad_records, policy.max_bad_ratio * lines);
  if (bad > limit) {
    return InvalidArgument("data.validation_fraction: " + std::to_string(bad) + " of " +
                           std::to_string(lines) +
                           " training lines have no readable time (more than the bad-record "
                           "policy allows)");
  }
  if (n == 0)
    return InvalidArgument("data.validation_fraction: the training files hold no example");
  const int64_t k = static_cast<int64_t>(std::floor((1.0 - fraction) * static_cast<double>(n)));
  // Pass 2: T = time of good line k; the cut is the first line with time T
  // (files are time-ordered, so every later line has time >= T).
  ValidationCut cut;
  int64_t i = 0, run_start_index = 0, run_time = INT64_MIN;
  int run_file = 0;
  uint64_t run_offset = 0;
  FRESHET_RETURN_IF_ERROR(
      ForEachLine(files, [&](int f, int64_t, uint64_t offset, std::string_view line) {
        int64_t t;
        if (!LineTime(line, &t)) return true;
        if (t != run_time) {
          run_time = t;
          run_start_index = i;
          run_file = f;
          run_offset = offset;
        }
        if (i == k) return false;
        ++i;
        return true;
      }));
  cut.file = run_file;
  cut.offset = run_offset;
  cut.time = run_time;
  cut.train_examples = run_start_index;
  cut.validation_examples = n - run_start_index;
  cut.bad_lines = bad;
  if (cut.train_examples == 0) {
    return InvalidArgument("data.validation_fraction: " + std::to_string(fraction) +
                           " leaves no training example: the " + std::to_string(n) +
                           " training examples from time " + std::to_string(run_time) +
                           " on all go to validation (examples sharing a second are never split)");
  }
  return cut;
}

std::vector<FileRange> TrainingSpans(const std::vector<std::string>& files,
                                     const std::vector<uint64_t>& sizes, const ValidationCut& cut) {
  std::vector<FileRange> spans;
  for (int i = 0; i < static_cast<int>(files.size()) && i <= cut.file; ++i) {
    const uint64_t end = i < cut.file ? sizes[i] : std::min(cut.offset, sizes[i]);
    if (end > 0) spans.push_back({files[i], 0, end, i});
  }
  return spans;
}

std::vector<FileRange> ValidationSpans(const std::vector<std::string>& files,
                                       const std::vector<uint64_t>& sizes,
                                       const ValidationCut& cut) {
  std::vector<FileRange> spans;
  for (int i = cut.file; i < static_cast<int>(files.size()); ++i) {
    const uint64_t begin = i == cut.file ? std::min(cut.offset, sizes[i]) : 0;
    if (begin < sizes[i]) spans.push_back({files[i], begin, sizes[i], i});
  }
  return spans;
}

}  // namespace freshet
