// CreateModel: the one place that picks where the model math runs.
//
//   device cpu -> Model::Create (LrModel, DeepFmModel, LayeredModel)
//   device gpu -> GpuDeepFmModel on this rank's GPU (SelectLocalGpu:
//                 local rank modulo visible devices) with the device's GEMM
//                 precision
//
// Asking for a GPU is never silently served by the CPU: FailedPrecondition
// when the binary was built without CUDA, Unavailable when CUDA finds no
// device, InvalidArgument for a model kind without a GPU implementation (LR).
//
// Thread safety: reentrant.
#pragma once

#include <memory>

#include "common/device.h"
#include "common/proto/job.pb.h"
#include "common/status.h"
#include "model/model.h"

namespace freshet {

StatusOr<std::unique_ptr<Model>> CreateModel(const proto::ModelConfig& config,
                                             const ModelShape& shape, const DeviceSpec& device);

// Builds the model for a job and an example-file header (the slot count and
// dense count come from the encoder, the embedding dim from the slots'
// tables: JobModelShape) on the job's device (a GPU that is not there is an
// error, as above). Training, freshet_eval and the serving tests build their
// models here.
StatusOr<std::unique_ptr<Model>> CreateJobModel(const proto::JobConfig& job, int num_slots,
                                                int num_dense);

}  // namespace freshet
