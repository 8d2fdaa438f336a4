#include "common/ps_wire.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "common/config.h"

namespace freshet {
namespace {

const uint64_t kKeys[3] = {11, 0xfedcba9876543210ull, 3};
const float kGrads[6] = {0.5f, -1.5f, 2.25f, 3, -4, 1e-3f};

// The message as a peer receives it: through the frame encoding.
Message Wire(const Message& m) {
  Message out;
  EXPECT_TRUE(DecodeFrame(EncodeFrame(m.meta, m.body), &out).ok());
  out.peer = 4;
  return out;
}

// One encoded sample of every message type, with every field set to a
// value other than its default.
struct Sample {
  const char* name;
  Message msg;
};

std::vector<Sample> AllSamples() {
  std::vector<Sample> s;
  PullRequest pull;
  pull.table = 1;
  pull.dim = 2;
  pull.step = 17;
  pull.staleness = 3;
  pull.keys = kKeys;
  pull.num_keys = 3;
  s.push_back({"PULL", EncodePullRequest(pull)});
  float* rows = nullptr;
  Message pull_resp = EncodePullResponse(9, 3, 2, &rows);
  std::memcpy(rows, kGrads, sizeof(kGrads));
  s.push_back({"PULL_RESPONSE", std::move(pull_resp)});
  PushRequest push;
  push.table = 1;
  push.dim = 2;
  push.worker = 5;
  push.event_time_s = 1700000000;
  push.keys = kKeys;
  push.grads = kGrads;
  push.num_keys = 3;
  s.push_back({"PUSH", EncodePushRequest(push)});
  s.push_back({"PUSH_RESPONSE", EncodePushResponse(9)});
  s.push_back({"CLOCK", EncodeClock(ClockMessage{2, 40, 38})});
  s.push_back({"STATS", EncodeStatsRequest()});
  s.push_back({"STATS_RESPONSE", EncodeStatsResponse(9, ServerStats{1, 2, 3, 4, 5, 6, 7, 8})});
  s.push_back({"SHUTDOWN", EncodeShutdown(ShutdownMessage{3})});
  s.push_back({"SAVE", EncodeSaveRequest(SaveRequest{"/tmp/ckpt-7", true})});
  s.push_back({"SAVE_RESPONSE", EncodeSaveResponse(9, SaveResponse{1 << 20, 1234})});
  s.push_back({"SAVE_STATUS", EncodeSaveStatusRequest(SaveStatusRequest{"/tmp/ckpt-7"})});
  s.push_back({"SAVE_STATUS_RESPONSE", EncodeSaveStatusResponse(9, SaveStatusResponse{true, 99})});
  s.push_back({"EXPORT", EncodeExportRequest(ExportRequest{12})});
  ExportResponseEncoder exp(9);
  const uint64_t deleted[2] = {100, 200};
  exp.AddTable(ExportedTable{0, 2, kKeys, kGrads, 3, deleted, 2});
  exp.AddTable(ExportedTable{1, 1, kKeys, kGrads, 1, nullptr, 0});  // 1 float: padded
  exp.AddTable(ExportedTable{2, 4, nullptr, nullptr, 0, deleted, 1});
  s.push_back({"EXPORT_RESPONSE", exp.Finish(21)});
  const float dense[3] = {1, 2, 3};
  s.push_back({"DENSE_UPDATE",
               EncodeDenseUpdate(
                   DenseUpdate{{8, 1700000001, 1700000002000, 1700000003000}, dense, 3}, false)});
  s.push_back({"EXPORT_FINAL", EncodeDenseUpdate(DenseUpdate{{9, 5, 6, 7}, dense, 3}, true)});
  s.push_back({"EXPORT_FINAL_RESPONSE", EncodeExportFinalResponse(9)});
  s.push_back({"WATERMARK", EncodeWatermark(TrainingClocks{10, 11, 12, 13})});
  s.push_back({"LOAD", EncodeLoadRequest(LoadRequest{"/tmp/best-pass"})});
  s.push_back({"LOAD_RESPONSE", EncodeLoadResponse(9, LoadResponse{12345})});
  return s;
}

TEST(PsWireTest, SamplesCoverEveryMessageType) {
  std::vector<bool> seen(21, false);
  for (const Sample& s : AllSamples()) {
    const auto t = static_cast<uint32_t>(s.msg.meta.type);
    ASSERT_LT(t, seen.size());
    EXPECT_FALSE(seen[t]) << s.name << " twice";
    seen[t] = true;
    EXPECT_STREQ(MsgTypeName(s.msg.meta.type), s.name);
    EXPECT_EQ(s.msg.meta.version, kPsWireVersion) << s.name;
    EXPECT_EQ(s.msg.body.size() % 8, 0u) << s.name << ": bodies are padded to 8 bytes";
    EXPECT_TRUE(ValidateMessage(Wire(s.msg)).ok()) << s.name << ": " << ValidateMessage(s.msg);
  }
  for (uint32_t t = 1; t <= 20; ++t) EXPECT_TRUE(seen[t]) << "no sample of type " << t;
}

TEST(PsWireTest, PullRoundTrip) {
  const std::vector<Sample> all = AllSamples();
  const Message req_msg = Wire(all[0].msg);
  auto req = DecodePullRequest(req_msg);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(req->table, 1);
  EXPECT_EQ(req->dim, 2u);
  EXPECT_EQ(req->step, 17);
  EXPECT_EQ(req->staleness, 3);
  ASSERT_EQ(req->num_keys, 3u);
  EXPECT_EQ(std::vector<uint64_t>(req->keys, req->keys + 3),
            std::vector<uint64_t>(kKeys, kKeys + 3));
  // A view into the body, not a copy.
  EXPECT_EQ(reinterpret_cast<const char*>(req->keys), req_msg.body.data() + 32);

  const Message resp_msg = Wire(all[1].msg);
  EXPECT_EQ(resp_msg.meta.request_id, 9u);
  auto resp = DecodePullResponse(resp_msg);
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->num_keys, 3u);
  EXPECT_EQ(resp->dim, 2u);
  EXPECT_EQ(std::vector<float>(resp->rows, resp->rows + 6), std::vector<float>(kGrads, kGrads + 6));
  EXPECT_EQ(reinterpret_cast<const char*>(resp->rows), resp_msg.body.data() + 8);
}

TEST(PsWireTest, PushRoundTrip) {
  // The decoded request views the message's body: keep the message alive.
  const Message msg = Wire(AllSamples()[2].msg);
  auto req = DecodePushRequest(msg);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(req->table, 1);
  EXPECT_EQ(req->dim, 2u);
  EXPECT_EQ(req->worker, 5);
  EXPECT_EQ(req->event_time_s, 1700000000);
  ASSERT_EQ(req->num_keys, 3u);
  EXPECT_EQ(std::vector<uint64_t>(req->keys, req->keys + 3),
            std::vector<uint64_t>(kKeys, kKeys + 3));
  EXPECT_EQ(std::vector<float>(req->grads, req->grads + 6), std::vector<float>(kGrads, kGrads + 6));
  const Message ack = Wire(EncodePushResponse(44));
  EXPECT_EQ(ack.meta.request_id, 44u);
  EXPECT_TRUE(DecodePushResponse(ack).ok());
}

TEST(PsWireTest, FilledInPlaceEncodersMatchCopyingOnes) {
  PullRequest pull;
  pull.table = 2;
  pull.dim = 8;
  pull.num_keys = 3;
  uint64_t* kp = nullptr;
  Message filled = EncodePullRequest(pull, &kp);
  std::memcpy(kp, kKeys, sizeof(kKeys));
  pull.keys = kKeys;
  EXPECT_EQ(filled.body, EncodePullRequest(pull).body);

  PushRequest push;
  push.dim = 2;
  push.num_keys = 3;
  float* gp = nullptr;
  Message pushed = EncodePushRequest(push, &kp, &gp);
  std::memcpy(kp, kKeys, sizeof(kKeys));
  std::memcpy(gp, kGrads, sizeof(kGrads));
  push.keys = kKeys;
  push.grads = kGrads;
  EXPECT_EQ(pushed.body, EncodePushRequest(push).body);
}

// Encoders write over a recycled buffer without filling it first (issue 16):
// what they leave of the old bytes must be nothing. A buffer of 0xAB bytes,
// larger than the message, gives the same body as a fresh one, padding
// zeroed and the tail cut off, and keeps its storage.
TEST(PsWireTest, RecycledBuffersGiveTheSameBytesAsFreshOnes) {
  const auto dirty = [](size_t n) {
    std::vector<char> b(n, static_cast<char>(0xAB));
    b.reserve(n + 4096);
    return b;
  };
  // An odd number of floats: the rows end with 4 bytes of padding.
  float* rows = nullptr;
  std::vector<char> buf = dirty(4096);
  const char* storage = buf.data();
  Message reply = EncodePullResponse(9, 3, 1, &rows, std::move(buf));
  EXPECT_EQ(reply.body.data(), storage);
  for (int i = 0; i < 3; ++i) rows[i] = kGrads[i];
  float* fresh_rows = nullptr;
  Message fresh = EncodePullResponse(9, 3, 1, &fresh_rows);
  for (int i = 0; i < 3; ++i) fresh_rows[i] = kGrads[i];
  EXPECT_EQ(reply.body, fresh.body);
  ASSERT_TRUE(DecodePullResponse(Wire(std::move(reply))).ok());

  PushRequest push;
  push.dim = 1;
  push.num_keys = 3;
  push.keys = kKeys;
  push.grads = kGrads;
  Message pushed = EncodePushRequest(push, nullptr, nullptr, dirty(8192));
  EXPECT_EQ(pushed.body, EncodePushRequest(push).body);
  const Message received = Wire(pushed);  // the decoded views point into it
  StatusOr<PushRequest> decoded = DecodePushRequest(received);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->grads[2], kGrads[2]);

  PullRequest pull;
  pull.dim = 4;
  pull.num_keys = 2;
  pull.keys = kKeys;
  EXPECT_EQ(EncodePullRequest(pull, nullptr, dirty(100)).body, EncodePullRequest(pull).body);
}

// The pull reply's rows are written in place and the transport appends its
// header without moving them (the body was reserved with room for it).
TEST(PsWireTest, PullResponseIsFramedWithoutACopy) {
  float* rows = nullptr;
  Message reply = EncodePullResponse(1, 1000, 16, &rows);
  ASSERT_NE(rows, nullptr);
  const char* body = reply.body.data();
  EXPECT_EQ(reinterpret_cast<const char*>(rows), body + 8);
  const std::vector<char> frame = EncodeFrame(reply.meta, std::move(reply.body));
  EXPECT_EQ(frame.data(), body);
}

TEST(PsWireTest, SmallMessagesRoundTrip) {
  const std::vector<Sample> all = AllSamples();
  auto find = [&](const char* name) {
    for (const Sample& s : all) {
      if (std::string(s.name) == name) return Wire(s.msg);
    }
    ADD_FAILURE() << name;
    return Message();
  };
  auto clock = DecodeClock(find("CLOCK"));
  ASSERT_TRUE(clock.ok());
  EXPECT_EQ(clock->worker, 2);
  EXPECT_EQ(clock->step, 40);
  EXPECT_EQ(clock->pushes_sent, 38);
  EXPECT_TRUE(DecodeStatsRequest(find("STATS")).ok());
  auto stats = DecodeStatsResponse(find("STATS_RESPONSE"));
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->rows, 1);
  EXPECT_EQ(stats->bytes, 2);
  EXPECT_EQ(stats->pull_requests, 3);
  EXPECT_EQ(stats->push_requests, 4);
  EXPECT_EQ(stats->keys_pulled, 5);
  EXPECT_EQ(stats->keys_pushed, 6);
  EXPECT_EQ(stats->resident_bytes, 7);
  auto shutdown = DecodeShutdown(find("SHUTDOWN"));
  ASSERT_TRUE(shutdown.ok());
  EXPECT_EQ(shutdown->worker, 3);
  auto save = DecodeSaveRequest(find("SAVE"));
  ASSERT_TRUE(save.ok());
  EXPECT_EQ(save->dir, "/tmp/ckpt-7");
  EXPECT_TRUE(save->incremental);
  auto saved = DecodeSaveResponse(find("SAVE_RESPONSE"));
  ASSERT_TRUE(saved.ok());
  EXPECT_EQ(saved->bytes_copied, 1 << 20);
  EXPECT_EQ(saved->copy_us, 1234);
  auto status = DecodeSaveStatusRequest(find("SAVE_STATUS"));
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->dir, "/tmp/ckpt-7");
  auto written = DecodeSaveStatusResponse(find("SAVE_STATUS_RESPONSE"));
  ASSERT_TRUE(written.ok());
  EXPECT_TRUE(written->written);
  EXPECT_EQ(written->write_us, 99);
  auto load = DecodeLoadRequest(find("LOAD"));
  ASSERT_TRUE(load.ok());
  EXPECT_EQ(load->dir, "/tmp/best-pass");
  auto loaded = DecodeLoadResponse(find("LOAD_RESPONSE"));
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->rows, 12345);
  auto exp = DecodeExportRequest(find("EXPORT"));
  ASSERT_TRUE(exp.ok());
  EXPECT_EQ(exp->since_version, 12u);
  EXPECT_TRUE(DecodeExportFinalResponse(find("EXPORT_FINAL_RESPONSE")).ok());
  auto wm = DecodeWatermark(find("WATERMARK"));
  ASSERT_TRUE(wm.ok());
  EXPECT_EQ(wm->step, 10);
  EXPECT_EQ(wm->watermark, 11);
  EXPECT_EQ(wm->wall_ms, 12);
  EXPECT_EQ(wm->label_wall_ms, 13);
  for (const char* name : {"DENSE_UPDATE", "EXPORT_FINAL"}) {
    bool final = false;
    const Message m = find(name);  // the update views its body
    auto u = DecodeDenseUpdate(m, &final);
    ASSERT_TRUE(u.ok()) << name << ": " << u.status();
    EXPECT_EQ(final, std::string(name) == "EXPORT_FINAL");
    EXPECT_EQ(std::vector<float>(u->dense, u->dense + u->num_dense), (std::vector<float>{1, 2, 3}));
    EXPECT_EQ(u->clocks.step, final ? 9 : 8);
    EXPECT_EQ(u->clocks.watermark, final ? 5 : 1700000001);
    EXPECT_EQ(u->clocks.wall_ms, final ? 6 : 1700000002000);
    EXPECT_EQ(u->clocks.label_wall_ms, final ? 7 : 1700000003000);
  }
}

// A SAVE's directory is any bytes (a path need not be UTF-8).
TEST(PsWireTest, SaveDirectoryIsAnyBytes) {
  const std::string dir("/data/caf\xe9\0\xff", 9);
  auto save = DecodeSaveRequest(Wire(EncodeSaveRequest(SaveRequest{dir, false})));
  ASSERT_TRUE(save.ok()) << save.status();
  EXPECT_EQ(save->dir, dir);
  EXPECT_FALSE(save->incremental);
  auto status = DecodeSaveStatusRequest(Wire(EncodeSaveStatusRequest(SaveStatusRequest{dir})));
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->dir, dir);
}

TEST(PsWireTest, ExportResponseRoundTrip) {
  const std::vector<Sample> all = AllSamples();
  const Message msg = Wire(all[13].msg);
  ASSERT_EQ(msg.meta.type, MsgType::kExportResponse);
  auto r = DecodeExportResponse(msg);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->version, 21u);
  ASSERT_EQ(r->tables.size(), 3u);
  const ExportedTable& a = r->tables[0];
  EXPECT_EQ(a.table, 0u);
  EXPECT_EQ(a.dim, 2u);
  ASSERT_EQ(a.n, 3u);
  EXPECT_EQ(std::vector<uint64_t>(a.keys, a.keys + 3), std::vector<uint64_t>(kKeys, kKeys + 3));
  EXPECT_EQ(std::vector<float>(a.weights, a.weights + 6), std::vector<float>(kGrads, kGrads + 6));
  EXPECT_EQ(std::vector<uint64_t>(a.deleted, a.deleted + a.num_deleted),
            (std::vector<uint64_t>{100, 200}));
  const ExportedTable& b = r->tables[1];
  EXPECT_EQ(b.table, 1u);
  ASSERT_EQ(b.n, 1u);
  EXPECT_EQ(b.keys[0], kKeys[0]);
  EXPECT_EQ(b.weights[0], kGrads[0]);
  EXPECT_EQ(b.num_deleted, 0u);
  // Regression (wire_fuzz, UBSan): a table with zero rows.
  const ExportedTable& c = r->tables[2];
  EXPECT_EQ(c.dim, 4u);
  EXPECT_EQ(c.n, 0u);
  ASSERT_EQ(c.num_deleted, 1u);
  EXPECT_EQ(c.deleted[0], 100u);
  // Arrays after an odd number of floats are still aligned.
  for (const ExportedTable& t : r->tables) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.deleted) % 8, 0u);
  }
}

// Every prefix of every message, and every message with bytes appended, is
// refused with an error naming the type (no crash, no out-of-bounds read:
// the sanitizer builds run this too).
TEST(PsWireTest, EveryTruncationAndExtensionIsRefused) {
  for (const Sample& s : AllSamples()) {
    const Message whole = Wire(s.msg);
    ASSERT_TRUE(ValidateMessage(whole).ok()) << s.name;
    for (size_t len = 0; len < whole.body.size(); ++len) {
      Message cut = whole;
      cut.body.resize(len);
      cut.body.shrink_to_fit();  // so ASan sees a read past the end
      Status st = ValidateMessage(cut);
      ASSERT_FALSE(st.ok()) << s.name << " cut to " << len << " of " << whole.body.size();
      EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st;
      EXPECT_NE(st.message().find(s.name), std::string::npos) << st;
    }
    for (size_t extra : {1, 7, 8, 24}) {
      Message longer = whole;
      longer.body.resize(whole.body.size() + extra, '\0');
      Status st = ValidateMessage(longer);
      EXPECT_EQ(st.code(), StatusCode::kDataLoss) << s.name << " + " << extra << ": " << st;
    }
  }
}

TEST(PsWireTest, OtherVersionsAreRefused) {
  for (const Sample& s : AllSamples()) {
    for (uint32_t v : {0u, kPsWireVersion + 1}) {
      Message m = Wire(s.msg);
      m.meta.version = v;
      Status st = ValidateMessage(m);
      EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << s.name << " v" << v << ": " << st;
      EXPECT_NE(st.message().find("wire version " + std::to_string(v)), std::string::npos) << st;
      EXPECT_NE(st.message().find("speaks version " + std::to_string(kPsWireVersion)),
                std::string::npos)
          << st;
      EXPECT_NE(st.message().find("rank 4"), std::string::npos) << st;
    }
  }
  // Through the frame: a header without a version (a peer that predates
  // versioning) decodes as version 0.
  Message old = AllSamples()[0].msg;
  old.meta.version = 0;
  EXPECT_EQ(DecodePullRequest(Wire(old)).status().code(), StatusCode::kFailedPrecondition);
}

TEST(PsWireTest, WrongTypeIsRefused) {
  const Message push = Wire(AllSamples()[2].msg);
  Status st = DecodePullRequest(push).status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "expected PULL, got PUSH (type 3) from rank 4");
  Message unknown = push;
  unknown.meta.type = static_cast<MsgType>(77);
  EXPECT_EQ(ValidateMessage(unknown).code(), StatusCode::kInvalidArgument);
}

TEST(PsWireTest, ErrorResponsesCarryThePeersStatus) {
  for (const Sample& s : AllSamples()) {
    if (!IsResponseType(s.msg.meta.type)) continue;
    const Message err = Wire(
        EncodeErrorResponse(s.msg.meta.type, 5, Status(StatusCode::kNotFound, "server 1: gone")));
    EXPECT_EQ(err.meta.request_id, 5u);
    EXPECT_TRUE(err.body.empty());
    Status st = ValidateMessage(err);
    EXPECT_EQ(st.code(), StatusCode::kNotFound) << s.name;
    EXPECT_EQ(st.message(), "server 1: gone");
  }
  // A request never carries an error.
  Message req = Wire(AllSamples()[0].msg);
  req.meta.status_code = StatusCode::kInternal;
  EXPECT_EQ(ValidateMessage(req).code(), StatusCode::kDataLoss);
}

TEST(PsWireTest, EveryRequestHasItsResponseType) {
  struct Pair {
    MsgType req, resp;
  };
  for (Pair p : {Pair{MsgType::kPullRequest, MsgType::kPullResponse},
                 Pair{MsgType::kPushRequest, MsgType::kPushResponse},
                 Pair{MsgType::kStatsRequest, MsgType::kStatsResponse},
                 Pair{MsgType::kSave, MsgType::kSaveResponse},
                 Pair{MsgType::kSaveStatus, MsgType::kSaveStatusResponse},
                 Pair{MsgType::kLoad, MsgType::kLoadResponse},
                 Pair{MsgType::kExportRequest, MsgType::kExportResponse},
                 Pair{MsgType::kExportFinal, MsgType::kExportFinalResponse}}) {
    MsgType got;
    ASSERT_TRUE(ResponseTypeOf(p.req, &got)) << MsgTypeName(p.req);
    EXPECT_EQ(got, p.resp);
    EXPECT_TRUE(IsResponseType(p.resp));
    EXPECT_FALSE(IsResponseType(p.req));
  }
  MsgType ignored;
  for (MsgType t : {MsgType::kClock, MsgType::kShutdown, MsgType::kDenseUpdate, MsgType::kWatermark,
                    MsgType::kPullResponse}) {
    EXPECT_FALSE(ResponseTypeOf(t, &ignored)) << MsgTypeName(t);
  }
}

// The fuzz seeds are encoded from the layouts documented in ps_wire.h by
// tests/fuzz/make_corpus.py, independently of this code: each must decode,
// and re-encode to the same bytes.
TEST(PsWireTest, IndependentlyEncodedSeedsDecode) {
  const std::filesystem::path dir =
      std::filesystem::path(FRESHET_SOURCE_DIR) / "tests/fuzz/corpus/ps_wire_fuzz";
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_GE(bytes.size(), 2u) << name;
    Message m;
    m.meta.type = static_cast<MsgType>(static_cast<uint8_t>(bytes[0]) % 22);
    m.meta.version = kPsWireVersion;
    m.body.assign(bytes.begin() + 2, bytes.end());
    if (bytes[1] != 0) continue;  // seeds of a bad header
    Status st = ValidateMessage(m);
    EXPECT_TRUE(st.ok()) << name << ": " << st;
    ++checked;
  }
  EXPECT_GE(checked, 18);
  // Two seeds, re-encoded here, byte for byte.
  std::ifstream in(dir / "pull", std::ios::binary);
  const std::string pull((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const uint64_t keys[3] = {1, 2, 0xFFFFFFFFFFFFFFFFull};
  PullRequest req;
  req.table = 1;
  req.dim = 4;
  req.step = 5;
  req.staleness = 2;
  req.keys = keys;
  req.num_keys = 3;
  const Message mine = EncodePullRequest(req);
  EXPECT_EQ(std::string(mine.body.begin(), mine.body.end()), pull.substr(2));
}

// ---- Bad counts, lengths and fields ------------------------------------------

void PutAt(Message* m, size_t offset, const void* p, size_t n) {
  ASSERT_LE(offset + n, m->body.size());
  std::memcpy(m->body.data() + offset, p, n);
}

// Expects DataLoss naming `field`; returns the error text.
std::string Expect(const Message& m, const std::string& field) {
  Status st = ValidateMessage(m);
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st;
  EXPECT_NE(st.message().find("field '" + field + "'"), std::string::npos) << st;
  return st.message();
}

TEST(PsWireTest, CountsBeyondTheBodyAreRefused) {
  const std::vector<Sample> all = AllSamples();
  // PULL claiming more keys than it carries, and the most a u32 can say.
  for (uint32_t n : {4u, 0xffffffffu}) {
    Message pull = all[0].msg;
    PutAt(&pull, 8, &n, 4);
    Expect(pull, "keys");
  }
  // PULL claiming fewer: the rest is trailing garbage.
  Message fewer = all[0].msg;
  const uint32_t two = 2;
  PutAt(&fewer, 8, &two, 4);
  Expect(fewer, "end");
  // PUSH: num_keys * dim must not wrap (both 2^32 - 1).
  Message push = all[2].msg;
  const uint32_t max = 0xffffffffu;
  PutAt(&push, 4, &max, 4);
  Expect(push, "grads");
  PutAt(&push, 8, &max, 4);
  Expect(push, "keys");
  // PULL_RESPONSE: num_keys * dim floats.
  Message rows = all[1].msg;
  PutAt(&rows, 4, &max, 4);
  Expect(rows, "rows");
  // DENSE_UPDATE: a float count beyond the body (3 floats and their pad
  // hold 4), and one that overflows count * 4.
  for (uint64_t n : {uint64_t{5}, ~uint64_t{0}}) {
    Message dense = all[14].msg;
    PutAt(&dense, 32, &n, 8);
    Expect(dense, "dense");
  }
  // SAVE: a directory longer than the body.
  Message save = all[8].msg;
  const uint32_t long_dir = 1000;
  PutAt(&save, 4, &long_dir, 4);
  Expect(save, "dir");
}

TEST(PsWireTest, ExportCountsAndDimsAreChecked) {
  const Message good = AllSamples()[13].msg;
  // num_tables more than the body could hold (never reserved).
  Message m = good;
  const uint32_t many = 0xffffffffu;
  PutAt(&m, 4, &many, 4);
  Expect(m, "num_tables");
  // A row count that overruns the body, and one whose n * dim wraps.
  for (uint64_t n : {uint64_t{4}, ~uint64_t{0}, uint64_t{1} << 63}) {
    m = good;
    PutAt(&m, 16, &n, 8);
    Status st = ValidateMessage(m);
    EXPECT_EQ(st.code(), StatusCode::kDataLoss) << n;
  }
  // Dims are 1..kMaxTableDim. Regression (wire_fuzz): a dim above INT32_MAX
  // once reached the exporter as a negative int.
  for (uint32_t dim : {0u, kMaxTableDim + 1, 0xc1000000u}) {
    m = good;
    PutAt(&m, 12, &dim, 4);
    const std::string error = Expect(m, "dim");
    EXPECT_NE(error.find("dims are 1..4096"), std::string::npos) << error;
  }
  // Table ids are ints.
  m = good;
  PutAt(&m, 8, &many, 4);
  Expect(m, "table");
}

TEST(PsWireTest, PaddingAndFlagsMustBeCanonical) {
  const std::vector<Sample> all = AllSamples();
  const uint32_t one = 1, two = 2;
  Message pull = all[0].msg;
  PutAt(&pull, 12, &one, 4);  // the u32 after num_keys is zero
  Expect(pull, "padding");
  Message save = all[8].msg;
  PutAt(&save, 0, &two, 4);  // incremental is 0 or 1
  Expect(save, "incremental");
  Message written = all[11].msg;
  PutAt(&written, 0, &two, 4);
  Expect(written, "written");
  // The pad after a PULL_RESPONSE of an odd number of floats.
  float* rows = nullptr;
  Message odd = EncodePullResponse(1, 1, 1, &rows);
  ASSERT_EQ(odd.body.size(), 16u);
  odd.body[15] = 1;
  Expect(odd, "padding");
}

}  // namespace
}  // namespace freshet
