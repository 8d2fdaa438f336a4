#include "worker/internal/job_restore.h"

#include <glog/logging.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "worker/dense_file.h"
#include "worker/job.h"

namespace freshet {

Status RestoreDenseState(const std::string& dir, Model* model) {
  FRESHET_RETURN_IF_ERROR(LoadDense(dir + "/dense.bin", model).WithContext("restoring"));
  // Models saved before the optimizer state was: fresh Adam moments.
  Status st = LoadDenseOptimizer(dir + "/dense_opt.bin", model);
  if (st.code() == StatusCode::kNotFound) {
    LOG(WARNING) << st << "; the dense optimizer starts afresh";
    return Status::OK();
  }
  return st.WithContext("restoring");
}

StatusOr<RestoredCheckpoint> ReadCheckpointState(const proto::JobConfig& job,
                                                 const std::string& dir,
                                                 const std::vector<InputFileId>& input_files,
                                                 int me, int n, bool print) {
  RestoredCheckpoint r;
  const bool streaming = IsStreamingJob(job);
  auto manifest = VerifyCheckpoint(dir);
  if (manifest.ok()) {
    r.id = manifest->id;
    r.start_step = manifest->step;
    if (streaming && !job.stream().dir().empty()) {
      TailPosition merged;
      JoinStateMerger join_merger(me, n);
      int join_files = 0;
      for (int w = 0; w < manifest->num_workers; ++w) {
        const std::string path = dir + "/worker-" + std::to_string(w) + ".position";
        std::ifstream in(path);
        if (!in) continue;  // an older checkpoint, or a socket-fed worker
        std::stringstream text;
        text << in.rdbuf();
        auto pos = TailPosition::Parse(text.str());
        if (!pos.ok()) return pos.status().WithContext(path);
        for (auto& f : pos->files) merged.files.push_back(std::move(f));
        // The position and the join state are one cut: a worker that
        // saved a position saved its join state beside it (checkpoints
        // from before join states have none at all).
        const std::string join_path = dir + "/" + JoinStateFileName(w);
        auto join = ReadJoinStateFile(join_path);
        if (join.status().code() == StatusCode::kNotFound && join_files == 0 && w == 0) {
          continue;
        }
        if (!join.ok()) return join.status().WithContext("restoring the join state");
        if (join->worker != w || join->step != manifest->step) {
          return DataLoss(join_path + ": worker " + std::to_string(join->worker) + " step " +
                          std::to_string(join->step) + ", the checkpoint's is worker " +
                          std::to_string(w) + " step " + std::to_string(manifest->step));
        }
        ++join_files;
        r.waiting += static_cast<int64_t>(join->joiner.waiting());
        r.examples += static_cast<int64_t>(join->examples.size());
        join_merger.Add(std::move(*join));
      }
      if (!merged.files.empty()) r.position = std::move(merged);
      if (join_files > 0) {
        r.join = join_merger.Take();
      } else if (r.position) {
        LOG(WARNING) << dir
                     << ": no join state (an older checkpoint): impressions that waited for "
                        "their label window at the cut are lost";
      }
    }
    if (!streaming) {
      auto cut = LoadInputCut(dir, manifest->num_workers, input_files);
      if (cut.ok()) {
        r.input = true;
        r.start_epoch = cut->epoch;
        r.consumed = std::move(cut->consumed);
      } else if (cut.status().code() == StatusCode::kNotFound) {
        LOG(WARNING) << cut.status() << "; the input is read from the start";
      } else {
        return cut.status().WithContext("restoring the input position");
      }
    }
    if (print) {
      uint64_t done = 0, total = 0;
      for (const auto& [f, set] : r.consumed) done += set.bytes();
      for (const auto& f : input_files) total += f.bytes;
      std::printf(
          "restored checkpoint %lld: step %lld, epoch %d, %s\n", static_cast<long long>(r.id),
          static_cast<long long>(r.start_step), r.start_epoch + 1,
          streaming
              ? (r.position ? "stream positions of " + std::to_string(r.position->files.size()) +
                                  " files restored" +
                                  (r.join ? ", join state of " + std::to_string(r.waiting) +
                                                " pending impressions and " +
                                                std::to_string(r.examples) + " untrained examples"
                                          : std::string(", no join state"))
                            : std::string("stream read from the start (no positions)"))
                    .c_str()
          : r.input ? (std::to_string(done) + " of " + std::to_string(total) +
                       " input bytes of the epoch already trained")
                          .c_str()
                    : "input from the start (no input cut)");
      std::fflush(stdout);
    }
  } else if (manifest.status().code() != StatusCode::kNotFound) {
    return manifest.status().WithContext("restoring");
  }
  return StatusOr<RestoredCheckpoint>(std::move(r));
}

}  // namespace freshet
