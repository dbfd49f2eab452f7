#pragma once
// The seam between Concord's inference serving (endpoints, batching, the device SDK) and the
// library that actually runs a model. Callers hold a Runtime and the Models it loads, never a
// cv::dnn::Net or a torch::jit::Module, so a second runtime (libtorch) plugs in by adding an
// implementation and choosing it by name, without touching the callers.
//
// Errors, with the meaning callers map to their API:
//   load:  kInvalidArgument     the bytes are not a well-formed ONNX model (or not the format
//                               this runtime reads): the upload is wrong.
//          kFailedPrecondition  a well-formed model this runtime cannot run (unsupported
//                               operator, datatype or shape): the model is fine, the runtime
//                               is not able to serve it; do not retry with the same runtime.
//          kNotFound            load_file: no such file.
//   infer: kInvalidArgument     an input is missing, unknown, duplicated, or has the wrong
//                               datatype, rank, shape or byte size; the message names it.
//          kInternal            the runtime failed on inputs that matched the metadata.
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "inference/onnx/onnx_model.h"
#include "inference/runtime/tensor.h"

namespace concord::inference {

struct ModelMetadata {
  std::string format;   // "onnx"
  std::string runtime;  // the Runtime::name() that loaded it
  // What a client feeds and gets, in the model's order. Shapes use -1 for dynamic dimensions;
  // dimension 0 of every input may be used as the batch dimension when it is dynamic.
  std::vector<TensorInfo> inputs;
  std::vector<TensorInfo> outputs;
  // The full parse (nodes, initializers, opsets) for split planning.
  OnnxModelInfo onnx;
};

// A loaded model. infer() is safe to call from any number of threads at once; each
// implementation states how it achieves that.
class Model {
 public:
  virtual ~Model() = default;

  virtual const ModelMetadata& metadata() const = 0;

  // Runs one batch. `inputs` must name every model input exactly once, with the metadata's
  // datatype and rank, every fixed dimension equal, and all batch-capable inputs using the same
  // batch size. Returns every model output, in metadata order, with its actual shape.
  [[nodiscard]] virtual Result<std::vector<Tensor>> infer(std::span<const Tensor> inputs) = 0;
};

class Runtime {
 public:
  virtual ~Runtime() = default;

  virtual std::string_view name() const = 0;

  // Loads a model from its serialized bytes; the bytes are not referenced after the call.
  [[nodiscard]] virtual Result<std::unique_ptr<Model>> load(std::string_view bytes) = 0;

  // Reads `path` and loads it; kNotFound when the file does not exist, kUnavailable when it
  // cannot be read.
  [[nodiscard]] Result<std::unique_ptr<Model>> load_file(const std::filesystem::path& path);
};

// Checks `inputs` against `metadata` as Model::infer documents; shared by implementations so
// every runtime rejects the same requests with the same messages.
[[nodiscard]] Status validate_inputs(const ModelMetadata& metadata, std::span<const Tensor> inputs);

}  // namespace concord::inference
