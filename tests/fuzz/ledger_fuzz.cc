// Fuzz target: trained-input ledger lines (worker/input_ledger.h), which
// attempts of a job append and a resume check reads back after a crash.
//
// The input is split into lines at '\n'; every line goes through
// ParseLedgerLine. An accepted line must be exactly AppendLedgerLine's text
// for what it decoded (the format has one spelling per value), and its
// values in range.
#include <string>

#include "tests/fuzz/fuzz_util.h"
#include "worker/input_ledger.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using freshet::LedgerLine;
  freshet::fuzz::Input in(data, size);
  while (!in.done()) {
    const std::string_view text = in.Until("\n");
    LedgerLine l;
    if (!freshet::ParseLedgerLine(text, &l).ok()) continue;
    switch (l.kind) {
      case LedgerLine::Kind::kAttempt:
        FUZZ_CHECK(l.unix_ms >= 0 && l.restored_from >= 0 && l.workers >= 1);
        break;
      case LedgerLine::Kind::kBatch:
        FUZZ_CHECK(l.epoch >= 0 && l.file >= 0 && l.begin <= l.end && l.records >= 0);
        break;
      case LedgerLine::Kind::kCheckpoint:
        FUZZ_CHECK(l.checkpoint_id >= 1 && l.step >= 0);
        break;
    }
    std::string again;
    freshet::AppendLedgerLine(l, &again);
    FUZZ_CHECK(again.size() == text.size() + 1 && again.back() == '\n');
    FUZZ_CHECK(std::string_view(again).substr(0, text.size()) == text);
  }
  return 0;
}
