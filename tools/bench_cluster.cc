#include "tools/bench_cluster.h"

#include <glog/logging.h>

#include <cstdio>
#include <memory>
#include <sstream>

#include "common/logging.h"
#include "common/mpi_transport.h"
#include "common/mpi_util.h"
#include "server/parameter_shard.h"
#include "server/server_node.h"

namespace freshet {

int RunBenchCluster(int* argc, char*** argv, const std::string& cluster_config,
                    const proto::TablesConfig& tables, const std::vector<int>& dims,
                    const BenchWorkerFn& worker, bool transport_only) {
  auto session_or = MpiSession::Init(argc, argv);
  if (!session_or.ok()) {
    std::fprintf(stderr, "%s\n", session_or.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<MpiSession> session(*session_or);
  InitLogging((*argv)[0]);
  auto cfg = LoadClusterConfig(cluster_config);
  if (!cfg.ok()) {
    if (session->rank() == 0) std::fprintf(stderr, "%s\n", cfg.status().ToString().c_str());
    return 1;
  }
  ClusterLayout layout(*cfg);
  if (layout.world_size() != session->size()) {
    if (session->rank() == 0) {
      std::fprintf(stderr, "%s defines %d ranks but mpirun started %d (use mpirun -np %d)\n",
                   cluster_config.c_str(), layout.world_size(), session->size(),
                   layout.world_size());
    }
    return 1;
  }
  const int rank = session->rank();
  const proto::Role role = layout.RoleOf(rank);
  MPI_Comm workers;
  MPI_Comm_split(MPI_COMM_WORLD, role == proto::WORKER ? 1 : 0, rank, &workers);
  auto transport_or = MpiTransport::Create(MPI_COMM_WORLD);
  if (!transport_or.ok()) {
    std::fprintf(stderr, "%s\n", transport_or.status().ToString().c_str());
    return 1;
  }
  auto transport = std::move(transport_or).value();
  const Millis timeout(cfg->transport().request_timeout_ms());
  int rc = 0;
  if (role == proto::SERVER) {
    auto shard = ParameterShard::Create(tables, cfg->server().partitions(), transport_only);
    if (!shard.ok()) {
      LOG(ERROR) << shard.status();
      rc = 1;
    } else {
      (*shard)->SetRequestThreads(cfg->server().request_threads());
      ServerNode node(transport.get(), layout, shard->get(), cfg->server().handler_threads(),
                      timeout);
      Status st = node.Run();
      if (!st.ok()) {
        LOG(ERROR) << st;
        rc = 2;
      }
    }
  } else if (role == proto::WORKER) {
    PsClientOptions opt;
    opt.request_timeout = timeout;
    opt.max_inflight = cfg->transport().max_inflight_requests();
    opt.max_keys_per_request = cfg->transport().max_keys_per_request();
    auto client = PsClient::Create(transport.get(), layout, dims, opt);
    if (!client.ok()) {
      LOG(ERROR) << client.status();
      rc = 1;
    } else {
      rc = worker(client->get(), layout, workers);
      Status st = (*client)->Shutdown();
      if (!st.ok()) {
        LOG(ERROR) << st;
        if (rc == 0) rc = 2;
      }
    }
  }
  transport->Shutdown();
  MPI_Comm_free(&workers);
  return rc;
}

std::vector<int64_t> ParseList(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(std::stoll(item));
  }
  return out;
}

}  // namespace freshet
