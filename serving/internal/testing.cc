#include "serving/internal/testing.h"

#include <glog/logging.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

#include "common/collective.h"
#include "model/features.h"
#include "model/model_factory.h"
#include "server/local_sparse_store.h"
#include "server/parameter_shard.h"
#include "worker/data/example_io.h"
#include "worker/job.h"
#include "worker/trainer.h"

namespace freshet {
namespace serving_testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/freshet_serving_XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  CHECK(::mkdtemp(buf.data()) != nullptr) << "mkdtemp " << tmpl << ": " << std::strerror(errno);
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

proto::JobConfig TinyJob() {
  proto::JobConfig job;
  job.set_name("serving-test");
  job.mutable_data()->add_train_files("unused.examples");
  auto* f = job.mutable_features();
  auto slot = [&](const char* name, const char* column) {
    proto::SlotConfig* s = f->add_slots();
    s->set_name(name);
    if (column != nullptr) s->set_column(column);
    s->set_table("emb");
    return s;
  };
  slot("user", nullptr);
  slot("item", nullptr);
  proto::SlotConfig* q = slot("query", nullptr);
  q->set_multi_valued(true);
  q->set_pooling(proto::MEAN);
  proto::SlotConfig* t = slot("tags", nullptr);
  t->set_multi_valued(true);
  t->set_pooling(proto::SUM);
  proto::SlotConfig* p = slot("price_bucket", "price");
  p->set_transform(proto::SlotConfig::BOUNDARIES);
  p->add_boundaries(1);
  p->add_boundaries(10);
  p->add_boundaries(100);
  proto::DenseConfig* d = f->add_dense();
  d->set_name("price_log");
  d->set_column("price");
  d->set_transform(proto::DenseConfig::LOG1P);
  f->add_dense()->set_name("age");

  auto* wide = job.mutable_tables()->add_tables();
  wide->set_name("wide");
  wide->set_dim(1);
  wide->mutable_initializer()->set_kind(proto::Initializer::UNIFORM);
  wide->mutable_initializer()->set_scale(0.05f);
  wide->mutable_initializer()->set_seed(7);
  wide->mutable_optimizer()->mutable_adagrad()->set_learning_rate(0.05f);
  auto* emb = job.mutable_tables()->add_tables();
  emb->set_name("emb");
  emb->set_dim(4);
  emb->mutable_initializer()->set_kind(proto::Initializer::NORMAL);
  emb->mutable_initializer()->set_scale(0.1f);
  emb->mutable_initializer()->set_seed(9);
  emb->mutable_optimizer()->mutable_adagrad()->set_learning_rate(0.05f);

  auto* m = job.mutable_model();
  m->set_kind(proto::ModelConfig::DEEPFM);
  m->set_wide_table("wide");
  m->add_hidden(8);
  m->add_hidden(4);
  m->set_seed(3);
  Status st = ValidateJobConfig(&job, "TinyJob");
  CHECK(st.ok()) << st;
  return job;
}

State RandomState(const proto::JobConfig& job, const std::vector<std::string>& columns,
                  const std::vector<Example>& examples, double keep_fraction, std::mt19937* rng) {
  auto encoder = FeatureEncoder::Create(job.features(), columns);
  CHECK(encoder.ok()) << encoder.status();
  EncodedBatch batch;
  Status st = (*encoder)->Encode(examples.data(), static_cast<int>(examples.size()), &batch);
  CHECK(st.ok()) << st;
  auto model = CreateJobModel(job, (*encoder)->num_slots(), (*encoder)->num_dense());
  CHECK(model.ok()) << model.status();

  State state;
  std::normal_distribution<float> noise(0.0f, 0.05f);
  const float* p = (*model)->dense_params();
  state.dense.assign(p, p + (*model)->NumDenseParams());
  for (float& v : state.dense) v += noise(*rng);

  std::uniform_real_distribution<float> value(-0.3f, 0.3f);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  std::set<uint64_t> keys;
  for (const auto& k : batch.keys) keys.insert(k.begin(), k.end());
  for (uint64_t key : keys) {
    if (coin(*rng) >= keep_fraction) continue;
    for (const auto& t : job.tables().tables()) {
      std::vector<float> row(t.dim());
      for (float& v : row) v = value(*rng);
      state.rows[t.name()][key] = std::move(row);
    }
  }
  return state;
}

namespace {

SnapshotTable TableOf(const proto::TableConfig& t) {
  SnapshotTable st;
  st.name = t.name();
  st.dim = static_cast<int>(t.dim());
  return st;
}

const std::map<uint64_t, std::vector<float>>& RowsOf(const State& s, const std::string& table) {
  static const std::map<uint64_t, std::vector<float>> kEmpty;
  const auto it = s.rows.find(table);
  return it == s.rows.end() ? kEmpty : it->second;
}

}  // namespace

Snapshot FullSnapshot(const proto::JobConfig& job, const State& state, uint64_t version) {
  Snapshot snap;
  snap.kind = Snapshot::Kind::kFull;
  snap.version = version;
  snap.watermark = 1700000000 + static_cast<int64_t>(version);
  snap.has_dense = true;
  snap.dense = state.dense;
  for (const auto& t : job.tables().tables()) {
    SnapshotTable st = TableOf(t);
    for (const auto& [key, row] : RowsOf(state, t.name())) {
      st.keys.push_back(key);
      st.values.insert(st.values.end(), row.begin(), row.end());
    }
    snap.tables.push_back(std::move(st));
  }
  return snap;
}

Snapshot DeltaSnapshot(const proto::JobConfig& job, const State& before, const State& after,
                       uint64_t version) {
  Snapshot snap;
  snap.kind = Snapshot::Kind::kDelta;
  snap.version = version;
  snap.watermark = 1700000000 + static_cast<int64_t>(version);
  snap.has_dense = before.dense != after.dense;
  if (snap.has_dense) snap.dense = after.dense;
  for (const auto& t : job.tables().tables()) {
    SnapshotTable st = TableOf(t);
    const auto& old_rows = RowsOf(before, t.name());
    const auto& new_rows = RowsOf(after, t.name());
    for (const auto& [key, row] : new_rows) {
      const auto it = old_rows.find(key);
      if (it != old_rows.end() && it->second == row) continue;
      st.keys.push_back(key);
      st.values.insert(st.values.end(), row.begin(), row.end());
    }
    for (const auto& [key, row] : old_rows) {
      if (new_rows.count(key) == 0) st.deleted.push_back(key);
    }
    snap.tables.push_back(std::move(st));
  }
  return snap;
}

StatusOr<std::vector<float>> ReferenceScores(const proto::JobConfig& job, const State& state,
                                             const std::vector<std::string>& columns,
                                             const std::vector<Example>& examples,
                                             const std::string& dir) {
  static int counter = 0;
  const std::string path = dir + "/reference-" + std::to_string(counter++) + ".examples";
  // A multi-task model's heads read label columns: the file gets them (the
  // scores do not depend on their values).
  const std::vector<std::string> label_columns = ModelLabelColumns(job.model());
  std::vector<std::string> file_columns = columns;
  file_columns.insert(file_columns.end(), label_columns.begin(), label_columns.end());
  {
    FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<ExampleWriter> w,
                             ExampleWriter::Open(path, file_columns));
    for (Example ex : examples) {
      for (size_t j = 0; j < label_columns.size(); ++j) ex.values.push_back(j % 2 ? "1" : "0");
      FRESHET_RETURN_IF_ERROR(w->Write(ex));
    }
    FRESHET_RETURN_IF_ERROR(w->Close());
  }
  FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<ParameterShard> shard,
                           ParameterShard::Create(job.tables(), 4));
  for (int id = 0; id < job.tables().tables_size(); ++id) {
    for (const auto& [key, row] : RowsOf(state, job.tables().tables(id).name())) {
      shard->table(id)->Upsert(key, row.data(), nullptr, RowMeta{});
    }
  }
  LocalSparseStore store(shard.get());
  LocalCollective collective;
  FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<ExampleReader> reader,
                           ExampleReader::OpenFiles({path}, BadRecordPolicy{}));
  FRESHET_ASSIGN_OR_RETURN(
      std::unique_ptr<FeatureEncoder> encoder,
      FeatureEncoder::Create(job.features(), reader->columns(), label_columns));
  FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                           CreateJobModel(job, encoder->num_slots(), encoder->num_dense()));
  if (model->NumDenseParams() != state.dense.size()) {
    return InvalidArgument("reference: dense size mismatch");
  }
  std::memcpy(model->dense_params(), state.dense.data(), state.dense.size() * sizeof(float));
  Trainer::Options opt;
  opt.batch_size = 64;  // several batches
  FRESHET_ASSIGN_OR_RETURN(
      std::unique_ptr<Trainer> trainer,
      Trainer::Create(job, encoder.get(), model.get(), &store, &collective, opt));
  ScoredSet scored;
  FRESHET_RETURN_IF_ERROR(trainer->Score(reader.get(), &scored));
  if (scored.probs.size() != examples.size()) {
    return Internal("reference: scored " + std::to_string(scored.probs.size()) + " of " +
                    std::to_string(examples.size()) + " examples");
  }
  // The head serving returns (ServingHead; the only one of most models).
  const int head = ServingHead(job.model());
  if (head > 0) {
    if (static_cast<int>(scored.heads.size()) < head) return Internal("reference: no head scores");
    return scored.heads[head - 1].probs;
  }
  return scored.probs;
}

std::vector<Example> RandomExamples(const std::vector<std::string>& columns, int n,
                                    std::mt19937* rng) {
  std::uniform_int_distribution<int> pick(0, 1 << 20);
  auto token = [&](const char* prefix, int vocab) {
    // One in eight tokens is new: a key no snapshot has.
    const int r = pick(*rng);
    if (r % 8 == 0) return std::string(prefix) + "_new" + std::to_string(r);
    return std::string(prefix) + std::to_string(r % vocab);
  };
  auto tokens = [&](const char* prefix, int vocab) {
    std::string v;
    const int count = pick(*rng) % 4;
    for (int i = 0; i < count; ++i) v += (i > 0 ? " " : "") + token(prefix, vocab);
    return v;
  };
  static const char* const kPrices[] = {"0", "0.5", "3", "12.5", "99", "150", "1000", ""};
  static const char* const kAges[] = {"18", "22.5", "31", "47", "65", ""};
  std::vector<Example> out(n);
  for (int i = 0; i < n; ++i) {
    Example& ex = out[i];
    ex.label = static_cast<float>(pick(*rng) % 2);
    ex.time = 1700000000 + i;
    for (const std::string& c : columns) {
      if (c == "user") {
        ex.values.push_back(pick(*rng) % 10 == 0 ? "" : token("u", 12));
      } else if (c == "item") {
        ex.values.push_back(token("i", 30));
      } else if (c == "query") {
        ex.values.push_back(tokens("q", 10));
      } else if (c == "tags") {
        ex.values.push_back(tokens("t", 6));
      } else if (c == "price") {
        ex.values.push_back(kPrices[pick(*rng) % 8]);
      } else if (c == "age") {
        ex.values.push_back(kAges[pick(*rng) % 6]);
      } else {
        ex.values.push_back("");
      }
    }
  }
  return out;
}

Status WriteManifestAndLatest(const std::string& dir, const proto::ExportManifest& m) {
  const std::string name = ManifestFileName(m.version());
  {
    std::ofstream out(dir + "/" + name, std::ios::binary | std::ios::trunc);
    if (!out || !m.SerializeToOstream(&out)) return Internal("cannot write " + name);
  }
  std::ofstream latest(dir + "/LATEST.tmp", std::ios::trunc);
  latest << name << "\n";
  latest.close();
  if (!latest) return Internal("cannot write LATEST.tmp");
  std::error_code ec;
  std::filesystem::rename(dir + "/LATEST.tmp", dir + "/LATEST", ec);
  if (ec) return Internal("cannot rename LATEST: " + ec.message());
  return Status::OK();
}

}  // namespace serving_testing
}  // namespace freshet
