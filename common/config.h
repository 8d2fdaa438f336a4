// Loading and validating configuration files (protobuf text format), and the
// rank layout a cluster config defines.
//
// Every error names the file and, where it applies, the line or the field:
//   cluster-configs/x.pbtxt:7:3: Expected integer, got: abc
//   cluster-configs/x.pbtxt: roles[1].count: must be > 0, got 0
//
// Thread safety: free functions are thread-safe; ClusterLayout is immutable.
#pragma once

#include <string>
#include <vector>

#include "common/proto/cluster.pb.h"
#include "common/proto/table.pb.h"
#include "common/status.h"

namespace freshet {

// Reads a whole config file; NotFound naming the path.
StatusOr<std::string> ReadConfigFile(const std::string& path);
// Parses protobuf text format into *msg; InvalidArgument with
// "source:line:column: message" for every syntax error or unknown field.
Status ParseTextConfig(const std::string& text, const std::string& source,
                       google::protobuf::Message* msg);

// Reads `path` and parses it as text-format ClusterConfig, then validates it.
StatusOr<proto::ClusterConfig> LoadClusterConfig(const std::string& path);
// Parses text-format config from a string; `source` names it in errors.
StatusOr<proto::ClusterConfig> ParseClusterConfig(const std::string& text,
                                                  const std::string& source);
// Checks ranges and fills defaults (the documented "0 -> default" values).
Status ValidateClusterConfig(proto::ClusterConfig* cfg, const std::string& source);

StatusOr<proto::TablesConfig> LoadTablesConfig(const std::string& path);
StatusOr<proto::TablesConfig> ParseTablesConfig(const std::string& text, const std::string& source);
// Embedding dims a table may have: 1..kMaxTableDim.
inline constexpr uint32_t kMaxTableDim = 4096;
// transport.max_keys_per_request when the config leaves it 0
// (docs/BENCHMARKS.md "Parameter-server performance": the split
// one-call-at-a-time A/B).
inline constexpr int32_t kDefaultMaxKeysPerRequest = 8192;

// Checks one table and fills optimizer defaults. `where` prefixes errors,
// e.g. "tables.pbtxt: tables[2]".
Status ValidateTableConfig(proto::TableConfig* t, const std::string& where);
Status ValidateTablesConfig(proto::TablesConfig* cfg, const std::string& source);

// Expands a SLURM-style compressed host list into host names, in order:
//   "node[01-03,07],gpu-a[1-2]x,login" -> node01 node02 node03 node07
//   gpu-a1x gpu-a2x login
// Zero padding follows the width of the range's first bound; several bracket
// groups in one name expand as a product ("r[1-2]n[1-2]" -> r1n1 r1n2 r2n1
// r2n2). Entries are separated by commas outside brackets; empty entries are
// skipped. Errors name the list and the problem (unbalanced bracket, bad
// range, more than kMaxNodeListHosts names or a name over 255 characters: a
// mistyped or hostile list such
// as "r[1-99999]n[1-99999]" must not allocate billions of names).
inline constexpr size_t kMaxNodeListHosts = 100000;
StatusOr<std::vector<std::string>> ExpandNodeList(const std::string& list);

// Where one rank runs, as the cluster config's node groups place it.
struct RankPlacement {
  int node_group = 0;     // index into ClusterLayout::node_groups()
  int node = 0;           // global node index (across groups, in config order)
  int node_in_group = 0;  // node index within its group
  int local_rank = 0;     // index among the ranks on its node, in rank order
};

// A node group of the layout (the implicit one when the config has none).
struct NodeGroupInfo {
  std::string name;
  int count = 1;
  int ranks_per_node = 1;
  int gpus_per_node = 0;
  int cpus_per_node = 0;  // 0: unknown
  int first_node = 0;     // global index of the group's node 0
  int ranks = 0;          // ranks placed on the group
};

// What the launcher (mpirun or srun) says about the calling process.
struct LaunchEnv {
  int rank = -1;                      // OMPI_COMM_WORLD_RANK or SLURM_PROCID; -1: unknown
  int local_rank = -1;                // OMPI_COMM_WORLD_LOCAL_RANK or SLURM_LOCALID
  std::string host;                   // short host name
  std::vector<std::string> nodelist;  // expanded SLURM_JOB_NODELIST, if set
  std::string source;                 // "mpirun", "slurm" or "none"
};
// Reads the launcher's environment variables (Open MPI first, then SLURM)
// and the host name. Errors name the variable that does not parse.
StatusOr<LaunchEnv> ReadLaunchEnv();

// Which rank plays which role, and on which node. Ranks are assigned to role
// groups in the order the config lists them; each role group runs on its
// node group, whose ranks are placed on its nodes PACK-ed or SPREAD (see
// cluster.proto). Without node groups every rank is on one implicit node
// "local" (ranks_per_node = world size).
class ClusterLayout {
 public:
  // REQUIRES: cfg passed ValidateClusterConfig.
  explicit ClusterLayout(const proto::ClusterConfig& cfg);

  int world_size() const { return static_cast<int>(roles_.size()); }
  int num_servers() const { return static_cast<int>(servers_.size()); }
  int num_workers() const { return static_cast<int>(workers_.size()); }
  int num_exporters() const { return static_cast<int>(exporters_.size()); }
  // Nodes over all node groups (the hosts a launch needs).
  int num_nodes() const { return num_nodes_; }

  proto::Role RoleOf(int rank) const { return roles_.at(rank); }
  // Index of `rank` among the ranks of its role (server 0, server 1, ...).
  int IndexInRole(int rank) const { return index_in_role_.at(rank); }
  int ServerRank(int server_index) const { return servers_.at(server_index); }
  int WorkerRank(int worker_index) const { return workers_.at(worker_index); }
  int ExporterRank(int i) const { return exporters_.at(i); }
  const RankPlacement& PlacementOf(int rank) const { return placement_.at(rank); }
  const std::vector<NodeGroupInfo>& node_groups() const { return groups_; }
  const NodeGroupInfo& NodeGroupOf(int rank) const {
    return groups_.at(placement_.at(rank).node_group);
  }
  // Ranks on global node `node`, ascending.
  std::vector<int> RanksOnNode(int node) const;
  // "server 1 (rank 1)"; for error messages about peers.
  std::string Describe(int rank) const;
  // A table of rank -> role, index, node group, node (within the group) and
  // local rank, one line per rank, for start-up logs.
  std::string ToTable() const;

  // An Open MPI rankfile ("rank 0=hostA slot=0", one line per rank) putting
  // node i on hosts[i]. Slots: with cpus_per_node known (the group's, or
  // `cpus_per_node` > 0 overriding it) each rank gets its share of the
  // node's cores, wrapping round when ranks outnumber cores (run mpirun with
  // --oversubscribe then); otherwise slot = local rank.
  // Errors when there are fewer hosts than nodes or a host repeats.
  StatusOr<std::string> Rankfile(const std::vector<std::string>& hosts,
                                 int cpus_per_node = 0) const;
  // A hostfile ("hostA slots=N", one line per node with N its ranks).
  StatusOr<std::string> Hostfile(const std::vector<std::string>& hosts) const;

  // Checks that the launcher started the calling process where this layout
  // puts its rank: the rank is inside the layout, the local rank matches,
  // and, when SLURM_JOB_NODELIST is known and the layout has as many nodes,
  // the host is the rank's node. Errors name the rank and what differs.
  Status CheckLaunch(const LaunchEnv& env) const;

 private:
  std::vector<proto::Role> roles_;
  std::vector<int> index_in_role_;
  std::vector<int> servers_, workers_, exporters_;
  std::vector<NodeGroupInfo> groups_;
  std::vector<RankPlacement> placement_;
  int num_nodes_ = 0;
};

const char* RoleName(proto::Role role);

}  // namespace freshet
