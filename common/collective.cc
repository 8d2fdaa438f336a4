#include "common/collective.h"

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "common/mpi_util.h"

namespace freshet {

Status LocalCollective::GatherBytes(const char* data, size_t n, std::string* out) {
  out->assign(data, n);
  return Status::OK();
}

StatusOr<std::unique_ptr<MpiCollective>> MpiCollective::Create(MPI_Comm comm) {
  MPI_Comm dup;
  int rank = 0, size = 0;
  FRESHET_RETURN_IF_ERROR(DupComm(comm, &dup, &rank, &size));
  return std::unique_ptr<MpiCollective>(new MpiCollective(dup, rank, size));
}

MpiCollective::~MpiCollective() { MPI_Comm_free(&comm_); }

namespace {

// MPI counts are ints: reduce in chunks.
template <typename T>
Status AllReduceChunks(T* data, size_t n, MPI_Datatype type, MPI_Comm comm) {
  constexpr size_t kChunk = 1u << 28;
  for (size_t off = 0; off < n; off += kChunk) {
    const int count = static_cast<int>(std::min(kChunk, n - off));
    FRESHET_MPI_RETURN(MPI_Allreduce(MPI_IN_PLACE, data + off, count, type, MPI_SUM, comm));
  }
  return Status::OK();
}

}  // namespace

Status MpiCollective::AllReduceSum(float* data, size_t n) {
  return AllReduceChunks(data, n, MPI_FLOAT, comm_);
}

Status MpiCollective::AllReduceSum(double* data, size_t n) {
  return AllReduceChunks(data, n, MPI_DOUBLE, comm_);
}

Status MpiCollective::GatherBytes(const char* data, size_t n, std::string* out) {
  if (n > static_cast<size_t>(INT_MAX)) return InvalidArgument("GatherBytes: over 2 GiB");
  int mine = static_cast<int>(n);
  std::vector<int> counts(size_), displs(size_);
  FRESHET_MPI_RETURN(MPI_Gather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, comm_));
  int64_t total = 0;
  if (rank_ == 0) {
    for (int r = 0; r < size_; ++r) {
      displs[r] = static_cast<int>(total);
      total += counts[r];
    }
    if (total > INT_MAX) return InvalidArgument("GatherBytes: over 2 GiB in total");
    out->resize(static_cast<size_t>(total));
  }
  FRESHET_MPI_RETURN(MPI_Gatherv(data, mine, MPI_BYTE, rank_ == 0 ? out->data() : nullptr,
                                 counts.data(), displs.data(), MPI_BYTE, 0, comm_));
  return Status::OK();
}

Status MpiCollective::Barrier() {
  FRESHET_MPI_RETURN(MPI_Barrier(comm_));
  return Status::OK();
}

}  // namespace freshet
