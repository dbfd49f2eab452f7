#pragma once
// The server metadata keys that carry a managed database instance's desired state from the
// database service (src/database/service) through the compute service server and the agent's
// spec (the "meta" map of meta_data_json) to the database driver. One place, so the writer and
// the reader cannot drift. Values are strings, as all Nova metadata values are.
#include <string_view>

namespace concord::compute::driver::database_keys {

// The Trove instance id (also the service server's id) and the tenant project that owns it.
inline constexpr std::string_view kInstance = "concord.database.instance";
inline constexpr std::string_view kProject = "concord.database.project";
// The engine driver ("postgresql", "mariadb"; a partner engine adds its own) and its version
// ("15", "10.11").
inline constexpr std::string_view kEngine = "concord.database.engine";
inline constexpr std::string_view kVersion = "concord.database.version";
// The instance's own IPv4 address and port the engine listens on (docs/design/database.md,
// "Addresses").
inline constexpr std::string_view kAddress = "concord.database.address";
inline constexpr std::string_view kPort = "concord.database.port";
// The volume size in GB (disk use is watched against it).
inline constexpr std::string_view kVolumeGb = "concord.database.volume_gb";
// The desired state document (database/engine/desired_state.h), JSON text.
inline constexpr std::string_view kState = "concord.database.state";

// The network name of the one address a database instance reports (the instance's own IPv4
// address; Nova's schema wants a bare address, the port is the Trove API's).
inline constexpr std::string_view kAddressNetwork = "database";

}  // namespace concord::compute::driver::database_keys
