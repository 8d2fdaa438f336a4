#include "worker/trainer.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>

#include "worker/dense_reduce.h"

namespace freshet {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

int64_t UnixMsNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

template <typename T>
void AppendRaw(std::string* out, const std::vector<T>& v) {
  const uint64_t n = v.size();
  out->append(reinterpret_cast<const char*>(&n), sizeof(n));
  out->append(reinterpret_cast<const char*>(v.data()), n * sizeof(T));
}

template <typename T>
bool ReadRaw(const std::string& in, size_t* pos, std::vector<T>* v) {
  uint64_t n;
  if (*pos + sizeof(n) > in.size()) return false;
  std::memcpy(&n, in.data() + *pos, sizeof(n));
  *pos += sizeof(n);
  if (n > (in.size() - *pos) / sizeof(T)) return false;
  const size_t old = v->size();
  v->resize(old + n);
  std::memcpy(v->data() + old, in.data() + *pos, n * sizeof(T));
  *pos += n * sizeof(T);
  return true;
}

// The pushes a worker has in flight, oldest first, with the freshness
// clocks of the steps that sent them. A step's examples are in the servers'
// tables, and so in the next export, only once all its pushes (and every
// earlier one) are applied; the clocks handed to after_step (and from there
// to the exporter) advance only as far as that, never to a step whose
// pushes are still on the wire.
class PushesInFlight {
 public:
  void AddPush(std::future<Status> done) {
    q_.push_back({std::move(done), true, 0, 0});
    ++pushes_;
  }
  // After a step's pushes: its clocks, applied once they (and every push
  // before) are.
  void EndStep(int64_t read_ms, int64_t label_ms) {
    q_.push_back({std::future<Status>(), false, read_ms, label_ms});
  }
  // Waits for the oldest pushes until at most `max_pushes` are in flight,
  // then takes every push already applied without waiting.
  Status Settle(size_t max_pushes) {
    while (!q_.empty()) {
      Entry& e = q_.front();
      if (e.is_push) {
        if (pushes_ <= max_pushes &&
            e.done.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
          break;
        }
        Status st = e.done.get();
        --pushes_;
        if (!st.ok()) return st.WithContext("push");
      } else {
        read_ms_ = std::max(read_ms_, e.read_ms);
        label_ms_ = std::max(label_ms_, e.label_ms);
      }
      q_.pop_front();
    }
    return Status::OK();
  }
  Status WaitAll() { return Settle(0); }
  // The clocks of the newest step whose pushes are all applied (0: none).
  int64_t read_ms() const { return read_ms_; }
  int64_t label_ms() const { return label_ms_; }

 private:
  struct Entry {
    std::future<Status> done;
    bool is_push;
    int64_t read_ms, label_ms;
  };
  std::deque<Entry> q_;
  size_t pushes_ = 0;
  int64_t read_ms_ = 0, label_ms_ = 0;
};

}  // namespace

void ScoredSet::Append(const ScoredSet& o) {
  probs.insert(probs.end(), o.probs.begin(), o.probs.end());
  labels.insert(labels.end(), o.labels.begin(), o.labels.end());
  oracle.insert(oracle.end(), o.oracle.begin(), o.oracle.end());
  users.insert(users.end(), o.users.begin(), o.users.end());
  if (heads.size() < o.heads.size()) heads.resize(o.heads.size());
  for (size_t k = 0; k < o.heads.size(); ++k) {
    const Head& from = o.heads[k];
    heads[k].probs.insert(heads[k].probs.end(), from.probs.begin(), from.probs.end());
    heads[k].own.insert(heads[k].own.end(), from.own.begin(), from.own.end());
    heads[k].labels.insert(heads[k].labels.end(), from.labels.begin(), from.labels.end());
  }
}

std::string ScoredSet::Serialize() const {
  std::string out;
  AppendRaw(&out, probs);
  AppendRaw(&out, labels);
  AppendRaw(&out, oracle);
  AppendRaw(&out, users);
  const uint64_t nh = heads.size();
  out.append(reinterpret_cast<const char*>(&nh), sizeof(nh));
  for (const Head& h : heads) {
    AppendRaw(&out, h.probs);
    AppendRaw(&out, h.own);
    AppendRaw(&out, h.labels);
  }
  return out;
}

StatusOr<ScoredSet> ScoredSet::ParseAll(const std::string& bytes) {
  ScoredSet s;
  size_t pos = 0;
  while (pos < bytes.size()) {
    if (!ReadRaw(bytes, &pos, &s.probs) || !ReadRaw(bytes, &pos, &s.labels) ||
        !ReadRaw(bytes, &pos, &s.oracle) || !ReadRaw(bytes, &pos, &s.users)) {
      return DataLoss("scored set: truncated at byte " + std::to_string(pos));
    }
    uint64_t nh;
    if (pos + sizeof(nh) > bytes.size()) {
      return DataLoss("scored set: truncated at byte " + std::to_string(pos));
    }
    std::memcpy(&nh, bytes.data() + pos, sizeof(nh));
    pos += sizeof(nh);
    if (nh > 1024) return DataLoss("scored set: " + std::to_string(nh) + " heads");
    if (s.heads.size() < nh) s.heads.resize(nh);
    for (uint64_t k = 0; k < nh; ++k) {
      if (!ReadRaw(bytes, &pos, &s.heads[k].probs) || !ReadRaw(bytes, &pos, &s.heads[k].own) ||
          !ReadRaw(bytes, &pos, &s.heads[k].labels)) {
        return DataLoss("scored set: truncated at byte " + std::to_string(pos));
      }
    }
  }
  if (s.labels.size() != s.probs.size() || s.users.size() != s.probs.size() ||
      s.oracle.size() != s.probs.size()) {
    return DataLoss("scored set: column sizes differ");
  }
  for (const Head& h : s.heads) {
    if (h.probs.size() != s.probs.size() || h.own.size() != s.probs.size() ||
        h.labels.size() != s.probs.size()) {
      return DataLoss("scored set: a head's column sizes differ from the main head's");
    }
  }
  return s;
}

struct Trainer::Step {
  EncodedBatch batch;
  std::vector<std::vector<uint64_t>> keys;  // per used table
  std::vector<std::vector<float>> values;   // per used table, pulled rows
  std::vector<std::vector<float>> grads;    // per used table
  std::vector<std::future<Status>> pulls;
  // [slot][role]: offset of the slot's keys in that role's table's list.
  std::vector<std::array<size_t, 3>> off;
  ModelInput input;
  SparseGrads sparse;
  std::vector<float> logits, dlogits;
  bool pulled = false;
  int64_t cut_wall_ms = 0;      // when the batch was cut (unix ms)
  int64_t newest_read_ms = 0;   // newest Example::read_unix_ms in the batch (0: none known)
  int64_t newest_label_ms = 0;  // newest Example::label_unix_ms in the batch
  int64_t max_time = 0;         // newest event time in the batch
  ConsumedInput consumed;       // what reading the batch consumed
};

Trainer::Trainer(const FeatureEncoder* encoder, Model* model, SparseStore* store,
                 Collective* collective, Options options)
    : encoder_(encoder), model_(model), store_(store), collective_(collective), options_(options) {}

StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const proto::JobConfig& job,
                                                   const FeatureEncoder* encoder, Model* model,
                                                   SparseStore* store, Collective* collective,
                                                   Options options) {
  std::unique_ptr<Trainer> t(new Trainer(encoder, model, store, collective, options));
  FRESHET_ASSIGN_OR_RETURN(ModelTables tables, JobModelTables(job));
  t->dims_.resize(job.tables().tables_size());
  for (int i = 0; i < job.tables().tables_size(); ++i) t->dims_[i] = job.tables().tables(i).dim();
  auto use = [&](int id) {
    if (id >= 0 &&
        std::find(t->tables_used_.begin(), t->tables_used_.end(), id) == t->tables_used_.end()) {
      t->tables_used_.push_back(id);
    }
  };
  for (int s = 0; s < job.features().slots_size(); ++s) {
    t->slot_tables_.push_back({tables.wide, tables.emb[s], tables.ffm});
    for (int id : t->slot_tables_.back()) use(id);
  }
  for (size_t p = 0; p < t->tables_used_.size(); ++p) t->table_pos_[t->tables_used_[p]] = p;
  t->policy_.max_bad_ratio = job.data().max_bad_ratio();
  t->policy_.max_bad_records = job.data().max_bad_records();
  t->heads_ = ModelHeads(job.model());
  if (encoder->label_columns() != ModelLabelColumns(job.model())) {
    std::string want;
    for (const std::string& c : ModelLabelColumns(job.model())) want += " '" + c + "'";
    return InvalidArgument("model.heads: the feature encoder must read the heads' label columns" +
                           (want.empty() ? std::string(" (none)") : want));
  }
  if (static_cast<int>(t->heads_.size()) != model->num_heads()) {
    return InvalidArgument("the model has " + std::to_string(model->num_heads()) +
                           " heads, its config " + std::to_string(t->heads_.size()));
  }
  if (options.metrics != nullptr) t->metrics_ = std::make_unique<TrainMetrics>(options.metrics);
  return t;
}

Status Trainer::ReadBatch(ExampleSource* reader, Step* step, bool* eof) {
  step->batch.Reset(encoder_->num_slots(), encoder_->num_dense());
  step->consumed.Clear();
  step->newest_read_ms = step->newest_label_ms = 0;
  Example ex;
  *eof = false;
  const auto deadline = options_.max_batch_delay_ms > 0
                            ? Clock::now() + std::chrono::milliseconds(options_.max_batch_delay_ms)
                            : Clock::time_point::max();
  while (step->batch.size < options_.batch_size) {
    FRESHET_ASSIGN_OR_RETURN(ExampleSource::Outcome got, reader->Poll(&ex, deadline));
    if (got == ExampleSource::Outcome::kNotNow) break;
    if (got == ExampleSource::Outcome::kEnd) {
      *eof = true;
      break;
    }
    Status st = encoder_->Append(ex, &step->batch);
    if (st.ok()) {
      step->newest_read_ms = std::max(step->newest_read_ms, ex.read_unix_ms);
      step->newest_label_ms = std::max(step->newest_label_ms, ex.label_unix_ms);
    } else {
      reader->UncountLast();
      ++encode_bad_;
      if (encode_bad_ <= 20) LOG(WARNING) << "skipping example: " << st;
      const int64_t lines = reader->stats().lines;
      const double limit = std::max<double>(policy_.max_bad_records, policy_.max_bad_ratio * lines);
      if (encode_bad_ + reader->stats().bad > limit) {
        return InvalidArgument(std::to_string(encode_bad_) + " examples failed feature encoding (" +
                               std::to_string(reader->stats().bad) + " bad lines) of " +
                               std::to_string(lines) + " read; last: " + st.message());
      }
    }
  }
  reader->TakeConsumed(&step->consumed);
  step->cut_wall_ms = UnixMsNow();
  step->max_time = 0;
  for (int64_t t : step->batch.times) step->max_time = std::max(step->max_time, t);
  // Concatenate each slot's keys into its tables' pull lists.
  const int slots = step->batch.num_slots();
  const size_t nt = tables_used_.size();
  step->keys.resize(nt);
  step->values.resize(nt);
  step->grads.resize(nt);
  step->pulls.resize(nt);
  for (auto& k : step->keys) k.clear();
  step->off.assign(slots, {0, 0, 0});
  for (int s = 0; s < slots; ++s) {
    const auto& sk = step->batch.keys[s];
    for (int role = 0; role < kRoles; ++role) {
      const int id = slot_tables_[s][role];
      if (id < 0) continue;
      auto& list = step->keys[table_pos_.at(id)];
      step->off[s][role] = list.size();
      list.insert(list.end(), sk.begin(), sk.end());
    }
  }
  step->pulled = false;
  return Status::OK();
}

void Trainer::IssuePulls(Step* step) {
  for (size_t p = 0; p < tables_used_.size(); ++p) {
    const int id = tables_used_[p];
    step->values[p].resize(step->keys[p].size() * dims_[id]);
    step->pulls[p] =
        store_->Pull(id, step->keys[p].data(), step->keys[p].size(), step->values[p].data());
  }
  step->pulled = true;
}

Status Trainer::WaitPulls(Step* step) {
  if (!step->pulled) IssuePulls(step);
  Status first;
  for (auto& f : step->pulls) {
    Status st = f.get();
    if (first.ok() && !st.ok()) first = st;
  }
  return first.WithContext("pull");
}

void Trainer::BuildInput(Step* step) {
  const int slots = step->batch.num_slots();
  step->input.batch = &step->batch;
  std::vector<const float*>* rows[kRoles] = {&step->input.wide, &step->input.emb, &step->input.ffm};
  for (int role = 0; role < kRoles; ++role) rows[role]->assign(slots, nullptr);
  for (int s = 0; s < slots; ++s) {
    for (int role = 0; role < kRoles; ++role) {
      const int id = slot_tables_[s][role];
      if (id < 0) continue;
      (*rows[role])[s] = step->values[table_pos_.at(id)].data() +
                         step->off[s][role] * static_cast<size_t>(dims_[id]);
    }
  }
}

StatusOr<TrainStats> Trainer::Train(const ReaderFactory& open_shard) {
  TrainStats stats;
  stats.steps = options_.start_step;
  const auto start = Clock::now();
  const size_t num_dense = model_->NumDenseParams();
  // [weighted dense grad..., examples, loss sum, workers whose source is open]
  // The dense gradient's all-reduce, on the GPU where the model and the
  // collective both can (worker/dense_reduce.h).
  DenseReducer reducer(model_, collective_, options_.dense_allreduce_on_device);
  std::vector<float> dense_grad(num_dense), reduce_buf(num_dense + 3);
  Step steps[2];
  Step* cur = &steps[0];
  Step* next = &steps[1];
  PushesInFlight pending_pushes;
  const bool prefetch = options_.staleness != 0;
  WindowAuc window(static_cast<size_t>(std::max(1, options_.progressive_window)));
  auto last_status = Clock::now();
  StatusLine status_line(stdout);  // live on a terminal, plain lines otherwise
  const double status_every = status_line.Interval(options_.status_interval_s);
  int64_t status_examples = 0;
  double loss_sum_since = 0, pull_wait_since = 0;
  int64_t loss_n_since = 0, steps_since = 0;

  for (int epoch = options_.start_epoch; epoch < std::max(1, options_.epochs); ++epoch) {
    if (options_.max_steps > 0 && stats.steps >= options_.max_steps) break;  // restored at the end
    FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<ExampleSource> reader, open_shard());
    bool eof = false;
    auto t0 = Clock::now();
    FRESHET_RETURN_IF_ERROR(ReadBatch(reader.get(), cur, &eof));
    stats.read_s += Since(t0);
    IssuePulls(cur);
    while (true) {
      // Prefetch: read the next batch and request its rows before computing.
      bool next_ready = false;
      if (!eof) {
        t0 = Clock::now();
        FRESHET_RETURN_IF_ERROR(ReadBatch(reader.get(), next, &eof));
        stats.read_s += Since(t0);
        next_ready = true;
        if (prefetch) IssuePulls(next);
      } else {
        next->batch.Reset(encoder_->num_slots(), encoder_->num_dense());
        next->consumed.Clear();
        next->cut_wall_ms = UnixMsNow();
        next->newest_read_ms = next->newest_label_ms = 0;
        next->pulled = true;  // nothing to pull
        for (auto& k : next->keys) k.clear();
        for (auto& f : next->pulls) f = std::future<Status>();
      }
      t0 = Clock::now();
      if (cur->batch.size > 0) FRESHET_RETURN_IF_ERROR(WaitPulls(cur));
      const double waited = Since(t0);
      stats.pull_s += waited;
      pull_wait_since += waited;

      const int n = cur->batch.size;
      double loss_sum = 0;
      t0 = Clock::now();
      if (n > 0) {
        BuildInput(cur);
        // One logit per head and example, head-major; the first head is
        // the main label's (progressive scores, status lines).
        const size_t outputs = static_cast<size_t>(n) * heads_.size();
        cur->logits.resize(outputs);
        cur->dlogits.resize(outputs);
        model_->Forward(cur->input, cur->logits.data());
        // Summed over heads (each head's batch-mean loss), times n.
        loss_sum = MultiHeadLoss(heads_, cur->logits.data(), cur->batch, cur->dlogits.data()) * n;
        for (int i = 0; i < n; ++i) {
          const float p = Sigmoid(cur->logits[i]);
          window.Add(p, cur->batch.labels[i]);
          if (epoch > 0) continue;  // progressive validation: first sight only
          if (options_.max_progressive > 0 &&
              stats.progressive.probs.size() >= 2 * options_.max_progressive) {
            auto drop = [&](auto* v) { v->erase(v->begin(), v->end() - options_.max_progressive); };
            drop(&stats.progressive.probs);
            drop(&stats.progressive.labels);
            drop(&stats.progressive.users);
            drop(&stats.progressive.oracle);
          }
          stats.progressive.probs.push_back(p);
          stats.progressive.labels.push_back(cur->batch.labels[i]);
          stats.progressive.users.push_back(cur->batch.users[i]);
          stats.progressive.oracle.push_back(cur->batch.oracle[i]);
        }
        model_->Backward(cur->input, cur->dlogits.data(), &cur->sparse,
                         reducer.backward_dense_out());
      }
      stats.compute_s += Since(t0);

      // Push sparse gradients, grouped per table like the pulls, at the
      // scale of the batch's summed loss (see the header).
      t0 = Clock::now();
      if (n > 0) {
        for (size_t p = 0; p < tables_used_.size(); ++p) {
          cur->grads[p].resize(cur->keys[p].size() * dims_[tables_used_[p]]);
        }
        const float sum_scale = static_cast<float>(n);
        const std::vector<std::vector<float>>* sparse[kRoles] = {
            &cur->sparse.wide, &cur->sparse.emb, &cur->sparse.ffm};
        for (int s = 0; s < cur->batch.num_slots(); ++s) {
          for (int role = 0; role < kRoles; ++role) {
            const int id = slot_tables_[s][role];
            if (id < 0) continue;
            // The model fills every role it reads (programmer error if not).
            CHECK_LT(static_cast<size_t>(s), sparse[role]->size()) << "role " << role;
            const std::vector<float>& g = (*sparse[role])[s];
            CHECK_EQ(g.size(), cur->batch.keys[s].size() * static_cast<size_t>(dims_[id]))
                << "slot " << s << " role " << role;
            // The model's row gradients are of the batch-mean loss; the
            // servers get those of the batch's summed loss, so each example
            // holding a key adds its own gradient (as per-example SGD does)
            // and the table's learning rate does not depend on the batch size.
            float* to = cur->grads[table_pos_.at(id)].data() +
                        cur->off[s][role] * static_cast<size_t>(dims_[id]);
            for (size_t k = 0; k < g.size(); ++k) to[k] = g[k] * sum_scale;
          }
        }
        store_->SetEventTime(cur->max_time);  // row TTLs are in event time
        for (size_t p = 0; p < tables_used_.size(); ++p) {
          if (cur->keys[p].empty()) continue;
          pending_pushes.AddPush(store_->Push(tables_used_[p], cur->keys[p].data(),
                                              cur->keys[p].size(), cur->grads[p].data()));
        }
      }
      const size_t max_pending =
          options_.staleness == 0 ? 0 : static_cast<size_t>(options_.max_pending_pushes);
      FRESHET_RETURN_IF_ERROR(pending_pushes.Settle(max_pending));
      stats.push_s += Since(t0);

      // Dense: weighted all-reduce of gradients, example count and loss.
      t0 = Clock::now();
      // This worker may still produce examples: its source is open, or a
      // batch is already read.
      const bool open = !eof || (next_ready && next->batch.size > 0);
      const float scalars[3] = {static_cast<float>(n), static_cast<float>(loss_sum),
                                open ? 1.0f : 0.0f};
      FRESHET_RETURN_IF_ERROR(reducer.Reduce(static_cast<float>(n), scalars, 3, reduce_buf.data()));
      const float total = reduce_buf[num_dense];
      stats.allreduce_s += Since(t0);
      if (total == 0 && reduce_buf[num_dense + 2] == 0) break;  // every worker is out of data
      // This step's freshness clocks: its newest example's, or when it
      // trained nothing, the time its batch was cut (everything the worker
      // had read by then is in the model once earlier pushes are applied).
      if (n > 0) {
        pending_pushes.EndStep(cur->newest_read_ms, cur->newest_label_ms);
      } else {
        pending_pushes.EndStep(cur->cut_wall_ms, cur->cut_wall_ms);
      }
      if (total > 0) {
        for (size_t i = 0; i < num_dense; ++i) dense_grad[i] = reduce_buf[i] / total;
        t0 = Clock::now();
        model_->ApplyDenseGradient(dense_grad.data());
        stats.compute_s += Since(t0);
      }
      FRESHET_RETURN_IF_ERROR(store_->Clock());
      ++stats.steps;
      watermark_ = std::max(watermark_, cur->max_time);
      if (options_.after_batch) {
        FRESHET_RETURN_IF_ERROR(
            options_.after_batch(epoch, cur->consumed).WithContext("after batch"));
      }
      // As far as the applied pushes go (PushesInFlight): take those applied
      // meanwhile, without waiting.
      FRESHET_RETURN_IF_ERROR(pending_pushes.Settle(max_pending));
      read_wall_ms_ = std::max(read_wall_ms_, pending_pushes.read_ms());
      label_wall_ms_ = std::max(label_wall_ms_, pending_pushes.label_ms());
      if (options_.after_step) {
        options_.after_step(stats.steps, watermark_, read_wall_ms_, label_wall_ms_);
      }
      if (options_.checkpoint_every_steps > 0 && options_.checkpoint &&
          stats.steps % options_.checkpoint_every_steps == 0) {
        // The cut: every push of this worker up to this step is applied.
        FRESHET_RETURN_IF_ERROR(pending_pushes.WaitAll());
        FRESHET_RETURN_IF_ERROR(options_.checkpoint(stats.steps).WithContext("checkpoint"));
      }
      stats.examples += n;
      stats.global_examples += static_cast<int64_t>(total);
      status_examples += static_cast<int64_t>(total);
      loss_sum_since += reduce_buf[num_dense + 1];
      loss_n_since += static_cast<int64_t>(total);
      ++steps_since;
      if (metrics_ != nullptr) {
        metrics_->AfterStep(stats, n, total, reduce_buf[num_dense + 1],
                            [&window] { return window.Value(); });
      }

      if (options_.print_status && Since(last_status) >= status_every) {
        const double secs = Since(last_status);
        const std::string extra = options_.status_extra ? "  " + options_.status_extra() : "";
        char line[640];
        std::snprintf(line, sizeof(line),
                      "train  epoch %d  step %lld  examples %lld  %.0f ex/s  loss %.4f  "
                      "progressive AUC %.4f (worker 0, last %zu)  pull wait %.2f ms/step%s",
                      epoch + 1, static_cast<long long>(stats.steps),
                      static_cast<long long>(stats.global_examples), status_examples / secs,
                      loss_sum_since / std::max<int64_t>(1, loss_n_since), window.Value(),
                      window.count(), 1e3 * pull_wait_since / std::max<int64_t>(1, steps_since),
                      extra.c_str());
        // Fraction done: this worker's share of its shard (all workers move
        // through the files together), or of max_steps when that ends first;
        // unknown for live streams.
        const double read = reader->FractionRead();
        double done = read < 0 ? -1.0 : (epoch + read) / std::max(1, options_.epochs);
        if (options_.max_steps > 0) {
          done = std::max(done, static_cast<double>(stats.steps) / options_.max_steps);
        }
        status_line.Show(line, done, Since(start));
        last_status = Clock::now();
        status_examples = 0;
        loss_sum_since = pull_wait_since = 0;
        loss_n_since = steps_since = 0;
      }
      if (options_.max_steps > 0 && stats.steps >= options_.max_steps) break;
      std::swap(cur, next);
      if (!prefetch && next_ready) IssuePulls(cur);
      if (!next_ready && cur->batch.size == 0) {
        // This worker is out of data; keep stepping with empty batches.
      }
    }
    stats.bad_records += reader->stats().bad;
    if (options_.max_steps > 0 && stats.steps >= options_.max_steps) break;
    // Drain the other step's pulls before reusing its buffers.
    for (Step* s : {cur, next}) {
      for (auto& f : s->pulls) {
        if (f.valid()) (void)f.get();
      }
    }
    ++stats.epochs;
    if (options_.after_epoch) {
      // The pass's model: every push of this worker applied.
      FRESHET_RETURN_IF_ERROR(pending_pushes.WaitAll());
      status_line.Finish();
      FRESHET_ASSIGN_OR_RETURN(const bool stop, options_.after_epoch(epoch));
      if (stop) {
        stats.stopped_early = true;
        break;
      }
    }
  }
  FRESHET_RETURN_IF_ERROR(pending_pushes.WaitAll());
  read_wall_ms_ = std::max(read_wall_ms_, pending_pushes.read_ms());
  label_wall_ms_ = std::max(label_wall_ms_, pending_pushes.label_ms());
  status_line.Finish();
  stats.bad_records += encode_bad_;
  stats.seconds = Since(start);
  return stats;
}

Status Trainer::Score(ExampleReader* reader, ScoredSet* out) {
  Step step;
  bool eof = false;
  while (!eof) {
    FRESHET_RETURN_IF_ERROR(ReadBatch(reader, &step, &eof));
    const int n = step.batch.size;
    if (n == 0) continue;
    IssuePulls(&step);
    FRESHET_RETURN_IF_ERROR(WaitPulls(&step));
    BuildInput(&step);
    const size_t nh = heads_.size();
    step.logits.resize(static_cast<size_t>(n) * nh);
    model_->Forward(step.input, step.logits.data());
    if (nh > 1) {
      head_probs_.resize(step.logits.size());
      head_own_.resize(step.logits.size());
      HeadProbabilities(heads_, step.logits.data(), n, head_probs_.data(), head_own_.data());
      out->heads.resize(nh - 1);
      for (size_t k = 1; k < nh; ++k) {
        ScoredSet::Head& h = out->heads[k - 1];
        const size_t o = k * static_cast<size_t>(n);
        h.probs.insert(h.probs.end(), head_probs_.begin() + o, head_probs_.begin() + o + n);
        h.own.insert(h.own.end(), head_own_.begin() + o, head_own_.begin() + o + n);
        const float* y = HeadLabels(heads_[k], step.batch);
        h.labels.insert(h.labels.end(), y, y + n);
      }
    }
    for (int i = 0; i < n; ++i) {
      out->probs.push_back(Sigmoid(step.logits[i]));
      out->labels.push_back(step.batch.labels[i]);
      out->users.push_back(step.batch.users[i]);
      out->oracle.push_back(step.batch.oracle[i]);
    }
  }
  return Status::OK();
}

}  // namespace freshet
