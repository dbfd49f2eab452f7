#pragma once
// The logs an engine writes that its tenant may read: Trove's "guest logs"
// (docs/design/database.md, "Guest logs"). Per engine, a fixed list: the name Trove's API and
// troveclient's `database log` commands use, the file in the engine's folder
// (InstanceConfig::dir) the engine writes it to, and the catalog parameter that turns it on
// (empty: always on). The server lists and describes them from this list; the host's driver
// publishes a log's tail from the file it names.
#include <cstdint>
#include <span>
#include <string_view>

namespace concord::database::engine {

struct GuestLogSpec {
  std::string_view name;        // "general", "slow_query", "error"
  std::string_view file;        // relative to the engine's folder
  std::string_view enabled_by;  // a boolean parameter (parameters.h); empty: always on
  std::string_view description;
};

// Empty for an engine without guest logs.
std::span<const GuestLogSpec> guest_log_catalog(std::string_view engine);
// nullptr when `engine` has no log of that name.
const GuestLogSpec* find_guest_log(std::string_view engine, std::string_view name);

// At most this much of a log's end is published (the start of a partial line dropped): logs
// grow without bound, a publish is a look at what happened lately.
inline constexpr int64_t kGuestLogPublishBytes = int64_t{1} << 20;

}  // namespace concord::database::engine
