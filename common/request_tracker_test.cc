#include "common/request_tracker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "common/ps_wire.h"

namespace freshet {
namespace {

std::string Name(int rank) {
  return "peer " + std::to_string(rank) + " (rank " + std::to_string(rank) + ")";
}

// Receives one message on `t` (the test's stand-in for a server).
Message Take(Transport* t) {
  StatusOr<Message> m = t->Recv(Millis(2000));
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(m).value() : Message();
}

TEST(RequestTrackerTest, DeliversTheMatchingReplyOnce) {
  InProcessHub hub(3);
  RequestTracker tracker(hub.endpoint(0), Name);
  int calls = 0;
  Status got;
  int64_t rows = -1;
  const uint64_t id =
      tracker.Send(1, EncodeStatsRequest(), Millis(5000), [&](Message* reply, const Status& st) {
        ++calls;
        got = st;
        auto s = DecodeStatsResponse(*reply);
        rows = s.ok() ? s->rows : -2;
      });
  EXPECT_EQ(tracker.outstanding(), 1u);
  Message req = Take(hub.endpoint(1));
  EXPECT_EQ(req.meta.request_id, id);
  ASSERT_TRUE(DecodeStatsRequest(req).ok());
  ServerStats s;
  s.rows = 42;
  // The same id from another rank, or with a type that does not answer a
  // STATS request, is not the answer.
  Message wrong_rank = EncodeStatsResponse(id, s);
  wrong_rank.peer = 2;
  EXPECT_FALSE(tracker.Deliver(&wrong_rank));
  Message wrong_type = EncodePushResponse(id);
  wrong_type.peer = 1;
  EXPECT_FALSE(tracker.Deliver(&wrong_type));
  Message reply = EncodeStatsResponse(id, s);
  reply.peer = 1;
  EXPECT_TRUE(tracker.Deliver(&reply));
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(got.ok());
  EXPECT_EQ(rows, 42);
  EXPECT_FALSE(tracker.Deliver(&reply));  // already answered
  EXPECT_EQ(tracker.outstanding(), 0u);
}

TEST(RequestTrackerTest, OverdueRequestsFailNamingTheRank) {
  InProcessHub hub(3);
  RequestTracker tracker(hub.endpoint(0), Name);
  Status got;
  const uint64_t id = tracker.Send(
      2, EncodeStatsRequest(), Millis(20),
      [&](Message* reply, const Status& st) {
        EXPECT_EQ(reply, nullptr);
        got = st;
      },
      ": hung?");
  tracker.ExpireOverdue();  // not yet
  EXPECT_TRUE(got.ok());
  std::this_thread::sleep_for(Millis(40));
  tracker.ExpireOverdue();
  EXPECT_EQ(got.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(got.message(), "STATS request to peer 2 (rank 2) got no response within 20 ms: hung?");
  // A late answer is nobody's.
  Message late = EncodeStatsResponse(id, ServerStats{});
  late.peer = 2;
  EXPECT_FALSE(tracker.Deliver(&late));
}

TEST(RequestTrackerTest, FailedSendsAndFailAllRunTheCallback) {
  InProcessHub hub(3);
  RequestTracker tracker(hub.endpoint(0), Name);
  hub.endpoint(2)->Shutdown();
  Status sent;
  tracker.Send(2, EncodeStatsRequest(), Millis(1000),
               [&](Message*, const Status& st) { sent = st; });
  EXPECT_EQ(sent.code(), StatusCode::kUnavailable);
  EXPECT_NE(sent.message().find("STATS to peer 2 (rank 2)"), std::string::npos) << sent;
  int failed = 0;
  for (int i = 0; i < 3; ++i) {
    tracker.Send(1, EncodeStatsRequest(), Millis(0), [&](Message*, const Status& st) {
      EXPECT_EQ(st.code(), StatusCode::kAborted);
      ++failed;
    });
  }
  tracker.ExpireOverdue();  // no deadline: untouched
  EXPECT_EQ(tracker.outstanding(), 3u);
  tracker.FailAll(Status(StatusCode::kAborted, "closing"));
  EXPECT_EQ(failed, 3);
  EXPECT_EQ(tracker.outstanding(), 0u);
}

// Call() with a receive thread that Deliver()s (PsClient's shape): answers
// arrive out of order and are matched to their rank.
TEST(RequestTrackerTest, CallFansOutAndGathersWithAReceiveThread) {
  InProcessHub hub(3);
  RequestTracker tracker(hub.endpoint(0), Name);
  std::atomic<bool> stop{false};
  std::thread receiver([&] {
    while (!stop) {
      StatusOr<Message> m = hub.endpoint(0)->Recv(Millis(5));
      if (m.ok()) {
        EXPECT_TRUE(tracker.Deliver(&*m));
      }
    }
  });
  std::thread servers([&] {
    Message a = Take(hub.endpoint(1));
    Message b = Take(hub.endpoint(2));
    // Rank 2 answers first.
    ASSERT_TRUE(
        hub.endpoint(2)->Send(0, EncodeSaveResponse(b.meta.request_id, SaveResponse{200, 0})).ok());
    ASSERT_TRUE(
        hub.endpoint(1)->Send(0, EncodeSaveResponse(a.meta.request_id, SaveResponse{100, 0})).ok());
  });
  std::vector<int64_t> bytes(2, 0);
  std::vector<size_t> order;
  Status st =
      tracker.Call({1, 2}, {EncodeSaveRequest({"d", false}), EncodeSaveRequest({"d", false})},
                   Millis(5000), [&](size_t i, Message* reply) {
                     FRESHET_ASSIGN_OR_RETURN(const SaveResponse r, DecodeSaveResponse(*reply));
                     bytes[i] = r.bytes_copied;
                     order.push_back(i);
                     return Status::OK();
                   });
  servers.join();
  stop = true;
  receiver.join();
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(bytes, (std::vector<int64_t>{100, 200}));
  EXPECT_EQ(order, (std::vector<size_t>{1, 0}));
  EXPECT_EQ(tracker.outstanding(), 0u);
}

// Call() receiving on the calling thread (the exporter's shape): other
// messages go to the handler; the deadline names the first silent rank,
// and its late answer reaches nobody.
TEST(RequestTrackerTest, CallReceivesHereAndNamesTheSilentRank) {
  InProcessHub hub(3);
  RequestTracker tracker(hub.endpoint(0), Name);
  // A worker's WATERMARK is waiting before the call starts.
  ASSERT_TRUE(hub.endpoint(1)->Send(0, EncodeWatermark(TrainingClocks{1, 2, 3, 4})).ok());
  std::thread server([&] {
    Message a = Take(hub.endpoint(1));
    ASSERT_TRUE(hub.endpoint(1)->Send(0, EncodeExportFinalResponse(a.meta.request_id)).ok());
    Take(hub.endpoint(2));  // rank 2 never answers
  });
  int others = 0;
  const std::function<void(Message*)> other = [&](Message* m) {
    EXPECT_EQ(m->meta.type, MsgType::kWatermark);
    ++others;
  };
  int answered = 0;
  const float dense[1] = {1};
  const Message final_msg = EncodeDenseUpdate(DenseUpdate{TrainingClocks{}, dense, 1}, true);
  const auto t0 = std::chrono::steady_clock::now();
  Status st = tracker.Call(
      {1, 2}, {final_msg, final_msg}, Millis(100),
      [&](size_t i, Message* reply) {
        EXPECT_EQ(i, 0u);
        ++answered;
        return DecodeExportFinalResponse(*reply);
      },
      &other, " (test)");
  server.join();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, Millis(100));
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(st.message(),
            "EXPORT_FINAL request to peer 2 (rank 2) got no response within 100 ms (test)");
  EXPECT_EQ(answered, 1);
  EXPECT_EQ(others, 1);
  EXPECT_EQ(tracker.outstanding(), 0u);
}

// The first error (here: a peer's error response, decoded by on_reply)
// ends the call at once.
TEST(RequestTrackerTest, CallEndsAtTheFirstError) {
  InProcessHub hub(2);
  RequestTracker tracker(hub.endpoint(0), Name);
  std::thread server([&] {
    Message a = Take(hub.endpoint(1));
    ASSERT_TRUE(hub.endpoint(1)
                    ->Send(0, EncodeErrorResponse(MsgType::kStatsResponse, a.meta.request_id,
                                                  Internal("peer 1: disk on fire")))
                    .ok());
  });
  const std::function<void(Message*)> other = [](Message* m) {
    ADD_FAILURE() << MsgTypeName(m->meta.type);
  };
  const auto t0 = std::chrono::steady_clock::now();
  Status st = tracker.Call(
      {1}, {EncodeStatsRequest()}, Millis(10000),
      [](size_t, Message* reply) { return DecodeStatsResponse(*reply).status(); }, &other);
  server.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, Millis(5000));
  EXPECT_EQ(st.code(), StatusCode::kInternal);
  EXPECT_EQ(st.message(), "peer 1: disk on fire");
}

}  // namespace
}  // namespace freshet
