#pragma once
// Named loggers per module on spdlog. Context (request id, project, resource id) goes into
// the message as key=value pairs so logs stay greppable.
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace concord {

// Returns the logger for a module ("http", "store", "identity", ...), creating it on first use.
std::shared_ptr<spdlog::logger> logger(const std::string& module);
// Sets the level for all loggers: trace, debug, info, warn, error, off.
void set_log_level(const std::string& level);

}  // namespace concord
