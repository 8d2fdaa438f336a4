#include "worker/internal/job_stream.h"

#include <glog/logging.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "worker/job.h"
#include "worker/stream/socket_source.h"

namespace freshet {
namespace {

constexpr int kCounterFields = 14;

std::string SerializeCounters(const JoinCounters& c, int64_t bad, int64_t lines) {
  const int64_t v[kCounterFields] = {
      c.impressions, c.reactions,  c.joined,  c.expired,      c.evicted,    c.duplicate, c.late,
      c.orphan,      c.mismatched, c.ignored, c.early_joined, c.dup_labels, bad,         lines};
  return std::string(reinterpret_cast<const char*>(v), sizeof(v));
}

Status SumCounters(const std::string& all, JoinCounters* sum, int64_t* bad, int64_t* lines) {
  constexpr size_t kBytes = kCounterFields * sizeof(int64_t);
  if (all.size() % kBytes != 0) return DataLoss("join counters: gathered a partial record");
  *sum = JoinCounters();
  *bad = 0;
  *lines = 0;
  for (size_t off = 0; off < all.size(); off += kBytes) {
    int64_t v[kCounterFields];
    std::memcpy(v, all.data() + off, kBytes);
    JoinCounters c;
    c.impressions = v[0];
    c.reactions = v[1];
    c.joined = v[2];
    c.expired = v[3];
    c.evicted = v[4];
    c.duplicate = v[5];
    c.late = v[6];
    c.orphan = v[7];
    c.mismatched = v[8];
    c.ignored = v[9];
    c.early_joined = v[10];
    c.dup_labels = v[11];
    sum->Add(c);
    *bad += v[12];
    *lines += v[13];
  }
  return Status::OK();
}

JoinOptions JobJoinOptions(const proto::StreamConfig& s) {
  JoinOptions o;
  o.label_kinds.clear();
  for (const auto& k : s.label_events()) o.label_kinds.push_back(*ParseEventKind(k));
  o.window_ms = static_cast<int64_t>(std::llround(s.window_s() * 1000.0));
  o.max_pending = static_cast<size_t>(s.max_pending());
  o.early_hold_ms = static_cast<int64_t>(std::llround(s.early_hold_s() * 1000.0));
  o.max_early = static_cast<size_t>(s.max_early());
  return o;
}

}  // namespace

Status MakeDirs(const std::string& path) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!cur.empty() && mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
        return Internal(cur + ": cannot create directory: " + std::strerror(errno));
      }
    }
    if (i < path.size()) cur += path[i];
  }
  return Status::OK();
}

std::vector<std::string> StreamColumns(const proto::FeatureConfig& features) {
  std::vector<std::string> cols;
  auto add = [&](const std::string& c) {
    if (std::find(cols.begin(), cols.end(), c) == cols.end()) cols.push_back(c);
  };
  for (const auto& s : features.slots()) add(s.column().empty() ? s.name() : s.column());
  for (const auto& d : features.dense()) add(d.column().empty() ? d.name() : d.column());
  return cols;
}

StatusOr<std::unique_ptr<StreamExampleSource>> OpenStream(const proto::JobConfig& job,
                                                          const std::vector<std::string>& columns,
                                                          const BadRecordPolicy& policy, int me,
                                                          int n, const TailPosition* restore) {
  const auto& s = job.stream();
  std::unique_ptr<LineStream> lines;
  if (!s.dir().empty()) {
    // The producer may start after the job: an empty directory is a stream
    // that has not begun.
    FRESHET_RETURN_IF_ERROR(MakeDirs(s.dir()));
    TailOptions t;
    t.dir = s.dir();
    t.worker = me;
    t.num_workers = n;
    FRESHET_ASSIGN_OR_RETURN(lines, TailSource::Open(t, restore));
  } else {
    // Worker i listens on its own port / socket path.
    SocketOptions so;
    if (s.tcp_port() > 0) {
      so.tcp_port = s.tcp_port() + me;
    } else {
      so.unix_socket = s.unix_socket() + "." + std::to_string(me);
    }
    FRESHET_ASSIGN_OR_RETURN(lines, SocketSource::Listen(so));
  }
  StreamSourceOptions o;
  o.columns = columns;
  o.join = JobJoinOptions(s);
  o.policy = policy;
  o.lateness_ms = static_cast<int64_t>(std::llround(s.lateness_s() * 1000.0));
  o.idle_partition = std::chrono::milliseconds(std::llround(s.idle_partition_s() * 1000.0));
  return StreamExampleSource::Create(std::move(lines), o);
}

StatusOr<StreamPositionFile> StreamPositionFile::Create(const proto::JobConfig& job, int worker) {
  StreamPositionFile f;
  if (IsStreamingJob(job) && !job.stream().dir().empty()) {
    f.path_ = job.work_dir() + "/stream-positions/worker-" + std::to_string(worker) + ".position";
    FRESHET_RETURN_IF_ERROR(MakeDirs(job.work_dir() + "/stream-positions"));
  }
  return f;
}

void StreamPositionFile::Save(StreamExampleSource* stream, const std::string& text) {
  last_ = std::chrono::steady_clock::now();
  const auto* tail = stream == nullptr ? nullptr : dynamic_cast<TailSource*>(stream->lines());
  if (tail == nullptr || path_.empty()) return;
  const std::string tmp = path_ + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << (text.empty() ? tail->Position().Serialize() : text);
    if (!out.flush()) {
      LOG(WARNING) << tmp << ": cannot write the stream position";
      return;
    }
  }
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    LOG(WARNING) << path_ << ": cannot replace: " << std::strerror(errno);
  }
}

Status GatherJoinCounters(const StreamExampleSource& stream, Collective* workers,
                          JobResult* result) {
  std::string all;
  const std::string mine =
      SerializeCounters(stream.join_counters(), stream.stats().bad, stream.stats().lines);
  FRESHET_RETURN_IF_ERROR(workers->GatherBytes(mine.data(), mine.size(), &all));
  if (workers->rank() == 0) {
    FRESHET_RETURN_IF_ERROR(
        SumCounters(all, &result->join, &result->stream_bad, &result->stream_lines));
  }
  return Status::OK();
}

}  // namespace freshet
