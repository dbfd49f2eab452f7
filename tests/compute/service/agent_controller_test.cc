// The compute controller: host liveness, operation deadlines, local deletes on down hosts.
// Time moves only through the FakeClock; passes are run with reconcile_once().
#include "agent_test_util.h"

namespace concord::compute::agent_testing {
namespace {

using http::Method;

TEST_F(AgentApiTest, HostGoesDownAfterMissedHeartbeats) {
  ASSERT_EQ(register_host("h1").status, 200);
  ASSERT_EQ(register_host("h2").status, 200);
  int64_t seq_before = 0;
  ASSERT_TRUE(store_->last_change_seq().has_value());
  seq_before = *store_->last_change_seq();

  clock_.advance(std::chrono::seconds(6));
  ASSERT_EQ(report("h2", Json::array()).status, 200);  // h2 keeps beating
  clock_.advance(std::chrono::seconds(6));             // h1 silent for 12 s > 10 s
  ASSERT_TRUE(compute_->reconcile_once().has_value());

  store::Rows rows = query("SELECT name, state FROM compute_hosts ORDER BY name", {});
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].text(1), "down");
  EXPECT_EQ(rows[1].text(1), "up");
  auto changes = store_->changes_since(seq_before, 100);
  ASSERT_TRUE(changes.has_value());
  bool saw = false;
  for (const auto& c : *changes) saw = saw || (c.kind == kHostKind && c.id == "h1");
  EXPECT_TRUE(saw);

  // A pass later changes nothing more; a report brings the host back up.
  ASSERT_TRUE(compute_->reconcile_once().has_value());
  ASSERT_EQ(report("h1", Json::array()).status, 200);
  rows = query("SELECT state FROM compute_hosts WHERE name = 'h1'", {});
  EXPECT_EQ(rows[0].text(0), "up");
}

TEST_F(AgentApiTest, BuildPastDeadlineEndsInErrorWithFault) {
  ASSERT_EQ(register_host("h1").status, 200);
  const std::string id = "cccc0001-0000-4000-8000-000000000001";
  ServerRow s = insert_building(id, "h1");
  clock_.advance(std::chrono::milliseconds(599000));
  ASSERT_EQ(report("h1", Json::array()).status, 200);  // the host is alive
  ASSERT_TRUE(compute_->reconcile_once().has_value());
  EXPECT_EQ(load(id).vm_state, vm::kBuilding);  // not yet

  clock_.advance(std::chrono::seconds(2));
  ASSERT_EQ(report("h1", Json::array()).status, 200);
  ASSERT_TRUE(compute_->reconcile_once().has_value());
  ServerRow after = load(id);
  EXPECT_EQ(after.status(), "ERROR");
  EXPECT_FALSE(after.task_state.has_value());
  ASSERT_TRUE(after.fault_json.has_value());
  auto fault = parse_json(*after.fault_json);
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ((*fault)["message"], "Build of instance " + id + " timed out");
  EXPECT_EQ((*fault)["code"], 500);
  store::Rows action =
      query("SELECT finish_time, message FROM compute_instance_actions WHERE server_id = ?", {id});
  EXPECT_FALSE(action[0].is_null(0));
  EXPECT_EQ(action[0].text(1), "Error");
  store::Rows event =
      query("SELECT result FROM compute_instance_action_events WHERE server_id = ?", {id});
  EXPECT_EQ(event[0].text(0), "Error");
}

TEST_F(AgentApiTest, OtherTaskPastDeadlineNamesTheTask) {
  ASSERT_EQ(register_host("h1").status, 200);
  const std::string id = "cccc0002-0000-4000-8000-000000000002";
  insert_building(id, "h1");
  api_change(
      id,
      [&](ServerRow& s) {
        s.vm_state = std::string(vm::kActive);
        s.task_state = std::string(task::kPoweringOff);
        s.desired_power = "stopped";
        s.spec_generation += 1;
        s.op_deadline_ms = now_ms() + 1000;
      },
      "stop", "compute_stop_instance");
  clock_.advance(std::chrono::seconds(2));
  ASSERT_EQ(report("h1", Json::array()).status, 200);
  ASSERT_TRUE(compute_->reconcile_once().has_value());
  ServerRow after = load(id);
  EXPECT_EQ(after.vm_state, vm::kError);
  ASSERT_TRUE(after.fault_json.has_value());
  EXPECT_NE(after.fault_json->find("Timed out"), std::string::npos) << *after.fault_json;
  EXPECT_NE(after.fault_json->find("powering-off"), std::string::npos) << *after.fault_json;
  store::Rows stop = query(
      "SELECT message FROM compute_instance_actions WHERE server_id = ? AND action = 'stop'", {id});
  EXPECT_EQ(stop[0].text(0), "Error");
}

TEST_F(AgentApiTest, DeleteOnDownHostFinishesLocally) {
  ASSERT_EQ(register_host("h1").status, 200);
  const std::string id = "cccc0003-0000-4000-8000-000000000003";
  insert_building(id, "h1");
  api_change(id, [](ServerRow& s) {
    s.vm_state = std::string(vm::kActive);
    s.task_state = std::string(task::kDeleting);
    s.spec_generation += 1;
  });
  // Host still up: the delete waits for the agent.
  ASSERT_TRUE(compute_->reconcile_once().has_value());
  EXPECT_FALSE(load(id).deleted);

  clock_.advance(std::chrono::seconds(11));
  ASSERT_TRUE(compute_->reconcile_once().has_value());
  ServerRow after = load(id);
  EXPECT_TRUE(after.deleted);
  EXPECT_EQ(after.vm_state, vm::kDeleted);
  EXPECT_TRUE(query("SELECT 1 FROM compute_allocations WHERE server_id = ?", {id}).empty());

  // The host comes back: its assignments no longer hold the server (its agent destroys it).
  ASSERT_EQ(report("h1", Json::array()).status, 200);
  Reply a = call(Method::kGet, "/v1/hosts/h1/assignments", nullptr, "h1");
  EXPECT_TRUE(a.body["instances"].empty()) << a;
}

TEST_F(AgentApiTest, DeleteWithoutHostFinishesLocally) {
  const std::string id = "cccc0004-0000-4000-8000-000000000004";
  insert_building(id, std::nullopt);
  api_change(id, [](ServerRow& s) { s.task_state = std::string(task::kDeleting); });
  ASSERT_TRUE(compute_->reconcile_once().has_value());
  EXPECT_TRUE(load(id).deleted);
}

TEST_F(AgentApiTest, ControllerThreadStartsAndStops) {
  ASSERT_TRUE(compute_->start().has_value());
  ASSERT_TRUE(compute_->start().has_value());  // idempotent
  compute_->stop();
  compute_->stop();
}

}  // namespace
}  // namespace concord::compute::agent_testing
