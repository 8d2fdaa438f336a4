// Helpers shared by the end-to-end tests that run freshet binaries as real
// processes (mpirun, freshet_train, freshet_serve ...) and read what they
// print. Header-only; each test defines FRESHET_SOURCE_DIR, FRESHET_BIN_DIR,
// FRESHET_SHARED_DATA_DIR and FRESHET_TEST_OUT_DIR (tests/CMakeLists.txt).
//
// Thread safety: the functions are reentrant (no shared state).
#pragma once

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <regex>
#include <string>

namespace freshet {
namespace e2e {

struct CommandResult {
  int rc = -1;         // exit status; -1 if it did not exit normally
  std::string output;  // stdout and stderr together
  std::string json;    // the last line starting with '{' (the binaries' summary)
};

// Runs `cmd` with /bin/sh, stderr folded into stdout, and waits for it.
inline CommandResult RunCommand(const std::string& cmd) {
  CommandResult r;
  std::FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  while (std::fgets(buf, sizeof(buf), p)) {
    r.output += buf;
    if (buf[0] == '{') r.json = buf;
  }
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// The number after "key": in a JSON line; NaN when absent.
inline double Field(const std::string& json, const std::string& key) {
  std::smatch m;
  if (!std::regex_search(json, m, std::regex("\"" + key + "\":(-?[0-9.eE+-]+)"))) return NAN;
  return std::stod(m[1]);
}

// The prefix that runs a command as `np` MPI ranks on this machine (root
// allowed, oversubscribed, unbound), killed after `timeout_s` seconds so a
// hung job fails the test instead of hanging it (0: no limit).
inline std::string Mpirun(int np, int timeout_s = 600) {
  std::string prefix = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ";
  if (timeout_s > 0) prefix += "timeout " + std::to_string(timeout_s) + " ";
  return prefix + "mpirun --oversubscribe --bind-to none -np " + std::to_string(np) + " ";
}

}  // namespace e2e
}  // namespace freshet
