// The dense files of a saved model or checkpoint: one checksummed float
// format, its writer and reader side by side.
//
//   <8-byte magic> u64 count, count f32, u64 FNV-1a 64 of every byte before it
//
// (little-endian). Two files use it:
//   dense.bin      magic "FRSHDENS": the model's dense parameters
//   dense_opt.bin  magic "FRSHDOPT": the dense optimizer state
//                  (Model::DenseOptimizerState), written beside dense.bin
// Writes are atomic (common/file_io.h: temporary file, fsync, rename).
//
// Thread safety: free functions, no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/model.h"

namespace freshet {

// The largest dense file a reader accepts without a model to size it
// (16 GiB of floats).
inline constexpr uint64_t kMaxDenseFileFloats = uint64_t{1} << 32;

// Writes `n` floats at `data` to `path` with the 8-byte `magic`. Internal
// naming the path on I/O errors.
Status WriteDenseFile(const std::string& path, const char* magic, const float* data, uint64_t n);

// Reads a file WriteDenseFile wrote with `magic`, of at most `max_floats`
// floats. NotFound if it is missing; DataLoss naming the file ("not a
// <what> file" for a wrong magic or size, or a checksum mismatch).
StatusOr<std::vector<float>> ReadDenseFile(const std::string& path, const char* magic,
                                           const std::string& what, uint64_t max_floats);

// dense.bin. Load: NotFound without the file, DataLoss naming it if it is
// corrupt or holds another count than the model's; the model is unchanged
// on error.
Status SaveDense(const Model& model, const std::string& path);
Status LoadDense(const std::string& path, Model* model);
// dense.bin's parameters without a model (freshet_model_diff): errors as
// ReadDenseFile's.
StatusOr<std::vector<float>> ReadDenseParams(const std::string& path);

// dense_opt.bin. Load: NotFound without the file, DataLoss if corrupt,
// InvalidArgument if its size does not fit the model.
Status SaveDenseOptimizer(const Model& model, const std::string& path);
Status LoadDenseOptimizer(const std::string& path, Model* model);

}  // namespace freshet
