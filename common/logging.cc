#include "common/logging.h"

#include <glog/logging.h>

#include <cstdlib>

namespace freshet {

void InitLogging(const char* argv0) {
  if (FLAGS_log_dir.empty() && std::getenv("GLOG_log_dir") == nullptr &&
      std::getenv("GLOG_logtostderr") == nullptr) {
    FLAGS_logtostderr = true;
  }
  google::InitGoogleLogging(argv0);
}

}  // namespace freshet
