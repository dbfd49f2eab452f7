// The compute controller: the part of the state machine that time drives, not reports.
//
// Every pass (about once a second; tests call reconcile_once() with a FakeClock):
//   1. hosts whose last heartbeat is older than down_after go 'down' (change feed kind
//      compute.host), so the scheduler stops placing on them and the API shows host_status DOWN;
//   2. servers whose task outlived op_deadline_ms end in vm_state error with a fault, their
//      instance action finished with Error: nothing stays in BUILD or with a task forever;
//   3. deletes of servers whose host is down (or that never got a host) finish locally, as Nova's
//      local delete: the row is marked deleted and the claims released. If the host comes back,
//      its agent finds no desired row and destroys the instance (orphan cleanup).
// Each step is its own write transaction over a bounded batch, and re-reading the rows inside
// the transaction makes a pass idempotent and safe next to the report handler and other replicas.
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "base/log.h"
#include "compute/service/agent_api.h"
#include "compute/service/model.h"
#include "compute/service/report.h"

namespace concord::compute {
namespace {

constexpr int kBatch = 100;
constexpr std::chrono::milliseconds kPassInterval{1000};

int64_t now_ms_of(const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock.now().time_since_epoch())
      .count();
}

std::string timeout_message(const ServerRow& s) {
  const std::string task = s.task_state.value_or("");
  if (s.vm_state == vm::kBuilding || task == task::kScheduling || task == task::kSpawning) {
    return "Build of instance " + s.id + " timed out";
  }
  return "Timed out waiting for host " + s.host.value_or("(none)") + " to finish task " + task +
         " of instance " + s.id;
}

}  // namespace

class Controller::Impl {
 public:
  explicit Impl(ComputeContext& c) : ctx(c) {}

  Status mark_hosts_down(int64_t now) {
    const int64_t cutoff = now - ctx.options.down_after.count();
    return ctx.store.write([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query("SELECT name, revision FROM compute_hosts WHERE state = 'up' AND "
                   "last_heartbeat_ms < ? LIMIT 1000",
                   {cutoff}));
      for (const store::Row& r : rows) {
        const std::string name = r.text(0);
        CONCORD_ASSIGN_OR_RETURN(
            int64_t n,
            tx.exec("UPDATE compute_hosts SET state = 'down', updated_at = ?, revision = revision "
                    "+ 1 WHERE name = ? AND revision = ?",
                    {stored_time(now), name, r.integer(1)}));
        if (n == 0) continue;
        logger("compute")->warn("host down host={} (no heartbeat for {} ms)", name,
                                ctx.options.down_after.count());
        CONCORD_RETURN_IF_ERROR(tx.record_change(
            {0, std::string(kHostKind), name, "", "update", r.integer(1) + 1, ""}));
      }
      return ok();
    });
  }

  Status fail_overdue(int64_t now) {
    return ctx.store.write([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query(std::string("SELECT ") + kServerColumns +
                       " FROM compute_servers WHERE deleted = 0 AND task_state IS NOT NULL AND "
                       "op_deadline_ms > 0 AND op_deadline_ms < ? ORDER BY op_deadline_ms LIMIT " +
                       std::to_string(kBatch),
                   {now}));
      for (const store::Row& row : rows) {
        ServerRow before = server_from_row(row);
        Transition t;
        t.row = before;
        const std::string message = timeout_message(before);
        t.row.vm_state = std::string(vm::kError);
        t.row.task_state.reset();
        t.row.op_deadline_ms = 0;
        t.row.fault_json = make_fault_json(500, message, now);
        t.row.updated_at = stored_time(now);
        t.changed = true;
        t.finish_action = true;
        t.action_ok = false;
        t.action = std::string(action_for_task(before.vm_state, before.task_state.value_or("")));
        t.meter = before.vm_state == vm::kActive || before.vm_state == vm::kResized;
        logger("compute")->warn("operation timed out server={} task={}: {}", before.id,
                                before.task_state.value_or(""), message);
        CONCORD_RETURN_IF_ERROR(
            commit_transition(tx, ctx.options, before, t, now, before.host.value_or("")));
      }
      return ok();
    });
  }

  Status local_deletes(int64_t now) {
    return ctx.store.write([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query(std::string("SELECT ") + kServerColumns +
                       " FROM compute_servers WHERE deleted = 0 AND task_state = 'deleting' AND "
                       "(host IS NULL OR host NOT IN (SELECT name FROM compute_hosts WHERE "
                       "state = 'up')) LIMIT " +
                       std::to_string(kBatch),
                   {}));
      for (const store::Row& row : rows) {
        ServerRow before = server_from_row(row);
        // The same transition as an agent reporting the instance gone.
        Observation gone;
        gone.id = before.id;
        gone.generation = before.spec_generation;
        gone.present = false;
        Transition t = apply_observation(before, gone, now);
        logger("compute")->info("local delete server={} host={} (host down or none)", before.id,
                                before.host.value_or("(none)"));
        CONCORD_RETURN_IF_ERROR(
            commit_transition(tx, ctx.options, before, t, now, before.host.value_or("")));
      }
      return ok();
    });
  }

  Status pass() {
    const int64_t now = now_ms_of(ctx.clock);
    CONCORD_RETURN_IF_ERROR(mark_hosts_down(now));
    // Deletes on down hosts first: they finish, rather than fail on their deadline.
    CONCORD_RETURN_IF_ERROR(local_deletes(now));
    return fail_overdue(now);
  }

  void run() {
    std::unique_lock lock(mu);
    while (!stopping) {
      lock.unlock();
      if (auto st = pass(); !st) {
        logger("compute")->error("controller pass failed: {}", st.error().to_string());
      }
      lock.lock();
      cv.wait_for(lock, kPassInterval, [&] { return stopping; });
    }
  }

  ComputeContext& ctx;
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;  // guarded by mu
  std::thread thread;     // started/joined under start_mu
  std::mutex start_mu;
};

Controller::Controller(ComputeContext& ctx) : impl_(std::make_unique<Impl>(ctx)) {}
Controller::~Controller() {
  stop();
}

Status Controller::reconcile_once() {
  // Steps may conflict with a concurrent report (kAborted): the next pass repeats them.
  Status st = impl_->pass();
  if (!st && st.error().code() == Code::kAborted) return impl_->pass();
  return st;
}

void Controller::start() {
  std::lock_guard guard(impl_->start_mu);
  if (impl_->thread.joinable()) return;
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = false;
  }
  impl_->thread = std::thread([this] { impl_->run(); });
}

void Controller::stop() {
  std::lock_guard guard(impl_->start_mu);
  if (!impl_->thread.joinable()) return;
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  impl_->thread.join();
}

}  // namespace concord::compute
