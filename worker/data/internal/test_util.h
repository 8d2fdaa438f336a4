// Helpers for the tests of worker/data: temporary directories, small files
// and the location of the shared real datasets.
//
// Thread safety: test-only, single thread.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace freshet {
namespace testing_util {

// A fresh directory under $TEST_TMPDIR (or /tmp), removed with its contents.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/freshet_data_XXXXXX";
    char* made = ::mkdtemp(&tmpl[0]);
    EXPECT_NE(made, nullptr) << "mkdtemp " << tmpl;
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void WriteFile(const std::string& path, const std::string& contents) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out << contents;
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// ../shared/data as configured at build time (FRESHET_SHARED_DATA_DIR).
inline std::string SharedDataDir() {
#ifdef FRESHET_SHARED_DATA_DIR
  return FRESHET_SHARED_DATA_DIR;
#else
  return "";
#endif
}

}  // namespace testing_util
}  // namespace freshet

// Fails the test (not skips: CI always has the shared data) when the shared
// data directory is missing.
#define FRESHET_REQUIRE_SHARED_DATA()                                                    \
  ASSERT_TRUE(!::freshet::testing_util::SharedDataDir().empty() &&                       \
              ::freshet::testing_util::Exists(::freshet::testing_util::SharedDataDir())) \
      << "shared data directory '" << ::freshet::testing_util::SharedDataDir()           \
      << "' (FRESHET_SHARED_DATA_DIR) is missing: real-data tests need ../shared/data "  \
         "beside the checkout"
