// NcclCollective: the worker ranks' Collective over NCCL, one GPU per rank.
//
// One NCCL communicator spans the members of an MPI communicator; member 0
// creates the NCCL unique id and broadcasts it over MPI. Sums run on the
// GPU: AllReduceSum(host pointer) stages the data through a device buffer
// (H2D, ncclAllReduce, D2H on the collective's own stream);
// AllReduceSumDevice / AllReduceSumOnDevice work in place on device memory
// (the GPU worker's dense gradients: no host round trip). GatherBytes and
// Barrier are not NCCL's business: they go through an MpiCollective over
// the same members.
//
// NCCL refuses two ranks on one GPU. Create checks that before touching
// NCCL (every member's host name + PCI bus id, all-gathered over MPI) and
// returns FailedPrecondition on every member alike, so callers can fall back
// to MpiCollective together (see CreateCollective in worker_collective.h).
//
// Deadlines: every wait for a sum polls the stream (sleeping between polls,
// 20 us growing to 1 ms) until `timeout`; past it the communicator is
// aborted (ncclCommAbort) and DeadlineExceeded returned; every later call
// then fails (the communicator is gone). Initialization waits inside NCCL's
// bootstrap (ncclCommInitRank), after an MPI broadcast that fails first
// when a peer is gone.
//
// Thread safety: one thread per NcclCollective (as Collective); the calls
// are collective. The constructor thread's current CUDA device is set to
// `device`.
#pragma once

#include <cuda_runtime_api.h>
#include <mpi.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "common/collective.h"
#include "common/status.h"

namespace freshet {

class NcclCollective final : public Collective {
 public:
  // Collective: every member of `comm` calls it, each with the CUDA device
  // ordinal it drives. Errors: FailedPrecondition when two members share a
  // GPU; Internal (expression, file:line) for a failed CUDA/NCCL/MPI call.
  static StatusOr<std::unique_ptr<NcclCollective>> Create(
      MPI_Comm comm, int device,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(120000));
  ~NcclCollective() override;

  int rank() const override;
  int size() const override;
  Status AllReduceSum(float* data, size_t n) override;
  Status AllReduceSum(double* data, size_t n) override;
  Status GatherBytes(const char* data, size_t n, std::string* out) override;
  Status Barrier() override;

  // In place on device memory: `data` holds n floats on this member's GPU.
  // Enqueued on `stream` and waited for (with the deadline) before return.
  Status AllReduceSumDevice(float* data, size_t n, cudaStream_t stream);
  // Collective's spelling of the same (`stream` is a cudaStream_t); the
  // GPU worker sums its dense gradient this way (worker/dense_reduce.h).
  bool sums_on_device() const override { return true; }
  Status AllReduceSumOnDevice(float* device_data, size_t n, void* stream) override;

  int device() const;

 private:
  struct Impl;
  explicit NcclCollective(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace freshet
