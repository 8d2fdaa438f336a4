#include "common/transport.h"

#include <glog/logging.h>

#include <cstring>
#include <thread>

#include "common/proto/wire.pb.h"

namespace freshet {

const char* MsgTypeName(MsgType t) {
  switch (t) {
    case MsgType::kPullRequest:
      return "PULL";
    case MsgType::kPullResponse:
      return "PULL_RESPONSE";
    case MsgType::kPushRequest:
      return "PUSH";
    case MsgType::kPushResponse:
      return "PUSH_RESPONSE";
    case MsgType::kClock:
      return "CLOCK";
    case MsgType::kStatsRequest:
      return "STATS";
    case MsgType::kStatsResponse:
      return "STATS_RESPONSE";
    case MsgType::kShutdown:
      return "SHUTDOWN";
    case MsgType::kSave:
      return "SAVE";
    case MsgType::kSaveResponse:
      return "SAVE_RESPONSE";
    case MsgType::kExportRequest:
      return "EXPORT";
    case MsgType::kExportResponse:
      return "EXPORT_RESPONSE";
    case MsgType::kDenseUpdate:
      return "DENSE_UPDATE";
    case MsgType::kExportFinal:
      return "EXPORT_FINAL";
    case MsgType::kExportFinalResponse:
      return "EXPORT_FINAL_RESPONSE";
    case MsgType::kWatermark:
      return "WATERMARK";
    case MsgType::kSaveStatus:
      return "SAVE_STATUS";
    case MsgType::kSaveStatusResponse:
      return "SAVE_STATUS_RESPONSE";
    case MsgType::kLoad:
      return "LOAD";
    case MsgType::kLoadResponse:
      return "LOAD_RESPONSE";
  }
  return "UNKNOWN";
}

std::vector<char> EncodeFrame(MessageMeta meta, std::vector<char> body) {
  proto::WireHeader h;
  h.set_type(static_cast<uint32_t>(meta.type));
  h.set_request_id(meta.request_id);
  h.set_version(meta.version);
  h.set_status_code(static_cast<int32_t>(meta.status_code));
  if (!meta.error.empty()) h.set_error(std::move(meta.error));
  const size_t header_len = h.ByteSizeLong();
  const size_t body_len = body.size();
  body.resize(body_len + header_len + sizeof(uint32_t));
  char* p = body.data() + body_len;
  CHECK(h.SerializeToArray(p, static_cast<int>(header_len)));
  const uint32_t len32 = static_cast<uint32_t>(header_len);
  std::memcpy(p + header_len, &len32, sizeof(len32));
  return body;
}

Status DecodeFrame(std::vector<char> frame, Message* out) {
  if (frame.size() < sizeof(uint32_t)) {
    return DataLoss("frame of " + std::to_string(frame.size()) + " bytes is too short");
  }
  uint32_t header_len;
  std::memcpy(&header_len, frame.data() + frame.size() - sizeof(uint32_t), sizeof(header_len));
  if (header_len > frame.size() - sizeof(uint32_t)) {
    return DataLoss("frame header length " + std::to_string(header_len) + " exceeds frame size " +
                    std::to_string(frame.size()));
  }
  const size_t body_len = frame.size() - sizeof(uint32_t) - header_len;
  proto::WireHeader h;
  if (!h.ParseFromArray(frame.data() + body_len, static_cast<int>(header_len))) {
    return DataLoss("frame header does not parse as WireHeader");
  }
  MessageMeta& m = out->meta;
  m.type = static_cast<MsgType>(h.type());
  m.request_id = h.request_id();
  m.version = h.version();
  m.status_code = static_cast<StatusCode>(h.status_code());
  m.error = h.error();
  frame.resize(body_len);  // keeps capacity: no copy
  out->body = std::move(frame);
  return Status::OK();
}

Status Transport::Send(int dest, Message msg) {
  if (dest < 0 || dest >= size_) {
    return InvalidArgument("send to rank " + std::to_string(dest) + " of " + std::to_string(size_));
  }
  std::vector<char> frame = EncodeFrame(std::move(msg.meta), std::move(msg.body));
  const int64_t n = static_cast<int64_t>(frame.size());
  FRESHET_RETURN_IF_ERROR(SendFrame(dest, std::move(frame)));
  messages_sent_.fetch_add(1, std::memory_order_relaxed);
  bytes_sent_.fetch_add(n, std::memory_order_relaxed);
  return Status::OK();
}

StatusOr<bool> Transport::SendLatest(int dest, int channel, Message msg) {
  if (dest < 0 || dest >= size_) {
    return InvalidArgument("send to rank " + std::to_string(dest) + " of " + std::to_string(size_));
  }
  if (channel < 0 || channel >= kLatestChannels) {
    return InvalidArgument("SendLatest channel " + std::to_string(channel) + " (0.." +
                           std::to_string(kLatestChannels - 1) + ")");
  }
  std::vector<char> frame = EncodeFrame(std::move(msg.meta), std::move(msg.body));
  const int64_t n = static_cast<int64_t>(frame.size());
  FRESHET_ASSIGN_OR_RETURN(const bool sent, SendLatestFrame(dest, channel, std::move(frame)));
  if (sent) {
    messages_sent_.fetch_add(1, std::memory_order_relaxed);
    bytes_sent_.fetch_add(n, std::memory_order_relaxed);
  }
  return sent;
}

StatusOr<Message> Transport::Recv(Millis timeout) {
  StatusOr<Frame> f = RecvFrame(timeout);
  if (!f.ok()) return f.status();
  Message msg;
  msg.peer = f->peer;
  const int64_t n = static_cast<int64_t>(f->bytes.size());
  Status st = DecodeFrame(std::move(f->bytes), &msg);
  if (!st.ok()) return st.WithContext("message from rank " + std::to_string(msg.peer));
  messages_received_.fetch_add(1, std::memory_order_relaxed);
  bytes_received_.fetch_add(n, std::memory_order_relaxed);
  return msg;
}

TransportStats Transport::stats() const {
  TransportStats s;
  s.messages_sent = messages_sent_.load(std::memory_order_relaxed);
  s.messages_received = messages_received_.load(std::memory_order_relaxed);
  s.bytes_sent = bytes_sent_.load(std::memory_order_relaxed);
  s.bytes_received = bytes_received_.load(std::memory_order_relaxed);
  return s;
}

// ---- FrameQueue ---------------------------------------------------------------

void FrameQueue::Push(int peer, std::vector<char> bytes) {
  {
    MutexLock l(&mu_);
    if (closed_) return;
    items_.push_back(Item{peer, std::move(bytes)});
  }
  cv_.Signal();
}

StatusOr<FrameQueue::Item> FrameQueue::Pop(Millis timeout) {
  MutexLock l(&mu_);
  // cv.wait_for(l, timeout, pred), written as a loop for the analysis.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!closed_ && items_.empty()) {
    if (cv_.WaitWithDeadline(&mu_, deadline)) break;
  }
  if (!closed_ && items_.empty()) {
    return DeadlineExceeded("no message within " + std::to_string(timeout.count()) + " ms");
  }
  if (closed_) return Unavailable("transport is shut down");
  Item it = std::move(items_.front());
  items_.pop_front();
  return it;
}

void FrameQueue::Close() {
  {
    MutexLock l(&mu_);
    closed_ = true;
    items_.clear();
  }
  cv_.SignalAll();
}

// ---- InProcessHub -------------------------------------------------------------

class InProcessHub::Endpoint : public Transport {
 public:
  Endpoint(InProcessHub* hub, int rank, int size) : Transport(rank, size), hub_(hub) {
    ShareBufferPool(&hub->pool_);
  }
  void Shutdown() override {
    closed_ = true;
    inbox_.Close();
  }
  void Deliver(int from, std::vector<char> bytes) { inbox_.Push(from, std::move(bytes)); }
  bool closed() const { return closed_; }

 protected:
  Status SendFrame(int dest, std::vector<char> frame) override {
    if (closed_)
      return Unavailable("in-process endpoint " + std::to_string(rank()) + " is shut down");
    auto* peer = hub_->endpoints_[dest].get();
    if (peer->closed()) {
      return Unavailable("in-process peer rank " + std::to_string(dest) + " is shut down");
    }
    peer->Deliver(rank(), std::move(frame));
    return Status::OK();
  }
  StatusOr<Frame> RecvFrame(Millis timeout) override {
    StatusOr<FrameQueue::Item> it = inbox_.Pop(timeout);
    if (!it.ok()) return it.status();
    return Frame{it->peer, std::move(it->bytes)};
  }

 private:
  InProcessHub* const hub_;
  std::atomic<bool> closed_{false};
  FrameQueue inbox_;
};

InProcessHub::InProcessHub(int size) {
  CHECK_GT(size, 0);
  for (int r = 0; r < size; ++r) endpoints_.push_back(std::make_unique<Endpoint>(this, r, size));
}

InProcessHub::~InProcessHub() { ShutdownAll(); }

Transport* InProcessHub::endpoint(int rank) {
  CHECK(rank >= 0 && rank < size()) << "rank " << rank << " of " << size();
  return endpoints_[rank].get();
}

void InProcessHub::ShutdownAll() {
  for (auto& e : endpoints_) e->Shutdown();
}

// ---- FaultyTransport ------------------------------------------------------------

FaultyTransport::FaultyTransport(Transport* base)
    : Transport(base->rank(), base->size()), base_(base), cut_(base->size(), false) {
  ShareBufferPool(base->pool_);
}

void FaultyTransport::CutOff(int peer) {
  MutexLock l(&mu_);
  cut_.at(peer) = true;
}

void FaultyTransport::Restore(int peer) {
  MutexLock l(&mu_);
  cut_.at(peer) = false;
}

bool FaultyTransport::IsCut(int peer) const {
  MutexLock l(&mu_);
  return cut_.at(peer);
}

Status FaultyTransport::SendFrame(int dest, std::vector<char> frame) {
  const int64_t n = sent_.fetch_add(1) + 1;
  const int every = drop_every_.load();
  if (IsCut(dest) || (every > 0 && n % every == 0)) {
    dropped_.fetch_add(1);
    return Status::OK();  // lost on the wire: the sender cannot tell
  }
  const int64_t delay = send_delay_ms_.load();
  if (delay > 0) std::this_thread::sleep_for(Millis(delay));
  return base_->SendFrame(dest, std::move(frame));
}

StatusOr<Transport::Frame> FaultyTransport::RecvFrame(Millis timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    if (left.count() < 0) left = Millis(0);
    StatusOr<Frame> f = base_->RecvFrame(left);
    if (!f.ok()) return f;
    if (!IsCut(f->peer)) return f;
    dropped_.fetch_add(1);
  }
}

}  // namespace freshet
