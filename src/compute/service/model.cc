#include "compute/service/model.h"

#include <nlohmann/json.hpp>
#include <span>

#include "base/json.h"

namespace concord::compute {

std::string_view status_of(std::string_view vm_state, std::optional<std::string_view> task) {
  auto task_is = [&](std::span<const std::string_view> names) {
    if (!task) return false;
    for (std::string_view n : names) {
      if (*task == n) return true;
    }
    return false;
  };
  static constexpr std::string_view kResizing[] = {"resize_prep", "resize_migrating",
                                                   "resize_migrated", "resize_finish"};
  static constexpr std::string_view kRebuilding[] = {"rebuilding", "rebuild_block_device_mapping",
                                                     "rebuild_spawning"};
  static constexpr std::string_view kReboot[] = {"rebooting", "reboot_pending", "reboot_started"};
  static constexpr std::string_view kHardReboot[] = {"rebooting_hard", "reboot_pending_hard",
                                                     "reboot_started_hard"};
  static constexpr std::string_view kPassword[] = {"updating_password"};
  static constexpr std::string_view kMigrating[] = {"migrating"};
  static constexpr std::string_view kReverting[] = {"resize_reverting"};
  if (vm_state == vm::kBuilding) return "BUILD";
  if (vm_state == vm::kActive) {
    if (task_is(kReboot)) return "REBOOT";
    if (task_is(kHardReboot)) return "HARD_REBOOT";
    if (task_is(kPassword)) return "PASSWORD";
    if (task_is(kRebuilding)) return "REBUILD";
    if (task_is(kMigrating)) return "MIGRATING";
    if (task_is(kResizing)) return "RESIZE";
    return "ACTIVE";
  }
  if (vm_state == vm::kStopped) {
    if (task_is(kResizing)) return "RESIZE";
    if (task_is(kRebuilding)) return "REBUILD";
    return "SHUTOFF";
  }
  if (vm_state == vm::kResized) {
    if (task_is(kReverting)) return "REVERT_RESIZE";
    return "VERIFY_RESIZE";
  }
  if (vm_state == vm::kPaused) return task_is(kMigrating) ? "MIGRATING" : "PAUSED";
  if (vm_state == vm::kSuspended) return "SUSPENDED";
  if (vm_state == "rescued") return "RESCUE";
  if (vm_state == vm::kError) return task_is(kRebuilding) ? "REBUILD" : "ERROR";
  if (vm_state == vm::kDeleted) return "DELETED";
  if (vm_state == "soft-delete") return "SOFT_DELETED";
  if (vm_state == "shelved") return "SHELVED";
  if (vm_state == "shelved_offloaded") return "SHELVED_OFFLOADED";
  return "UNKNOWN";
}

std::string to_json(const FlavorSnapshot& f) {
  Json specs = Json::object();
  for (const auto& [k, v] : f.extra_specs) specs[k] = v;
  Json j = {{"id", f.id},           {"name", f.name},       {"vcpus", f.vcpus},
            {"ram_mb", f.ram_mb},   {"disk_gb", f.disk_gb}, {"ephemeral_gb", f.ephemeral_gb},
            {"swap_mb", f.swap_mb}, {"extra_specs", specs}};
  return dump_json(j);
}

Result<FlavorSnapshot> flavor_from_json(std::string_view text) {
  CONCORD_ASSIGN_OR_RETURN(Json j, parse_json(text));
  if (!j.is_object()) return fail(Code::kInternal, "flavor snapshot is not an object");
  FlavorSnapshot f;
  try {
    f.id = j.at("id").get<std::string>();
    f.name = j.at("name").get<std::string>();
    f.vcpus = j.at("vcpus").get<int64_t>();
    f.ram_mb = j.at("ram_mb").get<int64_t>();
    f.disk_gb = j.at("disk_gb").get<int64_t>();
    f.ephemeral_gb = j.value("ephemeral_gb", int64_t{0});
    f.swap_mb = j.value("swap_mb", int64_t{0});
    if (auto it = j.find("extra_specs"); it != j.end() && it->is_object()) {
      for (auto& [k, v] : it->items()) {
        if (v.is_string()) f.extra_specs.emplace_back(k, v.get<std::string>());
      }
    }
  } catch (const Json::exception& e) {
    return fail(Code::kInternal, std::string("bad flavor snapshot: ") + e.what());
  }
  return f;
}

// The column order is the contract between kServerColumns, server_from_row and the writers.
const char* const kServerColumns =
    "id, project_id, user_id, name, description, image_id, flavor_id, flavor_json, "
    "old_flavor_json, vcpus, ram_mb, disk_gb, key_name, key_data, user_data, availability_zone, "
    "access_ipv4, access_ipv6, config_drive, locked, locked_reason, hostname, reservation_id, "
    "launch_index, server_group_id, disk_config, vm_state, task_state, power_state, fault_json, "
    "host, network, driver, addresses_json, desired_power, reboot_seq, reboot_hard, rebuild_seq, "
    "spec_generation, observed_generation, observed_reboot_seq, observed_rebuild_seq, "
    "op_deadline_ms, launched_at, terminated_at, created_at, updated_at, created_ms, deleted, "
    "deleted_at, last_metered_ms, revision";

namespace {

std::vector<store::Value> server_values(const ServerRow& s) {
  auto opt = [](const std::optional<std::string>& v) -> store::Value {
    return v ? store::Value(*v) : store::null();
  };
  return {s.id,
          s.project_id,
          s.user_id,
          s.name,
          opt(s.description),
          s.image_id,
          s.flavor_id,
          s.flavor_json,
          opt(s.old_flavor_json),
          s.vcpus,
          s.ram_mb,
          s.disk_gb,
          opt(s.key_name),
          opt(s.key_data),
          opt(s.user_data),
          opt(s.availability_zone),
          s.access_ipv4,
          s.access_ipv6,
          int64_t{s.config_drive},
          int64_t{s.locked},
          opt(s.locked_reason),
          s.hostname,
          s.reservation_id,
          s.launch_index,
          opt(s.server_group_id),
          s.disk_config,
          s.vm_state,
          opt(s.task_state),
          s.power_state,
          opt(s.fault_json),
          opt(s.host),
          s.network,
          s.driver,
          s.addresses_json,
          s.desired_power,
          s.reboot_seq,
          int64_t{s.reboot_hard},
          s.rebuild_seq,
          s.spec_generation,
          s.observed_generation,
          s.observed_reboot_seq,
          s.observed_rebuild_seq,
          s.op_deadline_ms,
          opt(s.launched_at),
          opt(s.terminated_at),
          s.created_at,
          s.updated_at,
          s.created_ms,
          int64_t{s.deleted},
          opt(s.deleted_at),
          s.last_metered_ms,
          s.revision};
}

constexpr size_t kServerColumnCount = 52;

}  // namespace

ServerRow server_from_row(const store::Row& r) {
  ServerRow s;
  size_t i = 0;
  auto text = [&] { return r.text(i++); };
  auto opt = [&] { return r.opt_text(i++); };
  auto num = [&] { return r.integer(i++); };
  s.id = text();
  s.project_id = text();
  s.user_id = text();
  s.name = text();
  s.description = opt();
  s.image_id = text();
  s.flavor_id = text();
  s.flavor_json = text();
  s.old_flavor_json = opt();
  s.vcpus = num();
  s.ram_mb = num();
  s.disk_gb = num();
  s.key_name = opt();
  s.key_data = opt();
  s.user_data = opt();
  s.availability_zone = opt();
  s.access_ipv4 = text();
  s.access_ipv6 = text();
  s.config_drive = num() != 0;
  s.locked = num() != 0;
  s.locked_reason = opt();
  s.hostname = text();
  s.reservation_id = text();
  s.launch_index = num();
  s.server_group_id = opt();
  s.disk_config = text();
  s.vm_state = text();
  s.task_state = opt();
  s.power_state = num();
  s.fault_json = opt();
  s.host = opt();
  s.network = text();
  s.driver = text();
  s.addresses_json = text();
  s.desired_power = text();
  s.reboot_seq = num();
  s.reboot_hard = num() != 0;
  s.rebuild_seq = num();
  s.spec_generation = num();
  s.observed_generation = num();
  s.observed_reboot_seq = num();
  s.observed_rebuild_seq = num();
  s.op_deadline_ms = num();
  s.launched_at = opt();
  s.terminated_at = opt();
  s.created_at = text();
  s.updated_at = text();
  s.created_ms = num();
  s.deleted = num() != 0;
  s.deleted_at = opt();
  s.last_metered_ms = num();
  s.revision = num();
  return s;
}

Result<ServerRow> load_server(store::Tx& tx, std::string_view id, bool include_deleted) {
  std::string sql = std::string("SELECT ") + kServerColumns + " FROM compute_servers WHERE id = ?";
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query(sql, {std::string(id)}));
  if (rows.empty())
    return fail(Code::kNotFound, "Instance " + std::string(id) + " could not be found.");
  ServerRow s = server_from_row(rows[0]);
  if (s.deleted && !include_deleted)
    return fail(Code::kNotFound, "Instance " + std::string(id) + " could not be found.");
  return s;
}

Status insert_server(store::Tx& tx, const ServerRow& s) {
  std::string placeholders;
  for (size_t i = 0; i < kServerColumnCount; ++i) placeholders += i ? ", ?" : "?";
  std::string sql = std::string("INSERT INTO compute_servers (") + kServerColumns + ") VALUES (" +
                    placeholders + ")";
  std::vector<store::Value> values = server_values(s);
  CONCORD_ASSIGN_OR_RETURN(int64_t n, tx.exec(sql, values));
  (void)n;
  return tx.record_change(
      {0, std::string(kServerKind), s.id, s.project_id, "create", s.revision, ""});
}

Status update_server(store::Tx& tx, ServerRow& s) {
  static const std::string sql = [] {
    std::string cols = kServerColumns;
    std::string set;
    size_t start = 0;
    int index = 0;
    while (start < cols.size()) {
      size_t comma = cols.find(',', start);
      std::string name =
          cols.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      while (!name.empty() && name.front() == ' ') name.erase(0, 1);
      // id (first) is the key; revision (last) is bumped below.
      if (index > 0 && name != "revision") set += (set.empty() ? "" : ", ") + name + " = ?";
      ++index;
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return "UPDATE compute_servers SET " + set +
           ", revision = revision + 1 WHERE id = ? AND revision = ?";
  }();
  std::vector<store::Value> all = server_values(s);
  // Drop id (first) and revision (last), then append the key and the expected revision.
  std::vector<store::Value> values(all.begin() + 1, all.end() - 1);
  values.push_back(s.id);
  values.push_back(s.revision);
  CONCORD_ASSIGN_OR_RETURN(int64_t n, tx.exec(sql, values));
  if (n == 0) return store::check_revision(tx, "compute_servers", s.id);
  s.revision += 1;
  return tx.record_change(
      {0, std::string(kServerKind), s.id, s.project_id, "update", s.revision, ""});
}

}  // namespace concord::compute
