// MpiCollective: the Collective (common/collective.h) over an MPI
// communicator, and the liveness heartbeats its waits consult.
//
// Thread safety: one thread per Collective; calls are collective (every
// member must make the same calls in the same order).
//
// Failure detection (MpiCollective, docs/RELIABILITY.md "Recovery"): every
// wait on the other members has a deadline and never spins. Each member
// publishes a liveness heartbeat (a small file per rank, rewritten every
// second by a thread, so it also beats while the member computes or
// prepares data). A wait fails as soon as a member's heartbeat is older than
// the silence limit (the member is dead or stopped: SIGKILL, SIGSTOP, a lost
// node), naming it; and in any case after the deadline (a live member stuck
// elsewhere), naming the members not yet at the operation. After a failure
// the collective stays failed: every later call returns the same error.
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/collective.h"
#include "common/status.h"

namespace freshet {

// ---- Heartbeats -------------------------------------------------------------

// One member's heartbeat, as its file says: one text line
//   "<unix_ms> <pid> <operation> <waiting 0|1> <host>"
// where operation counts the member's collective operations (1, 2, ...; 0
// before the first) and waiting is 1 while it waits in that operation.
struct HeartbeatRecord {
  int64_t unix_ms = 0;
  int64_t pid = 0;
  int64_t operation = 0;
  bool waiting = false;
  std::string host;
};

// "<dir>/heartbeat-rank<world_rank>".
std::string HeartbeatPath(const std::string& dir, int world_rank);

// Reads rank `world_rank`'s heartbeat file. NOT_FOUND if there is none;
// DATA_LOSS naming the file and the field if it does not parse.
StatusOr<HeartbeatRecord> ReadHeartbeat(const std::string& dir, int world_rank);

// Publishes this process's heartbeat: writes the file at once and then
// every `interval` from its own thread (write to a temp file, rename, so a
// reader never sees half a line), until destroyed.
// Thread safety: SetOperation may be called from any thread.
class HeartbeatPublisher {
 public:
  // Creates `dir` if missing. Fails (INTERNAL, naming the path) if the first
  // heartbeat cannot be written.
  static StatusOr<std::unique_ptr<HeartbeatPublisher>> Start(const std::string& dir, int world_rank,
                                                             std::chrono::milliseconds interval);
  ~HeartbeatPublisher();
  // The operation this process is in (published with the next beat).
  void SetOperation(int64_t operation, bool waiting);
  const std::string& path() const { return path_; }

 private:
  HeartbeatPublisher(std::string path, std::chrono::milliseconds interval);
  Status Write();
  void Loop();

  const std::string path_;
  const std::chrono::milliseconds interval_;
  std::string host_;
  std::atomic<int64_t> operation_{0};
  std::atomic<bool> waiting_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

// A member of a collective as errors name it: "<noun> <index> (rank <r>)".
struct CollectiveMember {
  int index = 0;       // in the collective
  int world_rank = 0;  // names the heartbeat file
};

// What the heartbeats say about `members` at `now_unix_ms`, seen by member
// `self` (skipped) waiting in operation `operation`:
//   silent: members whose heartbeat is older than `silence` (dead or hung),
//           with its age and pid, e.g. "worker 1 (rank 3, pid 811, host h):
//           heartbeat 12.3 s old";
//   behind: live members not yet waiting in `operation` (their operation);
//   unknown: members without a readable heartbeat file (reason).
// Each is a "; "-separated list, empty if none; `num_silent` counts silent.
struct MemberReport {
  int num_silent = 0;
  std::string silent, behind, unknown;
};
MemberReport ReportMembers(const std::vector<CollectiveMember>& members, int self,
                           const std::string& heartbeat_dir, int64_t now_unix_ms,
                           std::chrono::milliseconds silence, int64_t operation,
                           const std::string& noun);

// ---- MPI --------------------------------------------------------------------

// How an MpiCollective waits and publishes liveness.
struct CollectiveOptions {
  // The longest one operation may wait, whatever the heartbeats say (a live
  // member stuck elsewhere, or no heartbeats). Must exceed the longest
  // legitimate wait: worker 0 preparing a task's data, evaluating, saving.
  std::chrono::milliseconds deadline{std::chrono::minutes(30)};
  // Where members publish heartbeats (created; shared by all members, e.g.
  // the job's work dir). Empty: no heartbeats, only the deadline.
  std::string heartbeat_dir;
  std::chrono::milliseconds heartbeat_interval{1000};
  // A member whose heartbeat is older than this is dead or hung: a wait on
  // it fails then. Several intervals, so a busy machine is not a death.
  std::chrono::milliseconds silence{10000};
  // How errors name members: "<noun> <index> (rank <world rank>)".
  std::string member_noun = "member";
};

// Over an MPI communicator (duplicated, so its traffic never mixes with
// others'), with nonblocking operations (MPI_Iallreduce, MPI_Igatherv,
// MPI_Ibarrier) completed by MPI_Test with sleeps that back off from 20 us
// to 1 ms (10 ms after a second of waiting): no core is spun. Errors:
// UNAVAILABLE when a member's heartbeat is silent (dead or hung member,
// named), DEADLINE_EXCEEDED after options.deadline (members not yet at the
// operation named), INTERNAL for MPI errors; each names the operation, its
// sequence number, its size, and how long it waited. REQUIRES: MPI
// initialized with MPI_THREAD_MULTIPLE when heartbeats are on.
class MpiCollective : public Collective {
 public:
  // Collective over `comm` (its duplication waits under the same rules).
  static StatusOr<std::unique_ptr<MpiCollective>> Create(MPI_Comm comm,
                                                         const CollectiveOptions& options = {});
  ~MpiCollective() override;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Status AllReduceSum(float* data, size_t n) override;
  Status AllReduceSum(double* data, size_t n) override;
  Status GatherBytes(const char* data, size_t n, std::string* out) override;
  Status Barrier() override;

 private:
  MpiCollective(const CollectiveOptions& options, std::vector<CollectiveMember> members, int rank,
                std::unique_ptr<HeartbeatPublisher> heartbeat);
  template <typename T>
  Status AllReduce(T* data, size_t n, MPI_Datatype type, const char* unit);
  // Completes `*request` (operation `what` of `count` `unit`, for errors)
  // under the rules above; on failure the collective fails for good.
  Status Wait(MPI_Request* request, const char* what, int64_t count, const char* unit);

  const CollectiveOptions options_;
  const std::vector<CollectiveMember> members_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 0;
  int64_t operation_ = 0;  // sequence number of the last operation started
  std::unique_ptr<HeartbeatPublisher> heartbeat_;
  Status failed_;  // the first failure, returned by every later call
};

}  // namespace freshet
