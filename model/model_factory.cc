#include "model/model_factory.h"

#ifdef FRESHET_HAVE_CUDA
#include "model/gpu/gpu_deepfm_model.h"
#endif

namespace freshet {

StatusOr<std::unique_ptr<Model>> CreateModel(const proto::ModelConfig& config,
                                             const ModelShape& shape, const DeviceSpec& device) {
  if (device.kind == DeviceKind::kCpu) return Model::Create(config, shape);
  const std::string what = "device " + device.ToString();
  if (config.kind() != proto::ModelConfig::DEEPFM) {
    return InvalidArgument(what + ": only the DEEPFM model has a GPU implementation, got " +
                           proto::ModelConfig::Kind_Name(config.kind()));
  }
  // Built without CUDA: FailedPrecondition; no device: Unavailable.
  StatusOr<int> gpu = SelectLocalGpu();
  if (!gpu.ok()) return gpu.status().WithContext(what);
#ifdef FRESHET_HAVE_CUDA
  GpuModelOptions options;
  options.device = *gpu;
  options.precision = device.precision;
  FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<GpuDeepFmModel> model,
                           GpuDeepFmModel::Create(config, shape, options));
  return std::unique_ptr<Model>(std::move(model));
#else
  return FailedPrecondition(what + ": this binary was built without CUDA");
#endif
}

StatusOr<std::unique_ptr<Model>> CreateJobModel(const proto::JobConfig& job, int num_slots,
                                                int num_dense) {
  FRESHET_ASSIGN_OR_RETURN(DeviceSpec device, ParseDevice(job.device()));
  return CreateModel(job.model(), JobModelShape(job, num_slots, num_dense), device);
}

}  // namespace freshet
