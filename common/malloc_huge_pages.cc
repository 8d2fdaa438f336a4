#include "common/malloc_huge_pages.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace freshet {

namespace {
constexpr char kTunable[] = "glibc.malloc.hugetlb";
}  // namespace

std::string TunablesWithMallocHugePages(const char* current) {
  const std::string cur = current != nullptr ? current : "";
  // Tunables are name=value pairs separated by ':'.
  size_t start = 0;
  while (start <= cur.size()) {
    size_t end = cur.find(':', start);
    if (end == std::string::npos) end = cur.size();
    const std::string item = cur.substr(start, end - start);
    if (item.compare(0, sizeof(kTunable) - 1, kTunable) == 0 &&
        (item.size() == sizeof(kTunable) - 1 || item[sizeof(kTunable) - 1] == '=')) {
      return "";
    }
    start = end + 1;
  }
  const std::string add = std::string(kTunable) + "=1";
  return cur.empty() ? add : cur + ":" + add;
}

void ReexecWithMallocHugePages(char** argv) {
  const char* opt = std::getenv("FRESHET_MALLOC_HUGE_PAGES");
  if (opt != nullptr && std::strcmp(opt, "0") == 0) return;
  const std::string tunables = TunablesWithMallocHugePages(std::getenv("GLIBC_TUNABLES"));
  if (tunables.empty()) return;  // set already (by us before the exec, or by the caller)
  if (::setenv("GLIBC_TUNABLES", tunables.c_str(), 1) != 0) return;
  ::execv("/proc/self/exe", argv);
  // Still here: the exec failed. Go on without huge pages.
  std::fprintf(stderr,
               "%s: could not re-execute with GLIBC_TUNABLES=%s (%s); the heap uses 4 KiB "
               "pages\n",
               argv[0], tunables.c_str(), std::strerror(errno));
}

}  // namespace freshet
