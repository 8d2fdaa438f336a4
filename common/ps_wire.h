// ps_wire: the one codec of parameter-server message bodies. Every message
// type (common/transport.h MsgType) has a typed struct here, and its
// encoder and decoder sit side by side in ps_wire.cc; no other file builds
// or parses a message body.
//
// Envelope. The protobuf header (MessageMeta / WireHeader) carries only what
// every message has: type, wire version, request id, and a response's
// status and error text. Everything else is in the body, as fixed
// little-endian fields followed by arrays; each field has one meaning.
// Prefixes are multiples of 8 bytes and arrays are padded to 8, so keys and
// rows in a body are naturally aligned (a body is a std::vector<char>, whose
// buffer is aligned for any scalar).
//
// Versioning. Encoders stamp kPsWireVersion into the header; every decoder
// refuses another version (FailedPrecondition naming both versions), so
// ranks of mixed builds fail loudly instead of misreading bodies. Bump
// kPsWireVersion whenever any layout below changes.
//
// Decoding is bounds-checked: every count is checked against the body size
// (no overflow in count * dim products), a body must end exactly where its
// last field ends (trailing bytes are refused), and padding must be zero.
// Errors are DataLoss naming the message type and the field. A decoder of a
// response first returns the peer's error, when the header carries one.
//
// Zero copy. Decoded PULL/PUSH requests, PULL responses, EXPORT responses and
// dense updates are views: their pointers point into the Message's body and
// stay valid while that body lives unmodified (moving the Message keeps them
// valid: a moved std::vector keeps its buffer). Encoders of large bodies
// (PULL/PUSH requests, PULL responses) reserve the body, with room for the
// frame header the transport appends, and hand out the region for the
// caller to fill in place: a server writes table rows straight into its
// reply.
//
// Body layouts (u32/i32/u64/i64/f32 little-endian; pad: zero bytes to the
// next multiple of 8):
//   PULL                 i32 table, u32 dim, u32 num_keys, u32 0, i64 step,
//                        i64 staleness, num_keys x u64 key
//   PULL_RESPONSE        u32 num_keys, u32 dim, num_keys*dim x f32, pad
//   PUSH                 i32 table, u32 dim, u32 num_keys, i32 worker,
//                        i64 event_time_s, num_keys x u64 key,
//                        num_keys*dim x f32 gradient, pad
//   PUSH_RESPONSE        (empty)
//   CLOCK                i32 worker, u32 0, i64 step, i64 pushes_sent
//   STATS                (empty)
//   STATS_RESPONSE       7 x i64 (ServerStats, in field order)
//   SHUTDOWN             i32 worker, u32 0
//   SAVE                 u32 incremental (0|1), u32 dir length, dir bytes, pad
//   SAVE_RESPONSE        i64 bytes_copied, i64 copy_us
//   SAVE_STATUS          u32 dir length, u32 0, dir bytes, pad
//   SAVE_STATUS_RESPONSE u32 written (0|1), u32 0, i64 write_us
//   EXPORT               u32 since_version, u32 0
//   EXPORT_RESPONSE      u32 version, u32 num_tables, per table { u32 table,
//                        u32 dim, u64 n, n x u64 key, n*dim x f32 weights,
//                        pad, u64 d, d x u64 deleted key }
//   DENSE_UPDATE,        i64 step, i64 watermark, i64 wall_ms,
//   EXPORT_FINAL         i64 label_wall_ms, u64 n, n x f32 dense, pad
//   EXPORT_FINAL_RESPONSE (empty)
//   WATERMARK            i64 step, i64 watermark, i64 wall_ms, i64 label_wall_ms
//
// Thread safety: free functions on values; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/transport.h"

namespace freshet {

// The layout version of every body above. 0 is never valid (a peer that
// predates versioning sends no version).
inline constexpr uint32_t kPsWireVersion = 1;

// Checks a received message's header: its type is `want` and its version is
// kPsWireVersion; for a response, returns the peer's error when it sent one.
// Every Decode* below starts with it.
Status CheckEnvelope(const Message& msg, MsgType want);

// True for the *_RESPONSE types.
bool IsResponseType(MsgType t);
// The type that answers a request of type `request` (PULL -> PULL_RESPONSE,
// ...); false for types nobody answers (CLOCK, SHUTDOWN, DENSE_UPDATE,
// WATERMARK) and for responses.
bool ResponseTypeOf(MsgType request, MsgType* response);

// A response of `type` to request `request_id` that carries `st` (not OK)
// and no body. Every *Response decoder returns that status.
Message EncodeErrorResponse(MsgType type, uint64_t request_id, const Status& st);

// ---- PULL -------------------------------------------------------------------

// A worker asks for the rows of `num_keys` keys of one table.
struct PullRequest {
  int32_t table = 0;
  uint32_t dim = 0;
  int64_t step = 0;        // the worker's step when it pulled (bounded staleness)
  int64_t staleness = -1;  // the bound k (< 0: none); see server/server_node.h
  // View into the message body (see "Zero copy").
  const uint64_t* keys = nullptr;
  uint32_t num_keys = 0;
};
// Encodes `req` with room for req.num_keys keys. If `keys_out` is null,
// req.keys[0..num_keys) are copied into the body; otherwise *keys_out points
// at the body's keys, for the caller to fill (all of them: a reused `buffer`
// is written over, not zeroed) before sending.
Message EncodePullRequest(const PullRequest& req, uint64_t** keys_out = nullptr,
                          std::vector<char> buffer = {});
// The body size of a PULL request of `num_keys` keys: the `buffer` to take
// from Transport::NewBuffer so a large request reuses memory.
size_t PullRequestBodyBytes(uint32_t num_keys);
StatusOr<PullRequest> DecodePullRequest(const Message& msg);

// The rows of a pull, in the request's key order.
struct PullResponse {
  uint32_t num_keys = 0;
  uint32_t dim = 0;
  const float* rows = nullptr;  // num_keys * dim floats; view into the body
};
// A reply to `request_id` with room for num_keys * dim floats; *rows points
// at them, for the caller to fill before sending: every row, since a reused
// `buffer` is written over, not zeroed first. `buffer`: storage to reuse for
// the body (its capacity kept), e.g. Transport::NewBuffer's recycled ones.
Message EncodePullResponse(uint64_t request_id, uint32_t num_keys, uint32_t dim, float** rows,
                           std::vector<char> buffer = {});
size_t PullResponseBodyBytes(uint32_t num_keys, uint32_t dim);
StatusOr<PullResponse> DecodePullResponse(const Message& msg);

// ---- PUSH -------------------------------------------------------------------

// A worker's gradients for `num_keys` rows of one table.
struct PushRequest {
  int32_t table = 0;
  uint32_t dim = 0;
  int32_t worker = -1;       // the sender's worker index (counted for CLOCK)
  int64_t event_time_s = 0;  // newest event time (unix s) of the batch, for TTLs; 0 unknown
  // Views into the message body (see "Zero copy").
  const uint64_t* keys = nullptr;
  const float* grads = nullptr;  // num_keys * dim
  uint32_t num_keys = 0;
};
// Encodes `req` with room for its keys and gradients. With null out
// pointers, req.keys and req.grads are copied; otherwise *keys_out and
// *grads_out point into the body for the caller to fill, every key and
// gradient (a reused `buffer` is not zeroed first).
Message EncodePushRequest(const PushRequest& req, uint64_t** keys_out = nullptr,
                          float** grads_out = nullptr, std::vector<char> buffer = {});
size_t PushRequestBodyBytes(uint32_t num_keys, uint32_t dim);
StatusOr<PushRequest> DecodePushRequest(const Message& msg);

Message EncodePushResponse(uint64_t request_id);
Status DecodePushResponse(const Message& msg);

// ---- CLOCK, SHUTDOWN ------------------------------------------------------------

// A worker finished step `step` and had sent this server `pushes_sent`
// pushes by then.
struct ClockMessage {
  int32_t worker = -1;
  int64_t step = 0;
  int64_t pushes_sent = 0;
};
Message EncodeClock(const ClockMessage& c);
StatusOr<ClockMessage> DecodeClock(const Message& msg);

// A worker is done; servers exit when all are.
struct ShutdownMessage {
  int32_t worker = -1;
};
Message EncodeShutdown(const ShutdownMessage& s);
StatusOr<ShutdownMessage> DecodeShutdown(const Message& msg);

// ---- STATS ------------------------------------------------------------------

// A server's counters (the STATS_RESPONSE payload).
struct ServerStats {
  int64_t rows = 0;
  int64_t bytes = 0;
  int64_t pull_requests = 0;
  int64_t push_requests = 0;
  int64_t keys_pulled = 0;
  int64_t keys_pushed = 0;
  int64_t resident_bytes = 0;  // the server process's resident set (0: unknown)
  // The server process's minor page faults so far (getrusage): a benchmark
  // tells from it whether message buffers are mapped afresh per request.
  int64_t minor_faults = 0;
};
Message EncodeStatsRequest();
Status DecodeStatsRequest(const Message& msg);
Message EncodeStatsResponse(uint64_t request_id, const ServerStats& s);
StatusOr<ServerStats> DecodeStatsResponse(const Message& msg);

// ---- SAVE, SAVE_STATUS ----------------------------------------------------------

// Copy every row, then write them under `dir` in the background
// (server/server_node.h). `incremental`: only rows pushed since the
// server's previous successful save.
struct SaveRequest {
  std::string dir;  // any bytes (a path)
  bool incremental = false;
};
Message EncodeSaveRequest(const SaveRequest& r);
StatusOr<SaveRequest> DecodeSaveRequest(const Message& msg);

// Sent after the copy.
struct SaveResponse {
  int64_t bytes_copied = 0;
  int64_t copy_us = 0;  // time the copy took
};
Message EncodeSaveResponse(uint64_t request_id, const SaveResponse& r);
StatusOr<SaveResponse> DecodeSaveResponse(const Message& msg);

// Has the SAVE to `dir` been written?
struct SaveStatusRequest {
  std::string dir;
};
Message EncodeSaveStatusRequest(const SaveStatusRequest& r);
StatusOr<SaveStatusRequest> DecodeSaveStatusRequest(const Message& msg);

// A failed write is an error response (its status).
struct SaveStatusResponse {
  bool written = false;  // false: still writing
  int64_t write_us = 0;  // when written: how long the write took
};
Message EncodeSaveStatusResponse(uint64_t request_id, const SaveStatusResponse& r);
StatusOr<SaveStatusResponse> DecodeSaveStatusResponse(const Message& msg);

// ---- LOAD ---------------------------------------------------------------------

// Replace every row with those a SAVE wrote under `dir` (the server's own
// shard file; early stopping restores the best pass with it).
struct LoadRequest {
  std::string dir;  // any bytes (a path)
};
Message EncodeLoadRequest(const LoadRequest& r);
StatusOr<LoadRequest> DecodeLoadRequest(const Message& msg);

// A failed load is an error response (its status).
struct LoadResponse {
  int64_t rows = 0;  // rows loaded
};
Message EncodeLoadResponse(uint64_t request_id, const LoadResponse& r);
StatusOr<LoadResponse> DecodeLoadResponse(const Message& msg);

// ---- EXPORT -------------------------------------------------------------------

// The exporter asks a server for the rows pushed after `since_version` (0:
// every row).
struct ExportRequest {
  uint32_t since_version = 0;
};
Message EncodeExportRequest(const ExportRequest& r);
StatusOr<ExportRequest> DecodeExportRequest(const Message& msg);

// One table's changed rows in an EXPORT_RESPONSE (views into the body).
struct ExportedTable {
  uint32_t table = 0;
  uint32_t dim = 0;  // 1..kMaxTableDim (common/config.h)
  const uint64_t* keys = nullptr;
  const float* weights = nullptr;  // n * dim
  size_t n = 0;
  const uint64_t* deleted = nullptr;  // keys of rows evicted since the cursor
  size_t num_deleted = 0;
};
// The rows of every table pushed after the request's since_version
// (semantics: ParameterShard::ExportChanged). `version`: the server's new
// cursor, for the next request.
struct ExportResponse {
  uint32_t version = 0;
  std::vector<ExportedTable> tables;
};
// Builds an EXPORT_RESPONSE table by table (the shard's export emits
// tables one after another, so rows are copied once, into the body).
class ExportResponseEncoder {
 public:
  explicit ExportResponseEncoder(uint64_t request_id);
  // Appends one table. REQUIRES: 1 <= t.dim <= kMaxTableDim.
  void AddTable(const ExportedTable& t);
  // The message, with the server's new cursor `version` (call once).
  Message Finish(uint32_t version);

 private:
  Message msg_;
  uint32_t num_tables_ = 0;
};
StatusOr<ExportResponse> DecodeExportResponse(const Message& msg);

// ---- DENSE_UPDATE, EXPORT_FINAL, WATERMARK ----------------------------------------

// What a worker reports about the data it trained (docs/METRICS.md
// "Freshness"): its step, event-time watermark (unix s) and the newest
// read and label-known times of the examples trained (unix ms; 0 unknown).
struct TrainingClocks {
  int64_t step = 0;
  int64_t watermark = 0;
  int64_t wall_ms = 0;
  int64_t label_wall_ms = 0;
};
// Worker 0's dense parameters with its clocks (DENSE_UPDATE), or the final
// ones with every worker's minimum (EXPORT_FINAL): the same payload.
struct DenseUpdate {
  TrainingClocks clocks;
  const float* dense = nullptr;  // view into the body (decoded), or the source (encoding)
  size_t num_dense = 0;
};
// `final`: EXPORT_FINAL (answered once the final snapshot is published),
// else DENSE_UPDATE. u.dense[0..num_dense) are copied into the body.
Message EncodeDenseUpdate(const DenseUpdate& u, bool final);
// Decodes either type (msg's own); *final says which.
StatusOr<DenseUpdate> DecodeDenseUpdate(const Message& msg, bool* final = nullptr);
Message EncodeExportFinalResponse(uint64_t request_id);
Status DecodeExportFinalResponse(const Message& msg);

// Any worker -> exporter: its clocks (no parameters).
Message EncodeWatermark(const TrainingClocks& c);
StatusOr<TrainingClocks> DecodeWatermark(const Message& msg);

// Decodes `msg` with the decoder of its type (any MsgType), discarding the
// result: OK if it is well formed. For fuzzing and tests.
Status ValidateMessage(const Message& msg);

}  // namespace freshet
