// freshet_train's wiring of the worker side of a job to the rest of the
// cluster: the implementations of RunWorkerJob's seams (worker/job_runner.h)
// and the pieces of the server and worker roles that are more than a call.
//
//   PsTableCheckpointer     TableCheckpointer over the parameter servers
//                           (PsClient SAVE/LOAD; background checkpoint writes)
//   ShardTableCheckpointer  TableCheckpointer over one in-process shard
//                           (freshet_train --local)
//   ExporterFeed            ExportFeed to the exporter rank (WATERMARK,
//                           DENSE_UPDATE, EXPORT_FINAL messages)
//   PrefillRows, StartMetrics, SaveRestoredModel: see each.
//
// Thread safety: as each class says.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/metrics_registry.h"
#include "common/metrics_service.h"
#include "common/proto/cluster.pb.h"
#include "common/proto/job.pb.h"
#include "common/status.h"
#include "common/transport.h"
#include "server/parameter_shard.h"
#include "worker/export_feed.h"
#include "worker/ps_client.h"
#include "worker/table_checkpointer.h"

namespace freshet {

// The servers' tables through `client` (not owned; outlives this): each
// server writes or reads its own shard-<i>-of-<S>.rows. Incremental and
// background saves (StartSaveTables / WaitTablesSaved) both work.
//
// Thread safety: as PsClient (thread-safe).
class PsTableCheckpointer : public TableCheckpointer {
 public:
  explicit PsTableCheckpointer(PsClient* client) : client_(client) {}
  Status Save(const std::string& dir) override { return client_->SaveTables(dir); }
  Status Load(const std::string& dir) override { return client_->LoadTables(dir); }
  bool CanSaveChanged() const override { return true; }
  Status SaveChanged(const std::string& dir) override { return client_->SaveTables(dir, true); }
  bool CanSaveInBackground() const override { return true; }
  StatusOr<int64_t> StartSave(const std::string& dir, bool incremental) override {
    return client_->StartSaveTables(dir, incremental);
  }
  Status WaitSaved(const std::string& dir, int64_t bytes) override {
    return client_->WaitTablesSaved(dir, bytes);
  }

 private:
  PsClient* client_;
};

// One in-process shard (not owned; outlives this), saved as the only
// server's file, <dir>/shard-0-of-1.rows (server/table_io.h). SaveChanged
// writes the rows pushed since the previous successful Save or
// SaveChanged. No background saves.
//
// Thread safety: one thread, and nothing pushes to the shard during a call
// (the local trainer is sequential).
class ShardTableCheckpointer : public TableCheckpointer {
 public:
  explicit ShardTableCheckpointer(ParameterShard* shard) : shard_(shard) {}
  Status Save(const std::string& dir) override;
  Status Load(const std::string& dir) override;
  bool CanSaveChanged() const override { return true; }
  Status SaveChanged(const std::string& dir) override;

 private:
  ParameterShard* shard_;
  uint32_t saved_version_ = 0;  // the shard's version() at the last save
};

// Feeds exporter rank `exporter` from a worker: Watermark sends WATERMARK
// when the clocks moved, at most once per 10 ms (kWatermarkEvery; or per
// `every` if shorter), and Dense DENSE_UPDATE (worker 0) at most once per
// `every`, both with Transport::SendLatest (while the exporter has not
// received the previous one, a call sends nothing and a later one sends
// the newer state; a failed send is logged, training goes on); Final
// sends EXPORT_FINAL through `client` and waits for the exporter's answer
// (a full snapshot) up to `final_timeout`. Neither pointer is owned; both
// outlive this.
//
// Thread safety: one thread (the worker's training thread).
class ExporterFeed : public ExportFeed {
 public:
  static constexpr std::chrono::milliseconds kWatermarkEvery{10};
  // Transport::SendLatest channels: a WATERMARK in flight never holds back
  // a DENSE_UPDATE (without the exporter's dense parameters it exports
  // nothing).
  static constexpr int kWatermarkChannel = 0, kDenseChannel = 1;

  ExporterFeed(Transport* transport, PsClient* client, int exporter,
               std::chrono::duration<double> every, Millis final_timeout);
  void Watermark(const TrainingClocks& clocks) override;
  void Dense(const Model& model, const TrainingClocks& clocks) override;
  Status Final(const Model& model, const TrainingClocks& clocks) override;

 private:
  Transport* transport_;
  PsClient* client_;
  const int exporter_;
  const std::chrono::duration<double> every_;
  const Millis final_timeout_;
  std::chrono::steady_clock::time_point last_watermark_, last_dense_;
  TrainingClocks sent_;  // the clocks last sent in a WATERMARK
};

// --prefill_rows: fills the widest table of `shard` (server `me` of `n`)
// with its share of `total` generated rows: keys from a counter hash, kept if
// they fall in this server's slot range (common/sharding.h), weights from
// the table's initializer. The rows get version 1 and the shard moves past
// it (one empty push), so they are exported like pushed rows. Returns the
// rows added.
int64_t PrefillRows(ParameterShard* shard, int me, int n, int64_t total);

// Starts rank `rank`'s metrics endpoint and log as `cfg` says; null when
// both are off. A port that cannot be bound costs only the endpoint (a
// warning on stderr); a log that cannot be opened fails.
StatusOr<std::unique_ptr<MetricsService>> StartMetrics(const proto::MetricsConfig& cfg, int rank,
                                                       proto::Role role, MetricsRegistry* registry);

// Ends a rank's metrics service before the objects its callbacks read are
// destroyed: declare it right after them.
struct StopMetricsOnExit {
  MetricsService* service;
  ~StopMetricsOnExit() {
    if (service != nullptr) service->Stop();
  }
};

// --restore_only: writes the restored model to job.model_dir(): the dense
// files of `restored_dir` as they are (dense_opt.bin when there is one),
// the job, and the tables through `tables` (every server writes the rows
// it loaded). Internal naming the file on I/O errors.
Status SaveRestoredModel(const proto::JobConfig& job, const std::string& restored_dir,
                         TableCheckpointer* tables);

}  // namespace freshet
