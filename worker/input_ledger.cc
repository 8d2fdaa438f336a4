#include "worker/input_ledger.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace freshet {
namespace {

void AppendInt(int64_t v, std::string* out) {
  char buf[24];
  const int n = std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(v));
  out->append(buf, static_cast<size_t>(n));
}

void AppendUint(uint64_t v, std::string* out) {
  char buf[24];
  const int n = std::snprintf(buf, sizeof(buf), "%llu", static_cast<unsigned long long>(v));
  out->append(buf, static_cast<size_t>(n));
}

// The whole of `s` as a canonical decimal (no sign, no leading zero unless
// "0"), at most `max`.
bool ParseCanonical(std::string_view s, uint64_t max, uint64_t* out) {
  if (s.empty() || s.size() > 20 || (s.size() > 1 && s[0] == '0')) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (max - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

constexpr uint64_t kMaxInt = static_cast<uint64_t>(INT32_MAX);
constexpr uint64_t kMaxInt64 = static_cast<uint64_t>(INT64_MAX);

}  // namespace

void AppendLedgerLine(const LedgerLine& line, std::string* out) {
  switch (line.kind) {
    case LedgerLine::Kind::kAttempt:
      *out += "attempt ";
      AppendInt(line.unix_ms, out);
      *out += " restored_from ";
      AppendInt(line.restored_from, out);
      *out += " workers ";
      AppendInt(line.workers, out);
      break;
    case LedgerLine::Kind::kBatch:
      *out += "b ";
      AppendInt(line.epoch, out);
      *out += ' ';
      AppendInt(line.file, out);
      *out += ' ';
      AppendUint(line.begin, out);
      *out += ' ';
      AppendUint(line.end, out);
      *out += ' ';
      AppendInt(line.records, out);
      break;
    case LedgerLine::Kind::kCheckpoint:
      *out += "c ";
      AppendInt(line.checkpoint_id, out);
      *out += ' ';
      AppendInt(line.step, out);
      break;
  }
  *out += '\n';
}

Status ParseLedgerLine(std::string_view text, LedgerLine* out) {
  std::string_view f[7];
  size_t n = 0, pos = 0;
  while (true) {
    const size_t sp = text.find(' ', pos);
    if (n == 7) return InvalidArgument("ledger line: more than 7 fields");
    f[n++] = text.substr(pos, sp == std::string_view::npos ? std::string_view::npos : sp - pos);
    if (sp == std::string_view::npos) break;
    pos = sp + 1;
  }
  auto field = [&](size_t i, const char* name, uint64_t min, uint64_t max, uint64_t* v) -> Status {
    if (!ParseCanonical(f[i], max, v) || *v < min) {
      return InvalidArgument("ledger line: field " + std::to_string(i + 1) + " (" + name + "): '" +
                             std::string(f[i].substr(0, 24)) + "' is not a decimal integer in [" +
                             std::to_string(min) + ", " + std::to_string(max) + "]");
    }
    return Status::OK();
  };
  uint64_t v[5];
  LedgerLine l;
  if (f[0] == "attempt") {
    if (n != 6 || f[2] != "restored_from" || f[4] != "workers") {
      return InvalidArgument(
          "ledger line: expected 'attempt <unix_ms> restored_from <id> workers <W>'");
    }
    FRESHET_RETURN_IF_ERROR(field(1, "unix_ms", 0, kMaxInt64, &v[0]));
    FRESHET_RETURN_IF_ERROR(field(3, "restored_from", 0, kMaxInt64, &v[1]));
    FRESHET_RETURN_IF_ERROR(field(5, "workers", 1, kMaxInt, &v[2]));
    l.kind = LedgerLine::Kind::kAttempt;
    l.unix_ms = static_cast<int64_t>(v[0]);
    l.restored_from = static_cast<int64_t>(v[1]);
    l.workers = static_cast<int>(v[2]);
  } else if (f[0] == "b") {
    if (n != 6) {
      return InvalidArgument("ledger line: expected 'b <epoch> <file> <begin> <end> <records>'");
    }
    FRESHET_RETURN_IF_ERROR(field(1, "epoch", 0, kMaxInt, &v[0]));
    FRESHET_RETURN_IF_ERROR(field(2, "file", 0, kMaxInt, &v[1]));
    FRESHET_RETURN_IF_ERROR(field(3, "begin", 0, UINT64_MAX, &v[2]));
    FRESHET_RETURN_IF_ERROR(field(4, "end", 0, UINT64_MAX, &v[3]));
    FRESHET_RETURN_IF_ERROR(field(5, "records", 0, kMaxInt64, &v[4]));
    if (v[2] > v[3]) {
      return InvalidArgument("ledger line: interval [" + std::to_string(v[2]) + ", " +
                             std::to_string(v[3]) + ") ends before it begins");
    }
    l.kind = LedgerLine::Kind::kBatch;
    l.epoch = static_cast<int>(v[0]);
    l.file = static_cast<int>(v[1]);
    l.begin = v[2];
    l.end = v[3];
    l.records = static_cast<int64_t>(v[4]);
  } else if (f[0] == "c") {
    if (n != 3) return InvalidArgument("ledger line: expected 'c <checkpoint id> <step>'");
    FRESHET_RETURN_IF_ERROR(field(1, "checkpoint id", 1, kMaxInt64, &v[0]));
    FRESHET_RETURN_IF_ERROR(field(2, "step", 0, kMaxInt64, &v[1]));
    l.kind = LedgerLine::Kind::kCheckpoint;
    l.checkpoint_id = static_cast<int64_t>(v[0]);
    l.step = static_cast<int64_t>(v[1]);
  } else {
    return InvalidArgument("ledger line: unknown kind '" + std::string(f[0].substr(0, 24)) +
                           "' (expected attempt, b or c)");
  }
  *out = l;
  return Status::OK();
}

StatusOr<std::unique_ptr<InputLedger>> InputLedger::Open(const std::string& dir, int worker,
                                                         int num_workers, int64_t restored_from) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Internal(dir + ": cannot create the ledger directory: " + ec.message());
  std::unique_ptr<InputLedger> l(new InputLedger());
  l->path_ = dir + "/worker-" + std::to_string(worker) + ".ledger";
  l->fd_ = ::open(l->path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (l->fd_ < 0) return Internal(l->path_ + ": cannot open: " + std::strerror(errno));
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  LedgerLine line;
  line.kind = LedgerLine::Kind::kAttempt;
  line.unix_ms = now_ms;
  line.restored_from = restored_from;
  line.workers = num_workers;
  AppendLedgerLine(line, &l->buf_);
  FRESHET_RETURN_IF_ERROR(l->Write());
  return l;
}

InputLedger::~InputLedger() {
  if (fd_ >= 0) ::close(fd_);
}

Status InputLedger::Write() {
  size_t done = 0;
  while (done < buf_.size()) {
    const ssize_t n = ::write(fd_, buf_.data() + done, buf_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Internal(path_ + ": cannot append: " + std::strerror(errno));
    // A short write (disk full) leaves a partial line; the next write
    // completes the bytes, and readers drop lines that do not parse.
    done += static_cast<size_t>(n);
  }
  return Status::OK();
}

Status InputLedger::AppendBatch(int epoch, const std::vector<InputInterval>& intervals) {
  if (intervals.empty()) return Status::OK();
  buf_.clear();
  LedgerLine line;
  line.kind = LedgerLine::Kind::kBatch;
  line.epoch = epoch;
  for (const InputInterval& i : intervals) {
    line.file = i.file;
    line.begin = i.begin;
    line.end = i.end;
    line.records = i.records;
    AppendLedgerLine(line, &buf_);
  }
  return Write();
}

Status InputLedger::AppendCheckpoint(int64_t id, int64_t step) {
  buf_.clear();
  LedgerLine line;
  line.kind = LedgerLine::Kind::kCheckpoint;
  line.checkpoint_id = id;
  line.step = step;
  AppendLedgerLine(line, &buf_);
  return Write();
}

}  // namespace freshet
