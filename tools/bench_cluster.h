// What the MPI benchmarks (freshet_ps_bench, freshet_gpu_bench) share: start
// MPI, check the cluster config against mpirun's rank count, and run each
// rank's role: servers serve the bench's tables until the workers shut them
// down; every worker runs the benchmark's worker function.
//
// Thread safety: call RunBenchCluster once, from main's thread.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/proto/table.pb.h"
#include "worker/ps_client.h"

namespace freshet {

// The benchmark proper, run by every worker rank. `workers` is a
// communicator of the worker ranks only. Returns the rank's exit code.
using BenchWorkerFn =
    std::function<int(PsClient* client, const ClusterLayout& layout, MPI_Comm workers)>;

// Initialises MPI (MPI_THREAD_MULTIPLE), loads `cluster_config` and fails
// (message on rank 0, exit code 1) when it defines another number of ranks
// than mpirun started. Then servers serve `tables` and workers run `worker`
// with a PsClient for tables of `dims`. Returns this rank's exit code: 0, 1
// (setup), 2 (a server or client failed) or what `worker` returned.
// `transport_only`: servers answer without touching their tables
// (ParameterShard::Create's transport_only).
int RunBenchCluster(int* argc, char*** argv, const std::string& cluster_config,
                    const proto::TablesConfig& tables, const std::vector<int>& dims,
                    const BenchWorkerFn& worker, bool transport_only = false);

// "1,2,3" -> {1, 2, 3}; empty items are skipped.
std::vector<int64_t> ParseList(const std::string& s);

}  // namespace freshet
