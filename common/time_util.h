// Wall-clock helpers shared by every module that stamps or ages files,
// heartbeats and models.
//
// Thread safety: pure functions of the system clock.
#pragma once

#include <chrono>
#include <cstdint>

namespace freshet {

// Milliseconds since the Unix epoch (system_clock: wall time, may jump).
inline int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace freshet
