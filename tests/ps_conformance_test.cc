// Conformance: the client/server scenario over the in-process transport,
// plain and wrapped in FaultyTransport. The same scenario runs over MPI in
// ps_mpi_parity_* (tests/CMakeLists.txt).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/config.h"
#include "common/ps_wire.h"
#include "common/sharding.h"
#include "exporter/exporter_node.h"
#include "server/parameter_shard.h"
#include "server/server_node.h"
#include "server/table_io.h"
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
  InProcessCluster(int servers, int workers, std::function<Transport*(Transport*)> wrap = nullptr)
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
    nodes.push_back(
        std::make_unique<ServerNode>(c.endpoints[s], c.layout, shards.back().get(), 1, timeout));
    threads.emplace_back([&, s] { EXPECT_TRUE(nodes[s]->Run().ok()); });
  }
  PsClientOptions opt;
  opt.request_timeout = timeout;
  auto client =
      std::move(PsClient::Create(c.endpoints[2], c.layout, testing::ScenarioDims(), opt)).value();
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

// Servers and one client over FaultyTransport endpoints, for the fault tests
// below: `servers` ServerNodes (2 handler threads each) run on threads until
// Stop(); the reference shard gets the same pushes as the cluster (in one
// process, no transport), so it holds what every pull must return.
class FaultCluster {
 public:
  FaultCluster(int servers, Millis timeout, int max_inflight = 64)
      : cluster_(servers, 1,
                 [this](Transport* t) {
                   faulty_.push_back(std::make_unique<FaultyTransport>(t));
                   return faulty_.back().get();
                 }),
        timeout_(timeout) {
    for (int s = 0; s < servers; ++s) {
      shards_.push_back(std::move(ParameterShard::Create(testing::ScenarioTables(), 4)).value());
      nodes_.push_back(std::make_unique<ServerNode>(cluster_.endpoints[s], cluster_.layout,
                                                    shards_.back().get(), 2, timeout));
    }
    for (int s = 0; s < servers; ++s) {
      threads_.emplace_back([this, s] { EXPECT_TRUE(nodes_[s]->Run().ok()); });
    }
    PsClientOptions opt;
    opt.request_timeout = timeout;
    opt.max_inflight = max_inflight;
    client_ = std::move(PsClient::Create(cluster_.endpoints[servers], cluster_.layout,
                                         testing::ScenarioDims(), opt))
                  .value();
    reference_ = std::move(ParameterShard::Create(testing::ScenarioTables(), 4)).value();
  }
  ~FaultCluster() {
    for (auto& f : faulty_) f->set_drop_every(0);
    EXPECT_TRUE(client_->Shutdown().ok());
    for (auto& t : threads_) t.join();
  }
  PsClient* client() { return client_.get(); }
  ParameterShard* reference() { return reference_.get(); }
  ParameterShard* shard(int s) { return shards_[s].get(); }
  int worker_rank() const { return cluster_.layout.WorkerRank(0); }
  // The endpoint of rank r (servers are ranks 0..S-1, the worker is S).
  FaultyTransport* endpoint(int r) { return faulty_[r].get(); }
  Millis timeout() const { return timeout_; }
  const ClusterLayout& layout() const { return cluster_.layout; }

 private:
  std::vector<std::unique_ptr<FaultyTransport>> faulty_;
  InProcessCluster cluster_;
  const Millis timeout_;
  std::vector<std::unique_ptr<ParameterShard>> shards_;
  std::vector<std::unique_ptr<ServerNode>> nodes_;
  std::vector<std::thread> threads_;
  std::unique_ptr<PsClient> client_;
  std::unique_ptr<ParameterShard> reference_;
};

std::vector<uint64_t> Keys(int first, int n) {
  std::vector<uint64_t> keys;
  for (int i = first; i < first + n; ++i) keys.push_back(testing::ScenarioKey(i));
  return keys;
}

// n keys owned by server `server` of `servers`.
std::vector<uint64_t> KeysOnServer(int server, int servers, int n) {
  std::vector<uint64_t> keys;
  for (int i = 0; static_cast<int>(keys.size()) < n; ++i) {
    const uint64_t k = testing::ScenarioKey(10000 + i);
    if (ShardOf(k, servers) == server) keys.push_back(k);
  }
  return keys;
}

// What a pull of `keys` must return: the reference shard's rows.
std::vector<float> Expected(ParameterShard* ref, int table, const std::vector<uint64_t>& keys) {
  const int dim = testing::ScenarioDims()[table];
  std::vector<float> out(keys.size() * dim);
  EXPECT_TRUE(ref->HandlePull(table, dim, keys.data(), keys.size(), out.data()).ok());
  return out;
}

// Gradients that keep every value a multiple of 1/32 (exact in any order).
std::vector<float> Grads(size_t n, int dim, int round) {
  std::vector<float> g(n * dim);
  for (size_t j = 0; j < g.size(); ++j) g[j] = static_cast<float>((j + round) % 5 + 1) / 32;
  return g;
}

bool NamesServer(const Status& st) {
  return st.message().find("server ") != std::string::npos &&
         st.message().find("(rank ") != std::string::npos;
}

// Every n-th message the worker sends is lost. The affected pull or push
// fails with DeadlineExceeded naming the server, within the deadline;
// every other request returns exactly the reference values; nothing hangs;
// once the link is clean again the client works as before.
TEST(FaultTest, DroppedMessagesFailOnlyTheirRequests) {
  FaultCluster c(2, Millis(300));
  PsClient* client = c.client();
  // Pushes go to keys of server 0 only: one request each, so a failed push
  // was not applied anywhere (the worker's message was the one lost).
  const std::vector<uint64_t> push_keys = KeysOnServer(0, 2, 40);
  const std::vector<uint64_t> pull_keys = Keys(0, 64);  // both servers
  c.endpoint(c.worker_rank())->set_drop_every(5);
  int pulls_ok = 0, pulls_failed = 0, pushes_ok = 0, pushes_failed = 0;
  for (int round = 0; round < 20; ++round) {
    const std::vector<float> g = Grads(push_keys.size(), 4, round);
    auto t0 = std::chrono::steady_clock::now();
    Status st = client->Push(0, push_keys.data(), push_keys.size(), g.data()).get();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, c.timeout() * 5);
    if (st.ok()) {
      ++pushes_ok;
      ASSERT_TRUE(
          c.reference()->HandlePush(0, 4, push_keys.data(), push_keys.size(), g.data()).ok());
    } else {
      ++pushes_failed;
      EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st;
      EXPECT_NE(st.message().find("server 0 (rank 0)"), std::string::npos) << st;
    }
    for (const auto* keys : {&pull_keys, &push_keys}) {
      std::vector<float> out(keys->size() * 4);
      t0 = std::chrono::steady_clock::now();
      st = client->Pull(0, keys->data(), keys->size(), out.data()).get();
      EXPECT_LT(std::chrono::steady_clock::now() - t0, c.timeout() * 5);
      if (st.ok()) {
        ++pulls_ok;
        EXPECT_EQ(out, Expected(c.reference(), 0, *keys)) << "round " << round;
      } else {
        ++pulls_failed;
        EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st;
        EXPECT_TRUE(NamesServer(st)) << st;
      }
    }
  }
  // 20 rounds x (1 push + 2 + 1 pull messages) = 80 messages, 16 dropped.
  EXPECT_EQ(c.endpoint(c.worker_rank())->dropped(), 16);
  EXPECT_GT(pushes_failed, 0);
  EXPECT_GT(pushes_ok, 0);
  EXPECT_GT(pulls_failed, 0);
  EXPECT_GT(pulls_ok, 0);
  c.endpoint(c.worker_rank())->set_drop_every(0);
  std::vector<float> out(push_keys.size() * 4);
  ASSERT_TRUE(client->Pull(0, push_keys.data(), push_keys.size(), out.data()).get().ok());
  EXPECT_EQ(out, Expected(c.reference(), 0, push_keys));
  // The server saw exactly the pushes that succeeded.
  EXPECT_EQ(c.shard(0)->Stats().push_requests, pushes_ok);
}

// A server cut off and restored while four client threads pull: requests to
// it fail within the deadline naming it, requests to the other server (and
// after the restore, to both) return the right values, and every thread
// finishes with a successful pull.
TEST(FaultTest, ServerCutOffAndRestoredUnderLoadFromSeveralThreads) {
  // A generous deadline: requests to the healthy server must never miss
  // it, even on a box shared with builds.
  FaultCluster c(2, Millis(500), 8);
  PsClient* client = c.client();
  const std::vector<uint64_t> on0 = KeysOnServer(0, 2, 50);
  const std::vector<uint64_t> both = Keys(0, 100);
  const std::vector<float> want0 = Expected(c.reference(), 1, on0);
  const std::vector<float> want_both = Expected(c.reference(), 1, both);
  std::atomic<bool> restored{false}, cut_off{false};
  std::atomic<int> failed{0}, ok_during_cut{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      bool last_ok = false;
      int after_restore = 0;
      for (int i = 0; after_restore < 5; ++i) {
        const bool restored_before = restored.load();
        const bool cut_before = cut_off.load();
        const bool only0 = (i + t) % 2 == 0;
        const auto& keys = only0 ? on0 : both;
        std::vector<float> out(keys.size() * 3);
        const auto t0 = std::chrono::steady_clock::now();
        Status st = client->Pull(1, keys.data(), keys.size(), out.data()).get();
        EXPECT_LT(std::chrono::steady_clock::now() - t0, c.timeout() * 5);
        if (st.ok()) {
          EXPECT_EQ(out, only0 ? want0 : want_both) << "thread " << t << " pull " << i;
          if (cut_before && cut_off.load() && only0) ++ok_during_cut;
        } else {
          ++failed;
          EXPECT_FALSE(only0) << "server 0 is never cut off: " << st;
          EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st;
          EXPECT_NE(st.message().find("server 1 (rank 1)"), std::string::npos) << st;
        }
        last_ok = st.ok();
        if (restored_before) ++after_restore;
      }
      EXPECT_TRUE(last_ok) << "thread " << t;
    });
  }
  std::this_thread::sleep_for(Millis(50));
  c.endpoint(c.worker_rank())->CutOff(1);
  cut_off = true;
  std::this_thread::sleep_for(c.timeout() * 3);
  cut_off = false;
  c.endpoint(c.worker_rank())->Restore(1);
  // Requests sent just before the restore may still time out; those after
  // it must not.
  std::this_thread::sleep_for(c.timeout() * 2);
  restored = true;
  for (auto& t : threads) t.join();
  EXPECT_GT(failed.load(), 0);
  EXPECT_GT(ok_during_cut.load(), 0);
}

// Replies delayed far beyond the deadline: the request fails at the
// deadline (not when the late reply comes), the late reply is dropped
// without harm, and once the link is fast again the client gets the right
// values. A delay well under the deadline changes nothing.
TEST(FaultTest, DelaysBeyondTheDeadlineFailAtTheDeadline) {
  FaultCluster c(1, Millis(150));
  PsClient* client = c.client();
  const std::vector<uint64_t> keys = Keys(0, 32);
  const std::vector<float> g = Grads(keys.size(), 4, 0);
  ASSERT_TRUE(client->Push(0, keys.data(), keys.size(), g.data()).get().ok());
  ASSERT_TRUE(c.reference()->HandlePush(0, 4, keys.data(), keys.size(), g.data()).ok());
  const std::vector<float> want = Expected(c.reference(), 0, keys);

  c.endpoint(0)->set_send_delay(Millis(50));  // a third of the deadline
  std::vector<float> out(keys.size() * 4);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client->Pull(0, keys.data(), keys.size(), out.data()).get().ok());
    EXPECT_EQ(out, want);
  }

  c.endpoint(0)->set_send_delay(Millis(600));  // 4x the deadline
  const auto t0 = std::chrono::steady_clock::now();
  Status st = client->Pull(0, keys.data(), keys.size(), out.data()).get();
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st;
  EXPECT_NE(st.message().find("server 0 (rank 0)"), std::string::npos) << st;
  EXPECT_GE(waited, c.timeout());
  EXPECT_LT(waited, Millis(450));  // failed at the deadline, not at the reply
  // A push whose ack comes late fails too, but it was applied: the server
  // got it in time (pushes are not idempotent, so the client does not
  // resend it).
  st = client->Push(0, keys.data(), keys.size(), g.data()).get();
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st;
  ASSERT_TRUE(c.reference()->HandlePush(0, 4, keys.data(), keys.size(), g.data()).ok());

  c.endpoint(0)->set_send_delay(Millis(0));
  std::this_thread::sleep_for(Millis(1300));  // the late replies arrive and are ignored
  ASSERT_TRUE(client->Pull(0, keys.data(), keys.size(), out.data()).get().ok());
  EXPECT_EQ(out, Expected(c.reference(), 0, keys));
}

// Background checkpoint writes through the real server loop: SAVE is
// answered after the in-memory copy, pushes go on while the servers write,
// and the written files equal the tables at the cut; an incremental save
// holds exactly the rows pushed since; SAVE_STATUS for a directory no SAVE
// named is an error naming the server; a second SAVE while the first is
// still writing waits for it, so both files are complete.
TEST(ConformanceTest, BackgroundSaveIsTheCutWhilePushesContinue) {
  FaultCluster c(2, Millis(5000));
  PsClient* client = c.client();
  const std::vector<uint64_t> keys = Keys(0, 4000);
  for (int round = 0; round < 3; ++round) {
    const std::vector<float> g = Grads(keys.size(), 4, round);
    ASSERT_TRUE(client->Push(0, keys.data(), keys.size(), g.data()).get().ok());
    ASSERT_TRUE(c.reference()->HandlePush(0, 4, keys.data(), keys.size(), g.data()).ok());
  }
  const std::vector<float> at_cut = Expected(c.reference(), 0, keys);
  // Under the test binary's scratch TMPDIR (removed when the tests end).
  std::string tmpl_path = ::testing::TempDir() + "freshet-bgsave-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl_path.data()), nullptr);
  const char* tmpl = tmpl_path.c_str();
  const std::string root = tmpl;
  const std::string dir1 = root + "/full", dir2 = root + "/incr", dir3 = root + "/again";
  for (const auto& d : {dir1, dir2, dir3}) std::filesystem::create_directories(d);

  StatusOr<int64_t> copied = client->StartSaveTables(dir1);
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_GE(*copied, static_cast<int64_t>(keys.size()) * (24 + 16));  // every row record
  // Training goes on while the servers write: the first half of the keys
  // changes twice more.
  const std::vector<uint64_t> half(keys.begin(), keys.begin() + keys.size() / 2);
  for (int round = 3; round < 5; ++round) {
    const std::vector<float> g = Grads(half.size(), 4, round);
    ASSERT_TRUE(client->Push(0, half.data(), half.size(), g.data()).get().ok());
    ASSERT_TRUE(c.reference()->HandlePush(0, 4, half.data(), half.size(), g.data()).ok());
  }
  ASSERT_TRUE(client->WaitTablesSaved(dir1, *copied).ok());

  auto load = [](const std::string& dir) {
    auto shard = std::move(ParameterShard::Create(testing::ScenarioTables(), 4)).value();
    Status st = LoadModelRows(dir, shard.get());
    EXPECT_TRUE(st.ok()) << st;
    return shard;
  };
  {
    auto saved = load(dir1);
    EXPECT_EQ(saved->Stats().rows, static_cast<int64_t>(keys.size()));
    for (size_t i = 0; i < keys.size(); ++i) {
      float w[4];
      ASSERT_TRUE(saved->table(0)->Lookup(keys[i], w)) << i;
      for (int j = 0; j < 4; ++j) ASSERT_EQ(w[j], at_cut[i * 4 + j]) << "key " << i;
    }
  }
  // The live tables have the later pushes.
  std::vector<float> out(keys.size() * 4);
  ASSERT_TRUE(client->Pull(0, keys.data(), keys.size(), out.data()).get().ok());
  EXPECT_EQ(out, Expected(c.reference(), 0, keys));
  EXPECT_NE(out, at_cut);

  // Incremental: the rows pushed since the first save, as they are now.
  copied = client->StartSaveTables(dir2, true);
  ASSERT_TRUE(copied.ok()) << copied.status();
  // Another SAVE at once: the servers finish writing dir2 first.
  StatusOr<int64_t> again = client->StartSaveTables(dir3);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE(client->WaitTablesSaved(dir3, *again).ok());
  Status st = client->WaitTablesSaved(dir2, *copied);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st;  // dir3 is the last SAVE
  EXPECT_TRUE(NamesServer(st)) << st;
  {
    auto incr = load(dir2);
    EXPECT_EQ(incr->Stats().rows, static_cast<int64_t>(half.size()));
    const std::vector<float> want = Expected(c.reference(), 0, half);
    for (size_t i = 0; i < half.size(); ++i) {
      float w[4];
      ASSERT_TRUE(incr->table(0)->Lookup(half[i], w)) << i;
      for (int j = 0; j < 4; ++j) ASSERT_EQ(w[j], want[i * 4 + j]) << "key " << i;
    }
    EXPECT_EQ(load(dir3)->Stats().rows, static_cast<int64_t>(keys.size()));
  }
  st = client->WaitTablesSaved(root + "/never", 0);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st;
  std::filesystem::remove_all(root);
}

// The exporter side: a server cut off from the exporter (but not from the
// worker) fails the exporter's next EXPORT at its deadline with an error
// naming the server, after earlier snapshots were published; the worker's
// traffic to that server is unaffected.
TEST(FaultTest, ServerCutOffFromTheExporterFailsTheExportNamingIt) {
  proto::ClusterConfig cfg = Cluster(2, 1);
  auto* e = cfg.add_roles();
  e->set_role(proto::EXPORTER);
  e->set_count(1);
  ASSERT_TRUE(ValidateClusterConfig(&cfg, "test").ok());
  const ClusterLayout layout(cfg);
  InProcessHub hub(4);
  FaultyTransport exporter_link(hub.endpoint(layout.ExporterRank(0)));
  const Millis timeout(200);
  std::vector<std::unique_ptr<ParameterShard>> shards;
  std::vector<std::unique_ptr<ServerNode>> nodes;
  std::vector<std::thread> threads;
  for (int s = 0; s < 2; ++s) {
    shards.push_back(std::move(ParameterShard::Create(testing::ScenarioTables(), 4)).value());
    nodes.push_back(std::make_unique<ServerNode>(hub.endpoint(layout.ServerRank(s)), layout,
                                                 shards.back().get(), 2, timeout));
    threads.emplace_back([&, s] { EXPECT_TRUE(nodes[s]->Run().ok()); });
  }
  PsClientOptions opt;
  opt.request_timeout = timeout;
  auto client = std::move(PsClient::Create(hub.endpoint(layout.WorkerRank(0)), layout,
                                           testing::ScenarioDims(), opt))
                    .value();
  const std::vector<uint64_t> keys = Keys(0, 64);  // both servers
  const std::vector<float> g = Grads(keys.size(), 4, 0);
  ASSERT_TRUE(client->Push(0, keys.data(), keys.size(), g.data()).get().ok());

  // Under the test binary's scratch TMPDIR (removed when the tests end).
  std::string tmpl_path = ::testing::TempDir() + "freshet-export-fault-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl_path.data()), nullptr);
  const char* tmpl = tmpl_path.c_str();
  proto::JobConfig job;
  job.set_name("export-fault");
  *job.mutable_tables() = testing::ScenarioTables();
  job.mutable_export_()->set_dir(tmpl);
  job.mutable_export_()->set_interval_s(0.05f);
  job.mutable_export_()->set_full_interval_s(60);
  job.mutable_export_()->set_retain_full(2);
  ExporterNode exporter(&exporter_link, layout, job, timeout);
  // The exporter exports once it has dense parameters from worker 0.
  const float dense_params[4] = {0, 0, 0, 0};
  Message dense = EncodeDenseUpdate(DenseUpdate{TrainingClocks{}, dense_params, 4}, false);
  ASSERT_TRUE(
      hub.endpoint(layout.WorkerRank(0))->Send(layout.ExporterRank(0), std::move(dense)).ok());
  Status exported;
  std::chrono::steady_clock::time_point ended;
  std::thread exporter_thread([&] {
    exported = exporter.Run();
    ended = std::chrono::steady_clock::now();
  });
  std::this_thread::sleep_for(Millis(300));  // a full snapshot and some deltas
  const auto cut = std::chrono::steady_clock::now();
  exporter_link.CutOff(layout.ServerRank(1));
  // The worker still reaches server 1.
  std::vector<float> out(keys.size() * 4);
  EXPECT_TRUE(client->Pull(0, keys.data(), keys.size(), out.data()).get().ok());
  exporter_thread.join();
  EXPECT_EQ(exported.code(), StatusCode::kDeadlineExceeded) << exported;
  EXPECT_NE(exported.message().find("server 1 (rank 1)"), std::string::npos) << exported;
  EXPECT_LT(ended - cut, timeout * 5);
  EXPECT_GE(exporter.stats().fulls, 1);
  EXPECT_TRUE(std::filesystem::exists(std::string(tmpl) + "/LATEST"));
  EXPECT_TRUE(client->Shutdown().ok());
  for (auto& t : threads) t.join();
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace freshet
