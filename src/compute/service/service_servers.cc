#include "compute/service/service_servers.h"

#include <algorithm>
#include <span>

#include "base/json.h"
#include "compute/service/api_servers_internal.h"
#include "compute/service/metering.h"
#include "compute/service/model.h"
#include "compute/service/placement.h"
#include "compute/service/report.h"
#include "nlohmann/json.hpp"

namespace concord::compute {
namespace {

constexpr std::string_view kNoValidHost =
    "No valid host was found. There are not enough hosts available.";

// What the server shows as its flavor: the caller's (sized as asked) or a synthetic one.
FlavorSnapshot shown_flavor(const std::optional<FlavorSnapshot>& shown, int64_t vcpus,
                            int64_t ram_mb, int64_t disk_gb) {
  FlavorSnapshot fl;
  if (shown) {
    fl = *shown;
  } else {
    fl.id = "concord-service";
    fl.name = "concord-service-" + std::to_string(vcpus) + "c" + std::to_string(ram_mb);
  }
  fl.vcpus = vcpus;
  fl.ram_mb = ram_mb;
  fl.disk_gb = disk_gb;
  return fl;
}

bool safe_server_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

Status validate(const ServiceServerRequest& req) {
  if (!safe_server_id(req.id)) {
    return fail(Code::kInvalidArgument,
                "service server id must be 1..64 letters, digits, '-' or '_' (got '" +
                    sanitize_utf8(req.id) + "')");
  }
  if (req.project_id.empty() || req.user_id.empty()) {
    return fail(Code::kInvalidArgument, "service server " + req.id + ": project and user ids");
  }
  if (req.driver.empty()) {
    return fail(Code::kInvalidArgument, "service server " + req.id + ": driver is required");
  }
  if (req.vcpus < 1 || req.ram_mb < 16 || req.disk_gb < 0) {
    return fail(Code::kInvalidArgument, "service server " + req.id + ": size too small (vcpus " +
                                            std::to_string(req.vcpus) + ", ram " +
                                            std::to_string(req.ram_mb) + " MB)");
  }
  if (req.name.empty() || req.name.size() > 255) {
    return fail(Code::kInvalidArgument, "service server " + req.id + ": name must be 1..255");
  }
  return ok();
}

// "<message> (<details>)" of a row's fault, for people and the replica backend.
std::string fault_text(const std::optional<std::string>& fault_json) {
  if (!fault_json) return {};
  auto j = parse_json(*fault_json);
  if (!j || !j->is_object()) return *fault_json;
  std::string text = j->value("message", std::string());
  std::string details = j->value("details", std::string());
  if (!details.empty() && details != text) text += text.empty() ? details : " (" + details + ")";
  return text;
}

}  // namespace

Status create_service_server(ComputeContext& ctx, const ServiceServerRequest& req) {
  CONCORD_RETURN_IF_ERROR(validate(req));
  ImageInfo image;  // stays empty for drivers that need no image
  if (!req.image_id.empty()) {
    auto got = ctx.images.get_any(req.image_id);
    if (!got) {
      if (got.error().code() == Code::kNotFound) {
        return fail(Code::kInvalidArgument,
                    "service server " + req.id + ": image " + req.image_id + " does not exist");
      }
      return fail(got.error());
    }
    if (got->status != "active") {
      return fail(Code::kFailedPrecondition, "service server " + req.id + ": image " +
                                                 req.image_id + " is " + got->status +
                                                 ", not active");
    }
    image = std::move(*got);
  }

  return servers::write_retrying(ctx.store, [&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows existing,
        tx.query("SELECT deleted FROM compute_servers WHERE id = ?", {req.id}));
    if (!existing.empty()) {
      if (existing[0].integer(0) != 0) {
        return fail(Code::kFailedPrecondition,
                    "service server id " + req.id + " belongs to a deleted server");
      }
      return ok();  // a re-issued create
    }
    const int64_t now = servers::now_ms(ctx.clock);
    scheduler::Request sreq;
    sreq.per_instance = {req.vcpus, req.ram_mb, req.disk_gb};
    sreq.count = 1;
    sreq.availability_zone = req.availability_zone;
    sreq.driver = req.driver;
    sreq.ignore_hosts = req.ignore_hosts;
    CONCORD_ASSIGN_OR_RETURN(
        std::vector<scheduler::HostState> hosts,
        load_hosts(tx, now, static_cast<int64_t>(ctx.options.down_after.count())));
    std::string placed, why;
    auto placement = scheduler::place(hosts, sreq, scheduler_options(ctx.options));
    if (placement) {
      if (!placement->hosts.empty()) {
        placed = placement->hosts.front();
      } else if (placement->shortfall) {
        why = placement->shortfall->reason;
      }
    } else if (placement.error().code() == Code::kResourceExhausted) {
      why = placement.error().message();
    } else {
      return fail(Code::kInternal, "scheduler: " + placement.error().to_string());
    }

    if (placed.empty() && !req.record_unplaced) {
      return fail(Code::kResourceExhausted,
                  std::string(kNoValidHost) + (why.empty() ? "" : " (" + why + ")"));
    }
    const FlavorSnapshot fl = shown_flavor(req.flavor, req.vcpus, req.ram_mb, req.disk_gb);
    const std::string stamp = stored_time(now);
    ServerRow r;
    r.id = req.id;
    r.project_id = req.project_id;
    r.user_id = req.user_id;
    r.name = req.name;
    r.image_id = image.id;
    r.flavor_id = fl.id;
    r.flavor_json = to_json(fl);
    r.vcpus = fl.vcpus;
    r.ram_mb = fl.ram_mb;
    r.disk_gb = fl.disk_gb;
    r.config_drive = false;
    r.hostname = "service-" + req.id;
    r.reservation_id = "r-service";
    r.network = "none";
    r.driver = req.driver;
    r.desired_power = "running";
    r.created_at = stamp;
    r.updated_at = stamp;
    r.created_ms = now;
    if (placed.empty()) {
      Json f = parse_json(make_fault_json(500, kNoValidHost, now)).value_or(Json::object());
      if (!why.empty()) f["details"] = why;
      r.vm_state = std::string(vm::kError);
      r.fault_json = dump_json(f);
      if (!req.availability_zone.empty()) r.availability_zone = req.availability_zone;
    } else {
      r.vm_state = std::string(vm::kBuilding);
      r.task_state = std::string(task::kSpawning);
      r.host = placed;
      for (const scheduler::HostState& h : hosts) {
        if (h.name == placed) r.availability_zone = h.availability_zone;
      }
      r.op_deadline_ms = now + static_cast<int64_t>(ctx.options.build_timeout.count());
    }
    CONCORD_RETURN_IF_ERROR(insert_server(tx, r));
    if (r.host) CONCORD_RETURN_IF_ERROR(claim(tx, r.id, "instance", *r.host, sreq.per_instance));
    return servers::replace_metadata(tx, r.id, req.metadata);
  });
}

Status delete_service_server(ComputeContext& ctx, std::string_view id) {
  if (!safe_server_id(id)) return ok();  // no such server can exist
  return servers::write_retrying(ctx.store, [&](store::Tx& tx) -> Status {
    const int64_t now = servers::now_ms(ctx.clock);
    auto loaded = load_server(tx, id);
    if (!loaded) {
      if (loaded.error().code() == Code::kNotFound) return ok();
      return fail(loaded.error());
    }
    ServerRow row = std::move(*loaded);
    if (row.task_state && *row.task_state == task::kDeleting) return ok();
    // Whether it was a local delete matters only to the Nova API's instance actions.
    if (auto deleted = servers::delete_server_row(tx, ctx, row, now); !deleted) {
      return fail(deleted.error());
    }
    return ok();
  });
}

namespace {

// Loads a server a change may apply to: one being deleted counts as gone, since its agent is
// tearing it down and would never apply the change.
Result<ServerRow> load_live(store::Tx& tx, std::string_view id) {
  if (!safe_server_id(id)) {
    return fail(Code::kNotFound, "service server " + sanitize_utf8(id) + " does not exist");
  }
  auto loaded = load_server(tx, id);
  if (!loaded) {
    if (loaded.error().code() == Code::kNotFound) {
      return fail(Code::kNotFound, "service server " + std::string(id) + " does not exist");
    }
    return fail(loaded.error());
  }
  if (loaded->task_state && *loaded->task_state == task::kDeleting) {
    return fail(Code::kNotFound, "service server " + std::string(id) + " is being deleted");
  }
  return std::move(*loaded);
}

Status check_idle(const ServerRow& row, std::string_view action) {
  if (!row.host) {
    return fail(Code::kFailedPrecondition, "cannot " + std::string(action) + " service server " +
                                               row.id + ": it was never placed on a host");
  }
  if (row.task_state) {
    return fail(Code::kFailedPrecondition, "cannot " + std::string(action) + " service server " +
                                               row.id + " while its task is " + *row.task_state);
  }
  return ok();
}

}  // namespace

Status set_service_server_metadata(ComputeContext& ctx, std::string_view id,
                                   const std::map<std::string, std::string>& metadata) {
  return servers::write_retrying(ctx.store, [&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ServerRow row, load_live(tx, id));
    CONCORD_RETURN_IF_ERROR(servers::replace_metadata(tx, row.id, metadata));
    // The metadata is part of the spec: a new generation and revision make the agent's digest
    // differ, so its next poll carries the new spec.
    row.spec_generation += 1;
    row.updated_at = stored_time(servers::now_ms(ctx.clock));
    return update_server(tx, row);
  });
}

Status reboot_service_server(ComputeContext& ctx, std::string_view id) {
  return servers::write_retrying(ctx.store, [&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ServerRow row, load_live(tx, id));
    CONCORD_RETURN_IF_ERROR(check_idle(row, "reboot"));
    const int64_t now = servers::now_ms(ctx.clock);
    const bool hard = row.vm_state != vm::kActive;
    row.task_state = std::string(hard ? task::kRebootingHard : task::kRebooting);
    row.reboot_seq += 1;
    row.reboot_hard = hard;
    row.desired_power = "running";
    row.spec_generation += 1;
    row.op_deadline_ms = now + static_cast<int64_t>(ctx.options.action_timeout.count());
    row.updated_at = stored_time(now);
    return update_server(tx, row);
  });
}

Status resize_service_server(ComputeContext& ctx, std::string_view id, int64_t vcpus,
                             int64_t ram_mb, int64_t disk_gb,
                             const std::optional<FlavorSnapshot>& flavor) {
  if (vcpus < 1 || ram_mb < 16 || disk_gb < 0) {
    return fail(Code::kInvalidArgument, "service server " + std::string(id) +
                                            ": size too small (vcpus " + std::to_string(vcpus) +
                                            ", ram " + std::to_string(ram_mb) + " MB)");
  }
  return servers::write_retrying(ctx.store, [&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ServerRow row, load_live(tx, id));
    CONCORD_RETURN_IF_ERROR(check_idle(row, "resize"));
    if (row.vcpus == vcpus && row.ram_mb == ram_mb && row.disk_gb == disk_gb &&
        (!flavor || flavor->id == row.flavor_id)) {
      return ok();
    }
    const int64_t now = servers::now_ms(ctx.clock);
    // The new size must fit on the same host beside everything else there: drop this server's
    // own claim first so it is not counted twice (the transaction undoes it on failure).
    CONCORD_RETURN_IF_ERROR(release(tx, row.id));
    CONCORD_ASSIGN_OR_RETURN(
        std::vector<scheduler::HostState> hosts,
        load_hosts(tx, now, static_cast<int64_t>(ctx.options.down_after.count())));
    std::vector<scheduler::HostState> mine;
    for (const scheduler::HostState& h : hosts) {
      if (h.name == *row.host) mine.push_back(h);
    }
    if (mine.empty() || !mine[0].up) {
      return fail(Code::kFailedPrecondition, "cannot resize service server " + row.id +
                                                 ": its host " + *row.host + " is not available");
    }
    scheduler::Request sreq;
    sreq.per_instance = {vcpus, ram_mb, disk_gb};
    sreq.driver = row.driver;
    sreq.force_host = *row.host;
    auto placed = scheduler::place(mine, sreq, scheduler_options(ctx.options));
    if (!placed || placed->hosts.empty()) {
      return fail(Code::kFailedPrecondition,
                  "cannot resize service server " + row.id + ": host " + *row.host +
                      " has no room for " + std::to_string(vcpus) + " vCPUs, " +
                      std::to_string(ram_mb) + " MB RAM, " + std::to_string(disk_gb) + " GB disk");
    }
    CONCORD_RETURN_IF_ERROR(claim(tx, row.id, "instance", *row.host, sreq.per_instance));
    // Time so far is billed at the old size.
    CONCORD_RETURN_IF_ERROR(meter_instance(tx, row, now, ctx.options.region));
    const FlavorSnapshot fl = shown_flavor(flavor, vcpus, ram_mb, disk_gb);
    row.flavor_id = fl.id;
    row.flavor_json = to_json(fl);
    row.vcpus = vcpus;
    row.ram_mb = ram_mb;
    row.disk_gb = disk_gb;
    row.spec_generation += 1;
    row.updated_at = stored_time(now);
    return update_server(tx, row);
  });
}

Result<std::vector<ServiceServer>> list_service_servers(ComputeContext& ctx,
                                                        std::string_view project_id) {
  std::vector<ServiceServer> out;
  CONCORD_RETURN_IF_ERROR(ctx.store.read([&](store::Tx& tx) -> Status {
    out.clear();
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query(std::string("SELECT ") + kServerColumns +
                     " FROM compute_servers WHERE project_id = ? AND deleted = 0 ORDER BY id",
                 {std::string(project_id)}));
    std::vector<ServerRow> servers_rows;
    servers_rows.reserve(rows.size());
    for (const store::Row& row : rows) servers_rows.push_back(server_from_row(row));
    const int64_t now = servers::now_ms(ctx.clock);
    CONCORD_ASSIGN_OR_RETURN(
        auto extras,
        servers::load_extras(tx, std::span<const ServerRow>(servers_rows),
                             servers::ExtrasWanted{.metadata = true, .host_status = true}, now,
                             static_cast<int64_t>(ctx.options.down_after.count())));
    std::map<std::string, std::string> details;
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows detail_rows,
        tx.query("SELECT d.server_id, d.detail FROM compute_server_details d JOIN "
                 "compute_servers s ON s.id = d.server_id WHERE s.project_id = ? AND "
                 "s.deleted = 0",
                 {std::string(project_id)}));
    for (const store::Row& row : detail_rows) details.emplace(row.text(0), row.text(1));
    for (const ServerRow& s : servers_rows) {
      ServiceServer v;
      v.id = s.id;
      v.project_id = s.project_id;
      v.name = s.name;
      v.host = s.host.value_or("");
      v.status = std::string(s.status());
      v.vm_state = s.vm_state;
      v.task_state = s.task_state;
      v.power_state = s.power_state;
      v.addresses_json = s.addresses_json;
      v.fault = fault_text(s.fault_json);
      v.vcpus = s.vcpus;
      v.ram_mb = s.ram_mb;
      v.disk_gb = s.disk_gb;
      v.converged = s.observed_generation >= s.spec_generation;
      if (auto d = details.find(s.id); d != details.end()) v.detail = d->second;
      if (auto it = extras.find(s.id); it != extras.end()) {
        v.metadata = it->second.metadata;
        v.host_status = it->second.host_status;
      }
      out.push_back(std::move(v));
    }
    return ok();
  }));
  return out;
}

}  // namespace concord::compute
