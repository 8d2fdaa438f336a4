// Collective: all-reduce among the worker ranks, for the replicated dense
// parameters. This header is the interface and the in-process group of one
// (LocalCollective); it does not include <mpi.h>. Implementations:
// MpiCollective (common/mpi_collective.h) and NcclCollective on GPU workers
// (common/nccl_collective.h); CreateCollective (common/worker_collective.h)
// picks one.
//
// Thread safety: one thread per Collective; calls are collective (every
// member must make the same calls in the same order).
#pragma once

#include <cstddef>
#include <string>

#include "common/status.h"

namespace freshet {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place: data[i] becomes the sum over members of their data[i].
  virtual Status AllReduceSum(float* data, size_t n) = 0;
  virtual Status AllReduceSum(double* data, size_t n) = 0;
  // Gathers `n` bytes from every member to member 0 (variable sizes);
  // member 0 gets them concatenated in rank order in *out.
  virtual Status GatherBytes(const char* data, size_t n, std::string* out) = 0;
  virtual Status Barrier() = 0;

  // Sums in accelerator memory: whether AllReduceSumOnDevice works. Only
  // collectives that sum on the GPU (NcclCollective) say true.
  virtual bool sums_on_device() const { return false; }
  // In place on n floats of this member's device memory, ordered after the
  // work already on `stream` (a cudaStream_t) and complete on return.
  // REQUIRES: sums_on_device() (FailedPrecondition otherwise).
  virtual Status AllReduceSumOnDevice(float* device_data, size_t n, void* stream) {
    (void)device_data;
    (void)n;
    (void)stream;
    return FailedPrecondition("this collective does not sum device memory");
  }
};

// A group of one: every operation is a no-op copy.
class LocalCollective : public Collective {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  Status AllReduceSum(float*, size_t) override { return Status::OK(); }
  Status AllReduceSum(double*, size_t) override { return Status::OK(); }
  Status GatherBytes(const char* data, size_t n, std::string* out) override {
    out->assign(data, n);
    return Status::OK();
  }
  Status Barrier() override { return Status::OK(); }
};

}  // namespace freshet
