#include "worker/data/input_intervals.h"

#include <algorithm>

namespace freshet {

void IntervalSet::Add(uint64_t begin, uint64_t end) {
  if (begin >= end) return;
  // Fast path: at or after the last interval (a reader's order).
  if (v_.empty() || begin > v_.back().end) {
    v_.push_back({begin, end});
    return;
  }
  if (begin >= v_.back().begin) {
    v_.back().end = std::max(v_.back().end, end);
    return;
  }
  // General case: the first interval whose end reaches begin, the first
  // whose begin is past end; everything between merges into one.
  auto lo = std::lower_bound(v_.begin(), v_.end(), begin,
                             [](const ByteInterval& a, uint64_t b) { return a.end < b; });
  auto hi = std::upper_bound(v_.begin(), v_.end(), end,
                             [](uint64_t e, const ByteInterval& a) { return e < a.begin; });
  if (lo == hi) {
    v_.insert(lo, {begin, end});
    return;
  }
  ByteInterval merged{std::min(begin, lo->begin), std::max(end, (hi - 1)->end)};
  auto it = v_.erase(lo, hi);
  v_.insert(it, merged);
}

void IntervalSet::AddAll(const IntervalSet& other) {
  for (const ByteInterval& i : other.v_) Add(i.begin, i.end);
}

bool IntervalSet::Contains(uint64_t offset) const {
  auto it = std::upper_bound(v_.begin(), v_.end(), offset,
                             [](uint64_t o, const ByteInterval& a) { return o < a.begin; });
  return it != v_.begin() && offset < (it - 1)->end;
}

uint64_t IntervalSet::bytes() const {
  uint64_t b = 0;
  for (const ByteInterval& i : v_) b += i.end - i.begin;
  return b;
}

void AddConsumed(const std::vector<InputInterval>& intervals, ConsumedSet* set) {
  for (const InputInterval& i : intervals) (*set)[i.file].Add(i.begin, i.end);
}

std::vector<FileRange> SubtractConsumed(const std::vector<FileRange>& ranges,
                                        const ConsumedSet& consumed) {
  std::vector<FileRange> out;
  for (const FileRange& r : ranges) {
    auto it = consumed.find(r.file_index);
    if (r.file_index < 0 || it == consumed.end()) {
      if (r.begin < r.end) out.push_back(r);
      continue;
    }
    uint64_t at = r.begin;
    const auto& v = it->second.intervals();
    auto c = std::upper_bound(v.begin(), v.end(), at,
                              [](uint64_t o, const ByteInterval& a) { return o < a.end; });
    for (; c != v.end() && c->begin < r.end && at < r.end; ++c) {
      if (c->begin > at) {
        FileRange piece = r;
        piece.begin = at;
        piece.end = c->begin;
        out.push_back(piece);
      }
      at = std::max(at, c->end);
    }
    if (at < r.end) {
      FileRange piece = r;
      piece.begin = at;
      out.push_back(piece);
    }
  }
  if (out.empty() && !ranges.empty()) {
    FileRange none = ranges.front();
    none.end = none.begin;
    out.push_back(none);
  }
  return out;
}

}  // namespace freshet
