// Fuzz target: the frame (common/transport.h) and what a server does with a
// received frame:
//   DecodeFrame                          every received frame
//   DecodePullRequest + HandlePull       a server's PULL (as ServerNode)
//   DecodePushRequest + HandlePush       a server's PUSH
//   DecodeExportResponse                 the exporter's EXPORT_RESPONSE
// (every body decoder alone: ps_wire_fuzz.cc).
//
// The input is one frame, [body][WireHeader][u32 len]. A frame that
// decodes must encode back to a frame that decodes to the same message.
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/ps_wire.h"
#include "common/transport.h"
#include "server/parameter_shard.h"
#include "tests/fuzz/fuzz_util.h"

namespace freshet {
namespace {

constexpr char kTables[] = R"pb(
  tables {
    name: "wide"
    dim: 1
    optimizer { sgd { learning_rate: 0.1 } }
  }
  tables {
    name: "emb"
    dim: 4
    optimizer { adagrad { learning_rate: 0.1 } }
  }
)pb";

// A fresh shard every so often, so that rows pushed by earlier inputs do not
// pile up over a long run.
ParameterShard* Shard() {
  static std::unique_ptr<ParameterShard> shard;
  static int uses = 0;
  if (shard == nullptr || ++uses % 256 == 0) {
    auto tables = ParseTablesConfig(kTables, "wire_fuzz tables");
    FUZZ_CHECK(tables.ok());
    auto s = ParameterShard::Create(*tables, 2);
    FUZZ_CHECK(s.ok());
    shard = std::move(*s);
  }
  return shard.get();
}

bool SameMeta(const MessageMeta& a, const MessageMeta& b) {
  return a.type == b.type && a.version == b.version && a.request_id == b.request_id &&
         a.status_code == b.status_code && a.error == b.error;
}

}  // namespace
}  // namespace freshet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace freshet;
  Message msg;
  if (!DecodeFrame(std::vector<char>(data, data + size), &msg).ok()) return 0;

  Message again;
  FUZZ_CHECK(DecodeFrame(EncodeFrame(msg.meta, msg.body), &again).ok());
  FUZZ_CHECK(SameMeta(msg.meta, again.meta) && msg.body == again.body);

  ParameterShard* shard = Shard();
  switch (msg.meta.type) {
    case MsgType::kPullRequest: {
      // As ServerNode::HandlePull: the table and dim before the reply.
      auto req = DecodePullRequest(msg);
      if (!req.ok() || !shard->CheckRequest(req->table, req->dim).ok()) break;
      float* rows = nullptr;
      Message reply = EncodePullResponse(1, req->num_keys, req->dim, &rows);
      FUZZ_CHECK(shard->HandlePull(req->table, req->dim, req->keys, req->num_keys, rows).ok());
      auto decoded = DecodePullResponse(reply);
      FUZZ_CHECK(decoded.ok() && decoded->num_keys == req->num_keys);
      break;
    }
    case MsgType::kPushRequest: {
      auto req = DecodePushRequest(msg);
      if (!req.ok()) break;
      (void)shard->HandlePush(req->table, req->dim, req->keys, req->num_keys, req->grads,
                              req->event_time_s);
      break;
    }
    default: {
      // Any body as an EXPORT_RESPONSE: every row handed out must be readable.
      Message as_export = msg;
      as_export.meta.type = MsgType::kExportResponse;
      auto rows = DecodeExportResponse(as_export);
      if (!rows.ok()) break;
      size_t n = 0;
      volatile float sink = 0;
      for (const ExportedTable& t : rows->tables) {
        FUZZ_CHECK(t.dim > 0);
        for (size_t i = 0; i < t.n; ++i) {
          sink = sink + static_cast<float>(t.keys[i] & 1) + t.weights[i * t.dim + t.dim - 1];
        }
        for (size_t i = 0; i < t.num_deleted; ++i)
          sink = sink + static_cast<float>(t.deleted[i] & 1);
        n += t.n + t.num_deleted;
      }
      FUZZ_CHECK(n * sizeof(uint64_t) <= as_export.body.size());
    }
  }
  return 0;
}
