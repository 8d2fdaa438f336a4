#include "common/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace freshet {
namespace {

TEST(ConfigTest, ParsesAndFillsDefaults) {
  auto cfg = ParseClusterConfig(R"(
    name: "t"
    roles { role: SERVER count: 2 }
    roles { role: WORKER count: 3 }
    roles { role: EXPORTER count: 1 }
  )",
                                "t.pbtxt");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->transport().request_timeout_ms(), 30000);
  EXPECT_EQ(cfg->transport().max_inflight_requests(), 64);
  EXPECT_EQ(cfg->transport().max_keys_per_request(), kDefaultMaxKeysPerRequest);
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

TEST(ConfigTest, MetricsDefaultsAndPortRange) {
  auto cfg = ParseClusterConfig("roles { role: SERVER count: 1 } roles { role: WORKER count: 2 }",
                                "m.pbtxt");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->metrics().port(), 0);  // off by default
  EXPECT_EQ(cfg->metrics().host(), "127.0.0.1");
  EXPECT_EQ(cfg->metrics().interval_s(), 1);
  EXPECT_TRUE(cfg->metrics().dir().empty());
  auto ok = ParseClusterConfig(
      "roles { role: SERVER count: 1 } roles { role: WORKER count: 2 } "
      "metrics { port: 65533 interval_s: 0.5 }",
      "m.pbtxt");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->metrics().interval_s(), 0.5);
  auto high = ParseClusterConfig(
      "roles { role: SERVER count: 1 } roles { role: WORKER count: 2 } metrics { port: 65534 }",
      "m.pbtxt");
  EXPECT_EQ(high.status().message(),
            "m.pbtxt: metrics.port: must be 0 (off) or a port with room for 3 ranks "
            "(port + ranks - 1 <= 65535), got 65534");
  auto iv = ParseClusterConfig(
      "roles { role: SERVER count: 1 } roles { role: WORKER count: 1 } "
      "metrics { interval_s: -1 }",
      "m.pbtxt");
  EXPECT_NE(iv.status().message().find("m.pbtxt: metrics.interval_s: must be in [0, 3600]"),
            std::string::npos)
      << iv.status();
}

TEST(ConfigTest, MissingFileIsNotFound) {
  auto cfg = LoadClusterConfig("/nonexistent/cluster.pbtxt");
  EXPECT_EQ(cfg.status().code(), StatusCode::kNotFound);
  EXPECT_NE(cfg.status().message().find("/nonexistent/cluster.pbtxt"), std::string::npos);
}

TEST(ConfigTest, ShippedClusterConfigsLoad) {
  for (const char* name : {"local", "bench-1s1w", "bench-2s1w"}) {
    const std::string path =
        std::string(FRESHET_SOURCE_DIR) + "/cluster-configs/" + name + ".pbtxt";
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
  )",
                             "tables.pbtxt");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_FLOAT_EQ(t->tables(0).optimizer().adagrad().initial_accumulator(), 0.1f);
  EXPECT_FLOAT_EQ(t->tables(1).optimizer().adam().beta2(), 0.999f);

  auto dup = ParseTablesConfig(
      "tables { name: \"a\" dim: 4 optimizer { sgd { learning_rate: 1 } } }"
      "tables { name: \"a\" dim: 4 optimizer { sgd { learning_rate: 1 } } }",
      "d.pbtxt");
  EXPECT_EQ(dup.status().message(), "d.pbtxt: tables[1]: name: duplicate table name 'a'");
  auto nodim =
      ParseTablesConfig("tables { name: \"a\" optimizer { sgd { learning_rate: 1 } } }", "n.pbtxt");
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

// ---- Placement: node groups, rankfiles, host lists, launcher environment.

namespace freshet {
namespace placement {

const char* kTwoGroups = R"(
  nodes { name: "cpu" count: 2 ranks_per_node: 3 }
  nodes { name: "gpu" count: 2 ranks_per_node: 2 gpus_per_node: 2 }
  roles { role: SERVER count: 4 nodes: "cpu" }
  roles { role: WORKER count: 4 nodes: "gpu" }
  roles { role: EXPORTER count: 1 nodes: "cpu" }
)";

TEST(PlacementTest, ConfigsWithoutNodesRunOnOneImplicitNode) {
  auto cfg = ParseClusterConfig(
      "roles { role: SERVER count: 2 } roles { role: WORKER count: 2 } "
      "roles { role: EXPORTER count: 1 }",
      "l.pbtxt");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  ClusterLayout layout(*cfg);
  EXPECT_EQ(layout.num_nodes(), 1);
  ASSERT_EQ(layout.node_groups().size(), 1u);
  EXPECT_EQ(layout.node_groups()[0].ranks_per_node, 5);
  for (int r = 0; r < 5; ++r) {
    EXPECT_EQ(layout.PlacementOf(r).node, 0);
    EXPECT_EQ(layout.PlacementOf(r).local_rank, r);
  }
  auto rf = layout.Rankfile({"h"});
  ASSERT_TRUE(rf.ok());
  EXPECT_EQ(*rf,
            "rank 0=h slot=0\nrank 1=h slot=1\nrank 2=h slot=2\nrank 3=h slot=3\n"
            "rank 4=h slot=4\n");
}

TEST(PlacementTest, PacksRoleGroupsOntoTheirNodeGroups) {
  auto cfg = ParseClusterConfig(kTwoGroups, "p.pbtxt");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  ClusterLayout layout(*cfg);
  EXPECT_EQ(layout.world_size(), 9);
  EXPECT_EQ(layout.num_nodes(), 4);
  EXPECT_EQ(layout.num_servers(), 4);
  EXPECT_EQ(layout.ExporterRank(0), 8);
  // Servers 0-2 fill cpu node 0; server 3 and the exporter share cpu node 1.
  EXPECT_EQ(layout.PlacementOf(2).node, 0);
  EXPECT_EQ(layout.PlacementOf(3).node, 1);
  EXPECT_EQ(layout.PlacementOf(3).local_rank, 0);
  EXPECT_EQ(layout.PlacementOf(8).node, 1);
  EXPECT_EQ(layout.PlacementOf(8).local_rank, 1);
  // Workers: gpu nodes 0 and 1 (global nodes 2 and 3), two each.
  EXPECT_EQ(layout.PlacementOf(4).node, 2);
  EXPECT_EQ(layout.PlacementOf(5).node, 2);
  EXPECT_EQ(layout.PlacementOf(6).node, 3);
  EXPECT_EQ(layout.PlacementOf(6).node_in_group, 1);
  EXPECT_EQ(layout.PlacementOf(7).local_rank, 1);
  EXPECT_EQ(layout.NodeGroupOf(7).name, "gpu");
  EXPECT_EQ(layout.NodeGroupOf(7).gpus_per_node, 2);
  EXPECT_EQ(layout.RanksOnNode(1), (std::vector<int>{3, 8}));
  // The table keeps the old columns first and adds the placement.
  const std::string table = layout.ToTable();
  EXPECT_NE(table.find("   8  exporter      0  cpu          1      1"), std::string::npos) << table;
  EXPECT_NE(table.find("   6  worker        2  gpu          1      0"), std::string::npos) << table;

  auto rf = layout.Rankfile({"c1", "c2", "g1", "g2"});
  ASSERT_TRUE(rf.ok()) << rf.status();
  EXPECT_EQ(*rf,
            "rank 0=c1 slot=0\nrank 1=c1 slot=1\nrank 2=c1 slot=2\nrank 3=c2 slot=0\n"
            "rank 4=g1 slot=0\nrank 5=g1 slot=1\nrank 6=g2 slot=0\nrank 7=g2 slot=1\n"
            "rank 8=c2 slot=1\n");
  auto hf = layout.Hostfile({"c1", "c2", "g1", "g2", "spare"});
  ASSERT_TRUE(hf.ok()) << hf.status();
  EXPECT_EQ(*hf, "c1 slots=3\nc2 slots=2\ng1 slots=2\ng2 slots=2\n");
  // Too few or repeated hosts are errors.
  EXPECT_FALSE(layout.Rankfile({"c1", "c2", "g1"}).ok());
  EXPECT_NE(layout.Rankfile({"c1", "c2", "g1"}).status().message().find("needs 4 hosts"),
            std::string::npos);
  EXPECT_FALSE(layout.Rankfile({"c1", "c1", "g1", "g2"}).ok());
}

TEST(PlacementTest, SpreadAndCoreSlots) {
  auto cfg = ParseClusterConfig(R"(
    nodes { name: "n" count: 2 ranks_per_node: 4 cpus_per_node: 8 placement: SPREAD }
    roles { role: SERVER count: 2 }
    roles { role: WORKER count: 3 }
  )",
                                "s.pbtxt");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  ClusterLayout layout(*cfg);
  // Round robin: ranks 0,2,4 on node 0, ranks 1,3 on node 1.
  EXPECT_EQ(layout.RanksOnNode(0), (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(layout.RanksOnNode(1), (std::vector<int>{1, 3}));
  EXPECT_EQ(layout.PlacementOf(4).local_rank, 2);
  auto rf = layout.Rankfile({"a", "b"});
  ASSERT_TRUE(rf.ok());
  // 8 cores, 3 ranks on a: 2 cores each; 2 ranks on b: 4 each.
  EXPECT_EQ(*rf,
            "rank 0=a slot=0-1\nrank 1=b slot=0-3\nrank 2=a slot=2-3\nrank 3=b slot=4-7\n"
            "rank 4=a slot=4-5\n");
  // More ranks than cores wrap round (mpirun --oversubscribe).
  auto one = ParseClusterConfig(R"(
    nodes { name: "m" count: 1 ranks_per_node: 5 cpus_per_node: 2 }
    roles { role: SERVER count: 2 } roles { role: WORKER count: 2 } roles { role: EXPORTER count: 1 }
  )",
                                "one.pbtxt");
  ASSERT_TRUE(one.ok()) << one.status();
  auto rf1 = ClusterLayout(*one).Rankfile({"vm"});
  ASSERT_TRUE(rf1.ok());
  EXPECT_EQ(*rf1,
            "rank 0=vm slot=0\nrank 1=vm slot=1\nrank 2=vm slot=0\nrank 3=vm slot=1\n"
            "rank 4=vm slot=0\n");
}

TEST(PlacementTest, ValidationNamesFileAndField) {
  auto msg = [](const std::string& text) {
    auto cfg = ParseClusterConfig(text, "n.pbtxt");
    return cfg.ok() ? std::string("ok") : cfg.status().message();
  };
  EXPECT_EQ(msg(R"(nodes { name: "cpu" count: 2 ranks_per_node: 2 }
                   roles { role: SERVER count: 4 nodes: "cpu" }
                   roles { role: WORKER count: 1 nodes: "cpu" })"),
            "n.pbtxt: nodes[0].ranks_per_node: node group 'cpu' gets 5 ranks (roles[0], roles[1]), "
            "more than count * ranks_per_node = 2 * 2 = 4");
  EXPECT_EQ(msg(R"(nodes { name: "cpu" count: 1 ranks_per_node: 2 }
                   roles { role: SERVER count: 1 nodes: "gpu" }
                   roles { role: WORKER count: 1 })"),
            "n.pbtxt: roles[0].nodes: no node group named 'gpu'");
  EXPECT_EQ(msg(R"(roles { role: SERVER count: 1 nodes: "gpu" } roles { role: WORKER count: 1 })"),
            "n.pbtxt: roles[0].nodes: no node group named 'gpu' (the config has no nodes { ... })");
  EXPECT_EQ(msg(R"(nodes { name: "a" count: 1 ranks_per_node: 2 }
                   nodes { name: "b" count: 1 ranks_per_node: 2 }
                   roles { role: SERVER count: 1 nodes: "a" } roles { role: WORKER count: 1 })"),
            "n.pbtxt: roles[1].nodes: required when the config has several node groups");
  EXPECT_EQ(msg(R"(nodes { name: "a" count: 1 ranks_per_node: 2 }
                   nodes { name: "a" count: 1 ranks_per_node: 2 }
                   roles { role: SERVER count: 1 nodes: "a" } roles { role: WORKER count: 1 nodes: "a" })"),
            "n.pbtxt: nodes[1].name: duplicate node group name 'a'");
  EXPECT_EQ(msg(R"(nodes { name: "a" count: 1 ranks_per_node: 0 }
                   roles { role: SERVER count: 1 } roles { role: WORKER count: 1 })"),
            "n.pbtxt: nodes[0].ranks_per_node: must be > 0, got 0");
  EXPECT_EQ(msg(R"(nodes { name: "a b" count: 1 ranks_per_node: 2 }
                   roles { role: SERVER count: 1 } roles { role: WORKER count: 1 })"),
            "n.pbtxt: nodes[0].name: must match [A-Za-z0-9_-]+, got 'a b'");
  EXPECT_EQ(msg(R"(nodes { name: "a" count: 3 ranks_per_node: 2 }
                   roles { role: SERVER count: 1 } roles { role: WORKER count: 2 })"),
            "n.pbtxt: nodes[0].count: node group 'a' gets 3 ranks (roles[0], roles[1]), which "
            "leaves 1 of its 3 nodes empty");
  EXPECT_EQ(msg(R"(nodes { name: "a" count: 1 ranks_per_node: 2 gpus_per_node: -1 }
                   roles { role: SERVER count: 1 } roles { role: WORKER count: 1 })"),
            "n.pbtxt: nodes[0].gpus_per_node: must be >= 0, got -1");
  EXPECT_EQ(msg(R"(transport { max_keys_per_request: -1 }
                   roles { role: SERVER count: 1 } roles { role: WORKER count: 1 })"),
            "n.pbtxt: transport.max_keys_per_request: must be >= 0, got -1");
  // One node group: role groups may leave `nodes` out.
  EXPECT_EQ(msg(R"(nodes { name: "a" count: 1 ranks_per_node: 2 }
                   roles { role: SERVER count: 1 } roles { role: WORKER count: 1 })"),
            "ok");
}

TEST(PlacementTest, ExpandsCompressedNodeLists) {
  using V = std::vector<std::string>;
  auto expand = [](const std::string& s) {
    auto r = ExpandNodeList(s);
    EXPECT_TRUE(r.ok()) << s << ": " << r.status();
    return r.ok() ? *r : V{};
  };
  EXPECT_EQ(expand("a,b,c"), (V{"a", "b", "c"}));
  EXPECT_EQ(expand("vm"), (V{"vm"}));
  EXPECT_EQ(expand(""), V{});
  EXPECT_EQ(expand("node[01-04,07]"), (V{"node01", "node02", "node03", "node04", "node07"}));
  EXPECT_EQ(expand("node[8-11]"), (V{"node8", "node9", "node10", "node11"}));
  EXPECT_EQ(expand("node[098-101]"), (V{"node098", "node099", "node100", "node101"}));
  EXPECT_EQ(expand("cpu[1-2],gpu-a[3]x,login"), (V{"cpu1", "cpu2", "gpu-a3x", "login"}));
  EXPECT_EQ(expand("r[1-2]n[1-2]"), (V{"r1n1", "r1n2", "r2n1", "r2n2"}));
  EXPECT_EQ(expand("a,,b,"), (V{"a", "b"}));
  EXPECT_EQ(expand("tux[1-64]").size(), 64u);
  for (const char* bad :
       {"node[1-", "node1]", "node[]", "node[a-b]", "node[3-1]", "n[[1]]", "node[1-2-3]"}) {
    auto r = ExpandNodeList(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find(bad), std::string::npos) << r.status();
  }
}

// Regression (config_fuzz timeout): products and repeated ranges expanded
// without a bound ("re[01-01015]ngigln[01-01015]" made a million names,
// "[0-99999]" x3 ten^15).
TEST(PlacementTest, NodeListsExpandToAtMostTheLimit) {
  EXPECT_EQ(ExpandNodeList("n[1-100000]")->size(), 100000u);
  // Regression (config_fuzz timeout): 3,840 names each growing by a 64 KB
  // prefix. Host names are at most 255 characters.
  auto r = ExpandNodeList("node[01-16]n[2-2]" + std::string(300, 'x'));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("longer than 255 characters"), std::string::npos)
      << r.status();
  EXPECT_EQ(ExpandNodeList(std::string(240, 'h') + "[1-2]")->size(), 2u);
  for (const char* bad : {"re[01-01015]ngigln[01-01015]", "r[1-99999]n[1-99999]n[1-99999]",
                          "a[1-60000],b[1-60000]", "n[1-60000,1-60000]", "n[1-100001]"}) {
    auto r = ExpandNodeList(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("more than 100000 names"), std::string::npos) << r.status();
  }
}

TEST(PlacementTest, ChecksTheLauncherEnvironment) {
  auto cfg = ParseClusterConfig(kTwoGroups, "p.pbtxt");
  ASSERT_TRUE(cfg.ok());
  ClusterLayout layout(*cfg);
  LaunchEnv env;
  env.source = "mpirun";
  EXPECT_EQ(layout.CheckLaunch(env).code(), StatusCode::kFailedPrecondition);
  env.rank = 8;
  env.local_rank = 1;
  env.host = "c2";
  env.nodelist = {"c1", "c2", "g1", "g2"};
  EXPECT_TRUE(layout.CheckLaunch(env).ok()) << layout.CheckLaunch(env);
  env.host = "g1";
  EXPECT_NE(layout.CheckLaunch(env).message().find("exporter 0 (rank 8) on node cpu[1]: runs on "
                                                   "host 'g1', the cluster config puts it on 'c2'"),
            std::string::npos)
      << layout.CheckLaunch(env);
  env.host = "c2";
  env.local_rank = 0;
  EXPECT_FALSE(layout.CheckLaunch(env).ok());
  env.rank = 9;
  EXPECT_FALSE(layout.CheckLaunch(env).ok());

  // From real environment variables: Open MPI's win over SLURM's.
  setenv("SLURM_PROCID", "3", 1);
  setenv("SLURM_LOCALID", "0", 1);
  setenv("SLURM_JOB_NODELIST", "c[1-2],g[1-2]", 1);
  unsetenv("OMPI_COMM_WORLD_RANK");
  auto e = ReadLaunchEnv();
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->source, "slurm");
  EXPECT_EQ(e->rank, 3);
  EXPECT_EQ(e->local_rank, 0);
  EXPECT_EQ(e->nodelist, (std::vector<std::string>{"c1", "c2", "g1", "g2"}));
  setenv("OMPI_COMM_WORLD_RANK", "5", 1);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
  e = ReadLaunchEnv();
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->source, "mpirun");
  EXPECT_EQ(e->rank, 5);
  EXPECT_EQ(e->local_rank, 1);
  setenv("OMPI_COMM_WORLD_RANK", "x", 1);
  EXPECT_NE(ReadLaunchEnv().status().message().find("OMPI_COMM_WORLD_RANK='x'"), std::string::npos);
  for (const char* v : {"SLURM_PROCID", "SLURM_LOCALID", "SLURM_JOB_NODELIST",
                        "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"}) {
    unsetenv(v);
  }
}

TEST(PlacementTest, ShippedPlacementConfigsLoad) {
  for (const char* name : {"slurm-1node", "slurm-4node", "slurm-64node"}) {
    const std::string path =
        std::string(FRESHET_SOURCE_DIR) + "/cluster-configs/" + name + ".pbtxt";
    auto cfg = LoadClusterConfig(path);
    EXPECT_TRUE(cfg.ok()) << path << ": " << cfg.status();
  }
  auto one =
      LoadClusterConfig(std::string(FRESHET_SOURCE_DIR) + "/cluster-configs/slurm-1node.pbtxt");
  ASSERT_TRUE(one.ok());
  ClusterLayout layout(*one);
  EXPECT_EQ(layout.world_size(), 5);
  EXPECT_EQ(layout.num_nodes(), 1);
}

}  // namespace placement
}  // namespace freshet
