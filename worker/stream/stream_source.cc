#include "worker/stream/stream_source.h"

#include <glog/logging.h>

#include <algorithm>

namespace freshet {

struct StreamExampleSource::Header {
  size_t num_columns = 0;
  std::vector<int> project;  // example column i <- header column project[i]
};

StreamExampleSource::StreamExampleSource(std::unique_ptr<LineStream> lines,
                                         StreamSourceOptions options)
    : lines_(std::move(lines)), options_(std::move(options)) {}

StreamExampleSource::~StreamExampleSource() = default;

StatusOr<std::unique_ptr<StreamExampleSource>> StreamExampleSource::Create(
    std::unique_ptr<LineStream> lines, StreamSourceOptions options) {
  if (options.columns.empty()) return InvalidArgument("stream source: no columns");
  std::unique_ptr<StreamExampleSource> s(new StreamExampleSource(std::move(lines), options));
  FRESHET_ASSIGN_OR_RETURN(s->joiner_, LabelJoiner::Create(options.join));
  return s;
}

Status StreamExampleSource::HandleLine(const SourceLine& line) {
  if (line.header != last_header_ptr_ || last_header_ == nullptr) {
    auto it = headers_.find(*line.header);
    if (it == headers_.end()) {
      auto cols = ParseEventHeader(*line.header);
      if (!cols.ok()) return DataLoss(*line.origin + ":1: " + cols.status().message());
      auto h = std::make_unique<Header>();
      h->num_columns = cols->size();
      for (const auto& want : options_.columns) {
        auto c = std::find(cols->begin(), cols->end(), want);
        if (c == cols->end()) {
          return DataLoss(*line.origin + ":1: the stream has no column '" + want +
                          "' that the job's features read");
        }
        h->project.push_back(static_cast<int>(c - cols->begin()));
      }
      it = headers_.emplace(*line.header, std::move(h)).first;
    }
    last_header_ptr_ = line.header;
    last_header_ = it->second.get();
  }
  ++stats_.lines;
  Status st = ParseEventLine(line.text, last_header_->num_columns, &event_);
  if (!st.ok()) {
    ++stats_.bad;
    last_problem_ = *line.origin + ":" + std::to_string(line.line_no) + ": " + st.message();
    if (stats_.bad <= 20 || stats_.bad % 1000 == 0) {
      LOG(WARNING) << "skipping bad event (" << stats_.bad << " so far): " << last_problem_;
    }
    const double limit = std::max<double>(options_.policy.max_bad_records,
                                          options_.policy.max_bad_ratio * stats_.lines);
    if (stats_.bad > limit) {
      return InvalidArgument(std::to_string(stats_.bad) + " bad event lines of " +
                             std::to_string(stats_.lines) + " read; last: " + last_problem_);
    }
    return Status::OK();
  }
  if (event_.kind == EventKind::kImpression) {
    // Project onto the job's columns (swap in place: no string copies when
    // the order already matches).
    const auto& proj = last_header_->project;
    bool identity = proj.size() == event_.values.size();
    for (size_t i = 0; identity && i < proj.size(); ++i) identity = proj[i] == static_cast<int>(i);
    if (!identity) {
      std::vector<std::string> v(proj.size());
      for (size_t i = 0; i < proj.size(); ++i) v[i] = event_.values[proj[i]];
      event_.values.swap(v);
    }
  }
  auto& p = partitions_[line.partition];
  p.newest = std::max(p.newest, event_.ms);
  newest_ = std::max(newest_, event_.ms);
  event_.partition = line.partition;
  event_.read_unix_ms = line.read_unix_ms;
  joiner_->Add(event_, &ready_);
  if (++since_watermark_ >= 64) UpdateWatermark();
  return Status::OK();
}

void StreamExampleSource::UpdateWatermark() {
  since_watermark_ = 0;
  // A partition that is busy but not read from yet may hold the oldest
  // events: time stands still until it has been read.
  for (int p : lines_->Partitions()) {
    if (partitions_.count(p) == 0 && !lines_->Idle(p, options_.idle_partition)) return;
  }
  int64_t active_min = INT64_MAX, all_max = -1;
  for (const auto& [id, p] : partitions_) {
    if (p.newest < 0) continue;
    all_max = std::max(all_max, p.newest);
    if (!lines_->Idle(id, options_.idle_partition)) active_min = std::min(active_min, p.newest);
  }
  if (all_max < 0) return;
  const int64_t w = (active_min == INT64_MAX ? all_max : active_min) - options_.lateness_ms;
  if (w > watermark_) {
    watermark_ = w;
    joiner_->AdvanceWatermark(w, &ready_);
  }
}

StatusOr<ExampleSource::Outcome> StreamExampleSource::Poll(
    Example* ex, std::chrono::steady_clock::time_point deadline) {
  while (true) {
    if (ready_pos_ < ready_.size()) {
      *ex = std::move(ready_[ready_pos_++]);
      if (ready_pos_ == ready_.size()) {
        ready_.clear();
        ready_pos_ = 0;
      }
      ++stats_.examples;
      return Outcome::kExample;
    }
    if (ended_) return Outcome::kEnd;
    SourceLine line;
    FRESHET_ASSIGN_OR_RETURN(LineResult r, lines_->Next(&line, deadline));
    switch (r) {
      case LineResult::kLine:
        FRESHET_RETURN_IF_ERROR(HandleLine(line));
        break;
      case LineResult::kNone:
        UpdateWatermark();  // idle partitions may let windows close
        if (ready_pos_ < ready_.size()) break;
        return Outcome::kNotNow;
      case LineResult::kEnd:
        UpdateWatermark();
        joiner_->Flush(&ready_);
        ended_ = true;
        break;
    }
  }
}

StreamJoinState StreamExampleSource::SaveJoinState() const {
  StreamJoinState s;
  s.watermark_ms = watermark_;
  for (const auto& [id, p] : partitions_) {
    if (p.newest >= 0) s.partition_newest[id] = p.newest;
  }
  s.joiner = joiner_->SaveState();
  s.examples.assign(ready_.begin() + static_cast<ptrdiff_t>(ready_pos_), ready_.end());
  return s;
}

Status StreamExampleSource::RestoreJoinState(StreamJoinState state) {
  if (stats_.lines > 0 || stats_.examples > 0 || !ready_.empty() || ended_) {
    return FailedPrecondition("stream source: the join state must be restored before reading");
  }
  FRESHET_RETURN_IF_ERROR(joiner_->RestoreState(state.joiner));
  for (const auto& [id, ms] : state.partition_newest) {
    partitions_[id].newest = ms;
    newest_ = std::max(newest_, ms);
  }
  watermark_ = state.watermark_ms;
  ready_ = std::move(state.examples);
  ready_pos_ = 0;
  return Status::OK();
}

}  // namespace freshet
