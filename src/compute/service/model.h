#pragma once
// The compute data model shared by the Nova API, the agent endpoints and the controller: the
// schema, the server row as stored, Nova's state vocabulary and the status map. See
// docs/design/compute.md (the table of states is the contract between the API, which sets
// task states and desired state, and the report handler, which finishes them).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "store/store.h"

namespace concord::compute {

std::vector<store::Migration> migrations();

// Nova's vm_state values (nova/compute/vm_states.py).
namespace vm {
inline constexpr std::string_view kBuilding = "building";
inline constexpr std::string_view kActive = "active";
inline constexpr std::string_view kStopped = "stopped";
inline constexpr std::string_view kResized = "resized";
inline constexpr std::string_view kPaused = "paused";
inline constexpr std::string_view kSuspended = "suspended";
inline constexpr std::string_view kError = "error";
inline constexpr std::string_view kDeleted = "deleted";
}  // namespace vm

// Nova's task_state values used here (nova/compute/task_states.py). NULL when idle.
namespace task {
inline constexpr std::string_view kScheduling = "scheduling";
inline constexpr std::string_view kSpawning = "spawning";
inline constexpr std::string_view kPoweringOff = "powering-off";
inline constexpr std::string_view kPoweringOn = "powering-on";
inline constexpr std::string_view kRebooting = "rebooting";
inline constexpr std::string_view kRebootingHard = "rebooting_hard";
inline constexpr std::string_view kRebuilding = "rebuilding";
inline constexpr std::string_view kResizePrep = "resize_prep";
inline constexpr std::string_view kResizeFinish = "resize_finish";
inline constexpr std::string_view kResizeReverting = "resize_reverting";
inline constexpr std::string_view kDeleting = "deleting";
}  // namespace task

// Nova's power_state integers.
namespace power {
inline constexpr int kNoState = 0;
inline constexpr int kRunning = 1;
inline constexpr int kPaused = 3;
inline constexpr int kShutdown = 4;
inline constexpr int kCrashed = 6;
inline constexpr int kSuspended = 7;
}  // namespace power

// The API `status` from vm_state and task_state (Nova's _STATE_MAP); "UNKNOWN" for pairs Nova
// does not know.
std::string_view status_of(std::string_view vm_state, std::optional<std::string_view> task_state);

// A flavor snapshot as embedded in a server (flavor_json) and as the agent sees it.
struct FlavorSnapshot {
  std::string id;
  std::string name;
  int64_t vcpus = 0;
  int64_t ram_mb = 0;
  int64_t disk_gb = 0;
  int64_t ephemeral_gb = 0;
  int64_t swap_mb = 0;
  std::vector<std::pair<std::string, std::string>> extra_specs;
};
std::string to_json(const FlavorSnapshot& f);
Result<FlavorSnapshot> flavor_from_json(std::string_view json);

// One compute_servers row. Field names are the column names.
struct ServerRow {
  std::string id, project_id, user_id, name;
  std::optional<std::string> description;
  std::string image_id, flavor_id, flavor_json;
  std::optional<std::string> old_flavor_json;
  int64_t vcpus = 0, ram_mb = 0, disk_gb = 0;
  std::optional<std::string> key_name, key_data, user_data, availability_zone;
  std::string access_ipv4, access_ipv6;
  bool config_drive = false;
  bool locked = false;
  std::optional<std::string> locked_reason;
  std::string hostname, reservation_id;
  int64_t launch_index = 0;
  std::optional<std::string> server_group_id;
  std::string disk_config = "MANUAL";
  std::string vm_state;
  std::optional<std::string> task_state;
  int64_t power_state = 0;
  std::optional<std::string> fault_json;
  std::optional<std::string> host;
  std::string network = "none", driver, addresses_json = "{}";
  std::string desired_power = "running";
  int64_t reboot_seq = 0;
  bool reboot_hard = false;
  int64_t rebuild_seq = 0, spec_generation = 1, observed_generation = 0;
  int64_t observed_reboot_seq = 0, observed_rebuild_seq = 0, op_deadline_ms = 0;
  std::optional<std::string> launched_at, terminated_at;
  std::string created_at, updated_at;
  int64_t created_ms = 0;
  bool deleted = false;
  std::optional<std::string> deleted_at;
  int64_t last_metered_ms = 0;
  int64_t revision = 1;

  std::string_view status() const {
    return status_of(vm_state,
                     task_state ? std::optional<std::string_view>(*task_state) : std::nullopt);
  }
};

// A host's availability zone as SQL over `compute_hosts h`: the zone of a host aggregate it
// belongs to (metadata key "availability_zone", as in Nova), else the zone its agent declared.
inline constexpr const char* kHostZoneSql =
    "COALESCE((SELECT MIN(m.value) FROM compute_aggregate_hosts ah JOIN "
    "compute_aggregate_metadata m ON m.aggregate_id = ah.aggregate_id AND "
    "m.key = 'availability_zone' WHERE ah.host = h.name), h.availability_zone)";

// "SELECT <kServerColumns> FROM compute_servers ..." gives rows server_from_row() reads.
extern const char* const kServerColumns;
ServerRow server_from_row(const store::Row& row);
// kNotFound when absent (or deleted, unless include_deleted).
[[nodiscard]] Result<ServerRow> load_server(store::Tx& tx, std::string_view id,
                                            bool include_deleted = false);
// Inserts a new row (revision 1).
[[nodiscard]] Status insert_server(store::Tx& tx, const ServerRow& s);
// Writes every mutable column of `s` if its revision is still s.revision (optimistic
// concurrency; kAborted when stale, kNotFound when gone), bumps the revision and records a
// "compute.server" update in the change feed. On success s.revision is the new revision.
[[nodiscard]] Status update_server(store::Tx& tx, ServerRow& s);

// Change-feed kind for servers (agents long-poll on it).
inline constexpr std::string_view kServerKind = "compute.server";
inline constexpr std::string_view kHostKind = "compute.host";

}  // namespace concord::compute
