// Fuzzes the ONNX metadata reader (src/inference/onnx), which parses untrusted model uploads.
// Any input must give either a model whose every part respects the limits or kInvalidArgument;
// and cutting an accepted model from its inputs to its outputs (extract_submodel, the split
// planner's rewriter) must give either kInvalidArgument or a model that parses again with the
// same inputs and outputs.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "inference/onnx/onnx_model.h"
#include "inference/onnx/onnx_submodel.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace concord::inference;
  OnnxLimits limits;
  limits.max_nodes = 64;
  limits.max_rank = 8;
  limits.max_name_bytes = 64;
  auto info = parse_onnx_model(std::string_view(reinterpret_cast<const char*>(data), size), limits);
  if (!info) {
    if (info.error().code() != concord::Code::kInvalidArgument) std::abort();
    return 0;
  }
  if (info->nodes.size() > limits.max_nodes || info->inputs.empty() || info->outputs.empty() ||
      info->ir_version <= 0 || info->opset_imports.empty()) {
    std::abort();
  }
  for (const auto* list : {&info->inputs, &info->outputs}) {
    for (const auto& t : *list) {
      if (t.shape.size() > limits.max_rank || t.shape.size() != t.dim_params.size() ||
          t.name.empty() || t.name.size() > limits.max_name_bytes) {
        std::abort();
      }
      for (int64_t d : t.shape) {
        if (d < -1) std::abort();
      }
    }
  }
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto part = extract_submodel(bytes, info->inputs, info->outputs);
  if (!part) {
    if (part.error().code() != concord::Code::kInvalidArgument) std::abort();
    return 0;
  }
  auto again = parse_onnx_model(*part);
  if (!again || again->inputs.size() != info->inputs.size() ||
      again->outputs.size() != info->outputs.size()) {
    std::abort();
  }
  for (size_t i = 0; i < info->inputs.size(); ++i) {
    if (again->inputs[i].name != info->inputs[i].name ||
        again->inputs[i].shape != info->inputs[i].shape) {
      std::abort();
    }
  }
  return 0;
}
