#include "apps/train/train_wiring.h"

#include <glog/logging.h>
#include <google/protobuf/text_format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "common/config.h"
#include "common/ps_wire.h"
#include "common/sharding.h"
#include "model/features.h"
#include "server/initializer.h"
#include "server/table_io.h"

namespace freshet {

Status ShardTableCheckpointer::Save(const std::string& dir) {
  Status st = SaveShardRows(*shard_, dir + "/" + ShardFileName(0, 1));
  if (st.ok()) saved_version_ = shard_->version();
  return st;
}

Status ShardTableCheckpointer::SaveChanged(const std::string& dir) {
  const uint32_t now = shard_->version();
  Status st = SaveShardRows(*shard_, dir + "/" + ShardFileName(0, 1), saved_version_);
  if (st.ok()) saved_version_ = now;
  return st;
}

Status ShardTableCheckpointer::Load(const std::string& dir) {
  return ReplaceShardRows(dir + "/" + ShardFileName(0, 1), shard_);
}

ExporterFeed::ExporterFeed(Transport* transport, PsClient* client, int exporter,
                           std::chrono::duration<double> every, Millis final_timeout)
    : transport_(transport),
      client_(client),
      exporter_(exporter),
      every_(every),
      final_timeout_(final_timeout),
      last_watermark_(std::chrono::steady_clock::now() - std::chrono::hours(1)),
      last_dense_(last_watermark_) {}

void ExporterFeed::Watermark(const TrainingClocks& clocks) {
  // Every worker reports its watermark; the exporter exports the minimum.
  // Often (kWatermarkEvery), whatever the export interval: an export's
  // clocks are the last ones reported before its cut, so a report's age at
  // the cut adds to the freshness every reader measures.
  if (clocks.watermark == sent_.watermark && clocks.wall_ms == sent_.wall_ms &&
      clocks.label_wall_ms == sent_.label_wall_ms) {
    return;  // nothing new
  }
  const auto now = std::chrono::steady_clock::now();
  if (now - last_watermark_ < std::min<std::chrono::duration<double>>(every_, kWatermarkEvery)) {
    return;
  }
  // At most one unreceived at the exporter (Transport::SendLatest): a
  // stopped exporter must not stall this worker's pulls and pushes.
  StatusOr<bool> sent =
      transport_->SendLatest(exporter_, kWatermarkChannel, EncodeWatermark(clocks));
  if (!sent.ok()) {
    LOG(WARNING) << "watermark to the exporter: " << sent.status();
  } else if (*sent) {
    last_watermark_ = now;
    sent_ = clocks;
  }
}

namespace {

// DENSE_UPDATE, or EXPORT_FINAL when `final` (common/ps_wire.h).
Message DenseMessage(bool final, const Model& model, const TrainingClocks& clocks) {
  freshet::DenseUpdate u;
  u.clocks = clocks;
  u.dense = model.dense_params();
  u.num_dense = model.NumDenseParams();
  return EncodeDenseUpdate(u, final);
}

}  // namespace

void ExporterFeed::Dense(const Model& model, const TrainingClocks& clocks) {
  // The dense parameters every export interval.
  const auto now = std::chrono::steady_clock::now();
  if (now - last_dense_ < every_) return;
  StatusOr<bool> sent = transport_->SendLatest(exporter_, kDenseChannel,
                                               DenseMessage(/*final=*/false, model, clocks));
  if (!sent.ok()) {
    LOG(WARNING) << "dense update to the exporter: " << sent.status();
  } else if (*sent) {
    last_dense_ = now;
  }
}

Status ExporterFeed::Final(const Model& model, const TrainingClocks& clocks) {
  // The final export is a full snapshot: the exporter answers once it is
  // published.
  return client_
      ->CallRanks({exporter_}, DenseMessage(/*final=*/true, model, clocks), final_timeout_)
      .status();
}

int64_t PrefillRows(ParameterShard* shard, int me, int n, int64_t total) {
  int widest = 0;
  for (int t = 1; t < shard->num_tables(); ++t) {
    if (shard->table(t)->dim() > shard->table(widest)->dim()) widest = t;
  }
  EmbeddingTable* table = shard->table(widest);
  const int dim = table->dim();
  std::vector<float> w(static_cast<size_t>(dim));
  RowMeta meta;
  meta.version = 1;
  int64_t added = 0;
  const int64_t share = total / n + (me < total % n ? 1 : 0);
  for (uint64_t i = 0; added < share; ++i) {
    const uint64_t key = HashToken(0x9f11ed, std::to_string(i));
    if (ShardOf(key, n) != me) continue;
    InitializeRow(table->config().initializer(), widest, key, w.data(), dim);
    table->Upsert(key, w.data(), nullptr, meta);
    ++added;
  }
  Status st = shard->HandlePush(widest, static_cast<uint32_t>(dim), nullptr, 0, nullptr);
  CHECK(st.ok()) << st;
  return added;
}

StatusOr<std::unique_ptr<MetricsService>> StartMetrics(const proto::MetricsConfig& cfg, int rank,
                                                       proto::Role role,
                                                       MetricsRegistry* registry) {
  MetricsServiceOptions o;
  o.host = cfg.host();
  o.port = cfg.port() > 0 ? cfg.port() + rank : -1;
  o.interval = std::chrono::milliseconds(static_cast<int64_t>(cfg.interval_s() * 1000));
  o.log_fields = "\"rank\":" + std::to_string(rank) + ",\"role\":\"" + RoleName(role) + "\"";
  if (!cfg.dir().empty()) {
    std::error_code ec;
    std::filesystem::create_directories(cfg.dir(), ec);
    if (ec) return Internal("metrics: cannot create " + cfg.dir() + ": " + ec.message());
    o.log_path = cfg.dir() + "/metrics-rank" + std::to_string(rank) + ".jsonl";
  }
  if (o.port < 0 && o.log_path.empty()) return std::unique_ptr<MetricsService>();
  auto s = MetricsService::Start(o, registry);
  if (!s.ok() && s.status().code() == StatusCode::kUnavailable) {
    std::fprintf(stderr, "freshet_train: rank %d: %s; no /metrics endpoint on this rank\n", rank,
                 s.status().message().c_str());
    o.port = -1;
    s = MetricsService::Start(o, registry);
  }
  return s;
}

Status SaveRestoredModel(const proto::JobConfig& job, const std::string& restored_dir,
                         TableCheckpointer* tables) {
  const std::string& dir = job.model_dir();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Internal(dir + ": cannot create: " + ec.message());
  std::filesystem::copy_file(restored_dir + "/dense.bin", dir + "/dense.bin",
                             std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) return Internal(restored_dir + "/dense.bin: cannot copy: " + ec.message());
  if (std::filesystem::exists(restored_dir + "/dense_opt.bin")) {
    std::filesystem::copy_file(restored_dir + "/dense_opt.bin", dir + "/dense_opt.bin",
                               std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) return Internal(restored_dir + "/dense_opt.bin: cannot copy: " + ec.message());
  }
  std::string text;
  google::protobuf::TextFormat::PrintToString(job, &text);
  std::ofstream out(dir + "/job.pbtxt", std::ios::trunc);
  out << text;
  if (!out.flush()) return Internal(dir + "/job.pbtxt: cannot write");
  return tables->Save(dir);
}

}  // namespace freshet
