#include "inference/onnx/onnx_submodel.h"

#include <fmt/format.h>

#include <unordered_set>
#include <vector>

#include "inference/onnx/wire.h"

namespace concord::inference {
namespace {

using namespace wire::onnx_fields;  // NOLINT: onnx.proto field numbers
using wire::Field;
using wire::WireReader;

// A field exactly as it appears in the input, tag included.
struct RawField {
  uint32_t number = 0;
  std::string_view bytes;  // whole field: tag, length, value
  std::string_view value;  // length-delimited payload
};

Result<std::vector<RawField>> raw_fields(std::string_view message, const std::string& path) {
  std::vector<RawField> out;
  WireReader reader(message, path);
  while (!reader.done()) {
    const size_t start = reader.position();
    Field f;
    CONCORD_RETURN_IF_ERROR(reader.next(&f));
    out.push_back({f.number, message.substr(start, reader.position() - start), f.bytes});
  }
  return out;
}

std::string encode_value_info(const TensorInfo& t) {
  std::string shape;
  for (size_t d = 0; d < t.shape.size(); ++d) {
    std::string dim;
    if (t.shape[d] >= 0) {
      wire::append_varint_field(&dim, dim_field::kDimValue, static_cast<uint64_t>(t.shape[d]));
    } else {
      const bool named = d < t.dim_params.size() && !t.dim_params[d].empty();
      wire::append_bytes_field(&dim, dim_field::kDimParam,
                               named ? t.dim_params[d] : fmt::format("{}_dim{}", t.name, d));
    }
    wire::append_bytes_field(&shape, shape_field::kDim, dim);
  }
  std::string tensor_type;
  wire::append_varint_field(&tensor_type, tensor_type_field::kElemType,
                            static_cast<uint64_t>(t.elem_type));
  if (t.has_shape) wire::append_bytes_field(&tensor_type, tensor_type_field::kShape, shape);
  std::string type;
  wire::append_bytes_field(&type, type_field::kTensorType, tensor_type);
  std::string value_info;
  wire::append_bytes_field(&value_info, value_info_field::kName, t.name);
  wire::append_bytes_field(&value_info, value_info_field::kType, type);
  return value_info;
}

}  // namespace

Result<std::string> extract_submodel(std::string_view model_bytes,
                                     std::span<const TensorInfo> inputs,
                                     std::span<const TensorInfo> outputs) {
  CONCORD_ASSIGN_OR_RETURN(const OnnxModelInfo info, parse_onnx_model(model_bytes));
  if (inputs.empty() || outputs.empty()) {
    return fail(Code::kInvalidArgument, "a sub-model needs at least one input and one output");
  }
  // The raw bytes of the graph's nodes and initializers, in the order parse_onnx_model saw them
  // (so node i here is info.nodes[i]).
  CONCORD_ASSIGN_OR_RETURN(auto top, raw_fields(model_bytes, "ModelProto"));
  std::string_view graph_bytes;
  for (const auto& f : top) {
    if (f.number == model_field::kGraph) graph_bytes = f.value;
  }
  CONCORD_ASSIGN_OR_RETURN(auto graph, raw_fields(graph_bytes, "ModelProto.graph"));
  std::vector<std::string_view> node_bytes;
  std::vector<std::string_view> initializer_bytes;
  for (const auto& f : graph) {
    if (f.number == graph_field::kNode) node_bytes.push_back(f.bytes);
    if (f.number == graph_field::kInitializer || f.number == graph_field::kSparseInitializer) {
      initializer_bytes.push_back(f.bytes);
    }
  }
  if (node_bytes.size() != info.nodes.size() ||
      initializer_bytes.size() != info.initializer_names.size()) {
    return fail(Code::kInternal, "ONNX graph scan disagrees with the parse");
  }

  std::unordered_set<std::string> known;  // every tensor name of the model
  for (const auto& t : info.inputs) known.insert(t.name);
  for (const auto& n : info.initializer_names) known.insert(n);
  for (const auto& node : info.nodes) known.insert(node.outputs.begin(), node.outputs.end());
  std::unordered_set<std::string> new_inputs;
  for (const auto& t : inputs) {
    if (!known.contains(t.name)) {
      return fail(Code::kInvalidArgument,
                  fmt::format("sub-model input '{}' is not a tensor of the model", t.name));
    }
    new_inputs.insert(t.name);
  }
  for (const auto& t : outputs) {
    if (!known.contains(t.name)) {
      return fail(Code::kInvalidArgument,
                  fmt::format("sub-model output '{}' is not a tensor of the model", t.name));
    }
  }

  // Walk back from the outputs; ONNX stores nodes in topological order, so one reverse pass
  // sees every consumer before its producer.
  std::unordered_set<std::string> needed;
  for (const auto& t : outputs) {
    if (!new_inputs.contains(t.name)) needed.insert(t.name);
  }
  std::vector<bool> keep(info.nodes.size(), false);
  for (size_t i = info.nodes.size(); i-- > 0;) {
    const NodeInfo& node = info.nodes[i];
    bool produces = false;
    for (const auto& out : node.outputs) produces = produces || needed.erase(out) > 0;
    if (!produces) continue;
    keep[i] = true;
    for (const auto& in : node.inputs) {
      if (!in.empty() && !new_inputs.contains(in)) needed.insert(in);
    }
  }
  std::vector<bool> keep_initializer(info.initializer_names.size(), false);
  for (size_t i = 0; i < info.initializer_names.size(); ++i) {
    keep_initializer[i] = needed.erase(info.initializer_names[i]) > 0;
  }
  if (!needed.empty()) {
    return fail(Code::kInvalidArgument,
                fmt::format("the sub-model's outputs need tensor '{}', which is neither one of "
                            "its inputs nor a weight",
                            *needed.begin()));
  }

  std::string new_graph;
  for (size_t i = 0; i < node_bytes.size(); ++i) {
    if (keep[i]) new_graph.append(node_bytes[i]);
  }
  wire::append_bytes_field(&new_graph, graph_field::kName,
                           info.graph_name.empty() ? "part" : info.graph_name + "_part");
  for (size_t i = 0; i < initializer_bytes.size(); ++i) {
    if (keep_initializer[i]) new_graph.append(initializer_bytes[i]);
  }
  for (const auto& t : inputs) {
    wire::append_bytes_field(&new_graph, graph_field::kInput, encode_value_info(t));
  }
  for (const auto& t : outputs) {
    wire::append_bytes_field(&new_graph, graph_field::kOutput, encode_value_info(t));
  }

  std::string out;
  for (const auto& f : top) {
    if (f.number == model_field::kGraph) {
      wire::append_bytes_field(&out, model_field::kGraph, new_graph);
    } else {
      out.append(f.bytes);
    }
  }
  return out;
}

}  // namespace concord::inference
