// Helpers shared by the libFuzzer targets in tests/fuzz/ (see
// docs/RELIABILITY.md, "Hostile input").
//
// Conventions of every target:
//   - a target never trusts the input to be well formed: whatever the bytes,
//     the code under test must return an error Status or a valid result;
//     a crash, a sanitizer report, an out-of-memory or a hang is a finding;
//   - where the code under test promises more (a parsed record is in range,
//     format(parse(x)) parses back to the same record), the target checks
//     it with FUZZ_CHECK, which aborts with the expression;
//   - file parsers get the input as a file (FuzzFile), since opening and
//     reading are part of what is fuzzed.
//
// Thread safety: FuzzFile and FuzzDir are used by one thread (libFuzzer runs
// one input at a time).
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "common/checksum.h"

// Aborts (a libFuzzer crash with this message) when `cond` is false.
#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace freshet {
namespace fuzz {

// A per-process scratch directory: /dev/shm when it exists (no disk I/O per
// input), else $TMPDIR or /tmp. Removed at exit only if empty (targets clean
// up their own files).
inline const std::string& ScratchDir() {
  static const std::string dir = [] {
    const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : std::getenv("TMPDIR");
    std::string d = std::string(base ? base : "/tmp") + "/freshet-fuzz-" + std::to_string(getpid());
    mkdir(d.c_str(), 0700);
    return d;
  }();
  return dir;
}

// Writes `data` to ScratchDir()/name (replacing it) and returns the path.
inline std::string WriteFile(const std::string& name, const void* data, size_t n) {
  const std::string path = ScratchDir() + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  FUZZ_CHECK(f != nullptr);
  if (n > 0) FUZZ_CHECK(std::fwrite(data, 1, n, f) == n);
  FUZZ_CHECK(std::fclose(f) == 0);
  return path;
}

// `data` with its last 8 bytes replaced by the FNV-1a 64 of the bytes before
// them (or appended when shorter), so that inputs get past a checksum trailer
// and reach the structural checks behind it.
inline std::string WithFnvTrailer(std::string_view data) {
  std::string s(data);
  if (s.size() >= 8) s.resize(s.size() - 8);
  const uint64_t h = Fnv1a64(s.data(), s.size());
  s.append(reinterpret_cast<const char*>(&h), sizeof(h));
  return s;
}

// Consumes input bytes front to back (a tiny FuzzedDataProvider).
class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(reinterpret_cast<const char*>(data)), n_(size) {}
  // The next byte, or 0 when none is left.
  uint8_t Byte() {
    if (n_ == 0) return 0;
    --n_;
    return static_cast<uint8_t>(*p_++);
  }
  bool done() const { return n_ == 0; }
  // The bytes up to the next occurrence of `sep` (consumed, not returned),
  // or all the rest.
  std::string_view Until(std::string_view sep) {
    const std::string_view all(p_, n_);
    const size_t at = all.find(sep);
    const size_t take = at == std::string_view::npos ? n_ : at;
    const size_t skip = at == std::string_view::npos ? n_ : at + sep.size();
    p_ += skip;
    n_ -= skip;
    return all.substr(0, take);
  }
  std::string_view Rest() {
    const std::string_view all(p_, n_);
    p_ += n_;
    n_ = 0;
    return all;
  }

 private:
  const char* p_;
  size_t n_;
};

}  // namespace fuzz
}  // namespace freshet
