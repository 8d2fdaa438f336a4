// Transparent huge pages for glibc malloc's heap, for processes that fill
// gigabytes of fresh heap at once (freshet_serve loading a full snapshot).
//
// Why. A full model load writes the whole model into newly allocated heap
// memory; with 4 KiB pages every page costs a page fault (on this VM about
// as much as copying the page), so a 5M-row dim-16 load
// (tools/serve_load_bench.cc) took 1.98 s, 40% of it in faults. glibc backs
// its heap with transparent huge pages (madvise(MADV_HUGEPAGE), one fault
// per 2 MiB) only when the GLIBC_TUNABLES environment variable says
// glibc.malloc.hugetlb=1 at process start (there is no mallopt for it): the
// same load then took 1.15 s at the same peak resident size. So the process
// re-executes itself once with the tunable added.
//
// Effect depends on the kernel: with /sys/kernel/mm/transparent_hugepage/
// enabled at "never" the tunable does nothing (and costs nothing).
#pragma once

#include <string>

namespace freshet {

// The GLIBC_TUNABLES value with glibc.malloc.hugetlb=1 added to `current`
// (null or empty: none set); "" if `current` already sets
// glibc.malloc.hugetlb (to any value: the caller's choice wins).
std::string TunablesWithMallocHugePages(const char* current);

// Call first thing in main(), before any thread starts. If GLIBC_TUNABLES
// lacks glibc.malloc.hugetlb and FRESHET_MALLOC_HUGE_PAGES is not "0",
// re-executes this program (/proc/self/exe, same pid, same argv) with it
// added; returns only when it does not (already set, opted out, or exec
// failed: a line on stderr, and the process goes on with 4 KiB pages).
void ReexecWithMallocHugePages(char** argv);

}  // namespace freshet
