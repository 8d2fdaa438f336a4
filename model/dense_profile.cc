#include "model/dense_profile.h"

#include <glog/logging.h>

#include <ctime>

namespace freshet {
namespace {

thread_local DenseProfile* current_profile = nullptr;

}  // namespace

DenseProfile::DenseProfile(Options options) : options_(options) {
  CHECK(current_profile == nullptr) << "a DenseProfile is already installed on this thread";
  current_profile = this;
}

DenseProfile::~DenseProfile() {
  CHECK(current_profile == this) << "DenseProfile destroyed on another thread";
  current_profile = nullptr;
}

void DenseProfile::Reset() {
  gemms_ = 0;
  flops_ = 0;
  seconds_ = 0;
  calls_.clear();
}

DenseProfile* DenseProfile::Current() { return current_profile; }

void DenseProfile::Add(const GemmCall& call) {
  ++gemms_;
  flops_ += call.flops();
  seconds_ += call.seconds;
  if (options_.keep_calls) calls_.push_back(call);
}

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace freshet
