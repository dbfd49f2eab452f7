#pragma once
// Servers that Concord itself runs for its services (inference replicas first): ordinary rows of
// compute_servers, so they are placed by the scheduler with claims, run by the host's agent,
// adopted after agent restarts, cleaned up when orphaned and marked down with their host, like
// any server. What differs from a Nova create is the caller: a service, in its own service
// project, with an id it chose (so a create re-issued after a crash is recognised), an explicit
// size instead of a flavor, a driver instead of one derived from the image, no tenant quota and
// no instance-action records (no API request stands behind them).
//
// The rows are visible through the Nova API to the service project (and admins), which is what
// an operator wants when a replica misbehaves.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "compute/service/context.h"
#include "compute/service/model.h"

namespace concord::compute {

struct ServiceServerRequest {
  std::string id;  // [A-Za-z0-9_-], 1..64 (it names the agent's instance directory)
  std::string project_id;
  std::string user_id;
  std::string name;
  std::string driver;  // a host must offer it ("inference", "database")
  // Resolved with ImageCatalog::get_any; must be active. Empty: the driver needs no image (a
  // database engine runs from the host's packages); the spec then carries an empty image.
  std::string image_id;
  int64_t vcpus = 1;
  int64_t ram_mb = 512;
  int64_t disk_gb = 0;
  // The flavor the server shows through the Nova API (a managed database shows its Trove flavor,
  // so an operator sees what the tenant chose); its size fields are replaced by the size above.
  // Absent: a synthetic "concord-service" flavor of that size.
  std::optional<FlavorSnapshot> flavor;
  std::map<std::string, std::string> metadata;  // reaches the agent in meta_data_json "meta"
  std::string availability_zone;                // empty: any
  // Hosts it must not be placed on (a database's standby never shares its primary's host).
  std::vector<std::string> ignore_hosts;
  // When no host can take it: true records the server in ERROR with the fault (Nova's create);
  // false records nothing and answers kResourceExhausted (callers that retry on their own).
  bool record_unplaced = true;
};

struct ServiceServer {
  std::string id;
  std::string project_id;
  std::string name;
  std::string host;         // empty when not placed
  std::string host_status;  // Nova's host_status: "UP", "DOWN", "MAINTENANCE", "UNKNOWN" or ""
  std::string status;       // Nova's: BUILD, ACTIVE, SHUTOFF, ERROR, ...
  std::string vm_state;
  std::optional<std::string> task_state;
  int64_t power_state = 0;
  std::string addresses_json = "{}";  // Nova's addresses object
  std::string fault;                  // the fault's message (+ details) when in ERROR
  std::map<std::string, std::string> metadata;
  int64_t vcpus = 0;
  int64_t ram_mb = 0;
  int64_t disk_gb = 0;
  // The agent has reported the latest desired state (spec generation) as converged, so a
  // metadata change or a resize with no task of its own is known to be applied.
  bool converged = false;
  // The driver's last reported status detail (InstanceStatus::detail, e.g. the database
  // driver's "state_revision=N; ...; storage low"); "" until the agent reports one.
  std::string detail;
};

// Creates the server, placed on a host offering req.driver, in one write transaction. When it
// exists already (same id, not deleted) nothing changes and ok is returned. When no host can
// take it, the row is still created, in ERROR with Nova's "No valid host" fault (as a Nova
// create does), and ok is returned: the caller sees the fault in list_service_servers; or, with
// record_unplaced false, nothing is written and the answer is kResourceExhausted.
// Errors: kInvalidArgument (bad id, size, driver; unknown image), kFailedPrecondition (image not
// active; the id belongs to a deleted server), store errors.
[[nodiscard]] Status create_service_server(ComputeContext& ctx, const ServiceServerRequest& req);

// Deletes the server the way a Nova delete does: its agent destroys it (task "deleting", the
// report finishes the delete), or at once when it was never placed or its host is down. Ok when
// it does not exist or is already being deleted.
[[nodiscard]] Status delete_service_server(ComputeContext& ctx, std::string_view id);

// Replaces the server's metadata (all keys) and makes its agent receive a new spec, as any
// desired-state change does (new spec generation and row revision). The agent hands the new
// metadata to the driver (Driver::configure). Errors: kNotFound (no such server, deleted or being
// deleted), store errors.
[[nodiscard]] Status set_service_server_metadata(
    ComputeContext& ctx, std::string_view id, const std::map<std::string, std::string>& metadata);

// Restarts the server the way a Nova reboot does (soft when it is active, hard otherwise: a hard
// reboot also powers on a stopped or failed one); the status is REBOOT until the agent reports
// it done. Errors: kNotFound (no such server, or being deleted), kFailedPrecondition (never
// placed, or busy with another task).
[[nodiscard]] Status reboot_service_server(ComputeContext& ctx, std::string_view id);

// Changes the server's size in place on its host (service servers carry no flavor to confirm,
// so there is no VERIFY_RESIZE step): the claim is re-made at the new size, the agent resizes
// the instance when its spec shows the new size, and `converged` in list_service_servers says
// when it did. Errors: kInvalidArgument (size too small), kNotFound (no such server, or being
// deleted), kFailedPrecondition (never placed, host down or without room, busy with another
// task).
// `flavor` is the flavor shown afterwards, as in ServiceServerRequest::flavor.
[[nodiscard]] Status resize_service_server(ComputeContext& ctx, std::string_view id, int64_t vcpus,
                                           int64_t ram_mb, int64_t disk_gb,
                                           const std::optional<FlavorSnapshot>& flavor = {});

// The project's servers that are not deleted (those being deleted included, with task
// "deleting"), with their metadata.
[[nodiscard]] Result<std::vector<ServiceServer>> list_service_servers(ComputeContext& ctx,
                                                                      std::string_view project_id);

}  // namespace concord::compute
