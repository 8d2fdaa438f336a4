// SocketSource: a worker's event stream over sockets. It listens on TCP
// 127.0.0.1:<port> or on a Unix socket path and accepts any number of
// producer connections; each connection sends `freshet-events v1` lines
// (docs/EVENT_FORMAT.md), its header first. Each connection is one
// partition for the watermark (SourceLine::partition = connection number,
// counted from 0 in accept order).
//
// End of stream: a producer sends the line `_END`; the stream ends once an
// `_END` was received and every connection was closed by its producer and
// read to its end. A connection that closes mid-line has its last partial
// line delivered as it is (the parser then judges it).
//
// Waiting: Next() blocks in poll(2) until data, a connection or the
// deadline; no spinning. The destructor closes every socket and removes the
// Unix socket file.
//
// Thread safety: one thread uses a SocketSource.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "worker/stream/line_stream.h"

namespace freshet {

struct SocketOptions {
  int tcp_port = 0;         // > 0: listen on 127.0.0.1:tcp_port
  std::string unix_socket;  // else: listen on this path (replaced if a stale file exists)
  size_t read_chunk = 1 << 16;
  int max_connections = 256;
};

// Thread safety: not thread-safe; one thread calls Next().
class SocketSource : public LineStream {
 public:
  // InvalidArgument without a port or path; Unavailable when the address
  // cannot be bound (e.g. in use), naming it.
  static StatusOr<std::unique_ptr<SocketSource>> Listen(const SocketOptions& options);
  ~SocketSource() override;

  StatusOr<LineResult> Next(SourceLine* out, SteadyTime deadline) override;
  std::string Describe() const override { return address_; }
  // A connection is idle once closed, or when a read found nothing new at
  // least `quiet` after its last bytes.
  bool Idle(int partition, std::chrono::milliseconds quiet) const override;
  std::vector<int> Partitions() const override;

  const std::string& address() const { return address_; }  // "tcp:127.0.0.1:7000" or "unix:/p"
  int connections_accepted() const { return next_id_; }

 private:
  struct Conn;
  explicit SocketSource(const SocketOptions& options);
  Status Accept();
  // Reads what is there; returns false if the connection reached EOF.
  Status ReadConn(Conn* c);
  bool TakeLine(Conn* c, SourceLine* out);

  SocketOptions options_;
  int listen_fd_ = -1;
  std::string address_;
  std::vector<std::unique_ptr<Conn>> conns_;
  size_t rr_ = 0;
  int next_id_ = 0;
  bool end_seen_ = false;
  bool ended_ = false;
};

}  // namespace freshet
