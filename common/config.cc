#include "common/config.h"

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

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
  google::protobuf::TextFormat::Parser parser;
  ErrorCollector errors(source);
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &msg)) {
    return InvalidArgument(errors.errors().empty() ? source + ": does not parse" : errors.errors());
  }
  return msg;
}

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open config file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status FieldError(const std::string& where, const std::string& field, const std::string& problem) {
  return InvalidArgument(where + ": " + field + ": " + problem);
}

}  // namespace

const char* RoleName(proto::Role role) {
  switch (role) {
    case proto::SERVER: return "server";
    case proto::WORKER: return "worker";
    case proto::EXPORTER: return "exporter";
    default: return "unspecified";
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

  auto* s = cfg->mutable_server();
  if (s->handler_threads() < 0 || s->handler_threads() > 256) {
    return FieldError(source, "server.handler_threads",
                      "must be in [0, 256], got " + std::to_string(s->handler_threads()));
  }
  if (s->handler_threads() == 0) s->set_handler_threads(2);
  if (s->partitions() < 0 || s->partitions() > 4096) {
    return FieldError(source, "server.partitions",
                      "must be in [0, 4096], got " + std::to_string(s->partitions()));
  }
  if (s->partitions() == 0) s->set_partitions(64);
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
  if (t->dim() < 1 || t->dim() > 4096) {
    return FieldError(where, "dim", "must be in [1, 4096], got " + std::to_string(t->dim()));
  }
  const auto& init = t->initializer();
  if (init.kind() != proto::Initializer::ZEROS && init.kind() != proto::Initializer::CONSTANT &&
      !(init.scale() > 0)) {
    return FieldError(where, "initializer.scale", "must be > 0 for UNIFORM and NORMAL");
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
  if (cfg->tables_size() == 0) return FieldError(source, "tables", "at least one table is required");
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
  for (const auto& g : cfg.roles()) {
    for (int i = 0; i < g.count(); ++i) {
      const int rank = static_cast<int>(roles_.size());
      roles_.push_back(g.role());
      std::vector<int>* list = g.role() == proto::SERVER   ? &servers_
                               : g.role() == proto::WORKER ? &workers_
                                                           : &exporters_;
      index_in_role_.push_back(static_cast<int>(list->size()));
      list->push_back(rank);
    }
  }
}

std::string ClusterLayout::Describe(int rank) const {
  if (rank < 0 || rank >= world_size()) return "rank " + std::to_string(rank) + " (not in layout)";
  return std::string(RoleName(roles_[rank])) + " " + std::to_string(index_in_role_[rank]) +
         " (rank " + std::to_string(rank) + ")";
}

std::string ClusterLayout::ToTable() const {
  std::ostringstream os;
  os << "rank  role      index\n";
  for (int r = 0; r < world_size(); ++r) {
    char line[64];
    std::snprintf(line, sizeof(line), "%4d  %-8s  %5d\n", r, RoleName(roles_[r]), index_in_role_[r]);
    os << line;
  }
  return os.str();
}

}  // namespace freshet
