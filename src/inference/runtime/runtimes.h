#pragma once
// Choosing a runtime by name, so configuration (and later a model version's recorded runtime)
// picks the implementation and no caller names a concrete class.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "inference/runtime/runtime.h"

namespace concord::inference {

// Names accepted by make_runtime, in order of preference ("opencv" today).
std::vector<std::string> available_runtimes();

// kNotFound naming the available runtimes when `name` is not one of them.
[[nodiscard]] Result<std::unique_ptr<Runtime>> make_runtime(std::string_view name);

}  // namespace concord::inference
