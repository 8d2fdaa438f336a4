// Helpers for the tests of worker/data: temporary directories, small files
// and the location of the shared real datasets.
//
// Thread safety: test-only, single thread.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "worker/data/example_io.h"

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

// The public datasets' directory: $FRESHET_SHARED_DATA_DIR when set, else
// ../shared/data as configured at build time (FRESHET_SHARED_DATA_DIR).
inline std::string SharedDataDir() {
  const char* env = std::getenv("FRESHET_SHARED_DATA_DIR");
  if (env != nullptr && *env != '\0') return env;
#ifdef FRESHET_SHARED_DATA_DIR
  return FRESHET_SHARED_DATA_DIR;
#else
  return "";
#endif
}

// "" when every one of `files` (relative to SharedDataDir()) exists; else
// a message naming the missing ones and where to get them.
inline std::string MissingSharedData(std::initializer_list<const char*> files) {
  std::string missing;
  for (const char* f : files) {
    if (!Exists(SharedDataDir() + "/" + f)) missing += std::string(missing.empty() ? "" : ", ") + f;
  }
  if (missing.empty()) return "";
  return "needs the public dataset file(s) " + missing + " under '" + SharedDataDir() +
         "' (missing): put the datasets in ../shared/data beside the checkout (README.md, "
         "section \"Data\", says where to get each one), or point FRESHET_SHARED_DATA_DIR at "
         "them";
}

// Whether a missing dataset fails the test instead of skipping it
// (FRESHET_REQUIRE_SHARED_DATA=1; CI sets it, since CI always has the data).
inline bool SharedDataRequired() {
  const char* env = std::getenv("FRESHET_REQUIRE_SHARED_DATA");
  return env != nullptr && std::string(env) == "1";
}

// Examples from a vector, then the end (a trainer's source in tests).
class VectorSource : public ExampleSource {
 public:
  explicit VectorSource(std::vector<Example> examples) : examples_(std::move(examples)) {}
  StatusOr<Outcome> Poll(Example* ex, std::chrono::steady_clock::time_point) override {
    if (next_ >= examples_.size()) return Outcome::kEnd;
    *ex = examples_[next_++];
    ++stats_.lines;
    ++stats_.examples;
    return Outcome::kExample;
  }
  const ReadStats& stats() const override { return stats_; }

 private:
  std::vector<Example> examples_;
  size_t next_ = 0;
  ReadStats stats_;
};

}  // namespace testing_util
}  // namespace freshet

// Skips the test (ctest shows it as Skipped, with the message) when one of
// the named files of ../shared/data is missing, e.g.
//   FRESHET_REQUIRE_SHARED_DATA("taobao/UserBehavior_time_slice.csv");
// With FRESHET_REQUIRE_SHARED_DATA=1 in the environment it fails instead.
#define FRESHET_REQUIRE_SHARED_DATA(...)                                             \
  do {                                                                               \
    const std::string freshet_missing_ =                                             \
        ::freshet::testing_util::MissingSharedData({__VA_ARGS__});                   \
    if (!freshet_missing_.empty()) {                                                 \
      if (::freshet::testing_util::SharedDataRequired()) FAIL() << freshet_missing_; \
      GTEST_SKIP() << freshet_missing_;                                              \
    }                                                                                \
  } while (0)
