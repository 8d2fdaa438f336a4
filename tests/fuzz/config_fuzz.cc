// Fuzz target: configuration text (common/config.h, worker/job.h).
//
// Input byte 0 picks the mode (mod 4); the rest is the text:
//   0: a cluster config: ParseClusterConfig (parse + validate); a valid one
//      builds a ClusterLayout whose every rank must have a role and a node,
//      and whose rank table, hostfile and rankfile can be made;
//   1: a tables config: ParseTablesConfig;
//   2: a job config: ParseJobConfig (parse + cross-field validation), and a
//      valid job must create its model;
//   3: a SLURM host list for ExpandNodeList.
// Errors must name the source.
#include <string>
#include <vector>

#include "common/config.h"
#include "model/model_factory.h"
#include "tests/fuzz/fuzz_util.h"
#include "worker/job.h"

namespace freshet {
namespace {

constexpr char kSource[] = "fuzz.pbtxt";

void CheckError(const Status& st) {
  FUZZ_CHECK(!st.ok());
  FUZZ_CHECK(st.message().find(kSource) != std::string::npos);
}

void Cluster(const std::string& text) {
  auto cfg = ParseClusterConfig(text, kSource);
  if (!cfg.ok()) return CheckError(cfg.status());
  ClusterLayout layout(*cfg);
  if (layout.world_size() > 100000) return;  // a valid but huge cluster: skip the per-rank loop
  for (int r = 0; r < layout.world_size(); ++r) {
    const RankPlacement& p = layout.PlacementOf(r);
    FUZZ_CHECK(p.node >= 0 && p.node < layout.num_nodes());
    FUZZ_CHECK(p.node_group >= 0 && p.node_group < static_cast<int>(layout.node_groups().size()));
    (void)layout.Describe(r);
  }
  if (layout.world_size() > 4096) return;
  (void)layout.ToTable();
  std::vector<std::string> hosts;
  for (int n = 0; n < layout.num_nodes() && n < 4096; ++n) hosts.push_back("h" + std::to_string(n));
  (void)layout.Rankfile(hosts);
  (void)layout.Hostfile(hosts);
}

void Job(const std::string& text) {
  auto job = ParseJobConfig(text, kSource);
  if (!job.ok()) return CheckError(job.status());
  // Slot and dense counts as the encoder would give them.
  const int slots = job->features().slots_size();
  const int dense = job->features().dense_size();
  if (slots > 64 || dense > 64) return;
  for (int h : job->model().hidden()) {
    if (h > 256) return;  // valid, but too big a model to build per input
  }
  (void)CreateJobModel(*job, slots, dense);
}

}  // namespace
}  // namespace freshet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace freshet;
  fuzz::Input in(data, size);
  const uint8_t mode = in.Byte() % 4;
  const std::string text(in.Rest());
  switch (mode) {
    case 0:
      Cluster(text);
      break;
    case 1: {
      auto t = ParseTablesConfig(text, kSource);
      if (!t.ok()) CheckError(t.status());
      break;
    }
    case 2:
      Job(text);
      break;
    case 3: {
      auto hosts = ExpandNodeList(text);
      if (hosts.ok() && hosts->size() < 100000) {
        for (const auto& h : *hosts) FUZZ_CHECK(!h.empty());
      }
      break;
    }
  }
  return 0;
}
