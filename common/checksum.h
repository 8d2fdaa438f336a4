// The checksums of freshet's files, one definition each, so every file
// format and its documentation agree:
//
// FNV-1a 64: model rows, dense parameters, manifests, .snap format 1, and
// the basis of feature-token hashing.
//   h = kFnv1aOffset; for each byte b: h = (h ^ b) * kFnv1aPrime
// It is one multiply per byte in a serial chain (about 1.5 ns/byte idle, 12
// ns/byte under load on the 2-core box: seconds for a 400 MB snapshot).
//
// XXH64 (seed 0): .snap format 2. The xxHash 64-bit algorithm
// (github.com/Cyan4973/xxHash, doc/xxhash_spec.md): four independent 64-bit
// lanes over 32-byte stripes, 10-20x faster than FNV-1a 64 on large inputs.
//
// Thread safety: pure functions; an Xxh64 value is not synchronized.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
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

// Streaming XXH64 with seed 0: Update() any number of times, digest() at
// any point (it does not end the stream).
class Xxh64 {
 public:
  Xxh64() { Reset(); }
  void Reset() {
    v_[0] = kP1 + kP2;
    v_[1] = kP2;
    v_[2] = 0;
    v_[3] = 0 - kP1;
    total_ = 0;
    buffered_ = 0;
  }
  void Update(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    total_ += n;
    if (buffered_ + n < 32) {
      std::memcpy(buf_ + buffered_, p, n);
      buffered_ += n;
      return;
    }
    if (buffered_ > 0) {
      const size_t take = 32 - buffered_;
      std::memcpy(buf_ + buffered_, p, take);
      Stripe(buf_);
      p += take;
      n -= take;
      buffered_ = 0;
    }
    uint64_t v0 = v_[0], v1 = v_[1], v2 = v_[2], v3 = v_[3];
    for (; n >= 32; p += 32, n -= 32) {
      v0 = Round(v0, Load64(p));
      v1 = Round(v1, Load64(p + 8));
      v2 = Round(v2, Load64(p + 16));
      v3 = Round(v3, Load64(p + 24));
    }
    v_[0] = v0, v_[1] = v1, v_[2] = v2, v_[3] = v3;
    std::memcpy(buf_, p, n);
    buffered_ = n;
  }
  uint64_t digest() const {
    uint64_t h;
    if (total_ >= 32) {
      h = Rotl(v_[0], 1) + Rotl(v_[1], 7) + Rotl(v_[2], 12) + Rotl(v_[3], 18);
      for (uint64_t v : v_) h = (h ^ Round(0, v)) * kP1 + kP4;
    } else {
      h = v_[2] + kP5;  // v_[2] is the seed
    }
    h += total_;
    const unsigned char* p = buf_;
    size_t n = buffered_;
    for (; n >= 8; p += 8, n -= 8) h = Rotl(h ^ Round(0, Load64(p)), 27) * kP1 + kP4;
    if (n >= 4) {
      uint32_t w;
      std::memcpy(&w, p, 4);
      h = Rotl(h ^ (uint64_t{w} * kP1), 23) * kP2 + kP3;
      p += 4;
      n -= 4;
    }
    for (; n > 0; ++p, --n) h = Rotl(h ^ (*p * kP5), 11) * kP1;
    h ^= h >> 33;
    h *= kP2;
    h ^= h >> 29;
    h *= kP3;
    h ^= h >> 32;
    return h;
  }

 private:
  static constexpr uint64_t kP1 = 0x9E3779B185EBCA87ULL;
  static constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4FULL;
  static constexpr uint64_t kP3 = 0x165667B19E3779F9ULL;
  static constexpr uint64_t kP4 = 0x85EBCA77C2B2AE63ULL;
  static constexpr uint64_t kP5 = 0x27D4EB2F165667C5ULL;
  static uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
  static uint64_t Load64(const unsigned char* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);  // little-endian hosts only (checked by the file formats)
    return v;
  }
  static uint64_t Round(uint64_t acc, uint64_t in) { return Rotl(acc + in * kP2, 31) * kP1; }
  void Stripe(const unsigned char* p) {
    for (int i = 0; i < 4; ++i) v_[i] = Round(v_[i], Load64(p + 8 * i));
  }
  uint64_t v_[4];
  uint64_t total_;
  unsigned char buf_[32];
  size_t buffered_;
};

inline uint64_t Xxh64Of(const void* p, size_t n) {
  Xxh64 h;
  h.Update(p, n);
  return h.digest();
}

// A 64-bit checksum as error messages and text files show it: 16 lowercase
// hex digits, zero-padded ("00000000deadbeef").
inline std::string Hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace freshet
