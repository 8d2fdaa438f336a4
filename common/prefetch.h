// A software prefetch hint that the compiler keeps.
//
// GCC treats __builtin_prefetch as free of side effects, so a function whose
// only effect is a prefetch (a table's "prefetch the slot of key j + 12")
// is found `const` by its interprocedural analysis, and every call to it is
// deleted when it was not inlined first. GCC 12 at -O1 and above did that to
// all of EmbeddingTable's batch prefetches: the table's object file had no
// prefetch instruction (caught with `objdump -d | grep prefetch`; the
// table_bench figures in README changed when it was fixed). The empty
// volatile asm that names the address is a side effect the optimizer must
// keep, and it costs no instruction.
#pragma once

#include <cstddef>
#include <cstdint>

namespace freshet {

inline void PrefetchForRead(const void* p) {
  __builtin_prefetch(p);
  asm volatile("" : : "r"(p));
}

// For a line about to be written (fetched in exclusive state).
inline void PrefetchForWrite(const void* p) {
  __builtin_prefetch(p, 1);
  asm volatile("" : : "r"(p));
}

// Every cache line of [p, p + bytes), for reading or (kForWrite) writing.
template <bool kForWrite = false>
inline void PrefetchRange(const void* p, size_t bytes) {
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p);
  for (uintptr_t line = begin & ~uintptr_t{63}; line < begin + bytes; line += 64) {
    if (kForWrite) {
      PrefetchForWrite(reinterpret_cast<const void*>(line));
    } else {
      PrefetchForRead(reinterpret_cast<const void*>(line));
    }
  }
}

}  // namespace freshet
