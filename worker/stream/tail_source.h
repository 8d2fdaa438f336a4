// TailSource: follows a stream directory (docs/EVENT_FORMAT.md) the way
// `tail -F` follows a log, for one worker of a streaming job.
//
// Files. `part-<P>.events` is partition P's live file; a rotated file keeps
// the `part-<P>.` prefix (`part-<P>.events.<N>`, ...). Worker w of n reads
// the partitions with P mod n == w. Files are followed by identity (device +
// inode), not by name: a rename (rotation) changes nothing for the reader,
// so a rotated file is read to its end and the new live file from its start.
// Within a partition files are read strictly one after another, oldest
// first (rotated files by modification time, then name; the live file last),
// so a partition's lines come in write order. Partitions are interleaved in
// chunks of `read_chunk` bytes.
//
// Lines. Only complete lines ('\n'-terminated) are delivered, each exactly
// once; a partial last line waits for its end. The first line of every file
// is its header: it is not delivered as a line but attached to each of the
// file's lines (SourceLine::header). After `_END` appeared and every file was
// read to its end, a final unterminated line is delivered as it is, then
// Next() returns kEnd.
//
// A file is finished when it was read to its end after it stopped being the
// live file (renamed away, or unlinked): its descriptor is closed and only
// its position kept, until the file disappears from the directory. Since
// readdir(3) may skip entries of a directory being changed, a file counts as
// gone only when its open descriptor shows no links left, or after three
// listings in a row without it. Rotated files found together are ordered by
// modification time, then name with numbers compared by value (".2" < ".10").
//
// Positions. Position() is the read position: per file its name, identity
// and the byte offset / line count of the lines delivered so far. Open()
// with a saved position resumes there: files matched by identity continue at
// their offset, files not in the position are read from the start, so every
// line is delivered exactly once across a save and restore.
//
// Waiting. The directory is rescanned every `scan_interval` while data flows
// and whenever every file is at its end; with nothing to read, Next() sleeps
// with exponential back-off (1 ms doubling to `max_backoff`) until its
// deadline.
//
// Thread safety: one thread uses a TailSource.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "worker/stream/line_stream.h"

namespace freshet {

struct TailOptions {
  std::string dir;
  int worker = 0;       // this worker's index
  int num_workers = 1;  // partitions P with P % num_workers == worker are read
  std::chrono::milliseconds scan_interval{100};
  std::chrono::milliseconds max_backoff{20};
  size_t read_chunk = 1 << 16;  // bytes per read(2)
};

// Where one file was left off.
struct FilePosition {
  std::string name;  // file name within the directory when saved
  uint64_t dev = 0;  // identity
  uint64_t inode = 0;
  uint64_t offset = 0;  // bytes of complete lines delivered (header included)
  int64_t lines = 0;    // lines delivered (header included)
};

struct TailPosition {
  std::vector<FilePosition> files;
  // Text: "freshet-tail-position v1" then one line per file
  // "name<TAB>dev<TAB>inode<TAB>offset<TAB>lines".
  std::string Serialize() const;
  // InvalidArgument naming the line and field on malformed text.
  static StatusOr<TailPosition> Parse(const std::string& text);
};

// "part-<P>." prefix parsing: the partition of a stream file name, or -1
// when the name is not an event file (no "part-<digits>.events" prefix).
int StreamFilePartition(const std::string& name);

// Thread safety: not thread-safe; one thread calls Next() and Position().
class TailSource : public LineStream {
 public:
  // NotFound if `dir` does not exist (it must exist; it may be empty);
  // InvalidArgument for bad options. `restore`: resume from a saved position.
  static StatusOr<std::unique_ptr<TailSource>> Open(const TailOptions& options,
                                                    const TailPosition* restore = nullptr);
  ~TailSource() override;

  StatusOr<LineResult> Next(SourceLine* out, SteadyTime deadline) override;
  std::string Describe() const override;
  bool Idle(int partition, std::chrono::milliseconds quiet) const override;

  TailPosition Position() const;
  // Partitions seen so far (sorted).
  std::vector<int> Partitions() const override;
  // Files followed (open or finished).
  size_t files_tracked() const;
  int64_t rotations_seen() const { return rotations_; }

 private:
  struct File;
  explicit TailSource(const TailOptions& options);
  Status Scan();  // rescans the directory
  // Reads more of partition queue `q`'s front file. Returns true if the
  // front file got a complete line (or finished).
  StatusOr<bool> Fill(std::deque<std::unique_ptr<File>>* q);
  bool TakeLine(File* f, SourceLine* out);
  Status ReadHeader(File* f);

  TailOptions options_;
  // Per partition, the files in read order (front: being read).
  std::map<int, std::deque<std::unique_ptr<File>>> queues_;
  std::vector<std::unique_ptr<File>> finished_;
  std::map<std::pair<uint64_t, uint64_t>, FilePosition> restore_;  // by (dev, inode)
  std::map<int, std::deque<std::unique_ptr<File>>>::iterator rr_;  // round-robin cursor
  File* current_ = nullptr;  // file whose buffered lines are being delivered
  bool end_marker_ = false;  // _END seen (before the latest scan)
  bool ended_ = false;
  SteadyTime last_scan_{};
  int64_t rotations_ = 0;
  struct Activity {
    SteadyTime data{};  // bytes last read
    SteadyTime eof{};   // last found at the end of its live file
  };
  std::map<int, Activity> activity_;
};

}  // namespace freshet
