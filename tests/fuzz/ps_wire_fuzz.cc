// Fuzz target: every decoder of common/ps_wire.h (the bodies of all PS
// message types). The input is one message:
//   byte 0   the type: byte % 22 (0 and 21 are not message types)
//   byte 1   the header: bit 0 set: wire version byte >> 1 (usually wrong);
//            bit 1 set: an error response (status kInternal, text "e")
//   rest     the body
// Whatever the bytes, a decoder returns an error or a value whose views lie
// inside the body; a message that decodes must encode back to exactly the
// same body (the layout is canonical: zero padding, no trailing bytes).
#include <cstring>
#include <vector>

#include "common/ps_wire.h"
#include "tests/fuzz/fuzz_util.h"

namespace freshet {
namespace {

bool Inside(const Message& m, const void* p, size_t bytes) {
  if (bytes == 0) return true;
  const char* c = static_cast<const char*>(p);
  return c >= m.body.data() && c + bytes <= m.body.data() + m.body.size();
}

// Decodes msg with its type's decoder; if that succeeds, checks the views
// and that re-encoding gives the same body.
void Check(const Message& msg) {
  const uint64_t id = msg.meta.request_id;
  Message again;
  switch (msg.meta.type) {
    case MsgType::kPullRequest: {
      auto r = DecodePullRequest(msg);
      if (!r.ok()) return;
      FUZZ_CHECK(Inside(msg, r->keys, r->num_keys * sizeof(uint64_t)));
      again = EncodePullRequest(*r);
      break;
    }
    case MsgType::kPullResponse: {
      auto r = DecodePullResponse(msg);
      if (!r.ok()) return;
      const size_t n = size_t{r->num_keys} * r->dim;
      FUZZ_CHECK(Inside(msg, r->rows, n * sizeof(float)));
      float* rows = nullptr;
      again = EncodePullResponse(id, r->num_keys, r->dim, &rows);
      if (n > 0) std::memcpy(rows, r->rows, n * sizeof(float));
      break;
    }
    case MsgType::kPushRequest: {
      auto r = DecodePushRequest(msg);
      if (!r.ok()) return;
      FUZZ_CHECK(Inside(msg, r->keys, r->num_keys * sizeof(uint64_t)));
      FUZZ_CHECK(Inside(msg, r->grads, size_t{r->num_keys} * r->dim * sizeof(float)));
      again = EncodePushRequest(*r);
      break;
    }
    case MsgType::kPushResponse:
      if (!DecodePushResponse(msg).ok()) return;
      again = EncodePushResponse(id);
      break;
    case MsgType::kClock: {
      auto r = DecodeClock(msg);
      if (!r.ok()) return;
      again = EncodeClock(*r);
      break;
    }
    case MsgType::kStatsRequest:
      if (!DecodeStatsRequest(msg).ok()) return;
      again = EncodeStatsRequest();
      break;
    case MsgType::kStatsResponse: {
      auto r = DecodeStatsResponse(msg);
      if (!r.ok()) return;
      again = EncodeStatsResponse(id, *r);
      break;
    }
    case MsgType::kShutdown: {
      auto r = DecodeShutdown(msg);
      if (!r.ok()) return;
      again = EncodeShutdown(*r);
      break;
    }
    case MsgType::kSave: {
      auto r = DecodeSaveRequest(msg);
      if (!r.ok()) return;
      again = EncodeSaveRequest(*r);
      break;
    }
    case MsgType::kSaveResponse: {
      auto r = DecodeSaveResponse(msg);
      if (!r.ok()) return;
      again = EncodeSaveResponse(id, *r);
      break;
    }
    case MsgType::kExportRequest: {
      auto r = DecodeExportRequest(msg);
      if (!r.ok()) return;
      again = EncodeExportRequest(*r);
      break;
    }
    case MsgType::kExportResponse: {
      auto r = DecodeExportResponse(msg);
      if (!r.ok()) return;
      ExportResponseEncoder enc(id);
      for (const ExportedTable& t : r->tables) {
        FUZZ_CHECK(t.dim >= 1);
        FUZZ_CHECK(Inside(msg, t.keys, t.n * sizeof(uint64_t)));
        FUZZ_CHECK(Inside(msg, t.weights, t.n * t.dim * sizeof(float)));
        FUZZ_CHECK(Inside(msg, t.deleted, t.num_deleted * sizeof(uint64_t)));
        enc.AddTable(t);
      }
      again = enc.Finish(r->version);
      break;
    }
    case MsgType::kDenseUpdate:
    case MsgType::kExportFinal: {
      bool final = false;
      auto r = DecodeDenseUpdate(msg, &final);
      if (!r.ok()) return;
      FUZZ_CHECK(final == (msg.meta.type == MsgType::kExportFinal));
      FUZZ_CHECK(Inside(msg, r->dense, r->num_dense * sizeof(float)));
      again = EncodeDenseUpdate(*r, final);
      break;
    }
    case MsgType::kExportFinalResponse:
      if (!DecodeExportFinalResponse(msg).ok()) return;
      again = EncodeExportFinalResponse(id);
      break;
    case MsgType::kWatermark: {
      auto r = DecodeWatermark(msg);
      if (!r.ok()) return;
      again = EncodeWatermark(*r);
      break;
    }
    case MsgType::kSaveStatus: {
      auto r = DecodeSaveStatusRequest(msg);
      if (!r.ok()) return;
      again = EncodeSaveStatusRequest(*r);
      break;
    }
    case MsgType::kSaveStatusResponse: {
      auto r = DecodeSaveStatusResponse(msg);
      if (!r.ok()) return;
      again = EncodeSaveStatusResponse(id, *r);
      break;
    }
    case MsgType::kLoad: {
      auto r = DecodeLoadRequest(msg);
      if (!r.ok()) return;
      again = EncodeLoadRequest(*r);
      break;
    }
    case MsgType::kLoadResponse: {
      auto r = DecodeLoadResponse(msg);
      if (!r.ok()) return;
      again = EncodeLoadResponse(id, *r);
      break;
    }
    default:
      FUZZ_CHECK(!ValidateMessage(msg).ok());
      return;
  }
  // Decoded: the header was this version and not an error.
  FUZZ_CHECK(msg.meta.version == kPsWireVersion);
  FUZZ_CHECK(msg.meta.status_code == StatusCode::kOk);
  FUZZ_CHECK(ValidateMessage(msg).ok());
  FUZZ_CHECK(again.meta.type == msg.meta.type && again.meta.version == kPsWireVersion);
  FUZZ_CHECK(again.body == msg.body);
}

}  // namespace
}  // namespace freshet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace freshet;
  if (size < 2) return 0;
  Message msg;
  msg.peer = 1;
  msg.meta.type = static_cast<MsgType>(data[0] % 22);
  msg.meta.request_id = 7;
  msg.meta.version = (data[1] & 1) ? data[1] >> 1 : kPsWireVersion;
  if (data[1] & 2) {
    msg.meta.status_code = StatusCode::kInternal;
    msg.meta.error = "e";
  }
  msg.body.assign(data + 2, data + size);  // a heap buffer: aligned as received bodies are
  Check(msg);
  return 0;
}
