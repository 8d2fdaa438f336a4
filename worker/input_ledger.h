// InputLedger: an append-only record of the input each trained batch
// consumed (`freshet_train --input_ledger_dir=DIR`), for checking after a
// crash and a resume that every record was trained exactly once up to the
// checkpoint cut (docs/CHECKPOINTS.md, "Trained-input ledger").
//
// File DIR/worker-<w>.ledger, opened O_APPEND (attempts of a job append to
// the same file). Text lines, each written with one write(2) and no
// user-space buffering, so a SIGKILL loses at most the line being written
// and lines of concurrent appenders never interleave:
//   attempt <unix_ms> restored_from <ckpt-id or 0> workers <W>
//   b <epoch> <file_index> <begin_byte> <end_byte> <records>
//   c <ckpt-id> <step>
// One `attempt` line when a run starts; per trained batch one `b` line per
// contiguous interval it consumed (epoch 0-based; file_index into the job's
// training files sorted by path; [begin, end) whole lines; records: the
// examples trained from those bytes, bad lines excluded); one `c` line per
// checkpoint, once every worker agreed its files are written and before
// worker 0 writes its MANIFEST (so every checkpoint a restore can name has
// its `c` line in every worker's ledger).
//
// Thread safety: one thread uses a ledger.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "worker/data/example_io.h"

namespace freshet {

// One decoded ledger line.
struct LedgerLine {
  enum class Kind { kAttempt, kBatch, kCheckpoint };
  Kind kind = Kind::kAttempt;
  // kAttempt.
  int64_t unix_ms = 0;
  int64_t restored_from = 0;  // checkpoint id, 0: started fresh
  int workers = 0;            // >= 1
  // kBatch: [begin, end) of file `file` in epoch `epoch`, `records` trained.
  int epoch = 0;
  int file = 0;
  uint64_t begin = 0;
  uint64_t end = 0;
  int64_t records = 0;
  // kCheckpoint.
  int64_t checkpoint_id = 0;  // >= 1
  int64_t step = 0;
};

// Appends the text of `line` and '\n' to *out: the exact bytes InputLedger
// writes for it.
void AppendLedgerLine(const LedgerLine& line, std::string* out);

// Parses one ledger line (without its '\n') into *out. InvalidArgument
// naming the field on anything that is not exactly one of the three forms:
// single spaces between fields, decimal integers without signs or leading
// zeros (ids, counts and offsets >= 0; workers and checkpoint ids >= 1;
// epoch, file and workers fit an int; begin <= end, as
// tests/ledger_check.py accepts). Every accepted line is
// exactly AppendLedgerLine's text for the decoded value. Readers drop a last
// line without its '\n' (cut short by a kill).
Status ParseLedgerLine(std::string_view text, LedgerLine* out);

class InputLedger {
 public:
  // Creates DIR (and parents) if needed, opens DIR/worker-<worker>.ledger
  // for appending and writes the attempt line. Internal naming the file on
  // errors.
  static StatusOr<std::unique_ptr<InputLedger>> Open(const std::string& dir, int worker,
                                                     int num_workers, int64_t restored_from);
  ~InputLedger();
  InputLedger(const InputLedger&) = delete;
  InputLedger& operator=(const InputLedger&) = delete;

  // One `b` line per interval, all in one write(2). Nothing for no
  // intervals.
  Status AppendBatch(int epoch, const std::vector<InputInterval>& intervals);
  // The `c` line.
  Status AppendCheckpoint(int64_t id, int64_t step);
  const std::string& path() const { return path_; }

 private:
  InputLedger() = default;
  Status Write();  // writes buf_ with one write(2)
  int fd_ = -1;
  std::string path_;
  std::string buf_;  // reused line buffer
};

}  // namespace freshet
