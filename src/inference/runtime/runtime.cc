#include "inference/runtime/runtime.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <fstream>
#include <iterator>
#include <ranges>
#include <system_error>

namespace concord::inference {

Result<std::unique_ptr<Model>> Runtime::load_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return fail(Code::kNotFound, fmt::format("model file {} does not exist", path.string()));
  }
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    return fail(Code::kUnavailable, fmt::format("cannot read model file {}", path.string()));
  }
  return load(bytes);
}

Status validate_inputs(const ModelMetadata& metadata, std::span<const Tensor> inputs) {
  std::vector<const Tensor*> by_input(metadata.inputs.size(), nullptr);
  for (const Tensor& tensor : inputs) {
    size_t index = metadata.inputs.size();
    for (size_t i = 0; i < metadata.inputs.size(); ++i) {
      if (metadata.inputs[i].name == tensor.name) index = i;
    }
    if (index == metadata.inputs.size()) {
      return fail(
          Code::kInvalidArgument,
          fmt::format("unknown input '{}'; the model's inputs are: {}", tensor.name,
                      fmt::join(metadata.inputs | std::views::transform(
                                                      [](const TensorInfo& t) { return t.name; }),
                                ", ")));
    }
    if (by_input[index] != nullptr) {
      return fail(Code::kInvalidArgument,
                  fmt::format("input '{}' is given more than once", tensor.name));
    }
    by_input[index] = &tensor;
  }
  int64_t batch = -1;
  for (size_t i = 0; i < metadata.inputs.size(); ++i) {
    const TensorInfo& want = metadata.inputs[i];
    const Tensor* got = by_input[i];
    if (got == nullptr) {
      return fail(Code::kInvalidArgument, fmt::format("input '{}' is missing", want.name));
    }
    if (got->datatype != want.datatype) {
      return fail(Code::kInvalidArgument,
                  fmt::format("input '{}' has datatype '{}', the model expects '{}'", want.name,
                              got->datatype, want.datatype));
    }
    if (want.has_shape) {
      if (got->shape.size() != want.shape.size()) {
        return fail(
            Code::kInvalidArgument,
            fmt::format("input '{}' has shape [{}], the model expects rank {} ([{}])", want.name,
                        fmt::join(got->shape, ","), want.shape.size(), fmt::join(want.shape, ",")));
      }
      for (size_t d = 0; d < want.shape.size(); ++d) {
        if (got->shape[d] <= 0) {
          return fail(Code::kInvalidArgument,
                      fmt::format("input '{}' has shape [{}]: every dimension must be positive",
                                  want.name, fmt::join(got->shape, ",")));
        }
        if (want.shape[d] >= 0 && got->shape[d] != want.shape[d]) {
          return fail(Code::kInvalidArgument,
                      fmt::format("input '{}' has shape [{}], the model expects [{}]", want.name,
                                  fmt::join(got->shape, ","), fmt::join(want.shape, ",")));
        }
      }
      if (!want.shape.empty() && want.shape[0] < 0) {
        if (batch >= 0 && got->shape[0] != batch) {
          return fail(Code::kInvalidArgument,
                      fmt::format("input '{}' has batch size {} but another input has {}",
                                  want.name, got->shape[0], batch));
        }
        batch = got->shape[0];
      }
    }
    CONCORD_RETURN_IF_ERROR(check_tensor_size(*got));
  }
  return ok();
}

}  // namespace concord::inference
