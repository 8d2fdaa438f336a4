#include "worker/dense_file.h"

#include <cstring>

#include "common/checksum.h"
#include "common/file_io.h"

namespace freshet {
namespace {

constexpr char kDenseMagic[] = "FRSHDENS";
constexpr char kDenseOptimizerMagic[] = "FRSHDOPT";

}  // namespace

Status WriteDenseFile(const std::string& path, const char* magic, const float* data, uint64_t n) {
  return WriteFileAtomicWith(path, [&](AtomicFileWriter* w) {
    w->Append(magic, 8);
    w->AppendValue<uint64_t>(n);
    w->Append(data, n * sizeof(float));
    w->AppendValue<uint64_t>(w->hash());  // FNV-1a 64 of every byte before it
    return Status::OK();
  });
}

StatusOr<std::vector<float>> ReadDenseFile(const std::string& path, const char* magic,
                                           const std::string& what, uint64_t max_floats) {
  const uint64_t max_bytes = 24 + max_floats * sizeof(float);
  StatusOr<std::string> read = ReadFileToString(path, static_cast<size_t>(max_bytes));
  if (read.status().code() == StatusCode::kNotFound) {
    return NotFound(path + ": cannot open the " + what + " file");
  }
  const auto not_this = [&](const std::string& why) {
    return DataLoss(path + ": not a " + what + " file (" + why + ")");
  };
  if (read.status().code() == StatusCode::kFailedPrecondition) {
    return not_this("larger than " + std::to_string(max_floats) + " floats");
  }
  FRESHET_RETURN_IF_ERROR(read.status());
  const std::string& data = *read;
  if (data.size() < 24 || data.compare(0, 8, magic, 8) != 0) {
    return not_this(std::to_string(data.size()) + " bytes, " +
                    (data.size() < 24 ? "too short" : "another magic"));
  }
  uint64_t n, stored;
  std::memcpy(&n, data.data() + 8, 8);
  std::memcpy(&stored, data.data() + data.size() - 8, 8);
  if (n > max_floats || data.size() != 24 + n * sizeof(float)) {
    return not_this(std::to_string(data.size()) + " bytes for " + std::to_string(n) + " floats");
  }
  if (Fnv1a64(data.data(), data.size() - 8) != stored)
    return DataLoss(path + ": checksum mismatch");
  std::vector<float> values(n);
  if (n > 0) std::memcpy(values.data(), data.data() + 16, n * sizeof(float));
  return values;
}

Status SaveDense(const Model& model, const std::string& path) {
  return WriteDenseFile(path, kDenseMagic, model.dense_params(), model.NumDenseParams());
}

Status LoadDense(const std::string& path, Model* model) {
  const uint64_t want = model->NumDenseParams();
  FRESHET_ASSIGN_OR_RETURN(const std::vector<float> values,
                           ReadDenseFile(path, kDenseMagic, "dense parameter", want));
  if (values.size() != want) {
    return DataLoss(path + ": not a dense parameter file for this model (it has " +
                    std::to_string(values.size()) + " parameters, the model " +
                    std::to_string(want) + ")");
  }
  if (want > 0) std::memcpy(model->dense_params(), values.data(), want * sizeof(float));
  return Status::OK();
}

StatusOr<std::vector<float>> ReadDenseParams(const std::string& path) {
  return ReadDenseFile(path, kDenseMagic, "dense parameter", kMaxDenseFileFloats);
}

Status SaveDenseOptimizer(const Model& model, const std::string& path) {
  const std::vector<float> state = model.DenseOptimizerState();
  return WriteDenseFile(path, kDenseOptimizerMagic, state.data(), state.size());
}

Status LoadDenseOptimizer(const std::string& path, Model* model) {
  FRESHET_ASSIGN_OR_RETURN(
      const std::vector<float> state,
      ReadDenseFile(path, kDenseOptimizerMagic, "dense optimizer state", kMaxDenseFileFloats));
  return model->SetDenseOptimizerState(state).WithContext(path);
}

}  // namespace freshet
