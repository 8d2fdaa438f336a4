#include "worker/ps_client.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>
#include <sstream>
#include <thread>

#include "common/config.h"
#include "common/key_dedup.h"
#include "common/ps_wire.h"
#include "common/sharding.h"
#include "server/parameter_shard.h"
#include "server/server_node.h"

namespace freshet {
namespace {

// Servers running as threads over an in-process hub; workers are the
// remaining ranks, driven by the test.
class ClientTest : public ::testing::Test {
 protected:
  void Start(int servers, int workers, int staleness, int max_inflight = 8,
             Millis timeout = Millis(5000), bool metrics = false) {
    proto::ClusterConfig cfg;
    cfg.add_roles()->set_role(proto::SERVER);
    cfg.mutable_roles(0)->set_count(servers);
    cfg.add_roles()->set_role(proto::WORKER);
    cfg.mutable_roles(1)->set_count(workers);
    ASSERT_TRUE(ValidateClusterConfig(&cfg, "test").ok());
    layout_ = std::make_unique<ClusterLayout>(cfg);
    hub_ = std::make_unique<InProcessHub>(servers + workers);
    auto tables = ParseTablesConfig(R"(
      tables { name: "e" dim: 3 initializer { kind: CONSTANT scale: 0.5 }
               optimizer { sgd { learning_rate: 1 } } }
      tables { name: "f" dim: 2 optimizer { sgd { learning_rate: 1 } } }
    )",
                                    "t");
    ASSERT_TRUE(tables.ok());
    for (int r = 0; r < servers + workers; ++r) {
      registries_.push_back(metrics ? std::make_unique<MetricsRegistry>() : nullptr);
    }
    for (int s = 0; s < servers; ++s) {
      shards_.push_back(std::move(ParameterShard::Create(*tables, 4)).value());
      nodes_.push_back(std::make_unique<ServerNode>(
          hub_->endpoint(s), *layout_, shards_.back().get(), 2, timeout, registries_[s].get()));
    }
    for (int s = 0; s < servers; ++s) threads_.emplace_back([this, s] { (void)nodes_[s]->Run(); });
    for (int w = 0; w < workers; ++w) {
      PsClientOptions opt;
      opt.staleness = staleness;
      opt.max_inflight = max_inflight;
      opt.max_keys_per_request = max_keys_per_request_;
      opt.request_timeout = timeout;
      opt.metrics = registries_[servers + w].get();
      clients_.push_back(
          std::move(PsClient::Create(hub_->endpoint(servers + w), *layout_, {3, 2}, opt)).value());
    }
  }
  void TearDown() override {
    for (auto& c : clients_) EXPECT_TRUE(c->Shutdown().ok());
    for (auto& t : threads_) t.join();
    clients_.clear();
  }
  std::vector<float> Pull(int w, int table, std::vector<uint64_t> keys) {
    std::vector<float> out(keys.size() * (table == 0 ? 3 : 2));
    Status st = clients_[w]->Pull(table, keys.data(), keys.size(), out.data()).get();
    EXPECT_TRUE(st.ok()) << st;
    return out;
  }

  // The value of Prometheus sample `name` (no labels) of rank `rank`.
  double Metric(int rank, const std::string& name) {
    std::istringstream in(registries_[rank]->RenderPrometheus());
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    }
    ADD_FAILURE() << "no metric " << name << " on rank " << rank;
    return -1;
  }

  int max_keys_per_request_ = 0;  // set before Start()
  // Declared first: destroyed after the nodes and clients that update them.
  std::vector<std::unique_ptr<MetricsRegistry>> registries_;
  std::unique_ptr<ClusterLayout> layout_;
  std::unique_ptr<InProcessHub> hub_;
  std::vector<std::unique_ptr<ParameterShard>> shards_;
  std::vector<std::unique_ptr<ServerNode>> nodes_;
  std::vector<std::thread> threads_;
  std::vector<std::unique_ptr<PsClient>> clients_;
};

// Regression: a PULL claiming a huge dim (2^32 - 1 for one key) made a
// server allocate num_keys * dim floats (16 GiB) before checking the dim
// against the table. Now the server checks first and answers with the
// error; a request of another wire version is answered with that error;
// the server keeps serving.
TEST_F(ClientTest, ServerAnswersBadRequestsWithTheError) {
  Start(1, 1, -1);
  const int server = layout_->ServerRank(0);
  const uint64_t key = 1;
  PullRequest req;
  req.table = 0;
  req.dim = 0xffffffffu;
  req.keys = &key;
  req.num_keys = 1;
  auto r = clients_[0]->CallRanks({server}, EncodePullRequest(req));
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "server 0 (rank 0): table 'e' has dim 3, request says 4294967295");
  req.dim = 3;
  Message old = EncodePullRequest(req);
  old.meta.version = 0;
  r = clients_[0]->CallRanks({server}, old);
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("has wire version 0"), std::string::npos) << r.status();
  EXPECT_EQ(Pull(0, 0, {1, 2}).size(), 6u);
}

TEST_F(ClientTest, MetricsCountRequestsKeysBytesAndLatency) {
  Start(2, 1, -1, 8, Millis(5000), /*metrics=*/true);
  std::vector<uint64_t> keys;
  for (uint64_t k = 0; k < 100; ++k) keys.push_back(k * 7919);
  std::vector<uint64_t> with_dups = keys;
  with_dups.insert(with_dups.end(), keys.begin(), keys.begin() + 30);  // deduplicated
  (void)Pull(0, 0, with_dups);
  std::vector<float> g(keys.size() * 2, 0.25f);
  ASSERT_TRUE(clients_[0]->Push(1, keys.data(), keys.size(), g.data()).get().ok());
  int shards = 0;
  for (int s = 0; s < 2; ++s) shards += shards_[s]->Stats().keys_pulled > 0 ? 1 : 0;
  const int w = 2;  // the worker's rank
  EXPECT_EQ(Metric(w, "freshet_pull_requests_total"), shards);
  EXPECT_EQ(Metric(w, "freshet_push_requests_total"), shards);
  EXPECT_EQ(Metric(w, "freshet_keys_pulled_total"), 100);
  EXPECT_EQ(Metric(w, "freshet_keys_pushed_total"), 100);
  // Whole bodies (common/ps_wire.h): a PULL is 32 bytes of fields and the
  // keys; its answer 8 bytes of fields and the rows, padded to 8; a PUSH
  // 24 bytes of fields, keys and gradients (dim 2: no pad).
  EXPECT_EQ(Metric(w, "freshet_pull_bytes_out_total"), 100 * 8 + 32 * shards);
  const double rows_in = 100 * 3 * 4 + 8 * shards;  // dim 3 rows
  EXPECT_GE(Metric(w, "freshet_pull_bytes_in_total"), rows_in);
  EXPECT_LE(Metric(w, "freshet_pull_bytes_in_total"), rows_in + 4 * shards);
  EXPECT_EQ(Metric(w, "freshet_push_bytes_out_total"), 100 * (8 + 2 * 4) + 24 * shards);
  EXPECT_EQ(Metric(w, "freshet_pull_seconds_count"), shards);
  EXPECT_EQ(Metric(w, "freshet_push_seconds_count"), shards);
  EXPECT_GT(Metric(w, "freshet_pull_p50_seconds"), 0);
  EXPECT_EQ(Metric(w, "freshet_failed_requests_total"), 0);
  EXPECT_EQ(Metric(w, "freshet_requests_in_flight"), 0);
  // A server records a request's latency after sending its reply, so the
  // count may trail the reply by a moment: wait for it (bounded).
  const auto handled_by_servers = [&] {
    double h = 0;
    for (int s = 0; s < 2; ++s) h += Metric(s, "freshet_server_pull_seconds_count");
    return h;
  };
  for (int i = 0; i < 2000 && handled_by_servers() < shards; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const double handled = handled_by_servers();
  double rows = 0, pulled = 0, pushed = 0;
  for (int s = 0; s < 2; ++s) {
    rows += Metric(s, "freshet_table_rows");
    pulled += Metric(s, "freshet_server_keys_pulled_total");
    pushed += Metric(s, "freshet_server_keys_pushed_total");
    EXPECT_GT(Metric(s, "freshet_table_bytes"), 0);
    EXPECT_EQ(Metric(s, "freshet_staleness_waiting_pulls"), 0);
  }
  EXPECT_EQ(rows, 200);  // 100 keys in each of the two tables
  EXPECT_EQ(pulled, 100);
  EXPECT_EQ(pushed, 100);
  EXPECT_EQ(handled, shards);
}

// A call with more keys for a server than max_keys_per_request goes out as
// several requests of at most that many keys; the results are those of one
// request: duplicates summed on push and copied on pull, rows in the
// caller's order. Two slots, so the call also waits for its own answers.
TEST_F(ClientTest, LargeCallsAreSplitIntoRequestsOfAtMostMaxKeys) {
  max_keys_per_request_ = 7;
  Start(2, 1, -1, /*max_inflight=*/2, Millis(5000), /*metrics=*/true);
  std::vector<uint64_t> keys;
  for (uint64_t k = 1; k <= 61; ++k) keys.push_back(k * 2654435761u);
  std::vector<uint64_t> with_dups = keys;
  with_dups.insert(with_dups.end(), keys.begin(), keys.begin() + 20);
  // Gradient 0.01 * (key index + 1) on every coordinate; the 20 duplicated
  // keys get it twice.
  std::vector<float> g(with_dups.size() * 3);
  for (size_t i = 0; i < with_dups.size(); ++i) {
    for (int j = 0; j < 3; ++j) g[i * 3 + j] = 0.01f * static_cast<float>(i % keys.size() + 1);
  }
  ASSERT_TRUE(clients_[0]->Push(0, with_dups.data(), with_dups.size(), g.data()).get().ok());
  // Pull in another order, with duplicates.
  std::vector<uint64_t> order(with_dups.rbegin(), with_dups.rend());
  const std::vector<float> got = Pull(0, 0, order);
  for (size_t i = 0; i < order.size(); ++i) {
    const size_t k =
        static_cast<size_t>(std::find(keys.begin(), keys.end(), order[i]) - keys.begin());
    const float times = k < 20 ? 2.0f : 1.0f;
    const float want = 0.5f - times * 0.01f * static_cast<float>(k + 1);  // SGD, lr 1
    for (int j = 0; j < 3; ++j) ASSERT_NEAR(got[i * 3 + j], want, 1e-6) << "key " << order[i];
  }
  // Requests: per server, ceil(its keys / 7), for the push and the pull.
  int per_server[2] = {0, 0};
  for (uint64_t k : keys) ++per_server[ShardOf(k, 2)];
  const int requests = (per_server[0] + 6) / 7 + (per_server[1] + 6) / 7;
  ASSERT_GT(requests, 2);
  const int w = 2;
  EXPECT_EQ(Metric(w, "freshet_push_requests_total"), requests);
  EXPECT_EQ(Metric(w, "freshet_pull_requests_total"), requests);
  EXPECT_EQ(Metric(w, "freshet_keys_pushed_total"), 61);
  EXPECT_EQ(Metric(w, "freshet_keys_pulled_total"), 61);
  EXPECT_EQ(Metric(w, "freshet_requests_in_flight"), 0);
  // The servers saw every key once per call, in requests of <= 7 keys.
  for (int s = 0; s < 2; ++s) {
    EXPECT_EQ(shards_[s]->Stats().keys_pushed, per_server[s]);
    EXPECT_EQ(shards_[s]->Stats().keys_pulled, per_server[s]);
    EXPECT_EQ(shards_[s]->Stats().push_requests, (per_server[s] + 6) / 7);
  }
}

TEST_F(ClientTest, PullGathersInCallerOrderAcrossShards) {
  Start(3, 1, -1);
  std::vector<uint64_t> keys;
  for (uint64_t k = 0; k < 200; ++k) keys.push_back(k * 1000003);
  // Give each key a distinct value: push -key/1024 on coordinate 0.
  std::vector<float> g(keys.size() * 3, 0.0f);
  for (size_t i = 0; i < keys.size(); ++i) g[i * 3] = -static_cast<float>(i) / 1024;
  ASSERT_TRUE(clients_[0]->Push(0, keys.data(), keys.size(), g.data()).get().ok());
  std::vector<uint64_t> shuffled(keys.rbegin(), keys.rend());
  std::vector<float> out = Pull(0, 0, shuffled);
  for (size_t i = 0; i < shuffled.size(); ++i) {
    const size_t orig = keys.size() - 1 - i;
    EXPECT_EQ(out[i * 3], 0.5f + static_cast<float>(orig) / 1024) << i;
    EXPECT_EQ(out[i * 3 + 1], 0.5f);
  }
  // Every server got some keys; together exactly 200 rows.
  int64_t rows = 0;
  for (auto& s : shards_) {
    EXPECT_GT(s->Stats().rows, 0);
    rows += s->Stats().rows;
  }
  EXPECT_EQ(rows, 200);
}

TEST_F(ClientTest, DuplicateKeysAreDeduplicatedAndGradientsSummed) {
  Start(2, 1, -1);
  const std::vector<uint64_t> keys = {7, 9, 7, 7};
  const std::vector<float> g = {1, 0, 0, 0, 1, 0, 0.25f, 0, 0, 0.125f, 0, 0};
  ASSERT_TRUE(clients_[0]->Push(0, keys.data(), keys.size(), g.data()).get().ok());
  std::vector<float> out = Pull(0, 0, keys);
  EXPECT_EQ(out[0], 0.5f - 1.375f);
  EXPECT_EQ(out[3], 0.5f);  // key 9
  EXPECT_EQ(out[4], 0.5f - 1.0f);
  EXPECT_EQ(out[6], out[0]);
  EXPECT_EQ(out[9], out[0]);
  // One push request per server at most, each key pushed once.
  int64_t pushed = 0;
  for (auto& s : shards_) pushed += s->Stats().keys_pushed;
  EXPECT_EQ(pushed, 2);
}

// Push writes each key's summed gradient straight into its request: the
// servers must receive, bit for bit, what SumDuplicateRows computes (sums in
// input order), for keys spread over 3 servers, cut into requests of 5 keys,
// with duplicates interleaved across the call.
TEST_F(ClientTest, PushSumsDuplicatesIntoTheRequestsBitForBit) {
  max_keys_per_request_ = 5;
  Start(3, 1, -1, /*max_inflight=*/4);
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<float> val(-1.0f, 1.0f);
  std::vector<uint64_t> keys(300);
  for (uint64_t& k : keys) k = 1 + rng() % 97;  // many duplicates
  std::vector<float> g(keys.size() * 3);
  for (float& x : g) x = val(rng);
  ASSERT_TRUE(clients_[0]->Push(0, keys.data(), keys.size(), g.data()).get().ok());
  const Dedup d = Deduplicate(keys.data(), keys.size());
  ASSERT_TRUE(d.has_dups);
  std::vector<float> summed;
  SumDuplicateRows(d, g.data(), 3, &summed);
  const std::vector<float> got = Pull(0, 0, d.uniq);
  for (size_t u = 0; u < d.uniq.size(); ++u) {
    for (int j = 0; j < 3; ++j) {
      ASSERT_EQ(got[u * 3 + j], 0.5f - summed[u * 3 + j]) << "key " << d.uniq[u];  // SGD, lr 1
    }
  }
  int64_t pushed = 0;
  for (auto& s : shards_) pushed += s->Stats().keys_pushed;
  EXPECT_EQ(pushed, static_cast<int64_t>(d.uniq.size()));
}

TEST_F(ClientTest, ErrorsComeBackAsStatus) {
  Start(1, 1, -1);
  float out[3];
  const uint64_t k = 1;
  EXPECT_EQ(clients_[0]->Pull(5, &k, 1, out).get().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(clients_[0]->Pull(0, &k, 0, out).get().ok());  // empty is fine
  auto stats = clients_[0]->ServerStatsAll();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->size(), 1u);
}

TEST_F(ClientTest, ManyConcurrentRequestsWithOneSlot) {
  Start(2, 1, -1, /*max_inflight=*/1);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      std::vector<uint64_t> keys(64);
      for (int i = 0; i < 64; ++i) keys[i] = t * 64 + i;
      std::vector<float> g(64 * 2, 0.25f), out(64 * 2);
      for (int r = 0; r < 20; ++r) {
        EXPECT_TRUE(clients_[0]->Push(1, keys.data(), 64, g.data()).get().ok());
        EXPECT_TRUE(clients_[0]->Pull(1, keys.data(), 64, out.data()).get().ok());
      }
    });
  }
  for (auto& t : ts) t.join();
  std::vector<uint64_t> keys(256);
  for (int i = 0; i < 256; ++i) keys[i] = i;
  std::vector<float> out = Pull(0, 1, keys);
  for (float v : out) EXPECT_EQ(v, -0.25f * 20);
}

TEST_F(ClientTest, StalenessZeroWaitsForTheSlowestWorker) {
  Start(2, 2, 0);
  const uint64_t k = 42;
  const float g[3] = {1, 1, 1};
  ASSERT_TRUE(clients_[1]->Push(0, &k, 1, g).get().ok());
  ASSERT_TRUE(clients_[0]->Clock().ok());  // worker 0 enters step 1
  float out[3];
  auto fut = clients_[0]->Pull(0, &k, 1, out);
  // Worker 1 has not finished step 0: the pull must wait.
  EXPECT_EQ(fut.wait_for(Millis(150)), std::future_status::timeout);
  ASSERT_TRUE(clients_[1]->Clock().ok());
  ASSERT_EQ(fut.wait_for(Millis(2000)), std::future_status::ready);
  ASSERT_TRUE(fut.get().ok());
  EXPECT_EQ(out[0], 0.5f - 1.0f);  // sees worker 1's step-0 push
}

TEST_F(ClientTest, StalenessOneAllowsOneStepAhead) {
  Start(1, 2, 1, 8, Millis(5000), /*metrics=*/true);
  const uint64_t k = 3;
  float out[3];
  ASSERT_TRUE(clients_[0]->Clock().ok());  // step 1: may run ahead of step 0 by 1
  EXPECT_TRUE(clients_[0]->Pull(0, &k, 1, out).get().ok());
  EXPECT_EQ(Metric(0, "freshet_staleness_wait_seconds_count"), 0);
  EXPECT_EQ(Metric(0, "freshet_worker_clock_spread"), 1);
  ASSERT_TRUE(clients_[0]->Clock().ok());  // step 2: needs worker 1 at step >= 1
  auto fut = clients_[0]->Pull(0, &k, 1, out);
  EXPECT_EQ(fut.wait_for(Millis(150)), std::future_status::timeout);
  EXPECT_EQ(Metric(0, "freshet_staleness_waiting_pulls"), 1);
  ASSERT_TRUE(clients_[1]->Clock().ok());
  EXPECT_TRUE(fut.get().ok());
  // The server released the pull after it waited at least the 150 ms above.
  EXPECT_EQ(Metric(0, "freshet_staleness_wait_seconds_count"), 1);
  EXPECT_EQ(Metric(0, "freshet_staleness_waiting_pulls"), 0);
  EXPECT_GE(Metric(0, "freshet_staleness_wait_p50_seconds"), 0.15 * 0.8);
}

TEST_F(ClientTest, FinishedWorkerNoLongerHoldsOthersBack) {
  Start(1, 2, 0);
  ASSERT_TRUE(clients_[1]->Shutdown().ok());
  const uint64_t k = 3;
  float out[3];
  for (int s = 0; s < 3; ++s) {
    ASSERT_TRUE(clients_[0]->Clock().ok());
    EXPECT_TRUE(clients_[0]->Pull(0, &k, 1, out).get().ok());
  }
  clients_.pop_back();  // already shut down
}

// SaveTables then LoadTables (early stopping's best-pass restore): every
// server's rows are back as saved, rows created since are gone; a directory
// without the files fails naming the server.
TEST_F(ClientTest, LoadTablesPutsTheSavedRowsBack) {
  Start(2, 1, -1);
  std::string dir = ::testing::TempDir() + "freshet-load-XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  std::vector<uint64_t> keys;
  for (uint64_t k = 0; k < 50; ++k) keys.push_back(k * 7919);
  std::vector<float> g(keys.size() * 3, -1.0f);
  ASSERT_TRUE(clients_[0]->Push(0, keys.data(), keys.size(), g.data()).get().ok());
  ASSERT_TRUE(clients_[0]->SaveTables(dir).ok());
  const std::vector<float> saved = Pull(0, 0, keys);
  int64_t rows_saved = 0;
  for (auto& s : shards_) rows_saved += s->Stats().rows;
  // Later training: the rows move, new rows appear.
  ASSERT_TRUE(clients_[0]->Push(0, keys.data(), keys.size(), g.data()).get().ok());
  std::vector<uint64_t> fresh = {11, 12, 13};
  std::vector<float> gf(fresh.size() * 3, 2.0f);
  ASSERT_TRUE(clients_[0]->Push(0, fresh.data(), fresh.size(), gf.data()).get().ok());
  EXPECT_NE(Pull(0, 0, keys), saved);
  ASSERT_TRUE(clients_[0]->LoadTables(dir).ok());
  int64_t rows = 0;
  for (auto& s : shards_) rows += s->Stats().rows;
  EXPECT_EQ(rows, rows_saved);
  EXPECT_EQ(Pull(0, 0, keys), saved);
  // The fresh keys are new rows again, at the initializer's value.
  EXPECT_EQ(Pull(0, 0, fresh), std::vector<float>(fresh.size() * 3, 0.5f));
  Status missing = clients_[0]->LoadTables(dir + "/nothing-here");
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("server"), std::string::npos) << missing;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace freshet
