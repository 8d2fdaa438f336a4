#include "common/config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

namespace freshet {
namespace {

// Collects text-format parse errors as "source:line:col: message".
class ErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  explicit ErrorCollector(std::string source) : source_(std::move(source)) {}
  void AddError(int line, int column, const std::string& message) override {
    if (!errors_.empty()) errors_ += "\n";
    // Tokenizer lines and columns are 0-based.
    errors_ += source_ + ":" + std::to_string(line + 1) + ":" + std::to_string(column + 1) + ": " +
               message;
  }
  void AddWarning(int, int, const std::string&) override {}
  const std::string& errors() const { return errors_; }

 private:
  std::string source_;
  std::string errors_;
};

template <typename Msg>
StatusOr<Msg> ParseText(const std::string& text, const std::string& source) {
  Msg msg;
  FRESHET_RETURN_IF_ERROR(ParseTextConfig(text, source, &msg));
  return msg;
}

StatusOr<std::string> ReadFile(const std::string& path) { return ReadConfigFile(path); }

Status FieldError(const std::string& where, const std::string& field, const std::string& problem) {
  return InvalidArgument(where + ": " + field + ": " + problem);
}

}  // namespace

StatusOr<std::string> ReadConfigFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open config file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status ParseTextConfig(const std::string& text, const std::string& source,
                       google::protobuf::Message* msg) {
  google::protobuf::TextFormat::Parser parser;
  ErrorCollector errors(source);
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, msg)) {
    return InvalidArgument(errors.errors().empty() ? source + ": does not parse" : errors.errors());
  }
  return Status::OK();
}

const char* RoleName(proto::Role role) {
  switch (role) {
    case proto::SERVER:
      return "server";
    case proto::WORKER:
      return "worker";
    case proto::EXPORTER:
      return "exporter";
    default:
      return "unspecified";
  }
}

StatusOr<proto::ClusterConfig> ParseClusterConfig(const std::string& text,
                                                  const std::string& source) {
  FRESHET_ASSIGN_OR_RETURN(proto::ClusterConfig cfg, ParseText<proto::ClusterConfig>(text, source));
  FRESHET_RETURN_IF_ERROR(ValidateClusterConfig(&cfg, source));
  return cfg;
}

StatusOr<proto::ClusterConfig> LoadClusterConfig(const std::string& path) {
  FRESHET_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseClusterConfig(text, path);
}

Status ValidateClusterConfig(proto::ClusterConfig* cfg, const std::string& source) {
  if (cfg->roles_size() == 0) {
    return FieldError(source, "roles", "at least one role group is required");
  }
  int servers = 0, workers = 0;
  for (int i = 0; i < cfg->roles_size(); ++i) {
    const auto& g = cfg->roles(i);
    const std::string f = "roles[" + std::to_string(i) + "]";
    if (g.role() == proto::ROLE_UNSPECIFIED) {
      return FieldError(source, f + ".role", "must be SERVER, WORKER or EXPORTER");
    }
    if (g.count() <= 0) {
      return FieldError(source, f + ".count", "must be > 0, got " + std::to_string(g.count()));
    }
    if (g.role() == proto::SERVER) servers += g.count();
    if (g.role() == proto::WORKER) workers += g.count();
  }
  if (servers == 0) return FieldError(source, "roles", "needs at least one SERVER rank");
  if (workers == 0) return FieldError(source, "roles", "needs at least one WORKER rank");

  // Node groups and which role groups run on them.
  static const std::regex kNodeName("[A-Za-z0-9_-]+");
  std::map<std::string, int> group_index;
  for (int i = 0; i < cfg->nodes_size(); ++i) {
    const auto& n = cfg->nodes(i);
    const std::string f = "nodes[" + std::to_string(i) + "]";
    if (!std::regex_match(n.name(), kNodeName)) {
      return FieldError(source, f + ".name", "must match [A-Za-z0-9_-]+, got '" + n.name() + "'");
    }
    if (!group_index.emplace(n.name(), i).second) {
      return FieldError(source, f + ".name", "duplicate node group name '" + n.name() + "'");
    }
    if (n.count() <= 0) {
      return FieldError(source, f + ".count", "must be > 0, got " + std::to_string(n.count()));
    }
    if (n.ranks_per_node() <= 0) {
      return FieldError(source, f + ".ranks_per_node",
                        "must be > 0, got " + std::to_string(n.ranks_per_node()));
    }
    if (n.gpus_per_node() < 0) {
      return FieldError(source, f + ".gpus_per_node",
                        "must be >= 0, got " + std::to_string(n.gpus_per_node()));
    }
    if (n.cpus_per_node() < 0) {
      return FieldError(source, f + ".cpus_per_node",
                        "must be >= 0, got " + std::to_string(n.cpus_per_node()));
    }
  }
  std::vector<int> ranks_in_group(cfg->nodes_size(), 0);
  std::vector<std::string> role_groups_in(cfg->nodes_size());
  for (int i = 0; i < cfg->roles_size(); ++i) {
    const auto& g = cfg->roles(i);
    const std::string f = "roles[" + std::to_string(i) + "].nodes";
    int gi = 0;
    if (g.nodes().empty()) {
      if (cfg->nodes_size() > 1) {
        return FieldError(source, f, "required when the config has several node groups");
      }
      if (cfg->nodes_size() == 0) continue;
    } else {
      auto it = group_index.find(g.nodes());
      if (it == group_index.end()) {
        return FieldError(source, f,
                          "no node group named '" + g.nodes() + "'" +
                              (cfg->nodes_size() == 0 ? " (the config has no nodes { ... })" : ""));
      }
      gi = it->second;
    }
    ranks_in_group[gi] += g.count();
    role_groups_in[gi] +=
        std::string(role_groups_in[gi].empty() ? "" : ", ") + "roles[" + std::to_string(i) + "]";
  }
  for (int i = 0; i < cfg->nodes_size(); ++i) {
    const auto& n = cfg->nodes(i);
    const std::string f = "nodes[" + std::to_string(i) + "]";
    const int r = ranks_in_group[i];
    const int capacity = n.count() * n.ranks_per_node();
    const std::string what = "node group '" + n.name() + "' gets " + std::to_string(r) + " ranks" +
                             (r > 0 ? " (" + role_groups_in[i] + ")" : "");
    if (r > capacity) {
      return FieldError(source, f + ".ranks_per_node",
                        what + ", more than count * ranks_per_node = " + std::to_string(n.count()) +
                            " * " + std::to_string(n.ranks_per_node()) + " = " +
                            std::to_string(capacity));
    }
    // Every node of the group must get a rank: an empty node is allocated
    // (and paid for) but never used.
    const int used = n.placement() == proto::SPREAD
                         ? std::min(r, n.count())
                         : (r + n.ranks_per_node() - 1) / n.ranks_per_node();
    if (used < n.count()) {
      return FieldError(source, f + ".count",
                        what + ", which leaves " + std::to_string(n.count() - used) + " of its " +
                            std::to_string(n.count()) + " nodes empty");
    }
  }

  auto* t = cfg->mutable_transport();
  if (t->request_timeout_ms() < 0) {
    return FieldError(source, "transport.request_timeout_ms",
                      "must be >= 0, got " + std::to_string(t->request_timeout_ms()));
  }
  if (t->request_timeout_ms() == 0) t->set_request_timeout_ms(30000);
  if (t->max_inflight_requests() < 0) {
    return FieldError(source, "transport.max_inflight_requests",
                      "must be >= 0, got " + std::to_string(t->max_inflight_requests()));
  }
  if (t->max_inflight_requests() == 0) t->set_max_inflight_requests(64);
  if (t->max_keys_per_request() < 0) {
    return FieldError(source, "transport.max_keys_per_request",
                      "must be >= 0, got " + std::to_string(t->max_keys_per_request()));
  }
  if (t->max_keys_per_request() == 0) t->set_max_keys_per_request(kDefaultMaxKeysPerRequest);

  auto* s = cfg->mutable_server();
  if (s->handler_threads() < 0 || s->handler_threads() > 256) {
    return FieldError(source, "server.handler_threads",
                      "must be in [0, 256], got " + std::to_string(s->handler_threads()));
  }
  if (s->handler_threads() == 0) s->set_handler_threads(2);
  if (s->request_threads() < 0 || s->request_threads() > 256) {
    return FieldError(source, "server.request_threads",
                      "must be in [0, 256], got " + std::to_string(s->request_threads()));
  }
  if (s->partitions() < 0 || s->partitions() > 4096) {
    return FieldError(source, "server.partitions",
                      "must be in [0, 4096], got " + std::to_string(s->partitions()));
  }
  if (s->partitions() == 0) s->set_partitions(64);

  auto* m = cfg->mutable_metrics();
  int64_t ranks = 0;
  for (const auto& g : cfg->roles()) ranks += g.count();
  if (m->port() < 0 || m->port() + ranks - 1 > 65535) {
    return FieldError(source, "metrics.port",
                      "must be 0 (off) or a port with room for " + std::to_string(ranks) +
                          " ranks (port + ranks - 1 <= 65535), got " + std::to_string(m->port()));
  }
  if (m->host().empty()) m->set_host("127.0.0.1");
  if (!(m->interval_s() >= 0 && m->interval_s() <= 3600)) {
    return FieldError(source, "metrics.interval_s",
                      "must be in [0, 3600] (0: 1 s), got " + std::to_string(m->interval_s()));
  }
  if (m->interval_s() == 0) m->set_interval_s(1);
  return Status::OK();
}

StatusOr<proto::TablesConfig> ParseTablesConfig(const std::string& text,
                                                const std::string& source) {
  FRESHET_ASSIGN_OR_RETURN(proto::TablesConfig cfg, ParseText<proto::TablesConfig>(text, source));
  FRESHET_RETURN_IF_ERROR(ValidateTablesConfig(&cfg, source));
  return cfg;
}

StatusOr<proto::TablesConfig> LoadTablesConfig(const std::string& path) {
  FRESHET_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseTablesConfig(text, path);
}

Status ValidateTableConfig(proto::TableConfig* t, const std::string& where) {
  static const std::regex kName("[a-z0-9_]+");
  if (!std::regex_match(t->name(), kName)) {
    return FieldError(where, "name", "must match [a-z0-9_]+, got '" + t->name() + "'");
  }
  if (t->dim() < 1 || t->dim() > kMaxTableDim) {
    return FieldError(
        where, "dim",
        "must be in [1, " + std::to_string(kMaxTableDim) + "], got " + std::to_string(t->dim()));
  }
  const auto& init = t->initializer();
  if (init.kind() != proto::Initializer::ZEROS && init.kind() != proto::Initializer::CONSTANT &&
      !(init.scale() > 0)) {
    return FieldError(where, "initializer.scale", "must be > 0 for UNIFORM and NORMAL");
  }
  auto* adm = t->mutable_admission();
  if (adm->min_count() > 255) {
    return FieldError(where, "admission.min_count",
                      "must be in [0, 255], got " + std::to_string(adm->min_count()));
  }
  if (!(adm->probability() >= 0 && adm->probability() <= 1)) {
    return FieldError(where, "admission.probability",
                      "must be in [0, 1], got " + std::to_string(adm->probability()));
  }
  if (adm->sketch_width() == 0) adm->set_sketch_width(1u << 20);
  if (adm->sketch_depth() == 0) adm->set_sketch_depth(4);
  if (adm->sketch_width() < 64 || adm->sketch_width() > (1u << 30)) {
    return FieldError(where, "admission.sketch_width",
                      "must be in [64, 2^30], got " + std::to_string(adm->sketch_width()));
  }
  if (adm->sketch_depth() > 8) {
    return FieldError(where, "admission.sketch_depth",
                      "must be in [1, 8], got " + std::to_string(adm->sketch_depth()));
  }
  if (!proto::AdmissionConfig::HeldBackValue_IsValid(adm->held_back_value())) {
    return FieldError(where, "admission.held_back_value", "unknown value");
  }
  if (!proto::EvictionConfig::Policy_IsValid(t->eviction().policy())) {
    return FieldError(where, "eviction.policy", "unknown value");
  }
  if (t->eviction().max_rows() > (uint64_t{1} << 40)) {
    return FieldError(where, "eviction.max_rows", "must be <= 2^40");
  }
  if (!proto::TableConfig::Storage_IsValid(t->storage())) {
    return FieldError(where, "storage", "unknown value");
  }
  auto* o = t->mutable_optimizer();
  if (o->clip_norm() < 0) return FieldError(where, "optimizer.clip_norm", "must be >= 0");
  auto positive = [&](float v, const char* field) -> Status {
    if (!(v > 0)) return FieldError(where, field, "must be > 0, got " + std::to_string(v));
    return Status::OK();
  };
  switch (o->kind_case()) {
    case proto::OptimizerConfig::kSgd:
      return positive(o->sgd().learning_rate(), "optimizer.sgd.learning_rate");
    case proto::OptimizerConfig::kAdagrad: {
      auto* a = o->mutable_adagrad();
      FRESHET_RETURN_IF_ERROR(positive(a->learning_rate(), "optimizer.adagrad.learning_rate"));
      if (a->initial_accumulator() < 0) {
        return FieldError(where, "optimizer.adagrad.initial_accumulator", "must be >= 0");
      }
      if (a->initial_accumulator() == 0) a->set_initial_accumulator(0.1f);
      if (a->epsilon() == 0) a->set_epsilon(1e-8f);
      return Status::OK();
    }
    case proto::OptimizerConfig::kAdam: {
      auto* a = o->mutable_adam();
      FRESHET_RETURN_IF_ERROR(positive(a->learning_rate(), "optimizer.adam.learning_rate"));
      if (a->beta1() == 0) a->set_beta1(0.9f);
      if (a->beta2() == 0) a->set_beta2(0.999f);
      if (a->epsilon() == 0) a->set_epsilon(1e-8f);
      if (!(a->beta1() > 0 && a->beta1() < 1)) {
        return FieldError(where, "optimizer.adam.beta1", "must be in (0, 1)");
      }
      if (!(a->beta2() > 0 && a->beta2() < 1)) {
        return FieldError(where, "optimizer.adam.beta2", "must be in (0, 1)");
      }
      return Status::OK();
    }
    case proto::OptimizerConfig::kFtrl: {
      auto* f = o->mutable_ftrl();
      FRESHET_RETURN_IF_ERROR(positive(f->alpha(), "optimizer.ftrl.alpha"));
      if (f->beta() == 0) f->set_beta(1.0f);
      if (f->l1() < 0) return FieldError(where, "optimizer.ftrl.l1", "must be >= 0");
      if (f->l2() < 0) return FieldError(where, "optimizer.ftrl.l2", "must be >= 0");
      return Status::OK();
    }
    case proto::OptimizerConfig::KIND_NOT_SET:
      return FieldError(where, "optimizer", "one of sgd, adagrad, adam, ftrl is required");
  }
  return Status::OK();
}

Status ValidateTablesConfig(proto::TablesConfig* cfg, const std::string& source) {
  if (cfg->tables_size() == 0)
    return FieldError(source, "tables", "at least one table is required");
  std::set<std::string> names;
  for (int i = 0; i < cfg->tables_size(); ++i) {
    const std::string where = source + ": tables[" + std::to_string(i) + "]";
    FRESHET_RETURN_IF_ERROR(ValidateTableConfig(cfg->mutable_tables(i), where));
    if (!names.insert(cfg->tables(i).name()).second) {
      return FieldError(where, "name", "duplicate table name '" + cfg->tables(i).name() + "'");
    }
  }
  return Status::OK();
}

ClusterLayout::ClusterLayout(const proto::ClusterConfig& cfg) {
  std::map<std::string, int> group_index;
  for (const auto& n : cfg.nodes()) {
    NodeGroupInfo info;
    info.name = n.name();
    info.count = n.count();
    info.ranks_per_node = n.ranks_per_node();
    info.gpus_per_node = n.gpus_per_node();
    info.cpus_per_node = n.cpus_per_node();
    info.first_node = num_nodes_;
    num_nodes_ += n.count();
    group_index[n.name()] = static_cast<int>(groups_.size());
    groups_.push_back(info);
  }
  std::vector<int> group_of_rank;
  for (const auto& g : cfg.roles()) {
    const int gi = g.nodes().empty() ? 0 : group_index.at(g.nodes());
    for (int i = 0; i < g.count(); ++i) {
      const int rank = static_cast<int>(roles_.size());
      roles_.push_back(g.role());
      std::vector<int>* list = g.role() == proto::SERVER   ? &servers_
                               : g.role() == proto::WORKER ? &workers_
                                                           : &exporters_;
      index_in_role_.push_back(static_cast<int>(list->size()));
      list->push_back(rank);
      group_of_rank.push_back(gi);
    }
  }
  if (groups_.empty()) {  // the implicit single node
    NodeGroupInfo info;
    info.name = "local";
    info.ranks_per_node = world_size();
    groups_.push_back(info);
    num_nodes_ = 1;
  }
  std::vector<int> on_node(num_nodes_, 0);
  placement_.resize(world_size());
  for (int rank = 0; rank < world_size(); ++rank) {
    NodeGroupInfo& g = groups_[group_of_rank[rank]];
    const int k = g.ranks++;
    RankPlacement& p = placement_[rank];
    p.node_group = group_of_rank[rank];
    const bool spread =
        !cfg.nodes().empty() && cfg.nodes(p.node_group).placement() == proto::SPREAD;
    p.node_in_group = spread ? k % g.count : k / g.ranks_per_node;
    p.node = g.first_node + p.node_in_group;
    p.local_rank = on_node[p.node]++;
  }
}

std::vector<int> ClusterLayout::RanksOnNode(int node) const {
  std::vector<int> ranks;
  for (int r = 0; r < world_size(); ++r) {
    if (placement_[r].node == node) ranks.push_back(r);
  }
  return ranks;
}

std::string ClusterLayout::Describe(int rank) const {
  if (rank < 0 || rank >= world_size()) return "rank " + std::to_string(rank) + " (not in layout)";
  return std::string(RoleName(roles_[rank])) + " " + std::to_string(index_in_role_[rank]) +
         " (rank " + std::to_string(rank) + ")";
}

std::string ClusterLayout::ToTable() const {
  std::ostringstream os;
  os << "rank  role      index  nodes     node  local\n";
  for (int r = 0; r < world_size(); ++r) {
    const RankPlacement& p = placement_[r];
    char line[160];
    std::snprintf(line, sizeof(line), "%4d  %-8s  %5d  %-8s  %4d  %5d\n", r, RoleName(roles_[r]),
                  index_in_role_[r], groups_[p.node_group].name.c_str(), p.node_in_group,
                  p.local_rank);
    os << line;
  }
  return os.str();
}

namespace {

Status CheckHosts(const std::vector<std::string>& hosts, int num_nodes) {
  if (static_cast<int>(hosts.size()) < num_nodes) {
    return InvalidArgument("the cluster config needs " + std::to_string(num_nodes) +
                           " hosts (one per node), got " + std::to_string(hosts.size()));
  }
  std::set<std::string> seen;
  for (int i = 0; i < num_nodes; ++i) {
    if (hosts[i].empty()) return InvalidArgument("host " + std::to_string(i) + " is empty");
    if (!seen.insert(hosts[i]).second) {
      return InvalidArgument("host '" + hosts[i] + "' is listed twice");
    }
  }
  return Status::OK();
}

}  // namespace

StatusOr<std::string> ClusterLayout::Rankfile(const std::vector<std::string>& hosts,
                                              int cpus_per_node) const {
  FRESHET_RETURN_IF_ERROR(CheckHosts(hosts, num_nodes_));
  std::vector<int> on_node(num_nodes_, 0);
  for (const auto& p : placement_) ++on_node[p.node];
  std::ostringstream os;
  for (int r = 0; r < world_size(); ++r) {
    const RankPlacement& p = placement_[r];
    const int cpus = cpus_per_node > 0 ? cpus_per_node : groups_[p.node_group].cpus_per_node;
    std::string slot;
    if (cpus <= 0) {
      slot = std::to_string(p.local_rank);
    } else if (on_node[p.node] > cpus) {
      slot = std::to_string(p.local_rank % cpus);
    } else {
      const int per = cpus / on_node[p.node];
      const int first = p.local_rank * per;
      slot = per == 1 ? std::to_string(first)
                      : std::to_string(first) + "-" + std::to_string(first + per - 1);
    }
    os << "rank " << r << "=" << hosts[p.node] << " slot=" << slot << "\n";
  }
  return os.str();
}

StatusOr<std::string> ClusterLayout::Hostfile(const std::vector<std::string>& hosts) const {
  FRESHET_RETURN_IF_ERROR(CheckHosts(hosts, num_nodes_));
  std::vector<int> on_node(num_nodes_, 0);
  for (const auto& p : placement_) ++on_node[p.node];
  std::ostringstream os;
  for (int n = 0; n < num_nodes_; ++n) os << hosts[n] << " slots=" << on_node[n] << "\n";
  return os.str();
}

Status ClusterLayout::CheckLaunch(const LaunchEnv& env) const {
  if (env.rank < 0) {
    return FailedPrecondition(
        "no rank in the environment (mpirun sets OMPI_COMM_WORLD_RANK, srun SLURM_PROCID)");
  }
  if (env.rank >= world_size()) {
    return InvalidArgument(env.source + " started rank " + std::to_string(env.rank) +
                           " but the cluster config defines " + std::to_string(world_size()) +
                           " ranks");
  }
  const RankPlacement& p = placement_[env.rank];
  const std::string who = Describe(env.rank) + " on node " + groups_[p.node_group].name + "[" +
                          std::to_string(p.node_in_group) + "]";
  if (env.local_rank >= 0 && env.local_rank != p.local_rank) {
    return InvalidArgument(who + ": " + env.source + " gave local rank " +
                           std::to_string(env.local_rank) + ", the cluster config places it as " +
                           std::to_string(p.local_rank) +
                           " (launch with the rankfile of freshet_ranks)");
  }
  if (static_cast<int>(env.nodelist.size()) >= num_nodes_ && !env.host.empty() &&
      env.nodelist[p.node] != env.host) {
    return InvalidArgument(who + ": runs on host '" + env.host +
                           "', the cluster config puts it on '" + env.nodelist[p.node] +
                           "' (node " + std::to_string(p.node) + " of SLURM_JOB_NODELIST)");
  }
  return Status::OK();
}

StatusOr<std::vector<std::string>> ExpandNodeList(const std::string& list) {
  auto error = [&](const std::string& what) {
    return InvalidArgument("node list '" + list + "': " + what);
  };
  // Split at commas outside brackets.
  std::vector<std::string> entries;
  std::string cur;
  int depth = 0;
  for (char c : list) {
    if (c == '[') {
      if (++depth > 1) return error("nested '['");
    } else if (c == ']') {
      if (--depth < 0) return error("']' without '['");
    }
    if (c == ',' && depth == 0) {
      entries.push_back(cur);
      cur.clear();
    } else if (c != ' ' && c != '\n' && c != '\t') {
      cur += c;
    }
  }
  if (depth != 0) return error("'[' without ']'");
  entries.push_back(cur);

  std::vector<std::string> hosts;
  for (const std::string& entry : entries) {
    if (entry.empty()) continue;
    std::vector<std::string> names = {""};
    size_t i = 0;
    while (i < entry.size()) {
      const size_t open = entry.find('[', i);
      const std::string prefix =
          entry.substr(i, open == std::string::npos ? std::string::npos : open - i);
      // Host names are at most 255 characters; checked before growing every
      // name (a long prefix times many names would otherwise use gigabytes).
      const size_t digits = open == std::string::npos ? 0 : 9;  // a range adds at most 9
      if (names.front().size() + prefix.size() + digits > 255) {
        return error("a name is longer than 255 characters");
      }
      for (auto& n : names) n += prefix;
      if (open == std::string::npos) break;
      const size_t close = entry.find(']', open);
      const std::string body = entry.substr(open + 1, close - open - 1);
      if (body.empty()) return error("empty '[]'");
      std::vector<std::string> parts;
      std::stringstream ss(body);
      std::string range;
      while (std::getline(ss, range, ',')) {
        static const std::regex kRange("([0-9]+)(?:-([0-9]+))?");
        std::smatch m;
        if (!std::regex_match(range, m, kRange)) return error("bad range '" + range + "'");
        const std::string lo_s = m[1].str();
        const std::string hi_s = m[2].matched ? m[2].str() : lo_s;
        if (lo_s.size() > 9 || hi_s.size() > 9) return error("range '" + range + "' too large");
        const long lo = std::stol(lo_s), hi = std::stol(hi_s);
        if (hi < lo) return error("range '" + range + "' runs backwards");
        if (hi - lo > 100000) return error("range '" + range + "' too large");
        const int width = static_cast<int>(lo_s.size());
        if (parts.size() + static_cast<size_t>(hi - lo) >= kMaxNodeListHosts) {
          return error("expands to more than " + std::to_string(kMaxNodeListHosts) + " names");
        }
        for (long v = lo; v <= hi; ++v) {
          std::string num = std::to_string(v);
          if (static_cast<int>(num.size()) < width) num.insert(0, width - num.size(), '0');
          parts.push_back(num);
        }
      }
      if (parts.size() > kMaxNodeListHosts ||
          names.size() * parts.size() + hosts.size() > kMaxNodeListHosts) {
        return error("expands to more than " + std::to_string(kMaxNodeListHosts) + " names");
      }
      std::vector<std::string> next;
      for (const auto& n : names) {
        for (const auto& part : parts) next.push_back(n + part);
      }
      names.swap(next);
      i = close + 1;
    }
    for (auto& n : names) hosts.push_back(std::move(n));
  }
  return hosts;
}

StatusOr<LaunchEnv> ReadLaunchEnv() {
  LaunchEnv env;
  auto read_int = [](const char* name, int* out) -> Status {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return Status::OK();
    char* end = nullptr;
    const long x = std::strtol(v, &end, 10);
    if (*end != '\0' || x < 0 || x > 1 << 24) {
      return InvalidArgument(std::string(name) + "='" + v + "' is not a rank");
    }
    *out = static_cast<int>(x);
    return Status::OK();
  };
  if (std::getenv("OMPI_COMM_WORLD_RANK") != nullptr) {
    env.source = "mpirun";
    FRESHET_RETURN_IF_ERROR(read_int("OMPI_COMM_WORLD_RANK", &env.rank));
    FRESHET_RETURN_IF_ERROR(read_int("OMPI_COMM_WORLD_LOCAL_RANK", &env.local_rank));
  } else if (std::getenv("SLURM_PROCID") != nullptr) {
    env.source = "slurm";
    FRESHET_RETURN_IF_ERROR(read_int("SLURM_PROCID", &env.rank));
    FRESHET_RETURN_IF_ERROR(read_int("SLURM_LOCALID", &env.local_rank));
  } else {
    env.source = "none";
  }
  if (const char* nl = std::getenv("SLURM_JOB_NODELIST")) {
    auto hosts = ExpandNodeList(nl);
    if (!hosts.ok()) return InvalidArgument("SLURM_JOB_NODELIST: " + hosts.status().message());
    env.nodelist = std::move(*hosts);
  }
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) == 0) {
    env.host = host;
    env.host = env.host.substr(0, env.host.find('.'));
  }
  return env;
}

}  // namespace freshet
