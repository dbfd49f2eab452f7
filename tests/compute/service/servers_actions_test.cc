// Server actions and delete: allowed and refused transitions (Nova's 409 texts), the desired
// state written for the agent, locks, resize claims, and deletes that finish at once.
#include "compute/service/metering.h"
#include "servers_test_util.h"

namespace concord::compute::testing {
namespace {

struct Transition {
  const char* action_json;
  const char* vm_state;
  const char* task_state;  // nullptr: idle
  int status;
  const char* message;  // expected 409 text with %s for the id, or ""
  const char* new_task = "";
};

class ActionTable : public ServersTest, public ::testing::WithParamInterface<Transition> {};

TEST_P(ActionTable, Transition) {
  add_host("h1", "nova", 64, 65536, 1000);
  const Transition& t = GetParam();
  std::string id = create(alice_, server_body("s", kContainerImage, "1"));
  set_state(id, t.vm_state, t.task_state ? std::optional<std::string>(t.task_state) : std::nullopt);
  if (std::string_view(t.vm_state) == "resized") {
    exec("UPDATE compute_servers SET old_flavor_json = flavor_json WHERE id = ?", {id});
  }
  ServerRow before = row(id);
  Reply r = post("/servers/" + id + "/action", alice_, Json::parse(t.action_json));
  EXPECT_EQ(r.status, t.status) << t.action_json << " in " << t.vm_state << ": " << r;
  ServerRow after = row(id);
  if (t.status == 409) {
    std::string want = t.message;
    size_t p = want.find("%s");
    if (p != std::string::npos) want.replace(p, 2, id);
    EXPECT_EQ(r.message(), want);
    EXPECT_EQ(after.revision, before.revision);
    EXPECT_EQ(r.body.begin().key(), "conflictingRequest");
  } else if (t.status == 202 && *t.new_task) {
    EXPECT_EQ(after.task_state, t.new_task);
    EXPECT_EQ(after.spec_generation, before.spec_generation + 1);
    EXPECT_EQ(after.op_deadline_ms, now_ms() + 300000);
    store::Rows a = query(
        "SELECT action FROM compute_instance_actions WHERE server_id = ? AND "
        "request_id = ?",
        {id, r.header("x-compute-request-id")});
    EXPECT_EQ(a.size(), 1u);
  }
}

const Transition kTransitions[] = {
    {R"({"os-stop": null})", "active", nullptr, 202, "", "powering-off"},
    {R"({"os-stop": null})", "error", nullptr, 202, "", "powering-off"},
    {R"({"os-stop": null})", "stopped", nullptr, 409,
     "Cannot 'stop' instance %s while it is in vm_state stopped"},
    {R"({"os-stop": null})", "building", "spawning", 409,
     "Cannot 'stop' instance %s while it is in vm_state building"},
    {R"({"os-stop": null})", "active", "rebooting", 409,
     "Cannot 'stop' instance %s while it is in task_state rebooting"},
    {R"({"os-start": null})", "stopped", nullptr, 202, "", "powering-on"},
    {R"({"os-start": null})", "active", nullptr, 409,
     "Cannot 'start' instance %s while it is in vm_state active"},
    {R"({"reboot": {"type": "SOFT"}})", "active", nullptr, 202, "", "rebooting"},
    {R"({"reboot": {"type": "SOFT"}})", "stopped", nullptr, 409,
     "Cannot 'reboot' instance %s while it is in vm_state stopped"},
    {R"({"reboot": {"type": "HARD"}})", "stopped", nullptr, 202, "", "rebooting_hard"},
    {R"({"reboot": {"type": "HARD"}})", "error", nullptr, 202, "", "rebooting_hard"},
    {R"({"reboot": {"type": "hard"}})", "active", "rebooting", 202, "", "rebooting_hard"},
    {R"({"reboot": {"type": "HARD"}})", "building", "spawning", 409,
     "Cannot 'reboot' instance %s while it is in vm_state building"},
    {R"({"reboot": {"type": "WARM"}})", "active", nullptr, 400, ""},
    {R"({"reboot": {}})", "active", nullptr, 400, ""},
    {R"({"reboot": null})", "active", nullptr, 400, ""},
    {R"({"resize": {"flavorRef": "2"}})", "active", nullptr, 202, "", "resize_prep"},
    {R"({"resize": {"flavorRef": "2"}})", "stopped", nullptr, 202, "", "resize_prep"},
    {R"({"resize": {"flavorRef": "2"}})", "error", nullptr, 409,
     "Cannot 'resize' instance %s while it is in vm_state error"},
    {R"({"resize": {"flavorRef": "1"}})", "active", nullptr, 400, ""},
    {R"({"resize": {"flavorRef": "9999"}})", "active", nullptr, 400, ""},
    {R"({"resize": {}})", "active", nullptr, 400, ""},
    {R"({"confirmResize": null})", "resized", nullptr, 204, ""},
    {R"({"confirmResize": null})", "active", nullptr, 409,
     "Cannot 'confirmResize' instance %s while it is in vm_state active"},
    {R"({"revertResize": null})", "resized", nullptr, 202, "", "resize_reverting"},
    {R"({"revertResize": null})", "stopped", nullptr, 409,
     "Cannot 'revertResize' instance %s while it is in vm_state stopped"},
    {R"({"rebuild": {"imageRef": "11111111-1111-4111-8111-111111111111"}})", "active", nullptr, 202,
     "", "rebuilding"},
    {R"({"rebuild": {"imageRef": "11111111-1111-4111-8111-111111111111"}})", "error", nullptr, 202,
     "", "rebuilding"},
    {R"({"rebuild": {"imageRef": "11111111-1111-4111-8111-111111111111"}})", "building", "spawning",
     409, "Cannot 'rebuild' instance %s while it is in vm_state building"},
    {R"({"rebuild": {"imageRef": "22222222-2222-4222-8222-222222222222"}})", "active", nullptr, 400,
     ""},
    {R"({"rebuild": {}})", "active", nullptr, 400, ""},
    {R"({"lock": null})", "building", "spawning", 202, ""},
    {R"({"unlock": null})", "active", nullptr, 202, ""},
    {R"({"forceDelete": null})", "active", nullptr, 409,
     "Cannot 'forceDelete' instance %s while it is in vm_state active"},
    {R"({"restore": null})", "active", nullptr, 409,
     "Cannot 'restore' instance %s while it is in vm_state active"},
    {R"({"createImage": {"name": "snap"}})", "active", nullptr, 403, ""},
    {R"({"pause": null})", "active", nullptr, 501, ""},
    {R"({"fly": null})", "active", nullptr, 400, ""},
    {R"({"os-stop": null, "os-start": null})", "active", nullptr, 400, ""},
};

INSTANTIATE_TEST_SUITE_P(Nova, ActionTable, ::testing::ValuesIn(kTransitions));

TEST_F(ServersTest, StopSetsDesiredPowerAndStartRestoresIt) {
  add_host("h1");
  std::string id = create_active(alice_, "s");
  ASSERT_EQ(post("/servers/" + id + "/action", alice_, {{"os-stop", nullptr}}).status, 202);
  EXPECT_EQ(row(id).desired_power, "stopped");
  set_state(id, "stopped", std::nullopt, 4);
  ASSERT_EQ(post("/servers/" + id + "/action", alice_, {{"os-start", nullptr}}).status, 202);
  EXPECT_EQ(row(id).desired_power, "running");
  Reply show = get("/servers/" + id, alice_);
  EXPECT_EQ(show.body["server"]["status"], "SHUTOFF");
  EXPECT_EQ(show.body["server"]["OS-EXT-STS:task_state"], "powering-on");
}

TEST_F(ServersTest, RebootBumpsSequence) {
  add_host("h1");
  std::string id = create_active(alice_, "s");
  ASSERT_EQ(post("/servers/" + id + "/action", alice_, {{"reboot", {{"type", "HARD"}}}}).status,
            202);
  ServerRow r = row(id);
  EXPECT_EQ(r.reboot_seq, 1);
  EXPECT_TRUE(r.reboot_hard);
  EXPECT_EQ(get("/servers/" + id, alice_).body["server"]["status"], "HARD_REBOOT");
}

TEST_F(ServersTest, LockedServerRefusesMembersNotAdmins) {
  add_host("h1");
  std::string id = create_active(alice_, "s");
  ASSERT_EQ(post("/servers/" + id + "/action", alice_,
                 {{"lock", {{"locked_reason", "maintenance"}}}}, "2.73")
                .status,
            202);
  EXPECT_EQ(row(id).locked_reason, "maintenance");
  EXPECT_EQ(get("/servers/" + id, alice_, "2.73").body["server"]["locked_reason"], "maintenance");
  Reply r = post("/servers/" + id + "/action", alice_, {{"os-stop", nullptr}});
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.message(), "Instance " + id + " is locked");
  EXPECT_EQ(del("/servers/" + id, alice_).status, 409);
  EXPECT_EQ(post("/servers/" + id + "/action", admin_, {{"os-stop", nullptr}}).status, 202);
  // locked_reason does not exist before 2.73.
  EXPECT_EQ(post("/servers/" + id + "/action", alice_, {{"lock", {{"locked_reason", "x"}}}}).status,
            400);
  EXPECT_EQ(post("/servers/" + id + "/action", alice_, {{"unlock", nullptr}}).status, 202);
  EXPECT_FALSE(row(id).locked);
}

TEST_F(ServersTest, ResizeClaimsOnTheSameHostAndConfirmSwapsClaims) {
  add_host("h1", "nova", 4, 8192, 100);
  std::string id = create(alice_, server_body("r", kContainerImage, "1"));  // 1 GB
  set_state(id, "active");
  ASSERT_EQ(post("/servers/" + id + "/action", alice_, {{"resize", {{"flavorRef", "2"}}}}).status,
            202);
  store::Rows claims = query(
      "SELECT purpose, disk_gb FROM compute_allocations WHERE server_id = "
      "? ORDER BY purpose",
      {id});
  ASSERT_EQ(claims.size(), 2u);
  EXPECT_EQ(claims[0].text(0), "instance");
  EXPECT_EQ(claims[0].integer(1), 1);
  EXPECT_EQ(claims[1].text(0), "resize");
  EXPECT_EQ(claims[1].integer(1), 20);
  ServerRow r = row(id);
  EXPECT_EQ(r.flavor_id, "2");
  ASSERT_TRUE(r.old_flavor_json.has_value());
  EXPECT_EQ(flavor_from_json(*r.old_flavor_json)->id, "1");
  EXPECT_EQ(get("/servers/" + id, alice_).body["server"]["status"], "RESIZE");
  // The agent applied it: VERIFY_RESIZE, then confirm.
  set_state(id, "resized");
  ASSERT_EQ(post("/servers/" + id + "/action", alice_, {{"confirmResize", nullptr}}).status, 204);
  claims = query("SELECT purpose, disk_gb FROM compute_allocations WHERE server_id = ?", {id});
  ASSERT_EQ(claims.size(), 1u);
  EXPECT_EQ(claims[0].text(0), "instance");
  EXPECT_EQ(claims[0].integer(1), 20);
  EXPECT_EQ(row(id).vm_state, "active");
  EXPECT_FALSE(row(id).old_flavor_json.has_value());
}

TEST_F(ServersTest, ResizeWithoutRoomIs409AndRevertRestoresFlavor) {
  add_host("h1", "nova", 4, 8192, 30);
  std::string id = create(alice_, server_body("r", kContainerImage, "2"));  // 20 GB of 30
  set_state(id, "active");
  Reply full = post("/servers/" + id + "/action", alice_, {{"resize", {{"flavorRef", "3"}}}});
  EXPECT_EQ(full.status, 409) << full;
  EXPECT_EQ(row(id).flavor_id, "2");
  // Revert path.
  exec("UPDATE compute_hosts SET disk_gb = 100 WHERE name = 'h1'", {});
  ASSERT_EQ(post("/servers/" + id + "/action", alice_, {{"resize", {{"flavorRef", "3"}}}}).status,
            202);
  set_state(id, "resized");
  ASSERT_EQ(post("/servers/" + id + "/action", alice_, {{"revertResize", nullptr}}).status, 202);
  ServerRow r = row(id);
  EXPECT_EQ(r.flavor_id, "2");
  EXPECT_EQ(r.task_state, "resize_reverting");
  EXPECT_EQ(get("/servers/" + id, alice_).body["server"]["status"], "REVERT_RESIZE");
}

TEST_F(ServersTest, RebuildChangesImageAndAnswersWithAdminPass) {
  add_host("h1");
  std::string id = create_active(alice_, "s");
  Reply r = post("/servers/" + id + "/action", alice_,
                 {{"rebuild",
                   {{"imageRef", kContainerImage},
                    {"name", "rebuilt"},
                    {"adminPass", "pw"},
                    {"metadata", {{"k", "v"}}},
                    {"accessIPv6", "2001:DB8::1"}}}});
  ASSERT_EQ(r.status, 202) << r;
  EXPECT_EQ(r.body["server"]["adminPass"], "pw");
  EXPECT_EQ(r.body["server"]["name"], "rebuilt");
  EXPECT_EQ(r.body["server"]["status"], "REBUILD");
  EXPECT_EQ(r.body["server"]["accessIPv6"], "2001:db8::1");
  EXPECT_EQ(r.body["server"]["metadata"]["k"], "v");
  ServerRow s = row(id);
  EXPECT_EQ(s.rebuild_seq, 1);
  EXPECT_EQ(s.task_state, "rebuilding");
}

TEST_F(ServersTest, ConsoleOutputTail) {
  add_host("h1");
  std::string id = create_active(alice_, "s");
  exec("INSERT INTO compute_console_logs (server_id, text, updated_at) VALUES (?, ?, 'x')",
       {id, std::string("one\ntwo\nthree\n")});
  auto out = [&](const Json& arg) {
    return post("/servers/" + id + "/action", carol_, {{"os-getConsoleOutput", arg}});
  };
  EXPECT_EQ(out(Json::object()).body["output"], "one\ntwo\nthree\n");
  // Nova's tail: the last `length` pieces of split('\n'); the empty piece after the trailing
  // newline is one of them (Tempest counts the output's pieces the same way).
  EXPECT_EQ(out({{"length", 3}}).body["output"], "two\nthree\n");
  EXPECT_EQ(out({{"length", 2}}).body["output"], "three\n");
  EXPECT_EQ(out({{"length", "1"}}).body["output"], "");
  EXPECT_EQ(out({{"length", -1}}).body["output"], "one\ntwo\nthree\n");
  EXPECT_EQ(out({{"length", 10}}).body["output"], "one\ntwo\nthree\n");
  EXPECT_EQ(out({{"length", 0}}).body["output"], "");
  EXPECT_EQ(out({{"length", "x"}}).status, 400);
  EXPECT_EQ(out({{"length", -5}}).status, 400);
  EXPECT_EQ(out({{"colour", 1}}).status, 400);
  // A reader may read the console but not stop the server.
  EXPECT_EQ(post("/servers/" + id + "/action", carol_, {{"os-stop", nullptr}}).status, 403);
  // Never placed: not ready.
  std::string unplaced = "";
  exec("UPDATE compute_hosts SET disk_gb = 0", {});
  unplaced = create(alice_, server_body("x", kContainerImage, "1"));
  Reply nr =
      post("/servers/" + unplaced + "/action", alice_, {{"os-getConsoleOutput", Json::object()}});
  EXPECT_EQ(nr.status, 409) << nr;
}

TEST_F(ServersTest, DeleteOfPlacedServerWaitsForTheAgent) {
  add_host("h1");
  std::string id = create_active(alice_, "s");
  Reply r = del("/servers/" + id, alice_);
  ASSERT_EQ(r.status, 204) << r;
  ServerRow s = row(id);
  EXPECT_FALSE(s.deleted);
  EXPECT_EQ(s.task_state, "deleting");
  EXPECT_EQ(s.spec_generation, 2);
  EXPECT_EQ(get("/servers/" + id, alice_).status, 404);
  EXPECT_EQ(del("/servers/" + id, alice_).status, 404);
  EXPECT_EQ(query("SELECT 1 FROM compute_allocations WHERE server_id = ?", {id}).size(), 1u);
}

TEST_F(ServersTest, DeleteOfNeverPlacedServerFinishesAtOnce) {
  std::string id = create(alice_, server_body("nohost"));
  ASSERT_EQ(row(id).vm_state, "error");
  ASSERT_EQ(del("/servers/" + id, alice_).status, 204);
  ServerRow s = row(id);
  EXPECT_TRUE(s.deleted);
  EXPECT_EQ(s.vm_state, "deleted");
  EXPECT_TRUE(s.deleted_at.has_value());
  EXPECT_TRUE(s.terminated_at.has_value());
  EXPECT_TRUE(query("SELECT 1 FROM compute_allocations WHERE server_id = ?", {id}).empty());
  store::Rows a = query(
      "SELECT finish_time FROM compute_instance_actions WHERE server_id = ? AND "
      "action = 'delete'",
      {id});
  ASSERT_EQ(a.size(), 1u);
  EXPECT_FALSE(a[0].is_null(0));
  EXPECT_EQ(get("/servers/" + id, alice_).status, 404);
  // Its quota is free again.
  exec("INSERT INTO compute_quotas (project_id, resource, hard_limit) VALUES (?, 'instances', 1)",
       {p1_});
  EXPECT_EQ(post("/servers", alice_, server_body("again")).status, 202);
}

TEST_F(ServersTest, DeleteOnDownHostFinishesAtOnceReleasingClaimsAndMetering) {
  add_host("h1");
  std::string id = create(alice_, server_body("s"));
  exec(
      "UPDATE compute_servers SET vm_state = 'active', task_state = NULL, power_state = 1, "
      "last_metered_ms = ? WHERE id = ?",
      {now_ms(), id});
  clock_.advance(std::chrono::seconds(90));  // heartbeat 90 s old: down
  ASSERT_EQ(del("/servers/" + id, alice_).status, 204);
  EXPECT_TRUE(row(id).deleted);
  EXPECT_TRUE(query("SELECT 1 FROM compute_allocations WHERE server_id = ?", {id}).empty());
  store::Rows usage = query("SELECT kind, quantity, unit, resource_id FROM usage_events");
  ASSERT_EQ(usage.size(), 1u);
  EXPECT_EQ(usage[0].text(0), "instance-seconds:c1.nano");
  EXPECT_EQ(usage[0].text(1), "90");
  EXPECT_EQ(usage[0].text(2), "s");
  EXPECT_EQ(usage[0].text(3), id);
}

TEST_F(ServersTest, MeterInstanceOnlyCountsRunningTime) {
  EXPECT_EQ(seconds_text(1500), "1.5");
  EXPECT_EQ(seconds_text(2000), "2");
  EXPECT_EQ(seconds_text(2005), "2.005");
  ServerRow s;
  s.id = "srv";
  s.project_id = p1_;
  s.flavor_id = "1";
  s.flavor_json = R"({"id":"1","name":"m1.tiny","vcpus":1,"ram_mb":512,"disk_gb":1})";
  s.vm_state = "stopped";
  s.last_metered_ms = now_ms() - 5000;
  s.revision = 3;
  auto st = store_->write([&](store::Tx& tx) { return meter_instance(tx, s, now_ms(), "R1"); });
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(s.last_metered_ms, now_ms());
  EXPECT_TRUE(query("SELECT 1 FROM usage_events").empty());
  s.vm_state = "active";
  s.last_metered_ms = now_ms() - 2500;
  for (int i = 0; i < 2; ++i) {  // the same revision twice: idempotent
    ServerRow copy = s;
    st = store_->write([&](store::Tx& tx) { return meter_instance(tx, copy, now_ms(), "R1"); });
    ASSERT_TRUE(st.has_value());
  }
  store::Rows u = query("SELECT event_id, kind, quantity, region FROM usage_events");
  ASSERT_EQ(u.size(), 1u);
  EXPECT_EQ(u[0].text(0), "srv:instance-seconds:3");
  EXPECT_EQ(u[0].text(1), "instance-seconds:m1.tiny");
  EXPECT_EQ(u[0].text(2), "2.5");
  EXPECT_EQ(u[0].text(3), "R1");
}

}  // namespace
}  // namespace concord::compute::testing
