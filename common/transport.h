// Transport: the seam between parameter-server logic and the wire.
//
// Every rank owns one Transport endpoint. Messages are a small metadata header
// (MessageMeta, encoded as the protobuf WireHeader only at the wire) plus a raw
// body; bodies are built and parsed only by common/ps_wire.h. Framing, byte
// counters and fault hooks live once in this base class (ps-lite's Van
// shape): the public, non-virtual Send()/Recv() wrap the protected virtual
// SendFrame()/RecvFrame().
//
// Frame layout (what the implementations move):
//   [body bytes][WireHeader bytes][uint32 header length, little-endian]
// The header goes last so the body can be built first, in place, and the
// frame sent without copying it.
//
// Implementations:
//   InProcessHub / endpoint: N endpoints inside one process (unit tests).
//   MpiTransport (common/mpi_transport.h): one endpoint per MPI rank.
//   FaultyTransport (below): wraps another endpoint to delay, drop or cut off
//   peers (fault tests).
//
// Thread safety: Send() and stats() may be called from any thread
// concurrently. Recv() may be called from several threads; each message is
// delivered once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "common/buffer_pool.h"
#include "common/mutex.h"
#include "common/status.h"

namespace freshet {

using Millis = std::chrono::milliseconds;

// Message types of the parameter-server protocol. Each body's layout, its
// typed struct, encoder and decoder are in common/ps_wire.h (the only place
// that builds or parses a body).
enum class MsgType : uint32_t {
  kPullRequest = 1,  // worker -> server: rows of some keys
  kPullResponse = 2,
  kPushRequest = 3,  // worker -> server: gradients of some rows
  kPushResponse = 4,
  kClock = 5,  // worker -> server: a step ended (bounded staleness)
  kStatsRequest = 6,
  kStatsResponse = 7,
  kShutdown = 8,  // a worker is done; servers exit when all are
  kSave = 9,      // copy every row, then write them (server/table_io.h) in the background
  kSaveResponse = 10,
  kExportRequest = 11,  // exporter -> server: rows pushed after a version
  kExportResponse = 12,
  kDenseUpdate = 13,  // worker 0 -> exporter: dense params and training clocks
  kExportFinal = 14,  // worker 0 -> exporter: training ended; export and answer
  kExportFinalResponse = 15,
  kWatermark = 16,   // any worker -> exporter: training clocks
  kSaveStatus = 17,  // has the SAVE been written?
  kSaveStatusResponse = 18,
  kLoad = 19,  // replace every row with those SAVEd under a directory (early stopping)
  kLoadResponse = 20,
};
const char* MsgTypeName(MsgType t);

// Plain C++ header of a message, the same for every type; converted to
// proto::WireHeader at the wire. Everything type-specific is in the body
// (common/ps_wire.h).
struct MessageMeta {
  MsgType type = MsgType::kPullRequest;
  // The body layout version (common/ps_wire.h kPsWireVersion): set by the
  // codec's encoders, checked by its decoders. 0: not set.
  uint32_t version = 0;
  uint64_t request_id = 0;  // a response echoes its request's
  // Responses: the peer's error (status_code != kOk: error text, no body).
  StatusCode status_code = StatusCode::kOk;
  std::string error;
};

struct Message {
  int peer = -1;  // Recv(): the sender's rank. Ignored by Send().
  MessageMeta meta;
  std::vector<char> body;
};

struct TransportStats {
  int64_t messages_sent = 0;
  int64_t messages_received = 0;
  int64_t bytes_sent = 0;
  int64_t bytes_received = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }

  // Queues `msg` for rank `dest` and returns without waiting for delivery.
  // Fails with InvalidArgument for a bad rank and Unavailable after
  // Shutdown() or when the peer is unreachable.
  Status Send(int dest, Message msg);

  // For messages that carry only the newest state of something (a worker's
  // clocks for the exporter, its dense parameters): sends `msg` only when
  // `dest` has received the previous SendLatest message to it on the same
  // `channel` (0 .. kLatestChannels - 1: one per kind of state, so one kind
  // never holds back another); otherwise
  // drops `msg` and returns false (the caller sends a newer one later). A
  // peer that stops reading (a stopped or hung process) so holds at most one
  // such message from each sender, instead of a pile that exhausts the
  // sender's message buffers (Open MPI's shared-memory transport stalls
  // every send of a rank after 512 unreceived ones) and stalls its other
  // traffic. Transports whose queues need no such bound send every one.
  static constexpr int kLatestChannels = 4;
  StatusOr<bool> SendLatest(int dest, int channel, Message msg);

  // Waits up to `timeout` for the next message from any peer.
  // DeadlineExceeded on timeout; Unavailable once shut down.
  StatusOr<Message> Recv(Millis timeout);

  // Wakes every Recv() (which then return Unavailable) and releases
  // resources. Idempotent.
  virtual void Shutdown() = 0;

  TransportStats stats() const;

  // Message buffers, recycled (common/buffer_pool.h): build a large body in
  // NewBuffer(n, kFrameRoom) (n bytes, contents unspecified: overwrite them
  // all; kFrameRoom spare bytes so Send() appends the frame header without
  // reallocating), and give a received body back with RecycleBuffer() once
  // done with it. Implementations receive into pooled buffers and recycle
  // the frames they finish sending, so a steady stream of big messages
  // reuses memory instead of faulting in fresh pages per message (issue 16).
  static constexpr size_t kFrameRoom = 128;
  std::vector<char> NewBuffer(size_t n, size_t extra = 0) { return pool_->Take(n, extra); }
  void RecycleBuffer(std::vector<char> buf) { pool_->Give(std::move(buf)); }
  BufferPool::Stats buffer_stats() const { return pool_->stats(); }

 protected:
  Transport(int rank, int size) : rank_(rank), size_(size) {}
  BufferPool* buffer_pool() { return pool_; }
  // Endpoints of one process may share a pool (not owned; must outlive this).
  void ShareBufferPool(BufferPool* pool) { pool_ = pool; }

  struct Frame {
    int peer = -1;
    std::vector<char> bytes;
  };
  virtual Status SendFrame(int dest, std::vector<char> frame) = 0;
  virtual StatusOr<Frame> RecvFrame(Millis timeout) = 0;
  // SendLatest's frame; the default sends every one (SendFrame).
  virtual StatusOr<bool> SendLatestFrame(int dest, int /*channel*/, std::vector<char> frame) {
    FRESHET_RETURN_IF_ERROR(SendFrame(dest, std::move(frame)));
    return true;
  }

 private:
  const int rank_;
  const int size_;
  std::atomic<int64_t> messages_sent_{0}, messages_received_{0};
  std::atomic<int64_t> bytes_sent_{0}, bytes_received_{0};
  BufferPool own_pool_;
  BufferPool* pool_ = &own_pool_;  // a wrapper shares the wrapped endpoint's

  friend class FaultyTransport;
};

// Frame encoding, exposed for tests and for transports that wrap others.
std::vector<char> EncodeFrame(MessageMeta meta, std::vector<char> body);
// DataLoss if the frame is truncated or its header does not parse.
Status DecodeFrame(std::vector<char> frame, Message* out);

// A thread-safe blocking queue of frames with deadlines; the receive side of
// in-process and MPI endpoints.
class FrameQueue {
 public:
  struct Item {
    int peer;
    std::vector<char> bytes;
  };
  void Push(int peer, std::vector<char> bytes) EXCLUDES(mu_);
  // DeadlineExceeded on timeout, Unavailable after Close().
  StatusOr<Item> Pop(Millis timeout) EXCLUDES(mu_);
  void Close() EXCLUDES(mu_);

 private:
  Mutex mu_;
  CondVar cv_;
  std::deque<Item> items_ GUARDED_BY(mu_);
  bool closed_ GUARDED_BY(mu_) = false;
};

// N connected endpoints inside one process. Thread-safe. The hub must outlive
// its endpoints' use.
class InProcessHub {
 public:
  explicit InProcessHub(int size);
  ~InProcessHub();
  int size() const { return static_cast<int>(endpoints_.size()); }
  // REQUIRES: 0 <= rank < size(). The hub keeps ownership.
  Transport* endpoint(int rank);
  // Shuts down every endpoint.
  void ShutdownAll();

 private:
  class Endpoint;
  BufferPool pool_;  // shared: a body sent by one endpoint is recycled by another
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
};

// Wraps another endpoint (not owned) and injects faults, in the spirit of
// leveldb's FaultInjectionTestEnv. Each knob is independent and may be changed
// at any time from any thread.
class FaultyTransport : public Transport {
 public:
  explicit FaultyTransport(Transport* base);
  // Delay every outgoing message by this much before it is sent.
  void set_send_delay(Millis d) { send_delay_ms_ = d.count(); }
  // Drop every n-th outgoing message (0: never).
  void set_drop_every(int n) { drop_every_ = n; }
  // Messages to and from `peer` vanish silently, as if it had died.
  void CutOff(int peer) EXCLUDES(mu_);
  void Restore(int peer) EXCLUDES(mu_);
  int64_t dropped() const { return dropped_; }
  void Shutdown() override { base_->Shutdown(); }

 protected:
  Status SendFrame(int dest, std::vector<char> frame) override;
  StatusOr<Frame> RecvFrame(Millis timeout) override;

 private:
  bool IsCut(int peer) const EXCLUDES(mu_);
  Transport* const base_;
  std::atomic<int64_t> send_delay_ms_{0};
  std::atomic<int> drop_every_{0};
  std::atomic<int64_t> sent_{0}, dropped_{0};
  mutable Mutex mu_;
  std::vector<bool> cut_ GUARDED_BY(mu_);
};

}  // namespace freshet
