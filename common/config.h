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

// Reads `path` and parses it as text-format ClusterConfig, then validates it.
StatusOr<proto::ClusterConfig> LoadClusterConfig(const std::string& path);
// Parses text-format config from a string; `source` names it in errors.
StatusOr<proto::ClusterConfig> ParseClusterConfig(const std::string& text,
                                                  const std::string& source);
// Checks ranges and fills defaults (the documented "0 -> default" values).
Status ValidateClusterConfig(proto::ClusterConfig* cfg, const std::string& source);

StatusOr<proto::TablesConfig> LoadTablesConfig(const std::string& path);
StatusOr<proto::TablesConfig> ParseTablesConfig(const std::string& text,
                                                const std::string& source);
// Checks one table and fills optimizer defaults. `where` prefixes errors,
// e.g. "tables.pbtxt: tables[2]".
Status ValidateTableConfig(proto::TableConfig* t, const std::string& where);
Status ValidateTablesConfig(proto::TablesConfig* cfg, const std::string& source);

// Which rank plays which role. Ranks are assigned to role groups in the order
// the config lists them.
class ClusterLayout {
 public:
  // REQUIRES: cfg passed ValidateClusterConfig.
  explicit ClusterLayout(const proto::ClusterConfig& cfg);

  int world_size() const { return static_cast<int>(roles_.size()); }
  int num_servers() const { return static_cast<int>(servers_.size()); }
  int num_workers() const { return static_cast<int>(workers_.size()); }
  int num_exporters() const { return static_cast<int>(exporters_.size()); }

  proto::Role RoleOf(int rank) const { return roles_.at(rank); }
  // Index of `rank` among the ranks of its role (server 0, server 1, ...).
  int IndexInRole(int rank) const { return index_in_role_.at(rank); }
  int ServerRank(int server_index) const { return servers_.at(server_index); }
  int WorkerRank(int worker_index) const { return workers_.at(worker_index); }
  int ExporterRank(int i) const { return exporters_.at(i); }
  // "server 1 (rank 1)"; for error messages about peers.
  std::string Describe(int rank) const;
  // A table of rank -> role, one line per rank, for start-up logs.
  std::string ToTable() const;

 private:
  std::vector<proto::Role> roles_;
  std::vector<int> index_in_role_;
  std::vector<int> servers_, workers_, exporters_;
};

const char* RoleName(proto::Role role);

}  // namespace freshet
