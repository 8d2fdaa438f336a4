// Multi-process parameter-server test driver, run under mpirun by CTest
// (tests/CMakeLists.txt) and by tests/ps_kill_test.sh.
//
//   --scenario=parity  2+ servers, 2+ workers: the conformance scenario of
//                      ps_scenario.h over MPI; exit 0 iff every pull and the
//                      final table equal the single-process reference.
//   --scenario=load    workers pull/push random keys for --seconds; used by
//                      the kill test, which SIGKILLs a server meanwhile and
//                      expects every worker to fail with a clear error
//                      within the request deadline.
// Ranks take roles from --cluster_config (first servers, then workers).
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <thread>

#include "common/config.h"
#include "common/logging.h"
#include "common/mpi_transport.h"
#include "common/mpi_util.h"
#include "server/parameter_shard.h"
#include "server/server_node.h"
#include "tests/ps_scenario.h"
#include "worker/ps_client.h"

DEFINE_string(cluster_config, "", "cluster config (text protobuf); empty: 2 servers, rest workers");
DEFINE_string(scenario, "parity", "parity | load | latest");
DEFINE_int32(seconds, 60, "load scenario: how long workers keep pulling");
DEFINE_int32(timeout_ms, 0, "override transport.request_timeout_ms");
DEFINE_string(pid_dir, "", "if set, each rank writes its pid to <pid_dir>/rank<N>.pid");

namespace freshet {
namespace {

int RunLoad(PsClient* client, Millis timeout) {
  std::mt19937_64 rng(client->worker_index() + 1);
  const auto dims = testing::ScenarioDims();
  std::vector<uint64_t> keys(512);
  std::vector<float> vals(keys.size() * dims[0]);
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(FLAGS_seconds);
  int64_t requests = 0;
  while (std::chrono::steady_clock::now() < end) {
    for (auto& k : keys) k = rng() % 100000;
    const auto t0 = std::chrono::steady_clock::now();
    Status st = client->Pull(0, keys.data(), keys.size(), vals.data()).get();
    if (st.ok()) st = client->Push(0, keys.data(), keys.size(), vals.data()).get();
    if (!st.ok()) {
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "worker %d: request failed after %.2f s: %s\n", client->worker_index(),
                   waited, st.ToString().c_str());
      std::fflush(stderr);
      // The abort that follows kills every rank; first give the other
      // workers one request deadline (plus slack) to hit their own deadline
      // and report, so the kill test can check that every worker names the
      // dead server on its own.
      std::this_thread::sleep_for(timeout * 3 / 2);
      return 3;
    }
    if (++requests == 1) {
      std::printf("worker %d: serving traffic\n", client->worker_index());
      std::fflush(stdout);
    }
  }
  return 0;
}

// Transport::SendLatest over MPI (3 ranks, the third idle): while rank 1 reads nothing,
// 2,000 SendLatest calls from rank 0 send exactly one message; rank 1 then
// finds exactly that one (and one sent on channel 1 meanwhile, which
// channel 0 did not hold back); once it has been received, SendLatest
// sends again. (Plain sends would leave 2,000 unread messages, and past 512 Open
// MPI's shared-memory transport stalls all of rank 0's sends.)
// Rank 1's transport comes without its progress thread (Main) and starts it
// only after the barrier that ends rank 0's sending: a running progress
// thread matches (receives) the message whether or not Recv() is called,
// and SendLatest would rightly send again.
int RunLatest(MpiTransport* transport, int rank) {
  auto fail = [](const std::string& what) {
    std::fprintf(stderr, "FAIL %s\n", what.c_str());
    return 6;
  };
  auto note = [](int64_t i) {
    Message m;
    m.meta.type = MsgType::kWatermark;
    const char* p = reinterpret_cast<const char*>(&i);
    m.body.assign(p, p + sizeof(i));
    return m;
  };
  if (rank == 0) {
    int sent = 0;
    for (int64_t i = 0; i < 2000; ++i) {
      StatusOr<bool> s = transport->SendLatest(1, /*channel=*/0, note(i));
      if (!s.ok()) return fail("SendLatest: " + s.status().ToString());
      sent += *s ? 1 : 0;
    }
    if (sent != 1)
      return fail("2000 SendLatest calls to a rank not reading sent " + std::to_string(sent) +
                  " messages (want 1)");
    // Another channel is not held back by channel 0's unread message.
    StatusOr<bool> other = transport->SendLatest(1, /*channel=*/1, note(-2));
    if (!other.ok() || !*other) return fail("SendLatest on channel 1 was held back by channel 0");
    MPI_Barrier(MPI_COMM_WORLD);  // rank 1 reads now
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (true) {
      StatusOr<bool> s = transport->SendLatest(1, /*channel=*/0, note(-1));
      if (!s.ok()) return fail("SendLatest: " + s.status().ToString());
      if (*s) break;
      if (std::chrono::steady_clock::now() > deadline) {
        return fail("SendLatest still refused 10 s after rank 1 read the message");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::printf("rank 0: 1 of 2000 sent while rank 1 did not read; sends again once it read\n");
  } else if (rank == 1) {
    MPI_Barrier(MPI_COMM_WORLD);
    Status started = transport->Start();  // reads from now on
    if (!started.ok()) return fail("Start: " + started.ToString());
    std::vector<int64_t> got;
    while (true) {
      StatusOr<Message> m = transport->Recv(Millis(got.size() < 3 ? 3000 : 300));
      if (!m.ok()) break;
      int64_t i = 0;
      if (m->body.size() == sizeof(i)) std::memcpy(&i, m->body.data(), sizeof(i));
      got.push_back(i);
    }
    std::sort(got.begin(), got.end());
    if (got != std::vector<int64_t>{-2, -1, 0}) {
      std::string list;
      for (size_t k = 0; k < got.size() && k < 5; ++k) list += " " + std::to_string(got[k]);
      return fail("rank 1 received " + std::to_string(got.size()) +
                  " messages (want 3: channel 0's first, channel 1's, and channel 0's after "
                  "reading):" +
                  list);
    }
    std::printf("rank 1: received exactly the first message, then the next\n");
  } else {
    MPI_Barrier(MPI_COMM_WORLD);
  }
  return 0;
}

int Main(int argc, char** argv) {
  auto session_or = MpiSession::Init(&argc, &argv);
  if (!session_or.ok()) {
    std::fprintf(stderr, "%s\n", session_or.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<MpiSession> session(*session_or);
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  freshet::InitLogging(argv[0]);
  const int rank = session->rank();
  if (!FLAGS_pid_dir.empty()) {
    std::ofstream(FLAGS_pid_dir + "/rank" + std::to_string(rank) + ".pid") << getpid() << "\n";
  }

  proto::ClusterConfig cfg;
  if (FLAGS_cluster_config.empty()) {
    cfg.add_roles()->set_role(proto::SERVER);
    cfg.mutable_roles(0)->set_count(2);
    auto* w = cfg.add_roles();
    w->set_role(proto::WORKER);
    w->set_count(session->size() - 2);
    if (w->count() < 1) {
      std::fprintf(stderr, "needs at least 3 ranks, got %d\n", session->size());
      return 1;
    }
    Status st = ValidateClusterConfig(&cfg, "<built-in>");
    CHECK(st.ok()) << st;
  } else {
    auto c = LoadClusterConfig(FLAGS_cluster_config);
    if (!c.ok()) {
      std::fprintf(stderr, "%s\n", c.status().ToString().c_str());
      return 1;
    }
    cfg = *c;
  }
  if (FLAGS_timeout_ms > 0) cfg.mutable_transport()->set_request_timeout_ms(FLAGS_timeout_ms);
  ClusterLayout layout(cfg);
  if (layout.world_size() != session->size()) {
    std::fprintf(stderr, "cluster config has %d ranks, mpirun started %d\n", layout.world_size(),
                 session->size());
    return 1;
  }
  MpiTransport::Options transport_opt;
  // The latest scenario's rank 1 must not read until RunLatest says so.
  transport_opt.start_progress = !(FLAGS_scenario == "latest" && rank == 1);
  auto transport_or = MpiTransport::Create(MPI_COMM_WORLD, transport_opt);
  if (!transport_or.ok()) {
    std::fprintf(stderr, "%s\n", transport_or.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<MpiTransport> transport = std::move(transport_or).value();
  const Millis timeout(cfg.transport().request_timeout_ms());
  if (FLAGS_scenario == "latest") {
    const int rc = RunLatest(transport.get(), rank);
    if (rc != 0) {
      // The peers may wait in MPI_Barrier for this rank: end the job now.
      std::fflush(nullptr);
      MpiSession::Abort(rc);
    }
    transport->Shutdown();
    return rc;
  }

  int rc = 0;
  if (layout.RoleOf(rank) == proto::SERVER) {
    auto shard = ParameterShard::Create(testing::ScenarioTables(), cfg.server().partitions());
    CHECK(shard.ok()) << shard.status();
    (*shard)->SetRequestThreads(cfg.server().request_threads());
    ServerNode node(transport.get(), layout, shard->get(), cfg.server().handler_threads(), timeout);
    Status st = node.Run();
    if (!st.ok()) {
      std::fprintf(stderr, "%s: %s\n", layout.Describe(rank).c_str(), st.ToString().c_str());
      rc = 2;
    }
  } else if (layout.RoleOf(rank) == proto::WORKER) {
    PsClientOptions opt;
    opt.request_timeout = timeout;
    opt.max_inflight = cfg.transport().max_inflight_requests();
    opt.max_keys_per_request = cfg.transport().max_keys_per_request();
    opt.staleness = 0;
    auto client_or = PsClient::Create(transport.get(), layout, testing::ScenarioDims(), opt);
    CHECK(client_or.ok()) << client_or.status();
    auto client = std::move(client_or).value();
    if (FLAGS_scenario == "parity") {
      testing::ScenarioSpec spec;
      Status st = testing::RunScenarioWorker(client.get(), layout.num_workers(), spec);
      if (!st.ok()) {
        std::fprintf(stderr, "FAIL %s\n", st.ToString().c_str());
        rc = 4;
      } else {
        std::printf("worker %d: %d steps, every pull and the final table equal the reference\n",
                    client->worker_index(), spec.steps);
      }
    } else {
      rc = RunLoad(client.get(), timeout);
    }
    if (rc != 0) {
      // A peer may be dead or blocked: end the whole job loudly instead of
      // waiting for it in MPI_Finalize.
      std::fflush(nullptr);
      MpiSession::Abort(rc);
    }
    Status st = client->Shutdown();
    if (!st.ok()) rc = 5;
  }
  transport->Shutdown();
  return rc;
}

}  // namespace
}  // namespace freshet

int main(int argc, char** argv) { return freshet::Main(argc, argv); }
