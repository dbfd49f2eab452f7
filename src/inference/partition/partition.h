#pragma once
// The cut points of a model for split inference (docs/design/inference.md, "Device SDK and the
// split planner"), shared by the replica (which serves each tail as the OIP model
// "<name>.from.<cut>") and the device SDK (which runs the matching head), so both cut the same
// bytes at the same tensors and head + tail computes what the whole model computes.
//
// A cut `k` (1 <= k < node count) splits the model's nodes, in their stored topological order,
// into nodes [0, k) (the head) and [k, n) (the tail); its tensors are those produced in the head
// (or graph inputs) and consumed by the tail or listed as graph outputs, weights excluded. Only
// cuts crossed by at most `max_tensors` tensors are listed (a chain has one at every position).
// Also left out, in DAGs: cuts still crossed by a graph input (a branch that reads the raw
// input has not started yet; the head cannot produce the input, and sending it is what
// cloud-only does) and cuts before the last model output is produced (the tail would have to
// pass a head tensor through). Cut 0 (cloud only: the tail is the whole model) and cut n
// (device only) are implicit.
//
// Shapes of the cut tensors are not in most ONNX files, so they are measured: one probe model
// (the model's inputs to every candidate cut tensor and every output, built by
// extract_submodel with placeholder rank-1 output shapes) is run once on zeros of batch 1 with
// the runtime, and the cut tensors' shapes are recorded with dimension 0 dynamic (-1, dim_param
// "batch") when the model's batch dimension is. The runtime may fuse layers inside the probe;
// that can change probed values, never shapes, and the heads and tails are built separately.
// Cut tensors must come out FP32 (the only type OpenCV computes in).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "inference/onnx/onnx_model.h"
#include "inference/runtime/runtime.h"

namespace concord::inference::partition {

struct Cut {
  int index = 0;                    // k: the head is nodes [0, k)
  std::vector<TensorInfo> tensors;  // crossing tensors, FP32 etc., shape with -1 batch
  uint64_t bytes_per_item = 0;      // bytes of the crossing tensors for one batch row
  std::string after_node;           // name (or op type) of node k-1, for people
};

struct Partitions {
  int node_count = 0;
  uint64_t input_bytes_per_item = 0;   // what cloud-only sends per row
  uint64_t output_bytes_per_item = 0;  // what comes back per row
  std::vector<Cut> cuts;               // increasing index
};

// Lists the cuts of `model_bytes` (measuring shapes with `runtime`). kInvalidArgument when the
// bytes are not a model; kFailedPrecondition when the runtime cannot run a head.
[[nodiscard]] Result<Partitions> list_cuts(std::string_view model_bytes, Runtime& runtime,
                                           int max_tensors = 4);

// The head (model inputs -> cut tensors) and tail (cut tensors -> model outputs) as models of
// their own (extract_submodel).
[[nodiscard]] Result<std::string> head_model(std::string_view model_bytes,
                                             const OnnxModelInfo& info, const Cut& cut);
[[nodiscard]] Result<std::string> tail_model(std::string_view model_bytes,
                                             const OnnxModelInfo& info, const Cut& cut);

// "<model>.from.<k>": the OIP name under which a replica serves the tail after cut k.
std::string tail_name(std::string_view model_name, int cut);

// Everything a replica needs to serve split inference besides the whole model: every listed
// cut's tail, named tail_name(model_name, k). Load each `bytes` with the runtime and serve it
// under `name`. Errors as list_cuts and tail_model.
struct TailPart {
  int cut = 0;
  std::string name;
  std::string bytes;
};
[[nodiscard]] Result<std::vector<TailPart>> tail_parts(std::string_view model_bytes,
                                                       std::string_view model_name,
                                                       Runtime& runtime, int max_tensors = 4);

}  // namespace concord::inference::partition
