#include "inference/partition/partition.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "inference/onnx/onnx_submodel.h"

namespace concord::inference::partition {
namespace {

constexpr int32_t kFloatElemType = 1;

// Where a tensor is made and last needed, in node positions: graph inputs are made at -1; graph
// outputs are needed "after the last node" (n).
struct Span {
  int producer = -1;
  int last_use = -1;
};

// FP32 with a placeholder shape: OpenCV computes every tensor in float, the shape is what the
// probe run is for, and the runtime wants a declared rank it then does not hold outputs to
// (it returns what the network computed).
TensorInfo unshaped_fp32(const std::string& name) {
  TensorInfo t;
  t.name = name;
  t.elem_type = kFloatElemType;
  t.datatype = "FP32";
  t.has_shape = true;
  t.shape = {-1};
  t.dim_params = {"measured"};
  return t;
}

Result<uint64_t> bytes_per_item(const TensorInfo& t) {
  const auto size = datatype_size(t.datatype);
  if (!size) {
    return fail(Code::kFailedPrecondition,
                fmt::format("tensor '{}' has datatype '{}', which split inference cannot size",
                            t.name, t.datatype));
  }
  uint64_t elements = 1;
  for (size_t d = 1; d < t.shape.size(); ++d) {
    if (t.shape[d] < 0) {
      return fail(
          Code::kFailedPrecondition,
          fmt::format("tensor '{}' has a dynamic dimension {} besides the batch", t.name, d));
    }
    elements *= static_cast<uint64_t>(t.shape[d]);
  }
  return elements * *size;
}

}  // namespace

Result<Partitions> list_cuts(std::string_view model_bytes, Runtime& runtime, int max_tensors) {
  CONCORD_ASSIGN_OR_RETURN(const OnnxModelInfo info, parse_onnx_model(model_bytes));
  const int n = static_cast<int>(info.nodes.size());
  if (n == 0) return fail(Code::kInvalidArgument, "the model has no nodes to split");

  // Every non-weight tensor, in the order it comes into existence (graph inputs, then node
  // outputs in topological order), so cut tensors are listed in a stable order.
  std::unordered_set<std::string> weights(info.initializer_names.begin(),
                                          info.initializer_names.end());
  std::vector<std::string> order;
  std::unordered_map<std::string, Span> spans;
  std::unordered_set<std::string> graph_inputs;
  for (const auto& t : info.inputs) {
    graph_inputs.insert(t.name);
    order.push_back(t.name);
    spans[t.name] = {-1, -1};
  }
  for (int i = 0; i < n; ++i) {
    for (const auto& in : info.nodes[i].inputs) {
      auto it = spans.find(in);
      if (it != spans.end()) it->second.last_use = std::max(it->second.last_use, i);
    }
    for (const auto& out : info.nodes[i].outputs) {
      if (out.empty() || weights.contains(out)) continue;
      order.push_back(out);
      spans[out] = {i, -1};
    }
  }
  int last_output_producer = -1;
  for (const auto& t : info.outputs) {
    auto it = spans.find(t.name);
    if (it == spans.end()) {
      return fail(Code::kInvalidArgument,
                  fmt::format("model output '{}' is not produced by any node", t.name));
    }
    it->second.last_use = n;
    last_output_producer = std::max(last_output_producer, it->second.producer);
  }

  // The candidate cuts and their tensors. Left out: cuts still crossed by a graph input (the
  // head could not produce it; sending the raw input is what cloud-only does) and cuts before
  // a model output is complete (the tail would have to pass a head tensor through).
  std::vector<std::pair<int, std::vector<std::string>>> candidates;
  std::vector<std::string> probe_names;
  std::unordered_set<std::string> probed;
  for (int k = 1; k < n; ++k) {
    bool valid = true;
    std::vector<std::string> crossing;
    for (const auto& name : order) {
      const Span& s = spans[name];
      if (s.producer < k && s.last_use >= k) {
        if (graph_inputs.contains(name) || s.last_use == n) {
          valid = false;
          break;
        }
        crossing.push_back(name);
      }
    }
    if (!valid || crossing.empty() || static_cast<int>(crossing.size()) > max_tensors) continue;
    for (const auto& name : crossing) {
      if (probed.insert(name).second) probe_names.push_back(name);
    }
    candidates.emplace_back(k, std::move(crossing));
  }

  Partitions out;
  out.node_count = n;
  for (const auto& t : info.inputs) {
    CONCORD_ASSIGN_OR_RETURN(const uint64_t b, bytes_per_item(t));
    out.input_bytes_per_item += b;
  }

  // One probe model (the inputs to every cut tensor and every output) run once on zeros of
  // batch 1 measures every shape. Fusion inside the runtime may change the values of a probed
  // tensor but never its shape, and the heads the device runs are built separately.
  std::vector<TensorInfo> probe_outputs;
  for (const auto& name : probe_names) probe_outputs.push_back(unshaped_fp32(name));
  for (const auto& t : info.outputs) {
    if (!probed.contains(t.name)) probe_outputs.push_back(unshaped_fp32(t.name));
  }
  CONCORD_ASSIGN_OR_RETURN(const std::string probe_bytes,
                           extract_submodel(model_bytes, info.inputs, probe_outputs));
  auto probe = runtime.load(probe_bytes);
  if (!probe) {
    return fail(
        Code::kFailedPrecondition,
        fmt::format("the runtime cannot load the model's heads: {}", probe.error().message()));
  }
  std::vector<Tensor> zeros;
  bool batched = false;
  for (const auto& t : info.inputs) {
    Tensor z;
    z.name = t.name;
    z.datatype = t.datatype;
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (t.shape[d] >= 0) {
        z.shape.push_back(t.shape[d]);
      } else if (d == 0) {
        z.shape.push_back(1);
        batched = true;
      } else {
        return fail(
            Code::kFailedPrecondition,
            fmt::format("input '{}' has a dynamic dimension {} besides the batch", t.name, d));
      }
    }
    CONCORD_ASSIGN_OR_RETURN(const uint64_t count, element_count(z.shape));
    const auto size = datatype_size(t.datatype);
    if (!size) {
      return fail(Code::kFailedPrecondition,
                  fmt::format("input '{}' has datatype '{}', which cannot be zero-filled", t.name,
                              t.datatype));
    }
    z.data.assign(count * *size, '\0');
    zeros.push_back(std::move(z));
  }
  auto measured = (*probe)->infer(zeros);
  if (!measured) {
    return fail(
        Code::kFailedPrecondition,
        fmt::format("the runtime cannot run the model's heads: {}", measured.error().message()));
  }
  std::unordered_map<std::string, TensorInfo> shapes;
  for (const Tensor& t : *measured) {
    TensorInfo ti;
    ti.name = t.name;
    ti.datatype = t.datatype;
    ti.elem_type = kFloatElemType;
    if (t.datatype != "FP32") {
      return fail(Code::kFailedPrecondition,
                  fmt::format("cut tensor '{}' came out as '{}'; only FP32 cuts are supported",
                              t.name, t.datatype));
    }
    ti.has_shape = true;
    ti.shape = t.shape;
    ti.dim_params.assign(ti.shape.size(), "");
    if (batched && !ti.shape.empty()) {
      ti.shape[0] = -1;
      ti.dim_params[0] = "batch";
    }
    shapes[ti.name] = std::move(ti);
  }
  for (const auto& t : info.outputs) {
    auto it = shapes.find(t.name);
    if (it == shapes.end()) {
      return fail(Code::kInternal, fmt::format("the probe did not return output '{}'", t.name));
    }
    CONCORD_ASSIGN_OR_RETURN(const uint64_t b, bytes_per_item(it->second));
    out.output_bytes_per_item += b;
  }
  for (auto& [k, names] : candidates) {
    Cut cut;
    cut.index = k;
    for (const auto& name : names) {
      auto it = shapes.find(name);
      if (it == shapes.end()) {
        return fail(Code::kInternal, fmt::format("the probe did not return tensor '{}'", name));
      }
      CONCORD_ASSIGN_OR_RETURN(const uint64_t b, bytes_per_item(it->second));
      cut.bytes_per_item += b;
      cut.tensors.push_back(it->second);
    }
    const NodeInfo& last = info.nodes[k - 1];
    cut.after_node = last.name.empty() ? last.op_type : last.name;
    out.cuts.push_back(std::move(cut));
  }
  return out;
}

Result<std::string> head_model(std::string_view model_bytes, const OnnxModelInfo& info,
                               const Cut& cut) {
  if (cut.tensors.empty()) return fail(Code::kInvalidArgument, "the cut has no tensors");
  return extract_submodel(model_bytes, info.inputs, cut.tensors);
}

Result<std::string> tail_model(std::string_view model_bytes, const OnnxModelInfo& info,
                               const Cut& cut) {
  if (cut.tensors.empty()) return fail(Code::kInvalidArgument, "the cut has no tensors");
  return extract_submodel(model_bytes, cut.tensors, info.outputs);
}

std::string tail_name(std::string_view model_name, int cut) {
  return fmt::format("{}.from.{}", model_name, cut);
}

Result<std::vector<TailPart>> tail_parts(std::string_view model_bytes, std::string_view model_name,
                                         Runtime& runtime, int max_tensors) {
  CONCORD_ASSIGN_OR_RETURN(const OnnxModelInfo info, parse_onnx_model(model_bytes));
  CONCORD_ASSIGN_OR_RETURN(const Partitions parts, list_cuts(model_bytes, runtime, max_tensors));
  std::vector<TailPart> out;
  for (const Cut& cut : parts.cuts) {
    CONCORD_ASSIGN_OR_RETURN(std::string bytes, tail_model(model_bytes, info, cut));
    out.push_back({cut.index, tail_name(model_name, cut.index), std::move(bytes)});
  }
  return out;
}

}  // namespace concord::inference::partition
