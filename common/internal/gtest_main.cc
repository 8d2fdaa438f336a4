// main() of every freshet_cc_test binary (cmake/FreshetHelpers.cmake).
//
// Like gtest_main, plus three things every test gets:
//   - Skips are visible. A run in which some test called GTEST_SKIP() and
//     none failed exits with kSkipExitCode (77), which the helper declares
//     as the test's SKIP_RETURN_CODE: ctest then reports the test as
//     Skipped, not Passed; the gtest output names the skipped tests and the
//     reasons. A failure still exits 1 (a skip never hides a failure).
//   - A scratch directory per run: main() creates $TMPDIR/ft-XXXXXX (TMPDIR
//     unset: /tmp), points TMPDIR and TEST_TMPDIR at it (so
//     ::testing::TempDir(), std::filesystem::temp_directory_path(), mkdtemp
//     under $TMPDIR and the processes a test starts all write there) and
//     removes it with everything in it when the tests end. Set
//     FRESHET_KEEP_TEST_TMPDIR=1 to keep it for debugging (its path is
//     printed).
//   - glog writes to stderr unless --log_dir (or GLOG_log_dir) is given, so
//     no freshet_*.log.* files are left behind.
//
// Thread safety: main() runs before and after the tests' threads.
#include <glog/logging.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace {

constexpr int kSkipExitCode = 77;

// A death-test child re-executed by gtest: it must not make (and leave) a
// scratch directory of its own.
bool IsDeathTestChild(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strstr(argv[i], "internal_run_death_test") != nullptr) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const bool death_child = IsDeathTestChild(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  if (FLAGS_log_dir.empty() && std::getenv("GLOG_log_dir") == nullptr) {
    FLAGS_logtostderr = true;
  }
  std::string scratch;
  if (!death_child) {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/ft-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::fprintf(stderr, "freshet: mkdtemp %s: %s\n", tmpl.c_str(), std::strerror(errno));
      return 1;
    }
    scratch = tmpl;
    ::setenv("TMPDIR", scratch.c_str(), 1);
    ::setenv("TEST_TMPDIR", scratch.c_str(), 1);
  }
  const int rc = RUN_ALL_TESTS();
  if (!scratch.empty()) {
    const char* keep = std::getenv("FRESHET_KEEP_TEST_TMPDIR");
    if (keep != nullptr && std::strcmp(keep, "1") == 0) {
      std::fprintf(stderr, "freshet: kept the test scratch directory %s\n", scratch.c_str());
    } else {
      std::error_code ec;
      std::filesystem::remove_all(scratch, ec);
      if (ec)
        std::fprintf(stderr, "freshet: cannot remove %s: %s\n", scratch.c_str(),
                     ec.message().c_str());
    }
  }
  if (rc != 0) return rc;
  const ::testing::UnitTest& unit = *::testing::UnitTest::GetInstance();
  if (unit.skipped_test_count() > 0) {
    std::fprintf(stderr,
                 "freshet: %d of %d tests skipped (see [  SKIPPED ] above), none failed: "
                 "exit %d so that ctest reports Skipped\n",
                 unit.skipped_test_count(), unit.test_to_run_count(), kSkipExitCode);
    return kSkipExitCode;
  }
  return 0;
}
