// Fuzz target: the wire protocol (common/transport.h) and the decoders of
// message bodies a rank receives from its peers:
//   DecodeFrame                       every received frame
//   ParameterShard::PullFromBody      a server's PULL request
//   ParameterShard::PushFromBody      a server's PUSH request
//   ForEachExportedTable              the exporter's EXPORT_RESPONSE
//
// The input is one frame, [body][WireHeader][u32 len]. A frame that
// decodes must encode back to a frame that decodes to the same message.
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
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
  return a.type == b.type && a.request_id == b.request_id && a.table == b.table &&
         a.num_keys == b.num_keys && a.dim == b.dim && a.worker == b.worker && a.clock == b.clock &&
         a.count == b.count && a.status_code == b.status_code && a.error == b.error &&
         a.text == b.text && a.watermark == b.watermark && a.wall_ms == b.wall_ms &&
         a.label_wall_ms == b.label_wall_ms;
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
      std::vector<char> out;
      if (shard->PullFromBody(msg.meta, msg.body, 128, &out).ok()) {
        FUZZ_CHECK(out.size() == size_t{msg.meta.num_keys} * msg.meta.dim * sizeof(float));
      }
      break;
    }
    case MsgType::kPushRequest:
      (void)shard->PushFromBody(msg.meta, msg.body);
      break;
    default: {
      // Any body as an EXPORT_RESPONSE: every row handed out must be readable.
      size_t rows = 0;
      Status st = ForEachExportedTable(
          msg.body, [&](int table, int dim, const uint64_t* keys, const float* w, size_t n,
                        const uint64_t* deleted, size_t num_deleted) {
            FUZZ_CHECK(dim > 0);
            volatile float sink = 0;
            for (size_t i = 0; i < n; ++i)
              sink = sink + static_cast<float>(keys[i] & 1) + w[i * dim + dim - 1];
            for (size_t i = 0; i < num_deleted; ++i)
              sink = sink + static_cast<float>(deleted[i] & 1);
            rows += n + num_deleted;
          });
      if (st.ok()) FUZZ_CHECK(rows * sizeof(uint64_t) <= msg.body.size());
    }
  }
  return 0;
}
