#include "common/config.h"

#include <cstdio>
#include <fstream>

#include <gtest/gtest.h>

namespace freshet {
namespace {

TEST(ConfigTest, ParsesAndFillsDefaults) {
  auto cfg = ParseClusterConfig(R"(
    name: "t"
    roles { role: SERVER count: 2 }
    roles { role: WORKER count: 3 }
    roles { role: EXPORTER count: 1 }
  )", "t.pbtxt");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->transport().request_timeout_ms(), 30000);
  EXPECT_EQ(cfg->transport().max_inflight_requests(), 64);
  EXPECT_EQ(cfg->server().partitions(), 64);
  ClusterLayout layout(*cfg);
  EXPECT_EQ(layout.world_size(), 6);
  EXPECT_EQ(layout.num_servers(), 2);
  EXPECT_EQ(layout.num_workers(), 3);
  EXPECT_EQ(layout.WorkerRank(0), 2);
  EXPECT_EQ(layout.ExporterRank(0), 5);
  EXPECT_EQ(layout.RoleOf(4), proto::WORKER);
  EXPECT_EQ(layout.IndexInRole(4), 2);
  EXPECT_EQ(layout.Describe(1), "server 1 (rank 1)");
  EXPECT_NE(layout.ToTable().find("   5  exporter      0"), std::string::npos) << layout.ToTable();
}

TEST(ConfigTest, SyntaxErrorNamesFileLineAndColumn) {
  auto cfg = ParseClusterConfig("name: \"x\"\nroles { role: SERVER count: many }\n", "bad.pbtxt");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(cfg.status().message().find("bad.pbtxt:2:"), std::string::npos) << cfg.status();
}

TEST(ConfigTest, UnknownFieldIsAnError) {
  auto cfg = ParseClusterConfig("roles { role: SERVER count: 1 }\nservers: 3\n", "u.pbtxt");
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.status().message().find("u.pbtxt:2:"), std::string::npos) << cfg.status();
  EXPECT_NE(cfg.status().message().find("servers"), std::string::npos) << cfg.status();
}

TEST(ConfigTest, ValidationNamesTheField) {
  auto a = ParseClusterConfig("roles { role: SERVER count: 0 }", "a.pbtxt");
  EXPECT_EQ(a.status().message(), "a.pbtxt: roles[0].count: must be > 0, got 0");
  auto b = ParseClusterConfig("roles { role: SERVER count: 1 }", "b.pbtxt");
  EXPECT_EQ(b.status().message(), "b.pbtxt: roles: needs at least one WORKER rank");
  auto c = ParseClusterConfig(
      "roles { role: SERVER count: 1 } roles { role: WORKER count: 1 } server { partitions: -2 }",
      "c.pbtxt");
  EXPECT_EQ(c.status().message(), "c.pbtxt: server.partitions: must be in [0, 4096], got -2");
}

TEST(ConfigTest, MissingFileIsNotFound) {
  auto cfg = LoadClusterConfig("/nonexistent/cluster.pbtxt");
  EXPECT_EQ(cfg.status().code(), StatusCode::kNotFound);
  EXPECT_NE(cfg.status().message().find("/nonexistent/cluster.pbtxt"), std::string::npos);
}

TEST(ConfigTest, ShippedClusterConfigsLoad) {
  for (const char* name : {"local", "bench-1s1w", "bench-2s1w"}) {
    const std::string path = std::string(FRESHET_SOURCE_DIR) + "/cluster-configs/" + name + ".pbtxt";
    auto cfg = LoadClusterConfig(path);
    EXPECT_TRUE(cfg.ok()) << path << ": " << cfg.status();
  }
  auto local = LoadClusterConfig(std::string(FRESHET_SOURCE_DIR) + "/cluster-configs/local.pbtxt");
  ASSERT_TRUE(local.ok());
  ClusterLayout layout(*local);
  EXPECT_EQ(layout.num_servers(), 2);
  EXPECT_EQ(layout.num_workers(), 2);
  EXPECT_EQ(layout.num_exporters(), 1);
}

TEST(ConfigTest, TablesValidateAndFillOptimizerDefaults) {
  auto t = ParseTablesConfig(R"(
    tables { name: "user" dim: 16 initializer { kind: NORMAL scale: 0.01 }
             optimizer { adagrad { learning_rate: 0.05 } } }
    tables { name: "item" dim: 8 optimizer { adam { learning_rate: 0.001 } } }
  )", "tables.pbtxt");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_FLOAT_EQ(t->tables(0).optimizer().adagrad().initial_accumulator(), 0.1f);
  EXPECT_FLOAT_EQ(t->tables(1).optimizer().adam().beta2(), 0.999f);

  auto dup = ParseTablesConfig(
      "tables { name: \"a\" dim: 4 optimizer { sgd { learning_rate: 1 } } }"
      "tables { name: \"a\" dim: 4 optimizer { sgd { learning_rate: 1 } } }", "d.pbtxt");
  EXPECT_EQ(dup.status().message(), "d.pbtxt: tables[1]: name: duplicate table name 'a'");
  auto nodim = ParseTablesConfig("tables { name: \"a\" optimizer { sgd { learning_rate: 1 } } }",
                                 "n.pbtxt");
  EXPECT_EQ(nodim.status().message(), "n.pbtxt: tables[0]: dim: must be in [1, 4096], got 0");
  auto noopt = ParseTablesConfig("tables { name: \"a\" dim: 2 }", "o.pbtxt");
  EXPECT_EQ(noopt.status().message(),
            "o.pbtxt: tables[0]: optimizer: one of sgd, adagrad, adam, ftrl is required");
  auto badlr = ParseTablesConfig("tables { name: \"a\" dim: 2 optimizer { sgd { } } }", "l.pbtxt");
  EXPECT_NE(badlr.status().message().find("optimizer.sgd.learning_rate: must be > 0"),
            std::string::npos);
}

}  // namespace
}  // namespace freshet
