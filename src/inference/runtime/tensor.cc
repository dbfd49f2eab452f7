#include "inference/runtime/tensor.h"

#include <fmt/format.h>

#include <cstring>

namespace concord::inference {

Tensor Tensor::fp32(std::string name, std::vector<int64_t> shape, std::span<const float> values) {
  Tensor t{std::move(name), "FP32", std::move(shape), {}};
  t.data.resize(values.size_bytes());
  if (!values.empty()) std::memcpy(t.data.data(), values.data(), values.size_bytes());
  return t;
}

std::vector<float> Tensor::to_floats() const {
  if (datatype != "FP32") return {};
  std::vector<float> out(data.size() / sizeof(float));
  if (!out.empty()) std::memcpy(out.data(), data.data(), out.size() * sizeof(float));
  return out;
}

std::optional<size_t> datatype_size(std::string_view datatype) {
  if (datatype == "BOOL" || datatype == "UINT8" || datatype == "INT8") return 1;
  if (datatype == "UINT16" || datatype == "INT16" || datatype == "FP16") return 2;
  if (datatype == "UINT32" || datatype == "INT32" || datatype == "FP32") return 4;
  if (datatype == "UINT64" || datatype == "INT64" || datatype == "FP64") return 8;
  return std::nullopt;
}

Result<uint64_t> element_count(std::span<const int64_t> shape, uint64_t max_elements) {
  uint64_t count = 1;
  for (const int64_t dim : shape) {
    if (dim < 0) {
      return fail(Code::kInvalidArgument, fmt::format("negative dimension {} in shape", dim));
    }
    if (dim != 0 && count > max_elements / static_cast<uint64_t>(dim)) {
      return fail(Code::kInvalidArgument,
                  fmt::format("shape has more than {} elements", max_elements));
    }
    count *= static_cast<uint64_t>(dim);
  }
  return count;
}

Status check_tensor_size(const Tensor& tensor) {
  const auto size = datatype_size(tensor.datatype);
  if (!size) {
    return fail(Code::kInvalidArgument,
                fmt::format("tensor '{}': datatype '{}' has no fixed element size", tensor.name,
                            tensor.datatype));
  }
  auto count = element_count(tensor.shape);
  if (!count) {
    return fail(Code::kInvalidArgument,
                fmt::format("tensor '{}': {}", tensor.name, count.error().message()));
  }
  if (tensor.data.size() != *count * *size) {
    return fail(Code::kInvalidArgument,
                fmt::format("tensor '{}': shape and datatype need {} bytes but {} were given",
                            tensor.name, *count * *size, tensor.data.size()));
  }
  return ok();
}

}  // namespace concord::inference
