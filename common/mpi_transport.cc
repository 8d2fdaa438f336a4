#include "common/mpi_transport.h"

#include <glog/logging.h>
#include <sched.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <set>
#include <string>

#include "common/mpi_util.h"

namespace freshet {

StatusOr<std::unique_ptr<MpiTransport>> MpiTransport::Create(MPI_Comm comm, Options options) {
  int provided = 0;
  FRESHET_MPI_RETURN(MPI_Query_thread(&provided));
  if (provided < MPI_THREAD_MULTIPLE) {
    return FailedPrecondition("MpiTransport needs MPI_THREAD_MULTIPLE, MPI provides level " +
                              std::to_string(provided));
  }
  MPI_Comm dup;
  int rank = 0, size = 0;
  FRESHET_RETURN_IF_ERROR(DupComm(comm, &dup, &rank, &size));
  std::unique_ptr<MpiTransport> transport(new MpiTransport(dup, rank, size));
  if (options.start_progress) FRESHET_RETURN_IF_ERROR(transport->Start());
  return transport;
}

namespace {
// Ranks of this job on this node, from the launcher's environment (Open
// MPI, MPICH / Hydra, SLURM); 0 if none says.
int LocalRanks() {
  for (const char* name :
       {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"}) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') continue;
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    if (*end == '\0' && n > 0 && n < INT_MAX) return static_cast<int>(n);
  }
  return 0;
}

// Cores this process may run on (its affinity mask: taskset, cpusets).
int UsableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

// 2 ms where every rank of the node can have a core of its own; none
// where they cannot: then every progress thread that polls hot stays
// runnable, and the run queue they make delays the threads with work. On
// the 2-core box, 5 ranks polling hot took training 29-36 s against 24-28 s
// without, and made the exporter's fsyncs (which wait for the kernel's
// journal thread) take up to 2.7 s (tools/freshness_bench.sh at 0.25 s).
// Where the progress thread does not poll hot: the poll interval while a
// send is in flight or traffic just stopped (instead of yielding).
constexpr std::chrono::microseconds kOversubscribedPoll{20};

std::chrono::microseconds DefaultHotPoll(int* local_ranks, int* cores) {
  *local_ranks = LocalRanks();
  *cores = UsableCores();
  if (*local_ranks > *cores) return std::chrono::microseconds(0);
  return std::chrono::microseconds(2000);
}

std::chrono::microseconds HotPollFromEnv(std::chrono::microseconds fallback) {
  const char* v = std::getenv("FRESHET_MPI_HOT_POLL_US");
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long us = std::strtol(v, &end, 10);
  if (*end != '\0' || us < 0) {
    LOG(WARNING) << "FRESHET_MPI_HOT_POLL_US='" << v << "' is not a count of microseconds; using "
                 << fallback.count();
    return fallback;
  }
  return std::chrono::microseconds(us);
}

// The default for this node, unless FRESHET_MPI_HOT_POLL_US says otherwise.
std::chrono::microseconds HotPollFor(int rank) {
  int local_ranks = 0, cores = 0;
  const std::chrono::microseconds fallback = DefaultHotPoll(&local_ranks, &cores);
  const std::chrono::microseconds hot = HotPollFromEnv(fallback);
  VLOG(1) << "rank " << rank << ": " << (local_ranks > 0 ? std::to_string(local_ranks) : "?")
          << " ranks on this node, " << cores << " cores: progress thread polls hot for "
          << hot.count() << " us after traffic";
  return hot;
}
}  // namespace

MpiTransport::MpiTransport(MPI_Comm comm, int rank, int size)
    : Transport(rank, size), comm_(comm), hot_poll_(HotPollFor(rank)) {}

MpiTransport::~MpiTransport() { Shutdown(); }

Status MpiTransport::Start() {
  MutexLock l(&start_mu_);
  if (shut_down_.load()) return Unavailable("MPI transport is shut down");
  if (started_.load()) return Status::OK();
  started_.store(true);
  progress_ = std::thread([this] { ProgressLoop(); });
  return Status::OK();
}

Status MpiTransport::CheckSendable(size_t frame_bytes) const {
  if (shut_down_.load()) return Unavailable("MPI transport is shut down");
  if (frame_bytes > static_cast<size_t>(INT_MAX)) {
    return InvalidArgument("message of " + std::to_string(frame_bytes) +
                           " bytes exceeds the 2 GiB MPI message limit");
  }
  return Status::OK();
}

Status MpiTransport::PostLocked(int dest, std::vector<char> frame, int latest_channel) {
  MPI_Request req;
  if (latest_channel < 0) {
    FRESHET_MPI_RETURN(
        MPI_Isend(frame.data(), static_cast<int>(frame.size()), MPI_BYTE, dest, kTag, comm_, &req));
  } else {
    FRESHET_MPI_RETURN(MPI_Issend(frame.data(), static_cast<int>(frame.size()), MPI_BYTE, dest,
                                  kTag, comm_, &req));
  }
  send_reqs_.push_back(req);
  send_bufs_.push_back(std::move(frame));  // moving keeps data() stable
  send_dests_.push_back(dest);
  send_latest_.push_back(static_cast<uint8_t>(latest_channel + 1));
  last_post_ns_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                      std::memory_order_relaxed);
  return Status::OK();
}

Status MpiTransport::SendFrame(int dest, std::vector<char> frame) {
  FRESHET_RETURN_IF_ERROR(CheckSendable(frame.size()));
  MutexLock l(&send_mu_);
  if (!error_.ok()) return error_;
  return PostLocked(dest, std::move(frame), /*latest_channel=*/-1);
}

StatusOr<bool> MpiTransport::SendLatestFrame(int dest, int channel, std::vector<char> frame) {
  FRESHET_RETURN_IF_ERROR(CheckSendable(frame.size()));
  MutexLock l(&send_mu_);
  if (!error_.ok()) return error_;
  if (latest_pending_.empty()) {
    latest_pending_.assign(static_cast<size_t>(size()) * kLatestChannels, 0);
  }
  const size_t slot = static_cast<size_t>(dest) * kLatestChannels + static_cast<size_t>(channel);
  if (latest_pending_[slot]) {
    buffer_pool()->Give(std::move(frame));
    return false;  // the previous one is not received yet
  }
  FRESHET_RETURN_IF_ERROR(PostLocked(dest, std::move(frame), channel));
  latest_pending_[slot] = 1;
  return true;
}

StatusOr<Transport::Frame> MpiTransport::RecvFrame(Millis timeout) {
  StatusOr<FrameQueue::Item> it = inbox_.Pop(timeout);
  if (!it.ok()) return it.status();
  return Frame{it->peer, std::move(it->bytes)};
}

int MpiTransport::CompleteSendsLocked() {
  if (send_reqs_.empty()) return 0;
  std::vector<int> done(send_reqs_.size());
  int outcount = 0;
  int rc = MPI_Testsome(static_cast<int>(send_reqs_.size()), send_reqs_.data(), &outcount,
                        done.data(), MPI_STATUSES_IGNORE);
  if (rc != MPI_SUCCESS) {
    error_ = MpiError(rc, "MPI_Testsome(sends)", __FILE__, __LINE__);
    LOG(ERROR) << error_;
    return 0;
  }
  if (outcount <= 0) return 0;  // MPI_UNDEFINED when no active requests
  // Remove completed entries, highest index first, swapping with the last.
  std::sort(done.begin(), done.begin() + outcount, std::greater<int>());
  for (int k = 0; k < outcount; ++k) {
    const size_t i = static_cast<size_t>(done[k]);
    const size_t last = send_reqs_.size() - 1;
    buffer_pool()->Give(std::move(send_bufs_[i]));  // sent: reuse it
    if (send_latest_[i] != 0) {
      latest_pending_[static_cast<size_t>(send_dests_[i]) * kLatestChannels + send_latest_[i] - 1] =
          0;
    }
    if (i != last) {
      send_reqs_[i] = send_reqs_[last];
      send_bufs_[i] = std::move(send_bufs_[last]);
      send_dests_[i] = send_dests_[last];
      send_latest_[i] = send_latest_[last];
    }
    send_reqs_.pop_back();
    send_bufs_.pop_back();
    send_dests_.pop_back();
    send_latest_.pop_back();
  }
  return outcount;
}

int MpiTransport::DeliverReceives() {
  int moved = 0;
  std::vector<int> waiting;  // sources with an earlier receive in flight
  size_t keep = 0;
  for (size_t i = 0; i < receiving_.size(); ++i) {
    PendingReceive& r = receiving_[i];
    int flag = 0;
    if (std::find(waiting.begin(), waiting.end(), r.source) == waiting.end()) {
      const int rc = MPI_Test(&r.request, &flag, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS) {
        LOG(ERROR) << MpiError(rc, "MPI_Test(receive)", __FILE__, __LINE__);
        flag = 0;
      }
    }
    if (flag) {
      inbox_.Push(r.source, std::move(r.buffer));
      ++moved;
      continue;
    }
    waiting.push_back(r.source);
    if (keep != i) receiving_[keep] = std::move(r);
    ++keep;
  }
  receiving_.resize(keep);
  return moved;
}

void MpiTransport::ProgressLoop() {
  int idle = 0;
  while (!stop_.load(std::memory_order_acquire)) {
    bool did = false;
    for (int i = 0; i < 64; ++i) {
      int flag = 0;
      MPI_Message handle;
      MPI_Status status;
      int rc = MPI_Improbe(MPI_ANY_SOURCE, kTag, comm_, &flag, &handle, &status);
      if (rc != MPI_SUCCESS) {
        LOG(ERROR) << MpiError(rc, "MPI_Improbe", __FILE__, __LINE__);
        break;
      }
      if (!flag) break;
      int count = 0;
      MPI_Get_count(&status, MPI_BYTE, &count);
      // A recycled buffer: no fresh pages, no zero fill (common/buffer_pool.h).
      PendingReceive r;
      r.source = status.MPI_SOURCE;
      r.buffer = buffer_pool()->Take(static_cast<size_t>(count));
      rc = MPI_Imrecv(r.buffer.data(), count, MPI_BYTE, &handle, &r.request);
      if (rc != MPI_SUCCESS) {
        LOG(ERROR) << MpiError(rc, "MPI_Imrecv", __FILE__, __LINE__);
        break;
      }
      receiving_.push_back(std::move(r));
      did = true;
    }
    if (DeliverReceives() > 0) did = true;
    // A receive in flight is driven like a send (below): polled while there
    // was activity within 50 ms.
    bool sending = !receiving_.empty();
    {
      MutexLock l(&send_mu_);
      if (CompleteSendsLocked() > 0) did = true;
      sending = sending || !send_reqs_.empty();
    }
    const auto now = std::chrono::steady_clock::now();
    if (did) last_activity_ = now;
    const std::chrono::steady_clock::time_point posted(
        std::chrono::steady_clock::duration(last_post_ns_.load(std::memory_order_relaxed)));
    if (posted > last_activity_) last_activity_ = posted;
    if (did) {
      idle = 0;
    } else if (sending && now - last_activity_ < std::chrono::milliseconds(50)) {
      // A large send completes only while this thread drives MPI's progress
      // engine: keep polling (yielding the core) while it is in flight, but
      // not forever (a dead peer never takes its message). With no hot
      // polling (more ranks than cores) a short sleep instead: a yield with
      // other threads runnable is a context switch that keeps this thread in
      // the run queue (13-20k a second per rank on the 2-core box).
      if (hot_poll_.count() == 0) {
        std::this_thread::sleep_for(kOversubscribedPoll);
      } else {
        std::this_thread::yield();
      }
    } else if (now - last_activity_ < hot_poll_) {
      // Traffic within the last hot_poll_: the answer to a request just sent,
      // or a client's next request, is likely microseconds away. Poll,
      // yielding the core to any thread that has work, instead of sleeping
      // through it (a sleep of up to 200 us was the round trip's largest
      // cost for small requests).
      idle = 0;
      std::this_thread::yield();
    } else if (++idle < 8) {
      if (hot_poll_.count() == 0) {
        std::this_thread::sleep_for(kOversubscribedPoll);
      } else {
        std::this_thread::yield();
      }
    } else {
      // 10, 20, 40, ... up to 200 us: never spin on an oversubscribed box.
      const int us = std::min(200, 10 << std::min(idle - 8, 5));
      std::this_thread::sleep_for(std::chrono::microseconds(us));
    }
  }
}

Status MpiTransport::Flush(Millis timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    {
      MutexLock l(&send_mu_);
      // No progress thread to do it (stopped, or not started yet).
      if (stop_.load() || !started_.load()) CompleteSendsLocked();
      if (send_reqs_.empty()) return Status::OK();
      if (std::chrono::steady_clock::now() >= deadline) {
        std::set<int> dests(send_dests_.begin(), send_dests_.end());
        std::string list;
        for (int d : dests) list += (list.empty() ? "" : ", ") + std::to_string(d);
        return DeadlineExceeded(std::to_string(send_reqs_.size()) + " sends not completed within " +
                                std::to_string(timeout.count()) + " ms, to ranks " + list);
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

void MpiTransport::Shutdown() {
  if (shut_down_.exchange(true)) return;
  const BufferPool::Stats bs = buffer_stats();
  VLOG(1) << "rank " << rank() << " message buffers: " << bs.reused << " reused, " << bs.allocated
          << " allocated";
  Status st = Flush(Millis(2000));
  if (!st.ok()) LOG(WARNING) << "MPI transport shutdown: " << st;
  stop_.store(true, std::memory_order_release);
  {
    MutexLock l(&start_mu_);
    if (progress_.joinable()) progress_.join();
  }
  inbox_.Close();
  // Receives still in flight come from dead or stopped peers: abandon them
  // (MPI may still write their buffers, so never free those).
  const bool receiving = !receiving_.empty();
  for (auto& r : receiving_) new std::vector<char>(std::move(r.buffer));
  receiving_.clear();
  MutexLock l(&send_mu_);
  if (!send_reqs_.empty() || receiving) {
    // Abandon: MPI may still read these buffers, so never free them.
    for (auto& b : send_bufs_) new std::vector<char>(std::move(b));
    send_reqs_.clear();
    send_bufs_.clear();
    send_dests_.clear();
    send_latest_.clear();
  } else {
    MPI_Comm_free(&comm_);
  }
}

}  // namespace freshet
