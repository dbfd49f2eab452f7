#include "compute/service/report.h"

#include <chrono>
#include <nlohmann/json.hpp>
#include <tuple>

#include "base/json.h"
#include "base/time_format.h"
#include "compute/service/placement.h"

// Metering lands with the servers API; until then transitions are not metered.
#if __has_include("compute/service/metering.h")
#include "compute/service/metering.h"
#define CONCORD_COMPUTE_HAVE_METERING 1
#endif

namespace concord::compute {

std::string stored_time(int64_t now_ms) {
  return format_keystone_time(SystemTime(std::chrono::milliseconds(now_ms)));
}

std::string make_fault_json(int code, std::string_view message, int64_t now_ms) {
  Json j = {{"code", code}, {"created", stored_time(now_ms)}, {"message", std::string(message)}};
  return dump_json(j);
}

std::string_view action_for_task(std::string_view vm_state, std::string_view task) {
  if (task == task::kScheduling || task == task::kSpawning ||
      (task.empty() && vm_state == vm::kBuilding))
    return "create";
  if (task == task::kPoweringOff) return "stop";
  if (task == task::kPoweringOn) return "start";
  if (task == task::kRebooting || task == task::kRebootingHard) return "reboot";
  if (task == task::kRebuilding) return "rebuild";
  if (task == task::kResizeReverting) return "revertResize";
  if (task.starts_with("resize")) return "resize";
  if (task == task::kDeleting) return "delete";
  return "";
}

namespace {

// Nova's event names, used when the API recorded an action without an event.
std::string_view event_for_action(std::string_view action) {
  if (action == "create") return "compute__do_build_and_run_instance";
  if (action == "stop") return "compute_stop_instance";
  if (action == "start") return "compute_start_instance";
  if (action == "reboot") return "compute_reboot_instance";
  if (action == "rebuild") return "compute_rebuild_instance";
  if (action == "resize") return "compute_finish_resize";
  if (action == "revertResize") return "compute_finish_revert_resize";
  if (action == "delete") return "compute_terminate_instance";
  return "compute_instance_action";
}

// Finishes the newest open action named `action` (else the newest open one) and its events.
Status finish_action(store::Tx& tx, const ServerRow& row, std::string_view action, bool success,
                     int64_t now_ms, std::string_view host) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT request_id FROM compute_instance_actions WHERE server_id = ? AND "
               "finish_time IS NULL AND action = ? ORDER BY seq DESC LIMIT 1",
               {row.id, std::string(action)}));
  if (rows.empty()) {
    CONCORD_ASSIGN_OR_RETURN(
        rows, tx.query("SELECT request_id FROM compute_instance_actions WHERE server_id = ? AND "
                       "finish_time IS NULL ORDER BY seq DESC LIMIT 1",
                       {row.id}));
  }
  if (rows.empty()) return ok();
  const std::string request_id = rows[0].text(0);
  const std::string now = stored_time(now_ms);
  const store::Value message = success ? store::null() : store::Value(std::string("Error"));
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n, tx.exec("UPDATE compute_instance_actions SET finish_time = ?, updated_at = ?, "
                         "message = COALESCE(message, ?) WHERE server_id = ? AND request_id = ?",
                         {now, now, message, row.id, request_id}));
  (void)n;
  const std::string result = success ? "Success" : "Error";
  const store::Value traceback =
      success
          ? store::null()
          : store::Value(row.fault_json ? *row.fault_json : std::string("instance action failed"));
  CONCORD_ASSIGN_OR_RETURN(
      int64_t events,
      tx.exec("UPDATE compute_instance_action_events SET finish_time = ?, result = ?, "
              "traceback = COALESCE(traceback, ?), host = COALESCE(host, ?) WHERE server_id = ? "
              "AND request_id = ? AND finish_time IS NULL",
              {now, result, traceback, std::string(host), row.id, request_id}));
  if (events > 0) return ok();
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows any, tx.query("SELECT 1 FROM compute_instance_action_events WHERE server_id = "
                                "? AND request_id = ? LIMIT 1",
                                {row.id, request_id}));
  if (!any.empty()) return ok();
  CONCORD_ASSIGN_OR_RETURN(
      int64_t inserted,
      tx.exec("INSERT INTO compute_instance_action_events (server_id, request_id, event, "
              "start_time, finish_time, result, traceback, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
              "ON CONFLICT DO NOTHING",
              {row.id, request_id, std::string(event_for_action(action)), now, now, result,
               traceback, std::string(host)}));
  (void)inserted;
  return ok();
}

bool is_running(int64_t power_state) {
  return power_state == power::kRunning;
}

// The fields the report handler may change; equal tuples mean nothing to write.
auto mutable_fields(const ServerRow& s) {
  return std::tie(s.vm_state, s.task_state, s.desired_power, s.spec_generation, s.power_state,
                  s.fault_json, s.addresses_json, s.observed_generation, s.observed_reboot_seq,
                  s.observed_rebuild_seq, s.op_deadline_ms, s.launched_at, s.terminated_at,
                  s.deleted, s.deleted_at);
}

void finish_task(Transition& t, std::string_view vm_state) {
  t.row.vm_state = std::string(vm_state);
  t.row.task_state.reset();
  t.row.op_deadline_ms = 0;
  t.finish_action = true;
  t.action_ok = true;
}

}  // namespace

Transition apply_observation(const ServerRow& s, const Observation& o, int64_t now_ms) {
  Transition t;
  t.row = s;
  ServerRow& r = t.row;
  // A deleted row is history: the agent's orphan rule tears down whatever still runs.
  if (s.deleted) return t;

  // Observed facts are recorded whatever generation they belong to.
  r.observed_generation = o.generation;
  r.observed_reboot_seq = o.reboot_seq;
  r.observed_rebuild_seq = o.rebuild_seq;
  if (o.present) {
    r.power_state = o.power_state;
    if (o.addresses_json) r.addresses_json = *o.addresses_json;
  }

  const std::string task = s.task_state.value_or("");
  const bool was_running_state = s.vm_state == vm::kActive || s.vm_state == vm::kResized;

  if (task == task::kDeleting) {
    // Absent at any generation finishes the delete: if the agent is in fact still creating an
    // older spec, its next assignment list lacks the row and orphan cleanup destroys it.
    // Errors while tearing down are retried by the agent; the controller's deadline ends it.
    if (!o.present) {
      r.deleted = true;
      r.deleted_at = stored_time(now_ms);
      r.terminated_at = stored_time(now_ms);
      r.vm_state = std::string(vm::kDeleted);
      r.task_state.reset();
      r.power_state = power::kNoState;
      r.op_deadline_ms = 0;
      t.finish_action = true;
      t.action_ok = true;
      t.release_all = true;
      t.mark_deleted = true;
      t.meter = true;
    }
  } else if (o.generation >= s.spec_generation && o.error) {
    const std::string fault = make_fault_json(500, *o.error, now_ms);
    // Reports repeat every heartbeat: only the first one for this failure changes the row.
    const bool already =
        s.vm_state == vm::kError && !s.task_state && s.observed_generation == o.generation;
    if (!already) {
      r.vm_state = std::string(vm::kError);
      r.task_state.reset();
      r.op_deadline_ms = 0;
      r.fault_json = fault;
      if (s.task_state) {
        t.finish_action = true;
        t.action_ok = false;
      }
      t.meter = was_running_state;
    }
  } else if (o.generation >= s.spec_generation) {
    const bool running = o.present && is_running(o.power_state);
    if (task == task::kScheduling || task == task::kSpawning ||
        (task.empty() && s.vm_state == vm::kBuilding)) {
      if (running) {
        finish_task(t, vm::kActive);
        if (!r.launched_at) r.launched_at = stored_time(now_ms);
        t.meter = true;
      }
    } else if (task == task::kPoweringOff) {
      if (o.present && !running) {
        finish_task(t, vm::kStopped);
        if (r.power_state == power::kNoState) r.power_state = power::kShutdown;
        t.meter = true;
      }
    } else if (task == task::kPoweringOn) {
      if (running) {
        finish_task(t, vm::kActive);
        t.meter = true;
      }
    } else if (task == task::kRebooting || task == task::kRebootingHard) {
      if (o.present && o.reboot_seq >= s.reboot_seq) {
        // A hard reboot powers a stopped or failed instance on (Nova).
        finish_task(t, running ? vm::kActive : vm::kStopped);
        t.meter = running != was_running_state;
      }
    } else if (task == task::kRebuilding) {
      if (o.present && o.rebuild_seq >= s.rebuild_seq) {
        finish_task(t, running ? vm::kActive : vm::kStopped);
        if (!r.launched_at) r.launched_at = stored_time(now_ms);
        t.meter = true;
      }
    } else if (task == task::kResizePrep || task == task::kResizeFinish ||
               task == "resize_migrating" || task == "resize_migrated") {
      if (o.present) {
        finish_task(t, vm::kResized);
        t.meter = true;  // the flavor changed: instance-seconds are per flavor
      }
    } else if (task == task::kResizeReverting) {
      if (o.present) {
        finish_task(t, running ? vm::kActive : vm::kStopped);
        t.release_purpose = "resize";
        t.meter = true;
      }
    } else if (task.empty() && s.vm_state == vm::kError && running &&
               o.generation > s.observed_generation) {
      // The failure that put it in ERROR was of an earlier desired state (a live configuration
      // its driver refused, say); the agent has since converged a newer one and the instance
      // runs, so it is ACTIVE again and the fault goes. (An ERROR from the current generation
      // stays until something new is asked of the instance.)
      r.vm_state = std::string(vm::kActive);
      r.fault_json.reset();
      t.meter = true;
    } else if (task.empty() && s.vm_state == vm::kActive && o.present && !running &&
               (o.power_state == power::kShutdown || o.power_state == power::kCrashed)) {
      // Nova's power sync: an idle active instance found off is stopped, and stays off: the
      // desired power follows, with a new generation the agent converges to at once.
      r.vm_state = std::string(vm::kStopped);
      r.desired_power = "stopped";
      r.spec_generation = s.spec_generation + 1;
      t.meter = true;
    }
  }

  if (t.finish_action) t.action = std::string(action_for_task(s.vm_state, task));
  t.changed = mutable_fields(r) != mutable_fields(s);
  if (t.changed) r.updated_at = stored_time(now_ms);
  return t;
}

Status commit_transition(store::Tx& tx, const ComputeOptions& options, const ServerRow& before,
                         Transition& t, int64_t now_ms, std::string_view host) {
#ifdef CONCORD_COMPUTE_HAVE_METERING
  if (t.meter) {
    // Metering accounts the interval since last_metered_ms in the state the server was in.
    ServerRow metered = before;
    CONCORD_RETURN_IF_ERROR(meter_instance(tx, metered, now_ms, options.region));
    t.row.last_metered_ms = metered.last_metered_ms;
  }
#else
  (void)options;
#endif
  if (t.changed || t.row.last_metered_ms != before.last_metered_ms) {
    CONCORD_RETURN_IF_ERROR(update_server(tx, t.row));
  }
  if (t.finish_action) {
    CONCORD_RETURN_IF_ERROR(finish_action(tx, t.row, t.action, t.action_ok, now_ms, host));
  }
  if (t.mark_deleted) {
    // The console of a deleted server is never shown again.
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("DELETE FROM compute_console_logs WHERE server_id = ?", {t.row.id}));
    CONCORD_ASSIGN_OR_RETURN(
        n, tx.exec("DELETE FROM compute_server_details WHERE server_id = ?", {t.row.id}));
    (void)n;
  }
  if (t.release_all) {
    CONCORD_RETURN_IF_ERROR(release(tx, t.row.id));
  } else if (!t.release_purpose.empty()) {
    CONCORD_RETURN_IF_ERROR(release(tx, t.row.id, t.release_purpose));
  }
  return ok();
}

}  // namespace concord::compute
