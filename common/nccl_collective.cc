#include "common/nccl_collective.h"

#include <glog/logging.h>
#include <nccl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "common/cuda_util.h"
#include "common/mpi_collective.h"
#include "common/mpi_util.h"

namespace freshet {

struct NcclCollective::Impl {
  std::unique_ptr<MpiCollective> mpi;
  int device = 0;
  std::chrono::milliseconds timeout{0};
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  void* staging = nullptr;  // device buffer for host-pointer sums
  size_t staging_bytes = 0;
  bool broken = false;  // aborted after a deadline or an async error

  ~Impl() {
    // Best effort: nothing can be reported from a destructor.
    if (comm != nullptr) {
      if (broken) {
        (void)ncclCommAbort(comm);
      } else {
        (void)ncclCommDestroy(comm);
      }
    }
    if (staging != nullptr) (void)cudaFree(staging);
    if (stream != nullptr) (void)cudaStreamDestroy(stream);
  }

  Status EnsureStaging(size_t bytes) {
    if (bytes <= staging_bytes) return Status::OK();
    if (staging != nullptr) {
      FRESHET_CUDA_RETURN(cudaFree(staging));
      staging = nullptr;
      staging_bytes = 0;
    }
    FRESHET_CUDA_RETURN(cudaMalloc(&staging, bytes));
    staging_bytes = bytes;
    return Status::OK();
  }

  // Waits for `s` with the deadline, sleeping between polls; checks NCCL's
  // asynchronous error while waiting.
  Status Wait(cudaStream_t s, const char* what) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto nap = std::chrono::microseconds(20);
    while (true) {
      const cudaError_t q = cudaStreamQuery(s);
      if (q == cudaSuccess) return Status::OK();
      if (q != cudaErrorNotReady)
        return CudaError(q, "cudaStreamQuery(stream)", __FILE__, __LINE__);
      ncclResult_t async = ncclSuccess;
      FRESHET_NCCL_RETURN(ncclCommGetAsyncError(comm, &async));
      if (async != ncclSuccess) {
        broken = true;
        return NcclError(async, what, __FILE__, __LINE__);
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        broken = true;
        (void)ncclCommAbort(comm);
        comm = nullptr;
        return DeadlineExceeded(std::string(what) + ": no completion within " +
                                std::to_string(timeout.count()) +
                                " ms (a peer is gone or stalled); NCCL communicator aborted");
      }
      std::this_thread::sleep_for(nap);
      nap = std::min(nap * 2, std::chrono::microseconds(1000));
    }
  }

  Status Check() const {
    if (broken || comm == nullptr) {
      return FailedPrecondition("NCCL collective: communicator aborted by an earlier error");
    }
    return Status::OK();
  }

  Status ReduceDevice(void* data, size_t n, ncclDataType_t type, cudaStream_t s) {
    FRESHET_RETURN_IF_ERROR(Check());
    FRESHET_CUDA_RETURN(cudaSetDevice(device));
    if (n == 0) return Status::OK();
    FRESHET_NCCL_RETURN(ncclAllReduce(data, data, n, type, ncclSum, comm, s));
    return Wait(s, "ncclAllReduce");
  }

  Status ReduceHost(void* data, size_t n, size_t elem, ncclDataType_t type) {
    FRESHET_RETURN_IF_ERROR(Check());
    if (n == 0) return Status::OK();
    FRESHET_CUDA_RETURN(cudaSetDevice(device));
    FRESHET_RETURN_IF_ERROR(EnsureStaging(n * elem));
    FRESHET_CUDA_RETURN(cudaMemcpyAsync(staging, data, n * elem, cudaMemcpyHostToDevice, stream));
    FRESHET_NCCL_RETURN(ncclAllReduce(staging, staging, n, type, ncclSum, comm, stream));
    FRESHET_CUDA_RETURN(cudaMemcpyAsync(data, staging, n * elem, cudaMemcpyDeviceToHost, stream));
    return Wait(stream, "ncclAllReduce");
  }
};

NcclCollective::NcclCollective(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NcclCollective::~NcclCollective() = default;

StatusOr<std::unique_ptr<NcclCollective>> NcclCollective::Create(
    MPI_Comm comm, int device, std::chrono::milliseconds timeout) {
  auto impl = std::make_unique<Impl>();
  FRESHET_ASSIGN_OR_RETURN(impl->mpi, MpiCollective::Create(comm));
  impl->device = device;
  impl->timeout = timeout;
  const int rank = impl->mpi->rank(), size = impl->mpi->size();

  // Who drives which GPU: "host/pci-bus-id", all-gathered through MPI. A
  // member whose CUDA calls fail (a bad ordinal, a GPU in exclusive-process
  // mode taken by another rank) still takes part, with an entry no other
  // member has, and every member fails after the verdict: none is left
  // waiting in the gather.
  constexpr int kIdLen = 160;
  char mine[kIdLen] = {};
  char host[64] = {};
  gethostname(host, sizeof(host) - 1);
  char bus[64] = {};
  Status local = Status::OK();
  {
    cudaError_t rc = cudaSetDevice(device);
    const char* expr = "cudaSetDevice(device)";
    if (rc == cudaSuccess) {
      rc = cudaDeviceGetPCIBusId(bus, sizeof(bus) - 1, device);
      expr = "cudaDeviceGetPCIBusId(bus, sizeof(bus) - 1, device)";
    }
    if (rc == cudaSuccess) {
      rc = cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking);
      expr = "cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking)";
    }
    if (rc != cudaSuccess) local = CudaError(rc, expr, __FILE__, __LINE__);
  }
  if (local.ok()) {
    std::snprintf(mine, sizeof(mine), "%s/%s", host, bus);
  } else {
    std::snprintf(mine, sizeof(mine), "%s/!no-gpu-rank-%d", host, rank);
  }
  std::string all;
  FRESHET_RETURN_IF_ERROR(impl->mpi->GatherBytes(mine, kIdLen, &all));
  // GatherBytes delivers to member 0 only: broadcast member 0's verdict.
  int clash[2] = {-1, -1};
  if (rank == 0) {
    for (int a = 0; a < size && clash[0] < 0; ++a) {
      for (int b = a + 1; b < size; ++b) {
        if (std::strncmp(all.data() + a * kIdLen, all.data() + b * kIdLen, kIdLen) == 0) {
          clash[0] = a;
          clash[1] = b;
          break;
        }
      }
    }
  }
  double verdict[3] = {rank == 0 ? static_cast<double>(clash[0] + 1) : 0.0,
                       rank == 0 ? static_cast<double>(clash[1] + 1) : 0.0, local.ok() ? 0.0 : 1.0};
  FRESHET_RETURN_IF_ERROR(impl->mpi->AllReduceSum(verdict, 3));
  if (!local.ok()) return local;
  if (verdict[2] > 0) {
    return Internal("NCCL: " + std::to_string(static_cast<int>(verdict[2])) +
                    " worker rank(s) could not set up their GPU (see their errors)");
  }
  if (verdict[0] > 0) {
    return FailedPrecondition("NCCL: worker ranks " + std::to_string(int(verdict[0]) - 1) +
                              " and " + std::to_string(int(verdict[1]) - 1) +
                              " drive the same GPU; NCCL refuses two ranks on one GPU");
  }

  // Member 0's unique id, with whether it got one: the others must not wait
  // in ncclCommInitRank for a member 0 that already failed.
  struct {
    int ok;
    ncclUniqueId id;
  } root = {};
  ncclResult_t id_rc = ncclSuccess;
  if (rank == 0) {
    id_rc = ncclGetUniqueId(&root.id);
    root.ok = id_rc == ncclSuccess ? 1 : 0;
  }
  FRESHET_MPI_RETURN(MPI_Bcast(&root, sizeof(root), MPI_BYTE, 0, comm));
  if (rank == 0) FRESHET_NCCL_RETURN(id_rc);
  if (!root.ok) return Internal("NCCL: worker rank 0 could not create the NCCL unique id");
  const ncclUniqueId& id = root.id;
  FRESHET_NCCL_RETURN(ncclCommInitRank(&impl->comm, size, id, rank));
  int nccl_version = 0;
  FRESHET_NCCL_RETURN(ncclGetVersion(&nccl_version));
  LOG(INFO) << "NCCL " << nccl_version << ": worker " << rank << "/" << size << " on GPU " << device
            << " (" << mine << ")";
  return std::unique_ptr<NcclCollective>(new NcclCollective(std::move(impl)));
}

int NcclCollective::rank() const { return impl_->mpi->rank(); }
int NcclCollective::size() const { return impl_->mpi->size(); }
int NcclCollective::device() const { return impl_->device; }

Status NcclCollective::AllReduceSum(float* data, size_t n) {
  return impl_->ReduceHost(data, n, sizeof(float), ncclFloat32);
}

Status NcclCollective::AllReduceSum(double* data, size_t n) {
  return impl_->ReduceHost(data, n, sizeof(double), ncclFloat64);
}

Status NcclCollective::AllReduceSumDevice(float* data, size_t n, cudaStream_t stream) {
  return impl_->ReduceDevice(data, n, ncclFloat32, stream);
}

Status NcclCollective::AllReduceSumOnDevice(float* device_data, size_t n, void* stream) {
  return impl_->ReduceDevice(device_data, n, ncclFloat32, static_cast<cudaStream_t>(stream));
}

Status NcclCollective::GatherBytes(const char* data, size_t n, std::string* out) {
  return impl_->mpi->GatherBytes(data, n, out);
}

Status NcclCollective::Barrier() { return impl_->mpi->Barrier(); }

}  // namespace freshet
