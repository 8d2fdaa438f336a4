#include "common/ps_wire.h"

#include <glog/logging.h>

#include <cstring>

#include "common/config.h"

namespace freshet {
namespace {

// Room reserved after a body for the frame header the transport appends
// (common/transport.h EncodeFrame), so appending it does not reallocate.
constexpr size_t kFrameSlack = 128;

size_t Pad8(size_t n) { return (n + 7) & ~size_t{7}; }

// a * b, CHECKed (encoders: sizes from our own validated state).
size_t CheckedMul(size_t a, size_t b) {
  size_t out;
  CHECK(!__builtin_mul_overflow(a, b, &out)) << a << " * " << b << " overflows";
  return out;
}

// Appends little-endian fields to a new message's body.
//
// A recycled `buffer` keeps its bytes: the body is written over them, and
// only bytes past the buffer's old size are filled by the vector. So an
// encoder must write every byte of its body (the fields, the arrays it hands
// to its caller to fill, and the padding, which Pad() zeroes). Zero-filling
// first was a second full pass over, e.g., a 16 MiB pull answer that the
// table then overwrote (issue 16; the PS grid showed no measurable change).
class Writer {
 public:
  // `body_bytes`: the body's final size (reserved, with the frame slack).
  Writer(MsgType type, size_t body_bytes, uint64_t request_id = 0, std::vector<char> buffer = {}) {
    msg_.body = std::move(buffer);
    msg_.meta.type = type;
    msg_.meta.version = kPsWireVersion;
    msg_.meta.request_id = request_id;
    if (msg_.body.capacity() < body_bytes + kFrameSlack)
      msg_.body.reserve(body_bytes + kFrameSlack);
  }
  void U32(uint32_t v) { Put(&v, sizeof(v)); }
  void I32(int32_t v) { Put(&v, sizeof(v)); }
  void U64(uint64_t v) { Put(&v, sizeof(v)); }
  void I64(int64_t v) { Put(&v, sizeof(v)); }
  void Put(const void* p, size_t n) {
    char* at = Grow(n);
    if (n > 0) std::memcpy(at, p, n);
  }
  // n bytes at the end of the body, contents unspecified: the caller writes
  // all of them before the message is sent.
  char* Grow(size_t n) {
    const size_t at = size_;
    size_ += n;
    if (size_ > msg_.body.size()) msg_.body.resize(size_);
    return msg_.body.data() + at;
  }
  // Zero bytes up to the next multiple of 8.
  void Pad() {
    const size_t n = Pad8(size_) - size_;
    if (n > 0) std::memset(Grow(n), 0, n);
  }
  // The message so far, for its meta (the body is cut to size by Take()).
  Message& msg() { return msg_; }
  Message Take() {
    msg_.body.resize(size_);  // shrinks a recycled buffer: no fill, capacity kept
    return std::move(msg_);
  }

 private:
  Message msg_;
  size_t size_ = 0;  // bytes written
};

// Reads little-endian fields from a received body, bounds-checked. The
// first failure is kept (status()); later reads then fail too.
class Reader {
 public:
  Reader(const Message& msg, MsgType type)
      : p_(msg.body.data()), size_(msg.body.size()), msg_(msg), type_(type) {
    // Arrays are read in place: the buffer must be aligned like any heap
    // block (offsets inside are multiples of 8 by layout).
    if (reinterpret_cast<uintptr_t>(p_) % alignof(uint64_t) != 0) {
      Fail("body", "buffer is not 8-byte aligned");
    }
  }
  bool U32(uint32_t* v, const char* field) { return Get(v, sizeof(*v), field); }
  bool I32(int32_t* v, const char* field) { return Get(v, sizeof(*v), field); }
  bool U64(uint64_t* v, const char* field) { return Get(v, sizeof(*v), field); }
  bool I64(int64_t* v, const char* field) { return Get(v, sizeof(*v), field); }
  // A u32 that must be 0 or 1.
  bool Bool(bool* v, const char* field) {
    uint32_t u = 0;
    if (!U32(&u, field)) return false;
    if (u > 1) return Fail(field, "is " + std::to_string(u) + ", not 0 or 1");
    *v = u == 1;
    return true;
  }
  // `n` zero bytes.
  bool Zero(size_t n, const char* field) {
    if (!Need(n, field)) return false;
    for (size_t i = 0; i < n; ++i) {
      if (p_[pos_ + i] != 0) return Fail(field, "has a nonzero byte");
    }
    pos_ += n;
    return true;
  }
  // Zero padding to the next multiple of 8.
  bool Pad(const char* field) { return Zero(Pad8(pos_) - pos_, field); }
  // A view of `count` Ts in place (count * sizeof(T) checked for overflow
  // and against the bytes left).
  template <typename T>
  bool Array(uint64_t count, const T** out, const char* field) {
    uint64_t bytes;
    if (__builtin_mul_overflow(count, uint64_t{sizeof(T)}, &bytes) || bytes > size_ - pos_) {
      return Fail(field, "claims " + std::to_string(count) + " elements of " +
                             std::to_string(sizeof(T)) + " bytes but " +
                             std::to_string(size_ - pos_) + " bytes are left");
    }
    *out = count == 0 ? nullptr : reinterpret_cast<const T*>(p_ + pos_);
    pos_ += static_cast<size_t>(bytes);
    return true;
  }
  bool Bytes(size_t n, std::string* out, const char* field) {
    if (!Need(n, field)) return false;
    out->assign(p_ + pos_, n);
    pos_ += n;
    return true;
  }
  size_t left() const { return size_ - pos_; }
  bool Fail(const char* field, const std::string& why) {
    if (status_.ok()) {
      status_ = DataLoss(std::string(MsgTypeName(type_)) + " from rank " +
                         std::to_string(msg_.peer) + ": field '" + field + "' " + why +
                         " (body of " + std::to_string(size_) + " bytes)");
    }
    return false;
  }
  // OK if every read succeeded and the body ended exactly there.
  Status Finish() {
    if (status_.ok() && pos_ != size_) {
      Fail("end", "is followed by " + std::to_string(size_ - pos_) + " trailing bytes");
    }
    return status_;
  }
  const Status& status() const { return status_; }

 private:
  bool Need(size_t n, const char* field) {
    if (!status_.ok()) return false;
    if (n > size_ - pos_) {
      return Fail(field, "is truncated: needs " + std::to_string(n) + " bytes at offset " +
                             std::to_string(pos_));
    }
    return true;
  }
  bool Get(void* v, size_t n, const char* field) {
    if (!Need(n, field)) return false;
    std::memcpy(v, p_ + pos_, n);
    pos_ += n;
    return true;
  }

  const char* const p_;
  const size_t size_;
  size_t pos_ = 0;
  const Message& msg_;
  const MsgType type_;
  Status status_;
};

// A message that must have an empty body.
Status DecodeEmpty(const Message& msg, MsgType type) {
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, type));
  Reader r(msg, type);
  return r.Finish();
}

Message EncodeEmpty(MsgType type, uint64_t request_id) {
  Writer w(type, 0, request_id);
  return w.Take();
}

void PutClocks(Writer* w, const TrainingClocks& c) {
  w->I64(c.step);
  w->I64(c.watermark);
  w->I64(c.wall_ms);
  w->I64(c.label_wall_ms);
}

bool GetClocks(Reader* r, TrainingClocks* c) {
  return r->I64(&c->step, "step") && r->I64(&c->watermark, "watermark") &&
         r->I64(&c->wall_ms, "wall_ms") && r->I64(&c->label_wall_ms, "label_wall_ms");
}

}  // namespace

// ---- Envelope -------------------------------------------------------------------

bool IsResponseType(MsgType t) {
  switch (t) {
    case MsgType::kPullResponse:
    case MsgType::kPushResponse:
    case MsgType::kStatsResponse:
    case MsgType::kSaveResponse:
    case MsgType::kExportResponse:
    case MsgType::kExportFinalResponse:
    case MsgType::kSaveStatusResponse:
    case MsgType::kLoadResponse:
      return true;
    default:
      return false;
  }
}

bool ResponseTypeOf(MsgType request, MsgType* response) {
  switch (request) {
    case MsgType::kPullRequest:
      *response = MsgType::kPullResponse;
      return true;
    case MsgType::kPushRequest:
      *response = MsgType::kPushResponse;
      return true;
    case MsgType::kStatsRequest:
      *response = MsgType::kStatsResponse;
      return true;
    case MsgType::kSave:
      *response = MsgType::kSaveResponse;
      return true;
    case MsgType::kExportRequest:
      *response = MsgType::kExportResponse;
      return true;
    case MsgType::kExportFinal:
      *response = MsgType::kExportFinalResponse;
      return true;
    case MsgType::kSaveStatus:
      *response = MsgType::kSaveStatusResponse;
      return true;
    case MsgType::kLoad:
      *response = MsgType::kLoadResponse;
      return true;
    default:
      return false;
  }
}

Status CheckEnvelope(const Message& msg, MsgType want) {
  const std::string from = " from rank " + std::to_string(msg.peer);
  if (msg.meta.type != want) {
    return InvalidArgument(std::string("expected ") + MsgTypeName(want) + ", got " +
                           MsgTypeName(msg.meta.type) + " (type " +
                           std::to_string(static_cast<uint32_t>(msg.meta.type)) + ")" + from);
  }
  if (msg.meta.version != kPsWireVersion) {
    return FailedPrecondition(std::string(MsgTypeName(want)) + from + " has wire version " +
                              std::to_string(msg.meta.version) + ", this build speaks version " +
                              std::to_string(kPsWireVersion) +
                              " (common/ps_wire.h): are all ranks running the same build?");
  }
  if (msg.meta.status_code != StatusCode::kOk) {
    if (IsResponseType(want)) return Status(msg.meta.status_code, msg.meta.error);
    return DataLoss(std::string(MsgTypeName(want)) + from +
                    " is a request but carries an error status");
  }
  return Status::OK();
}

Message EncodeErrorResponse(MsgType type, uint64_t request_id, const Status& st) {
  CHECK(!st.ok()) << "an error response needs an error";
  CHECK(IsResponseType(type)) << MsgTypeName(type) << " is not a response";
  Writer w(type, 0, request_id);
  w.msg().meta.status_code = st.code();
  w.msg().meta.error = st.message();
  return w.Take();
}

// ---- PULL -------------------------------------------------------------------

size_t PullRequestBodyBytes(uint32_t num_keys) {
  return 32 + CheckedMul(num_keys, sizeof(uint64_t));
}

Message EncodePullRequest(const PullRequest& req, uint64_t** keys_out, std::vector<char> buffer) {
  const size_t key_bytes = CheckedMul(req.num_keys, sizeof(uint64_t));
  Writer w(MsgType::kPullRequest, PullRequestBodyBytes(req.num_keys), 0, std::move(buffer));
  w.I32(req.table);
  w.U32(req.dim);
  w.U32(req.num_keys);
  w.U32(0);
  w.I64(req.step);
  w.I64(req.staleness);
  auto* keys = reinterpret_cast<uint64_t*>(w.Grow(key_bytes));
  if (keys_out != nullptr) {
    *keys_out = keys;
  } else if (key_bytes > 0) {
    std::memcpy(keys, req.keys, key_bytes);
  }
  return w.Take();
}

StatusOr<PullRequest> DecodePullRequest(const Message& msg) {
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, MsgType::kPullRequest));
  Reader r(msg, MsgType::kPullRequest);
  PullRequest q;
  r.I32(&q.table, "table") && r.U32(&q.dim, "dim") && r.U32(&q.num_keys, "num_keys") &&
      r.Zero(4, "padding") && r.I64(&q.step, "step") && r.I64(&q.staleness, "staleness") &&
      r.Array(q.num_keys, &q.keys, "keys");
  FRESHET_RETURN_IF_ERROR(r.Finish());
  return q;
}

size_t PullResponseBodyBytes(uint32_t num_keys, uint32_t dim) {
  return 8 + Pad8(CheckedMul(CheckedMul(num_keys, dim), sizeof(float)));
}

Message EncodePullResponse(uint64_t request_id, uint32_t num_keys, uint32_t dim, float** rows,
                           std::vector<char> buffer) {
  const size_t row_bytes = CheckedMul(CheckedMul(num_keys, dim), sizeof(float));
  Writer w(MsgType::kPullResponse, PullResponseBodyBytes(num_keys, dim), request_id,
           std::move(buffer));
  w.U32(num_keys);
  w.U32(dim);
  *rows = reinterpret_cast<float*>(w.Grow(row_bytes));
  w.Pad();
  return w.Take();
}

StatusOr<PullResponse> DecodePullResponse(const Message& msg) {
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, MsgType::kPullResponse));
  Reader r(msg, MsgType::kPullResponse);
  PullResponse p;
  r.U32(&p.num_keys, "num_keys") && r.U32(&p.dim, "dim") &&
      r.Array(uint64_t{p.num_keys} * p.dim, &p.rows, "rows") && r.Pad("padding");
  FRESHET_RETURN_IF_ERROR(r.Finish());
  return p;
}

// ---- PUSH -------------------------------------------------------------------

size_t PushRequestBodyBytes(uint32_t num_keys, uint32_t dim) {
  return 24 + CheckedMul(num_keys, sizeof(uint64_t)) +
         Pad8(CheckedMul(CheckedMul(num_keys, dim), sizeof(float)));
}

Message EncodePushRequest(const PushRequest& req, uint64_t** keys_out, float** grads_out,
                          std::vector<char> buffer) {
  const size_t key_bytes = CheckedMul(req.num_keys, sizeof(uint64_t));
  const size_t grad_bytes = CheckedMul(CheckedMul(req.num_keys, req.dim), sizeof(float));
  Writer w(MsgType::kPushRequest, PushRequestBodyBytes(req.num_keys, req.dim), 0,
           std::move(buffer));
  w.I32(req.table);
  w.U32(req.dim);
  w.U32(req.num_keys);
  w.I32(req.worker);
  w.I64(req.event_time_s);
  auto* keys = reinterpret_cast<uint64_t*>(w.Grow(key_bytes));
  auto* grads = reinterpret_cast<float*>(w.Grow(grad_bytes));
  w.Pad();
  if (keys_out != nullptr) {
    *keys_out = keys;
  } else if (key_bytes > 0) {
    std::memcpy(keys, req.keys, key_bytes);
  }
  if (grads_out != nullptr) {
    *grads_out = grads;
  } else if (grad_bytes > 0) {
    std::memcpy(grads, req.grads, grad_bytes);
  }
  return w.Take();
}

StatusOr<PushRequest> DecodePushRequest(const Message& msg) {
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, MsgType::kPushRequest));
  Reader r(msg, MsgType::kPushRequest);
  PushRequest q;
  r.I32(&q.table, "table") && r.U32(&q.dim, "dim") && r.U32(&q.num_keys, "num_keys") &&
      r.I32(&q.worker, "worker") && r.I64(&q.event_time_s, "event_time_s") &&
      r.Array(q.num_keys, &q.keys, "keys") &&
      r.Array(uint64_t{q.num_keys} * q.dim, &q.grads, "grads") && r.Pad("padding");
  FRESHET_RETURN_IF_ERROR(r.Finish());
  return q;
}

Message EncodePushResponse(uint64_t request_id) {
  return EncodeEmpty(MsgType::kPushResponse, request_id);
}
Status DecodePushResponse(const Message& msg) { return DecodeEmpty(msg, MsgType::kPushResponse); }

// ---- CLOCK, SHUTDOWN ------------------------------------------------------------

Message EncodeClock(const ClockMessage& c) {
  Writer w(MsgType::kClock, 24);
  w.I32(c.worker);
  w.U32(0);
  w.I64(c.step);
  w.I64(c.pushes_sent);
  return w.Take();
}

StatusOr<ClockMessage> DecodeClock(const Message& msg) {
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, MsgType::kClock));
  Reader r(msg, MsgType::kClock);
  ClockMessage c;
  r.I32(&c.worker, "worker") && r.Zero(4, "padding") && r.I64(&c.step, "step") &&
      r.I64(&c.pushes_sent, "pushes_sent");
  FRESHET_RETURN_IF_ERROR(r.Finish());
  return c;
}

Message EncodeShutdown(const ShutdownMessage& s) {
  Writer w(MsgType::kShutdown, 8);
  w.I32(s.worker);
  w.U32(0);
  return w.Take();
}

StatusOr<ShutdownMessage> DecodeShutdown(const Message& msg) {
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, MsgType::kShutdown));
  Reader r(msg, MsgType::kShutdown);
  ShutdownMessage s;
  r.I32(&s.worker, "worker") && r.Zero(4, "padding");
  FRESHET_RETURN_IF_ERROR(r.Finish());
  return s;
}

// ---- STATS ------------------------------------------------------------------

Message EncodeStatsRequest() { return EncodeEmpty(MsgType::kStatsRequest, 0); }
Status DecodeStatsRequest(const Message& msg) { return DecodeEmpty(msg, MsgType::kStatsRequest); }

Message EncodeStatsResponse(uint64_t request_id, const ServerStats& s) {
  Writer w(MsgType::kStatsResponse, 64, request_id);
  for (int64_t v : {s.rows, s.bytes, s.pull_requests, s.push_requests, s.keys_pulled, s.keys_pushed,
                    s.resident_bytes, s.minor_faults}) {
    w.I64(v);
  }
  return w.Take();
}

StatusOr<ServerStats> DecodeStatsResponse(const Message& msg) {
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, MsgType::kStatsResponse));
  Reader r(msg, MsgType::kStatsResponse);
  ServerStats s;
  r.I64(&s.rows, "rows") && r.I64(&s.bytes, "bytes") && r.I64(&s.pull_requests, "pull_requests") &&
      r.I64(&s.push_requests, "push_requests") && r.I64(&s.keys_pulled, "keys_pulled") &&
      r.I64(&s.keys_pushed, "keys_pushed") && r.I64(&s.resident_bytes, "resident_bytes") &&
      r.I64(&s.minor_faults, "minor_faults");
  FRESHET_RETURN_IF_ERROR(r.Finish());
  return s;
}

// ---- SAVE, SAVE_STATUS ----------------------------------------------------------

Message EncodeSaveRequest(const SaveRequest& q) {
  Writer w(MsgType::kSave, 8 + Pad8(q.dir.size()));
  w.U32(q.incremental ? 1 : 0);
  w.U32(static_cast<uint32_t>(q.dir.size()));
  w.Put(q.dir.data(), q.dir.size());
  w.Pad();
  return w.Take();
}

StatusOr<SaveRequest> DecodeSaveRequest(const Message& msg) {
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, MsgType::kSave));
  Reader r(msg, MsgType::kSave);
  SaveRequest q;
  uint32_t len = 0;
  r.Bool(&q.incremental, "incremental") && r.U32(&len, "dir_length") &&
      r.Bytes(len, &q.dir, "dir") && r.Pad("padding");
  FRESHET_RETURN_IF_ERROR(r.Finish());
  return q;
}

Message EncodeSaveResponse(uint64_t request_id, const SaveResponse& p) {
  Writer w(MsgType::kSaveResponse, 16, request_id);
  w.I64(p.bytes_copied);
  w.I64(p.copy_us);
  return w.Take();
}

StatusOr<SaveResponse> DecodeSaveResponse(const Message& msg) {
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, MsgType::kSaveResponse));
  Reader r(msg, MsgType::kSaveResponse);
  SaveResponse p;
  r.I64(&p.bytes_copied, "bytes_copied") && r.I64(&p.copy_us, "copy_us");
  FRESHET_RETURN_IF_ERROR(r.Finish());
  return p;
}

Message EncodeLoadRequest(const LoadRequest& q) {
  Writer w(MsgType::kLoad, 8 + Pad8(q.dir.size()));
  w.U32(static_cast<uint32_t>(q.dir.size()));
  w.U32(0);
  w.Put(q.dir.data(), q.dir.size());
  w.Pad();
  return w.Take();
}

StatusOr<LoadRequest> DecodeLoadRequest(const Message& msg) {
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, MsgType::kLoad));
  Reader r(msg, MsgType::kLoad);
  LoadRequest q;
  uint32_t len = 0;
  r.U32(&len, "dir_length") && r.Zero(4, "padding") && r.Bytes(len, &q.dir, "dir") &&
      r.Pad("padding");
  FRESHET_RETURN_IF_ERROR(r.Finish());
  return q;
}

Message EncodeLoadResponse(uint64_t request_id, const LoadResponse& p) {
  Writer w(MsgType::kLoadResponse, 8, request_id);
  w.I64(p.rows);
  return w.Take();
}

StatusOr<LoadResponse> DecodeLoadResponse(const Message& msg) {
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, MsgType::kLoadResponse));
  Reader r(msg, MsgType::kLoadResponse);
  LoadResponse p;
  r.I64(&p.rows, "rows");
  FRESHET_RETURN_IF_ERROR(r.Finish());
  return p;
}

Message EncodeSaveStatusRequest(const SaveStatusRequest& q) {
  Writer w(MsgType::kSaveStatus, 8 + Pad8(q.dir.size()));
  w.U32(static_cast<uint32_t>(q.dir.size()));
  w.U32(0);
  w.Put(q.dir.data(), q.dir.size());
  w.Pad();
  return w.Take();
}

StatusOr<SaveStatusRequest> DecodeSaveStatusRequest(const Message& msg) {
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, MsgType::kSaveStatus));
  Reader r(msg, MsgType::kSaveStatus);
  SaveStatusRequest q;
  uint32_t len = 0;
  r.U32(&len, "dir_length") && r.Zero(4, "padding") && r.Bytes(len, &q.dir, "dir") &&
      r.Pad("padding");
  FRESHET_RETURN_IF_ERROR(r.Finish());
  return q;
}

Message EncodeSaveStatusResponse(uint64_t request_id, const SaveStatusResponse& p) {
  Writer w(MsgType::kSaveStatusResponse, 16, request_id);
  w.U32(p.written ? 1 : 0);
  w.U32(0);
  w.I64(p.write_us);
  return w.Take();
}

StatusOr<SaveStatusResponse> DecodeSaveStatusResponse(const Message& msg) {
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, MsgType::kSaveStatusResponse));
  Reader r(msg, MsgType::kSaveStatusResponse);
  SaveStatusResponse p;
  r.Bool(&p.written, "written") && r.Zero(4, "padding") && r.I64(&p.write_us, "write_us");
  FRESHET_RETURN_IF_ERROR(r.Finish());
  return p;
}

// ---- EXPORT -------------------------------------------------------------------

Message EncodeExportRequest(const ExportRequest& q) {
  Writer w(MsgType::kExportRequest, 8);
  w.U32(q.since_version);
  w.U32(0);
  return w.Take();
}

StatusOr<ExportRequest> DecodeExportRequest(const Message& msg) {
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, MsgType::kExportRequest));
  Reader r(msg, MsgType::kExportRequest);
  ExportRequest q;
  r.U32(&q.since_version, "since_version") && r.Zero(4, "padding");
  FRESHET_RETURN_IF_ERROR(r.Finish());
  return q;
}

ExportResponseEncoder::ExportResponseEncoder(uint64_t request_id) {
  msg_.meta.type = MsgType::kExportResponse;
  msg_.meta.version = kPsWireVersion;
  msg_.meta.request_id = request_id;
  msg_.body.resize(8);  // version and num_tables, written by Finish()
}

void ExportResponseEncoder::AddTable(const ExportedTable& t) {
  CHECK(t.dim >= 1 && t.dim <= kMaxTableDim) << "table " << t.table << " dim " << t.dim;
  const size_t key_bytes = CheckedMul(t.n, sizeof(uint64_t));
  const size_t weight_bytes = CheckedMul(CheckedMul(t.n, t.dim), sizeof(float));
  const size_t deleted_bytes = CheckedMul(t.num_deleted, sizeof(uint64_t));
  std::vector<char>& b = msg_.body;
  b.reserve(b.size() + 24 + key_bytes + Pad8(weight_bytes) + deleted_bytes + kFrameSlack);
  auto put = [&b](const void* p, size_t n) {
    const size_t at = b.size();
    b.resize(at + n);
    if (n > 0) std::memcpy(b.data() + at, p, n);
  };
  const uint64_t n = t.n, d = t.num_deleted;
  put(&t.table, 4);
  put(&t.dim, 4);
  put(&n, 8);
  put(t.keys, key_bytes);
  put(t.weights, weight_bytes);
  b.resize(Pad8(b.size()));
  put(&d, 8);
  put(t.deleted, deleted_bytes);
  ++num_tables_;
}

Message ExportResponseEncoder::Finish(uint32_t version) {
  std::memcpy(msg_.body.data(), &version, 4);
  std::memcpy(msg_.body.data() + 4, &num_tables_, 4);
  return std::move(msg_);
}

StatusOr<ExportResponse> DecodeExportResponse(const Message& msg) {
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, MsgType::kExportResponse));
  Reader r(msg, MsgType::kExportResponse);
  ExportResponse p;
  uint32_t num_tables = 0;
  if (r.U32(&p.version, "version") && r.U32(&num_tables, "num_tables")) {
    // Each table takes at least 24 bytes: never reserve more than the body
    // can hold.
    if (num_tables > r.left() / 24) {
      r.Fail("num_tables", "is " + std::to_string(num_tables) + ", more than " +
                               std::to_string(r.left()) + " bytes can hold");
    } else {
      p.tables.reserve(num_tables);
    }
  }
  for (uint32_t i = 0; i < num_tables && r.status().ok(); ++i) {
    ExportedTable t;
    uint64_t n = 0, d = 0;
    if (!r.U32(&t.table, "table") || !r.U32(&t.dim, "dim") || !r.U64(&n, "n")) break;
    // Table dims are 1..kMaxTableDim (ValidateTableConfig); ids are ints.
    if (t.dim == 0 || t.dim > kMaxTableDim) {
      r.Fail("dim", "of table " + std::to_string(i) + " is " + std::to_string(t.dim) +
                        " (dims are 1.." + std::to_string(kMaxTableDim) + ")");
      break;
    }
    if (t.table > static_cast<uint32_t>(INT32_MAX)) {
      r.Fail("table",
             "id " + std::to_string(t.table) + " of table " + std::to_string(i) + " is not an int");
      break;
    }
    uint64_t weights = 0;
    if (__builtin_mul_overflow(n, uint64_t{t.dim}, &weights)) {
      r.Fail("n", "of table " + std::to_string(i) + " is " + std::to_string(n));
      break;
    }
    if (!r.Array(n, &t.keys, "keys") || !r.Array(weights, &t.weights, "weights") ||
        !r.Pad("padding") || !r.U64(&d, "num_deleted") || !r.Array(d, &t.deleted, "deleted")) {
      break;
    }
    t.n = static_cast<size_t>(n);
    t.num_deleted = static_cast<size_t>(d);
    p.tables.push_back(t);
  }
  FRESHET_RETURN_IF_ERROR(r.Finish());
  return p;
}

// ---- DENSE_UPDATE, EXPORT_FINAL, WATERMARK ----------------------------------------

Message EncodeDenseUpdate(const DenseUpdate& u, bool final) {
  const size_t bytes = CheckedMul(u.num_dense, sizeof(float));
  Writer w(final ? MsgType::kExportFinal : MsgType::kDenseUpdate, 40 + Pad8(bytes));
  PutClocks(&w, u.clocks);
  w.U64(u.num_dense);
  w.Put(u.dense, bytes);
  w.Pad();
  return w.Take();
}

StatusOr<DenseUpdate> DecodeDenseUpdate(const Message& msg, bool* final) {
  const MsgType type =
      msg.meta.type == MsgType::kExportFinal ? MsgType::kExportFinal : MsgType::kDenseUpdate;
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, type));
  Reader r(msg, type);
  DenseUpdate u;
  uint64_t n = 0;
  GetClocks(&r, &u.clocks) && r.U64(&n, "num_dense") && r.Array(n, &u.dense, "dense") &&
      r.Pad("padding");
  FRESHET_RETURN_IF_ERROR(r.Finish());
  u.num_dense = static_cast<size_t>(n);
  if (final != nullptr) *final = type == MsgType::kExportFinal;
  return u;
}

Message EncodeExportFinalResponse(uint64_t request_id) {
  return EncodeEmpty(MsgType::kExportFinalResponse, request_id);
}
Status DecodeExportFinalResponse(const Message& msg) {
  return DecodeEmpty(msg, MsgType::kExportFinalResponse);
}

Message EncodeWatermark(const TrainingClocks& c) {
  Writer w(MsgType::kWatermark, 32);
  PutClocks(&w, c);
  return w.Take();
}

StatusOr<TrainingClocks> DecodeWatermark(const Message& msg) {
  FRESHET_RETURN_IF_ERROR(CheckEnvelope(msg, MsgType::kWatermark));
  Reader r(msg, MsgType::kWatermark);
  TrainingClocks c;
  GetClocks(&r, &c);
  FRESHET_RETURN_IF_ERROR(r.Finish());
  return c;
}

// ---- Any type -----------------------------------------------------------------

Status ValidateMessage(const Message& msg) {
  switch (msg.meta.type) {
    case MsgType::kPullRequest:
      return DecodePullRequest(msg).status();
    case MsgType::kPullResponse:
      return DecodePullResponse(msg).status();
    case MsgType::kPushRequest:
      return DecodePushRequest(msg).status();
    case MsgType::kPushResponse:
      return DecodePushResponse(msg);
    case MsgType::kClock:
      return DecodeClock(msg).status();
    case MsgType::kStatsRequest:
      return DecodeStatsRequest(msg);
    case MsgType::kStatsResponse:
      return DecodeStatsResponse(msg).status();
    case MsgType::kShutdown:
      return DecodeShutdown(msg).status();
    case MsgType::kSave:
      return DecodeSaveRequest(msg).status();
    case MsgType::kSaveResponse:
      return DecodeSaveResponse(msg).status();
    case MsgType::kExportRequest:
      return DecodeExportRequest(msg).status();
    case MsgType::kExportResponse:
      return DecodeExportResponse(msg).status();
    case MsgType::kDenseUpdate:
    case MsgType::kExportFinal:
      return DecodeDenseUpdate(msg).status();
    case MsgType::kExportFinalResponse:
      return DecodeExportFinalResponse(msg);
    case MsgType::kWatermark:
      return DecodeWatermark(msg).status();
    case MsgType::kSaveStatus:
      return DecodeSaveStatusRequest(msg).status();
    case MsgType::kSaveStatusResponse:
      return DecodeSaveStatusResponse(msg).status();
    case MsgType::kLoad:
      return DecodeLoadRequest(msg).status();
    case MsgType::kLoadResponse:
      return DecodeLoadResponse(msg).status();
  }
  return InvalidArgument("unknown message type " +
                         std::to_string(static_cast<uint32_t>(msg.meta.type)) + " from rank " +
                         std::to_string(msg.peer));
}

}  // namespace freshet
