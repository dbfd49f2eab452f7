#pragma once
// The check every uploaded model version passes before the registry acknowledges it: the bytes
// must be well-formed ONNX (parse_onnx_model, bounded and fuzzed) and the runtime that will serve
// it must load it, including its probe forward pass (docs/design/inference.md, "Error contract
// of the runtime"). A model is thus refused at upload, never at its first inference request.
//
// Why a thread and a deadline: OpenCV's importer runs in this process and its time is not
// bounded by anything it promises, so the load runs on a detached thread that owns everything
// it touches (the bytes, the runtime); the caller waits at most `timeout`. A load that overruns
// is refused, and its thread finishes on its own later. At most `max_running` loads (finished
// or abandoned) run at once, so hostile uploads cannot pile up threads: further checks get
// kUnavailable until one ends. The design's next step is a child process with rlimits (a crash
// in the importer then cannot take the server down); the interface stays the same.
//
// Threading: check() may be called from any number of threads at once.
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "inference/runtime/runtime.h"

namespace concord::inference::registry {

// Loads bytes with a runtime and returns what it read. Must own whatever it uses: it may outlive
// the checker (an abandoned load). Errors follow Runtime::load.
using LoadFunction = std::function<Result<ModelMetadata>(std::string_view bytes)>;

// The real load: make_runtime(runtime_name)->load(bytes), for each call.
LoadFunction runtime_loader(std::string runtime_name);

class ModelChecker {
 public:
  ModelChecker(LoadFunction load, std::chrono::milliseconds timeout, int max_running);

  // Returns the model's metadata (inputs and outputs as the runtime serves them), or:
  //   kInvalidArgument     not well-formed ONNX (the parser's message, naming field and byte);
  //   kFailedPrecondition  well-formed, but the runtime cannot run it (its message), or the load
  //                        did not finish within the timeout;
  //   kUnavailable         max_running loads are already under way; retry later.
  [[nodiscard]] Result<ModelMetadata> check(std::string bytes) const;

  // Loads started and not yet finished (including abandoned ones), for tests and metrics.
  int running() const { return running_->load(); }

 private:
  LoadFunction load_;
  std::chrono::milliseconds timeout_;
  int max_running_;
  // Shared with the load threads, which may outlive the checker.
  std::shared_ptr<std::atomic<int>> running_ = std::make_shared<std::atomic<int>>(0);
};

}  // namespace concord::inference::registry
