// freshet_train: the training job. Every MPI rank takes its role from the
// cluster config: servers hold table shards, workers train on their shard of
// the examples, the exporter rank publishes snapshots for serving
// (exporter/exporter_node.h).
//
//   launch/mpirun.sh -np 5 build/bin/freshet_train --task=synthetic
//   build/bin/freshet_train --local --task=synthetic     (single-process reference)
//   launch/mpirun.sh -np 5 build/bin/freshet_train --stream_dir=DIR
//       --job_config=cluster-configs/jobs/realtime-shop.pbtxt     (streaming)
//
// Worker 0 prints status lines while training and, last, one JSON line with
// the final figures. Every rank counts what it does (common/metrics_registry.h)
// and, as the cluster config's `metrics` message says, serves them on
// http://<host>:<port + rank>/metrics and appends them to
// <dir>/metrics-rank<rank>.jsonl every interval_s.
//
// This file holds the flags and each role's start-up; what ties the worker
// side of a job (RunWorkerJob) to the servers and the exporter is in
// train_wiring.h.
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>

#include "apps/train/train_wiring.h"
#include "common/collective.h"
#include "common/config.h"
#include "common/device.h"
#include "common/file_io.h"
#include "common/logging.h"
#include "common/metrics_registry.h"
#include "common/metrics_service.h"
#include "common/mpi_transport.h"
#include "common/mpi_util.h"
#include "common/ps_wire.h"
#include "common/sharding.h"
#include "common/worker_collective.h"
#include "exporter/exporter_node.h"
#include "model/features.h"
#include "server/initializer.h"
#include "server/local_sparse_store.h"
#include "server/parameter_shard.h"
#include "server/server_node.h"
#include "server/table_io.h"
#include "worker/checkpoint.h"
#include "worker/job.h"
#include "worker/job_runner.h"
#include "worker/ps_client.h"

DEFINE_string(cluster_config, "cluster-configs/local.pbtxt", "cluster config (roles of the ranks)");
DEFINE_string(job_config, "", "job config; default cluster-configs/jobs/<task>.pbtxt");
DEFINE_string(task, "synthetic",
              "named task: synthetic, taobao-conversion, retail-purchase, talkingdata-ctr "
              "(selects the job config when --job_config is empty)");
DEFINE_string(data_dir, "../shared/data", "directory of the raw public datasets");
DEFINE_bool(local, false, "single-process reference trainer: no MPI, no parameter servers");
DEFINE_int32(epochs, 0, "override the job's epochs (0: keep)");
DEFINE_double(export_interval_s, 0, "override export.interval_s (>= 0.1; 0: keep)");
DEFINE_double(export_full_interval_s, 0, "override export.full_interval_s (0: keep)");
DEFINE_double(export_full_timeout_s, 0, "override export.full_timeout_s (0: keep)");
DEFINE_int64(prefill_rows, 0,
             "benchmarks (tools/freshness_bench.sh): before training, the servers fill the job's "
             "widest table with this many generated rows (over all servers; initializer values, "
             "marked pushed so that they are exported and served like trained rows)");
DEFINE_int32(batch_size, 0, "override the job's batch size (0: keep)");
DEFINE_double(sparse_learning_rate, 0,
              "override the learning rate of every table's optimizer (FTRL: alpha) (0: keep)");
DEFINE_double(dense_learning_rate, 0, "override model.dense_learning_rate (0: keep)");
DEFINE_int32(embedding_dim, 0,
             "override the dim of every table but the wide table; a field-aware FM table "
             "(model.ffm_table) gets k = this, dim num_slots * k (0: keep)");
DEFINE_double(validation_fraction, -1,
              "override data.validation_fraction (-1: keep; 0: no validation split)");
DEFINE_int32(early_stopping_patience, -1,
             "set early_stopping.patience (needs a validation split; metric: the job's or auc); "
             "0: remove early stopping; -1: keep");
DEFINE_string(early_stopping_metric, "",
              "with a patience: set early_stopping.metric (auc, logloss, gauc; empty: keep)");
DEFINE_string(write_job, "",
              "write the job config as resolved from --job_config and the override flags to "
              "this file (text format; defaults that derive from work_dir left out) and exit "
              "without training (tools/tune.sh)");
DEFINE_int32(staleness, -2, "override the job's staleness bound (-1 async, 0 sync; -2: keep)");
DEFINE_string(model, "", "override the model kind: lr or deepfm");
DEFINE_int64(max_steps, 0, "stop training after this many steps (0: run the epochs)");
DEFINE_bool(dense_allreduce_on_device, true,
            "GPU workers with NCCL sum the dense gradients in GPU memory; false: through host "
            "memory (the same sums; for measuring the difference)");
DEFINE_string(work_dir, "", "override the job's work_dir (task data)");
DEFINE_string(model_dir, "", "override where the model is saved");
DEFINE_string(stream_dir, "",
              "override the job's stream.dir: train from the live event stream in this "
              "directory (docs/EVENT_FORMAT.md), e.g. with --job_config="
              "cluster-configs/jobs/realtime-shop.pbtxt");
DEFINE_string(device, "",
              "override the job's device: cpu, gpu, gpu:tf32 or gpu:bf16 (empty: keep)");
DEFINE_bool(save, true, "save the trained model (dense.bin, job.pbtxt, shard-*.rows)");
DEFINE_string(restore_from, "",
              "restore a saved model or checkpoint directory (dense.bin, shard-*-of-*.rows) "
              "before training: each server loads the rows of its slot range from every "
              ".rows file (any number of source servers), every worker the dense parameters");
DEFINE_bool(restore_only, false,
            "with --restore_from: load, then save the model to --model_dir without training "
            "(resharding a model onto this cluster's number of servers)");
DEFINE_string(checkpoint_dir, "",
              "write consistent checkpoints (docs/CHECKPOINTS.md) under this directory: "
              "ckpt-<id>/ and CHECKPOINT_LATEST; --restore_from=DIR restores the latest");
DEFINE_bool(resume, false,
            "with --checkpoint_dir=D: restore from D's newest complete checkpoint if there is "
            "one (as --restore_from=D: tables, dense state, step count, input position), else "
            "start fresh; what a supervisor or a requeued batch job reruns unchanged");
DEFINE_string(input_ledger_dir, "",
              "append what every trained batch consumed to <dir>/worker-<w>.ledger "
              "(docs/CHECKPOINTS.md, \"Trained-input ledger\"; empty: off)");
DEFINE_int64(checkpoint_interval_steps, 0, "take a checkpoint every this many steps (0: none)");
DEFINE_int32(checkpoint_keep, 2, "keep the newest this many checkpoints (0: all)");
DEFINE_int32(checkpoint_full_every, 1,
             "every this many checkpoints one is full, the others incremental (only the rows "
             "changed since the previous checkpoint); 1: all full");
DEFINE_int32(metrics_port, -1,
             "override the cluster config's metrics.port: rank r serves /metrics on this + r "
             "(0: no endpoints; -1: keep)");
DEFINE_string(metrics_dir, "",
              "override the cluster config's metrics.dir: each rank appends JSON lines to "
              "<dir>/metrics-rank<r>.jsonl");
DEFINE_double(collective_deadline_s, 1800,
              "longest wait of a worker in one all-reduce/barrier/gather, whatever the "
              "heartbeats say (docs/RELIABILITY.md, Recovery)");
DEFINE_double(heartbeat_silence_s, 10,
              "a worker whose heartbeat is older than this is dead or hung: the others' "
              "all-reduce fails, naming it");
DEFINE_string(heartbeat_dir, "",
              "where workers publish heartbeats (default <work_dir>/heartbeats; 'none': no "
              "heartbeats, only --collective_deadline_s)");

namespace freshet {
namespace {

// What --restore_from resolved to: the directories to load rows from, oldest
// first (a full checkpoint and its incremental successors, or one saved
// model). FLAGS_restore_from is set to the last (the dense state).
std::vector<std::string> g_restore_chain;
// --resume: the line saying what it found; printed once (rank 0).
std::string g_resume_note;

// Loads the rows `filter` keeps from every directory of the restore chain.
Status LoadRestoreChain(ParameterShard* shard, const RowFilter& filter, LoadRowsStats* stats) {
  for (const auto& dir : g_restore_chain) {
    FRESHET_RETURN_IF_ERROR(LoadModelRows(dir, shard, filter, stats));
  }
  return Status::OK();
}

int Fail(const Status& st, const std::string& who) {
  std::fprintf(stderr, "freshet_train: %s: %s\n", who.c_str(), st.ToString().c_str());
  std::fflush(stderr);
  return 1;
}

StatusOr<proto::JobConfig> LoadJob() {
  const std::string path =
      FLAGS_job_config.empty() ? "cluster-configs/jobs/" + FLAGS_task + ".pbtxt" : FLAGS_job_config;
  FRESHET_ASSIGN_OR_RETURN(proto::JobConfig job, LoadJobConfig(path));
  if (FLAGS_epochs > 0) job.set_epochs(FLAGS_epochs);
  if (FLAGS_export_interval_s > 0) {
    job.mutable_export_()->set_interval_s(static_cast<float>(FLAGS_export_interval_s));
  }
  if (FLAGS_export_full_timeout_s > 0) {
    job.mutable_export_()->set_full_timeout_s(static_cast<float>(FLAGS_export_full_timeout_s));
  }
  if (FLAGS_export_full_interval_s > 0) {
    job.mutable_export_()->set_full_interval_s(static_cast<float>(FLAGS_export_full_interval_s));
  }
  if (FLAGS_batch_size > 0) job.set_batch_size(FLAGS_batch_size);
  if (FLAGS_sparse_learning_rate > 0) {
    const float lr = static_cast<float>(FLAGS_sparse_learning_rate);
    for (auto& t : *job.mutable_tables()->mutable_tables()) {
      auto* o = t.mutable_optimizer();
      switch (o->kind_case()) {
        case proto::OptimizerConfig::kSgd:
          o->mutable_sgd()->set_learning_rate(lr);
          break;
        case proto::OptimizerConfig::kAdagrad:
          o->mutable_adagrad()->set_learning_rate(lr);
          break;
        case proto::OptimizerConfig::kAdam:
          o->mutable_adam()->set_learning_rate(lr);
          break;
        case proto::OptimizerConfig::kFtrl:
          o->mutable_ftrl()->set_alpha(lr);
          break;
        default:
          return InvalidArgument("--sparse_learning_rate: table '" + t.name() +
                                 "' has no optimizer to set it on");
      }
    }
  }
  if (FLAGS_dense_learning_rate > 0) {
    job.mutable_model()->set_dense_learning_rate(static_cast<float>(FLAGS_dense_learning_rate));
  }
  if (FLAGS_embedding_dim > 0) {
    for (auto& t : *job.mutable_tables()->mutable_tables()) {
      if (t.name() == job.model().wide_table()) continue;
      const bool ffm =
          job.model().kind() == proto::ModelConfig::LAYERED && t.name() == job.model().ffm_table();
      t.set_dim(static_cast<uint32_t>(FLAGS_embedding_dim) *
                static_cast<uint32_t>(ffm ? job.features().slots_size() : 1));
    }
  }
  if (FLAGS_validation_fraction >= 0) {
    job.mutable_data()->set_validation_fraction(static_cast<float>(FLAGS_validation_fraction));
  }
  if (FLAGS_early_stopping_patience == 0) job.clear_early_stopping();
  if (FLAGS_early_stopping_patience > 0) {
    job.mutable_early_stopping()->set_patience(FLAGS_early_stopping_patience);
    if (!FLAGS_early_stopping_metric.empty()) {
      job.mutable_early_stopping()->set_metric(FLAGS_early_stopping_metric);
    }
  }
  if (FLAGS_staleness >= -1) job.set_staleness(FLAGS_staleness);
  if (!FLAGS_work_dir.empty()) {
    // Directories derived from the old work_dir follow the new one.
    const std::string old = job.work_dir();
    if (job.model_dir() == old + "/model") job.clear_model_dir();
    if (job.export_().dir() == old + "/export") job.mutable_export_()->clear_dir();
    job.set_work_dir(FLAGS_work_dir);
  }
  if (!FLAGS_model_dir.empty()) job.set_model_dir(FLAGS_model_dir);
  if (!FLAGS_stream_dir.empty()) job.mutable_stream()->set_dir(FLAGS_stream_dir);
  if (!FLAGS_device.empty()) job.set_device(FLAGS_device);
  if (FLAGS_model == "lr") job.mutable_model()->set_kind(proto::ModelConfig::LR);
  if (FLAGS_model == "deepfm") job.mutable_model()->set_kind(proto::ModelConfig::DEEPFM);
  if (!FLAGS_model.empty() && FLAGS_model != "lr" && FLAGS_model != "deepfm") {
    return InvalidArgument("--model must be lr or deepfm, got '" + FLAGS_model + "'");
  }
  FRESHET_RETURN_IF_ERROR(ValidateJobConfig(&job, path));
  FRESHET_RETURN_IF_ERROR(ParseDevice(job.device()).status().WithContext(path));
  return job;
}

RunOptions Options() {
  RunOptions o;
  o.data_dir = FLAGS_data_dir;
  o.max_steps = FLAGS_max_steps;
  o.dense_allreduce_on_device = FLAGS_dense_allreduce_on_device;
  o.save_model = FLAGS_save;
  o.restore_dir = FLAGS_restore_from;
  o.input_ledger_dir = FLAGS_input_ledger_dir;
  o.checkpoint.dir = FLAGS_checkpoint_dir;
  o.checkpoint.interval_steps = FLAGS_checkpoint_interval_steps;
  o.checkpoint.keep = FLAGS_checkpoint_keep;
  o.checkpoint.full_every = FLAGS_checkpoint_full_every;
  return o;
}

int RunLocal(const proto::JobConfig& job) {
  // A GPU job fails here, before any data is prepared, when there is none.
  auto device = ParseDevice(job.device());
  if (device.ok() && device->kind == DeviceKind::kGpu) {
    auto gpus = CudaDeviceCount();
    if (!gpus.ok()) return Fail(gpus.status(), "device " + device->ToString());
  }
  auto shard = ParameterShard::Create(job.tables(), 64);
  if (!shard.ok()) return Fail(shard.status(), "tables");
  if (!FLAGS_restore_from.empty()) {
    Status st = LoadRestoreChain(shard->get(), RowFilter(), nullptr);
    if (!st.ok()) return Fail(st, "restore");
  }
  LocalSparseStore store(shard->get());
  LocalCollective collective;
  ShardTableCheckpointer tables(shard->get());
  if (FLAGS_restore_only) {
    Status st = SaveRestoredModel(job, FLAGS_restore_from, &tables);
    return st.ok() ? 0 : Fail(st, "restore_only");
  }
  RunOptions opt = Options();
  opt.tables = &tables;
  auto r = RunWorkerJob(job, &store, &collective, opt);
  if (!r.ok()) return Fail(r.status(), "local trainer");
  // Table size after training (docs/TABLES.md; tools/table_size_bench.sh).
  const TableStats ts = (*shard)->TotalTableStats();
  std::printf(
      "tables: {\"table_rows\":%lld,\"table_bytes\":%lld,\"held_back_pushes\":%lld,"
      "\"admitted\":%lld,\"evicted_ttl\":%lld,\"evicted_capacity\":%lld}\n",
      static_cast<long long>(ts.rows), static_cast<long long>(ts.bytes),
      static_cast<long long>(ts.held_back_pushes), static_cast<long long>(ts.admitted),
      static_cast<long long>(ts.evicted_ttl), static_cast<long long>(ts.evicted_capacity));
  std::printf("%s%s\n", r->Summary().c_str(), r->Json(job, 1, 0).c_str());
  return 0;
}

int RunMpi(int argc, char** argv, const proto::JobConfig& job) {
  auto session_or = MpiSession::Init(&argc, &argv);
  if (!session_or.ok()) return Fail(session_or.status(), "MPI");
  std::unique_ptr<MpiSession> session(*session_or);
  const int rank = session->rank();
  auto cfg = LoadClusterConfig(FLAGS_cluster_config);
  if (!cfg.ok()) return Fail(cfg.status(), "cluster config");
  if (FLAGS_metrics_port >= 0) cfg->mutable_metrics()->set_port(FLAGS_metrics_port);
  if (!FLAGS_metrics_dir.empty()) cfg->mutable_metrics()->set_dir(FLAGS_metrics_dir);
  ClusterLayout layout(*cfg);
  if (layout.world_size() != session->size()) {
    if (rank == 0) {
      std::fprintf(stderr, "freshet_train: %s defines %d ranks, mpirun started %d (use -np %d)\n",
                   FLAGS_cluster_config.c_str(), layout.world_size(), session->size(),
                   layout.world_size());
    }
    return 1;
  }
  if (FLAGS_restore_only && layout.num_exporters() > 0) {
    if (rank == 0) {
      std::fprintf(stderr,
                   "freshet_train: --restore_only: %s has exporter ranks; use a cluster "
                   "config of servers and workers only\n",
                   FLAGS_cluster_config.c_str());
    }
    return 1;
  }
  const proto::Role role = layout.RoleOf(rank);
  if (rank == 0 && !freshet::g_resume_note.empty()) {
    std::printf("%s\n", freshet::g_resume_note.c_str());
    std::fflush(stdout);
  }
  if (rank == 0) {
    std::printf("freshet_train: job '%s' (task %s, model %s) on cluster '%s'\n%s",
                job.name().c_str(), job.task().c_str(),
                proto::ModelConfig::Kind_Name(job.model().kind()).c_str(), cfg->name().c_str(),
                layout.ToTable().c_str());
    const auto& m = cfg->metrics();
    if (m.port() > 0) {
      std::printf("metrics: http://%s:%d..%d/metrics (port %d + rank)\n", m.host().c_str(),
                  m.port(), m.port() + layout.world_size() - 1, m.port());
    }
    if (!m.dir().empty()) {
      std::printf("metrics: %s/metrics-rank<r>.jsonl every %g s\n", m.dir().c_str(),
                  m.interval_s());
    }
    std::fflush(stdout);
  }
  MPI_Comm role_comm;
  MPI_Comm_split(MPI_COMM_WORLD, static_cast<int>(role), rank, &role_comm);
  auto transport_or = MpiTransport::Create(MPI_COMM_WORLD);
  if (!transport_or.ok()) return Fail(transport_or.status(), "transport");
  std::unique_ptr<MpiTransport> transport = std::move(transport_or).value();
  const Millis timeout(cfg->transport().request_timeout_ms());
  MetricsRegistry metrics({{"rank", std::to_string(rank)}, {"role", RoleName(role)}});
  RegisterFileWriteMetrics(&metrics);  // checkpoint/model/export write retries and failures
  {
    Transport* t = transport.get();
    metrics.AddCallback("transport_bytes_sent", "Bytes this rank sent (frames).", true,
                        [t] { return static_cast<double>(t->stats().bytes_sent); });
    metrics.AddCallback("transport_bytes_received", "Bytes this rank received (frames).", true,
                        [t] { return static_cast<double>(t->stats().bytes_received); });
    metrics.AddCallback("transport_messages_sent", "Messages this rank sent.", true,
                        [t] { return static_cast<double>(t->stats().messages_sent); });
    metrics.AddCallback("transport_messages_received", "Messages this rank received.", true,
                        [t] { return static_cast<double>(t->stats().messages_received); });
  }
  auto service_or = StartMetrics(cfg->metrics(), rank, role, &metrics);
  if (!service_or.ok()) return Fail(service_or.status(), layout.Describe(rank));
  std::unique_ptr<MetricsService> service = std::move(service_or).value();
  int rc = 0;
  if (role == proto::SERVER) {
    auto shard = ParameterShard::Create(job.tables(), cfg->server().partitions());
    if (!shard.ok()) return Fail(shard.status(), layout.Describe(rank));
    (*shard)->SetRequestThreads(cfg->server().request_threads());
    if (!FLAGS_restore_from.empty()) {
      // Resharding: this server keeps the rows of its slot range, whatever
      // number of servers wrote the files.
      const int me = layout.IndexInRole(rank), n = layout.num_servers();
      LoadRowsStats stats;
      const auto t0 = std::chrono::steady_clock::now();
      Status st = LoadRestoreChain(shard->get(), RowFilter::ForShard(me, n), &stats);
      if (!st.ok()) {
        Fail(st, layout.Describe(rank) + " restore");
        MpiSession::Abort(2);  // the workers would wait for this server forever
      }
      std::printf(
          "freshet_train: server %d/%d restored %lld of %lld rows from %lld files of %s "
          "in %.0f ms\n",
          me, n, static_cast<long long>(stats.rows_kept), static_cast<long long>(stats.rows_read),
          static_cast<long long>(stats.files), FLAGS_restore_from.c_str(),
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      std::fflush(stdout);
    }
    if (FLAGS_prefill_rows > 0) {
      const auto t0 = std::chrono::steady_clock::now();
      const int64_t rows = PrefillRows(shard->get(), layout.IndexInRole(rank), layout.num_servers(),
                                       FLAGS_prefill_rows);
      std::printf(
          "freshet_train: server %d prefilled %lld rows in %.0f ms\n", layout.IndexInRole(rank),
          static_cast<long long>(rows),
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      std::fflush(stdout);
    }
    ServerNode node(transport.get(), layout, shard->get(), cfg->server().handler_threads(), timeout,
                    &metrics);
    StopMetricsOnExit stop_metrics{service.get()};
    Status st = node.Run();
    if (!st.ok()) {
      Fail(st, layout.Describe(rank));
      MpiSession::Abort(2);
    }
  } else if (role == proto::WORKER) {
    std::vector<int> dims;
    for (const auto& t : job.tables().tables()) dims.push_back(static_cast<int>(t.dim()));
    PsClientOptions popt;
    popt.request_timeout = timeout;
    popt.max_inflight = cfg->transport().max_inflight_requests();
    popt.max_keys_per_request = cfg->transport().max_keys_per_request();
    popt.staleness = JobStaleness(job);
    popt.metrics = &metrics;
    auto client = PsClient::Create(transport.get(), layout, dims, popt);
    if (!client.ok()) return Fail(client.status(), layout.Describe(rank));
    StopMetricsOnExit stop_metrics{service.get()};
    auto device = ParseDevice(job.device());
    if (!device.ok()) return Fail(device.status(), layout.Describe(rank));
    std::string reduce_via;
    CollectiveOptions copt;
    copt.deadline = Millis(static_cast<int64_t>(FLAGS_collective_deadline_s * 1000));
    copt.silence = Millis(static_cast<int64_t>(FLAGS_heartbeat_silence_s * 1000));
    copt.heartbeat_dir = FLAGS_heartbeat_dir.empty()     ? job.work_dir() + "/heartbeats"
                         : FLAGS_heartbeat_dir == "none" ? ""
                                                         : FLAGS_heartbeat_dir;
    copt.member_noun = "worker";
    auto collective = CreateCollective(role_comm, *device, &reduce_via, copt);
    if (!collective.ok()) {
      Fail(collective.status(), layout.Describe(rank));
      MpiSession::Abort(3);  // the servers would wait for this worker forever
    }
    if (layout.IndexInRole(rank) == 0) {
      const bool in_device_memory = device->kind == DeviceKind::kGpu &&
                                    (*collective)->sums_on_device() &&
                                    FLAGS_dense_allreduce_on_device;
      std::printf("freshet_train: workers run on device %s, all-reduce through %s%s\n",
                  device->ToString().c_str(), reduce_via.c_str(),
                  in_device_memory ? " (dense gradients summed in GPU memory)" : "");
      std::fflush(stdout);
    }
    RunOptions opt = Options();
    opt.checkpoint.num_servers = layout.num_servers();
    opt.metrics = &metrics;
    PsClient* c = client->get();
    // Checkpoints: servers copy at the cut and write in the background.
    PsTableCheckpointer tables(c);
    opt.tables = &tables;
    std::unique_ptr<ExporterFeed> feed;
    if (layout.num_exporters() > 0) {
      // Every worker reports its watermark; worker 0 feeds the exporter the
      // dense parameters every export interval and the final model. The
      // final export is a full snapshot: it may take the exporter up to
      // export.full_timeout_s (3 tries of it, each within that, worst case)
      // beyond the transport deadline.
      const Millis final_timeout =
          timeout + Millis(static_cast<int64_t>(job.export_().full_timeout_s() * 1000));
      feed = std::make_unique<ExporterFeed>(
          transport.get(), c, layout.ExporterRank(0),
          std::chrono::duration<double>(job.export_().interval_s()) / 2, final_timeout);
      opt.export_feed = feed.get();
    }
    if (FLAGS_restore_only) {
      // Worker 0 has every server write what it restored; the others only
      // end their sessions.
      Status st = layout.IndexInRole(rank) == 0
                      ? SaveRestoredModel(job, FLAGS_restore_from, &tables)
                      : Status::OK();
      if (!st.ok()) {
        Fail(st, layout.Describe(rank) + " restore_only");
        MpiSession::Abort(3);
      }
      if (layout.IndexInRole(rank) == 0) {
        std::printf("freshet_train: restored %s onto %d servers, saved to %s\n",
                    FLAGS_restore_from.c_str(), layout.num_servers(), job.model_dir().c_str());
        std::fflush(stdout);
      }
      st = (*client)->Shutdown();
      if (!st.ok()) rc = Fail(st, layout.Describe(rank));
      transport->Shutdown();
      MPI_Comm_free(&role_comm);
      return rc;
    }
    auto r = RunWorkerJob(job, c, collective->get(), opt);
    if (!r.ok()) {
      Fail(r.status(), layout.Describe(rank));
      // Peers may wait on this rank: end the whole job now, loudly.
      MpiSession::Abort(3);
    }
    if (layout.IndexInRole(rank) == 0) {
      std::printf("%s%s\n", r->Summary().c_str(),
                  r->Json(job, layout.num_workers(), layout.num_servers()).c_str());
      std::fflush(stdout);
    }
    Status st = (*client)->Shutdown();
    if (!st.ok()) rc = Fail(st, layout.Describe(rank));
  } else {
    ExporterNode exporter(transport.get(), layout, job, timeout, &metrics);
    StopMetricsOnExit stop_metrics{service.get()};
    Status st = exporter.Run();
    if (!st.ok()) {
      Fail(st, layout.Describe(rank));
      MpiSession::Abort(4);
    }
    const ExporterStats& s = exporter.stats();
    double delta_rows = 0;
    for (int64_t r : s.delta_rows) delta_rows += static_cast<double>(r);
    if (!s.delta_rows.empty()) delta_rows /= static_cast<double>(s.delta_rows.size());
    std::printf(
        "exporter: %lld full (collected) + %lld compacted full + %lld delta snapshots, %lld "
        "rows, %.1f MB to %s (slowest export %.0f ms; deltas: p50 %.1f ms, p99 %.1f ms, %.0f "
        "rows on average)\n",
        static_cast<long long>(s.fulls), static_cast<long long>(s.compactions),
        static_cast<long long>(s.deltas), static_cast<long long>(s.rows_exported),
        s.bytes_written / 1e6, job.export_().dir().c_str(), s.max_export_ms, s.DeltaMsQuantile(0.5),
        s.DeltaMsQuantile(0.99), delta_rows);
    // The slowest deltas and where their time went: a p99 is one or two
    // deltas in a short run.
    std::vector<size_t> order(s.delta_ms.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    const size_t top = std::min<size_t>(3, order.size());
    std::partial_sort(order.begin(), order.begin() + top, order.end(),
                      [&s](size_t a, size_t b) { return s.delta_ms[a] > s.delta_ms[b]; });
    std::string slowest;
    for (size_t k = 0; k < top; ++k) {
      const size_t i = order[k];
      char buf[160];
      std::snprintf(
          buf, sizeof(buf), "%sv%lld (#%zu) %.0f ms = collect %.0f + publish %.0f (fsync %.0f)",
          k == 0 ? "" : "; ", static_cast<long long>(s.delta_version[i]), i + 1, s.delta_ms[i],
          s.delta_collect_ms[i], s.delta_publish_ms[i], s.delta_fsync_ms[i]);
      slowest += buf;
    }
    if (top > 0) std::printf("exporter: slowest deltas: %s\n", slowest.c_str());
    if (!s.durable_lag_ms.empty()) {
      // export.durability ASYNC: how long after a publish its files were
      // durable (the flusher's fsyncs, off the publishing path).
      const std::vector<double>& lag = s.durable_lag_ms;
      std::printf(
          "exporter: durable (ASYNC) after p50 %.1f ms, p99 %.1f ms, max %.1f ms (%zu "
          "flushes)\n",
          ExporterStats::Quantile(lag, 0.5), ExporterStats::Quantile(lag, 0.99),
          ExporterStats::Quantile(lag, 1.0), lag.size());
    }
    // Where each full snapshot's time went (ExporterStats).
    for (size_t i = 0; i < s.full_ms.size(); ++i) {
      std::printf(
          "exporter: full #%zu: %.0f ms = collect %.0f ms (decode+copy %.0f ms) + publish "
          "(write, fsync, manifest) %.0f ms\n",
          i + 1, s.full_ms[i], s.full_collect_ms[i], s.full_copy_ms[i], s.full_publish_ms[i]);
    }
    // Compacted fulls (export.full_source COMPACT), made beside the deltas.
    for (size_t i = 0; i < s.compact_ms.size(); ++i) {
      std::printf(
          "exporter: compacted full #%zu: %.0f ms (loading the chain %.0f ms, writing %.0f ms), "
          "not holding deltas back\n",
          i + 1, s.compact_ms[i], s.compact_load_ms[i], s.compact_write_ms[i]);
    }
    if (s.failed_compactions > 0) {
      std::printf("exporter: %lld compactions failed (logged)\n",
                  static_cast<long long>(s.failed_compactions));
    }
    std::fflush(stdout);
  }
  transport->Shutdown();
  MPI_Comm_free(&role_comm);
  return rc;
}

}  // namespace
}  // namespace freshet

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "trains a model: under mpirun with --cluster_config roles, or --local in one process");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  freshet::InitLogging(argv[0]);
  auto job = freshet::LoadJob();
  if (!job.ok()) {
    std::fprintf(stderr, "freshet_train: %s\n", job.status().ToString().c_str());
    return 1;
  }
  if (!FLAGS_write_job.empty()) {
    freshet::proto::JobConfig out = *job;
    // What ValidateJobConfig derives from work_dir stays derived.
    const std::string work = out.work_dir();
    if (out.model_dir() == work + "/model") out.clear_model_dir();
    if (out.export_().dir() == work + "/export") out.mutable_export_()->clear_dir();
    if (work == "out/" + (out.task().empty() ? out.name() : out.task())) out.clear_work_dir();
    std::string text;
    google::protobuf::TextFormat::PrintToString(out, &text);
    // The write renames a temporary file over the path: never over a
    // device or directory (--write_job=/dev/null would replace the device).
    std::error_code ec;
    const auto status = std::filesystem::status(FLAGS_write_job, ec);
    if (!ec && std::filesystem::exists(status) && !std::filesystem::is_regular_file(status)) {
      std::fprintf(stderr, "freshet_train: --write_job: %s exists and is not a regular file\n",
                   FLAGS_write_job.c_str());
      return 1;
    }
    freshet::Status st = freshet::WriteFileAtomic(FLAGS_write_job, text);
    if (!st.ok()) {
      std::fprintf(stderr, "freshet_train: --write_job: %s\n", st.ToString().c_str());
      return 1;
    }
    return 0;
  }
  if (FLAGS_restore_only && FLAGS_restore_from.empty()) {
    std::fprintf(stderr, "freshet_train: --restore_only needs --restore_from\n");
    return 1;
  }
  if (FLAGS_resume) {
    if (FLAGS_checkpoint_dir.empty() || !FLAGS_restore_from.empty() || FLAGS_restore_only) {
      std::fprintf(stderr,
                   "freshet_train: --resume needs --checkpoint_dir and neither "
                   "--restore_from nor --restore_only\n");
      return 1;
    }
    auto id = freshet::NewestCompleteCheckpoint(FLAGS_checkpoint_dir);
    if (id.ok()) {
      FLAGS_restore_from = freshet::CheckpointDir(FLAGS_checkpoint_dir, *id);
      freshet::g_resume_note = "freshet_train: --resume: restoring checkpoint " +
                               std::to_string(*id) + " (" + FLAGS_restore_from + ")";
    } else {
      freshet::g_resume_note = "freshet_train: --resume: no complete checkpoint in " +
                               FLAGS_checkpoint_dir + ", starting fresh";
    }
  }
  if (!FLAGS_restore_from.empty()) {
    // A checkpoint root restores its latest complete checkpoint; a
    // checkpoint's manifest is verified first.
    auto chain = freshet::ResolveRestoreChain(FLAGS_restore_from);
    if (!chain.ok()) {
      std::fprintf(stderr, "freshet_train: --restore_from: %s\n",
                   chain.status().ToString().c_str());
      return 1;
    }
    freshet::g_restore_chain = *chain;
    FLAGS_restore_from = chain->back();
  }
  if (FLAGS_local && !freshet::g_resume_note.empty()) {
    std::printf("%s\n", freshet::g_resume_note.c_str());
  }
  if (FLAGS_local) return freshet::RunLocal(*job);
  return freshet::RunMpi(argc, argv, *job);
}
