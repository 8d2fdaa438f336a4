#include "worker/stream/socket_source.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <glog/logging.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace freshet {

struct SocketSource::Conn {
  int fd = -1;
  int id = 0;
  std::string origin;
  std::string buf;  // unread bytes: buf[pos..]
  size_t pos = 0;
  std::string header;
  bool has_header = false;
  bool eof = false;
  int64_t lines = 0;
  SteadyTime data{}, empty{};  // last read with bytes / without
  int64_t read_unix_ms = 0;    // wall time of the last read with bytes
  ~Conn() {
    if (fd >= 0) close(fd);
  }
  bool HasLine() const { return std::memchr(buf.data() + pos, '\n', buf.size() - pos) != nullptr; }
};

SocketSource::SocketSource(const SocketOptions& options) : options_(options) {}

SocketSource::~SocketSource() {
  conns_.clear();
  if (listen_fd_ >= 0) close(listen_fd_);
  if (options_.tcp_port <= 0 && !options_.unix_socket.empty()) {
    unlink(options_.unix_socket.c_str());
  }
}

StatusOr<std::unique_ptr<SocketSource>> SocketSource::Listen(const SocketOptions& options) {
  std::unique_ptr<SocketSource> s(new SocketSource(options));
  if (options.tcp_port > 0) {
    if (options.tcp_port > 65535) return InvalidArgument("socket source: bad port");
    s->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->listen_fd_ < 0) return Unavailable(std::string("socket: ") + std::strerror(errno));
    int one = 1;
    setsockopt(s->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(options.tcp_port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->address_ = "tcp:127.0.0.1:" + std::to_string(options.tcp_port);
    if (bind(s->listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      return Unavailable(s->address_ + ": cannot bind: " + std::strerror(errno));
    }
  } else if (!options.unix_socket.empty()) {
    sockaddr_un a{};
    if (options.unix_socket.size() >= sizeof(a.sun_path)) {
      return InvalidArgument(options.unix_socket + ": Unix socket path too long");
    }
    s->listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->listen_fd_ < 0) return Unavailable(std::string("socket: ") + std::strerror(errno));
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, options.unix_socket.c_str(), options.unix_socket.size() + 1);
    unlink(options.unix_socket.c_str());  // a stale socket of an earlier run
    s->address_ = "unix:" + options.unix_socket;
    if (bind(s->listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      return Unavailable(s->address_ + ": cannot bind: " + std::strerror(errno));
    }
  } else {
    return InvalidArgument("socket source: neither tcp_port nor unix_socket given");
  }
  if (listen(s->listen_fd_, 64) != 0) {
    return Unavailable(s->address_ + ": cannot listen: " + std::strerror(errno));
  }
  return s;
}

Status SocketSource::Accept() {
  while (true) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Status::OK();
      if (errno == ECONNABORTED) continue;
      return Unavailable(address_ + ": accept failed: " + std::strerror(errno));
    }
    if (static_cast<int>(conns_.size()) >= options_.max_connections) {
      LOG(WARNING) << address_ << ": refusing a connection: " << conns_.size() << " open";
      close(fd);
      continue;
    }
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    c->id = next_id_++;
    c->origin = address_ + "#" + std::to_string(c->id);
    conns_.push_back(std::move(c));
  }
}

Status SocketSource::ReadConn(Conn* c) {
  if (c->pos > 0) {
    c->buf.erase(0, c->pos);
    c->pos = 0;
  }
  while (true) {
    const size_t old = c->buf.size();
    c->buf.resize(old + options_.read_chunk);
    const ssize_t n = read(c->fd, &c->buf[old], options_.read_chunk);
    c->buf.resize(old + std::max<ssize_t>(n, 0));
    if (n > 0) {
      c->data = std::chrono::steady_clock::now();
      c->read_unix_ms = WallUnixMs();
      if (static_cast<size_t>(n) < options_.read_chunk) break;
      continue;
    }
    if (n == 0) {
      c->eof = true;
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!c->HasLine()) c->empty = std::chrono::steady_clock::now();
      break;
    }
    LOG(WARNING) << c->origin << ": read failed: " << std::strerror(errno) << "; closing it";
    c->eof = true;
    break;
  }
  if (!c->has_header) {
    const void* nl = std::memchr(c->buf.data(), '\n', c->buf.size());
    if (nl != nullptr) {
      const size_t len = static_cast<const char*>(nl) - c->buf.data();
      c->header.assign(c->buf.data(), len);
      if (!c->header.empty() && c->header.back() == '\r') c->header.pop_back();
      c->has_header = true;
      c->pos = len + 1;
      c->lines = 1;
    }
  }
  if (c->eof && c->has_header && c->pos < c->buf.size() && !c->HasLine()) {
    c->buf.push_back('\n');  // the last line, unterminated
  }
  return Status::OK();
}

std::vector<int> SocketSource::Partitions() const {
  std::vector<int> ids;
  for (const auto& c : conns_) ids.push_back(c->id);
  return ids;
}

bool SocketSource::Idle(int partition, std::chrono::milliseconds quiet) const {
  for (const auto& c : conns_) {
    if (c->id == partition) return !c->HasLine() && c->empty - c->data >= quiet;
  }
  return true;  // closed (and read out)
}

bool SocketSource::TakeLine(Conn* c, SourceLine* out) {
  while (c->has_header) {
    const char* start = c->buf.data() + c->pos;
    const void* nl = std::memchr(start, '\n', c->buf.size() - c->pos);
    if (nl == nullptr) return false;
    const size_t len = static_cast<const char*>(nl) - start;
    c->pos += len + 1;
    ++c->lines;
    std::string_view text(start, len);
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text == "_END") {
      end_seen_ = true;
      continue;
    }
    out->text = text;
    out->header = &c->header;
    out->origin = &c->origin;
    out->line_no = c->lines;
    out->partition = c->id;
    out->read_unix_ms = c->read_unix_ms;  // connections are read only when no line is buffered
    return true;
  }
  return false;
}

StatusOr<LineResult> SocketSource::Next(SourceLine* out, SteadyTime deadline) {
  std::vector<pollfd> fds;
  while (true) {
    if (ended_) return LineResult::kEnd;
    // Lines already read, round-robin over the connections.
    for (size_t k = 0; k < conns_.size(); ++k) {
      Conn* c = conns_[(rr_ + k) % conns_.size()].get();
      if (TakeLine(c, out)) {
        rr_ = (rr_ + k + 1) % conns_.size();
        return LineResult::kLine;
      }
    }
    // Drop connections that ended and were read out.
    conns_.erase(std::remove_if(conns_.begin(), conns_.end(),
                                [](const std::unique_ptr<Conn>& c) { return c->eof; }),
                 conns_.end());
    if (end_seen_ && conns_.empty()) {
      ended_ = true;
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    const int wait_ms =
        now >= deadline
            ? 0
            : static_cast<int>(std::min<int64_t>(
                  1000,
                  std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() +
                      1));
    fds.clear();
    fds.push_back({listen_fd_, POLLIN, 0});
    for (const auto& c : conns_) fds.push_back({c->fd, POLLIN, 0});
    const int r = poll(fds.data(), fds.size(), wait_ms);
    if (r < 0 && errno != EINTR) return Internal(std::string("poll: ") + std::strerror(errno));
    if (r <= 0) {
      if (std::chrono::steady_clock::now() >= deadline) return LineResult::kNone;
      continue;
    }
    if (fds[0].revents & POLLIN) FRESHET_RETURN_IF_ERROR(Accept());
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        FRESHET_RETURN_IF_ERROR(ReadConn(conns_[i - 1].get()));
      }
    }
  }
}

}  // namespace freshet
