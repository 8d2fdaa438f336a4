// MpiTransport: the Transport over MPI, one endpoint per MPI rank.
//
// - Uses its own communicator (a duplicate of the one given), so parameter-
//   server traffic never matches other MPI traffic (dense all-reduce etc.).
// - Sends are nonblocking (MPI_Isend) from the calling thread; the frame
//   buffer is kept alive until MPI completes the send. SendLatest uses
//   MPI_Issend and keeps at most one in flight per destination and channel (see
//   Transport::SendLatest). Requires
//   MPI_THREAD_MULTIPLE (see MpiSession).
// - One progress thread matches incoming messages (MPI_Improbe/MPI_Mrecv),
//   queues them for Recv(), and completes sends (MPI_Testsome). Create()
//   starts it, unless Options::start_progress is false; then Start() does.
//   Within 2 ms of the last message it polls, yielding the core between polls
//   (an answer is usually microseconds away), where the node has a core
//   per rank; after that, or at once where ranks outnumber cores, it backs
//   off to short sleeps (up to 200 us), so idle ranks leave the cores to
//   the ranks doing work.
// - Receive buffers come from the Transport's BufferPool, and finished sends
//   go back to it (common/buffer_pool.h).
// - No barriers or collectives on the data path.
//
// Thread safety: as Transport.
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "common/transport.h"

namespace freshet {

class MpiTransport : public Transport {
 public:
  struct Options {
    // Start the progress thread in Create(). False: the transport matches
    // no incoming message until Start(), so a peer's SendLatest to this
    // rank stays unreceived (its MPI_Issend incomplete), as with a rank that
    // does not read; its own sends still go out, but complete only in
    // Flush() (and Shutdown()) until then. For tests that need such a rank.
    bool start_progress = true;
  };

  // Duplicates `comm` (collective over it) and starts the progress thread
  // (unless options.start_progress is false).
  // REQUIRES: MPI initialized with MPI_THREAD_MULTIPLE.
  static StatusOr<std::unique_ptr<MpiTransport>> Create(MPI_Comm comm, Options options);
  static StatusOr<std::unique_ptr<MpiTransport>> Create(MPI_Comm comm) {
    return Create(comm, Options());
  }
  ~MpiTransport() override;

  // Starts the progress thread (of a transport created with
  // start_progress = false): from then on it receives and completes sends.
  // OK if already started; Unavailable after Shutdown().
  Status Start() EXCLUDES(start_mu_);

  // Waits up to `timeout` for every queued send to complete. On timeout,
  // DeadlineExceeded naming the ranks that have not taken their messages.
  Status Flush(Millis timeout) EXCLUDES(send_mu_);
  // Stops the progress thread and closes Recv(). Sends still pending after
  // a short flush are abandoned (their buffers are leaked on purpose: MPI may
  // still read them). Idempotent.
  void Shutdown() override EXCLUDES(send_mu_, start_mu_);

 protected:
  Status SendFrame(int dest, std::vector<char> frame) override EXCLUDES(send_mu_);
  // MPI_Issend (complete once `dest` matched it), at most one in flight per
  // destination and channel.
  StatusOr<bool> SendLatestFrame(int dest, int channel, std::vector<char> frame) override
      EXCLUDES(send_mu_);
  StatusOr<Frame> RecvFrame(Millis timeout) override;

 private:
  MpiTransport(MPI_Comm comm, int rank, int size);
  void ProgressLoop() EXCLUDES(send_mu_);
  // Unavailable after Shutdown(), InvalidArgument past MPI's 2 GiB count.
  Status CheckSendable(size_t frame_bytes) const;
  // MPI_Isend, or MPI_Issend for SendLatest's `latest_channel` (>= 0), and
  // the bookkeeping until it completes.
  Status PostLocked(int dest, std::vector<char> frame, int latest_channel) REQUIRES(send_mu_);
  // Tests pending sends; returns how many completed.
  int CompleteSendsLocked() REQUIRES(send_mu_);
  // Tests pending receives and moves the completed ones to the inbox, in
  // arrival order per source; returns how many it moved.
  int DeliverReceives();

  static constexpr int kTag = 7;
  MPI_Comm comm_;
  // How long after the last message, send or receive the progress thread
  // keeps polling (yielding) before it backs off to sleeps: 2 ms where the
  // node's ranks (the launcher's OMPI_COMM_WORLD_LOCAL_SIZE, MPI_LOCALNRANKS
  // or SLURM_NTASKS_PER_NODE) have a core each, 0 (sleep at once) where
  // there are more ranks than cores. The environment variable
  // FRESHET_MPI_HOT_POLL_US overrides it, for A/B runs.
  const std::chrono::microseconds hot_poll_;
  FrameQueue inbox_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> shut_down_{false};
  // Orders Start() against Shutdown(): a thread Start() starts is one
  // Shutdown() joins.
  Mutex start_mu_;
  std::thread progress_ GUARDED_BY(start_mu_);
  // Set by Start(); until then Flush() completes sends itself.
  std::atomic<bool> started_{false};
  // Last send posted or completed: while sends are in flight and there was
  // activity within 50 ms, the progress thread polls without sleeping.
  std::chrono::steady_clock::time_point last_activity_;  // progress thread only
  std::atomic<int64_t> last_post_ns_{0};
  // Matched receives still in flight (progress thread only), oldest first.
  // A large message is received with MPI_Imrecv and tested, never with a
  // blocking MPI_Mrecv: if its sender dies after MPI matched it (a
  // rendezvous whose single-copy read then fails), a blocking receive would
  // stall this thread, and with it every answer from the live servers; the
  // dead peer's receive just stays pending here (and its buffer is leaked
  // at shutdown: MPI may still write to it).
  struct PendingReceive {
    int source = -1;
    MPI_Request request = MPI_REQUEST_NULL;
    std::vector<char> buffer;
  };
  std::vector<PendingReceive> receiving_;

  Mutex send_mu_;
  std::vector<MPI_Request> send_reqs_ GUARDED_BY(send_mu_);
  std::vector<std::vector<char>> send_bufs_ GUARDED_BY(send_mu_);  // parallel to send_reqs_
  std::vector<int> send_dests_ GUARDED_BY(send_mu_);               // parallel to send_reqs_
  // Parallel to send_reqs_: a SendLatest's channel + 1 (0: a plain send).
  std::vector<uint8_t> send_latest_ GUARDED_BY(send_mu_);
  // [rank * kLatestChannels + channel]: a SendLatest in flight.
  std::vector<uint8_t> latest_pending_ GUARDED_BY(send_mu_);
  Status error_ GUARDED_BY(send_mu_);  // sticky
};

}  // namespace freshet
