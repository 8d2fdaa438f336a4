// Cost of exact-resume bookkeeping per trained batch (docs/CHECKPOINTS.md):
// the ledger append (one write(2) of the batch's `b` lines) and merging the
// batch's intervals into the epoch's consumed set. Prints one line per
// measurement and a JSON line last.
//
//   build/bin/freshet_resume_bench --batches=200000 --dir=/tmp/ledger-bench
#include <gflags/gflags.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "worker/data/input_intervals.h"
#include "worker/input_ledger.h"

DEFINE_int64(batches, 200000, "batches to append");
DEFINE_int32(intervals, 1, "intervals per batch (block-cyclic splits give 1, rarely 2)");
DEFINE_string(dir, "/tmp/freshet-resume-bench", "ledger directory (removed first)");

namespace freshet {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int Main() {
  std::error_code ec;
  std::filesystem::remove_all(FLAGS_dir, ec);
  auto ledger = InputLedger::Open(FLAGS_dir, 0, 1, 0);
  if (!ledger.ok()) {
    std::fprintf(stderr, "%s\n", ledger.status().ToString().c_str());
    return 1;
  }
  // Batches of 256 lines of ~30 bytes, contiguous (what a reader reports).
  std::vector<InputInterval> batch(FLAGS_intervals);
  uint64_t off = 30;
  ConsumedSet consumed;
  const double t0 = Now();
  for (int64_t b = 0; b < FLAGS_batches; ++b) {
    for (auto& i : batch) {
      i = {0, off, off + 7680, 256};
      off += 7680;
    }
    Status st = (*ledger)->AppendBatch(0, batch);
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", st.ToString().c_str());
      return 1;
    }
  }
  const double ledger_s = Now() - t0;
  const double t1 = Now();
  off = 30;
  for (int64_t b = 0; b < FLAGS_batches; ++b) {
    for (auto& i : batch) {
      i = {0, off, off + 7680, 256};
      off += 7680;
    }
    AddConsumed(batch, &consumed);
  }
  const double merge_s = Now() - t1;
  const uint64_t bytes = std::filesystem::file_size((*ledger)->path());
  const double ledger_us = 1e6 * ledger_s / FLAGS_batches, merge_ns = 1e9 * merge_s / FLAGS_batches;
  std::printf("ledger append: %.2f us per batch (%lld batches, %.1f bytes per batch)\n", ledger_us,
              static_cast<long long>(FLAGS_batches), static_cast<double>(bytes) / FLAGS_batches);
  std::printf("consumed-set merge: %.1f ns per batch (%zu intervals after merging)\n", merge_ns,
              consumed[0].intervals().size());
  std::printf(
      "{\"ledger_us_per_batch\":%.3f,\"ledger_bytes_per_batch\":%.1f,"
      "\"merge_ns_per_batch\":%.1f,\"batches\":%lld}\n",
      ledger_us, static_cast<double>(bytes) / FLAGS_batches, merge_ns,
      static_cast<long long>(FLAGS_batches));
  std::filesystem::remove_all(FLAGS_dir, ec);
  return 0;
}

}  // namespace
}  // namespace freshet

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  return freshet::Main();
}
