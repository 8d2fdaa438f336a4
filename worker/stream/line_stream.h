// LineStream: where a streaming worker's event lines come from (a directory
// of tailed files, TailSource; or socket connections, SocketSource). Both
// deliver complete lines with the header of the file or connection they
// came from, and a partition id that the event-time watermark is kept per.
//
// Thread safety: one thread uses a LineStream.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace freshet {

using SteadyTime = std::chrono::steady_clock::time_point;

// The wall clock in unix milliseconds (what SourceLine::read_unix_ms holds).
inline int64_t WallUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One line; the views and pointers stay valid until the next Next() call.
struct SourceLine {
  std::string_view text;                // without the '\n'
  const std::string* header = nullptr;  // the first line of its file / connection
  const std::string* origin = nullptr;  // file path or connection name, for messages
  int64_t line_no = 0;                  // 1-based in its file or connection (header: 1)
  int partition = 0;                    // file partition or connection id
  // Wall time (unix ms) of the read (file pread / socket read) that brought
  // the end of this line in: when the worker read it, the start of its
  // freshness clock (docs/METRICS.md "Freshness"). One clock read per read
  // call, not per line. 0: unknown.
  int64_t read_unix_ms = 0;
};

enum class LineResult {
  kLine,  // *out holds a line
  kNone,  // nothing arrived before the deadline
  kEnd,   // the stream ended (every line was delivered)
};

// Thread safety: one thread uses a LineStream (implementations say more).
class LineStream {
 public:
  virtual ~LineStream() = default;
  // The next complete line, waiting (blocking or sleeping with back-off,
  // never spinning) until `deadline` at most. Errors: I/O failures, a file
  // or connection without a valid first line.
  virtual StatusOr<LineResult> Next(SourceLine* out, SteadyTime deadline) = 0;
  // Whether `partition` has been quiet: the last look at it found nothing
  // new, at least `quiet` after the last bytes arrived from it. A partition
  // with unread data is never idle, however slowly it is read; unknown
  // partitions are idle. (The event-time watermark ignores idle partitions.)
  virtual bool Idle(int partition, std::chrono::milliseconds quiet) const = 0;
  // The partitions (files' partitions, open connections) known now, sorted.
  virtual std::vector<int> Partitions() const = 0;
  // For status lines and logs, e.g. "dir out/stream (partitions 0, 2 of 4)".
  virtual std::string Describe() const = 0;
};

}  // namespace freshet
