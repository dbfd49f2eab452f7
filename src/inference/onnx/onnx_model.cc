#include "inference/onnx/onnx_model.h"

#include <fmt/format.h>

#include <unordered_set>
#include <utility>

#include "inference/onnx/wire.h"

namespace concord::inference {
namespace {

using wire::Field;
using wire::kLengthDelimited;
using wire::kVarint;
using wire::WireReader;
using wire::WireType;
using namespace wire::onnx_fields;  // NOLINT: onnx.proto field numbers (wire.h)

class Parser {
 public:
  explicit Parser(const OnnxLimits& limits) : limits_(limits) {}

  Result<OnnxModelInfo> parse(std::string_view bytes) {
    if (bytes.empty()) return fail(Code::kInvalidArgument, "invalid ONNX model: empty file");
    if (bytes.size() > limits_.max_model_bytes) {
      return fail(Code::kInvalidArgument,
                  fmt::format("invalid ONNX model: {} bytes is over the limit of {}", bytes.size(),
                              limits_.max_model_bytes));
    }
    OnnxModelInfo info;
    WireReader reader(bytes, "ModelProto");
    bool have_graph = false;
    std::vector<TensorInfo> declared_inputs;
    std::unordered_set<std::string> initializers;
    while (!reader.done()) {
      Field f;
      CONCORD_RETURN_IF_ERROR(reader.next(&f));
      switch (f.number) {
        case model_field::kIrVersion:
          CONCORD_RETURN_IF_ERROR(expect(reader, f, kVarint, "ir_version"));
          info.ir_version = static_cast<int64_t>(f.varint);
          break;
        case model_field::kProducerName:
          CONCORD_RETURN_IF_ERROR(string_field(reader, f, "producer_name", &info.producer_name));
          break;
        case model_field::kProducerVersion:
          CONCORD_RETURN_IF_ERROR(
              string_field(reader, f, "producer_version", &info.producer_version));
          break;
        case model_field::kOpsetImport: {
          CONCORD_RETURN_IF_ERROR(expect(reader, f, kLengthDelimited, "opset_import"));
          if (info.opset_imports.size() >= limits_.max_opset_imports) {
            return reader.error("too many opset_import entries");
          }
          CONCORD_ASSIGN_OR_RETURN(auto opset,
                                   parse_opset(f.bytes, reader.path() + ".opset_import"));
          info.opset_imports.push_back(std::move(opset));
          break;
        }
        case model_field::kGraph:
          CONCORD_RETURN_IF_ERROR(expect(reader, f, kLengthDelimited, "graph"));
          if (have_graph) return reader.error("graph appears twice");
          have_graph = true;
          CONCORD_RETURN_IF_ERROR(parse_graph(f.bytes, &info, &declared_inputs, &initializers));
          break;
        default: break;  // doc_string, metadata_props, functions, training_info, ...: not needed
      }
    }
    if (info.ir_version <= 0) {
      return fail(Code::kInvalidArgument,
                  "invalid ONNX model: ModelProto.ir_version is missing (not an ONNX model)");
    }
    if (!have_graph) {
      return fail(Code::kInvalidArgument, "invalid ONNX model: ModelProto.graph is missing");
    }
    // Required by the ONNX IR since version 3; also what makes a truncated file that happens to
    // end right after the graph fail instead of parsing.
    if (info.opset_imports.empty()) {
      return fail(Code::kInvalidArgument, "invalid ONNX model: ModelProto.opset_import is missing");
    }
    for (auto& input : declared_inputs) {
      if (!initializers.contains(input.name)) info.inputs.push_back(std::move(input));
    }
    if (info.inputs.empty()) {
      return fail(Code::kInvalidArgument,
                  "invalid ONNX model: the graph has no inputs besides its initializers");
    }
    if (info.outputs.empty()) {
      return fail(Code::kInvalidArgument, "invalid ONNX model: the graph has no outputs");
    }
    return info;
  }

 private:
  Status expect(const WireReader& reader, const Field& f, WireType type, std::string_view name) {
    if (f.wire_type != type) {
      return reader.error(fmt::format("field {} ({}) has wire type {}, expected {}", f.number, name,
                                      f.wire_type, static_cast<uint32_t>(type)));
    }
    return ok();
  }

  Status string_field(const WireReader& reader, const Field& f, std::string_view name,
                      std::string* out) {
    CONCORD_RETURN_IF_ERROR(expect(reader, f, kLengthDelimited, name));
    if (f.bytes.size() > limits_.max_name_bytes) {
      return reader.error(fmt::format("{} is {} bytes, over the limit of {}", name, f.bytes.size(),
                                      limits_.max_name_bytes));
    }
    out->assign(f.bytes);
    return ok();
  }

  Result<OpsetImport> parse_opset(std::string_view bytes, std::string path) {
    OpsetImport opset;
    WireReader reader(bytes, std::move(path));
    while (!reader.done()) {
      Field f;
      CONCORD_RETURN_IF_ERROR(reader.next(&f));
      if (f.number == opset_field::kDomain) {
        CONCORD_RETURN_IF_ERROR(string_field(reader, f, "domain", &opset.domain));
      } else if (f.number == opset_field::kVersion) {
        CONCORD_RETURN_IF_ERROR(expect(reader, f, kVarint, "version"));
        opset.version = static_cast<int64_t>(f.varint);
      }
    }
    return opset;
  }

  Status parse_graph(std::string_view bytes, OnnxModelInfo* info,
                     std::vector<TensorInfo>* declared_inputs,
                     std::unordered_set<std::string>* initializers) {
    WireReader reader(bytes, "ModelProto.graph");
    size_t values = 0;
    while (!reader.done()) {
      Field f;
      CONCORD_RETURN_IF_ERROR(reader.next(&f));
      switch (f.number) {
        case graph_field::kName:
          CONCORD_RETURN_IF_ERROR(string_field(reader, f, "name", &info->graph_name));
          break;
        case graph_field::kNode: {
          CONCORD_RETURN_IF_ERROR(expect(reader, f, kLengthDelimited, "node"));
          if (info->nodes.size() >= limits_.max_nodes) {
            return reader.error(fmt::format("more than {} nodes", limits_.max_nodes));
          }
          CONCORD_ASSIGN_OR_RETURN(
              auto node,
              parse_node(f.bytes, fmt::format("ModelProto.graph.node[{}]", info->nodes.size())));
          info->nodes.push_back(std::move(node));
          break;
        }
        case graph_field::kInput:
        case graph_field::kOutput: {
          const bool is_input = f.number == graph_field::kInput;
          CONCORD_RETURN_IF_ERROR(
              expect(reader, f, kLengthDelimited, is_input ? "input" : "output"));
          if (++values > limits_.max_values) {
            return reader.error(
                fmt::format("more than {} graph inputs and outputs", limits_.max_values));
          }
          auto& list = is_input ? *declared_inputs : info->outputs;
          CONCORD_ASSIGN_OR_RETURN(
              auto value,
              parse_value_info(f.bytes, fmt::format("ModelProto.graph.{}[{}]",
                                                    is_input ? "input" : "output", list.size())));
          list.push_back(std::move(value));
          break;
        }
        case graph_field::kInitializer:
        case graph_field::kSparseInitializer: {
          CONCORD_RETURN_IF_ERROR(expect(reader, f, kLengthDelimited, "initializer"));
          if (info->initializer_names.size() >= limits_.max_initializers) {
            return reader.error(fmt::format("more than {} initializers", limits_.max_initializers));
          }
          std::string_view tensor = f.bytes;
          const std::string path =
              fmt::format("ModelProto.graph.initializer[{}]", info->initializer_names.size());
          if (f.number == graph_field::kSparseInitializer) {
            CONCORD_ASSIGN_OR_RETURN(tensor, sparse_values(f.bytes, path));
          }
          CONCORD_ASSIGN_OR_RETURN(auto name, tensor_name(tensor, path));
          initializers->insert(name);
          info->initializer_names.push_back(std::move(name));
          break;
        }
        default: break;  // value_info, doc_string, quantization annotations: not needed
      }
    }
    return ok();
  }

  Result<NodeInfo> parse_node(std::string_view bytes, std::string path) {
    NodeInfo node;
    WireReader reader(bytes, std::move(path));
    while (!reader.done()) {
      Field f;
      CONCORD_RETURN_IF_ERROR(reader.next(&f));
      switch (f.number) {
        case node_field::kInput:
        case node_field::kOutput: {
          auto& list = f.number == node_field::kInput ? node.inputs : node.outputs;
          if (list.size() >= limits_.max_node_io) {
            return reader.error(
                fmt::format("more than {} node inputs or outputs", limits_.max_node_io));
          }
          CONCORD_RETURN_IF_ERROR(string_field(reader, f, "input/output", &list.emplace_back()));
          break;
        }
        case node_field::kName:
          CONCORD_RETURN_IF_ERROR(string_field(reader, f, "name", &node.name));
          break;
        case node_field::kOpType:
          CONCORD_RETURN_IF_ERROR(string_field(reader, f, "op_type", &node.op_type));
          break;
        case node_field::kDomain:
          CONCORD_RETURN_IF_ERROR(string_field(reader, f, "domain", &node.domain));
          break;
        default: break;  // attributes (with their sub-graphs) and doc_string are not walked
      }
    }
    if (node.op_type.empty()) return reader.error("node without op_type");
    return node;
  }

  Result<TensorInfo> parse_value_info(std::string_view bytes, std::string path) {
    TensorInfo value;
    WireReader reader(bytes, std::move(path));
    while (!reader.done()) {
      Field f;
      CONCORD_RETURN_IF_ERROR(reader.next(&f));
      if (f.number == value_info_field::kName) {
        CONCORD_RETURN_IF_ERROR(string_field(reader, f, "name", &value.name));
      } else if (f.number == value_info_field::kType) {
        CONCORD_RETURN_IF_ERROR(expect(reader, f, kLengthDelimited, "type"));
        CONCORD_RETURN_IF_ERROR(parse_type(f.bytes, reader.path() + ".type", &value));
      }
    }
    if (value.name.empty()) return reader.error("graph input or output without a name");
    value.datatype = std::string(oip_datatype(value.elem_type));
    return value;
  }

  // Only tensor types are described; sequence, map, optional and sparse types leave elem_type 0
  // (no OIP datatype), which the runtime rejects at load.
  Status parse_type(std::string_view bytes, std::string path, TensorInfo* value) {
    WireReader reader(bytes, std::move(path));
    while (!reader.done()) {
      Field f;
      CONCORD_RETURN_IF_ERROR(reader.next(&f));
      if (f.number != type_field::kTensorType) continue;
      CONCORD_RETURN_IF_ERROR(expect(reader, f, kLengthDelimited, "tensor_type"));
      WireReader tensor(f.bytes, reader.path() + ".tensor_type");
      while (!tensor.done()) {
        Field t;
        CONCORD_RETURN_IF_ERROR(tensor.next(&t));
        if (t.number == tensor_type_field::kElemType) {
          CONCORD_RETURN_IF_ERROR(expect(tensor, t, kVarint, "elem_type"));
          if (t.varint > 0x7FFFFFFF) return tensor.error("elem_type out of range");
          value->elem_type = static_cast<int32_t>(t.varint);
        } else if (t.number == tensor_type_field::kShape) {
          CONCORD_RETURN_IF_ERROR(expect(tensor, t, kLengthDelimited, "shape"));
          CONCORD_RETURN_IF_ERROR(parse_shape(t.bytes, tensor.path() + ".shape", value));
        }
      }
    }
    return ok();
  }

  Status parse_shape(std::string_view bytes, std::string path, TensorInfo* value) {
    WireReader reader(bytes, std::move(path));
    value->has_shape = true;
    value->shape.clear();
    value->dim_params.clear();
    while (!reader.done()) {
      Field f;
      CONCORD_RETURN_IF_ERROR(reader.next(&f));
      if (f.number != shape_field::kDim) continue;
      CONCORD_RETURN_IF_ERROR(expect(reader, f, kLengthDelimited, "dim"));
      if (value->shape.size() >= limits_.max_rank) {
        return reader.error(fmt::format("rank over the limit of {}", limits_.max_rank));
      }
      int64_t dim = -1;
      std::string param;
      WireReader dim_reader(f.bytes, fmt::format("{}.dim[{}]", reader.path(), value->shape.size()));
      while (!dim_reader.done()) {
        Field d;
        CONCORD_RETURN_IF_ERROR(dim_reader.next(&d));
        if (d.number == dim_field::kDimValue) {
          CONCORD_RETURN_IF_ERROR(expect(dim_reader, d, kVarint, "dim_value"));
          const auto v = static_cast<int64_t>(d.varint);
          if (v < 0) return dim_reader.error("negative dim_value");
          dim = v;
          param.clear();
        } else if (d.number == dim_field::kDimParam) {
          CONCORD_RETURN_IF_ERROR(string_field(dim_reader, d, "dim_param", &param));
          dim = -1;  // a oneof with dim_value: the last one set wins, as in protobuf
        }
      }
      value->shape.push_back(dim);
      value->dim_params.push_back(std::move(param));
    }
    return ok();
  }

  Result<std::string_view> sparse_values(std::string_view bytes, const std::string& path) {
    WireReader reader(bytes, path);
    std::string_view values;
    while (!reader.done()) {
      Field f;
      CONCORD_RETURN_IF_ERROR(reader.next(&f));
      if (f.number == sparse_tensor_field::kValues) {
        CONCORD_RETURN_IF_ERROR(expect(reader, f, kLengthDelimited, "values"));
        values = f.bytes;
      }
    }
    return values;
  }

  Result<std::string> tensor_name(std::string_view bytes, const std::string& path) {
    WireReader reader(bytes, path);
    std::string name;
    while (!reader.done()) {
      Field f;
      CONCORD_RETURN_IF_ERROR(reader.next(&f));
      if (f.number == tensor_field::kName) {
        CONCORD_RETURN_IF_ERROR(string_field(reader, f, "name", &name));
      }
    }
    if (name.empty()) return reader.error("initializer without a name");
    return name;
  }

  const OnnxLimits& limits_;
};

}  // namespace

std::string_view oip_datatype(int32_t onnx_elem_type) {
  switch (static_cast<OnnxElemType>(onnx_elem_type)) {
    case OnnxElemType::kFloat: return "FP32";
    case OnnxElemType::kUint8: return "UINT8";
    case OnnxElemType::kInt8: return "INT8";
    case OnnxElemType::kUint16: return "UINT16";
    case OnnxElemType::kInt16: return "INT16";
    case OnnxElemType::kInt32: return "INT32";
    case OnnxElemType::kInt64: return "INT64";
    case OnnxElemType::kString: return "BYTES";
    case OnnxElemType::kBool: return "BOOL";
    case OnnxElemType::kFloat16: return "FP16";
    case OnnxElemType::kDouble: return "FP64";
    case OnnxElemType::kUint32: return "UINT32";
    case OnnxElemType::kUint64: return "UINT64";
    case OnnxElemType::kUndefined: break;
  }
  return "";
}

int64_t OnnxModelInfo::default_opset() const {
  for (const auto& opset : opset_imports) {
    if (opset.domain.empty() || opset.domain == "ai.onnx") return opset.version;
  }
  return 0;
}

Result<OnnxModelInfo> parse_onnx_model(std::string_view bytes, const OnnxLimits& limits) {
  return Parser(limits).parse(bytes);
}

}  // namespace concord::inference
