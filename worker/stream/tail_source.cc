#include "worker/stream/tail_source.h"

#include <dirent.h>
#include <fcntl.h>
#include <glog/logging.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <set>
#include <sstream>
#include <thread>

#include "worker/data/internal/parse_util.h"

namespace freshet {
namespace {

using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;

constexpr int kAbsentScans = 3;

std::string LiveName(int partition) { return "part-" + std::to_string(partition) + ".events"; }

bool EndsWith(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// Name order with digit runs compared as numbers: "x.2" < "x.10".
bool NaturalLess(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) &&
        std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      const std::string_view da = std::string_view(a).substr(i, ie - i);
      const std::string_view db = std::string_view(b).substr(j, je - j);
      if (da.size() != db.size()) return da.size() < db.size();
      if (da != db) return da < db;
      i = ie;
      j = je;
      continue;
    }
    if (a[i] != b[j]) return a[i] < b[j];
    ++i;
    ++j;
  }
  return a.size() - i < b.size() - j;
}

}  // namespace

struct TailSource::File {
  std::string name;  // current name in the directory
  std::string path;  // dir/name: the origin of its lines
  uint64_t dev = 0, ino = 0;
  int64_t mtime_ns = 0;
  int partition = 0;
  int fd = -1;
  bool live = true;          // named part-<P>.events
  bool present = true;       // in the directory (see Scan)
  int absent_scans = 0;      // consecutive listings without it
  uint64_t read_off = 0;     // file offset of buf's end
  int64_t read_unix_ms = 0;  // wall time of the last read that got bytes
  std::string buf;           // bytes read, not yet delivered: buf[pos..]
  size_t pos = 0;
  uint64_t delivered = 0;  // offset after the delivered lines
  int64_t lines = 0;
  bool has_header = false;
  std::string header;
  bool artificial_newline = false;  // a final unterminated line was given a '\n'

  ~File() {
    if (fd >= 0) close(fd);
  }
  bool HasLine() const { return std::memchr(buf.data() + pos, '\n', buf.size() - pos) != nullptr; }
  bool HasPartial() const { return pos < buf.size(); }
};

std::string TailPosition::Serialize() const {
  std::string out = "freshet-tail-position v1\n";
  for (const auto& f : files) {
    out += f.name + "\t" + std::to_string(f.dev) + "\t" + std::to_string(f.inode) + "\t" +
           std::to_string(f.offset) + "\t" + std::to_string(f.lines) + "\n";
  }
  return out;
}

StatusOr<TailPosition> TailPosition::Parse(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != "freshet-tail-position v1") {
    return InvalidArgument("tail position: line 1: expected 'freshet-tail-position v1'");
  }
  TailPosition p;
  int n = 1;
  std::vector<std::string_view> f;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    internal::SplitView(line, '\t', &f);
    const std::string at = "tail position: line " + std::to_string(n) + ": ";
    if (f.size() != 5)
      return InvalidArgument(at + "expected 5 fields, got " + std::to_string(f.size()));
    FilePosition fp;
    fp.name.assign(f[0]);
    int64_t v[4];
    const char* names[4] = {"dev", "inode", "offset", "lines"};
    for (int i = 0; i < 4; ++i) {
      if (!internal::ParseInt64(f[i + 1], &v[i]) || v[i] < 0) {
        return InvalidArgument(at + "field " + names[i] + ": '" + std::string(f[i + 1]) +
                               "' is not an integer >= 0");
      }
    }
    fp.dev = v[0];
    fp.inode = v[1];
    fp.offset = v[2];
    fp.lines = v[3];
    p.files.push_back(fp);
  }
  return p;
}

int StreamFilePartition(const std::string& name) {
  if (name.compare(0, 5, "part-") != 0 || EndsWith(name, ".tmp")) return -1;
  size_t i = 5;
  int64_t p = 0;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9' && p < (1 << 30)) {
    p = p * 10 + (name[i] - '0');
    ++i;
  }
  if (i == 5 || i >= name.size() || name[i] != '.' || p >= (1 << 30)) return -1;
  if (name.compare(i, 7, ".events") != 0) return -1;
  return static_cast<int>(p);
}

TailSource::TailSource(const TailOptions& options) : options_(options) { rr_ = queues_.end(); }
TailSource::~TailSource() = default;

StatusOr<std::unique_ptr<TailSource>> TailSource::Open(const TailOptions& options,
                                                       const TailPosition* restore) {
  if (options.num_workers <= 0 || options.worker < 0 || options.worker >= options.num_workers) {
    return InvalidArgument("tail source: worker " + std::to_string(options.worker) + " of " +
                           std::to_string(options.num_workers));
  }
  if (options.read_chunk == 0) return InvalidArgument("tail source: read_chunk must be > 0");
  struct stat st;
  if (stat(options.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return NotFound(options.dir + ": stream directory does not exist");
  }
  std::unique_ptr<TailSource> t(new TailSource(options));
  if (restore != nullptr) {
    for (const auto& f : restore->files) t->restore_[{f.dev, f.inode}] = f;
  }
  FRESHET_RETURN_IF_ERROR(t->Scan());
  return t;
}

Status TailSource::ReadHeader(File* f) {
  // Resuming inside a file: its header is its first line.
  std::string head;
  char chunk[4096];
  while (true) {
    const ssize_t n = pread(f->fd, chunk, sizeof(chunk), head.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Internal(f->path + ": read failed: " + std::strerror(errno));
    const void* nl = n > 0 ? std::memchr(chunk, '\n', n) : nullptr;
    if (nl != nullptr) {
      head.append(chunk, static_cast<const char*>(nl) - chunk);
      break;
    }
    if (n == 0 || head.size() > (1u << 20)) {
      return DataLoss(f->path + ": resuming at byte " + std::to_string(f->delivered) +
                      " but the file has no complete first line");
    }
    head.append(chunk, n);
  }
  if (!head.empty() && head.back() == '\r') head.pop_back();
  f->header = head;
  f->has_header = true;
  return Status::OK();
}

Status TailSource::Scan() {
  last_scan_ = Clock::now();
  struct stat st;
  const bool end_now = stat((options_.dir + "/_END").c_str(), &st) == 0;
  DIR* d = opendir(options_.dir.c_str());
  if (d == nullptr) return Internal(options_.dir + ": cannot list: " + std::strerror(errno));
  struct Seen {
    std::string name;
    int partition;
    int64_t mtime_ns;
  };
  std::map<std::pair<uint64_t, uint64_t>, Seen> seen;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    const int p = StreamFilePartition(name);
    if (p < 0 || p % options_.num_workers != options_.worker) continue;
    if (stat((options_.dir + "/" + name).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    seen[{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)}] = {
        name, p, static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
  }
  closedir(d);

  auto update = [&](File* f) {
    auto it = seen.find({f->dev, f->ino});
    if (it == seen.end() || it->second.partition != f->partition) {
      // readdir(3) may miss entries while the directory changes (rotation),
      // so absence alone needs confirming: the open file has no links left,
      // or it was missing from kAbsentScans listings in a row.
      ++f->absent_scans;
      struct stat fst;
      const bool unlinked = f->fd >= 0 && fstat(f->fd, &fst) == 0 && fst.st_nlink == 0;
      if (unlinked || f->absent_scans >= kAbsentScans) {
        f->present = false;
        f->live = false;
      }
      return;
    }
    f->absent_scans = 0;
    if (it->second.name != f->name) {
      if (f->live) ++rotations_;
      f->name = it->second.name;
      f->path = options_.dir + "/" + f->name;
      f->live = f->name == LiveName(f->partition);
    }
    seen.erase(it);
  };
  for (auto& [p, q] : queues_) {
    for (auto& f : q) update(f.get());
  }
  for (auto it = finished_.begin(); it != finished_.end();) {
    update(it->get());
    it = (*it)->present ? it + 1 : finished_.erase(it);  // gone: forget its position
  }
  // New files: open, resume if the position knows them, queue oldest first.
  std::map<int, std::vector<std::unique_ptr<File>>> fresh;
  for (auto& [id, s] : seen) {
    auto f = std::make_unique<File>();
    f->name = s.name;
    f->path = options_.dir + "/" + s.name;
    f->dev = id.first;
    f->ino = id.second;
    f->mtime_ns = s.mtime_ns;
    f->partition = s.partition;
    f->live = s.name == LiveName(s.partition);
    f->fd = open(f->path.c_str(), O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
      if (errno == ENOENT) continue;  // removed since the listing
      return Internal(f->path + ": cannot open: " + std::strerror(errno));
    }
    auto r = restore_.find(id);
    if (r != restore_.end()) {
      if (fstat(f->fd, &st) == 0 && static_cast<uint64_t>(st.st_size) >= r->second.offset) {
        f->read_off = f->delivered = r->second.offset;
        f->lines = r->second.lines;
        if (f->delivered > 0) FRESHET_RETURN_IF_ERROR(ReadHeader(f.get()));
      } else {
        LOG(WARNING) << f->path << ": shorter than its saved position (" << r->second.offset
                     << " bytes); reading it from the start";
      }
      restore_.erase(r);
    }
    fresh[s.partition].push_back(std::move(f));
  }
  for (auto& [p, files] : fresh) {
    std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) {
      if (a->live != b->live) return b->live;
      if (a->mtime_ns != b->mtime_ns) return a->mtime_ns < b->mtime_ns;
      return NaturalLess(a->name, b->name);
    });
    auto& q = queues_[p];
    for (auto& f : files) q.push_back(std::move(f));
  }
  end_marker_ = end_now;
  return Status::OK();
}

StatusOr<bool> TailSource::Fill(std::deque<std::unique_ptr<File>>* q) {
  while (!q->empty()) {
    File* f = q->front().get();
    if (f->has_header && f->HasLine()) {
      current_ = f;
      return true;
    }
    if (f->pos > 0) {
      f->buf.erase(0, f->pos);
      f->pos = 0;
    }
    const size_t old = f->buf.size();
    f->buf.resize(old + options_.read_chunk);
    const ssize_t n = pread(f->fd, &f->buf[old], options_.read_chunk, f->read_off);
    f->buf.resize(old + std::max<ssize_t>(n, 0));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Internal(f->path + ": read failed: " + std::strerror(errno));
    }
    if (n > 0) {
      f->read_off += n;
      f->read_unix_ms = WallUnixMs();
      activity_[f->partition].data = Clock::now();
      if (!f->has_header) {
        const void* nl = std::memchr(f->buf.data(), '\n', f->buf.size());
        if (nl != nullptr) {
          const size_t len = static_cast<const char*>(nl) - f->buf.data();
          f->header.assign(f->buf.data(), len);
          if (!f->header.empty() && f->header.back() == '\r') f->header.pop_back();
          f->has_header = true;
          f->pos = len + 1;
          f->delivered += len + 1;
          f->lines = 1;
        }
      }
      continue;
    }
    // At the end of the file.
    if (f->live && f->present) {  // may grow
      activity_[f->partition].eof = Clock::now();
      return false;
    }
    if (f->HasPartial()) {
      LOG(WARNING) << f->path << ": rotated file ends in an incomplete line ("
                   << f->buf.size() - f->pos << " bytes); delivered as it is";
      f->buf.push_back('\n');
      f->artificial_newline = true;
      if (!f->has_header) {
        f->header.assign(f->buf, f->pos, f->buf.size() - f->pos - 1);
        f->has_header = true;
        f->delivered = f->read_off;
        f->lines = 1;
        f->buf.clear();
        f->pos = 0;
        continue;
      }
      current_ = f;
      return true;
    }
    // Finished: keep only its position.
    close(f->fd);
    f->fd = -1;
    f->buf.clear();
    f->buf.shrink_to_fit();
    f->pos = 0;
    finished_.push_back(std::move(q->front()));
    q->pop_front();
  }
  return false;
}

bool TailSource::TakeLine(File* f, SourceLine* out) {
  const char* start = f->buf.data() + f->pos;
  const void* nl = std::memchr(start, '\n', f->buf.size() - f->pos);
  if (nl == nullptr) return false;
  const size_t len = static_cast<const char*>(nl) - start;
  out->text = std::string_view(start, len);
  out->header = &f->header;
  out->origin = &f->path;
  out->partition = f->partition;
  // Lines are taken only once no complete line is buffered before a read,
  // so this line's end came with the latest read.
  out->read_unix_ms = f->read_unix_ms;
  f->pos += len + 1;
  f->delivered += len + 1;
  if (f->artificial_newline && f->pos == f->buf.size()) {
    f->delivered -= 1;
    f->artificial_newline = false;
  }
  out->line_no = ++f->lines;
  return true;
}

StatusOr<LineResult> TailSource::Next(SourceLine* out, SteadyTime deadline) {
  auto backoff = Ms(1);
  bool rescanned = false;
  while (true) {
    if (ended_) return LineResult::kEnd;
    if (current_ != nullptr && TakeLine(current_, out)) return LineResult::kLine;
    current_ = nullptr;
    if (Clock::now() - last_scan_ >= options_.scan_interval) {
      FRESHET_RETURN_IF_ERROR(Scan());
      rescanned = true;
    }
    // One pass over the partitions, round-robin.
    bool got = false;
    for (size_t k = 0; k < queues_.size() && !got; ++k) {
      if (rr_ == queues_.end()) rr_ = queues_.begin();
      auto& q = rr_->second;
      ++rr_;
      FRESHET_ASSIGN_OR_RETURN(got, Fill(&q));
    }
    if (got) {
      backoff = Ms(1);
      rescanned = false;
      continue;
    }
    // Every file is at its end.
    if (end_marker_) {
      // Deliver unterminated last lines, then end.
      for (auto& [p, q] : queues_) {
        for (auto& f : q) {
          if (f->has_header && f->HasPartial()) {
            f->buf.push_back('\n');
            f->artificial_newline = true;
            current_ = f.get();
            break;
          }
        }
        if (current_ != nullptr) break;
      }
      if (current_ == nullptr) ended_ = true;
      continue;
    }
    if (!rescanned) {
      FRESHET_RETURN_IF_ERROR(Scan());
      rescanned = true;
      continue;
    }
    const auto now = Clock::now();
    if (now >= deadline) return LineResult::kNone;
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, options_.max_backoff);
    rescanned = false;
  }
}

std::string TailSource::Describe() const {
  std::string s = "dir " + options_.dir + " (partitions";
  const auto ps = Partitions();
  if (ps.empty()) s += " none yet";
  for (size_t i = 0; i < ps.size(); ++i) s += (i ? ", " : " ") + std::to_string(ps[i]);
  return s + " of worker " + std::to_string(options_.worker) + "/" +
         std::to_string(options_.num_workers) + ")";
}

bool TailSource::Idle(int partition, std::chrono::milliseconds quiet) const {
  auto it = activity_.find(partition);
  if (it == activity_.end()) return queues_.count(partition) == 0;  // known but never read: busy
  return it->second.eof - it->second.data >= quiet;
}

TailPosition TailSource::Position() const {
  TailPosition p;
  auto add = [&](const File& f) {
    p.files.push_back({f.name, f.dev, f.ino, f.delivered, f.lines});
  };
  for (const auto& f : finished_) add(*f);
  for (const auto& [part, q] : queues_) {
    for (const auto& f : q) add(*f);
  }
  return p;
}

std::vector<int> TailSource::Partitions() const {
  std::set<int> s;
  for (const auto& [p, q] : queues_) s.insert(p);
  for (const auto& f : finished_) s.insert(f->partition);
  return std::vector<int>(s.begin(), s.end());
}

size_t TailSource::files_tracked() const {
  size_t n = finished_.size();
  for (const auto& [p, q] : queues_) n += q.size();
  return n;
}

}  // namespace freshet
