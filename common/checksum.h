// FNV-1a 64: the checksum of freshet's files (model rows, dense parameters,
// snapshots) and the basis of feature-token hashing. One definition, so
// every file format and its documentation agree.
//
//   h = kFnv1aOffset; for each byte b: h = (h ^ b) * kFnv1aPrime
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace freshet {

inline constexpr uint64_t kFnv1aOffset = 0xcbf29ce484222325ULL;
inline constexpr uint64_t kFnv1aPrime = 0x100000001b3ULL;

// Continues hash `h` over n bytes at p (start with kFnv1aOffset).
inline uint64_t Fnv1aUpdate(uint64_t h, const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * kFnv1aPrime;
  return h;
}

inline uint64_t Fnv1a64(const void* p, size_t n) { return Fnv1aUpdate(kFnv1aOffset, p, n); }

// A 64-bit checksum as error messages and text files show it: 16 lowercase
// hex digits, zero-padded ("00000000deadbeef").
inline std::string Hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace freshet
