// freshet_ranks: prints how many MPI ranks a cluster config needs (for
// launch scripts: mpirun -np $(freshet_ranks --cluster_config=F)), or with
// --table the rank -> role table. Exits 1 with the config error otherwise.
#include <cstdio>

#include <gflags/gflags.h>

#include "common/config.h"

DEFINE_string(cluster_config, "cluster-configs/local.pbtxt", "cluster config file");
DEFINE_bool(table, false, "print the rank -> role table instead of the count");

int main(int argc, char** argv) {
  gflags::SetUsageMessage("prints the number of ranks a cluster config needs");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  auto cfg = freshet::LoadClusterConfig(FLAGS_cluster_config);
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", cfg.status().ToString().c_str());
    return 1;
  }
  freshet::ClusterLayout layout(*cfg);
  if (FLAGS_table) {
    std::printf("%s", layout.ToTable().c_str());
  } else {
    std::printf("%d\n", layout.world_size());
  }
  return 0;
}
