// Concord's operations extensions to the Trove API (src/database/service/api_operations.cc):
// deletion protection, the events feed, automated backups with retention, the storage watch
// (the database driver's status detail carried by the agent's report) and per-instance metrics,
// on the shared fixture's real store, tokens and compute service. The schedule follows the
// fixture's FakeClock; passes of the operations thread are run through the admin route
// POST /mgmt/operations, never by waiting for the thread.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/encoding.h"
#include "base/json.h"
#include "base/time_format.h"
#include "compute/driver/util.h"
#include "database/proxy/proxy.h"
#include "database/service/database_service.h"
#include "http/metrics.h"
#include "http/router.h"
#include "service_test_fixture.h"
#include "usage/usage_ledger.h"

namespace concord::database::service {
namespace {

using compute::agent_testing::Reply;
using http::Method;

int64_t us_of(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

class DatabaseOperationsTest : public DatabaseServiceTest {
 protected:
  DatabaseOperationsTest()
      : DatabaseServiceTest("concord-database-operations", "req-database-operations-test") {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(DatabaseServiceTest::SetUp());
    router_.mount("/agent/v1/database", db_->agent_routes(), http::keystone_style_error);
    admin_project_ = admin_project_id();
    ASSERT_FALSE(admin_project_.empty());
  }

  void configure(DatabaseOptions& o) override { o.backup_dir = dir_.path() + "/database-backups"; }

  static Json instance_body(const std::string& name, Json extra = Json::object()) {
    Json in = {{"name", name},
               {"flavorRef", "2"},
               {"volume", {{"size", 2}}},
               {"datastore", {{"type", "postgresql"}}}};
    for (auto& [k, v] : extra.items()) in[k] = v;
    return {{"instance", in}};
  }

  std::string create_active(const std::string& name = "db1", Json extra = Json::object()) {
    Reply r = trove(Method::kPost, "/instances", instance_body(name, std::move(extra)));
    EXPECT_EQ(r.status, 200) << r;
    const std::string id = r.body["instance"].value("id", std::string());
    report(id, 1);
    r = trove(Method::kGet, "/instances/" + id);
    EXPECT_EQ(r.body["instance"]["status"], "ACTIVE") << r;
    return id;
  }

  Reply db_agent(Method method, const std::string& path, const std::string& body = {},
                 std::vector<http::Header> extra = {}) {
    extra.push_back(agent_header(kHost));
    return dispatch_raw(method, "/agent/v1/database" + path, body, std::move(extra));
  }

  Reply upload(const std::string& backup_id, const std::string& data) {
    Json info = {{"kind", "full"}, {"consistent_at_us", us_of(clock_.now())}, {"meta_json", "{}"}};
    return db_agent(Method::kPut, "/backups/" + backup_id + "/data", data,
                    {{"x-concord-sha256", compute::driver::sha256_hex(data)},
                     {"x-concord-backup-info", base64url_encode(dump_json(info), false)}});
  }

  // One pass of the operations thread, as an operator triggers it.
  void run_pass() {
    Reply r = trove(Method::kPost, "/mgmt/operations", nullptr, admin_, admin_project_);
    ASSERT_EQ(r.status, 204) << r;
  }

  // The fake clock moves; hosts heartbeat and tokens are renewed as in real time.
  void advance(std::chrono::microseconds by) {
    clock_.advance(by);
    register_host(kHost, "database");
    member1_ = token("member1", "member1-pw", "p1");
    member2_ = token("member2", "member2-pw", "p2");
    admin_ = token("admin", "admin-secret", "admin");
  }

  std::vector<std::string> event_types(const std::string& id) {
    Reply r = trove(Method::kGet, "/instances/" + id + "/events");
    EXPECT_EQ(r.status, 200) << r;
    std::vector<std::string> out;
    for (const Json& e : r.body["events"]) out.push_back(e["type"].get<std::string>());
    return out;
  }

  // The lines of Prometheus family `family` in `registry` that name `id`, each ending in "\n".
  static std::string series_of(const http::Registry& registry, const std::string& family,
                               const std::string& id) {
    std::string out;
    std::istringstream lines(registry.render());
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(family + "{", 0) == 0 && line.find(id) != std::string::npos) {
        out += line + "\n";
      }
    }
    return out;
  }

  static int count(const std::vector<std::string>& v, const std::string& what) {
    return static_cast<int>(std::count(v.begin(), v.end(), what));
  }

  Json backups_of(const std::string& id) {
    Reply r = trove(Method::kGet, "/instances/" + id + "/backups");
    EXPECT_EQ(r.status, 200) << r;
    return r.body["backups"];
  }

  // Daily automated backups kept one day (window 07:00), a project backups quota of 1, and day
  // 0's pass (08:00) having made automated backup A, uploaded. Returns {instance id, A's id};
  // empty ids when a step failed (reported).
  std::pair<std::string, std::string> daily_backup_at_a_quota_of_one() {
    const std::string id =
        create_active("db1", {{"backup_schedule", {{"window", "07:00"}, {"retention_days", 1}}}});
    Reply r = trove(Method::kPut, "/mgmt/quotas/" + p1_, Json{{"quotas", {{"backups", 1}}}}, admin_,
                    admin_project_);
    EXPECT_EQ(r.status, 200) << r;
    run_pass();
    Json list = backups_of(id);
    EXPECT_EQ(list.size(), 1u) << list;
    if (list.size() != 1) return {};
    const std::string a = list[0]["id"];
    EXPECT_EQ(upload(a, "a").status, 200);
    return {id, a};
  }

  std::string admin_project_;
};

// ---- deletion protection -------------------------------------------------------------------

TEST_F(DatabaseOperationsTest, DeletionProtectionRefusesDeleteUntilTurnedOff) {
  Reply r =
      trove(Method::kPost, "/instances", instance_body("guarded", {{"deletion_protection", true}}));
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["instance"]["deletion_protection"], true) << r;
  const std::string id = r.body["instance"]["id"];

  r = trove(Method::kDelete, "/instances/" + id);
  EXPECT_EQ(r.status, 422) << r;
  EXPECT_EQ(r.body["unprocessableEntity"]["code"], 422) << r;
  EXPECT_NE(r.body["unprocessableEntity"]["message"].get<std::string>().find("deletion_protection"),
            std::string::npos)
      << r;
  r = trove(Method::kGet, "/instances/" + id);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["instance"]["deletion_protection"], true);

  r = trove(Method::kPatch, "/instances/" + id,
            Json{{"instance", {{"deletion_protection", false}}}});
  ASSERT_EQ(r.status, 202) << r;
  r = trove(Method::kGet, "/instances/" + id);
  EXPECT_EQ(r.body["instance"]["deletion_protection"], false) << r;
  // On again through PUT, then off, then the delete goes through.
  r = trove(Method::kPut, "/instances/" + id, Json{{"instance", {{"deletion_protection", true}}}});
  ASSERT_EQ(r.status, 202) << r;
  EXPECT_EQ(trove(Method::kDelete, "/instances/" + id).status, 422);
  r = trove(Method::kPut, "/instances/" + id, Json{{"instance", {{"deletion_protection", false}}}});
  ASSERT_EQ(r.status, 202) << r;
  r = trove(Method::kDelete, "/instances/" + id);
  EXPECT_EQ(r.status, 202) << r;
}

TEST_F(DatabaseOperationsTest, DeletionProtectionBadTypesAre400) {
  for (const Json& bad : {Json("yes"), Json(1), Json::array(), Json::object()}) {
    Reply r =
        trove(Method::kPost, "/instances", instance_body("x", {{"deletion_protection", bad}}));
    EXPECT_EQ(r.status, 400) << bad << " " << r;
    EXPECT_EQ(r.body["badRequest"]["code"], 400) << r;
  }
  EXPECT_EQ(instance_rows(), 0);
  const std::string id = create_active();
  for (const Json& bad : {Json("false"), Json(0), Json(nullptr)}) {
    Reply r = trove(Method::kPatch, "/instances/" + id,
                    Json{{"instance", {{"deletion_protection", bad}}}});
    EXPECT_EQ(r.status, 400) << bad << " " << r;
  }
  // Nothing half-applied: a bad protection value in the same update as a rename keeps the name.
  Reply r = trove(Method::kPatch, "/instances/" + id,
                  Json{{"instance", {{"name", "renamed"}, {"deletion_protection", "no"}}}});
  EXPECT_EQ(r.status, 400) << r;
  r = trove(Method::kGet, "/instances/" + id);
  EXPECT_EQ(r.body["instance"]["name"], "db1");
  EXPECT_EQ(r.body["instance"]["deletion_protection"], false);
}

// ---- events --------------------------------------------------------------------------------

TEST_F(DatabaseOperationsTest, EventsFeedRecordsTheLifecycleOldestFirst) {
  const std::string id = create_active();
  Reply r = trove(Method::kPost, "/instances/" + id + "/action", Json{{"restart", Json::object()}});
  ASSERT_EQ(r.status, 202) << r;
  r = trove(Method::kPatch, "/instances/" + id,
            Json{{"instance", {{"deletion_protection", true}}}});
  ASSERT_EQ(r.status, 202) << r;
  // The same value again is no change and no event.
  r = trove(Method::kPatch, "/instances/" + id,
            Json{{"instance", {{"deletion_protection", true}}}});
  ASSERT_EQ(r.status, 202) << r;
  r = trove(Method::kPut, "/instances/" + id,
            Json{{"instance",
                  {{"deletion_protection", false},
                   {"backup_schedule", {{"window", "03:00"}, {"retention_days", 7}}}}}});
  ASSERT_EQ(r.status, 202) << r;

  r = trove(Method::kGet, "/instances/" + id + "/events");
  ASSERT_EQ(r.status, 200) << r;
  const Json& ev = r.body["events"];
  std::vector<std::string> types;
  for (const Json& e : ev) types.push_back(e["type"]);
  EXPECT_EQ(types,
            (std::vector<std::string>{"created", "restart.requested", "deletion_protection.enabled",
                                      "deletion_protection.disabled", "backup_schedule.changed"}));
  ASSERT_EQ(ev.size(), 5u);
  EXPECT_EQ(ev[0]["detail"]["datastore"], "postgresql");
  EXPECT_EQ(ev[4]["detail"]["window"], "03:00");
  EXPECT_EQ(ev[4]["detail"]["retention_days"], 7);
  EXPECT_EQ(ev[0]["created"].get<std::string>().size(), 19u) << ev[0];  // Trove's time format
  EXPECT_EQ(ev[0]["id"].get<std::string>().size(), 36u) << ev[0];       // a uuid
  EXPECT_FALSE(ev[1]["message"].get<std::string>().empty());

  // Paging: limit and marker, with a next link while more remain.
  r = trove(Method::kGet, "/instances/" + id + "/events?limit=2");
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["events"].size(), 2u);
  EXPECT_EQ(r.body["events"][1]["type"], "restart.requested");
  ASSERT_TRUE(r.body.contains("links")) << r;
  const std::string marker = r.body["events"][1]["id"];
  EXPECT_NE(r.body["links"][0]["href"].get<std::string>().find("marker=" + marker),
            std::string::npos);
  r = trove(Method::kGet, "/instances/" + id + "/events?limit=2&marker=" + marker);
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["events"].size(), 2u);
  EXPECT_EQ(r.body["events"][0]["type"], "deletion_protection.enabled");
  r = trove(Method::kGet, "/instances/" + id + "/events?limit=2&marker=" +
                              r.body["events"][1]["id"].get<std::string>());
  ASSERT_EQ(r.body["events"].size(), 1u);
  EXPECT_FALSE(r.body.contains("links")) << r;
  EXPECT_EQ(trove(Method::kGet, "/instances/" + id + "/events?limit=0").status, 400);
  EXPECT_EQ(trove(Method::kGet, "/instances/" + id + "/events?limit=x").status, 400);
  EXPECT_EQ(trove(Method::kGet, "/instances/" + id + "/events?marker=nope").status, 400);
}

TEST_F(DatabaseOperationsTest, EventsAreTheProjectsOnlyAndOutliveTheDelete) {
  const std::string id = create_active();
  // Another tenant: not found, through its own project's path.
  Reply r = trove(Method::kGet, "/instances/" + id + "/events", nullptr, member2_, p2_);
  EXPECT_EQ(r.status, 404) << r;
  EXPECT_EQ(r.body["itemNotFound"]["code"], 404) << r;
  // A reader of the project may read it; an admin reaches any project's.
  r = trove(Method::kGet, "/instances/" + id + "/events", nullptr, reader1_);
  EXPECT_EQ(r.status, 200) << r;
  r = trove(Method::kGet, "/instances/" + id + "/events", nullptr, admin_, admin_project_);
  EXPECT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["events"].size(), 1u) << r;

  ASSERT_EQ(trove(Method::kDelete, "/instances/" + id).status, 202);
  // The row stays until the agent reports the server gone: the feed says why it went.
  std::vector<std::string> types = event_types(id);
  EXPECT_EQ(types, (std::vector<std::string>{"created", "deleted"}));
  EXPECT_EQ(trove(Method::kGet, "/instances/no-such-instance/events").status, 404);
}

TEST_F(DatabaseOperationsTest, ConfigurationAttachAndDetachAreEvents) {
  const std::string id = create_active();
  Reply r = trove(Method::kPost, "/configurations",
                  Json{{"configuration",
                        {{"name", "tuned"},
                         {"values", {{"work_mem", 8192}}},
                         {"datastore", {{"type", "postgresql"}, {"version", "15"}}}}}});
  ASSERT_EQ(r.status, 200) << r;
  const std::string group = r.body["configuration"]["id"];
  r = trove(Method::kPut, "/instances/" + id, Json{{"instance", {{"configuration", group}}}});
  ASSERT_EQ(r.status, 202) << r;
  // Detaching twice records one detach.
  r = trove(Method::kPut, "/instances/" + id, Json{{"instance", {{"configuration", nullptr}}}});
  ASSERT_EQ(r.status, 202) << r;
  r = trove(Method::kPut, "/instances/" + id, Json{{"instance", {{"configuration", nullptr}}}});
  ASSERT_EQ(r.status, 202) << r;
  r = trove(Method::kGet, "/instances/" + id + "/events");
  ASSERT_EQ(r.status, 200) << r;
  const Json& ev = r.body["events"];
  ASSERT_EQ(ev.size(), 3u) << r;
  EXPECT_EQ(ev[1]["type"], "configuration.attached");
  EXPECT_EQ(ev[1]["detail"]["configuration_id"], group);
  EXPECT_EQ(ev[2]["type"], "configuration.detached");
  EXPECT_EQ(ev[2]["detail"]["configuration_id"], group);
}

TEST_F(DatabaseOperationsTest, BackupCompletionAndFailureAreEvents) {
  const std::string id = create_active();
  Reply r = trove(Method::kPost, "/backups", Json{{"backup", {{"name", "b1"}, {"instance", id}}}});
  ASSERT_EQ(r.status, 202) << r;
  const std::string b1 = r.body["backup"]["id"];
  ASSERT_EQ(upload(b1, "backup-data").status, 200);
  r = trove(Method::kPost, "/backups", Json{{"backup", {{"name", "b2"}, {"instance", id}}}});
  ASSERT_EQ(r.status, 202) << r;
  const std::string b2 = r.body["backup"]["id"];
  r = db_agent(Method::kPost, "/backups/" + b2 + "/failed", R"({"reason": "disk full"})");
  ASSERT_EQ(r.status, 204) << r;
  // A repeated failure report records nothing more.
  ASSERT_EQ(db_agent(Method::kPost, "/backups/" + b2 + "/failed", "{}").status, 204);

  r = trove(Method::kGet, "/instances/" + id + "/events");
  ASSERT_EQ(r.status, 200) << r;
  const Json& ev = r.body["events"];
  ASSERT_EQ(ev.size(), 3u) << r;
  EXPECT_EQ(ev[1]["type"], "backup.completed");
  EXPECT_EQ(ev[1]["detail"]["backup_id"], b1);
  EXPECT_EQ(ev[1]["detail"]["size_bytes"], 11);
  EXPECT_EQ(ev[2]["type"], "backup.failed");
  EXPECT_EQ(ev[2]["detail"]["backup_id"], b2);
  EXPECT_EQ(ev[2]["detail"]["reason"], "disk full");
}

// ---- automated backups ---------------------------------------------------------------------

TEST_F(DatabaseOperationsTest, BackupScheduleIsValidatedShownAndTurnedOff) {
  const std::vector<Json> bad = {
      Json("02:00"),
      Json{{"window", "24:00"}, {"retention_days", 1}},
      Json{{"window", "2:00"}, {"retention_days", 1}},
      Json{{"window", "02:60"}, {"retention_days", 1}},
      Json{{"window", "02:00"}, {"retention_days", 0}},
      Json{{"window", "02:00"}, {"retention_days", 36}},
      Json{{"window", "02:00"}, {"retention_days", "7"}},
      Json{{"window", "02:00"}},
      Json{{"retention_days", 3}},
      Json{{"window", "02:00"}, {"retention_days", 3}, {"at", "x"}},
  };
  for (const Json& b : bad) {
    Reply r = trove(Method::kPost, "/instances", instance_body("x", {{"backup_schedule", b}}));
    EXPECT_EQ(r.status, 400) << b << " " << r;
    EXPECT_EQ(r.body["badRequest"]["code"], 400) << r;
  }
  EXPECT_EQ(instance_rows(), 0);

  Reply r = trove(
      Method::kPost, "/instances",
      instance_body("s", {{"backup_schedule", {{"window", "23:59"}, {"retention_days", 35}}}}));
  ASSERT_EQ(r.status, 200) << r;
  const std::string id = r.body["instance"]["id"];
  EXPECT_EQ(r.body["instance"]["backup_schedule"]["window"], "23:59") << r;
  EXPECT_EQ(r.body["instance"]["backup_schedule"]["retention_days"], 35) << r;
  for (const Json& b : bad) {
    r = trove(Method::kPut, "/instances/" + id, Json{{"instance", {{"backup_schedule", b}}}});
    EXPECT_EQ(r.status, 400) << b << " " << r;
  }
  r = trove(Method::kPut, "/instances/" + id, Json{{"instance", {{"backup_schedule", nullptr}}}});
  ASSERT_EQ(r.status, 202) << r;
  r = trove(Method::kGet, "/instances/" + id);
  EXPECT_TRUE(r.body["instance"]["backup_schedule"].is_null()) << r;
  // Lists show it too.
  r = trove(Method::kGet, "/instances");
  ASSERT_EQ(r.body["instances"].size(), 1u);
  EXPECT_TRUE(r.body["instances"][0]["backup_schedule"].is_null());
  EXPECT_EQ(r.body["instances"][0]["deletion_protection"], false);
}

TEST_F(DatabaseOperationsTest, AutomatedBackupOncePerDayAfterTheWindowStarts) {
  // The fixture's clock starts at 08:00 UTC.
  ASSERT_EQ(format_iso_naive(clock_.now()).substr(11, 5), "08:00");
  const std::string id =
      create_active("db1", {{"backup_schedule", {{"window", "09:30"}, {"retention_days", 3}}}});
  // Scheduled, then turned off before its window starts.
  const std::string idle =
      create_active("db2", {{"backup_schedule", {{"window", "09:00"}, {"retention_days", 3}}}});
  // A scheduled instance that never became ACTIVE gets none.
  Reply r =
      trove(Method::kPost, "/instances",
            instance_body("building",
                          {{"backup_schedule", {{"window", "07:00"}, {"retention_days", 3}}}}));
  ASSERT_EQ(r.status, 200) << r;
  const std::string building = r.body["instance"]["id"];
  r = trove(Method::kPut, "/instances/" + idle, Json{{"instance", {{"backup_schedule", nullptr}}}});
  ASSERT_EQ(r.status, 202) << r;

  run_pass();
  EXPECT_EQ(backups_of(id).size(), 0u) << "the window has not started yet";
  EXPECT_EQ(backups_of(idle).size(), 0u) << "schedule off";
  EXPECT_EQ(backups_of(building).size(), 0u) << "not active";

  advance(std::chrono::minutes(90));  // 09:30
  run_pass();
  Json list = backups_of(id);
  ASSERT_EQ(list.size(), 1u) << list;
  const std::string date = format_iso_naive(clock_.now()).substr(0, 10);
  EXPECT_EQ(list[0]["name"], "automated-" + date);
  EXPECT_TRUE(list[0]["parent_id"].is_null());
  const std::string first = list[0]["id"];
  ASSERT_EQ(upload(first, "day-one").status, 200);
  std::vector<std::string> types = event_types(id);
  EXPECT_EQ(count(types, "backup.automated.started"), 1);

  // Later the same day, and after the tenant deleted it: no second one for today.
  advance(std::chrono::hours(2));
  run_pass();
  EXPECT_EQ(backups_of(id).size(), 1u);
  ASSERT_EQ(trove(Method::kDelete, "/backups/" + first).status, 202);
  run_pass();
  EXPECT_EQ(backups_of(id).size(), 0u);

  // The next day's window.
  advance(std::chrono::hours(22));  // 09:30 the next day
  run_pass();
  list = backups_of(id);
  ASSERT_EQ(list.size(), 1u) << list;
  EXPECT_EQ(list[0]["name"], "automated-" + format_iso_naive(clock_.now()).substr(0, 10));
  EXPECT_EQ(count(event_types(id), "backup.automated.started"), 2);
  EXPECT_EQ(backups_of(building).size(), 0u);
}

TEST_F(DatabaseOperationsTest, RetentionDeletesOnlyOldFinishedAutomatedBackupsWithoutChildren) {
  const std::string id =
      create_active("db1", {{"backup_schedule", {{"window", "07:00"}, {"retention_days", 1}}}});
  // A manual backup is never retention's.
  Reply r =
      trove(Method::kPost, "/backups", Json{{"backup", {{"name", "manual"}, {"instance", id}}}});
  ASSERT_EQ(r.status, 202) << r;
  const std::string manual = r.body["backup"]["id"];
  ASSERT_EQ(upload(manual, "manual").status, 200);

  advance(std::chrono::minutes(1));  // listed in creation order
  run_pass();                        // day 0, 08:01: automated A
  Json list = backups_of(id);
  ASSERT_EQ(list.size(), 2u) << list;
  const std::string a = list[1]["id"];
  ASSERT_EQ(upload(a, "a").status, 200);

  advance(std::chrono::hours(24));  // day 1, 08:01: automated B; A is exactly 1 day old: kept
  run_pass();
  list = backups_of(id);
  ASSERT_EQ(list.size(), 3u) << list;
  const std::string b = list[2]["id"];
  EXPECT_EQ(list[1]["id"], a);

  advance(std::chrono::hours(1));  // A is past retention and is deleted; B is still running
  run_pass();
  list = backups_of(id);
  ASSERT_EQ(list.size(), 2u) << list;
  EXPECT_EQ(list[0]["id"], manual);
  EXPECT_EQ(list[1]["id"], b);
  Reply ev = trove(Method::kGet, "/instances/" + id + "/events");
  ASSERT_EQ(ev.status, 200);
  const Json& last = ev.body["events"].back();
  EXPECT_EQ(last["type"], "backup.retention.deleted") << ev;
  EXPECT_EQ(last["detail"]["backup_id"], a);

  // B completes and gets an incremental child: kept past its retention while the child exists.
  ASSERT_EQ(upload(b, "b").status, 200);
  r = trove(Method::kPost, "/backups",
            Json{{"backup", {{"name", "child"}, {"instance", id}, {"parent_id", b}}}});
  ASSERT_EQ(r.status, 202) << r;
  const std::string child = r.body["backup"]["id"];
  ASSERT_EQ(upload(child, "child").status, 200);
  advance(std::chrono::hours(48));  // day 3, 09:01: C made (child done), B too old but a parent
  run_pass();
  list = backups_of(id);
  std::vector<std::string> ids;
  for (const Json& x : list) ids.push_back(x["id"]);
  EXPECT_EQ(ids.size(), 4u) << list;
  EXPECT_NE(std::find(ids.begin(), ids.end(), b), ids.end()) << "a parent is kept";
  EXPECT_NE(std::find(ids.begin(), ids.end(), manual), ids.end()) << "manual backups are kept";
  EXPECT_NE(std::find(ids.begin(), ids.end(), child), ids.end());
}

TEST_F(DatabaseOperationsTest, TwoServersMakeOneAutomatedBackupPerDay) {
  // A second database service on the same store, as another server process would run.
  DatabaseOptions o;
  o.max_volume_gb = 20;
  o.apply_wait = std::chrono::milliseconds(0);
  o.backup_dir = dir_.path() + "/database-backups";
  auto second = DatabaseService::create(*store_, clock_, *identity_, *ctx_, o);
  ASSERT_TRUE(second.has_value()) << second.error().to_string();
  (*second)->attach_service_project(service_project_, "concord-database");
  router_.mount("/database2", (*second)->routes(), (*second)->errors());

  const std::string id =
      create_active("db1", {{"backup_schedule", {{"window", "07:00"}, {"retention_days", 3}}}});
  const std::string admin_token = admin_;
  auto pass = [&](const std::string& mount) {
    Reply r = dispatch(Method::kPost, mount + "/v1.0/" + admin_project_ + "/mgmt/operations",
                       nullptr, {{"x-auth-token", admin_token}});
    EXPECT_EQ(r.status, 204) << r;
  };
  // Both at once, several times: the check and the insert share one write transaction.
  for (int round = 0; round < 3; ++round) {
    std::thread t1([&] { pass("/database"); });
    std::thread t2([&] { pass("/database2"); });
    t1.join();
    t2.join();
  }
  EXPECT_EQ(backups_of(id).size(), 1u);
  EXPECT_EQ(count(event_types(id), "backup.automated.started"), 1);
}

// Automated backups count against the project's backups quota like manual ones: at the quota
// the day's backup is skipped (no row, a "backup.automated.skipped" event, the instance stays
// ACTIVE) and the next day's window tries again.
TEST_F(DatabaseOperationsTest, AutomatedBackupAtTheBackupsQuotaIsSkippedForTheDay) {
  const std::string id =
      create_active("db1", {{"backup_schedule", {{"window", "07:00"}, {"retention_days", 3}}}});
  auto set_backups_quota = [&](int64_t n) {
    Reply r = trove(Method::kPut, "/mgmt/quotas/" + p1_, Json{{"quotas", {{"backups", n}}}}, admin_,
                    admin_project_);
    ASSERT_EQ(r.status, 200) << r;
  };
  auto backup_rows = [&] {
    int64_t n = -1;
    EXPECT_TRUE(store_->read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query("SELECT COUNT(*) FROM db_backups WHERE instance_id = ?", {id}));
      n = rows[0].integer(0);
      return ok();
    }));
    return n;
  };
  ASSERT_NO_FATAL_FAILURE(set_backups_quota(1));
  Reply r =
      trove(Method::kPost, "/backups", Json{{"backup", {{"name", "manual"}, {"instance", id}}}});
  ASSERT_EQ(r.status, 202) << r;
  const std::string manual = r.body["backup"]["id"];
  ASSERT_EQ(upload(manual, "manual").status, 200);

  run_pass();  // 08:00, the window started at 07:00; 1 of 1 backups held
  Json list = backups_of(id);
  ASSERT_EQ(list.size(), 1u) << list;
  EXPECT_EQ(list[0]["id"], manual);
  EXPECT_EQ(backup_rows(), 1) << "nothing half-made";
  Reply ev = trove(Method::kGet, "/instances/" + id + "/events");
  ASSERT_EQ(ev.status, 200) << ev;
  const Json& last = ev.body["events"].back();
  const std::string today = format_iso_naive(clock_.now()).substr(0, 10);
  EXPECT_EQ(last["type"], "backup.automated.skipped") << ev;
  EXPECT_EQ(last["message"], "Automated backup 'automated-" + today +
                                 "' skipped: Quota exceeded for resources: ['backups'].")
      << ev;
  EXPECT_EQ(last["detail"]["reason"], "Quota exceeded for resources: ['backups'].") << ev;
  r = trove(Method::kGet, "/instances/" + id);
  EXPECT_EQ(r.body["instance"]["status"], "ACTIVE") << r;

  // Skipped for the day: later passes neither retry nor record it again, even with room made.
  advance(std::chrono::hours(1));
  run_pass();
  ASSERT_NO_FATAL_FAILURE(set_backups_quota(2));
  run_pass();
  EXPECT_EQ(backups_of(id).size(), 1u);
  std::vector<std::string> types = event_types(id);
  EXPECT_EQ(count(types, "backup.automated.skipped"), 1);
  EXPECT_EQ(count(types, "backup.automated.started"), 0);

  // The schedule goes on: the next day's window makes one.
  advance(std::chrono::hours(23));  // 08:00 the next day
  run_pass();
  list = backups_of(id);
  ASSERT_EQ(list.size(), 2u) << list;
  EXPECT_EQ(list[1]["name"], "automated-" + format_iso_naive(clock_.now()).substr(0, 10));
  types = event_types(id);
  EXPECT_EQ(count(types, "backup.automated.skipped"), 1);
  EXPECT_EQ(count(types, "backup.automated.started"), 1);
}

// A pass deletes the backups past retention before it makes the day's: a project whose quota
// holds exactly its retained automated backups keeps getting one a day.
TEST_F(DatabaseOperationsTest, RetentionFreesTheBackupsQuotaBeforeTheDaysBackup) {
  const auto [id, a] = daily_backup_at_a_quota_of_one();  // day 0, 08:00: A, 1 of 1
  ASSERT_FALSE(a.empty());

  advance(std::chrono::hours(24) + std::chrono::minutes(1));  // day 1, 08:01: A is past retention
  run_pass();
  Json list = backups_of(id);
  ASSERT_EQ(list.size(), 1u) << list;
  EXPECT_NE(list[0]["id"], a);
  EXPECT_EQ(list[0]["name"], "automated-" + format_iso_naive(clock_.now()).substr(0, 10));
  const std::vector<std::string> types = event_types(id);
  EXPECT_EQ(count(types, "backup.automated.skipped"), 0);
  EXPECT_EQ(count(types, "backup.automated.started"), 2);
  EXPECT_EQ(count(types, "backup.retention.deleted"), 1);
}

// The usual day at such a quota: the window's first pass comes seconds before yesterday's
// backup (made by yesterday's first pass) passes its retention. The day's backup waits for it
// instead of being skipped; a wait that retention cannot end soon is a skip as before.
TEST_F(DatabaseOperationsTest, AnAutomatedBackupAtTheQuotaWaitsForOneThatRetentionFreesSoon) {
  const auto [id, a] = daily_backup_at_a_quota_of_one();  // day 0, 08:00: A, 1 of 1
  ASSERT_FALSE(a.empty());

  advance(std::chrono::hours(24) - std::chrono::seconds(20));  // A expires in 20 s
  run_pass();
  Json list = backups_of(id);
  ASSERT_EQ(list.size(), 1u) << list;
  EXPECT_EQ(list[0]["id"], a);
  std::vector<std::string> types = event_types(id);
  EXPECT_EQ(count(types, "backup.automated.skipped"), 0) << "waiting, not skipped";
  EXPECT_EQ(count(types, "backup.automated.started"), 1);

  advance(std::chrono::seconds(30));  // the next pass: A is gone, the day's backup is made
  run_pass();
  list = backups_of(id);
  ASSERT_EQ(list.size(), 1u) << list;
  EXPECT_NE(list[0]["id"], a);
  const std::string b = list[0]["id"];
  types = event_types(id);
  EXPECT_EQ(count(types, "backup.automated.skipped"), 0);
  EXPECT_EQ(count(types, "backup.automated.started"), 2);
  EXPECT_EQ(count(types, "backup.retention.deleted"), 1);
  ASSERT_EQ(upload(b, "b").status, 200);

  // The window moves to 05:00, so the next day's first pass comes three hours before B
  // expires: longer than kRetentionWait, so the day's backup is skipped.
  Reply r = trove(
      Method::kPut, "/instances/" + id,
      Json{{"instance", {{"backup_schedule", {{"window", "05:00"}, {"retention_days", 1}}}}}});
  ASSERT_EQ(r.status, 202) << r;
  advance(std::chrono::hours(21));  // day 2, 05:00:10; B expires at 08:00:10
  run_pass();
  types = event_types(id);
  EXPECT_EQ(count(types, "backup.automated.skipped"), 1);
  EXPECT_EQ(backups_of(id).size(), 1u);
}

TEST_F(DatabaseOperationsTest, RunningInstancesAndKeptBackupsAreMeteredHourly) {
  const std::string id = create_active();
  Reply r = trove(Method::kPost, "/backups", Json{{"backup", {{"name", "b1"}, {"instance", id}}}});
  ASSERT_EQ(r.status, 202) << r;
  const std::string backup = r.body["backup"]["id"];
  ASSERT_EQ(upload(backup, std::string(1 << 20, 'x')).status, 200);  // 1 MiB, metered from now
  // (start, quantity) of a resource's usage lines of one kind, oldest first.
  auto lines_of = [&](const std::string& resource, const std::string& kind_prefix) {
    std::vector<std::pair<int64_t, std::string>> out;
    EXPECT_TRUE(store_->read([&](store::Tx& tx) -> Status {
      usage::UsageFilter f;
      f.project_id = p1_;
      CONCORD_ASSIGN_OR_RETURN(auto events, usage::list(tx, f));
      for (const auto& e : events) {
        if (e.event.resource_id == resource && e.event.kind.starts_with(kind_prefix)) {
          out.emplace_back(e.event.start.time_since_epoch().count(), e.event.quantity);
        }
      }
      return ok();
    }));
    std::sort(out.begin(), out.end());
    return out;
  };
  advance(std::chrono::minutes(30));
  run_pass();
  EXPECT_TRUE(lines_of(id, "database.instance-seconds:").empty()) << "not an hour yet";
  EXPECT_TRUE(lines_of(backup, "database.backup-storage-gb-hours").empty());
  advance(std::chrono::minutes(45));
  run_pass();
  run_pass();  // the same interval is not metered twice
  auto lines = lines_of(id, "database.instance-seconds:");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].second, "4500");  // 75 minutes
  auto stored = lines_of(backup, "database.backup-storage-gb-hours");
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].second, "0.001220703");  // 1/1024 GiB for 1.25 h
  advance(std::chrono::minutes(70));
  run_pass();
  lines = lines_of(id, "database.instance-seconds:");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1].second, "4200");
  // Deleting the backup closes its last interval; nothing is counted twice.
  ASSERT_EQ(trove(Method::kDelete, "/backups/" + backup).status, 202);
  stored = lines_of(backup, "database.backup-storage-gb-hours");
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[1].second, "0.001139322");  // 70 minutes
}

TEST_F(DatabaseOperationsTest, OperationsRouteIsForAdminsOnly) {
  Reply r = trove(Method::kPost, "/mgmt/operations");
  EXPECT_EQ(r.status, 403) << r;
  EXPECT_EQ(r.body["forbidden"]["code"], 403) << r;
}

// ---- storage watch and metrics -------------------------------------------------------------

TEST_F(DatabaseOperationsTest, StorageLowIsShownAndRecordedOncePerEpisode) {
  const std::string id = create_active();
  const int64_t volume = int64_t{2} << 30;
  Reply r = trove(Method::kGet, "/instances/" + id);
  EXPECT_FALSE(r.body["instance"].contains("storage")) << "no detail reported yet";

  report_detail(id, "state_revision=1; postgresql 15; disk_used_bytes=1000; healthy");
  r = trove(Method::kGet, "/instances/" + id);
  EXPECT_EQ(r.body["instance"]["storage"]["used_bytes"], 1000) << r;
  EXPECT_EQ(r.body["instance"]["storage"]["low"], false) << r;
  run_pass();
  EXPECT_EQ(count(event_types(id), "storage.low"), 0);

  const std::string low =
      "state_revision=1; postgresql 15; disk_used_bytes=" + std::to_string(volume * 95 / 100) +
      "; healthy; storage low";
  report_detail(id, low);
  r = trove(Method::kGet, "/instances/" + id);
  EXPECT_EQ(r.body["instance"]["storage"]["low"], true) << r;
  EXPECT_EQ(r.body["instance"]["storage"]["used_bytes"], volume * 95 / 100) << r;
  run_pass();
  run_pass();
  std::vector<std::string> types = event_types(id);
  EXPECT_EQ(count(types, "storage.low"), 1);
  EXPECT_EQ(count(types, "storage.ok"), 0);

  report_detail(id, "state_revision=1; postgresql 15; disk_used_bytes=2000; healthy");
  run_pass();
  report_detail(id, low);
  run_pass();
  run_pass();
  types = event_types(id);
  EXPECT_EQ(count(types, "storage.low"), 2);
  EXPECT_EQ(count(types, "storage.ok"), 1);
  Reply ev = trove(Method::kGet, "/instances/" + id + "/events");
  EXPECT_EQ(ev.body["events"].back()["detail"]["used_bytes"], volume * 95 / 100) << ev;
  EXPECT_EQ(ev.body["events"].back()["detail"]["volume_bytes"], volume) << ev;

  // A full volume (the agent's storage guard made the instance read-only) is its own episode.
  EXPECT_EQ(trove(Method::kGet, "/instances/" + id).body["instance"]["storage"]["full"], false);
  report_detail(id, low + "; storage_full=1");
  r = trove(Method::kGet, "/instances/" + id);
  EXPECT_EQ(r.body["instance"]["storage"]["full"], true) << r;
  run_pass();
  run_pass();
  types = event_types(id);
  EXPECT_EQ(count(types, "storage.full"), 1);
  EXPECT_EQ(count(types, "storage.writable"), 0);
  report_detail(id, low);
  run_pass();
  types = event_types(id);
  EXPECT_EQ(count(types, "storage.full"), 1);
  EXPECT_EQ(count(types, "storage.writable"), 1);
  EXPECT_EQ(count(types, "storage.low"), 2) << "still low, the same episode";
}

TEST_F(DatabaseOperationsTest, ReplicaRebuildsAreRecordedOncePerEpisode) {
  const std::string id = create_active();
  const std::string streaming =
      "state_revision=1; postgresql 15; disk_used_bytes=10; healthy; role=replica; streaming=1";
  report_detail(id, streaming);
  run_pass();
  EXPECT_EQ(count(event_types(id), "replica.rebuilding"), 0);
  report_detail(id,
                "state_revision=1; postgresql 15; disk_used_bytes=10; healthy; role=replica; "
                "streaming=0; rebuild=needed");
  run_pass();
  report_detail(id,
                "state_revision=0; postgresql 15; disk_used_bytes=0; not running; "
                "rebuild=running");
  run_pass();
  std::vector<std::string> types = event_types(id);
  EXPECT_EQ(count(types, "replica.rebuilding"), 1);
  EXPECT_EQ(count(types, "replica.rebuilt"), 0);
  report_detail(id, streaming);
  run_pass();
  run_pass();
  types = event_types(id);
  EXPECT_EQ(count(types, "replica.rebuilding"), 1);
  EXPECT_EQ(count(types, "replica.rebuilt"), 1);
  EXPECT_EQ(types.back(), "replica.rebuilt");
  EXPECT_EQ(count(types, "storage.low"), 0) << "episodes are told apart";
}

TEST_F(DatabaseOperationsTest, ArchiveStallsAreShownAndRecordedOncePerEpisode) {
  const std::string id = create_active();
  const std::string base = "state_revision=1; postgresql 15; disk_used_bytes=10; healthy";
  http::Registry registry;
  db_->register_metrics(registry);
  auto stalled_series = [&] {
    std::string line = series_of(registry, "concord_database_archive_stalled_seconds", id);
    if (line.empty()) return std::string("none");
    line.pop_back();  // "\n"
    return line.substr(line.rfind(' ') + 1);
  };
  auto metric = [&] {
    Reply r = trove(Method::kGet, "/instances/" + id + "/metrics");
    EXPECT_EQ(r.status, 200) << r;
    return r.body["metrics"].value("archive_stalled_seconds", int64_t{-1});
  };
  report_detail(id, base);
  run_pass();
  EXPECT_EQ(metric(), 0);
  EXPECT_EQ(stalled_series(), "0");

  // The agent says since when (its text stays the same while the episode lasts); the service
  // shows how long that is by its own clock.
  const int64_t now_s =
      std::chrono::duration_cast<std::chrono::seconds>(clock_.now().time_since_epoch()).count();
  const std::string stalled = base + "; archive_stalled_since=" + std::to_string(now_s - 612);
  report_detail(id, stalled);
  run_pass();
  EXPECT_EQ(metric(), 612);
  EXPECT_EQ(stalled_series(), "612");
  advance(std::chrono::seconds(60));
  report_detail(id, stalled);
  run_pass();
  EXPECT_EQ(metric(), 672);
  std::vector<std::string> types = event_types(id);
  EXPECT_EQ(count(types, "archiving.stalled"), 1);
  EXPECT_EQ(count(types, "archiving.resumed"), 0);
  Reply ev = trove(Method::kGet, "/instances/" + id + "/events");
  EXPECT_EQ(ev.body["events"].back()["type"], "archiving.stalled") << ev;
  EXPECT_EQ(ev.body["events"].back()["detail"]["since"],
            format_iso_naive(SystemTime{std::chrono::seconds(now_s - 612)}).substr(0, 19))
      << ev;
  EXPECT_NE(ev.body["events"].back()["message"].get<std::string>().find("point-in-time restore"),
            std::string::npos)
      << ev;

  report_detail(id, base);
  run_pass();
  run_pass();
  types = event_types(id);
  EXPECT_EQ(count(types, "archiving.stalled"), 1);
  EXPECT_EQ(count(types, "archiving.resumed"), 1);
  EXPECT_EQ(types.back(), "archiving.resumed");
  EXPECT_EQ(metric(), 0);
  EXPECT_EQ(stalled_series(), "0");
  EXPECT_EQ(count(types, "storage.low"), 0) << "episodes are told apart";
  EXPECT_EQ(count(types, "replica.rebuilding"), 0);
}

// High availability needs the endpoints (parse_create_ha refuses it without them), which the
// other tests leave off. With them on, the HA controller's thread runs too; nothing answers at
// the members' engine addresses here, so it never marks the standby synchronous and never fails
// over (a failover needs a synchronized standby), and the members keep their roles.
class DatabaseOperationsTestWithEndpoints : public DatabaseOperationsTest {
 protected:
  void configure(DatabaseOptions& o) override {
    DatabaseOperationsTest::configure(o);
    o.endpoints = true;
  }
};

// Transaction pooling's pool size: from the flavor unless the tenant sets it, at create or
// later (the mode stays as created); bad values are refused in Trove's format and change
// nothing.
TEST_F(DatabaseOperationsTestWithEndpoints, PoolSizeComesFromTheFlavorOrTheTenant) {
  Reply r =
      trove(Method::kPost, "/instances", instance_body("pooled", {{"pooling", "transaction"}}));
  ASSERT_EQ(r.status, 200) << r;
  const std::string id = r.body["instance"].value("id", std::string());
  const std::string vcpus = std::to_string(server(id)->vcpus);
  auto pooling = [&](const std::string& of) {
    return trove(Method::kGet, "/instances/" + of).body["instance"]["pooling"];
  };
  EXPECT_EQ(pooling(id), Json({{"mode", "transaction"},
                               {"pool_size", proxy::default_pool_size(server(id)->vcpus)}}))
      << vcpus << " vCPUs";
  auto put = [&](const std::string& of, Json pool) {
    return trove(Method::kPut, "/instances/" + of, {{"instance", {{"pooling", pool}}}});
  };
  r = put(id, {{"pool_size", 3}});
  EXPECT_EQ(r.status, 202) << r;
  EXPECT_EQ(pooling(id), Json({{"mode", "transaction"}, {"pool_size", 3}}));
  for (const Json& bad :
       {Json{{"pool_size", 0}}, Json{{"pool_size", 1001}}, Json{{"pool_size", "8"}},
        Json{{"pool_size", 2.5}}, Json{{"mode", "session"}}, Json{{"size", 4}}, Json("transaction"),
        Json(8)}) {
    r = put(id, bad);
    EXPECT_EQ(r.status, 400) << bad << ": " << r;
    EXPECT_EQ(r.body["badRequest"]["code"], 400) << bad << ": " << r;
  }
  EXPECT_EQ(pooling(id)["pool_size"], 3);
  r = put(id, {{"pool_size", nullptr}, {"mode", "transaction"}});
  EXPECT_EQ(r.status, 202) << r;
  EXPECT_EQ(pooling(id)["pool_size"], proxy::default_pool_size(server(id)->vcpus));

  // Set at create; a session-mode instance shows its mode and takes no pool size.
  r = trove(Method::kPost, "/instances",
            instance_body("pooled12", {{"pooling", {{"mode", "transaction"}, {"pool_size", 12}}}}));
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(pooling(r.body["instance"].value("id", std::string())),
            Json({{"mode", "transaction"}, {"pool_size", 12}}));
  r = trove(Method::kPost, "/instances", instance_body("plain"));
  ASSERT_EQ(r.status, 200) << r;
  const std::string plain = r.body["instance"].value("id", std::string());
  EXPECT_EQ(pooling(plain), Json({{"mode", "session"}}));
  r = put(plain, {{"pool_size", 4}});
  EXPECT_EQ(r.status, 400) << r;

  // At create: what is not a mode and a size, a size out of range or without transaction
  // mode, and pooling of MariaDB; no instance is made.
  const size_t before = trove(Method::kGet, "/instances").body["instances"].size();
  for (const Json& bad : {Json("statement"), Json{{"mode", "transaction"}, {"pool_size", 0}},
                          Json{{"mode", "transaction"}, {"pool_size", -1}},
                          Json{{"mode", "session"}, {"pool_size", 4}}, Json{{"pool_size", 4}},
                          Json{{"mode", "transaction"}, {"max", 4}}, Json(5)}) {
    r = trove(Method::kPost, "/instances", instance_body("bad", {{"pooling", bad}}));
    EXPECT_EQ(r.status, 400) << bad << ": " << r;
    EXPECT_EQ(r.body["badRequest"]["code"], 400) << bad << ": " << r;
  }
  Json maria = instance_body("maria", {{"pooling", "transaction"}});
  maria["instance"]["datastore"] = {{"type", "mariadb"}};
  r = trove(Method::kPost, "/instances", maria);
  EXPECT_EQ(r.status, 400) << r;
  EXPECT_EQ(trove(Method::kGet, "/instances").body["instances"].size(), before);
}

// The endpoint proxies' own figures reach Prometheus per instance: the pool size in force
// follows the tenant's PUT (the proxy resizes on its own thread, so the scrape is polled), the
// proxy's counts are counters, and a session-mode endpoint has none of the pool's figures.
TEST_F(DatabaseOperationsTestWithEndpoints, EndpointPoolFiguresAreExportedPerInstance) {
  http::Registry registry;
  db_->register_metrics(registry);
  Reply r =
      trove(Method::kPost, "/instances", instance_body("pooled", {{"pooling", "transaction"}}));
  ASSERT_EQ(r.status, 200) << r;
  const std::string pooled = r.body["instance"].value("id", std::string());
  r = trove(Method::kPost, "/instances", instance_body("plain"));
  ASSERT_EQ(r.status, 200) << r;
  const std::string plain = r.body["instance"].value("id", std::string());
  // Waits (up to 10 s) until `family`'s line for `id` ends in " <value>"; returns that line.
  auto wait_for = [&](const std::string& family, const std::string& id, int value) {
    std::string line;
    const std::string want = "} " + std::to_string(value) + "\n";
    for (int i = 0; i < 200; ++i) {
      line = series_of(registry, family, id);
      if (line.size() >= want.size() && line.ends_with(want)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return line;
  };
  const int fallback = proxy::default_pool_size(server(pooled)->vcpus);
  std::string line = wait_for("concord_database_endpoint_pool_size", pooled, fallback);
  EXPECT_TRUE(line.ends_with("} " + std::to_string(fallback) + "\n")) << registry.render();
  EXPECT_NE(line.find("project=\"" + p1_ + "\""), std::string::npos) << line;
  r = trove(Method::kPut, "/instances/" + pooled,
            {{"instance", {{"pooling", {{"pool_size", 3}}}}}});
  ASSERT_EQ(r.status, 202) << r;
  line = wait_for("concord_database_endpoint_pool_size", pooled, 3);
  EXPECT_TRUE(line.ends_with("} 3\n")) << registry.render();

  const std::string text = registry.render();
  for (const char* counter : {"concord_database_endpoint_transactions_total",
                              "concord_database_endpoint_pool_waits_total",
                              "concord_database_endpoint_wait_timeouts_total",
                              "concord_database_endpoint_clients_refused_total"}) {
    EXPECT_NE(text.find(std::string("# TYPE ") + counter + " counter\n"), std::string::npos)
        << counter << "\n"
        << text;
    EXPECT_TRUE(series_of(registry, counter, pooled).ends_with("} 0\n")) << counter << text;
  }
  EXPECT_TRUE(wait_for("concord_database_endpoint_clients", plain, 0).ends_with("} 0\n")) << text;
  EXPECT_TRUE(
      series_of(registry, "concord_database_endpoint_server_connections", plain).ends_with("} 0\n"))
      << text;
  for (const char* pooled :
       {"concord_database_endpoint_pool_size", "concord_database_endpoint_transactions_total",
        "concord_database_endpoint_pool_waits_total",
        "concord_database_endpoint_wait_timeouts_total"}) {
    EXPECT_EQ(series_of(registry, pooled, plain), "") << pooled << " of a session endpoint\n"
                                                      << text;
  }
  EXPECT_TRUE(series_of(registry, "concord_database_endpoint_clients_refused_total", plain)
                  .ends_with("} 0\n"))
      << text;
}

// An HA member's server (<id>-m1, its metadata naming the instance) records its rebuild on the
// instance's feed, naming the member; its storage episodes are not recorded (only the first
// server's are: two members' episodes in one feed would mix).
TEST_F(DatabaseOperationsTestWithEndpoints, HaMemberRebuildIsRecordedOnTheInstanceNotItsStorage) {
  const std::string host2 = "h-db2";
  register_host(host2);  // the standby never shares its primary's host
  Reply r = trove(Method::kPost, "/instances", instance_body("ha1", {{"high_availability", true}}));
  ASSERT_EQ(r.status, 200) << r;
  const std::string id = r.body["instance"].value("id", std::string());
  const std::string member = id + "-m1";
  auto first = server(id);
  auto standby = server(member);
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(standby.has_value()) << "the standby member's server";
  ASSERT_FALSE(first->host.empty());
  ASSERT_FALSE(standby->host.empty());
  ASSERT_NE(first->host, standby->host);
  EXPECT_EQ(standby->metadata[std::string(compute::driver::database_keys::kInstance)], id);

  const std::string base = "state_revision=1; postgresql 15; disk_used_bytes=10; healthy";
  const std::string streaming = base + "; role=replica; streaming=1";
  report_detail(id, base + "; role=primary", 1, first->host);
  report_detail(member, streaming, 1, standby->host);
  r = trove(Method::kGet, "/instances/" + id);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["instance"]["status"], "ACTIVE") << r;
  ASSERT_EQ(server(id)->detail, base + "; role=primary") << "each server keeps its own detail";
  ASSERT_EQ(server(member)->detail, streaming);
  run_pass();
  EXPECT_EQ(count(event_types(id), "replica.rebuilding"), 0);

  // 1. The standby cannot go on and is made anew: one event on the instance, naming the member.
  report_detail(member, base + "; role=replica; streaming=0; rebuild=running", 1, standby->host);
  run_pass();
  std::vector<std::string> types = event_types(id);
  EXPECT_EQ(count(types, "replica.rebuilding"), 1);
  EXPECT_EQ(count(types, "replica.rebuilt"), 0);
  // The detail of the latest `type` event in the instance's feed ({} when there is none).
  auto detail_of = [&](const std::string& type) {
    Reply feed = trove(Method::kGet, "/instances/" + id + "/events");
    EXPECT_EQ(feed.status, 200) << feed;
    Json found = Json::object();
    for (const Json& e : feed.body["events"]) {
      if (e["type"] == type && e.contains("detail") && e["detail"].is_object()) {
        found = e["detail"];
      }
    }
    return found;
  };
  Json detail = detail_of("replica.rebuilding");
  EXPECT_EQ(detail.value("member", std::string()), member) << detail;

  // 2. The same detail again records nothing more.
  run_pass();
  run_pass();
  types = event_types(id);
  EXPECT_EQ(count(types, "replica.rebuilding"), 1);
  EXPECT_EQ(count(types, "replica.rebuilt"), 0);

  // 3. Streaming again: the episode ends, once, naming the same member.
  report_detail(member, streaming, 1, standby->host);
  run_pass();
  run_pass();
  types = event_types(id);
  EXPECT_EQ(count(types, "replica.rebuilding"), 1);
  EXPECT_EQ(count(types, "replica.rebuilt"), 1);
  EXPECT_EQ(types.back(), "replica.rebuilt");
  detail = detail_of("replica.rebuilt");
  EXPECT_EQ(detail.value("member", std::string()), member) << detail;

  // 4. Storage: the member's low storage is not the instance's episode; the first server's is.
  report_detail(member, streaming + "; storage low", 1, standby->host);
  run_pass();
  run_pass();
  types = event_types(id);
  EXPECT_EQ(count(types, "storage.low"), 0) << "a member's storage episode is not recorded";
  EXPECT_EQ(count(types, "storage.ok"), 0);
  EXPECT_EQ(count(types, "replica.rebuilding"), 1) << "episodes are told apart";
  report_detail(id, base + "; role=primary; storage low", 1, first->host);
  run_pass();
  run_pass();
  types = event_types(id);
  EXPECT_EQ(count(types, "storage.low"), 1);
  EXPECT_EQ(count(types, "storage.ok"), 0);
  detail = detail_of("storage.low");
  EXPECT_FALSE(detail.contains("member")) << detail;
  EXPECT_EQ(detail.value("used_bytes", int64_t{0}), 10) << detail;
}

TEST_F(DatabaseOperationsTest, PrometheusSeriesFollowWhatTheAgentReported) {
  const std::string id = create_active();
  http::Registry registry;
  db_->register_metrics(registry);
  auto series = [&](const std::string& family) { return series_of(registry, family, id); };
  EXPECT_EQ(series("concord_database_replica_rebuilding"), "") << "no replica reported";

  report_detail(id,
                "state_revision=1; postgresql 15; disk_used_bytes=4096; healthy; role=replica; "
                "streaming=1; lag_seconds=3");
  EXPECT_NE(series("concord_database_instance_disk_used_bytes").find("} 4096"), std::string::npos)
      << registry.render();
  EXPECT_NE(series("concord_database_replication_lag_seconds").find("} 3"), std::string::npos)
      << registry.render();
  EXPECT_NE(series("concord_database_replica_rebuilding").find("} 0"), std::string::npos)
      << registry.render();

  report_detail(id,
                "state_revision=0; postgresql 15; disk_used_bytes=0; not running; "
                "rebuild=running");
  EXPECT_NE(series("concord_database_replica_rebuilding").find("} 1"), std::string::npos)
      << registry.render();
  EXPECT_EQ(series("concord_database_replication_lag_seconds"), "") << registry.render();
}

TEST_F(DatabaseOperationsTest, DetailIsWrittenOnlyWhenItChanges) {
  const std::string id = create_active();
  report_detail(id, "state_revision=1; postgresql 15; disk_used_bytes=10; healthy");
  auto updated_at = [&] {
    std::string at;
    EXPECT_TRUE(store_->read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query("SELECT updated_at FROM compute_server_details WHERE server_id = ?", {id}));
      if (!rows.empty()) at = rows[0].text(0);
      return ok();
    }));
    return at;
  };
  const std::string first = updated_at();
  ASSERT_FALSE(first.empty());
  advance(std::chrono::seconds(10));
  report_detail(id, "state_revision=1; postgresql 15; disk_used_bytes=10; healthy");
  EXPECT_EQ(updated_at(), first) << "the same text is not written again";
  report_detail(id, "state_revision=1; postgresql 15; disk_used_bytes=11; healthy");
  EXPECT_NE(updated_at(), first);
  auto s = server(id);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->detail, "state_revision=1; postgresql 15; disk_used_bytes=11; healthy");
}

TEST_F(DatabaseOperationsTest, MetricsShowWhatTheAgentReported) {
  const std::string id = create_active();
  Reply r = trove(Method::kGet, "/instances/" + id + "/metrics");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["metrics"]["status"], "ACTIVE");
  EXPECT_EQ(r.body["metrics"]["volume_bytes"], int64_t{2} << 30);
  EXPECT_TRUE(r.body["metrics"]["disk_used_bytes"].is_null()) << r;

  report_detail(id,
                "state_revision=1; postgresql 15; disk_used_bytes=4096; healthy; role=replica; "
                "streaming=1; lag_seconds=2.5");
  r = trove(Method::kGet, "/instances/" + id + "/metrics");
  ASSERT_EQ(r.status, 200) << r;
  const Json& m = r.body["metrics"];
  EXPECT_EQ(m["disk_used_bytes"], 4096) << r;
  EXPECT_EQ(m["applied_revision"], 1) << r;
  EXPECT_EQ(m["state_revision"], 1) << r;
  EXPECT_EQ(m["storage_low"], false) << r;
  EXPECT_EQ(m["role"], "replica") << r;
  EXPECT_EQ(m["replication_streaming"], true) << r;
  EXPECT_DOUBLE_EQ(m["replication_lag_seconds"].get<double>(), 2.5) << r;
  EXPECT_FALSE(m.contains("replica_rebuild")) << r;

  // A replica that cannot go on, being made anew by its agent.
  report_detail(id,
                "state_revision=1; postgresql 15; disk_used_bytes=4096; postgresql is not "
                "running; rebuild=running");
  r = trove(Method::kGet, "/instances/" + id + "/metrics");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["metrics"]["replica_rebuild"], "running") << r;

  r = trove(Method::kGet, "/instances/" + id + "/metrics", nullptr, member2_, p2_);
  EXPECT_EQ(r.status, 404) << r;
}

}  // namespace
}  // namespace concord::database::service
