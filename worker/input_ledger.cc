#include "worker/input_ledger.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
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

}  // namespace

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
  l->buf_ = "attempt ";
  AppendInt(now_ms, &l->buf_);
  l->buf_ += " restored_from ";
  AppendInt(restored_from, &l->buf_);
  l->buf_ += " workers ";
  AppendInt(num_workers, &l->buf_);
  l->buf_ += '\n';
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
  for (const InputInterval& i : intervals) {
    buf_ += "b ";
    AppendInt(epoch, &buf_);
    buf_ += ' ';
    AppendInt(i.file, &buf_);
    buf_ += ' ';
    AppendUint(i.begin, &buf_);
    buf_ += ' ';
    AppendUint(i.end, &buf_);
    buf_ += ' ';
    AppendInt(i.records, &buf_);
    buf_ += '\n';
  }
  return Write();
}

Status InputLedger::AppendCheckpoint(int64_t id, int64_t step) {
  buf_ = "c ";
  AppendInt(id, &buf_);
  buf_ += ' ';
  AppendInt(step, &buf_);
  buf_ += '\n';
  return Write();
}

}  // namespace freshet
