#include "worker/data/internal/task_util.h"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "worker/data/internal/parse_util.h"

namespace freshet {
namespace internal {

uint64_t Rng::Next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t Rng::Uniform(uint64_t n) {
  // Rejection: draws below `limit` are unbiased modulo n.
  const uint64_t limit =
      std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
  uint64_t x;
  do {
    x = Next();
  } while (x >= limit);
  return x % n;
}

int Log2Bucket(int64_t n) {
  uint64_t v = static_cast<uint64_t>(n < 0 ? 0 : n) + 1;
  int b = 0;
  while (v >>= 1) ++b;
  return b;
}

std::string Token(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (std::isspace(static_cast<unsigned char>(c))) c = '_';
  }
  return out;
}

int64_t TimeSplitBoundary(const std::vector<int64_t>& sorted_times, double train_fraction) {
  const size_t n = sorted_times.size();
  const size_t k = static_cast<size_t>(static_cast<double>(n) * train_fraction);
  if (k >= n) return std::numeric_limits<int64_t>::max();
  return sorted_times[k];
}

StatusOr<std::unique_ptr<SplitWriter>> SplitWriter::Open(const std::string& out_dir,
                                                         const std::vector<std::string>& columns) {
  std::unique_ptr<SplitWriter> w(new SplitWriter());
  w->train_path_ = out_dir + "/train.examples";
  w->holdout_path_ = out_dir + "/holdout.examples";
  w->columns_ = columns;
  FRESHET_ASSIGN_OR_RETURN(w->train_, ExampleWriter::Open(w->train_path_, columns));
  FRESHET_ASSIGN_OR_RETURN(w->holdout_, ExampleWriter::Open(w->holdout_path_, columns));
  return w;
}

Status SplitWriter::Write(const Example& ex, bool holdout) {
  positives_[holdout] += ex.label > 0.5f;
  return (holdout ? holdout_ : train_)->Write(ex);
}

Status SplitWriter::Close(TaskOutput* out) {
  out->train_file = train_path_;
  out->holdout_file = holdout_path_;
  out->columns = columns_;
  out->train_examples = train_->written();
  out->holdout_examples = holdout_->written();
  out->train_positives = positives_[0];
  out->holdout_positives = positives_[1];
  FRESHET_RETURN_IF_ERROR(train_->Close());
  return holdout_->Close();
}

void TaskInfo::AddReadStats(const std::vector<FileReadStats>& stats, int64_t* bad_total) {
  for (const FileReadStats& f : stats) {
    Add("input", f.path + " lines=" + std::to_string(f.stats.lines) + " good=" +
                     std::to_string(f.stats.examples) + " bad=" + std::to_string(f.stats.bad));
    *bad_total += f.stats.bad;
  }
}

void TaskInfo::AddOutput(const TaskOutput& out) {
  std::string columns;
  for (const std::string& c : out.columns) columns += (columns.empty() ? "" : " ") + c;
  Add("columns", columns);
  Add("train_file", out.train_file);
  Add("train_examples", out.train_examples);
  Add("train_positives", out.train_positives);
  Add("holdout_file", out.holdout_file);
  Add("holdout_examples", out.holdout_examples);
  Add("holdout_positives", out.holdout_positives);
  Add("bad_records", out.bad_records);
}

Status TaskInfo::Write(const std::string& out_dir) const {
  const std::string path = out_dir + "/task_info.txt";
  const std::string tmp = path + ".tmp";
  std::string text;
  for (const auto& [k, v] : lines_) text += k + ": " + v + "\n";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return Internal("cannot create " + tmp + ": " + std::strerror(errno));
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Internal("cannot write " + path + ": " + std::strerror(err));
  }
  return Status::OK();
}

std::string FormatTime(int64_t t) {
  if (t == std::numeric_limits<int64_t>::max()) return "none";
  CivilTime c = ToCivil(t);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04lld-%02d-%02d %02d:%02d:%02d UTC",
                static_cast<long long>(c.year), c.month, c.day, c.hour, c.minute, c.second);
  return std::to_string(t) + " (" + buf + ")";
}

}  // namespace internal
}  // namespace freshet
