#include "inference/runtime/runtimes.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "inference/runtime/opencv_runtime.h"

namespace concord::inference {

std::vector<std::string> available_runtimes() {
  return {"opencv"};
}

Result<std::unique_ptr<Runtime>> make_runtime(std::string_view name) {
  if (name == "opencv") return std::make_unique<OpenCvRuntime>();
  return fail(Code::kNotFound, fmt::format("no inference runtime named '{}'; available: {}", name,
                                           fmt::join(available_runtimes(), ", ")));
}

}  // namespace concord::inference
