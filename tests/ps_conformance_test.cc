// Conformance: the client/server scenario over the in-process transport,
// plain and wrapped in FaultyTransport. The same scenario runs over MPI in
// ps_mpi_parity_* (tests/CMakeLists.txt).
#include <chrono>
#include <functional>
#include <memory>
#include <thread>

#include <gtest/gtest.h>

#include "common/config.h"
#include "server/parameter_shard.h"
#include "server/server_node.h"
#include "tests/ps_scenario.h"
#include "worker/ps_client.h"

namespace freshet {
namespace {

proto::ClusterConfig Cluster(int servers, int workers) {
  proto::ClusterConfig cfg;
  auto* s = cfg.add_roles();
  s->set_role(proto::SERVER);
  s->set_count(servers);
  auto* w = cfg.add_roles();
  w->set_role(proto::WORKER);
  w->set_count(workers);
  cfg.mutable_server()->set_partitions(8);
  EXPECT_TRUE(ValidateClusterConfig(&cfg, "test").ok());
  return cfg;
}

// Runs servers and workers as threads; `wrap` may wrap each endpoint.
struct InProcessCluster {
  InProcessCluster(int servers, int workers,
                   std::function<Transport*(Transport*)> wrap = nullptr)
      : cfg(Cluster(servers, workers)), layout(cfg), hub(servers + workers) {
    for (int r = 0; r < hub.size(); ++r) {
      Transport* t = hub.endpoint(r);
      endpoints.push_back(wrap ? wrap(t) : t);
    }
  }
  proto::ClusterConfig cfg;
  ClusterLayout layout;
  InProcessHub hub;
  std::vector<Transport*> endpoints;
};

void RunScenario(InProcessCluster& c, Millis timeout) {
  const int servers = c.layout.num_servers();
  const int workers = c.layout.num_workers();
  std::vector<std::unique_ptr<ParameterShard>> shards;
  std::vector<std::unique_ptr<ServerNode>> nodes;
  std::vector<std::thread> threads;
  std::vector<Status> server_status(servers), worker_status(workers);
  for (int s = 0; s < servers; ++s) {
    auto shard = ParameterShard::Create(testing::ScenarioTables(), 8);
    ASSERT_TRUE(shard.ok()) << shard.status();
    shards.push_back(std::move(shard).value());
    nodes.push_back(std::make_unique<ServerNode>(c.endpoints[c.layout.ServerRank(s)], c.layout,
                                                 shards.back().get(), 2, timeout));
  }
  for (int s = 0; s < servers; ++s) {
    threads.emplace_back([&, s] { server_status[s] = nodes[s]->Run(); });
  }
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      PsClientOptions opt;
      opt.staleness = 0;
      opt.request_timeout = timeout;
      opt.max_inflight = 4;
      auto client = PsClient::Create(c.endpoints[c.layout.WorkerRank(w)], c.layout,
                                     testing::ScenarioDims(), opt);
      ASSERT_TRUE(client.ok()) << client.status();
      testing::ScenarioSpec spec;
      worker_status[w] = testing::RunScenarioWorker(client->get(), workers, spec);
      EXPECT_TRUE((*client)->Shutdown().ok());
    });
  }
  for (auto& t : threads) t.join();
  for (int s = 0; s < servers; ++s) EXPECT_TRUE(server_status[s].ok()) << server_status[s];
  for (int w = 0; w < workers; ++w) EXPECT_TRUE(worker_status[w].ok()) << worker_status[w];
  // Every key landed on exactly one shard: rows add up to the keys pulled.
  int64_t rows = 0;
  for (auto& sh : shards) rows += sh->Stats().rows;
  EXPECT_EQ(rows, 2 * testing::ScenarioSpec().num_keys);
}

TEST(ConformanceTest, InProcessTwoServersTwoWorkers) {
  InProcessCluster c(2, 2);
  RunScenario(c, Millis(10000));
}

TEST(ConformanceTest, InProcessThreeServersThreeWorkers) {
  InProcessCluster c(3, 3);
  RunScenario(c, Millis(10000));
}

TEST(ConformanceTest, InProcessOneServerOneWorker) {
  InProcessCluster c(1, 1);
  RunScenario(c, Millis(10000));
}

// Slow links must not change results: staleness 0 still holds.
TEST(ConformanceTest, FaultyTransportWithDelays) {
  std::vector<std::unique_ptr<FaultyTransport>> faulty;
  InProcessCluster c(2, 2, [&](Transport* t) {
    faulty.push_back(std::make_unique<FaultyTransport>(t));
    faulty.back()->set_send_delay(Millis(t->rank() % 2));
    return faulty.back().get();
  });
  RunScenario(c, Millis(10000));
}

// A server that vanishes (all its traffic cut) fails the worker's request
// within the deadline, with an error naming the server.
TEST(ConformanceTest, CutOffServerFailsWithinDeadline) {
  std::vector<std::unique_ptr<FaultyTransport>> faulty;
  InProcessCluster c(2, 1, [&](Transport* t) {
    faulty.push_back(std::make_unique<FaultyTransport>(t));
    return faulty.back().get();
  });
  const Millis timeout(300);
  std::vector<std::unique_ptr<ParameterShard>> shards;
  std::vector<std::unique_ptr<ServerNode>> nodes;
  std::vector<std::thread> threads;
  for (int s = 0; s < 2; ++s) {
    shards.push_back(std::move(ParameterShard::Create(testing::ScenarioTables(), 4)).value());
    nodes.push_back(std::make_unique<ServerNode>(c.endpoints[s], c.layout, shards.back().get(), 1,
                                                 timeout));
    threads.emplace_back([&, s] { EXPECT_TRUE(nodes[s]->Run().ok()); });
  }
  PsClientOptions opt;
  opt.request_timeout = timeout;
  auto client = std::move(PsClient::Create(c.endpoints[2], c.layout, testing::ScenarioDims(), opt))
                    .value();
  std::vector<uint64_t> keys;
  for (int i = 0; i < 64; ++i) keys.push_back(testing::ScenarioKey(i));
  std::vector<float> out(keys.size() * 4);
  ASSERT_TRUE(client->Pull(0, keys.data(), keys.size(), out.data()).get().ok());

  faulty[2]->CutOff(1);  // worker loses server 1 (rank 1)
  const auto t0 = std::chrono::steady_clock::now();
  Status st = client->Pull(0, keys.data(), keys.size(), out.data()).get();
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st;
  EXPECT_NE(st.message().find("server 1 (rank 1)"), std::string::npos) << st;
  EXPECT_GE(waited, timeout);
  EXPECT_LT(waited, timeout * 5);

  faulty[2]->Restore(1);
  EXPECT_TRUE(client->Pull(0, keys.data(), keys.size(), out.data()).get().ok());
  EXPECT_TRUE(client->Shutdown().ok());
  for (auto& t : threads) t.join();
}

}  // namespace
}  // namespace freshet
