#include "serving/scorer.h"

#include <glog/logging.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <thread>

#include "model/batch.h"
#include "model/model.h"
#include "server/initializer.h"

namespace freshet {

struct Scorer::Worker {
  std::unique_ptr<Model> model;
  EncodedBatch batch;
  // [role][slot]: the slot's rows for ModelInput's wide / emb / ffm.
  std::vector<std::vector<float>> rows[3];
  ModelInput input;
  std::vector<float> logits, head_probs;
  std::vector<ModelHead> heads;  // ModelHeads of the job's model
  int serving_head = 0;          // ServingHead of the job's model
};

Scorer::~Scorer() = default;

StatusOr<std::unique_ptr<Scorer>> Scorer::Create(std::shared_ptr<const LoadedExport> model,
                                                 Options options) {
  CHECK(model != nullptr);
  const proto::JobConfig& job = model->manifest.job();
  std::unique_ptr<Scorer> s(new Scorer());
  s->model_ = std::move(model);
  const LoadedExport& ex = *s->model_;
  const std::string where = "export version " + std::to_string(ex.manifest.version());

  // Tables: ids are indices in the job's tables, as in training.
  const int num_tables = job.tables().tables_size();
  s->tables_.assign(num_tables, nullptr);
  s->dims_.resize(num_tables);
  s->initializers_.resize(num_tables);
  for (int i = 0; i < num_tables; ++i) {
    const proto::TableConfig& t = job.tables().tables(i);
    s->dims_[i] = static_cast<int>(t.dim());
    s->initializers_[i] = t.initializer();
    if (t.dim() < 1) {
      return InvalidArgument(where + ": table '" + t.name() + "' has dim " +
                             std::to_string(t.dim()));
    }
    const auto it = ex.tables.find(t.name());
    if (it == ex.tables.end()) continue;  // empty: every key gets its initial row
    if (it->second.dim() != s->dims_[i]) {
      return DataLoss(where + ": table '" + t.name() + "' has dim " +
                      std::to_string(it->second.dim()) + " in the snapshot, the job says " +
                      std::to_string(t.dim()));
    }
    s->tables_[i] = &it->second;
  }
  auto tables = JobModelTables(job);
  if (!tables.ok()) return tables.status().WithContext(where);
  for (int slot = 0; slot < job.features().slots_size(); ++slot) {
    s->slot_tables_.push_back({tables->wide, tables->emb[slot], tables->ffm});
  }

  // Columns: slots' then dense features' columns, each once.
  const auto add_column = [&](const std::string& name, bool multi) {
    const auto it = s->column_index_.find(name);
    if (it != s->column_index_.end()) {
      s->multi_valued_[it->second] = s->multi_valued_[it->second] && multi;
      return;
    }
    s->column_index_.emplace(name, static_cast<int>(s->columns_.size()));
    s->columns_.push_back(name);
    s->multi_valued_.push_back(multi);
  };
  for (const auto& slot : job.features().slots()) {
    add_column(slot.column().empty() ? slot.name() : slot.column(), slot.multi_valued());
  }
  for (const auto& dense : job.features().dense()) {
    add_column(dense.column().empty() ? dense.name() : dense.column(), false);
  }
  auto encoder = FeatureEncoder::Create(job.features(), s->columns_);
  if (!encoder.ok()) return encoder.status().WithContext(where);
  s->encoder_ = std::move(encoder).value();

  s->max_idle_ = options.max_idle_models > 0
                     ? static_cast<size_t>(options.max_idle_models)
                     : std::max<size_t>(1, std::thread::hardware_concurrency());
  // Build one model now: checks the dense params and warms the pool.
  auto first = s->NewWorker();
  if (!first.ok()) return first.status();
  s->Release(std::move(first).value());
  return s;
}

int Scorer::ColumnIndex(const std::string& name) const {
  const auto it = column_index_.find(name);
  return it == column_index_.end() ? -1 : it->second;
}

int64_t Scorer::models_created() const {
  MutexLock lock(&pool_mu_);
  return models_created_;
}

StatusOr<std::unique_ptr<Scorer::Worker>> Scorer::NewWorker() const {
  const std::string where = "export version " + std::to_string(version());
  // Serving scores on the CPU whatever device the job trained on (the same
  // math: the GPU model is checked against the CPU one).
  const proto::JobConfig& job = model_->manifest.job();
  auto model =
      Model::Create(job.model(), JobModelShape(job, encoder_->num_slots(), encoder_->num_dense()));
  if (!model.ok()) return model.status().WithContext(where);
  auto w = std::make_unique<Worker>();
  w->model = std::move(model).value();
  w->heads = ModelHeads(job.model());
  w->serving_head = ServingHead(job.model());
  CHECK_EQ(static_cast<int>(w->heads.size()), w->model->num_heads());
  const size_t n = w->model->NumDenseParams();
  if (model_->dense.size() != n) {
    return DataLoss(where + ": the snapshot has " + std::to_string(model_->dense.size()) +
                    " dense params, the job's model needs " + std::to_string(n));
  }
  if (n > 0) std::memcpy(w->model->dense_params(), model_->dense.data(), n * sizeof(float));
  MutexLock lock(&pool_mu_);
  ++models_created_;
  return w;
}

std::unique_ptr<Scorer::Worker> Scorer::Acquire(Status* st) const {
  {
    MutexLock lock(&pool_mu_);
    if (!idle_.empty()) {
      std::unique_ptr<Worker> w = std::move(idle_.back());
      idle_.pop_back();
      return w;
    }
  }
  auto w = NewWorker();  // outside the lock: building a model takes a while
  if (!w.ok()) {
    *st = w.status();
    return nullptr;
  }
  return std::move(w).value();
}

void Scorer::Release(std::unique_ptr<Worker> w) const {
  MutexLock lock(&pool_mu_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(w));
}

void Scorer::FetchRow(int table_id, uint64_t key, float* out) const {
  const LoadedTable* table = tables_[table_id];
  if (table == nullptr || !table->Lookup(key, out)) {
    InitializeRow(initializers_[table_id], table_id, key, out, dims_[table_id]);
  }
}

Status Scorer::Score(const std::vector<Example>& examples, std::vector<float>* probs,
                     const std::string& label) const {
  probs->clear();
  if (examples.empty()) return Status::OK();
  const int n = static_cast<int>(examples.size());
  for (int i = 0; i < n; ++i) {
    if (examples[i].values.size() != columns_.size()) {
      return InvalidArgument(label + "[" + std::to_string(i) +
                             "]: " + std::to_string(examples[i].values.size()) + " values for " +
                             std::to_string(columns_.size()) + " columns");
    }
  }
  Status st;
  std::unique_ptr<Worker> w = Acquire(&st);
  if (w == nullptr) return st;

  EncodedBatch& batch = w->batch;
  batch.Reset(encoder_->num_slots(), encoder_->num_dense());
  for (int i = 0; i < n; ++i) {
    st = encoder_->Append(examples[i], &batch);
    if (!st.ok()) {
      Release(std::move(w));
      return InvalidArgument(label + "[" + std::to_string(i) + "]: " + st.message());
    }
  }

  // Rows, laid out per slot as the trainer's pulls are (keys in batch order).
  const int slots = batch.num_slots();
  w->input.batch = &batch;
  std::vector<const float*>* inputs[3] = {&w->input.wide, &w->input.emb, &w->input.ffm};
  for (int role = 0; role < 3; ++role) {
    w->rows[role].resize(slots);
    inputs[role]->assign(slots, nullptr);
  }
  for (int s = 0; s < slots; ++s) {
    const std::vector<uint64_t>& keys = batch.keys[s];
    for (int role = 0; role < 3; ++role) {
      const int id = slot_tables_[s][role];
      if (id < 0) continue;
      const size_t dim = static_cast<size_t>(dims_[id]);
      std::vector<float>& rows = w->rows[role][s];
      rows.resize(std::max<size_t>(1, keys.size()) * dim);
      for (size_t k = 0; k < keys.size(); ++k) FetchRow(id, keys[k], &rows[k * dim]);
      (*inputs[role])[s] = rows.data();
    }
  }
  const size_t nh = w->heads.size();
  w->logits.resize(static_cast<size_t>(n) * nh);
  w->model->Forward(w->input, w->logits.data());
  probs->resize(n);
  if (nh == 1) {
    for (int i = 0; i < n; ++i) (*probs)[i] = Sigmoid(w->logits[i]);
  } else {
    // A multi-task model: the serving head's probability (multiply_by
    // applied, e.g. ESMM's p_ctcvr = p_ctr * p_cvr).
    w->head_probs.resize(w->logits.size());
    HeadProbabilities(w->heads, w->logits.data(), n, w->head_probs.data(), nullptr);
    const float* p = w->head_probs.data() + static_cast<size_t>(w->serving_head) * n;
    std::copy(p, p + n, probs->begin());
  }
  Release(std::move(w));
  return Status::OK();
}

}  // namespace freshet
