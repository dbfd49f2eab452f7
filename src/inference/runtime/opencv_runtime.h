#pragma once
// The OpenCV dnn runtime (OpenCV 4.6, Debian 12): ONNX models read from memory with
// cv::dnn::readNetFromONNX, run on the CPU backend.
//
// Thread safety: a cv::dnn::Net is not thread-safe (forward() writes the net's internal
// blobs), so each loaded model keeps a pool of `instances` independent Nets made from the
// same bytes; infer() checks one out under a mutex, runs it without any lock held, and returns
// it, waiting when all are busy. The default is one Net: forward() already spreads each
// layer over every core through OpenCV's own thread pool, the batching layer prefers one large
// batch to several small ones, and each extra Net holds another copy of the weights. A replica
// that serves many tiny requests without batching can ask for more.
//
// Loading parses the bytes with the ONNX reader first (so "not ONNX" is told apart from "ONNX
// this runtime cannot run"), then imports them, then runs one forward pass on zeros with batch 1,
// because OpenCV 4.6 accepts some graphs at import that it cannot run: a model is rejected at
// upload, not at its first request.
#include <memory>
#include <string_view>

#include "inference/runtime/runtime.h"

namespace concord::inference {

class OpenCvRuntime final : public Runtime {
 public:
  struct Options {
    int instances = 1;  // Nets per loaded model (see above); at least 1
    OnnxLimits limits;  // applied when reading the model's metadata
  };

  OpenCvRuntime() = default;
  explicit OpenCvRuntime(Options options) : options_(options) {}

  std::string_view name() const override { return "opencv"; }
  [[nodiscard]] Result<std::unique_ptr<Model>> load(std::string_view bytes) override;

 private:
  Options options_;
};

}  // namespace concord::inference
