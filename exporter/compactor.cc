#include "exporter/compactor.h"

#include <chrono>
#include <memory>

#include "exporter/export_dir.h"
#include "exporter/model_loader.h"
#include "exporter/snapshot_format.h"

namespace freshet {

StatusOr<proto::ExportFile> CompactChain(const std::string& dir, const proto::ExportManifest& chain,
                                         const std::string& file_name, CompactionStats* stats) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  FRESHET_ASSIGN_OR_RETURN(std::shared_ptr<const LoadedExport> model, LoadExportChain(dir, chain));
  const auto t1 = Clock::now();
  Snapshot snap;
  snap.kind = Snapshot::Kind::kFull;
  snap.version = chain.version();
  snap.watermark = chain.watermark();
  snap.ingest_wall_ms = chain.ingest_wall_ms();
  snap.label_wall_ms = chain.label_wall_ms();
  snap.has_dense = !model->dense.empty();
  snap.dense = model->dense;
  int64_t rows = 0;
  for (const auto& jt : chain.job().tables().tables()) {
    SnapshotTable& st = snap.tables.emplace_back();
    st.name = jt.name();
    st.dim = static_cast<int>(jt.dim());
    const auto it = model->tables.find(jt.name());
    if (it == model->tables.end()) continue;  // LoadExportChain lists every job table
    const ServedTable* table = &it->second;
    st.generated_rows = table->size();
    st.generate = [table](const SnapshotTable::RowEmitter& emit) {
      table->ForEachBatch(
          [&emit](const uint64_t* keys, const float* values, size_t n) { emit(keys, values, n); });
    };
    rows += static_cast<int64_t>(table->size());
  }
  proto::ExportFile entry;
  FRESHET_RETURN_IF_ERROR(WriteSnapshotFile(snap, ExportPath(dir, file_name), &entry));
  if (stats != nullptr) {
    const auto t2 = Clock::now();
    stats->rows = rows;
    stats->bytes = static_cast<int64_t>(entry.size());
    stats->load_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    stats->write_ms = std::chrono::duration<double, std::milli>(t2 - t1).count();
  }
  return entry;
}

}  // namespace freshet
