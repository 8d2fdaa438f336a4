// Byte intervals of input files: what a worker consumed, and what is left of
// its share after a restore (docs/CHECKPOINTS.md, "Input positions").
//
// Consumed input is recorded as line extents: a line's interval is
// [its first byte, the first byte of the next line), so every interval of a
// merged set starts and ends at a line start (or at the end of the file).
// Subtracting such a set from a worker's SplitFiles ranges leaves ranges
// whose pieces start either where SplitFiles started them or exactly at a
// line start; under the Hadoop line rule (a range reads the lines that start
// in it) the pieces of all workers read every line that no consumed
// interval holds exactly once, whatever the new worker count.
//
// Thread safety: plain values; no shared state.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "worker/data/example_io.h"

namespace freshet {

struct ByteInterval {
  uint64_t begin = 0;  // byte offsets in one file, [begin, end)
  uint64_t end = 0;
  bool operator==(const ByteInterval& o) const { return begin == o.begin && end == o.end; }
};

// A set of byte offsets of one file as sorted, disjoint, non-touching
// intervals (touching and overlapping intervals are merged on insertion).
class IntervalSet {
 public:
  // Adds [begin, end); empty intervals are ignored. Amortized O(1) when
  // intervals arrive in increasing order (a reader's), O(n) otherwise.
  void Add(uint64_t begin, uint64_t end);
  void AddAll(const IntervalSet& other);
  bool Contains(uint64_t offset) const;
  // Total bytes covered.
  uint64_t bytes() const;
  bool empty() const { return v_.empty(); }
  const std::vector<ByteInterval>& intervals() const { return v_; }
  bool operator==(const IntervalSet& o) const { return v_ == o.v_; }

 private:
  std::vector<ByteInterval> v_;
};

// Consumed input per file index (the index that FileRange::file_index holds).
using ConsumedSet = std::map<int, IntervalSet>;

// Adds the intervals of one trained batch to `set`.
void AddConsumed(const std::vector<InputInterval>& intervals, ConsumedSet* set);

// `ranges` minus the consumed intervals of their files (by
// FileRange::file_index; ranges with index -1 are kept whole), in the same
// order. If nothing is left, returns one empty range naming the first
// range's file (so a reader still learns the columns), like SplitFiles.
std::vector<FileRange> SubtractConsumed(const std::vector<FileRange>& ranges,
                                        const ConsumedSet& consumed);

}  // namespace freshet
