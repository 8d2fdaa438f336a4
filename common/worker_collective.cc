#include "common/worker_collective.h"

#include <glog/logging.h>

#include "common/mpi_util.h"

#ifdef FRESHET_HAVE_NCCL
#include "common/nccl_collective.h"
#endif

namespace freshet {

StatusOr<std::unique_ptr<Collective>> CreateCollective(MPI_Comm comm, const DeviceSpec& device,
                                                       std::string* chosen,
                                                       const CollectiveOptions& options) {
  if (chosen != nullptr) *chosen = "mpi";
  if (device.kind == DeviceKind::kCpu) {
    FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<MpiCollective> mpi,
                             MpiCollective::Create(comm, options));
    return std::unique_ptr<Collective>(std::move(mpi));
  }
  // Every member finds its GPU, then all agree before anything else.
  StatusOr<int> gpu = SelectLocalGpu();
  float failed = gpu.ok() ? 0.f : 1.f;
  FRESHET_MPI_RETURN(MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_FLOAT, MPI_SUM, comm));
  if (!gpu.ok()) return gpu.status().WithContext("device " + device.ToString());
  if (failed > 0) {
    return Unavailable("device " + device.ToString() + ": " + std::to_string(int(failed)) +
                       " worker rank(s) found no usable GPU");
  }
#ifdef FRESHET_HAVE_NCCL
  StatusOr<std::unique_ptr<NcclCollective>> nccl = NcclCollective::Create(comm, *gpu);
  if (nccl.ok()) {
    if (chosen != nullptr) *chosen = "nccl";
    return std::unique_ptr<Collective>(std::move(nccl).value());
  }
  // Only the shared-GPU verdict is reached by every member alike; other
  // failures are real errors.
  if (nccl.status().code() != StatusCode::kFailedPrecondition) return nccl.status();
  LOG(WARNING) << nccl.status().message() << "; all-reducing through MPI instead";
#else
  LOG(WARNING) << "device " << device.ToString()
               << ": this binary was built without NCCL; all-reducing through MPI";
#endif
  FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<MpiCollective> mpi,
                           MpiCollective::Create(comm, options));
  return std::unique_ptr<Collective>(std::move(mpi));
}

}  // namespace freshet
