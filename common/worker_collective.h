// CreateCollective: the one place that picks how worker ranks all-reduce.
//
//   device cpu -> MpiCollective
//   device gpu -> NcclCollective on this rank's GPU (SelectLocalGpu) when the
//                 binary has NCCL and every member drives its own GPU;
//                 otherwise MpiCollective, with a warning naming the reason
//                 (NCCL not built in, or two ranks on one GPU)
//
// A GPU worker without a GPU is an error, not a fallback: if any member
// cannot find its GPU, every member returns the error (the members agree
// over MPI first, so none is left waiting in a collective).
//
// Thread safety: collective over `comm`; every member calls it with the same
// device spec.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "common/device.h"
#include "common/mpi_collective.h"
#include "common/status.h"

namespace freshet {

// REQUIRES: MPI initialized. `*chosen` (optional) receives "mpi" or "nccl".
// `options` (deadlines, heartbeats) apply to the MPI collective.
StatusOr<std::unique_ptr<Collective>> CreateCollective(MPI_Comm comm, const DeviceSpec& device,
                                                       std::string* chosen = nullptr,
                                                       const CollectiveOptions& options = {});

}  // namespace freshet
