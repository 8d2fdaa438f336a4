// freshet_ranks: what a cluster config asks of a launcher.
//   freshet_ranks --cluster_config=F              number of MPI ranks
//                                                 (mpirun -np $(freshet_ranks ...))
//   --nodes                                       number of nodes (hosts) it needs
//   --table                                       rank -> role, index, node group,
//                                                 node, local rank
//   --rankfile --hosts=LIST                       Open MPI rankfile: node i on the
//                                                 i-th host ("rank 0=a slot=0")
//   --hostfile --hosts=LIST                       hostfile ("a slots=2")
//   --slurm                                       shell variables for an sbatch
//                                                 script (see launch/slurm/submit.sh)
//   --check                                       checks this process's launcher
//                                                 environment against the layout
// LIST is a host list in SLURM's compressed syntax ("a,b,node[01-04,07]");
// without --hosts, SLURM_JOB_NODELIST is used. --expand prints LIST expanded,
// one host a line. Exits 1 with the error (naming the file and field).
#include <gflags/gflags.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/config.h"

DEFINE_string(cluster_config, "cluster-configs/local.pbtxt", "cluster config file");
DEFINE_bool(table, false, "print the rank table instead of the count");
DEFINE_bool(nodes, false, "print the number of nodes the config needs");
DEFINE_bool(rankfile, false, "print an Open MPI rankfile for --hosts");
DEFINE_bool(hostfile, false, "print an mpirun hostfile for --hosts");
DEFINE_bool(slurm, false, "print shell variables describing the sbatch request");
DEFINE_bool(check, false, "check the launcher environment of this process against the layout");
DEFINE_bool(expand, false, "print the expanded --hosts list, one host a line");
DEFINE_string(hosts, "", "hosts, SLURM compressed syntax; default $SLURM_JOB_NODELIST");
DEFINE_int32(cpus_per_node, 0, "cores per node for rankfile slots (0: the config's)");

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "freshet_ranks: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "prints what a cluster config asks of a launcher (ranks, nodes, rankfile)");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  std::string host_list = FLAGS_hosts;
  if (host_list.empty()) {
    if (const char* nl = std::getenv("SLURM_JOB_NODELIST")) host_list = nl;
  }
  if (FLAGS_expand) {
    auto hosts = freshet::ExpandNodeList(host_list);
    if (!hosts.ok()) return Fail(hosts.status().message());
    for (const auto& h : *hosts) std::printf("%s\n", h.c_str());
    return 0;
  }
  auto cfg = freshet::LoadClusterConfig(FLAGS_cluster_config);
  if (!cfg.ok()) return Fail(cfg.status().ToString());
  freshet::ClusterLayout layout(*cfg);
  if (FLAGS_table) {
    std::printf("%s", layout.ToTable().c_str());
  } else if (FLAGS_nodes) {
    std::printf("%d\n", layout.num_nodes());
  } else if (FLAGS_rankfile || FLAGS_hostfile) {
    if (host_list.empty()) return Fail("--rankfile/--hostfile need --hosts or SLURM_JOB_NODELIST");
    auto hosts = freshet::ExpandNodeList(host_list);
    if (!hosts.ok()) return Fail(hosts.status().message());
    auto text =
        FLAGS_rankfile ? layout.Rankfile(*hosts, FLAGS_cpus_per_node) : layout.Hostfile(*hosts);
    if (!text.ok()) return Fail(FLAGS_cluster_config + ": " + text.status().message());
    std::printf("%s", text->c_str());
  } else if (FLAGS_slurm) {
    // One line per node group: name count tasks_per_node gpus_per_node, where
    // tasks_per_node is min(ranks_per_node, cpus_per_node) when cores are
    // known (ranks beyond the cores are oversubscribed by mpirun).
    std::printf("FRESHET_RANKS=%d\nFRESHET_NODES=%d\nFRESHET_GROUPS=%zu\n", layout.world_size(),
                layout.num_nodes(), layout.node_groups().size());
    int i = 0;
    for (const auto& g : layout.node_groups()) {
      const int tasks =
          g.cpus_per_node > 0 ? std::min(g.ranks_per_node, g.cpus_per_node) : g.ranks_per_node;
      std::printf("FRESHET_GROUP_%d='%s %d %d %d %d'\n", i++, g.name.c_str(), g.count, tasks,
                  g.gpus_per_node, g.cpus_per_node);
    }
  } else if (FLAGS_check) {
    auto env = freshet::ReadLaunchEnv();
    if (!env.ok()) return Fail(env.status().message());
    freshet::Status st = layout.CheckLaunch(*env);
    if (!st.ok()) return Fail(FLAGS_cluster_config + ": " + st.message());
    const auto& p = layout.PlacementOf(env->rank);
    std::printf("%s on node %s[%d] (host %s), local rank %d: as the config places it\n",
                layout.Describe(env->rank).c_str(), layout.NodeGroupOf(env->rank).name.c_str(),
                p.node_in_group, env->host.c_str(), p.local_rank);
  } else {
    std::printf("%d\n", layout.world_size());
  }
  return 0;
}
