#pragma once
// Cutting an ONNX model into parts for split inference.
//
// OpenCV dnn can stop a forward pass at any tensor (forward(name)) but cannot start one from an
// intermediate tensor: setInput() only binds the network's declared inputs (see
// docs/design/inference.md, "Splitting"). So each part the device or the cloud runs is a model
// of its own: the nodes between the chosen inputs and outputs, the weights those nodes use,
// and the model's opsets, with every other top-level field copied byte for byte. Nodes and
// weights are copied as raw protobuf bytes, never decoded and re-encoded, so a part computes
// exactly what the same nodes compute in the whole model.
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"
#include "inference/onnx/onnx_model.h"

namespace concord::inference {

// Returns the serialized model computing `outputs` from `inputs` inside `model_bytes`.
// `inputs` and `outputs` name tensors of the model (graph inputs, node outputs) and give their
// element type and shape (-1 dimensions are written as symbolic; the dim_params are kept when
// given). Errors are kInvalidArgument: the bytes are not a model (as parse_onnx_model), a name
// is not a tensor of the model, or an output depends on a tensor that is neither an input given
// here nor a weight.
[[nodiscard]] Result<std::string> extract_submodel(std::string_view model_bytes,
                                                   std::span<const TensorInfo> inputs,
                                                   std::span<const TensorInfo> outputs);

}  // namespace concord::inference
