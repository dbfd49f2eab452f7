// The report handler's state machine (report.h), row by row against the state table in
// docs/design/compute.md. Pure: no store.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/json.h"
#include "compute/service/report.h"

namespace concord::compute {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;

ServerRow row(std::string_view vm_state, std::optional<std::string> task, int64_t gen = 2) {
  ServerRow s;
  s.id = "s1";
  s.vm_state = std::string(vm_state);
  s.task_state = std::move(task);
  s.spec_generation = gen;
  s.host = "h1";
  s.op_deadline_ms = kNow + 1000;
  return s;
}

Observation seen(int64_t gen, bool present, int64_t power) {
  Observation o;
  o.id = "s1";
  o.generation = gen;
  o.present = present;
  o.power_state = power;
  return o;
}

TEST(AgentReportTest, CreateConvergedRunningBecomesActive) {
  Transition t =
      apply_observation(row(vm::kBuilding, "spawning"), seen(2, true, power::kRunning), kNow);
  EXPECT_TRUE(t.changed);
  EXPECT_EQ(t.row.vm_state, vm::kActive);
  EXPECT_FALSE(t.row.task_state.has_value());
  EXPECT_EQ(t.row.power_state, power::kRunning);
  EXPECT_EQ(t.row.launched_at, stored_time(kNow));
  EXPECT_EQ(t.row.op_deadline_ms, 0);
  EXPECT_EQ(t.row.observed_generation, 2);
  EXPECT_TRUE(t.finish_action);
  EXPECT_TRUE(t.action_ok);
  EXPECT_EQ(t.action, "create");
  EXPECT_TRUE(t.meter);
  EXPECT_FALSE(t.release_all);
}

TEST(AgentReportTest, ReportForOlderGenerationFinishesNothing) {
  Transition t =
      apply_observation(row(vm::kBuilding, "spawning"), seen(1, true, power::kRunning), kNow);
  EXPECT_EQ(t.row.vm_state, vm::kBuilding);
  EXPECT_EQ(t.row.task_state, "spawning");
  EXPECT_FALSE(t.finish_action);
  EXPECT_EQ(t.row.observed_generation, 1);  // facts are still recorded
  EXPECT_TRUE(t.changed);
}

TEST(AgentReportTest, CreateNotYetRunningStaysBuilding) {
  Transition t = apply_observation(row(vm::kBuilding, "spawning"), seen(2, false, 0), kNow);
  EXPECT_EQ(t.row.vm_state, vm::kBuilding);
  EXPECT_FALSE(t.finish_action);
  EXPECT_FALSE(t.row.launched_at.has_value());
}

TEST(AgentReportTest, StopConvergedBecomesStopped) {
  Transition t =
      apply_observation(row(vm::kActive, "powering-off"), seen(2, true, power::kShutdown), kNow);
  EXPECT_EQ(t.row.vm_state, vm::kStopped);
  EXPECT_EQ(t.row.power_state, power::kShutdown);
  EXPECT_FALSE(t.row.task_state.has_value());
  EXPECT_TRUE(t.finish_action);
  EXPECT_EQ(t.action, "stop");
  EXPECT_TRUE(t.meter);
}

TEST(AgentReportTest, StopStillRunningKeepsTask) {
  Transition t =
      apply_observation(row(vm::kActive, "powering-off"), seen(2, true, power::kRunning), kNow);
  EXPECT_EQ(t.row.task_state, "powering-off");
  EXPECT_FALSE(t.finish_action);
}

TEST(AgentReportTest, StartConvergedBecomesActive) {
  Transition t =
      apply_observation(row(vm::kStopped, "powering-on"), seen(2, true, power::kRunning), kNow);
  EXPECT_EQ(t.row.vm_state, vm::kActive);
  EXPECT_EQ(t.action, "start");
  EXPECT_TRUE(t.finish_action);
  EXPECT_TRUE(t.meter);
}

TEST(AgentReportTest, RebootFinishesWhenSequenceReached) {
  ServerRow s = row(vm::kActive, "rebooting");
  s.reboot_seq = 3;
  Observation o = seen(2, true, power::kRunning);
  o.reboot_seq = 2;
  Transition before = apply_observation(s, o, kNow);
  EXPECT_EQ(before.row.task_state, "rebooting");
  EXPECT_FALSE(before.finish_action);
  o.reboot_seq = 3;
  Transition t = apply_observation(s, o, kNow);
  EXPECT_FALSE(t.row.task_state.has_value());
  EXPECT_EQ(t.row.vm_state, vm::kActive);
  EXPECT_EQ(t.row.observed_reboot_seq, 3);
  EXPECT_EQ(t.action, "reboot");
  EXPECT_FALSE(t.meter);  // running before and after
}

TEST(AgentReportTest, HardRebootFromStoppedPowersOn) {
  ServerRow s = row(vm::kStopped, "rebooting_hard");
  s.reboot_seq = 1;
  Observation o = seen(2, true, power::kRunning);
  o.reboot_seq = 1;
  Transition t = apply_observation(s, o, kNow);
  EXPECT_EQ(t.row.vm_state, vm::kActive);
  EXPECT_TRUE(t.meter);
}

TEST(AgentReportTest, RebuildFinishesWhenSequenceReached) {
  ServerRow s = row(vm::kActive, "rebuilding");
  s.rebuild_seq = 1;
  Observation o = seen(2, true, power::kRunning);
  o.rebuild_seq = 1;
  Transition t = apply_observation(s, o, kNow);
  EXPECT_EQ(t.row.vm_state, vm::kActive);
  EXPECT_FALSE(t.row.task_state.has_value());
  EXPECT_EQ(t.action, "rebuild");
}

TEST(AgentReportTest, ResizeAppliedIsVerifyResize) {
  Transition t =
      apply_observation(row(vm::kActive, "resize_prep"), seen(2, true, power::kRunning), kNow);
  EXPECT_EQ(t.row.vm_state, vm::kResized);
  EXPECT_EQ(t.row.status(), "VERIFY_RESIZE");
  EXPECT_EQ(t.action, "resize");
  EXPECT_TRUE(t.release_purpose.empty());  // confirm/revert decide the claims
}

TEST(AgentReportTest, RevertResizeDropsResizeClaim) {
  Transition t = apply_observation(row(vm::kResized, "resize_reverting"),
                                   seen(2, true, power::kRunning), kNow);
  EXPECT_EQ(t.row.vm_state, vm::kActive);
  EXPECT_EQ(t.release_purpose, "resize");
  EXPECT_FALSE(t.release_all);
  EXPECT_EQ(t.action, "revertResize");
}

TEST(AgentReportTest, DeleteFinishesWhenAbsent) {
  Transition t = apply_observation(row(vm::kActive, "deleting"), seen(2, false, 0), kNow);
  EXPECT_TRUE(t.mark_deleted);
  EXPECT_TRUE(t.row.deleted);
  EXPECT_EQ(t.row.vm_state, vm::kDeleted);
  EXPECT_FALSE(t.row.task_state.has_value());
  EXPECT_EQ(t.row.deleted_at, stored_time(kNow));
  EXPECT_EQ(t.row.terminated_at, stored_time(kNow));
  EXPECT_TRUE(t.release_all);
  EXPECT_TRUE(t.finish_action);
  EXPECT_EQ(t.action, "delete");
  EXPECT_TRUE(t.meter);
}

TEST(AgentReportTest, DeleteFinishesOnAbsentEvenForOlderGeneration) {
  Transition t = apply_observation(row(vm::kBuilding, "deleting", 5), seen(1, false, 0), kNow);
  EXPECT_TRUE(t.mark_deleted);
}

TEST(AgentReportTest, DeleteWaitsWhilePresentAndIgnoresErrors) {
  Observation o = seen(2, true, power::kRunning);
  o.error = "destroy failed";
  Transition t = apply_observation(row(vm::kActive, "deleting"), o, kNow);
  EXPECT_FALSE(t.mark_deleted);
  EXPECT_EQ(t.row.task_state, "deleting");
  EXPECT_EQ(t.row.vm_state, vm::kActive);
  EXPECT_FALSE(t.finish_action);
}

TEST(AgentReportTest, ErrorForCurrentGenerationIsVmError) {
  Observation o = seen(2, false, 0);
  o.error = "create failed: runc exploded";
  Transition t = apply_observation(row(vm::kBuilding, "spawning"), o, kNow);
  EXPECT_EQ(t.row.vm_state, vm::kError);
  EXPECT_FALSE(t.row.task_state.has_value());
  ASSERT_TRUE(t.row.fault_json.has_value());
  auto fault = parse_json(*t.row.fault_json);
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ((*fault)["code"], 500);
  EXPECT_EQ((*fault)["message"], "create failed: runc exploded");
  EXPECT_TRUE(t.finish_action);
  EXPECT_FALSE(t.action_ok);
  EXPECT_EQ(t.action, "create");
}

TEST(AgentReportTest, ErrorForOlderGenerationIsIgnored) {
  Observation o = seen(1, true, power::kRunning);
  o.error = "old failure";
  Transition t = apply_observation(row(vm::kActive, "powering-off"), o, kNow);
  EXPECT_EQ(t.row.vm_state, vm::kActive);
  EXPECT_EQ(t.row.task_state, "powering-off");
  EXPECT_FALSE(t.row.fault_json.has_value());
}

TEST(AgentReportTest, RepeatedErrorReportChangesNothing) {
  ServerRow s = row(vm::kError, std::nullopt);
  s.observed_generation = 2;
  s.fault_json = make_fault_json(500, "boom", kNow - 5000);
  Observation o = seen(2, false, 0);
  o.error = "boom";
  Transition t = apply_observation(s, o, kNow);
  EXPECT_FALSE(t.changed);
  EXPECT_FALSE(t.finish_action);
  EXPECT_EQ(t.row.fault_json, s.fault_json);
}

// An instance in ERROR because its driver refused generation 2 (a live configuration, say) is
// ACTIVE again once the agent converges generation 3 with the instance running; a running
// report of the failed generation itself leaves it in ERROR.
TEST(AgentReportTest, ErrorOfAnEarlierGenerationClearsWhenANewerOneConverges) {
  ServerRow s = row(vm::kError, std::nullopt, 3);
  s.observed_generation = 2;
  s.fault_json = make_fault_json(500, "configure failed: bad value", kNow - 5000);
  Transition same = apply_observation(s, seen(2, true, power::kRunning), kNow);
  EXPECT_EQ(same.row.vm_state, vm::kError);
  EXPECT_TRUE(same.row.fault_json.has_value());
  Transition stopped = apply_observation(s, seen(3, true, power::kShutdown), kNow);
  EXPECT_EQ(stopped.row.vm_state, vm::kError);
  Transition t = apply_observation(s, seen(3, true, power::kRunning), kNow);
  EXPECT_TRUE(t.changed);
  EXPECT_EQ(t.row.vm_state, vm::kActive);
  EXPECT_FALSE(t.row.fault_json.has_value());
  EXPECT_EQ(t.row.observed_generation, 3);
  EXPECT_TRUE(t.meter);
  EXPECT_FALSE(t.finish_action);
}

TEST(AgentReportTest, IdleActiveFoundOffIsStoppedAndStaysOff) {
  ServerRow s = row(vm::kActive, std::nullopt);
  s.power_state = power::kRunning;
  Transition t = apply_observation(s, seen(2, true, power::kShutdown), kNow);
  EXPECT_EQ(t.row.vm_state, vm::kStopped);
  EXPECT_EQ(t.row.power_state, power::kShutdown);
  EXPECT_EQ(t.row.desired_power, "stopped");
  EXPECT_EQ(t.row.spec_generation, 3);
  EXPECT_FALSE(t.finish_action);
  EXPECT_TRUE(t.meter);
}

TEST(AgentReportTest, SteadyStateHeartbeatWritesNothing) {
  ServerRow s = row(vm::kActive, std::nullopt);
  s.power_state = power::kRunning;
  s.observed_generation = 2;
  s.op_deadline_ms = 0;
  Transition t = apply_observation(s, seen(2, true, power::kRunning), kNow);
  EXPECT_FALSE(t.changed);
  EXPECT_FALSE(t.meter);
  EXPECT_EQ(t.row.updated_at, s.updated_at);
}

TEST(AgentReportTest, DeletedRowIsLeftAlone) {
  ServerRow s = row(vm::kDeleted, std::nullopt);
  s.deleted = true;
  Transition t = apply_observation(s, seen(2, true, power::kRunning), kNow);
  EXPECT_FALSE(t.changed);
  EXPECT_FALSE(t.finish_action);
  EXPECT_FALSE(t.release_all);
}

TEST(AgentReportTest, AddressesAreRecorded) {
  Observation o = seen(2, true, power::kRunning);
  o.addresses_json = R"({"private":[{"addr":"10.99.0.2","version":4}]})";
  Transition t = apply_observation(row(vm::kBuilding, "spawning"), o, kNow);
  EXPECT_EQ(t.row.addresses_json, *o.addresses_json);
}

TEST(AgentReportTest, ActionNamesPerTask) {
  EXPECT_EQ(action_for_task(vm::kBuilding, "scheduling"), "create");
  EXPECT_EQ(action_for_task(vm::kActive, "powering-off"), "stop");
  EXPECT_EQ(action_for_task(vm::kStopped, "powering-on"), "start");
  EXPECT_EQ(action_for_task(vm::kActive, "rebooting_hard"), "reboot");
  EXPECT_EQ(action_for_task(vm::kActive, "resize_prep"), "resize");
  EXPECT_EQ(action_for_task(vm::kResized, "resize_reverting"), "revertResize");
  EXPECT_EQ(action_for_task(vm::kActive, "deleting"), "delete");
  EXPECT_EQ(action_for_task(vm::kActive, ""), "");
}

}  // namespace
}  // namespace concord::compute
