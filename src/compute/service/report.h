#pragma once
// The report handler's state machine, as a pure function: given the stored server row and what
// the host agent observed, what the row becomes and which side effects the caller must perform
// in the same transaction (finish the instance action, release claims, append usage).
//
// It is the second half of the state table in docs/design/compute.md ("State machine"): the API
// sets a task and bumps spec_generation; the agent converges and reports the generation it
// reached; here a task finishes only when the agent has converged to the CURRENT generation, so
// a report about an older spec (sent before the agent saw the newest change) never finishes a
// newer request. Observed facts (power state, addresses, applied sequence numbers) are recorded
// whatever the generation.
//
// Kept free of the store so it is unit-tested row by row (tests/compute/service/agent_report*).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "compute/service/context.h"
#include "compute/service/model.h"
#include "store/store.h"

namespace concord::compute {

// One instance as an agent reports it ("Observed" in the agent protocol).
struct Observation {
  std::string id;
  int64_t generation = 0;  // the spec generation converged to (or failed at, with `error`)
  bool present = false;    // "present" | "absent"
  int64_t power_state = power::kNoState;
  int64_t reboot_seq = 0;
  int64_t rebuild_seq = 0;
  std::optional<std::string> error;           // the failure for `generation`
  std::optional<std::string> addresses_json;  // Nova's addresses object, when reported
  std::optional<std::string> console;         // the console tail, only when it changed
  std::optional<std::string> detail;          // the driver's status detail, when reported
};

struct Transition {
  bool changed = false;  // `row` differs from the input and must be written
  ServerRow row;
  // Finish the server's open instance action; `action_ok` gives the event result.
  bool finish_action = false;
  bool action_ok = true;
  std::string action;  // the Nova action the finished task belongs to ("create", "stop", ...)
  // Drop claims: all purposes when `release_all`, else only `release_purpose` when non-empty.
  bool release_all = false;
  std::string release_purpose;
  // The server left or entered the running state, or was deleted: the caller meters it.
  bool meter = false;
  bool mark_deleted = false;  // row.deleted became 1 (delete finished)
};

// `now_ms` stamps launched_at / terminated_at / deleted_at / updated_at and the fault.
Transition apply_observation(const ServerRow& row, const Observation& obs, int64_t now_ms);

// The Nova instance action ("create", "stop", "start", "reboot", "rebuild", "resize",
// "revertResize", "delete") a task state belongs to; "" for none.
std::string_view action_for_task(std::string_view vm_state, std::string_view task_state);

// The store half, run by the report handler and the controller inside their write transaction:
// meters (before the row changes), writes the row (update_server; kAborted when stale), finishes
// the open instance action and its events, and releases claims. `host` is recorded on events.
[[nodiscard]] Status commit_transition(store::Tx& tx, const ComputeOptions& options,
                                       const ServerRow& before, Transition& t, int64_t now_ms,
                                       std::string_view host);

// Nova's fault body as stored in fault_json: {"code", "created", "message"}.
std::string make_fault_json(int code, std::string_view message, int64_t now_ms);
// The timestamp text this module stores (ISO 8601 UTC with microseconds and 'Z').
std::string stored_time(int64_t now_ms);

}  // namespace concord::compute
