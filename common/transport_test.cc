#include "common/transport.h"

#include <gtest/gtest.h>

#include <thread>

namespace freshet {
namespace {

Message Make(MsgType type, uint64_t id, std::vector<char> body) {
  Message m;
  m.meta.type = type;
  m.meta.request_id = id;
  m.meta.version = 7;
  m.body = std::move(body);
  return m;
}

TEST(FrameTest, RoundTripKeepsHeaderAndBody) {
  std::vector<char> body(1000);
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 31);
  Message in = Make(MsgType::kPushRequest, 42, body);
  in.meta.status_code = StatusCode::kInvalidArgument;
  in.meta.error = "bad";
  Message out;
  ASSERT_TRUE(DecodeFrame(EncodeFrame(in.meta, in.body), &out).ok());
  EXPECT_EQ(out.meta.type, MsgType::kPushRequest);
  EXPECT_EQ(out.meta.request_id, 42u);
  EXPECT_EQ(out.meta.version, 7u);
  EXPECT_EQ(out.meta.status_code, StatusCode::kInvalidArgument);
  EXPECT_EQ(out.meta.error, "bad");
  EXPECT_EQ(out.body, body);
}

TEST(FrameTest, CorruptFramesAreDataLoss) {
  Message out;
  EXPECT_EQ(DecodeFrame({1, 2}, &out).code(), StatusCode::kDataLoss);
  std::vector<char> f = EncodeFrame(Make(MsgType::kPullRequest, 1, {}).meta, {});
  f.back() = 0x7f;  // header length far too large
  EXPECT_EQ(DecodeFrame(f, &out).code(), StatusCode::kDataLoss);
}

// Regression (wire_fuzz): error was a proto3 `string` field, so a server
// error quoting a path or input that is not UTF-8 produced a frame the
// receiver could not parse: the request then timed out instead of failing
// with the server's error. (A SAVE's directory is in the body now:
// common/ps_wire_test.cc.)
TEST(FrameTest, ErrorNeedNotBeUtf8) {
  MessageMeta meta = Make(MsgType::kSaveResponse, 9, {}).meta;
  meta.status_code = StatusCode::kInternal;
  meta.error = "/data/caf\xe9/shard-0-of-2.rows: cannot create\0\xff";
  Message out;
  ASSERT_TRUE(DecodeFrame(EncodeFrame(meta, {}), &out).ok());
  EXPECT_EQ(out.meta.error, meta.error);
  EXPECT_EQ(out.meta.status_code, StatusCode::kInternal);
}

TEST(InProcessTest, DeliversToTheRightPeerWithSender) {
  InProcessHub hub(3);
  ASSERT_TRUE(hub.endpoint(0)->Send(2, Make(MsgType::kPullRequest, 5, {'a', 'b'})).ok());
  ASSERT_TRUE(hub.endpoint(1)->Send(2, Make(MsgType::kPullRequest, 6, {'c'})).ok());
  auto m1 = hub.endpoint(2)->Recv(Millis(100));
  auto m2 = hub.endpoint(2)->Recv(Millis(100));
  ASSERT_TRUE(m1.ok() && m2.ok());
  EXPECT_EQ(m1->peer, 0);
  EXPECT_EQ(m1->meta.request_id, 5u);
  EXPECT_EQ(m2->peer, 1);
  EXPECT_EQ(m2->body, std::vector<char>({'c'}));
  EXPECT_EQ(hub.endpoint(1)->Recv(Millis(10)).status().code(), StatusCode::kDeadlineExceeded);
  const TransportStats s = hub.endpoint(0)->stats();
  EXPECT_EQ(s.messages_sent, 1);
  EXPECT_GT(s.bytes_sent, 2);
  EXPECT_EQ(hub.endpoint(2)->stats().messages_received, 2);
}

TEST(InProcessTest, BadRankAndShutdown) {
  InProcessHub hub(2);
  EXPECT_EQ(hub.endpoint(0)->Send(2, Message{}).code(), StatusCode::kInvalidArgument);
  std::thread waiter([&] {
    EXPECT_EQ(hub.endpoint(1)->Recv(Millis(5000)).status().code(), StatusCode::kUnavailable);
  });
  std::this_thread::sleep_for(Millis(20));
  hub.endpoint(1)->Shutdown();
  waiter.join();
  EXPECT_EQ(hub.endpoint(0)->Send(1, Message{}).code(), StatusCode::kUnavailable);
}

TEST(FaultyTransportTest, DropsCutsAndDelays) {
  InProcessHub hub(3);
  FaultyTransport f(hub.endpoint(0));
  f.set_drop_every(2);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(f.Send(1, Make(MsgType::kClock, i, {})).ok());
  int got = 0;
  while (hub.endpoint(1)->Recv(Millis(20)).ok()) ++got;
  EXPECT_EQ(got, 2);
  EXPECT_EQ(f.dropped(), 2);

  f.set_drop_every(0);
  f.CutOff(2);
  ASSERT_TRUE(f.Send(2, Make(MsgType::kClock, 9, {})).ok());
  EXPECT_FALSE(hub.endpoint(2)->Recv(Millis(20)).ok());
  // Incoming from a cut peer vanishes too.
  ASSERT_TRUE(hub.endpoint(2)->Send(0, Make(MsgType::kClock, 10, {})).ok());
  EXPECT_EQ(f.Recv(Millis(30)).status().code(), StatusCode::kDeadlineExceeded);
  f.Restore(2);
  ASSERT_TRUE(hub.endpoint(2)->Send(0, Make(MsgType::kClock, 11, {})).ok());
  auto m = f.Recv(Millis(100));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->meta.request_id, 11u);

  f.set_send_delay(Millis(30));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(f.Send(1, Make(MsgType::kClock, 12, {})).ok());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, Millis(30));
}

}  // namespace
}  // namespace freshet
