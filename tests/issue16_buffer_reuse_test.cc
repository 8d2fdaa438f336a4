// Issue 16 regression, in one process: pulls of dim 64 x 65,536 keys took
// 90-108 ms when a dim-16 table had been pulled and pushed before (35 ms
// with the dim-64 table alone). Cause: every 16 MiB message buffer (the
// server's answer, the worker's receive buffer) was a fresh mapping: glibc
// mmaps blocks above its mmap threshold and raises that threshold only to
// the largest block freed so far, so which sizes ran first decided; each
// fresh mapping costs one page fault per 4 KiB (4,096 per message) plus the
// zero fill of std::vector::resize. Message buffers are now recycled by the
// transport (common/buffer_pool.h) and MpiSession fixes malloc's thresholds.
//
// The multi-process reproduction is the ctest ps_bench_page_faults (MPI,
// 1M-row tables: it fails without the fix). In one process glibc happens to
// reuse the blocks, so this test checks the other half: replaying the
// issue's history through a ServerNode and a PsClient, the big pulls take
// recycled buffers, page faults stay far below one fresh 16 MiB buffer per
// pull, and the pulled rows are the table's (a recycled buffer's old bytes
// never leak through).
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "common/buffer_pool.h"
#include "common/config.h"
#include "common/sharding.h"
#include "common/transport.h"
#include "server/parameter_shard.h"
#include "server/server_node.h"
#include "worker/ps_client.h"

namespace freshet {
namespace {

int64_t MinorFaults() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

proto::TablesConfig Tables() {
  proto::TablesConfig cfg;
  for (int dim : {16, 64}) {
    auto* t = cfg.add_tables();
    t->set_name("emb" + std::to_string(dim));
    t->set_dim(dim);
    t->mutable_initializer()->set_kind(proto::Initializer::UNIFORM);
    t->mutable_initializer()->set_scale(0.01f);
    t->mutable_optimizer()->mutable_adagrad()->set_learning_rate(0.05f);
  }
  EXPECT_TRUE(ValidateTablesConfig(&cfg, "test").ok());
  return cfg;
}

TEST(Issue16Test, BigPullsAfterSmallerMessagesReuseTheirBuffers) {
  // As every freshet binary does (MpiSession::Init): the client's per-call
  // dedup and gather blocks (hundreds of KiB) come from malloc's heap, not
  // fresh mappings, so what is counted below is the message buffers.
  TuneMallocForLargeBlocks();
  proto::ClusterConfig cfg;
  cfg.add_roles()->set_role(proto::SERVER);
  cfg.mutable_roles(0)->set_count(1);
  cfg.add_roles()->set_role(proto::WORKER);
  cfg.mutable_roles(1)->set_count(1);
  cfg.mutable_server()->set_partitions(8);
  ASSERT_TRUE(ValidateClusterConfig(&cfg, "test").ok());
  const ClusterLayout layout(cfg);
  InProcessHub hub(2);
  auto shard = std::move(ParameterShard::Create(Tables(), 8)).value();
  ServerNode node(hub.endpoint(0), layout, shard.get(), 1, Millis(60000));
  std::thread server([&node] { EXPECT_TRUE(node.Run().ok()); });
  PsClientOptions opt;
  opt.request_timeout = Millis(60000);
  auto client = std::move(PsClient::Create(hub.endpoint(1), layout, {16, 64}, opt)).value();

  constexpr size_t kKeys = 65536;
  std::vector<uint64_t> keys(kKeys);
  for (size_t i = 0; i < kKeys; ++i) keys[i] = MixKey(i + 1);
  std::vector<float> rows16(kKeys * 16), grads16(kKeys * 16, 1e-3f), rows64(kKeys * 64);
  // The history of the issue: dim-16 pulls and pushes of the same keys first.
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(client->Pull(0, keys.data(), kKeys, rows16.data()).get().ok());
    ASSERT_TRUE(client->Push(0, keys.data(), kKeys, grads16.data()).get().ok());
  }
  // Two dim-64 pulls to warm up (the first ones may allocate), then count.
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(client->Pull(1, keys.data(), kKeys, rows64.data()).get().ok());
  }
  constexpr int kPulls = 6;
  const int64_t before = MinorFaults();
  for (int i = 0; i < kPulls; ++i) {
    std::fill(rows64.begin(), rows64.end(), -1.0f);
    ASSERT_TRUE(client->Pull(1, keys.data(), kKeys, rows64.data()).get().ok());
  }
  const double faults_per_pull = static_cast<double>(MinorFaults() - before) / kPulls;
  std::printf("minor page faults per 16 MiB pull: %.1f\n", faults_per_pull);
  // A 16 MiB buffer mapped afresh is 4,096 faults; reused, next to none.
  EXPECT_LT(faults_per_pull, 256) << "16 MiB pull answers are being mapped afresh per request";
  const BufferPool::Stats s = hub.endpoint(0)->buffer_stats();
  EXPECT_GT(s.reused, 0);

  // The rows pulled are the table's.
  std::vector<float> want(64);
  for (size_t i = 0; i < kKeys; i += 997) {
    ASSERT_TRUE(shard->table(1)->Lookup(keys[i], want.data()));
    for (int d = 0; d < 64; ++d) ASSERT_EQ(rows64[i * 64 + d], want[d]) << "key " << i;
  }
  ASSERT_TRUE(client->Shutdown().ok());
  server.join();
}

}  // namespace
}  // namespace freshet
