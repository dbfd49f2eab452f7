#pragma once
// What Concord needs to know about an uploaded ONNX model, read straight from its bytes.
//
// Why hand-written: Debian 12 does ship the ONNX C++ library (libonnx-dev 1.12, on libprotobuf),
// but the registry needs only a handful of fields, parses untrusted uploads, and must never copy
// a model's weights just to list its inputs. This reader walks the protobuf wire format over the
// caller's buffer, keeps string_views into it where that is enough, skips every field it does
// not need without looking inside (weights, attributes, sub-graphs of If/Loop), and is compiled
// into the libFuzzer target with coverage, which an uninstrumented system libprotobuf is not.
//
// Nesting is bounded by the schema walked here (Model > Graph > ValueInfo > Type > Tensor >
// Shape > Dimension: 7 levels); nothing recursive is followed. Counts and sizes are bounded by
// OnnxLimits. Every malformed or over-limit input gives kInvalidArgument with the field path.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace concord::inference {

// ONNX TensorProto.DataType values (onnx.proto); only the ones with an OIP name are listed.
enum class OnnxElemType : int32_t {
  kUndefined = 0,
  kFloat = 1,
  kUint8 = 2,
  kInt8 = 3,
  kUint16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,
  kBool = 9,
  kFloat16 = 10,
  kDouble = 11,
  kUint32 = 12,
  kUint64 = 13,
};

// The Open Inference Protocol v2 datatype name ("FP32", "INT64", "BYTES", ...) of an ONNX element
// type, or "" when OIP has none (complex, bfloat16, unknown values).
std::string_view oip_datatype(int32_t onnx_elem_type);

// One graph input or output (ONNX ValueInfoProto with a tensor type).
struct TensorInfo {
  std::string name;
  int32_t elem_type = 0;   // OnnxElemType value as stored; 0 when the type is absent or not tensor
  std::string datatype;    // oip_datatype(elem_type), "" when none
  bool has_shape = false;  // false: rank unknown, `shape` is empty
  // Dimensions; -1 for a dimension that is symbolic (dim_param, e.g. a dynamic batch) or unset.
  std::vector<int64_t> shape;
  std::vector<std::string> dim_params;  // per dimension; "" when the dimension has a value
};

// One node, in file order (ONNX requires topological order), kept for split planning.
struct NodeInfo {
  std::string name;
  std::string op_type;
  std::string domain;
  std::vector<std::string> inputs;  // "" stands for an omitted optional input, as in ONNX
  std::vector<std::string> outputs;
};

struct OpsetImport {
  std::string domain;  // "" is the default ai.onnx domain
  int64_t version = 0;
};

struct OnnxModelInfo {
  int64_t ir_version = 0;
  std::string producer_name;
  std::string producer_version;
  std::vector<OpsetImport> opset_imports;
  std::string graph_name;
  // Graph inputs that are not initializers: what a client must feed. Old exporters list every
  // weight as a graph input too; those are removed here.
  std::vector<TensorInfo> inputs;
  std::vector<TensorInfo> outputs;
  std::vector<std::string> initializer_names;  // dense and sparse
  std::vector<NodeInfo> nodes;

  // The opset version of the default domain, 0 when not imported.
  int64_t default_opset() const;
};

struct OnnxLimits {
  size_t max_model_bytes = size_t{1} << 31;  // protobuf's own hard ceiling is 2 GiB
  size_t max_nodes = 100'000;
  size_t max_values = 10'000;  // graph inputs + outputs
  size_t max_initializers = 1'000'000;
  size_t max_node_io = 1'024;  // inputs or outputs of one node
  size_t max_rank = 32;
  size_t max_name_bytes = 4'096;  // any one name, op type or domain
  size_t max_opset_imports = 256;
};

// Parses `bytes` as an ONNX ModelProto. kInvalidArgument for anything that is not a
// well-formed model within `limits` (not protobuf, truncated, no graph, no ir_version, no
// inputs or outputs, over a limit); the message names the field where parsing stopped.
[[nodiscard]] Result<OnnxModelInfo> parse_onnx_model(std::string_view bytes,
                                                     const OnnxLimits& limits = {});

}  // namespace concord::inference
