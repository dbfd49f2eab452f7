// POST /v2.1/servers/{id}/action: each action validates its body, checks Nova's allowed
// states (409 "Cannot '<action>' instance <id> while it is in vm_state <x>") and the lock, then
// in one write transaction sets the task and the desired state for the agent (spec_generation
// +1, op_deadline_ms) per docs/design/compute.md, and records the instance action with the
// request id. The report handler (report.cc) finishes the task when the agent has converged.
//
// Decisions:
//   * resize stays on the server's host (no migration): the new flavor is claimed there next
//     to the old one until confirm/revert; no room, or the host down, is 409;
//   * createImage is refused with 403 (no snapshot support yet);
//   * forceDelete/restore answer 409: soft delete is off, so no server is ever SOFT_DELETED;
//   * every resize leaves a compute_migrations row (type "resize", source = destination host)
//     so os-migrations is real. Its stored status is what the API knows ("pre-migrating",
//     "reverting", "confirmed"); the report handler does not touch migration rows, so
//     os-migrations derives "migrating"/"finished"/"reverted"/"error" from the server's state;
//   * os-resetState (admin) sets vm_state active or error and clears the task, as Nova;
//   * migrate and os-migrateLive (admin) validate as Nova and then answer 400 "No valid host was
//     found": with one host there is none, and with several Concord does not move a server
//     between hosts (that needs the agents to hand the workload and its disk over, which the
//     agent protocol has no step for), so no migration is ever started and none is faked;
//   * Nova actions Concord does not implement (pause, suspend, shelve, rescue, ...) answer 501
//     rather than pretending.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "base/random.h"
#include "compute/scheduler/scheduler.h"
#include "compute/service/api_servers_internal.h"
#include "compute/service/flavors.h"
#include "compute/service/metering.h"
#include "compute/service/placement.h"
#include "compute/service/quota.h"
#include "compute/service/report.h"

namespace concord::compute::servers {

namespace {

using Call = NovaApi::Call;

std::unexpected<Error> bad(std::string message) {
  return fail(Code::kInvalidArgument, std::move(message));
}

bool in(std::string_view v, std::initializer_list<std::string_view> set) {
  return std::find(set.begin(), set.end(), v) != set.end();
}

// The state check Nova's @check_instance_state does: vm_state first, then task_state.
Status check_state(std::string_view action, const ServerRow& s,
                   std::initializer_list<std::string_view> vm_states,
                   std::initializer_list<std::string_view> tasks = {""}) {
  if (!in(s.vm_state, vm_states)) return fail(invalid_state(action, s));
  if (!in(s.task_state.value_or(""), tasks)) return fail(invalid_state(action, s, true));
  return ok();
}

struct ActionContext {
  NovaApi& api;
  Call& call;
  const Json& arg;  // the action's value
  store::Tx& tx;
  ServerRow& row;
  int64_t now;
};

int64_t deadline(const ActionContext& a) {
  return a.now + static_cast<int64_t>(a.api.ctx().options.action_timeout.count());
}

// Writes the row with a new desired state and records the action.
Status commit(ActionContext& a, std::string_view action, std::string_view event,
              std::string_view result = {}) {
  a.row.updated_at = stored_time(a.now);
  CONCORD_RETURN_IF_ERROR(update_server(a.tx, a.row));
  return record_action(a.tx, a.call, a.row, action, event, a.now, result);
}

Status do_stop(ActionContext& a) {
  CONCORD_RETURN_IF_ERROR(check_not_locked(a.call, a.row));
  CONCORD_RETURN_IF_ERROR(check_state("stop", a.row, {vm::kActive, vm::kError, "rescued"}));
  if (!a.row.host) return fail(invalid_state("stop", a.row));
  a.row.task_state = std::string(task::kPoweringOff);
  a.row.desired_power = "stopped";
  a.row.spec_generation += 1;
  a.row.op_deadline_ms = deadline(a);
  return commit(a, "stop", "compute_stop_instance");
}

Status do_start(ActionContext& a) {
  CONCORD_RETURN_IF_ERROR(check_not_locked(a.call, a.row));
  CONCORD_RETURN_IF_ERROR(check_state("start", a.row, {vm::kStopped}));
  a.row.task_state = std::string(task::kPoweringOn);
  a.row.desired_power = "running";
  a.row.spec_generation += 1;
  a.row.op_deadline_ms = deadline(a);
  return commit(a, "start", "compute_start_instance");
}

Status do_reboot(ActionContext& a) {
  if (!a.arg.is_object() || !a.arg.contains("type") || !a.arg["type"].is_string())
    return bad("Invalid input for field/attribute reboot. 'type' is a required property");
  std::string type = a.arg["type"].get<std::string>();
  for (char& c : type) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (type != "SOFT" && type != "HARD")
    return bad(bad_field("type", a.arg["type"],
                         "is not one of ['HARD', 'Hard', 'hard', "
                         "'SOFT', 'Soft', 'soft']"));
  for (auto& [k, v] : a.arg.items()) {
    (void)v;
    if (k != "type")
      return bad(
          "Invalid input for field/attribute reboot. Additional properties are not "
          "allowed ('" +
          sanitize_utf8(k) + "' was unexpected)");
  }
  CONCORD_RETURN_IF_ERROR(check_not_locked(a.call, a.row));
  const bool hard = type == "HARD";
  if (hard) {
    CONCORD_RETURN_IF_ERROR(check_state(
        "reboot", a.row, {vm::kActive, vm::kStopped, vm::kPaused, vm::kSuspended, vm::kError},
        {"", task::kRebooting, task::kRebootingHard}));
    if (a.row.task_state && *a.row.task_state == task::kRebootingHard)
      return fail(invalid_state("reboot", a.row, true));
  } else {
    CONCORD_RETURN_IF_ERROR(check_state("reboot", a.row, {vm::kActive}));
  }
  if (!a.row.host) return fail(invalid_state("reboot", a.row));
  a.row.task_state = std::string(hard ? task::kRebootingHard : task::kRebooting);
  a.row.reboot_seq += 1;
  a.row.reboot_hard = hard;
  a.row.desired_power = "running";
  a.row.spec_generation += 1;
  a.row.op_deadline_ms = deadline(a);
  return commit(a, "reboot", "compute_reboot_instance");
}

// The resize's migration record (Nova's object as os-migrations shows it). Ids are Nova's
// integers: one more than the largest, inside the caller's write transaction.
Status record_resize_migration(ActionContext& a, const std::string& old_flavor,
                               const std::string& new_flavor) {
  CONCORD_RETURN_IF_ERROR(a.tx.serialize());  // MAX + 1 stays unique until the commit
  CONCORD_ASSIGN_OR_RETURN(store::Rows max,
                           a.tx.query("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM "
                                      "compute_migrations",
                                      {}));
  const int64_t id = max.empty() ? 1 : max[0].integer(0) + 1;
  const std::string t = stored_time(a.now);
  const store::Value host = a.row.host ? store::Value(*a.row.host) : store::null();
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n,
      a.tx.exec("INSERT INTO compute_migrations (id, uuid, server_id, project_id, user_id, "
                "migration_type, status, source_compute, dest_compute, old_flavor_id, "
                "new_flavor_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'resize', "
                "'pre-migrating', ?, ?, ?, ?, ?, ?)",
                {id, new_uuid(), a.row.id, a.row.project_id, a.call.caller.user_id, host, host,
                 old_flavor, new_flavor, t, t}));
  (void)n;
  return ok();
}

// Moves the server's open resize migration (stored "pre-migrating") to `status`.
Status set_resize_migration_status(ActionContext& a, std::string_view status) {
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n, a.tx.exec("UPDATE compute_migrations SET status = ?, updated_at = ? WHERE "
                           "server_id = ? AND migration_type = 'resize' AND status = "
                           "'pre-migrating'",
                           {std::string(status), stored_time(a.now), a.row.id}));
  (void)n;
  return ok();
}

Status do_resize(ActionContext& a) {
  ComputeContext& ctx = a.api.ctx();
  if (!a.arg.is_object()) return bad(bad_field("resize", a.arg, "is not of type 'object'"));
  for (auto& [k, v] : a.arg.items()) {
    (void)v;
    if (k != "flavorRef" && k != "OS-DCF:diskConfig")
      return bad(
          "Invalid input for field/attribute resize. Additional properties are not "
          "allowed ('" +
          sanitize_utf8(k) + "' was unexpected)");
  }
  auto f = a.arg.find("flavorRef");
  if (f == a.arg.end())
    return bad("Invalid input for field/attribute resize. 'flavorRef' is a required property");
  std::string ref;
  if (f->is_number_integer())
    ref = std::to_string(f->get<int64_t>());
  else if (f->is_string() && !f->get<std::string>().empty())
    ref = ref_id(f->get<std::string>());
  else
    return bad("Invalid flavorRef provided.");
  if (auto d = a.arg.find("OS-DCF:diskConfig"); d != a.arg.end()) {
    if (!d->is_string() || (*d != "AUTO" && *d != "MANUAL"))
      return bad(bad_field("OS-DCF:diskConfig", *d, "is not one of ['AUTO', 'MANUAL']"));
  }
  CONCORD_RETURN_IF_ERROR(check_not_locked(a.call, a.row));
  CONCORD_RETURN_IF_ERROR(check_state("resize", a.row, {vm::kActive, vm::kStopped}));
  auto flavor = load_flavor(a.tx, ref, a.row.project_id, a.call.caller.is_admin());
  if (!flavor) {
    if (flavor.error().code() == Code::kNotFound) return bad("Unable to locate requested flavor.");
    return fail(flavor.error());
  }
  CONCORD_ASSIGN_OR_RETURN(FlavorSnapshot old, flavor_from_json(a.row.flavor_json));
  if (flavor->id == a.row.flavor_id) return bad("When resizing, instances must change flavor!");
  if (flavor->disk_gb < old.disk_gb) return bad("Resize error: Unable to resize disk down.");
  CONCORD_RETURN_IF_ERROR(check_resize_quota(a.tx, a.row.project_id,
                                             std::max<int64_t>(0, flavor->vcpus - old.vcpus),
                                             std::max<int64_t>(0, flavor->ram_mb - old.ram_mb)));
  if (!a.row.host) return fail(invalid_state("resize", a.row));
  // Same-host resize: the new flavor must fit next to everything already claimed there.
  CONCORD_ASSIGN_OR_RETURN(
      std::vector<scheduler::HostState> hosts,
      load_hosts(a.tx, a.now, static_cast<int64_t>(ctx.options.down_after.count())));
  std::vector<scheduler::HostState> mine;
  for (const scheduler::HostState& h : hosts)
    if (h.name == *a.row.host) mine.push_back(h);
  if (mine.empty() || !mine[0].up)
    return fail(Code::kFailedPrecondition,
                "Cannot 'resize' instance " + a.row.id + ": its host is not available.");
  scheduler::Request req;
  const scheduler::Resources want{
      flavor->vcpus, flavor->ram_mb,
      flavor->disk_gb + flavor->ephemeral_gb + (flavor->swap_mb + 1023) / 1024};
  req.per_instance = want;
  req.driver = a.row.driver;
  req.force_host = *a.row.host;
  auto placed = scheduler::place(mine, req, scheduler_options(ctx.options));
  if (!placed || placed->hosts.empty()) {
    return fail(Code::kFailedPrecondition, "No valid host was found. Host " + *a.row.host +
                                               " has no room for flavor " + flavor->name +
                                               " (Concord resizes on the same host).");
  }
  CONCORD_RETURN_IF_ERROR(claim(a.tx, a.row.id, "resize", *a.row.host, want));
  // Time so far is billed under the old flavor.
  CONCORD_RETURN_IF_ERROR(meter_instance(a.tx, a.row, a.now, ctx.options.region));
  CONCORD_RETURN_IF_ERROR(record_resize_migration(a, old.id, flavor->id));
  a.row.old_flavor_json = a.row.flavor_json;
  a.row.flavor_json = to_json(*flavor);
  a.row.flavor_id = flavor->id;
  a.row.vcpus = flavor->vcpus;
  a.row.ram_mb = flavor->ram_mb;
  a.row.disk_gb = flavor->disk_gb;
  if (auto d = a.arg.find("OS-DCF:diskConfig"); d != a.arg.end())
    a.row.disk_config = d->get<std::string>();
  a.row.task_state = std::string(task::kResizePrep);
  a.row.spec_generation += 1;
  a.row.op_deadline_ms = deadline(a);
  return commit(a, "resize", "compute_finish_resize");
}

Status do_confirm_resize(ActionContext& a) {
  CONCORD_RETURN_IF_ERROR(check_not_locked(a.call, a.row));
  CONCORD_RETURN_IF_ERROR(check_state("confirmResize", a.row, {vm::kResized}));
  CONCORD_RETURN_IF_ERROR(release(a.tx, a.row.id, "instance"));
  CONCORD_ASSIGN_OR_RETURN(int64_t n,
                           a.tx.exec("UPDATE compute_allocations SET purpose = 'instance' WHERE "
                                     "server_id = ? AND purpose = 'resize'",
                                     {a.row.id}));
  (void)n;
  CONCORD_RETURN_IF_ERROR(set_resize_migration_status(a, "confirmed"));
  // As Nova: a server resized while stopped is stopped again once confirmed.
  a.row.vm_state = std::string(a.row.desired_power == "stopped" ? vm::kStopped : vm::kActive);
  a.row.old_flavor_json.reset();
  return commit(a, "confirmResize", "compute_confirm_resize", "Success");
}

Status do_revert_resize(ActionContext& a) {
  ComputeContext& ctx = a.api.ctx();
  CONCORD_RETURN_IF_ERROR(check_not_locked(a.call, a.row));
  CONCORD_RETURN_IF_ERROR(check_state("revertResize", a.row, {vm::kResized}));
  if (!a.row.old_flavor_json) return fail(invalid_state("revertResize", a.row));
  CONCORD_ASSIGN_OR_RETURN(FlavorSnapshot old, flavor_from_json(*a.row.old_flavor_json));
  CONCORD_RETURN_IF_ERROR(meter_instance(a.tx, a.row, a.now, ctx.options.region));
  CONCORD_RETURN_IF_ERROR(set_resize_migration_status(a, "reverting"));
  a.row.flavor_json = *a.row.old_flavor_json;
  a.row.old_flavor_json.reset();
  a.row.flavor_id = old.id;
  a.row.vcpus = old.vcpus;
  a.row.ram_mb = old.ram_mb;
  a.row.disk_gb = old.disk_gb;
  a.row.task_state = std::string(task::kResizeReverting);
  a.row.spec_generation += 1;
  a.row.op_deadline_ms = deadline(a);
  return commit(a, "revertResize", "compute_finish_revert_resize");
}

struct RebuildResult {
  std::string admin_pass;
};

Status do_rebuild(ActionContext& a, RebuildResult& out) {
  ComputeContext& ctx = a.api.ctx();
  const ApiVersion& v = a.call.version;
  if (!a.arg.is_object()) return bad(bad_field("rebuild", a.arg, "is not of type 'object'"));
  for (auto& [k, val] : a.arg.items()) {
    (void)val;
    bool known = k == "imageRef" || k == "name" || k == "adminPass" || k == "metadata" ||
                 k == "accessIPv4" || k == "accessIPv6" || k == "OS-DCF:diskConfig" ||
                 k == "preserve_ephemeral" || (k == "personality" && !v.at_least(57)) ||
                 (k == "description" && v.at_least(19)) || (k == "key_name" && v.at_least(54)) ||
                 (k == "user_data" && v.at_least(57)) ||
                 (k == "trusted_image_certificates" && v.at_least(63));
    if (!known)
      return bad(
          "Invalid input for field/attribute rebuild. Additional properties are not "
          "allowed ('" +
          sanitize_utf8(k) + "' was unexpected)");
  }
  auto img = a.arg.find("imageRef");
  if (img == a.arg.end() || !img->is_string())
    return bad("Invalid input for field/attribute rebuild. 'imageRef' is a required property");
  std::string image_id = ref_id(img->get<std::string>());
  if (!is_uuid(image_id)) return bad("Invalid imageRef provided.");
  if (auto n = a.arg.find("name"); n != a.arg.end())
    CONCORD_RETURN_IF_ERROR(check_name(*n, "name"));
  std::optional<std::string> ip4, ip6;
  if (auto x = a.arg.find("accessIPv4"); x != a.arg.end() && !x->is_null()) {
    CONCORD_ASSIGN_OR_RETURN(ip4, canonical_ip(*x, false, "accessIPv4"));
  }
  if (auto x = a.arg.find("accessIPv6"); x != a.arg.end() && !x->is_null()) {
    CONCORD_ASSIGN_OR_RETURN(ip6, canonical_ip(*x, true, "accessIPv6"));
  }
  if (auto d = a.arg.find("OS-DCF:diskConfig"); d != a.arg.end()) {
    if (!d->is_string() || (*d != "AUTO" && *d != "MANUAL"))
      return bad(bad_field("OS-DCF:diskConfig", *d, "is not one of ['AUTO', 'MANUAL']"));
  }
  if (auto m = a.arg.find("metadata"); m != a.arg.end())
    CONCORD_RETURN_IF_ERROR(check_metadata(*m, "metadata"));
  if (auto p = a.arg.find("adminPass"); p != a.arg.end() && !p->is_string())
    return bad(bad_field("adminPass", *p, "is not of type 'string'"));
  if (auto p = a.arg.find("preserve_ephemeral"); p != a.arg.end() && !p->is_boolean())
    return bad(bad_field("preserve_ephemeral", *p, "is not of type 'boolean'"));
  if (auto d = a.arg.find("description"); d != a.arg.end() && !d->is_null()) {
    if (!d->is_string() || d->get<std::string>().size() > 255 * 4)
      return bad(bad_field("description", *d, "is not a valid description"));
  }
  std::optional<std::optional<std::string>> user_data;
  if (auto u = a.arg.find("user_data"); u != a.arg.end()) {
    if (u->is_null()) {
      user_data = std::optional<std::string>();
    } else {
      CONCORD_ASSIGN_OR_RETURN(std::string ud,
                               check_user_data(*u, ctx.options.max_user_data_bytes));
      user_data = ud;
    }
  }
  if (a.arg.contains("personality"))
    return bad(
        "Personality (file injection) is not supported: pass files with user_data or "
        "the config drive.");
  if (auto t = a.arg.find("trusted_image_certificates"); t != a.arg.end() && !t->is_null())
    return bad("Image certificate validation is not enabled.");

  CONCORD_RETURN_IF_ERROR(check_not_locked(a.call, a.row));
  CONCORD_RETURN_IF_ERROR(check_state("rebuild", a.row, {vm::kActive, vm::kStopped, vm::kError}));
  if (!a.row.host) return fail(invalid_state("rebuild", a.row));
  auto image = ctx.images.get(image_id, a.call.caller);
  if (!image) {
    if (image.error().code() == Code::kNotFound) return bad("Can not find requested image");
    return fail(image.error());
  }
  if (image->status != "active") return bad("Image " + image->id + " is not active.");
  const std::string driver = image->container_format == "docker" ? "container" : "vm";
  if (driver != a.row.driver)
    return bad("Rebuilding a " + a.row.driver + " server from a " + driver +
               " image is not supported.");
  CONCORD_ASSIGN_OR_RETURN(FlavorSnapshot fl, flavor_from_json(a.row.flavor_json));
  if (image->min_ram > fl.ram_mb) return bad("Flavor's memory is too small for requested image.");
  if (fl.disk_gb > 0 && image->min_disk > fl.disk_gb)
    return bad("Flavor's disk is too small for requested image.");
  if (auto k = a.arg.find("key_name"); k != a.arg.end()) {
    if (k->is_null()) {
      a.row.key_name.reset();
      a.row.key_data.reset();
    } else {
      if (!k->is_string()) return bad(bad_field("key_name", *k, "is not of type 'string'"));
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows kr, a.tx.query("SELECT public_key FROM compute_keypairs WHERE user_id = ? "
                                     "AND name = ?",
                                     {a.call.caller.user_id, k->get<std::string>()}));
      if (kr.empty()) return bad("Invalid key_name provided.");
      a.row.key_name = k->get<std::string>();
      a.row.key_data = kr[0].text(0);
    }
  }
  if (auto m = a.arg.find("metadata"); m != a.arg.end()) {
    CONCORD_RETURN_IF_ERROR(check_metadata_quota(a.tx, a.row.project_id, m->size()));
    CONCORD_RETURN_IF_ERROR(replace_metadata(a.tx, a.row.id, to_string_map(*m)));
  }
  if (auto n = a.arg.find("name"); n != a.arg.end()) a.row.name = n->get<std::string>();
  if (ip4) a.row.access_ipv4 = *ip4;
  if (ip6) a.row.access_ipv6 = *ip6;
  if (auto d = a.arg.find("OS-DCF:diskConfig"); d != a.arg.end())
    a.row.disk_config = d->get<std::string>();
  if (auto d = a.arg.find("description"); d != a.arg.end())
    a.row.description =
        d->is_null() ? std::nullopt : std::optional<std::string>(d->get<std::string>());
  if (user_data) a.row.user_data = *user_data;
  out.admin_pass = a.arg.value("adminPass", "");
  if (out.admin_pass.empty()) out.admin_pass = generate_password();
  a.row.image_id = image->id;
  a.row.task_state = std::string(task::kRebuilding);
  a.row.rebuild_seq += 1;
  a.row.spec_generation += 1;
  a.row.op_deadline_ms = deadline(a);
  a.row.fault_json.reset();
  return commit(a, "rebuild", "compute_rebuild_instance");
}

Status do_lock(ActionContext& a) {
  std::optional<std::string> reason;
  if (!a.arg.is_null()) {
    if (!a.arg.is_object()) return bad(bad_field("lock", a.arg, "is not of type 'null'"));
    for (auto& [k, v] : a.arg.items()) {
      if (k != "locked_reason" || !a.call.version.at_least(73))
        return bad(
            "Invalid input for field/attribute lock. Additional properties are not "
            "allowed ('" +
            sanitize_utf8(k) + "' was unexpected)");
      if (!v.is_string() || v.get<std::string>().size() > 255)
        return bad(bad_field("locked_reason", v, "is not a string of at most 255 characters"));
      reason = v.get<std::string>();
    }
  }
  a.row.locked = true;
  a.row.locked_reason = reason;
  return commit(a, "lock", "", "Success");
}

Status do_unlock(ActionContext& a) {
  if (!a.arg.is_null() && !(a.arg.is_object() && a.arg.empty()))
    return bad(bad_field("unlock", a.arg, "is not of type 'null'"));
  a.row.locked = false;
  a.row.locked_reason.reset();
  return commit(a, "unlock", "", "Success");
}

Result<std::string> console_output(ActionContext& a) {
  std::optional<int64_t> length;
  if (!a.arg.is_object())
    return bad(bad_field("os-getConsoleOutput", a.arg, "is not of type 'object'"));
  for (auto& [k, v] : a.arg.items()) {
    if (k != "length")
      return bad(
          "Invalid input for field/attribute os-getConsoleOutput. Additional properties "
          "are not allowed ('" +
          sanitize_utf8(k) + "' was unexpected)");
    if (v.is_null()) continue;
    if (v.is_number_integer()) {
      length = v.get<int64_t>();
    } else if (v.is_string()) {
      const std::string& t = v.get_ref<const std::string&>();
      bool digits =
          !t.empty() && t.size() < 10 &&
          std::all_of(t.begin() + (t[0] == '-' ? 1 : 0), t.end(),
                      [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }) &&
          t != "-";
      if (!digits) return bad(bad_field("length", v, "is not an integer"));
      length = std::stoll(t);
    } else {
      return bad(bad_field("length", v, "is not of type 'integer', 'string', 'null'"));
    }
    if (*length < -1) return bad(bad_field("length", v, "is less than the minimum of -1"));
    if (*length == -1) length.reset();
  }
  if (!a.row.host) return fail(Code::kFailedPrecondition, "Instance " + a.row.id + " is not ready");
  CONCORD_ASSIGN_OR_RETURN(store::Rows r, a.tx.query("SELECT text FROM compute_console_logs "
                                                     "WHERE server_id = ?",
                                                     {a.row.id}));
  std::string text = r.empty() ? "" : r[0].text(0);
  if (length) {
    // Nova's tail: the last `length` pieces of the text split on '\n', joined again, so a
    // trailing newline counts as one (empty) piece; 0 gives nothing.
    size_t pos = text.size();
    for (int64_t pieces = 0; pieces < *length; ++pieces) {
      if (pos == 0) break;
      size_t nl = text.rfind('\n', pos - 1);
      if (nl == std::string::npos) {
        pos = 0;
        break;
      }
      if (pieces + 1 == *length) {
        pos = nl + 1;
        break;
      }
      pos = nl;
    }
    if (*length == 0) pos = text.size();
    text = text.substr(pos);
  }
  return sanitize_utf8(text);
}

// Nova's os-resetState: an administrator's repair tool. It writes vm_state and clears the task
// without asking the agent anything; a task still in flight loses its deadline, so the
// controller does not later turn the reset server into ERROR for it. Time so far is billed in
// the state the server was in.
Status do_reset_state(ActionContext& a) {
  if (!a.arg.is_object()) return bad(bad_field("os-resetState", a.arg, "is not of type 'object'"));
  auto st = a.arg.find("state");
  if (st == a.arg.end())
    return bad("Invalid input for field/attribute os-resetState. 'state' is a required property");
  for (auto& [k, v] : a.arg.items()) {
    (void)v;
    if (k != "state")
      return bad(
          "Invalid input for field/attribute os-resetState. Additional properties are not "
          "allowed ('" +
          sanitize_utf8(k) + "' was unexpected)");
  }
  if (!st->is_string() || (*st != "active" && *st != "error"))
    return bad(bad_field("state", *st, "is not one of ['active', 'error']"));
  CONCORD_RETURN_IF_ERROR(meter_instance(a.tx, a.row, a.now, a.api.ctx().options.region));
  a.row.vm_state = st->get<std::string>();
  a.row.task_state.reset();
  a.row.op_deadline_ms = 0;
  return commit(a, "resetState", "", "Success");
}

// The candidates another host could take the server to: up, enabled, same driver, and not the
// server's own host. Only used to tell "no other host" from "not supported".
Result<bool> another_host_exists(ActionContext& a, const std::optional<std::string>& wanted) {
  const ComputeContext& ctx = a.api.ctx();
  CONCORD_ASSIGN_OR_RETURN(
      std::vector<scheduler::HostState> hosts,
      load_hosts(a.tx, a.now, static_cast<int64_t>(ctx.options.down_after.count())));
  bool found_wanted = !wanted.has_value();
  bool other = false;
  for (const scheduler::HostState& h : hosts) {
    if (wanted && h.name == *wanted) found_wanted = true;
    if (a.row.host && h.name == *a.row.host) continue;
    if (wanted && h.name != *wanted) continue;
    if (!h.up || h.disabled) continue;
    if (std::find(h.drivers.begin(), h.drivers.end(), a.row.driver) == h.drivers.end()) continue;
    other = true;
  }
  if (!found_wanted)
    return fail(Code::kNotFound, "Compute host " + *wanted + " could not be found.");
  return other;
}

Status no_valid_host(const ServerRow& s, bool other_host, std::string_view kind) {
  if (!other_host)
    return bad("No valid host was found. No valid host found for " + std::string(kind));
  return bad("No valid host was found. Concord does not move servers between hosts (" +
             std::string(kind) + " of instance " + s.id + " is not supported).");
}

Status do_migrate(ActionContext& a) {
  std::optional<std::string> host;
  if (!a.arg.is_null()) {
    if (!a.arg.is_object()) return bad(bad_field("migrate", a.arg, "is not of type 'null'"));
    for (auto& [k, v] : a.arg.items()) {
      if (k != "host" || !a.call.version.at_least(56))
        return bad(
            "Invalid input for field/attribute migrate. Additional properties are not "
            "allowed ('" +
            sanitize_utf8(k) + "' was unexpected)");
      if (v.is_null()) continue;
      if (!v.is_string() || v.get<std::string>().empty() || v.get<std::string>().size() > 255)
        return bad(bad_field("host", v, "is not a valid host name"));
      host = v.get<std::string>();
    }
  }
  CONCORD_RETURN_IF_ERROR(check_not_locked(a.call, a.row));
  CONCORD_RETURN_IF_ERROR(check_state("migrate", a.row, {vm::kActive, vm::kStopped}));
  if (!a.row.host) return fail(invalid_state("migrate", a.row));
  if (host && *host == *a.row.host)
    return bad("Cannot migrate to the host where the server exists.");
  auto other = another_host_exists(a, host);
  if (!other) {
    // Nova answers 400 for an unknown target host of a cold migration.
    if (other.error().code() == Code::kNotFound) return bad(other.error().message());
    return fail(other.error());
  }
  return no_valid_host(a.row, *other, "cold migrate");
}

Status do_live_migrate(ActionContext& a) {
  const ApiVersion& v = a.call.version;
  if (!a.arg.is_object()) return bad(bad_field("os-migrateLive", a.arg, "is not of type 'object'"));
  for (auto& [k, val] : a.arg.items()) {
    (void)val;
    bool known = k == "host" || k == "block_migration" ||
                 (k == "disk_over_commit" && !v.at_least(25)) ||
                 (k == "force" && v.at_least(30) && !v.at_least(68));
    if (!known)
      return bad(
          "Invalid input for field/attribute os-migrateLive. Additional properties are not "
          "allowed ('" +
          sanitize_utf8(k) + "' was unexpected)");
  }
  auto bm = a.arg.find("block_migration");
  if (bm == a.arg.end())
    return bad(
        "Invalid input for field/attribute os-migrateLive. 'block_migration' is a required "
        "property");
  if (!(bm->is_boolean() || (v.at_least(25) && *bm == "auto")))
    return bad(bad_field(
        "block_migration", *bm,
        v.at_least(25) ? "is not one of [True, False, 'auto']" : "is not of type 'boolean'"));
  if (!v.at_least(25)) {
    auto d = a.arg.find("disk_over_commit");
    if (d == a.arg.end())
      return bad(
          "Invalid input for field/attribute os-migrateLive. 'disk_over_commit' is a required "
          "property");
    if (!d->is_boolean()) return bad(bad_field("disk_over_commit", *d, "is not of type 'boolean'"));
  }
  if (auto f = a.arg.find("force"); f != a.arg.end() && !f->is_boolean())
    return bad(bad_field("force", *f, "is not of type 'boolean'"));
  auto h = a.arg.find("host");
  if (h == a.arg.end())
    return bad("Invalid input for field/attribute os-migrateLive. 'host' is a required property");
  std::optional<std::string> host;
  if (!h->is_null()) {
    if (!h->is_string() || h->get<std::string>().empty() || h->get<std::string>().size() > 255)
      return bad(bad_field("host", *h, "is not a valid host name"));
    host = h->get<std::string>();
  } else if (!v.at_least(25)) {
    return bad(bad_field("host", *h, "is not of type 'string'"));
  }
  CONCORD_RETURN_IF_ERROR(check_not_locked(a.call, a.row));
  CONCORD_RETURN_IF_ERROR(check_state("os-migrateLive", a.row, {vm::kActive, vm::kPaused}));
  if (!a.row.host) return fail(invalid_state("os-migrateLive", a.row));
  if (host && *host == *a.row.host)
    return bad("Unable to migrate instance (" + a.row.id + ") to current host (" + *host + ").");
  CONCORD_ASSIGN_OR_RETURN(bool other, another_host_exists(a, host));
  return no_valid_host(a.row, other, "live migration");
}

bool unsupported_nova_action(std::string_view name) {
  static const std::set<std::string, std::less<>> kNames = {"pause",
                                                            "unpause",
                                                            "suspend",
                                                            "resume",
                                                            "shelve",
                                                            "shelveOffload",
                                                            "unshelve",
                                                            "rescue",
                                                            "unrescue",
                                                            "evacuate",
                                                            "changePassword",
                                                            "addSecurityGroup",
                                                            "removeSecurityGroup",
                                                            "addFixedIp",
                                                            "removeFixedIp",
                                                            "addFloatingIp",
                                                            "removeFloatingIp",
                                                            "createBackup",
                                                            "os-resetNetwork",
                                                            "injectNetworkInfo",
                                                            "os-getVNCConsole",
                                                            "os-getSPICEConsole",
                                                            "os-getSerialConsole",
                                                            "os-getRDPConsole",
                                                            "trigger_crash_dump"};
  return kNames.contains(name);
}

Result<http::Response> server_action(NovaApi& api, Call& call) {
  ComputeContext& ctx = api.ctx();
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  if (body.size() != 1) return bad("Malformed request body: exactly one action expected.");
  const std::string name = body.begin().key();
  const Json arg = body.begin().value();

  static const std::set<std::string, std::less<>> kKnown = {
      "os-stop",       "os-start",    "reboot",  "resize",        "confirmResize",
      "revertResize",  "rebuild",     "lock",    "unlock",        "os-getConsoleOutput",
      "createImage",   "forceDelete", "restore", "os-resetState", "migrate",
      "os-migrateLive"};
  if (!kKnown.contains(name)) {
    if (unsupported_nova_action(name))
      return nova_error(501, "Action '" + name + "' is not supported by this cloud.");
    return bad("There is no such action: " + sanitize_utf8(name));
  }
  const bool read_only = name == "os-getConsoleOutput";
  const bool admin_only = name == "os-resetState" || name == "migrate" || name == "os-migrateLive";
  const std::string rule = read_only ? "project_reader" : "project_member";
  // Nova's admin actions (os_compute_api:os-admin-actions:reset_state,
  // os_compute_api:os-migrate-server:migrate, ...:migrate_live) are admin only, checked before
  // the server is looked up, so a non-admin learns nothing about other projects' ids.
  if (admin_only && !call.caller.is_admin()) {
    const std::string nova_rule =
        name == "os-resetState" ? "os_compute_api:os-admin-actions:reset_state"
        : name == "migrate"     ? "os_compute_api:os-migrate-server:migrate"
                                : "os_compute_api:os-migrate-server:migrate_live";
    return fail(Code::kPermissionDenied, "Policy doesn't allow " + nova_rule + " to be performed.");
  }

  RebuildResult rebuilt;
  std::string console;
  int status = 202;
  Status s = write_retrying(ctx.store, [&](store::Tx& tx) -> Status {
    const int64_t now = servers::now_ms(ctx.clock);
    CONCORD_ASSIGN_OR_RETURN(ServerRow row, load_visible(tx, api, call, call.param(0), rule));
    ActionContext a{api, call, arg, tx, row, now};
    if (name == "os-stop") return do_stop(a);
    if (name == "os-start") return do_start(a);
    if (name == "reboot") return do_reboot(a);
    if (name == "resize") return do_resize(a);
    if (name == "confirmResize") {
      status = 204;
      return do_confirm_resize(a);
    }
    if (name == "revertResize") return do_revert_resize(a);
    if (name == "rebuild") return do_rebuild(a, rebuilt);
    if (name == "lock") return do_lock(a);
    if (name == "unlock") return do_unlock(a);
    if (name == "os-resetState") return do_reset_state(a);
    if (name == "migrate") return do_migrate(a);
    if (name == "os-migrateLive") return do_live_migrate(a);
    if (name == "os-getConsoleOutput") {
      status = 200;
      CONCORD_ASSIGN_OR_RETURN(console, console_output(a));
      return ok();
    }
    if (name == "createImage")
      return fail(Code::kPermissionDenied,
                  "Creating images from servers (snapshots) is not supported by this cloud.");
    // forceDelete / restore: only soft-deleted servers qualify, and soft delete is off.
    return fail(invalid_state(name, row));
  });
  CONCORD_RETURN_IF_ERROR(s);

  if (name == "rebuild") {
    ServerRow row;
    ServerExtras extras;
    const int64_t now = servers::now_ms(ctx.clock);
    CONCORD_RETURN_IF_ERROR(ctx.store.read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(row, load_server(tx, call.param(0)));
      CONCORD_ASSIGN_OR_RETURN(
          extras, load_one_extras(tx, call, row, now,
                                  static_cast<int64_t>(ctx.options.down_after.count())));
      return ok();
    }));
    Json view = server_view(call, row, extras, ViewKind::kRebuild);
    view["adminPass"] = rebuilt.admin_pass;
    return http::Response::json(202, dump_json({{"server", view}}));
  }
  if (status == 200) return http::Response::json(200, dump_json({{"output", console}}));
  return http::Response::empty(status);
}

}  // namespace

void add_server_action_routes(NovaApi& api) {
  NovaApi* a = &api;
  // The action's own policy (reader for console output) is checked in the handler; the route
  // rule only requires a project reader.
  api.add(http::Method::kPost, "/v2.1/servers/{server_id}/action", "project_reader",
          [a](Call& c) { return server_action(*a, c); });
}

}  // namespace concord::compute::servers
