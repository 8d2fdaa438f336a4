#include "worker/stream/join_state.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>

#include "common/checksum.h"
#include "common/file_io.h"

namespace freshet {
namespace {

constexpr char kMagic[8] = {'F', 'R', 'S', 'H', 'J', 'O', 'I', 'N'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kNumCounters = 12;

// The counters in file order.
std::vector<int64_t*> CounterFields(JoinCounters* c) {
  return {&c->impressions, &c->reactions,  &c->joined,     &c->expired,
          &c->evicted,     &c->duplicate,  &c->dup_labels, &c->late,
          &c->orphan,      &c->mismatched, &c->ignored,    &c->early_joined};
}

// Appends the encoding to any sink with Append(const void*, size_t): a
// string (EncodeJoinState) or an AtomicFileWriter (WriteJoinStateFile).
template <typename Sink>
class Encoder {
 public:
  explicit Encoder(Sink* sink) : sink_(sink) {}
  template <typename T>
  void Put(T v) {
    sink_->Append(&v, sizeof(v));
  }
  void Str(std::string_view s) {
    Put<uint32_t>(static_cast<uint32_t>(s.size()));
    sink_->Append(s.data(), s.size());
  }
  void Strs(const std::vector<std::string>& v) {
    Put<uint32_t>(static_cast<uint32_t>(v.size()));
    for (const auto& s : v) Str(s);
  }

  void State(const StreamJoinState& s) {
    sink_->Append(kMagic, sizeof(kMagic));
    Put<uint32_t>(kVersion);
    Put<int32_t>(s.worker);
    Put<int32_t>(s.num_workers);
    Put<int64_t>(s.step);
    Put<int64_t>(s.watermark_ms);
    Put<int64_t>(s.joiner.watermark);
    JoinCounters c = s.joiner.counters;
    Put<uint32_t>(kNumCounters);
    for (int64_t* f : CounterFields(&c)) Put<int64_t>(*f);
    Put<uint32_t>(static_cast<uint32_t>(s.partition_newest.size()));
    for (const auto& [p, ms] : s.partition_newest) {
      Put<int32_t>(p);
      Put<int64_t>(ms);
    }
    Put<uint64_t>(s.joiner.entries.size());
    for (const auto& e : s.joiner.entries) {
      Put<uint8_t>(static_cast<uint8_t>(e.kind));
      Put<int32_t>(e.partition);
      Put<int64_t>(e.imp_ms);
      Str(e.key);
      if (e.kind == JoinerState::Kind::kWaiting) {
        Put<float>(e.oracle);
        Str(e.user);
        Strs(e.values);
      }
    }
    Put<uint64_t>(s.joiner.early.size());
    for (const auto& r : s.joiner.early) {
      Put<int32_t>(r.partition);
      Put<int64_t>(r.ms);
      Str(r.key);
      Str(r.user);
    }
    Put<uint64_t>(s.examples.size());
    for (const auto& ex : s.examples) {
      Put<float>(ex.label);
      Put<int64_t>(ex.time);
      Put<float>(ex.oracle);
      Str(ex.user);
      Strs(ex.values);
    }
  }

 private:
  Sink* sink_;
};

struct StringSink {
  std::string* out;
  void Append(const void* p, size_t n) { out->append(static_cast<const char*>(p), n); }
};

// Bounds-checked reads; the first failure is kept and names the field.
class Decoder {
 public:
  Decoder(std::string_view data, const std::string& name) : data_(data), name_(name) {}

  template <typename T>
  bool Get(T* v, const char* field) {
    if (!Need(sizeof(T), field)) return false;
    std::memcpy(v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool Str(std::string* s, const char* field) {
    uint32_t n;
    if (!Get(&n, field) || !Need(n, field)) return false;
    s->assign(data_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool Strs(std::vector<std::string>* v, const char* field) {
    uint32_t n;
    // Each string takes at least its 4-byte length: a count that cannot fit
    // is damage, not a reason to allocate.
    if (!Get(&n, field) || !Need(static_cast<uint64_t>(n) * 4, field)) return false;
    v->resize(n);
    for (auto& s : *v) {
      if (!Str(&s, field)) return false;
    }
    return true;
  }
  // A count of items of at least `min_bytes` each.
  bool Count(uint64_t* n, uint64_t min_bytes, const char* field) {
    if (!Get(n, field)) return false;
    if (*n > (data_.size() - pos_) / min_bytes) {
      return Fail(field, "count " + std::to_string(*n) + " does not fit the file");
    }
    return true;
  }
  bool Fail(const char* field, const std::string& what) {
    if (error_.ok()) {
      error_ = DataLoss(name_ + ": byte " + std::to_string(pos_) + ": " + field + ": " + what);
    }
    return false;
  }
  size_t pos() const { return pos_; }
  bool at_end() const { return pos_ == data_.size(); }
  const Status& error() const { return error_; }

 private:
  bool Need(uint64_t n, const char* field) {
    if (n > data_.size() - pos_) return Fail(field, "truncated");
    return true;
  }
  std::string_view data_;
  const std::string& name_;
  size_t pos_ = 0;
  Status error_;
};

Status DecodeBody(Decoder* d, StreamJoinState* s) {
  auto err = [&]() { return d->error(); };
  char magic[sizeof(kMagic)];
  for (char& c : magic) {
    if (!d->Get(&c, "magic")) return err();
  }
  if (std::memcmp(magic, kMagic, sizeof(kMagic)) != 0) {
    d->Fail("magic", "not a freshet join state file");
    return err();
  }
  uint32_t version;
  if (!d->Get(&version, "version")) return err();
  if (version != kVersion) {
    d->Fail("version", "version " + std::to_string(version) + " (this build reads 1)");
    return err();
  }
  if (!d->Get(&s->worker, "worker") || !d->Get(&s->num_workers, "num_workers") ||
      !d->Get(&s->step, "step") || !d->Get(&s->watermark_ms, "source watermark") ||
      !d->Get(&s->joiner.watermark, "joiner watermark")) {
    return err();
  }
  if (s->num_workers <= 0 || s->worker < 0 || s->worker >= s->num_workers) {
    d->Fail("worker",
            "worker " + std::to_string(s->worker) + " of " + std::to_string(s->num_workers));
    return err();
  }
  uint32_t nc;
  if (!d->Get(&nc, "counter count")) return err();
  if (nc != kNumCounters) {
    d->Fail("counter count", std::to_string(nc) + ", expected 12");
    return err();
  }
  for (int64_t* f : CounterFields(&s->joiner.counters)) {
    if (!d->Get(f, "counters")) return err();
  }
  uint32_t np;
  if (!d->Get(&np, "partition count")) return err();
  for (uint32_t i = 0; i < np; ++i) {
    int32_t p;
    int64_t ms;
    if (!d->Get(&p, "partition") || !d->Get(&ms, "partition newest")) return err();
    if (p < 0 || !s->partition_newest.emplace(p, ms).second) {
      d->Fail("partition", "partition " + std::to_string(p) + " negative or repeated");
      return err();
    }
  }
  uint64_t n;
  if (!d->Count(&n, 1 + 4 + 8 + 4, "entry count")) return err();
  s->joiner.entries.resize(n);
  for (auto& e : s->joiner.entries) {
    uint8_t kind;
    if (!d->Get(&kind, "entry kind")) return err();
    if (kind < 1 || kind > 3) {
      d->Fail("entry kind", std::to_string(kind) + " (1-3 are known)");
      return err();
    }
    e.kind = static_cast<JoinerState::Kind>(kind);
    if (!d->Get(&e.partition, "entry partition") || !d->Get(&e.imp_ms, "entry ms") ||
        !d->Str(&e.key, "entry key")) {
      return err();
    }
    if (e.kind == JoinerState::Kind::kWaiting &&
        (!d->Get(&e.oracle, "entry oracle") || !d->Str(&e.user, "entry user") ||
         !d->Strs(&e.values, "entry values"))) {
      return err();
    }
  }
  if (!d->Count(&n, 4 + 8 + 4 + 4, "early reaction count")) return err();
  s->joiner.early.resize(n);
  for (auto& r : s->joiner.early) {
    if (!d->Get(&r.partition, "early partition") || !d->Get(&r.ms, "early ms") ||
        !d->Str(&r.key, "early key") || !d->Str(&r.user, "early user")) {
      return err();
    }
  }
  if (!d->Count(&n, 4 + 8 + 4 + 4 + 4, "example count")) return err();
  s->examples.resize(n);
  for (auto& ex : s->examples) {
    if (!d->Get(&ex.label, "example label") || !d->Get(&ex.time, "example time") ||
        !d->Get(&ex.oracle, "example oracle") || !d->Str(&ex.user, "example user") ||
        !d->Strs(&ex.values, "example values")) {
      return err();
    }
  }
  return Status::OK();
}

}  // namespace

size_t JoinerState::waiting() const {
  return static_cast<size_t>(std::count_if(
      entries.begin(), entries.end(), [](const Entry& e) { return e.kind == Kind::kWaiting; }));
}

bool JoinerState::Entry::operator==(const Entry& o) const {
  return kind == o.kind && partition == o.partition && imp_ms == o.imp_ms && key == o.key &&
         oracle == o.oracle && user == o.user && values == o.values;
}

bool JoinerState::Early::operator==(const Early& o) const {
  return partition == o.partition && ms == o.ms && key == o.key && user == o.user;
}

bool operator==(const JoinCounters& a, const JoinCounters& b) {
  JoinCounters x = a, y = b;
  const auto fx = CounterFields(&x), fy = CounterFields(&y);
  for (size_t i = 0; i < fx.size(); ++i) {
    if (*fx[i] != *fy[i]) return false;
  }
  return true;
}

bool JoinerState::operator==(const JoinerState& o) const {
  return watermark == o.watermark && entries == o.entries && early == o.early &&
         counters == o.counters;
}

bool StreamJoinState::operator==(const StreamJoinState& o) const {
  auto same_examples = [](const std::vector<Example>& a, const std::vector<Example>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i].label != b[i].label || a[i].time != b[i].time || a[i].oracle != b[i].oracle ||
          a[i].user != b[i].user || a[i].values != b[i].values) {
        return false;
      }
    }
    return true;
  };
  return worker == o.worker && num_workers == o.num_workers && step == o.step &&
         watermark_ms == o.watermark_ms && partition_newest == o.partition_newest &&
         joiner == o.joiner && same_examples(examples, o.examples);
}

std::string JoinStateFileName(int worker) { return "worker-" + std::to_string(worker) + ".join"; }

std::string EncodeJoinState(const StreamJoinState& state) {
  std::string out;
  StringSink sink{&out};
  Encoder<StringSink>(&sink).State(state);
  const uint64_t sum = Fnv1a64(out.data(), out.size());
  out.append(reinterpret_cast<const char*>(&sum), sizeof(sum));
  return out;
}

StatusOr<StreamJoinState> DecodeJoinState(std::string_view data, const std::string& name) {
  if (data.size() < sizeof(kMagic) + 8) {
    return DataLoss(name + ": " + std::to_string(data.size()) +
                    " bytes: truncated (not a whole join state file)");
  }
  uint64_t stored;
  std::memcpy(&stored, data.data() + data.size() - 8, 8);
  data.remove_suffix(8);
  if (Fnv1a64(data.data(), data.size()) != stored) {
    return DataLoss(name + ": checksum mismatch (corrupt or truncated join state)");
  }
  StreamJoinState s;
  Decoder d(data, name);
  FRESHET_RETURN_IF_ERROR(DecodeBody(&d, &s));
  if (!d.at_end()) {
    return DataLoss(name + ": byte " + std::to_string(d.pos()) + ": " +
                    std::to_string(data.size() - d.pos()) + " bytes after the last example");
  }
  return s;
}

Status WriteJoinStateFile(const std::string& path, const StreamJoinState& state) {
  return WriteFileAtomicWith(path, [&state](AtomicFileWriter* w) {
    Encoder<AtomicFileWriter>(w).State(state);
    w->AppendValue<uint64_t>(w->hash());  // FNV-1a 64 of every byte before it
    return Status::OK();
  });
}

StatusOr<StreamJoinState> ReadJoinStateFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open the join state");
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return DataLoss(path + ": read error");
  return DecodeJoinState(data, path);
}

JoinStateMerger::JoinStateMerger(int worker, int num_workers)
    : worker_(worker), num_workers_(num_workers) {
  merged_.worker = worker;
  merged_.num_workers = num_workers;
}

void JoinStateMerger::Add(StreamJoinState old) {
  auto mine = [this](int32_t partition) { return partition % num_workers_ == worker_; };
  bool gave = false;
  for (const auto& [p, ms] : old.partition_newest) {
    if (!mine(p)) continue;
    auto [it, inserted] = merged_.partition_newest.emplace(p, ms);
    if (!inserted) it->second = std::max(it->second, ms);
    gave = true;
  }
  for (auto& e : old.joiner.entries) {
    if (!mine(e.partition)) continue;
    merged_.joiner.entries.push_back(std::move(e));
    gave = true;
  }
  for (auto& r : old.joiner.early) {
    if (!mine(r.partition)) continue;
    merged_.joiner.early.push_back(std::move(r));
    gave = true;
  }
  if (old.worker % num_workers_ == worker_) {
    for (auto& ex : old.examples) merged_.examples.push_back(std::move(ex));
    merged_.joiner.counters.Add(old.joiner.counters);
  }
  if (gave) {
    if (!have_watermark_) {
      merged_.joiner.watermark = old.joiner.watermark;
      merged_.watermark_ms = old.watermark_ms;
      have_watermark_ = true;
    } else {
      merged_.joiner.watermark = std::min(merged_.joiner.watermark, old.joiner.watermark);
      merged_.watermark_ms = std::min(merged_.watermark_ms, old.watermark_ms);
    }
  }
  merged_.step = old.step;
}

StreamJoinState JoinStateMerger::Take() { return std::move(merged_); }

}  // namespace freshet
