#include "common/malloc_huge_pages.h"

#include <gtest/gtest.h>

namespace freshet {
namespace {

TEST(MallocHugePagesTest, AddsTheTunableUnlessAlreadySet) {
  EXPECT_EQ(TunablesWithMallocHugePages(nullptr), "glibc.malloc.hugetlb=1");
  EXPECT_EQ(TunablesWithMallocHugePages(""), "glibc.malloc.hugetlb=1");
  EXPECT_EQ(TunablesWithMallocHugePages("glibc.malloc.arena_max=2"),
            "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1");
  // Already set, to any value, anywhere in the list: the caller's choice.
  EXPECT_EQ(TunablesWithMallocHugePages("glibc.malloc.hugetlb=0"), "");
  EXPECT_EQ(TunablesWithMallocHugePages("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2"), "");
  // A name that only starts like it is another tunable.
  EXPECT_EQ(TunablesWithMallocHugePages("glibc.malloc.hugetlbx=1"),
            "glibc.malloc.hugetlbx=1:glibc.malloc.hugetlb=1");
}

}  // namespace
}  // namespace freshet
