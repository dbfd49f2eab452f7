// Nova's administrator APIs (api_admin.cc) and admin server actions (os-resetState, migrate,
// os-migrateLive): shapes per microversion, Nova's error codes, and the store rows behind them
// (aggregates, migration records of resizes).
#include "compute/service/report.h"
#include "servers_test_util.h"

namespace concord::compute::testing {
namespace {

class AdminApiTest : public ServersTest {
 protected:
  Reply action(const std::string& id, const std::string& token, const Json& body,
               const std::string& v = "") {
    return post("/servers/" + id + "/action", token, body, v);
  }
  // Creates an aggregate and returns its id.
  int64_t aggregate(const std::string& name, const Json& az = nullptr) {
    Json in = {{"name", name}};
    if (!az.is_null()) in["availability_zone"] = az;
    Reply r = post("/os-aggregates", admin_, {{"aggregate", in}});
    EXPECT_EQ(r.status, 200) << r;
    if (r.status != 200) return 0;
    return r.body["aggregate"]["id"].get<int64_t>();
  }
  Reply agg_action(int64_t id, const Json& body, const std::string& token = "") {
    return post("/os-aggregates/" + std::to_string(id) + "/action", token.empty() ? admin_ : token,
                body);
  }
  void set_created(const std::string& host, const std::string& stored) {
    exec("UPDATE compute_hosts SET created_at = ? WHERE name = ?", {stored, host});
  }
};

// ---------------- os-resetState ----------------

TEST_F(AdminApiTest, ResetStateSetsVmStateAndClearsTheTask) {
  add_host("h1");
  std::string id = create_active(alice_, "s");
  set_state(id, "active", "rebooting");
  exec("UPDATE compute_servers SET op_deadline_ms = 99 WHERE id = ?", {id});

  Reply r = action(id, admin_, {{"os-resetState", {{"state", "error"}}}});
  ASSERT_EQ(r.status, 202) << r;
  ServerRow s = row(id);
  EXPECT_EQ(s.vm_state, "error");
  EXPECT_FALSE(s.task_state.has_value());
  EXPECT_EQ(s.op_deadline_ms, 0);
  EXPECT_EQ(get("/servers/" + id, admin_).body["server"]["status"], "ERROR");

  ASSERT_EQ(action(id, admin_, {{"os-resetState", {{"state", "active"}}}}).status, 202);
  EXPECT_EQ(get("/servers/" + id, alice_).body["server"]["status"], "ACTIVE");
  store::Rows acts = query(
      "SELECT COUNT(*) FROM compute_instance_actions WHERE server_id = ? AND action = "
      "'resetState'",
      {id});
  EXPECT_EQ(acts[0].integer(0), 2);
}

TEST_F(AdminApiTest, ResetStateErrors) {
  add_host("h1");
  std::string id = create_active(alice_, "s");
  Reply member = action(id, alice_, {{"os-resetState", {{"state", "error"}}}});
  EXPECT_EQ(member.status, 403) << member;
  EXPECT_EQ(member.message(),
            "Policy doesn't allow os_compute_api:os-admin-actions:reset_state to be performed.");
  Reply bad_state = action(id, admin_, {{"os-resetState", {{"state", "deleted"}}}});
  EXPECT_EQ(bad_state.status, 400) << bad_state;
  EXPECT_EQ(action(id, admin_, {{"os-resetState", {{"state", 1}}}}).status, 400);
  EXPECT_EQ(action(id, admin_, {{"os-resetState", Json::object()}}).status, 400);
  EXPECT_EQ(action(id, admin_, {{"os-resetState", {{"state", "active"}, {"x", 1}}}}).status, 400);
  Reply missing = action("6f1a3c2e-0000-4000-8000-000000000000", admin_,
                         {{"os-resetState", {{"state", "active"}}}});
  EXPECT_EQ(missing.status, 404) << missing;
  EXPECT_EQ(row(id).vm_state, "active");
}

// ---------------- migrate / os-migrateLive ----------------

TEST_F(AdminApiTest, ColdMigrateWithOneHostIsNoValidHost) {
  add_host("h1");
  std::string id = create_active(alice_, "s");
  Reply r = action(id, admin_, {{"migrate", nullptr}});
  EXPECT_EQ(r.status, 400) << r;
  EXPECT_EQ(r.message(), "No valid host was found. No valid host found for cold migrate");
  EXPECT_EQ(row(id).host.value_or(""), "h1");
  EXPECT_EQ(row(id).vm_state, "active");
  EXPECT_EQ(action(id, alice_, {{"migrate", nullptr}}).status, 403);
  // A second host that could take it: Concord still does not move servers, and says so.
  add_host("h2");
  Reply two = action(id, admin_, {{"migrate", nullptr}});
  EXPECT_EQ(two.status, 400) << two;
  EXPECT_NE(two.message().find("does not move servers between hosts"), std::string::npos) << two;
  EXPECT_FALSE(row(id).task_state.has_value());
  // 2.56 names a host: unknown is 400, its own host is 400, and before 2.56 "host" is refused.
  Reply unknown = action(id, admin_, {{"migrate", {{"host", "nowhere"}}}}, "2.56");
  EXPECT_EQ(unknown.status, 400) << unknown;
  EXPECT_EQ(unknown.message(), "Compute host nowhere could not be found.");
  EXPECT_EQ(action(id, admin_, {{"migrate", {{"host", "h1"}}}}, "2.56").status, 400);
  EXPECT_EQ(action(id, admin_, {{"migrate", {{"host", "h2"}}}}, "2.55").status, 400);
  set_state(id, "active", "rebooting");
  EXPECT_EQ(action(id, admin_, {{"migrate", nullptr}}).status, 409);
  EXPECT_EQ(query("SELECT COUNT(*) FROM compute_migrations")[0].integer(0), 0);
}

TEST_F(AdminApiTest, LiveMigrateValidatesThenIsNoValidHost) {
  add_host("h1");
  std::string id = create_active(alice_, "s");
  Json ok_body = {{"os-migrateLive", {{"host", nullptr}, {"block_migration", "auto"}}}};
  Reply r = action(id, admin_, ok_body, "2.30");
  EXPECT_EQ(r.status, 400) << r;
  EXPECT_EQ(r.message(), "No valid host was found. No valid host found for live migration");
  // Before 2.25 disk_over_commit is required and "auto" is not a block_migration value.
  EXPECT_EQ(action(id, admin_, ok_body).status, 400);
  Reply old = action(id, admin_,
                     {{"os-migrateLive",
                       {{"host", "h9"}, {"block_migration", false}, {"disk_over_commit", false}}}});
  EXPECT_EQ(old.status, 404) << old;
  EXPECT_EQ(old.message(), "Compute host h9 could not be found.");
  EXPECT_EQ(action(id, admin_, {{"os-migrateLive", {{"host", nullptr}}}}, "2.30").status, 400);
  Reply self =
      action(id, admin_, {{"os-migrateLive", {{"host", "h1"}, {"block_migration", true}}}}, "2.30");
  EXPECT_EQ(self.status, 400) << self;
  EXPECT_EQ(action(id, alice_, ok_body, "2.30").status, 403);
  set_state(id, "stopped");
  EXPECT_EQ(action(id, admin_, ok_body, "2.30").status, 409);
}

// ---------------- os-aggregates ----------------

TEST_F(AdminApiTest, AggregateLifecycle) {
  add_host("h1");
  add_host("h2");
  Reply created = post("/os-aggregates", admin_,
                       {{"aggregate", {{"name", "fast"}, {"availability_zone", "zone-a"}}}});
  ASSERT_EQ(created.status, 200) << created;
  const Json& c = created.body["aggregate"];
  EXPECT_EQ(c["name"], "fast");
  EXPECT_EQ(c["availability_zone"], "zone-a");
  EXPECT_EQ(c["deleted"], false);
  EXPECT_FALSE(c.contains("hosts"));
  EXPECT_FALSE(c.contains("metadata"));
  EXPECT_FALSE(c.contains("uuid"));
  const int64_t id = c["id"].get<int64_t>();
  const std::string path = "/os-aggregates/" + std::to_string(id);

  Reply shown = get(path, admin_, "2.41");
  ASSERT_EQ(shown.status, 200) << shown;
  EXPECT_EQ(shown.body["aggregate"]["metadata"], Json({{"availability_zone", "zone-a"}}));
  EXPECT_EQ(shown.body["aggregate"]["hosts"], Json::array());
  EXPECT_EQ(shown.body["aggregate"]["uuid"].get<std::string>().size(), 36u);

  Reply added = agg_action(id, {{"add_host", {{"host", "h1"}}}});
  ASSERT_EQ(added.status, 200) << added;
  EXPECT_EQ(added.body["aggregate"]["hosts"], Json::array({"h1"}));
  Reply again = agg_action(id, {{"add_host", {{"host", "h1"}}}});
  EXPECT_EQ(again.status, 409) << again;
  EXPECT_EQ(again.message(), "Aggregate " + std::to_string(id) + " already has host h1.");
  Reply nohost = agg_action(id, {{"add_host", {{"host", "h9"}}}});
  EXPECT_EQ(nohost.status, 404) << nohost;
  EXPECT_EQ(nohost.message(), "Compute host h9 could not be found.");

  Reply md = agg_action(id, {{"set_metadata", {{"metadata", {{"ssd", "true"}, {"x", "1"}}}}}});
  ASSERT_EQ(md.status, 200) << md;
  md = agg_action(id, {{"set_metadata", {{"metadata", {{"x", nullptr}}}}}});
  EXPECT_EQ(md.body["aggregate"]["metadata"],
            Json({{"availability_zone", "zone-a"}, {"ssd", "true"}}));

  Reply updated = put(path, admin_, {{"aggregate", {{"name", "faster"}}}});
  ASSERT_EQ(updated.status, 200) << updated;
  EXPECT_EQ(updated.body["aggregate"]["name"], "faster");
  EXPECT_EQ(updated.body["aggregate"]["hosts"], Json::array({"h1"}));
  EXPECT_FALSE(updated.body["aggregate"]["updated_at"].is_null());

  Json list = get("/os-aggregates", admin_).body["aggregates"];
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["name"], "faster");

  Reply busy = del(path, admin_);
  EXPECT_EQ(busy.status, 400) << busy;
  Reply not_member = agg_action(id, {{"remove_host", {{"host", "h2"}}}});
  EXPECT_EQ(not_member.status, 404) << not_member;
  EXPECT_EQ(not_member.message(), "Aggregate " + std::to_string(id) + " has no host h2.");
  ASSERT_EQ(agg_action(id, {{"remove_host", {{"host", "h1"}}}}).status, 200);
  EXPECT_EQ(del(path, admin_).status, 200);
  EXPECT_EQ(get(path, admin_).status, 404);
  EXPECT_EQ(query("SELECT COUNT(*) FROM compute_aggregate_metadata")[0].integer(0), 0);
}

TEST_F(AdminApiTest, AggregateErrors) {
  add_host("h1");
  const int64_t id = aggregate("a");
  Reply dup = post("/os-aggregates", admin_, {{"aggregate", {{"name", "a"}}}});
  EXPECT_EQ(dup.status, 409) << dup;
  EXPECT_EQ(dup.message(), "Aggregate a already exists.");
  const int64_t other = aggregate("b");
  EXPECT_EQ(put("/os-aggregates/" + std::to_string(other), admin_, {{"aggregate", {{"name", "a"}}}})
                .status,
            409);
  for (const Json& bad :
       {Json({{"aggregate", {{"name", ""}}}}), Json({{"aggregate", {{"name", " lead"}}}}),
        Json({{"aggregate", {{"name", "x"}, {"bogus", 1}}}}),
        Json({{"aggregate", {{"availability_zone", "z"}}}}),
        Json({{"aggregate", {{"name", "x"}, {"availability_zone", "a:b"}}}}),
        Json({{"aggregate", {{"name", "x"}, {"availability_zone", "internal"}}}}),
        Json({{"name", "x"}})}) {
    Reply r = post("/os-aggregates", admin_, bad);
    EXPECT_EQ(r.status, 400) << bad << r;
  }
  EXPECT_EQ(
      put("/os-aggregates/" + std::to_string(id), admin_, {{"aggregate", Json::object()}}).status,
      400);
  EXPECT_EQ(get("/os-aggregates/abc", admin_).status, 400);
  EXPECT_EQ(get("/os-aggregates/999", admin_).status, 404);
  EXPECT_EQ(get("/os-aggregates/-1", admin_).status, 404);
  EXPECT_EQ(del("/os-aggregates/-1", admin_).status, 404);
  EXPECT_EQ(get("/os-aggregates/1.5", admin_).status, 400);
  EXPECT_EQ(del("/os-aggregates/999", admin_).status, 404);
  EXPECT_EQ(agg_action(id, {{"add_host", {{"host", "h1"}, {"x", 1}}}}).status, 400);
  EXPECT_EQ(agg_action(id, {{"add_host", Json::object()}}).status, 400);
  EXPECT_EQ(agg_action(id, {{"explode", Json::object()}}).status, 400);
  EXPECT_EQ(agg_action(id, {{"set_metadata", {{"metadata", {{"k", 1}}}}}}).status, 400);
  EXPECT_EQ(agg_action(999, {{"add_host", {{"host", "h1"}}}}).status, 404);
  Reply member = get("/os-aggregates", alice_);
  EXPECT_EQ(member.status, 403) << member;
  EXPECT_EQ(agg_action(id, {{"add_host", {{"host", "h1"}}}}, alice_).status, 403);
}

TEST_F(AdminApiTest, AHostLivesInOneAvailabilityZone) {
  add_host("h1");
  const int64_t a = aggregate("a", "zone-a");
  const int64_t b = aggregate("b", "zone-b");
  const int64_t plain = aggregate("plain");
  ASSERT_EQ(agg_action(a, {{"add_host", {{"host", "h1"}}}}).status, 200);
  Reply clash = agg_action(b, {{"add_host", {{"host", "h1"}}}});
  EXPECT_EQ(clash.status, 409) << clash;
  EXPECT_NE(clash.message().find("zone-a"), std::string::npos) << clash;
  // An aggregate without a zone may hold it, but may then not be given another zone.
  ASSERT_EQ(agg_action(plain, {{"add_host", {{"host", "h1"}}}}).status, 200);
  Reply rezone = put("/os-aggregates/" + std::to_string(plain), admin_,
                     {{"aggregate", {{"availability_zone", "zone-b"}}}});
  EXPECT_EQ(rezone.status, 400) << rezone;
  Reply meta = agg_action(plain, {{"set_metadata", {{"metadata", {{"availability_zone", "z"}}}}}});
  EXPECT_EQ(meta.status, 400) << meta;
  EXPECT_EQ(put("/os-aggregates/" + std::to_string(plain), admin_,
                {{"aggregate", {{"availability_zone", "zone-a"}}}})
                .status,
            200);
  // os-hosts shows the zone the aggregate gives the host.
  Json hosts = get("/os-hosts", admin_).body["hosts"];
  bool seen = false;
  for (const Json& h : hosts) {
    if (h["host_name"] == "h1") {
      EXPECT_EQ(h["zone"], "zone-a");
      seen = true;
    }
  }
  EXPECT_TRUE(seen) << hosts;
}

// ---------------- os-hosts ----------------

TEST_F(AdminApiTest, HostsListShowAndVersionCeiling) {
  add_host("h1", "nova", 8, 16384, 200);
  add_host("h2", "other");
  std::string id = create_active(alice_, "s");
  Reply list = get("/os-hosts", admin_);
  ASSERT_EQ(list.status, 200) << list;
  int computes = 0;
  for (const Json& h : list.body["hosts"]) {
    if (h["service"] == "compute") ++computes;
    EXPECT_TRUE(h.contains("zone"));
  }
  EXPECT_EQ(computes, 2);
  Json zoned = get("/os-hosts?zone=other", admin_).body["hosts"];
  ASSERT_EQ(zoned.size(), 1u) << zoned;
  EXPECT_EQ(zoned[0]["host_name"], "h2");
  EXPECT_EQ(get("/os-hosts?zone=", admin_).body["hosts"].size(), list.body["hosts"].size());
  EXPECT_EQ(get("/os-hosts?zone=nowhere", admin_).body["hosts"], Json::array());

  const std::string host = row(id).host.value_or("");
  ASSERT_FALSE(host.empty());
  Reply shown = get("/os-hosts/" + host, admin_);
  ASSERT_EQ(shown.status, 200) << shown;
  const Json& rows = shown.body["host"];
  ASSERT_EQ(rows.size(), 4u) << rows;
  EXPECT_EQ(rows[0]["resource"]["project"], "(total)");
  EXPECT_EQ(rows[1]["resource"]["project"], "(used_now)");
  EXPECT_EQ(rows[2]["resource"]["project"], "(used_max)");
  EXPECT_EQ(rows[3]["resource"]["project"], p1_);
  EXPECT_EQ(rows[3]["resource"]["cpu"], row(id).vcpus);
  EXPECT_EQ(rows[2]["resource"]["memory_mb"], row(id).ram_mb);

  EXPECT_EQ(get("/os-hosts/h9", admin_).status, 404);
  EXPECT_EQ(get("/os-hosts", admin_, "2.43").status, 404);
  EXPECT_EQ(get("/os-hosts", admin_, "2.42").status, 200);
  EXPECT_EQ(get("/os-hosts", alice_).status, 403);
}

TEST_F(AdminApiTest, HostsUpdateAndPowerActions) {
  add_host("h1");
  Reply r = put("/os-hosts/h1", admin_, {{"status", "disable"}});
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, Json({{"host", "h1"}, {"status", "disabled"}}));
  EXPECT_EQ(query("SELECT disabled FROM compute_hosts WHERE name = 'h1'")[0].integer(0), 1);
  EXPECT_EQ(put("/os-hosts/h1", admin_, {{"status", "enable"}}).status, 200);
  EXPECT_EQ(query("SELECT disabled FROM compute_hosts WHERE name = 'h1'")[0].integer(0), 0);
  EXPECT_EQ(put("/os-hosts/h1", admin_, {{"status", "bogus"}}).status, 400);
  EXPECT_EQ(put("/os-hosts/h1", admin_, Json::object()).status, 400);
  EXPECT_EQ(put("/os-hosts/h9", admin_, {{"status", "enable"}}).status, 404);
  EXPECT_EQ(put("/os-hosts/h1", admin_, {{"maintenance_mode", "enable"}}).status, 501);
  EXPECT_EQ(get("/os-hosts/h1/reboot", admin_).status, 501);
  EXPECT_EQ(get("/os-hosts/h9/startup", admin_).status, 404);
  EXPECT_EQ(put("/os-hosts/h1", alice_, {{"status", "disable"}}).status, 403);
}

// ---------------- os-hypervisors/{id}/uptime ----------------

TEST_F(AdminApiTest, HypervisorUptimeIsTimeSinceRegistration) {
  add_host("h1");
  set_created("h1", stored_time(now_ms()));
  clock_.advance(std::chrono::hours(50) + std::chrono::minutes(7));
  exec("UPDATE compute_hosts SET last_heartbeat_ms = ? WHERE name = 'h1'", {now_ms()});
  // Tokens issued before the jump have expired.
  admin_ = token("admin", "admin", "admin-secret");
  alice_ = token("alice", "p1");
  Reply r = get("/os-hypervisors/1/uptime", admin_);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["hypervisor"]["id"], 1);
  EXPECT_EQ(r.body["hypervisor"]["hypervisor_hostname"], "h1");
  EXPECT_EQ(r.body["hypervisor"]["state"], "up");
  const std::string up = r.body["hypervisor"]["uptime"].get<std::string>();
  EXPECT_NE(up.find(" up 2 days,  2:07"), std::string::npos) << up;

  Reply list = get("/os-hypervisors", admin_, "2.53");
  const std::string uuid = list.body["hypervisors"][0]["id"].get<std::string>();
  Reply by_uuid = get("/os-hypervisors/" + uuid + "/uptime", admin_, "2.53");
  ASSERT_EQ(by_uuid.status, 200) << by_uuid;
  EXPECT_EQ(by_uuid.body["hypervisor"]["id"], uuid);
  EXPECT_EQ(get("/os-hypervisors/1/uptime", admin_, "2.53").status, 400);
  EXPECT_EQ(get("/os-hypervisors/7/uptime", admin_).status, 404);
  EXPECT_EQ(get("/os-hypervisors/1/uptime", alice_).status, 403);
  // A host whose agent stopped reporting has no service to ask (Nova: 400).
  clock_.advance(std::chrono::minutes(5));
  EXPECT_EQ(get("/os-hypervisors/1/uptime", admin_).status, 400);
}

// ---------------- diagnostics ----------------

TEST_F(AdminApiTest, DiagnosticsStandardFormatAndLegacy) {
  add_host("h1");
  std::string id = create_active(alice_, "s");
  exec("UPDATE compute_servers SET launched_at = ? WHERE id = ?", {stored_time(now_ms()), id});
  clock_.advance(std::chrono::seconds(90));
  Reply r = get("/servers/" + id + "/diagnostics", admin_, "2.48");
  ASSERT_EQ(r.status, 200) << r;
  const Json& d = r.body;
  EXPECT_EQ(d["state"], "running");
  EXPECT_EQ(d["driver"], "runc");
  EXPECT_EQ(d["uptime"], 90);
  EXPECT_EQ(d["num_cpus"], row(id).vcpus);
  EXPECT_EQ(d["cpu_details"].size(), static_cast<size_t>(row(id).vcpus));
  EXPECT_EQ(d["memory_details"]["maximum"], row(id).ram_mb);
  EXPECT_TRUE(d["memory_details"]["used"].is_null());
  EXPECT_EQ(d["num_disks"], 1);
  EXPECT_EQ(d["disk_details"].size(), 1u);
  EXPECT_EQ(d["num_nics"], 0);
  EXPECT_EQ(d["config_drive"], false);
  for (const char* k : {"hypervisor", "hypervisor_os", "nic_details"}) EXPECT_TRUE(d.contains(k));

  Reply legacy = get("/servers/" + id + "/diagnostics", admin_);
  ASSERT_EQ(legacy.status, 200) << legacy;
  EXPECT_FALSE(legacy.body.contains("cpu_details"));
  EXPECT_EQ(legacy.body["memory"], row(id).ram_mb * 1024);

  set_state(id, "stopped", std::nullopt, 4);
  EXPECT_EQ(get("/servers/" + id + "/diagnostics", admin_, "2.48").body["state"], "shutdown");
  EXPECT_EQ(get("/servers/" + id + "/diagnostics", alice_).status, 403);
  EXPECT_EQ(get("/servers/6f1a3c2e-0000-4000-8000-000000000000/diagnostics", admin_).status, 404);
  exec("UPDATE compute_servers SET host = NULL, vm_state = 'building' WHERE id = ?", {id});
  EXPECT_EQ(get("/servers/" + id + "/diagnostics", admin_).status, 409);
}

// ---------------- external events ----------------

TEST_F(AdminApiTest, ExternalEventsPerServerCodes) {
  add_host("h1");
  std::string id = create_active(alice_, "s");
  const std::string ghost = "6f1a3c2e-0000-4000-8000-000000000000";
  Reply one = post("/os-server-external-events", admin_,
                   {{"events", {{{"name", "network-changed"}, {"server_uuid", id}}}}});
  ASSERT_EQ(one.status, 200) << one;
  EXPECT_EQ(one.body["events"][0]["code"], 200);
  EXPECT_EQ(one.body["events"][0]["status"], "completed");

  Reply mixed =
      post("/os-server-external-events", admin_,
           {{"events",
             {{{"name", "network-vif-plugged"}, {"server_uuid", id}, {"tag", "port-1"}},
              {{"name", "network-changed"}, {"server_uuid", ghost}, {"status", "completed"}}}}});
  ASSERT_EQ(mixed.status, 207) << mixed;
  EXPECT_EQ(mixed.body["events"][0]["code"], 200);
  EXPECT_EQ(mixed.body["events"][0]["tag"], "port-1");
  EXPECT_EQ(mixed.body["events"][1]["code"], 404);
  EXPECT_EQ(mixed.body["events"][1]["status"], "failed");

  Reply none = post("/os-server-external-events", admin_,
                    {{"events", {{{"name", "network-changed"}, {"server_uuid", ghost}}}}});
  EXPECT_EQ(none.status, 404) << none;
  EXPECT_EQ(post("/os-server-external-events", admin_,
                 {{"events", {{{"name", "volume-extended"}, {"server_uuid", id}}}}})
                .status,
            400);  // 2.51+
  EXPECT_EQ(post("/os-server-external-events", admin_,
                 {{"events", {{{"name", "volume-extended"}, {"server_uuid", id}}}}}, "2.51")
                .status,
            200);
  EXPECT_EQ(post("/os-server-external-events", admin_, {{"events", Json::array()}}).status, 400);
  EXPECT_EQ(post("/os-server-external-events", admin_,
                 {{"events", {{{"name", "network-changed"}, {"server_uuid", id}, {"x", 1}}}}})
                .status,
            400);
  EXPECT_EQ(post("/os-server-external-events", alice_,
                 {{"events", {{{"name", "network-changed"}, {"server_uuid", id}}}}})
                .status,
            403);
  // Not on a host yet: 422 for that event, and nothing accepted.
  exec("UPDATE compute_servers SET host = NULL WHERE id = ?", {id});
  Reply unplaced = post("/os-server-external-events", admin_,
                        {{"events", {{{"name", "network-changed"}, {"server_uuid", id}}}}});
  EXPECT_EQ(unplaced.status, 404) << unplaced;
}

// ---------------- os-migrations ----------------

TEST_F(AdminApiTest, ResizesAreListedAsMigrations) {
  add_host("h1", "nova", 16, 32768, 500);
  std::string id = create(alice_, server_body("r", kContainerImage, "1"));
  set_state(id, "active");
  EXPECT_EQ(get("/os-migrations", admin_).body["migrations"], Json::array());
  ASSERT_EQ(action(id, alice_, {{"resize", {{"flavorRef", "2"}}}}).status, 202);

  Reply r = get("/os-migrations", admin_);
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["migrations"].size(), 1u);
  Json m = r.body["migrations"][0];
  EXPECT_EQ(m["instance_uuid"], id);
  EXPECT_EQ(m["status"], "migrating");
  EXPECT_EQ(m["source_compute"], "h1");
  EXPECT_EQ(m["dest_compute"], "h1");
  EXPECT_EQ(m["old_instance_type_id"], 1);
  EXPECT_EQ(m["new_instance_type_id"], 2);
  EXPECT_FALSE(m.contains("migration_type"));
  EXPECT_FALSE(m.contains("uuid"));

  set_state(id, "resized");
  m = get("/os-migrations", admin_, "2.23").body["migrations"][0];
  EXPECT_EQ(m["status"], "finished");
  EXPECT_EQ(m["migration_type"], "resize");
  ASSERT_EQ(action(id, alice_, {{"confirmResize", nullptr}}).status, 204);
  m = get("/os-migrations", admin_, "2.59").body["migrations"][0];
  EXPECT_EQ(m["status"], "confirmed");
  EXPECT_EQ(m["uuid"].get<std::string>().size(), 36u);

  // A second resize, reverted: newest first.
  ASSERT_EQ(action(id, alice_, {{"resize", {{"flavorRef", "3"}}}}).status, 202);
  set_state(id, "resized");
  ASSERT_EQ(action(id, alice_, {{"revertResize", nullptr}}).status, 202);
  Json list = get("/os-migrations", admin_, "2.59").body["migrations"];
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["status"], "reverting");
  EXPECT_EQ(list[0]["new_instance_type_id"], 3);
  set_state(id, "active");
  EXPECT_EQ(get("/os-migrations", admin_).body["migrations"][0]["status"], "reverted");

  // Filters and paging.
  EXPECT_EQ(get("/os-migrations?status=confirmed", admin_).body["migrations"].size(), 1u);
  EXPECT_EQ(get("/os-migrations?instance_uuid=" + id, admin_).body["migrations"].size(), 2u);
  EXPECT_EQ(get("/os-migrations?host=h9", admin_).body["migrations"].size(), 0u);
  Reply page = get("/os-migrations?limit=1", admin_, "2.59");
  ASSERT_EQ(page.body["migrations"].size(), 1u);
  ASSERT_TRUE(page.body.contains("migrations_links"));
  const std::string marker = page.body["migrations"][0]["uuid"].get<std::string>();
  Reply next = get("/os-migrations?limit=1&marker=" + marker, admin_, "2.59");
  ASSERT_EQ(next.body["migrations"].size(), 1u);
  EXPECT_EQ(next.body["migrations"][0]["status"], "confirmed");
  EXPECT_EQ(get("/os-migrations?marker=nope", admin_, "2.59").status, 400);
  EXPECT_EQ(get("/os-migrations", alice_).status, 403);
}

TEST_F(AdminApiTest, ServerMigrationsListsOnlyLiveMigrations) {
  add_host("h1", "nova", 16, 32768, 500);
  std::string id = create(alice_, server_body("r", kContainerImage, "1"));
  set_state(id, "active");
  ASSERT_EQ(action(id, alice_, {{"resize", {{"flavorRef", "2"}}}}).status, 202);
  Reply r = get("/servers/" + id + "/migrations", admin_, "2.23");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["migrations"], Json::array());
  EXPECT_EQ(get("/servers/" + id + "/migrations", admin_, "2.22").status, 404);
  EXPECT_EQ(get("/servers/" + id + "/migrations/1", admin_, "2.23").status, 404);
  EXPECT_EQ(get("/servers/6f1a3c2e-0000-4000-8000-000000000000/migrations", admin_, "2.23").status,
            404);
}

// ---------------- os-instance_usage_audit_log ----------------

TEST_F(AdminApiTest, UsageAuditLogIsAnHonestNeverRunAudit) {
  add_host("h1");
  add_host("h2");
  Reply r = get("/os-instance_usage_audit_log", admin_);
  ASSERT_EQ(r.status, 200) << r;
  const Json& log = r.body["instance_usage_audit_logs"];
  EXPECT_EQ(log["num_hosts"], 2);
  EXPECT_EQ(log["num_hosts_not_run"], 2);
  EXPECT_EQ(log["hosts_not_run"], Json::array({"h1", "h2"}));
  EXPECT_EQ(log["overall_status"], "0 of 2 hosts done. 0 errors.");
  // FakeClock starts at 2027-01-15T08:00:00Z: the last completed month is December 2026.
  EXPECT_EQ(log["period_beginning"], "2026-12-01 00:00:00");
  EXPECT_EQ(log["period_ending"], "2027-01-01 00:00:00");

  Reply before = get("/os-instance_usage_audit_log/2012-03-10%2010:00:00", admin_);
  ASSERT_EQ(before.status, 200) << before;
  EXPECT_EQ(before.body["instance_usage_audit_log"]["period_beginning"], "2012-02-01 00:00:00");
  EXPECT_EQ(before.body["instance_usage_audit_log"]["period_ending"], "2012-03-01 00:00:00");
  Reply january = get("/os-instance_usage_audit_log/2012-01-10%2010:00:00.5", admin_);
  EXPECT_EQ(january.body["instance_usage_audit_log"]["period_beginning"], "2011-12-01 00:00:00");
  Reply bad = get("/os-instance_usage_audit_log/yesterday", admin_);
  EXPECT_EQ(bad.status, 400) << bad;
  EXPECT_EQ(bad.message(), "Invalid timestamp for date yesterday");
  EXPECT_EQ(get("/os-instance_usage_audit_log", alice_).status, 403);
}

// Every admin route of this family refuses members and readers before its handler, and never
// answers 500 to an administrator on dummy input, at the oldest and the newest version.
TEST_F(AdminApiTest, EveryAdminRouteRefusesMembersAndSurvivesDummyInput) {
  add_host("h1");
  int routes = 0;
  for (const RouteInfo& r : compute_->route_infos()) {
    bool mine = false;
    for (const char* part :
         {"os-aggregates", "os-hosts", "os-migrations", "/migrations", "diagnostics",
          "os-server-external-events", "/uptime", "os-instance_usage_audit_log"})
      mine = mine || r.pattern.find(part) != std::string::npos;
    if (!mine) continue;
    ++routes;
    EXPECT_EQ(r.rule, "admin") << r.pattern;
    std::string path;
    for (size_t i = 0; i < r.pattern.size();) {
      if (r.pattern[i] == '{') {
        path += "1";
        i = r.pattern.find('}', i) + 1;
      } else {
        path += r.pattern[i++];
      }
    }
    ASSERT_TRUE(path.starts_with("/v2.1"));
    path = path.substr(5);
    const Json body = r.method == http::Method::kPost || r.method == http::Method::kPut
                          ? Json::object()
                          : Json(nullptr);
    for (const std::string* t : {&alice_, &carol_}) {
      Reply reply = nova(r.method, path, *t, body, "latest");
      EXPECT_EQ(reply.status, 403) << r.pattern << reply;
    }
    for (const char* v : {"2.1", "latest"}) {
      Reply reply = nova(r.method, path, admin_, body, v);
      EXPECT_LT(reply.status, 500) << r.pattern << " " << v << reply;
      EXPECT_NE(reply.status, 403) << r.pattern << " " << v << reply;
    }
  }
  EXPECT_EQ(routes, 20);
}

}  // namespace
}  // namespace concord::compute::testing
