// Fuzz target: a saved model's files, the training checkpoint format
// (server/table_io.h `shard-i-of-n.rows`, worker/dense_file.h `dense.bin`).
//
// Input byte 0 picks the mode (mod 4):
//   0/1: the rest is a .rows file for LoadShardRows into a shard with the
//        tables "wide" (dim 1, SGD, no state) and "emb" (dim 4, Adagrad);
//        mode 1 repairs the checksum trailer first;
//   2/3: the rest is a dense.bin for LoadDense into a small DeepFM model;
//        mode 3 repairs the checksum trailer first.
// A file that loads must leave the model in a state that saves and loads
// back unchanged.
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "model/model_factory.h"
#include "server/table_io.h"
#include "tests/fuzz/fuzz_util.h"
#include "worker/dense_file.h"
#include "worker/job.h"

namespace freshet {
namespace {

constexpr char kJob[] = R"pb(
  name: "fuzz"
  data { train_files: "unused.examples" }
  features {
    slots { name: "user" table: "emb" }
    slots { name: "item" table: "emb" }
    dense { name: "age" }
  }
  tables {
    tables {
      name: "wide"
      dim: 1
      optimizer { sgd { learning_rate: 0.1 } }
    }
    tables {
      name: "emb"
      dim: 4
      optimizer { adagrad { learning_rate: 0.1 } }
    }
  }
  model {
    kind: DEEPFM
    wide_table: "wide"
    hidden: [ 8, 4 ]
  }
)pb";

const proto::JobConfig& Job() {
  static const proto::JobConfig job = [] {
    auto j = ParseJobConfig(kJob, "model_files_fuzz job");
    FUZZ_CHECK(j.ok());
    return *j;
  }();
  return job;
}

void LoadRows(const std::string& content) {
  const std::string path = fuzz::WriteFile("shard-0-of-1.rows", content.data(), content.size());
  auto shard = ParameterShard::Create(Job().tables(), 2);
  FUZZ_CHECK(shard.ok());
  Status st = LoadShardRows(path, shard->get());
  if (!st.ok()) {
    FUZZ_CHECK(st.message().find(path) != std::string::npos);  // errors name the file
    return;
  }
  const std::string copy = fuzz::ScratchDir() + "/copy.rows";
  FUZZ_CHECK(SaveShardRows(**shard, copy).ok());
  auto again = ParameterShard::Create(Job().tables(), 2);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(LoadShardRows(copy, again->get()).ok());
  for (int t = 0; t < (*shard)->num_tables(); ++t) {
    FUZZ_CHECK((*shard)->table(t)->stats().rows == (*again)->table(t)->stats().rows);
  }
  std::remove(copy.c_str());
}

void LoadDenseFile(const std::string& content) {
  static std::unique_ptr<Model> model = [] {
    auto m = CreateJobModel(Job(), 2, 1);
    FUZZ_CHECK(m.ok());
    return std::move(*m);
  }();
  const std::string path = fuzz::WriteFile("dense.bin", content.data(), content.size());
  Status st = LoadDense(path, model.get());
  if (!st.ok()) {
    FUZZ_CHECK(st.message().find(path) != std::string::npos);
    return;
  }
  FUZZ_CHECK(content.size() == 24 + model->NumDenseParams() * sizeof(float));
}

}  // namespace
}  // namespace freshet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace freshet;
  fuzz::Input in(data, size);
  const uint8_t mode = in.Byte() % 4;
  const std::string_view rest = in.Rest();
  const bool repair = mode % 2 == 1;
  const std::string content = repair ? fuzz::WithFnvTrailer(rest) : std::string(rest);
  if (mode < 2) {
    LoadRows(content);
  } else {
    LoadDenseFile(content);
  }
  return 0;
}
