// The client/server conformance scenario, shared by the in-process test
// (threads over InProcessHub) and the multi-process test (ranks over MPI).
//
// Two small SGD tables with constant initializers; T steps. In step t worker
// w pulls the keys of parity (i+t) odd and checks each value against a
// single-process reference, then pushes gradients to the keys of parity
// (i+t) even (some duplicated within the request, their gradients split in
// halves). A gradient depends on the value the worker pulled for that key,
// so any staleness violation changes the numbers. All values are multiples of
// 1/32 with small magnitude, so float sums are exact in any order and the
// distributed table must equal the reference bit for bit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/proto/table.pb.h"
#include "common/status.h"
#include "worker/ps_client.h"

namespace freshet::testing {

struct ScenarioSpec {
  int num_keys = 300;
  int steps = 12;
  // Worker w sleeps w * skew_ms before each push, so workers drift apart and
  // only the staleness bound keeps pulls consistent.
  int skew_ms = 5;
};

proto::TablesConfig ScenarioTables();
std::vector<int> ScenarioDims();
// Key of logical index i (spread over the 64-bit space).
uint64_t ScenarioKey(int i);

// The reference state of `table` after `steps` steps with `num_workers`
// workers: values[i*dim + j] for key index i.
std::vector<float> ReferenceState(const ScenarioSpec& spec, int table, int num_workers, int steps);

// Runs worker `client->worker_index()`'s part. REQUIRES: client staleness 0.
// Returns the first mismatch or transport error, naming step, table, key.
Status RunScenarioWorker(PsClient* client, int num_workers, const ScenarioSpec& spec);

}  // namespace freshet::testing
