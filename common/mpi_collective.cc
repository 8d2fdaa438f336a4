#include "common/mpi_collective.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/mpi_util.h"
#include "common/time_util.h"

namespace freshet {

namespace {

std::string Seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s", s);
  return buf;
}

void Append(std::string* list, const std::string& item) {
  if (!list->empty()) *list += "; ";
  *list += item;
}

}  // namespace

// ---- Heartbeats -------------------------------------------------------------

std::string HeartbeatPath(const std::string& dir, int world_rank) {
  return dir + "/heartbeat-rank" + std::to_string(world_rank);
}

StatusOr<HeartbeatRecord> ReadHeartbeat(const std::string& dir, int world_rank) {
  const std::string path = HeartbeatPath(dir, world_rank);
  std::ifstream in(path);
  if (!in) return NotFound(path + ": no heartbeat file");
  std::string line;
  std::getline(in, line);
  std::istringstream fields(line);
  HeartbeatRecord r;
  int waiting = -1;
  const char* field = nullptr;
  if (!(fields >> r.unix_ms) || r.unix_ms <= 0) {
    field = "unix_ms";
  } else if (!(fields >> r.pid) || r.pid <= 0) {
    field = "pid";
  } else if (!(fields >> r.operation) || r.operation < 0) {
    field = "operation";
  } else if (!(fields >> waiting) || (waiting != 0 && waiting != 1)) {
    field = "waiting";
  } else if (!(fields >> r.host)) {
    field = "host";
  }
  if (field != nullptr) {
    return DataLoss(path + ":1: bad field '" + field + "' in heartbeat line '" + line + "'");
  }
  r.waiting = waiting == 1;
  return r;
}

HeartbeatPublisher::HeartbeatPublisher(std::string path, std::chrono::milliseconds interval)
    : path_(std::move(path)), interval_(interval) {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') std::strcpy(host, "unknown");
  host_ = host;
  std::replace(host_.begin(), host_.end(), ' ', '_');
}

StatusOr<std::unique_ptr<HeartbeatPublisher>> HeartbeatPublisher::Start(
    const std::string& dir, int world_rank, std::chrono::milliseconds interval) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Internal("heartbeat dir " + dir + ": cannot create: " + ec.message());
  std::unique_ptr<HeartbeatPublisher> p(
      new HeartbeatPublisher(HeartbeatPath(dir, world_rank), interval));
  FRESHET_RETURN_IF_ERROR(p->Write());
  p->thread_ = std::thread([raw = p.get()] { raw->Loop(); });
  return StatusOr<std::unique_ptr<HeartbeatPublisher>>(std::move(p));
}

HeartbeatPublisher::~HeartbeatPublisher() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void HeartbeatPublisher::SetOperation(int64_t operation, bool waiting) {
  operation_.store(operation, std::memory_order_relaxed);
  waiting_.store(waiting, std::memory_order_relaxed);
}

Status HeartbeatPublisher::Write() {
  char line[512];
  std::snprintf(line, sizeof(line), "%lld %lld %lld %d %s\n", static_cast<long long>(NowUnixMs()),
                static_cast<long long>(getpid()),
                static_cast<long long>(operation_.load(std::memory_order_relaxed)),
                waiting_.load(std::memory_order_relaxed) ? 1 : 0, host_.c_str());
  const std::string tmp = path_ + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return Internal(tmp + ": cannot write a heartbeat: " + std::strerror(errno));
  const size_t len = std::strlen(line);
  const bool wrote = std::fwrite(line, 1, len, f) == len;
  if (std::fclose(f) != 0 || !wrote) return Internal(tmp + ": cannot write a heartbeat");
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    return Internal(path_ + ": cannot replace the heartbeat: " + std::strerror(errno));
  }
  return Status::OK();
}

void HeartbeatPublisher::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  bool warned = false;
  while (!cv_.wait_for(l, interval_, [this] { return stop_; })) {
    l.unlock();
    Status st = Write();
    if (!st.ok() && !warned) {
      // Peers will see this member as silent; say why once.
      std::fprintf(stderr, "freshet: heartbeat: %s\n", st.ToString().c_str());
      warned = true;
    }
    l.lock();
  }
}

MemberReport ReportMembers(const std::vector<CollectiveMember>& members, int self,
                           const std::string& heartbeat_dir, int64_t now_unix_ms,
                           std::chrono::milliseconds silence, int64_t operation,
                           const std::string& noun) {
  MemberReport report;
  for (const CollectiveMember& m : members) {
    if (m.index == self) continue;
    const std::string name =
        noun + " " + std::to_string(m.index) + " (rank " + std::to_string(m.world_rank);
    StatusOr<HeartbeatRecord> hb = ReadHeartbeat(heartbeat_dir, m.world_rank);
    if (!hb.ok()) {
      Append(&report.unknown, name + "): " + hb.status().message());
      continue;
    }
    const double age_s = (now_unix_ms - hb->unix_ms) / 1e3;
    if (now_unix_ms - hb->unix_ms > silence.count()) {
      ++report.num_silent;
      Append(&report.silent, name + ", pid " + std::to_string(hb->pid) + " on " + hb->host +
                                 "): heartbeat " + Seconds(age_s) + " old, last at operation #" +
                                 std::to_string(hb->operation));
    } else if (hb->operation < operation || (hb->operation == operation && !hb->waiting)) {
      Append(&report.behind, name + ", pid " + std::to_string(hb->pid) + " on " + hb->host +
                                 "): live (heartbeat " + Seconds(age_s) +
                                 " old) but at operation #" + std::to_string(hb->operation) +
                                 (hb->waiting ? " (waiting)" : ""));
    }
  }
  return report;
}

// ---- MPI --------------------------------------------------------------------

namespace {

// Everything one wait needs to know (shared by Create and the operations).
struct WaitContext {
  const CollectiveOptions* options;
  const std::vector<CollectiveMember>* members;
  int self;
  int64_t operation;
  HeartbeatPublisher* heartbeat;  // may be null
};

std::string NameMember(const std::string& noun, const CollectiveMember& m) {
  return noun + " " + std::to_string(m.index) + " (rank " + std::to_string(m.world_rank) + ")";
}

// `count` `unit` describe the operation's size in errors ("7813 floats").
Status WaitRequest(MPI_Request* request, const WaitContext& c, const char* what, int64_t count,
                   const char* unit) {
  using Clock = std::chrono::steady_clock;
  const CollectiveOptions& o = *c.options;
  const auto t0 = Clock::now();
  const auto check_every = std::max(std::chrono::milliseconds(100), o.heartbeat_interval);
  auto next_check = t0 + check_every;
  if (c.heartbeat != nullptr) c.heartbeat->SetOperation(c.operation, true);
  // Built only for an error (this runs every training step).
  auto describe = [&] {
    return std::string(what) + " #" + std::to_string(c.operation) + " (" + std::to_string(count) +
           " " + unit + ") by " + NameMember(o.member_noun, (*c.members)[c.self]);
  };
  auto waited = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  std::chrono::microseconds sleep(20);
  while (true) {
    int done = 0;
    const int rc = MPI_Test(request, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      Status st = MpiError(rc, "MPI_Test", __FILE__, __LINE__);
      return Status(st.code(), describe() + " failed after " + Seconds(waited()) +
                                   " (a member may have died): " + st.message());
    }
    if (done) {
      if (c.heartbeat != nullptr) c.heartbeat->SetOperation(c.operation, false);
      return Status::OK();
    }
    const auto now = Clock::now();
    if (!o.heartbeat_dir.empty() && now >= next_check) {
      next_check = now + check_every;
      MemberReport r = ReportMembers(*c.members, c.self, o.heartbeat_dir, NowUnixMs(), o.silence,
                                     c.operation, o.member_noun);
      if (r.num_silent > 0) {
        return Unavailable(describe() + ": waited " + Seconds(waited()) + "; " +
                           std::to_string(r.num_silent) + " " + o.member_noun +
                           "(s) dead or hung (silent longer than " +
                           Seconds(o.silence.count() / 1e3) + "): " + r.silent +
                           (r.behind.empty() ? "" : "; also not at this operation: " + r.behind));
      }
    }
    if (now - t0 >= o.deadline) {
      std::string who;
      if (!o.heartbeat_dir.empty()) {
        MemberReport r = ReportMembers(*c.members, c.self, o.heartbeat_dir, NowUnixMs(), o.silence,
                                       c.operation, o.member_noun);
        who = r.behind.empty() ? "" : "; not at this operation: " + r.behind;
        if (!r.unknown.empty()) who += "; no heartbeat from: " + r.unknown;
      } else {
        who = "; no heartbeats (heartbeat_dir empty), so the late member is not known";
      }
      return DeadlineExceeded(describe() + ": not complete after " + Seconds(waited()) +
                              " (deadline " + Seconds(o.deadline.count() / 1e3) +
                              "): a member is dead, hung or stuck" + who);
    }
    // Back off: MPI_Test drives progress; sleeping keeps the core free.
    std::this_thread::sleep_for(sleep);
    const auto cap = now - t0 < std::chrono::seconds(1) ? std::chrono::microseconds(1000)
                                                        : std::chrono::microseconds(10000);
    sleep = std::min(cap, sleep * 2);
  }
}

}  // namespace

MpiCollective::MpiCollective(const CollectiveOptions& options,
                             std::vector<CollectiveMember> members, int rank,
                             std::unique_ptr<HeartbeatPublisher> heartbeat)
    : options_(options),
      members_(std::move(members)),
      rank_(rank),
      size_(static_cast<int>(members_.size())),
      heartbeat_(std::move(heartbeat)) {}

StatusOr<std::unique_ptr<MpiCollective>> MpiCollective::Create(MPI_Comm comm,
                                                               const CollectiveOptions& options) {
  int rank = 0, size = 0;
  FRESHET_MPI_RETURN(MPI_Comm_rank(comm, &rank));
  FRESHET_MPI_RETURN(MPI_Comm_size(comm, &size));
  // Members by world rank (heartbeat files and errors name them so).
  MPI_Group group, world_group;
  FRESHET_MPI_RETURN(MPI_Comm_group(comm, &group));
  FRESHET_MPI_RETURN(MPI_Comm_group(MPI_COMM_WORLD, &world_group));
  std::vector<int> local(size), world(size);
  for (int i = 0; i < size; ++i) local[i] = i;
  const int rc = MPI_Group_translate_ranks(group, size, local.data(), world_group, world.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
  FRESHET_MPI_RETURN(rc);
  std::vector<CollectiveMember> members(size);
  for (int i = 0; i < size; ++i) members[i] = {i, world[i] == MPI_UNDEFINED ? -1 : world[i]};
  std::unique_ptr<HeartbeatPublisher> heartbeat;
  if (!options.heartbeat_dir.empty()) {
    FRESHET_ASSIGN_OR_RETURN(
        heartbeat,
        HeartbeatPublisher::Start(options.heartbeat_dir, world[rank], options.heartbeat_interval));
  }
  std::unique_ptr<MpiCollective> c(
      new MpiCollective(options, std::move(members), rank, std::move(heartbeat)));
  // The duplication is collective too: a member that never starts must not
  // hang the others.
  MPI_Request request;
  FRESHET_MPI_RETURN(MPI_Comm_idup(comm, &c->comm_, &request));
  const WaitContext ctx{&c->options_, &c->members_, rank, 0, c->heartbeat_.get()};
  FRESHET_RETURN_IF_ERROR(WaitRequest(&request, ctx, "communicator duplication", size, "members"));
  FRESHET_MPI_RETURN(MPI_Comm_set_errhandler(c->comm_, MPI_ERRORS_RETURN));
  return StatusOr<std::unique_ptr<MpiCollective>>(std::move(c));
}

MpiCollective::~MpiCollective() {
  // After a failure an operation may still be pending on comm_: leave it
  // (the process is about to end).
  if (failed_.ok() && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

Status MpiCollective::Wait(MPI_Request* request, const char* what, int64_t count,
                           const char* unit) {
  const WaitContext ctx{&options_, &members_, rank_, operation_, heartbeat_.get()};
  Status st = WaitRequest(request, ctx, what, count, unit);
  if (!st.ok()) failed_ = st;
  return st;
}

template <typename T>
Status MpiCollective::AllReduce(T* data, size_t n, MPI_Datatype type, const char* unit) {
  if (!failed_.ok()) return failed_;
  // MPI counts are ints: reduce in chunks.
  constexpr size_t kChunk = 1u << 28;
  for (size_t off = 0; off < n; off += kChunk) {
    const int count = static_cast<int>(std::min(kChunk, n - off));
    ++operation_;
    MPI_Request request;
    FRESHET_MPI_RETURN(
        MPI_Iallreduce(MPI_IN_PLACE, data + off, count, type, MPI_SUM, comm_, &request));
    FRESHET_RETURN_IF_ERROR(Wait(&request, "all-reduce", count, unit));
  }
  return Status::OK();
}

Status MpiCollective::AllReduceSum(float* data, size_t n) {
  return AllReduce(data, n, MPI_FLOAT, "floats");
}

Status MpiCollective::AllReduceSum(double* data, size_t n) {
  return AllReduce(data, n, MPI_DOUBLE, "doubles");
}

Status MpiCollective::GatherBytes(const char* data, size_t n, std::string* out) {
  if (!failed_.ok()) return failed_;
  if (n > static_cast<size_t>(INT_MAX)) return InvalidArgument("GatherBytes: over 2 GiB");
  int mine = static_cast<int>(n);
  std::vector<int> counts(size_), displs(size_);
  ++operation_;
  MPI_Request request;
  FRESHET_MPI_RETURN(MPI_Igather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, comm_, &request));
  FRESHET_RETURN_IF_ERROR(Wait(&request, "gather (sizes)", 1, "int each"));
  int64_t total = 0;
  if (rank_ == 0) {
    for (int r = 0; r < size_; ++r) {
      displs[r] = static_cast<int>(total);
      total += counts[r];
    }
    if (total > INT_MAX) return InvalidArgument("GatherBytes: over 2 GiB in total");
    out->resize(static_cast<size_t>(total));
  }
  ++operation_;
  FRESHET_MPI_RETURN(MPI_Igatherv(data, mine, MPI_BYTE, rank_ == 0 ? out->data() : nullptr,
                                  counts.data(), displs.data(), MPI_BYTE, 0, comm_, &request));
  return Wait(&request, "gather", static_cast<int64_t>(n), "bytes from this member");
}

Status MpiCollective::Barrier() {
  if (!failed_.ok()) return failed_;
  ++operation_;
  MPI_Request request;
  FRESHET_MPI_RETURN(MPI_Ibarrier(comm_, &request));
  return Wait(&request, "barrier", size_, "members");
}

}  // namespace freshet
