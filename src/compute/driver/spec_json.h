#pragma once
// Internal: InstanceSpec <-> JSON, the spec.json each instance directory keeps so that start(),
// reboot() and a restarted agent know what to run without the caller repeating it.
#include <string>

#include "base/result.h"
#include "compute/driver/driver.h"

namespace concord::compute::driver {

std::string spec_to_json(const InstanceSpec& spec);
[[nodiscard]] Result<InstanceSpec> spec_from_json(const std::string& text);
// Reads <dir>/spec.json; kNotFound when the instance directory or the file is missing.
[[nodiscard]] Result<InstanceSpec> load_spec(const std::string& dir);
[[nodiscard]] Status save_spec(const std::string& dir, const InstanceSpec& spec);

}  // namespace concord::compute::driver
