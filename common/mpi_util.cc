#include "common/mpi_util.h"

#include <cstdlib>

#include "common/buffer_pool.h"

namespace freshet {

Status MpiError(int rc, const char* expr, const char* file, int line) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  return Internal(std::string(expr) + " failed at " + file + ":" + std::to_string(line) + ": " +
                  std::string(msg, len) + " (code " + std::to_string(rc) + ")");
}

Status DupComm(MPI_Comm comm, MPI_Comm* dup, int* rank, int* size) {
  FRESHET_MPI_RETURN(MPI_Comm_dup(comm, dup));
  FRESHET_MPI_RETURN(MPI_Comm_set_errhandler(*dup, MPI_ERRORS_RETURN));
  FRESHET_MPI_RETURN(MPI_Comm_rank(*dup, rank));
  FRESHET_MPI_RETURN(MPI_Comm_size(*dup, size));
  return Status::OK();
}

StatusOr<MpiSession*> MpiSession::Init(int* argc, char*** argv) {
  // Before MPI allocates anything: stable malloc thresholds, so big
  // per-message blocks are not mapped afresh depending on history (issue 16).
  TuneMallocForLargeBlocks();
  int provided = 0;
  FRESHET_MPI_RETURN(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided));
  if (provided < MPI_THREAD_MULTIPLE) {
    MPI_Finalize();
    return FailedPrecondition("MPI provides thread level " + std::to_string(provided) +
                              ", freshet needs MPI_THREAD_MULTIPLE");
  }
  TuneMallocForLargeBlocks();  // again: MPI's memory hooks may have changed them
  // Errors come back as return codes, not aborts.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int rank = 0, size = 0;
  FRESHET_MPI_RETURN(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  FRESHET_MPI_RETURN(MPI_Comm_size(MPI_COMM_WORLD, &size));
  return new MpiSession(rank, size);
}

MpiSession::~MpiSession() { MPI_Finalize(); }

void MpiSession::Abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace freshet
