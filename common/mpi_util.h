// MPI helpers: checked calls and process-wide initialization.
//
// FRESHET_MPI_RETURN(MPI_Isend(...)) returns an INTERNAL Status naming the
// expression, file:line and MPI's error string if the call fails (in the shape
// of HugeCTR's HCTR_MPI_THROW, returning instead of throwing).
//
// Thread safety: MpiSession is created once per process, on the main thread.
#pragma once

#include <mpi.h>

#include <string>

#include "common/status.h"

namespace freshet {

Status MpiError(int rc, const char* expr, const char* file, int line);

#define FRESHET_MPI_RETURN(expr)                                          \
  do {                                                                    \
    int _freshet_rc = (expr);                                             \
    if (_freshet_rc != MPI_SUCCESS)                                       \
      return ::freshet::MpiError(_freshet_rc, #expr, __FILE__, __LINE__); \
  } while (0)

// A private duplicate of `comm` (so its traffic never matches anyone else's)
// with errors returned as codes, and this process's rank and the size in it.
// The caller frees *dup with MPI_Comm_free.
Status DupComm(MPI_Comm comm, MPI_Comm* dup, int* rank, int* size);

// Initializes MPI with MPI_THREAD_MULTIPLE (required: clients and servers
// call MPI from several threads) and finalizes it on destruction. Also fixes
// the process's malloc thresholds (TuneMallocForLargeBlocks, buffer_pool.h).
class MpiSession {
 public:
  // Fails if MPI cannot provide MPI_THREAD_MULTIPLE.
  static StatusOr<MpiSession*> Init(int* argc, char*** argv);
  ~MpiSession();
  int rank() const { return rank_; }
  int size() const { return size_; }
  // Ends the job now with `code` (MPI_Abort): for fatal errors when peers may
  // be blocked on this rank.
  [[noreturn]] static void Abort(int code);

 private:
  MpiSession(int rank, int size) : rank_(rank), size_(size) {}
  int rank_, size_;
};

}  // namespace freshet
