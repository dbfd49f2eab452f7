// Trove backups and restore (src/database/service/api_backups.cc) on a real store, real tokens
// and the real compute service, as service_api_test.cc: the agent's part (running the backup,
// uploading it, shipping archived logs) is played through the database service's own agent
// routes (/agent/v1/database) with real agent credentials.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/encoding.h"
#include "base/json.h"
#include "base/time_format.h"
#include "compute/driver/util.h"
#include "database/service/database_service.h"
#include "http/router.h"
#include "service_test_fixture.h"

namespace concord::database::service {
namespace {

using compute::agent_testing::Reply;
using http::Method;

constexpr const char* kOtherHost = "h-other";

int64_t us_of(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

// The shared fixture with backup storage under its temp dir, the database service's agent routes
// mounted, and a second host that does not offer the database driver.
class DatabaseBackupTest : public DatabaseServiceTest {
 protected:
  DatabaseBackupTest()
      : DatabaseServiceTest("concord-database-backups", "req-database-backup-test") {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(DatabaseServiceTest::SetUp());
    router_.mount("/agent/v1/database", db_->agent_routes(), http::keystone_style_error);
    // A host without the database driver: its agent is genuine but runs no instance.
    register_host(kOtherHost, "container");
  }

  void configure(DatabaseOptions& o) override { o.backup_dir = dir_.path() + "/database-backups"; }

  // A call to the database service's agent routes as `host`'s agent.
  Reply db_agent(Method method, const std::string& path, const std::string& body = {},
                 std::vector<http::Header> extra = {}, const std::string& host = kHost) {
    extra.push_back(agent_header(host));
    return dispatch_raw(method, "/agent/v1/database" + path, body, std::move(extra));
  }

  static Json instance_body(const std::string& name, const std::string& datastore = "postgresql",
                            int volume = 2) {
    return {{"instance",
             {{"name", name},
              {"flavorRef", "2"},
              {"volume", {{"size", volume}}},
              {"datastore", {{"type", datastore}}}}}};
  }

  std::string create_active(const std::string& name = "db1") {
    Reply r = trove(Method::kPost, "/instances", instance_body(name));
    EXPECT_EQ(r.status, 200) << r;
    const std::string id = r.body["instance"].value("id", std::string());
    report(id, 1);
    r = trove(Method::kGet, "/instances/" + id);
    EXPECT_EQ(r.body["instance"]["status"], "ACTIVE") << r;
    return id;
  }

  Reply create_backup(const std::string& instance_id, const std::string& name = "b1",
                      Json extra = Json::object(), const std::string& tok = {},
                      const std::string& project = {}) {
    Json b = {{"name", name}, {"instance", instance_id}};
    for (auto& [k, v] : extra.items()) b[k] = v;
    return trove(Method::kPost, "/backups", Json{{"backup", b}}, tok, project);
  }

  // The agent uploads `data` for the backup, as the driver does after Engine::backup.
  Reply upload(const std::string& backup_id, const std::string& data, int64_t consistent_at_us,
               const std::string& engine_meta = R"({"lsn":"0/3000028"})",
               const std::string& host = kHost, std::string sha = {}) {
    if (sha.empty()) sha = compute::driver::sha256_hex(data);
    Json info = {
        {"kind", "full"}, {"consistent_at_us", consistent_at_us}, {"meta_json", engine_meta}};
    return db_agent(Method::kPut, "/backups/" + backup_id + "/data", data,
                    {{"x-concord-sha256", sha},
                     {"x-concord-backup-info", base64url_encode(dump_json(info), false)}},
                    host);
  }

  // A completed backup of the instance, consistent at the clock's now.
  std::string completed_backup(const std::string& instance_id, const std::string& data,
                               const std::string& name = "b1", Json extra = Json::object()) {
    Reply r = create_backup(instance_id, name, std::move(extra));
    EXPECT_EQ(r.status, 202) << r;
    const std::string id = r.body["backup"].value("id", std::string());
    r = upload(id, data, us_of(clock_.now()));
    EXPECT_EQ(r.status, 200) << r;
    return id;
  }

  Reply put_log(const std::string& instance_id, const std::string& name, const std::string& data,
                int64_t first_us, int64_t last_us, const std::string& host = kHost) {
    return db_agent(Method::kPut, "/instances/" + instance_id + "/logs/" + name, data,
                    {{"x-concord-sha256", compute::driver::sha256_hex(data)},
                     {"x-concord-log-first-us", std::to_string(first_us)},
                     {"x-concord-log-last-us", std::to_string(last_us)}},
                    host);
  }

  // Moves the fake clock; the hosts heartbeat and the tokens are renewed, as in real time.
  void advance(std::chrono::microseconds by) {
    clock_.advance(by);
    register_host(kHost, "database");
    register_host(kOtherHost, "container");
    member1_ = token("member1", "member1-pw", "p1");
    member2_ = token("member2", "member2-pw", "p2");
    admin_ = token("admin", "admin-secret", "admin");
  }

  static std::string read_whole(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
};

TEST_F(DatabaseBackupTest, BackupRunsThroughItsStatesAndLeavesTheDesiredState) {
  const std::string inst = create_active();
  const int64_t rev0 = state_of(inst).revision;
  Reply r = create_backup(inst, "nightly", {{"description", "before the upgrade"}});
  ASSERT_EQ(r.status, 202) << r;
  const Json b = r.body["backup"];
  const std::string id = b["id"];
  EXPECT_EQ(b["status"], "NEW");
  EXPECT_EQ(b["name"], "nightly");
  EXPECT_EQ(b["description"], "before the upgrade");
  EXPECT_EQ(b["instance_id"], inst);
  EXPECT_EQ(b["datastore"]["type"], "postgresql");
  EXPECT_EQ(b["datastore"]["version"], "15");
  EXPECT_EQ(b["project_id"], p1_);
  EXPECT_TRUE(b["size"].is_null());
  EXPECT_TRUE(b["parent_id"].is_null());

  // The request reaches the agent through the desired state; the instance shows BACKUP.
  engine::DesiredState st = state_of(inst);
  ASSERT_TRUE(st.backup.has_value());
  EXPECT_EQ(st.backup->id, id);
  EXPECT_TRUE(st.backup->parent_id.empty());
  EXPECT_GT(st.revision, rev0);
  r = trove(Method::kGet, "/instances/" + inst);
  EXPECT_EQ(r.body["instance"]["status"], "BACKUP") << r;

  // Only one at a time.
  r = create_backup(inst, "second");
  EXPECT_EQ(r.status, 409) << r;
  EXPECT_EQ(r.body["conflictingRequest"]["code"], 409) << r;

  r = db_agent(Method::kPost, "/backups/" + id + "/progress", R"({"status": "BUILDING"})");
  ASSERT_EQ(r.status, 204) << r;
  r = trove(Method::kGet, "/backups/" + id);
  EXPECT_EQ(r.body["backup"]["status"], "BUILDING") << r;
  r = db_agent(Method::kPost, "/backups/" + id + "/progress", R"({"status": "SAVING"})");
  ASSERT_EQ(r.status, 204) << r;
  // Never backwards.
  r = db_agent(Method::kPost, "/backups/" + id + "/progress", R"({"status": "BUILDING"})");
  ASSERT_EQ(r.status, 204) << r;
  r = trove(Method::kGet, "/backups/" + id);
  EXPECT_EQ(r.body["backup"]["status"], "SAVING") << r;

  const std::string data(3 << 20, 'x');
  const int64_t at = us_of(clock_.now()) - 5'000'000;
  r = upload(id, data, at);
  ASSERT_EQ(r.status, 200) << r;
  r = trove(Method::kGet, "/backups/" + id);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["backup"]["status"], "COMPLETED") << r;
  EXPECT_DOUBLE_EQ(r.body["backup"]["size"].get<double>(), 3.0 / 1024) << r;
  EXPECT_EQ(r.body["backup"]["consistent_at"],
            format_keystone_time(SystemTime{std::chrono::microseconds(at)}));
  EXPECT_TRUE(r.body["backup"]["locationRef"].get<std::string>().ends_with("/v1.0/" + p1_ +
                                                                           "/backups/" + id))
      << r;

  // Done: the request left the desired state (a new revision), the instance is ACTIVE again.
  engine::DesiredState after = state_of(inst);
  EXPECT_FALSE(after.backup.has_value());
  EXPECT_GT(after.revision, st.revision);
  r = trove(Method::kGet, "/instances/" + inst);
  EXPECT_EQ(r.body["instance"]["status"], "ACTIVE") << r;
  // Uploading the same data again (a lost answer) is fine; other data is refused.
  EXPECT_EQ(upload(id, data, at).status, 200);
  EXPECT_EQ(upload(id, "other", at).status, 409);

  // Lists: the project's, the instance's, by datastore.
  r = trove(Method::kGet, "/backups");
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["backups"].size(), 1u) << r;
  EXPECT_EQ(r.body["backups"][0]["id"], id);
  r = trove(Method::kGet, "/instances/" + inst + "/backups");
  ASSERT_EQ(r.body["backups"].size(), 1u) << r;
  r = trove(Method::kGet, "/backups?datastore=mariadb");
  EXPECT_EQ(r.body["backups"].size(), 0u) << r;
  r = trove(Method::kGet, "/backups?datastore=postgresql&instance_id=" + inst);
  EXPECT_EQ(r.body["backups"].size(), 1u) << r;

  // Any agent fetches the data for a restore, with its checksum.
  r = db_agent(Method::kGet, "/backups/" + id + "/data", {}, {}, kOtherHost);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.raw.header("x-concord-sha256"), compute::driver::sha256_hex(data));
  ASSERT_FALSE(r.raw.body_file.empty());
  EXPECT_EQ(read_whole(r.raw.body_file), data);
}

TEST_F(DatabaseBackupTest, CreateIsValidated) {
  // Not ACTIVE yet (never reported): 422, Trove's "not available".
  Reply r = trove(Method::kPost, "/instances", instance_body("building"));
  ASSERT_EQ(r.status, 200) << r;
  const std::string building = r.body["instance"]["id"];
  r = create_backup(building);
  EXPECT_EQ(r.status, 422) << r;
  EXPECT_EQ(r.body["unprocessableEntity"]["code"], 422) << r;

  const std::string inst = create_active();
  EXPECT_EQ(create_backup("no-such-instance").status, 404);
  r = trove(Method::kPost, "/backups", Json{{"backup", {{"instance", inst}}}});
  EXPECT_EQ(r.status, 400) << r;  // no name
  r = trove(Method::kPost, "/backups", Json{{"backup", {{"name", "x"}}}});
  EXPECT_EQ(r.status, 400) << r;  // no instance
  r = create_backup(inst, "x", {{"incremental", "yes"}});
  EXPECT_EQ(r.status, 400) << r;
  r = create_backup(inst, "x", {{"swift_container", "c"}});
  EXPECT_EQ(r.status, 400) << r;
  r = create_backup(inst, "x", {{"parent_id", "no-such-backup"}});
  EXPECT_EQ(r.status, 400) << r;
  // Another tenant cannot back up the instance (it does not exist for them).
  r = create_backup(inst, "theirs", Json::object(), member2_, p2_);
  EXPECT_EQ(r.status, 404) << r;
  // Nothing was recorded by the refused calls.
  r = trove(Method::kGet, "/backups");
  EXPECT_EQ(r.body["backups"].size(), 0u) << r;
}

TEST_F(DatabaseBackupTest, AgentFailureEndsTheBackup) {
  const std::string inst = create_active();
  Reply r = create_backup(inst);
  ASSERT_EQ(r.status, 202) << r;
  const std::string id = r.body["backup"]["id"];
  r = db_agent(Method::kPost, "/backups/" + id + "/failed",
               R"({"reason": "pg_basebackup: could not connect"})");
  ASSERT_EQ(r.status, 204) << r;
  r = trove(Method::kGet, "/backups/" + id);
  EXPECT_EQ(r.body["backup"]["status"], "FAILED") << r;
  EXPECT_EQ(r.body["backup"]["fail_reason"], "pg_basebackup: could not connect") << r;
  EXPECT_FALSE(state_of(inst).backup.has_value());
  r = trove(Method::kGet, "/instances/" + inst);
  EXPECT_EQ(r.body["instance"]["status"], "ACTIVE") << r;
  // A failed backup takes no data, and a new one may start.
  EXPECT_EQ(upload(id, "late", us_of(clock_.now())).status, 422);
  EXPECT_EQ(create_backup(inst, "again").status, 202);
  // A failed backup can be deleted; a running one cannot.
  EXPECT_EQ(trove(Method::kDelete, "/backups/" + id).status, 202);
  r = trove(Method::kGet, "/backups");
  ASSERT_EQ(r.body["backups"].size(), 1u) << r;
  const std::string running = r.body["backups"][0]["id"];
  r = trove(Method::kDelete, "/backups/" + running);
  EXPECT_EQ(r.status, 422) << r;
}

TEST_F(DatabaseBackupTest, ChecksumMismatchKeepsTheBackupWaiting) {
  const std::string inst = create_active();
  Reply r = create_backup(inst);
  const std::string id = r.body["backup"]["id"];
  r = upload(id, "the real archive", us_of(clock_.now()), "{}", kHost,
             compute::driver::sha256_hex("what the agent meant to send"));
  EXPECT_EQ(r.status, 400) << r;
  EXPECT_NE(r.message().find("checksum mismatch"), std::string::npos) << r;
  r = trove(Method::kGet, "/backups/" + id);
  EXPECT_EQ(r.body["backup"]["status"], "NEW") << r;
  EXPECT_TRUE(state_of(inst).backup.has_value());  // the agent redoes it
  // Nothing of the bad upload stays in the blob store.
  size_t blobs = 0;
  for (const auto& e :
       std::filesystem::recursive_directory_iterator(dir_.path() + "/database-backups/sha256")) {
    blobs += e.is_regular_file() ? 1 : 0;
  }
  EXPECT_EQ(blobs, 0u);
  r = upload(id, "the real archive", us_of(clock_.now()));
  EXPECT_EQ(r.status, 200) << r;
}

TEST_F(DatabaseBackupTest, AgentRoutesNeedTheInstancesOwnAgent) {
  const std::string inst = create_active();
  Reply r = create_backup(inst);
  const std::string id = r.body["backup"]["id"];
  const std::string data = "archive";
  const std::string sha = compute::driver::sha256_hex(data);
  // No credential, a wrong one, a tenant token: 401.
  r = dispatch_raw(Method::kPut, "/agent/v1/database/backups/" + id + "/data", data,
                   {{"x-concord-sha256", sha}});
  EXPECT_EQ(r.status, 401) << r;
  r = dispatch_raw(
      Method::kPut, "/agent/v1/database/backups/" + id + "/data", data,
      {{"x-concord-sha256", sha}, {"x-concord-agent", std::string(kHost) + ":forged"}});
  EXPECT_EQ(r.status, 401) << r;
  r = dispatch_raw(Method::kGet, "/agent/v1/database/backups/" + id + "/data", "",
                   {{"x-auth-token", admin_}});
  EXPECT_EQ(r.status, 401) << r;
  r = dispatch_raw(Method::kGet, "/agent/v1/database/instances/" + inst + "/logs", "",
                   {{"x-auth-token", member1_}});
  EXPECT_EQ(r.status, 401) << r;
  // Another host's genuine agent may not complete, fail or advance it, nor ship its logs: 403.
  r = upload(id, data, us_of(clock_.now()), "{}", kOtherHost);
  EXPECT_EQ(r.status, 403) << r;
  r = db_agent(Method::kPost, "/backups/" + id + "/failed", R"({"reason": "x"})", {}, kOtherHost);
  EXPECT_EQ(r.status, 403) << r;
  r = db_agent(Method::kPost, "/backups/" + id + "/progress", R"({"status": "BUILDING"})", {},
               kOtherHost);
  EXPECT_EQ(r.status, 403) << r;
  r = put_log(inst, "000000010000000000000001", "wal", 1, 2, kOtherHost);
  EXPECT_EQ(r.status, 403) << r;
  r = trove(Method::kGet, "/backups/" + id);
  EXPECT_EQ(r.body["backup"]["status"], "NEW") << r;
  // The instance's own agent may.
  EXPECT_EQ(upload(id, data, us_of(clock_.now())).status, 200);
  // Unknown backups: 404.
  r = db_agent(Method::kGet, "/backups/no-such-backup/data");
  EXPECT_EQ(r.status, 404) << r;
}

TEST_F(DatabaseBackupTest, TenantsSeeOnlyTheirBackups) {
  const std::string inst = create_active();
  const std::string id = completed_backup(inst, "p1 data");
  Reply r = trove(Method::kGet, "/backups/" + id, nullptr, member2_, p2_);
  EXPECT_EQ(r.status, 404) << r;
  EXPECT_EQ(r.body["itemNotFound"]["code"], 404) << r;
  r = trove(Method::kDelete, "/backups/" + id, nullptr, member2_, p2_);
  EXPECT_EQ(r.status, 404) << r;
  r = trove(Method::kGet, "/backups", nullptr, member2_, p2_);
  EXPECT_EQ(r.body["backups"].size(), 0u) << r;
  r = trove(Method::kGet, "/backups?all_projects=True", nullptr, member2_, p2_);
  EXPECT_EQ(r.status, 403) << r;
  r = trove(Method::kGet, "/instances/" + inst + "/backups", nullptr, member2_, p2_);
  EXPECT_EQ(r.status, 404) << r;
  // Restoring it into their own project: 404 as well.
  Json body = instance_body("stolen");
  body["instance"]["restorePoint"] = {{"backupRef", id}};
  r = trove(Method::kPost, "/instances", body, member2_, p2_);
  EXPECT_EQ(r.status, 404) << r;
  // An admin sees every project's.
  std::string admin_pid;
  ASSERT_TRUE(store_->read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query("SELECT id FROM identity_projects WHERE name = 'admin'"));
    if (!rows.empty()) admin_pid = rows[0].text(0);
    return ok();
  }));
  ASSERT_FALSE(admin_pid.empty());
  r = trove(Method::kGet, "/backups?all_projects=True", nullptr, admin_, admin_pid);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["backups"].size(), 1u) << r;
  r = trove(Method::kGet, "/backups/" + id, nullptr, admin_, admin_pid);
  EXPECT_EQ(r.status, 200) << r;
}

TEST_F(DatabaseBackupTest, IncrementalChainDeletionAndUsage) {
  const std::string inst = create_active();
  const std::string full = completed_backup(inst, "full data", "full");
  advance(std::chrono::hours(1));
  Reply r = create_backup(inst, "incr", {{"incremental", 1}});
  ASSERT_EQ(r.status, 202) << r;
  const std::string incr = r.body["backup"]["id"];
  EXPECT_EQ(r.body["backup"]["parent_id"], full);
  engine::DesiredState st = state_of(inst);
  ASSERT_TRUE(st.backup.has_value());
  EXPECT_EQ(st.backup->parent_id, full);
  EXPECT_EQ(st.backup->parent_meta_json, R"({"lsn":"0/3000028"})");
  ASSERT_EQ(upload(incr, "incremental data", us_of(clock_.now())).status, 200);

  // An incremental on top of the incremental, still running: the chain cannot go meanwhile,
  // and nothing of it goes.
  r = create_backup(inst, "incr2", {{"incremental", 1}});
  ASSERT_EQ(r.status, 202) << r;
  const std::string incr2 = r.body["backup"]["id"];
  EXPECT_EQ(r.body["backup"]["parent_id"], incr);
  r = trove(Method::kDelete, "/backups/" + full);
  EXPECT_EQ(r.status, 422) << r;
  EXPECT_NE(r.body.dump().find(incr2), std::string::npos) << r;
  EXPECT_EQ(trove(Method::kGet, "/backups/" + full).status, 200);
  EXPECT_EQ(trove(Method::kGet, "/backups/" + incr).status, 200);
  r = db_agent(Method::kPost, "/backups/" + incr2 + "/failed", R"({"reason": "disk full"})");
  ASSERT_EQ(r.status, 204) << r;

  // As Trove: deleting a backup deletes the incremental backups built on it, recursively.
  advance(std::chrono::hours(2));
  EXPECT_EQ(trove(Method::kDelete, "/backups/" + full).status, 202);
  EXPECT_EQ(trove(Method::kGet, "/backups/" + full).status, 404);
  EXPECT_EQ(trove(Method::kGet, "/backups/" + incr).status, 404);
  EXPECT_EQ(trove(Method::kGet, "/backups/" + incr2).status, 404);
  // Their data went with them.
  r = db_agent(Method::kGet, "/backups/" + full + "/data");
  EXPECT_EQ(r.status, 404) << r;
  size_t blobs = 0;
  for (const auto& e :
       std::filesystem::recursive_directory_iterator(dir_.path() + "/database-backups/sha256")) {
    blobs += e.is_regular_file() ? 1 : 0;
  }
  EXPECT_EQ(blobs, 0u);
  // Storage usage: one event per backup, resource type database.backup, in GB-hours.
  int events = 0;
  ASSERT_TRUE(store_->read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query("SELECT resource_id, quantity, unit FROM usage_events WHERE resource_type = "
                 "'database.backup' ORDER BY resource_id"));
    for (const store::Row& row : rows) {
      ++events;
      EXPECT_EQ(row.text(2), "GB-h");
      // 9 bytes for 3 hours, 16 bytes for 2 hours: tiny but not zero.
      EXPECT_TRUE(row.text(1).starts_with("0.0000000")) << row.text(1);
      EXPECT_NE(row.text(1), "0");
    }
    return ok();
  }));
  EXPECT_EQ(events, 2);
}

TEST_F(DatabaseBackupTest, RestoreIsValidatedAndCarriesTheChain) {
  const std::string inst = create_active();
  // What the archive will hold: the restored instance starts with these (its desired state is
  // authoritative, so without them the driver would drop what the restore brought back).
  Reply made = trove(Method::kPost, "/instances/" + inst + "/databases",
                     Json{{"databases", Json::array({{{"name", "shop"}}})}});
  ASSERT_EQ(made.status, 202) << made;
  made = trove(Method::kPost, "/instances/" + inst + "/users",
               Json{{"users", Json::array({{{"name", "app"},
                                            {"password", "App-pw-1"},
                                            {"databases", Json::array({{{"name", "shop"}}})}}})}});
  ASSERT_EQ(made.status, 202) << made;
  const engine::DesiredState source = state_of(inst);
  ASSERT_EQ(source.users.size(), 1u);
  const std::string full = completed_backup(inst, "full data", "full");
  advance(std::chrono::minutes(5));
  const std::string incr = completed_backup(inst, "incr data", "incr", {{"incremental", true}});

  Json body = instance_body("restored");
  body["instance"]["restorePoint"] = {{"backupRef", incr}};
  Reply r = trove(Method::kPost, "/instances", body);
  ASSERT_EQ(r.status, 200) << r;
  const std::string restored = r.body["instance"]["id"];
  engine::DesiredState st = state_of(restored);
  ASSERT_TRUE(st.restore.has_value());
  ASSERT_EQ(st.restore->chain.size(), 2u);
  EXPECT_EQ(st.restore->chain[0].backup_id, full);
  EXPECT_EQ(st.restore->chain[0].sha256, compute::driver::sha256_hex("full data"));
  EXPECT_EQ(st.restore->chain[0].size_bytes, 9);
  EXPECT_EQ(st.restore->chain[0].meta_json, R"({"lsn":"0/3000028"})");
  EXPECT_EQ(st.restore->chain[1].backup_id, incr);
  EXPECT_TRUE(st.restore->log_source_instance.empty());
  EXPECT_EQ(st.restore->target_time_us, 0);
  ASSERT_EQ(st.databases.size(), 1u);
  EXPECT_EQ(st.databases[0].name, "shop");
  ASSERT_EQ(st.users.size(), 1u);
  EXPECT_EQ(st.users[0], source.users[0]);  // the same verifier: the same password logs in
  r = trove(Method::kGet, "/instances/" + restored + "/users");
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["users"].size(), 1u) << r;
  EXPECT_EQ(r.body["users"][0]["name"], "app");
  // A later change keeps them (rows now), and does not bring a deleted one back.
  ASSERT_EQ(trove(Method::kDelete, "/instances/" + restored + "/users/app").status, 202);
  st = state_of(restored);
  EXPECT_TRUE(st.users.empty());
  EXPECT_EQ(st.databases.size(), 1u);

  // Another datastore: 400.
  body = instance_body("wrong-datastore", "mariadb");
  body["instance"]["restorePoint"] = {{"backupRef", full}};
  r = trove(Method::kPost, "/instances", body);
  EXPECT_EQ(r.status, 400) << r;
  // A backup still running: 400.
  r = create_backup(inst, "running");
  const std::string running = r.body["backup"]["id"];
  body = instance_body("from-running");
  body["instance"]["restorePoint"] = {{"backupRef", running}};
  r = trove(Method::kPost, "/instances", body);
  EXPECT_EQ(r.status, 400) << r;
  // No such backup: 404; malformed restorePoint: 400.
  body["instance"]["restorePoint"] = {{"backupRef", "no-such-backup"}};
  EXPECT_EQ(trove(Method::kPost, "/instances", body).status, 404);
  body["instance"]["restorePoint"] = "full";
  EXPECT_EQ(trove(Method::kPost, "/instances", body).status, 400);
  body["instance"]["restorePoint"] = Json::object();
  EXPECT_EQ(trove(Method::kPost, "/instances", body).status, 400);
  // A volume smaller than the backup: 400.
  ASSERT_TRUE(store_->write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(int64_t n, tx.exec("UPDATE db_backups SET size_bytes = ? WHERE id = ?",
                                                {int64_t{3} << 30, full}));
    (void)n;
    return ok();
  }));
  body = instance_body("too-small", "postgresql", 2);
  body["instance"]["restorePoint"] = {{"backupRef", full}};
  r = trove(Method::kPost, "/instances", body);
  EXPECT_EQ(r.status, 400) << r;
  body = instance_body("big-enough", "postgresql", 3);
  body["instance"]["restorePoint"] = {{"backupRef", full}};
  EXPECT_EQ(trove(Method::kPost, "/instances", body).status, 200);
}

// With the endpoints on, as high availability needs.
class DatabaseBackupTestWithEndpoints : public DatabaseBackupTest {
 protected:
  void configure(DatabaseOptions& o) override {
    DatabaseBackupTest::configure(o);
    o.endpoints = true;
  }

  // An ACTIVE MariaDB HA instance: its primary member (the instance id) and its standby
  // ("<id>-m1", on a second database host) both reported running.
  std::string create_active_ha(const std::string& name) {
    register_host(kSecondDbHost);  // the standby never shares its primary's host
    Json body = instance_body(name, "mariadb");
    body["instance"]["high_availability"] = true;
    Reply r = trove(Method::kPost, "/instances", body);
    EXPECT_EQ(r.status, 200) << r;
    const std::string id = r.body["instance"].value("id", std::string());
    auto primary = server(id);
    auto standby = server(id + "-m1");
    EXPECT_TRUE(primary.has_value() && standby.has_value());
    if (!primary || !standby) return id;
    const std::string detail = "state_revision=1; mariadb 10.11; disk_used_bytes=10; healthy";
    // Reported again, at each server's current generation, until the instance shows ACTIVE:
    // the HA controller runs beside and may push the members' desired state again (a
    // generation 1 report then leaves them BUILD), and once in CI, on a loaded machine, the
    // instance was still BUILD right after the first reports.
    for (int i = 0; i < 50; ++i) {
      report_detail(id, detail + "; role=primary", spec_generation(id), primary->host);
      report_detail(id + "-m1", detail + "; role=replica; streaming=1", spec_generation(id + "-m1"),
                    standby->host);
      if (trove(Method::kGet, "/instances/" + id).body["instance"]["status"] == "ACTIVE") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return id;
  }
  // An ACTIVE MariaDB instance (reported running at revision 1).
  std::string create_active_mariadb(const std::string& name) {
    Reply r = trove(Method::kPost, "/instances", instance_body(name, "mariadb"));
    EXPECT_EQ(r.status, 200) << r;
    const std::string id = r.body["instance"].value("id", std::string());
    report(id, 1);
    return id;
  }

  // A read replica of `source` (its id).
  std::string create_replica(const std::string& source, const std::string& name) {
    Reply r = trove(Method::kPost, "/instances",
                    {{"instance", {{"name", name}, {"replica_of", source}}}});
    EXPECT_EQ(r.status, 200) << r;
    return r.body["instance"].value("id", std::string());
  }
  static constexpr const char* kSecondDbHost = "h-db2";
};

// A MariaDB replica's first copy may come from its source's newest backup chain and archived
// binlogs (ReplicationSpec::seed) instead of a dump of the running source: offered once a
// completed backup exists, for read replicas and HA standbys, not while the logs since the
// backup outweigh it, and never for PostgreSQL (its network copy is physical already).
TEST_F(DatabaseBackupTestWithEndpoints, MariadbReplicasAreOfferedTheNewestBackupAsTheirSeed) {
  auto replica_of = [&](const std::string& source, const std::string& name) {
    return state_of(create_replica(source, name));
  };
  const std::string m = create_active_mariadb("m1");

  // Without a backup one is taken for the replica (AReplicaWithoutABackupHasOneTakenToSeedIt);
  // the cloud's first backup is that one.
  engine::DesiredState st = replica_of(m, "before-backup");
  ASSERT_TRUE(st.replication.has_value());
  EXPECT_FALSE(st.replication->seed.has_value()) << "no backup yet";
  Reply r = trove(Method::kGet, "/instances/" + m + "/backups");
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["backups"].size(), 1u) << r;
  ASSERT_EQ(upload(r.body["backups"][0]["id"], "seed", us_of(clock_.now())).status, 200);
  advance(std::chrono::minutes(1));

  const std::string old = completed_backup(m, "older backup", "old");
  advance(std::chrono::minutes(1));
  const std::string b = completed_backup(m, "the newest backup", "new");
  st = replica_of(m, "seeded");
  ASSERT_TRUE(st.replication.has_value());
  ASSERT_TRUE(st.replication->seed.has_value());
  ASSERT_EQ(st.replication->seed->chain.size(), 1u);
  EXPECT_EQ(st.replication->seed->chain[0].backup_id, b);
  EXPECT_NE(b, old);
  EXPECT_EQ(st.replication->seed->log_source_instance, m);
  EXPECT_EQ(st.replication->seed->target_time_us, 0) << "the logs are replayed to their end";
  EXPECT_FALSE(st.restore.has_value()) << "a replica is not a restore";

  // The binlog that was open during the backup counts for nothing, however big: it holds
  // mostly what the backup has (the restore skips that), and the driver closes a binlog at
  // least once a minute.
  const int64_t now = us_of(clock_.now());
  ASSERT_EQ(
      put_log(m, "mariadb-bin-x.000001", std::string(100, 'x'), now - 30'000'000, now + 1'000'000)
          .status,
      204);
  st = replica_of(m, "open-during-the-backup");
  ASSERT_TRUE(st.replication.has_value());
  EXPECT_TRUE(st.replication->seed.has_value());
  // More binlog begun since the backup than the backup holds: the dump is the cheaper copy.
  ASSERT_EQ(
      put_log(m, "mariadb-bin-x.000002", std::string(100, 'y'), now + 1'000'000, now + 2'000'000)
          .status,
      204);
  st = replica_of(m, "logs-outweigh");
  ASSERT_TRUE(st.replication.has_value());
  EXPECT_FALSE(st.replication->seed.has_value());

  // PostgreSQL: never, backup or not.
  const std::string pg = create_active("pg1");
  (void)completed_backup(pg, "pg backup", "pgb");
  st = replica_of(pg, "pg-replica");
  ASSERT_TRUE(st.replication.has_value());
  EXPECT_FALSE(st.replication->seed.has_value());

  // An HA standby of a MariaDB instance with a backup is offered it too.
  const std::string ha = create_active_ha("ha1");
  auto primary = server(ha);
  ASSERT_TRUE(primary.has_value());
  r = create_backup(ha, "ha-backup");
  ASSERT_EQ(r.status, 202) << r;
  const std::string hb = r.body["backup"].value("id", std::string());
  r = upload(hb, "ha data", us_of(clock_.now()), R"({"gtid":"0-1-5"})", primary->host);
  ASSERT_EQ(r.status, 200) << r;
  st = state_of(ha + "-m1");
  ASSERT_TRUE(st.replication.has_value());
  EXPECT_EQ(st.replication->role, engine::ReplicationSpec::Role::kReplica);
  ASSERT_TRUE(st.replication->seed.has_value());
  EXPECT_EQ(st.replication->seed->chain.at(0).backup_id, hb);
  EXPECT_EQ(st.replication->seed->log_source_instance, ha);
  st = state_of(ha);
  ASSERT_TRUE(st.replication.has_value());
  EXPECT_FALSE(st.replication->seed.has_value()) << "the primary copies from nobody";
}

// A MariaDB replica of a source no backup can seed has a backup taken for it (Trove's
// replication snapshot) and waits for it; the backup's end pushes the replicas on; an hour
// later it is deleted. Without backup room, or for a source not ACTIVE, nothing is taken.
TEST_F(DatabaseBackupTestWithEndpoints, AReplicaWithoutABackupHasOneTakenToSeedIt) {
  auto backups_of = [&](const std::string& id) {
    Reply r = trove(Method::kGet, "/instances/" + id + "/backups");
    EXPECT_EQ(r.status, 200) << r;
    return r.body["backups"];
  };
  auto event_types = [&](const std::string& id) {
    Reply r = trove(Method::kGet, "/instances/" + id + "/events");
    EXPECT_EQ(r.status, 200) << r;
    std::vector<std::string> out;
    for (const Json& e : r.body["events"]) out.push_back(e["type"]);
    return out;
  };
  auto has = [](const std::vector<std::string>& v, const std::string& x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };

  const std::string m = create_active_mariadb("shop");
  const int64_t source_rev = state_of(m).revision;
  const int64_t made_us = us_of(clock_.now());
  const std::string r1 = create_replica(m, "r1");
  Json list = backups_of(m);
  ASSERT_EQ(list.size(), 1u) << list;
  const std::string seed = list[0]["id"];
  EXPECT_EQ(list[0]["name"], "Replication snapshot for shop");
  EXPECT_EQ(list[0]["status"], "NEW");
  EXPECT_NE(list[0]["description"].get<std::string>().find(r1), std::string::npos) << list;
  EXPECT_TRUE(has(event_types(m), "backup.seed.started"));
  engine::DesiredState src = state_of(m);
  EXPECT_GT(src.revision, source_rev);
  ASSERT_TRUE(src.backup.has_value()) << "the source's agent is asked for the backup";
  EXPECT_EQ(src.backup->id, seed);
  engine::DesiredState st = state_of(r1);
  ASSERT_TRUE(st.replication.has_value());
  EXPECT_FALSE(st.replication->seed.has_value());
  // Trove times have whole seconds: the wait ends 15 minutes after the backup's second.
  EXPECT_EQ(st.replication->seed_wait_until_us,
            made_us / 1'000'000 * 1'000'000 + 15LL * 60 * 1'000'000);

  // A second replica while it runs waits for the same backup.
  const std::string r2 = create_replica(m, "r2");
  EXPECT_EQ(backups_of(m).size(), 1u);
  EXPECT_EQ(state_of(r2).replication->seed_wait_until_us, st.replication->seed_wait_until_us);

  // The backup completes: both replicas' revisions rise and they have it as their seed.
  const int64_t r1_rev = state_of(r1).revision;
  advance(std::chrono::seconds(5));
  ASSERT_EQ(upload(seed, "seed data", us_of(clock_.now())).status, 200);
  for (const std::string& id : {r1, r2}) {
    st = state_of(id);
    EXPECT_GT(st.revision, r1_rev - (id == r1 ? 0 : 1)) << id;
    ASSERT_TRUE(st.replication.has_value());
    ASSERT_TRUE(st.replication->seed.has_value()) << id;
    EXPECT_EQ(st.replication->seed->chain.at(0).backup_id, seed);
    EXPECT_EQ(st.replication->seed_wait_until_us, 0);
  }
  // A third replica takes the completed backup: nothing new is taken.
  const std::string r3 = create_replica(m, "r3");
  EXPECT_EQ(backups_of(m).size(), 1u);
  ASSERT_TRUE(state_of(r3).replication->seed.has_value());

  // An hour after it ended, the operations pass deletes it.
  advance(std::chrono::minutes(59));
  Reply r = trove(Method::kPost, "/mgmt/operations", nullptr, admin_, admin_project_id());
  ASSERT_EQ(r.status, 204) << r;
  EXPECT_EQ(backups_of(m).size(), 1u) << "kept for an hour";
  advance(std::chrono::minutes(2));
  r = trove(Method::kPost, "/mgmt/operations", nullptr, admin_, admin_project_id());
  ASSERT_EQ(r.status, 204) << r;
  EXPECT_EQ(backups_of(m).size(), 0u);
  EXPECT_TRUE(has(event_types(m), "backup.seed.deleted"));

  // A seed backup that fails: the waiting replica has neither a seed nor a wait (a network copy).
  const std::string m2 = create_active_mariadb("shop2");
  const std::string f1 = create_replica(m2, "f1");
  list = backups_of(m2);
  ASSERT_EQ(list.size(), 1u) << list;
  EXPECT_GT(state_of(f1).replication->seed_wait_until_us, 0);
  r = db_agent(Method::kPost, "/backups/" + list[0]["id"].get<std::string>() + "/failed",
               R"({"reason": "disk full"})");
  ASSERT_EQ(r.status, 204) << r;
  st = state_of(f1);
  EXPECT_FALSE(st.replication->seed.has_value());
  EXPECT_EQ(st.replication->seed_wait_until_us, 0);

  // At the project's backups quota: no backup, no wait.
  const int64_t backups_now = static_cast<int64_t>(backups_of(m2).size());
  r = trove(Method::kPut, "/mgmt/quotas/" + p1_,
            {{"quotas", {{"backups", backups_now}, {"instances", 50}}}}, admin_,
            admin_project_id());
  ASSERT_EQ(r.status, 200) << r;
  const std::string m3 = create_active_mariadb("shop3");
  const std::string q1 = create_replica(m3, "q1");
  EXPECT_EQ(backups_of(m3).size(), 0u);
  EXPECT_EQ(state_of(q1).replication->seed_wait_until_us, 0);
  r = trove(Method::kPut, "/mgmt/quotas/" + p1_, {{"quotas", {{"backups", 50}}}}, admin_,
            admin_project_id());
  ASSERT_EQ(r.status, 200) << r;

  // A source that is not ACTIVE yet (never reported), and PostgreSQL: nothing is taken.
  Reply made = trove(Method::kPost, "/instances", instance_body("building", "mariadb"));
  ASSERT_EQ(made.status, 200) << made;
  const std::string building = made.body["instance"].value("id", std::string());
  const std::string b1 = create_replica(building, "b1");
  EXPECT_EQ(backups_of(building).size(), 0u);
  EXPECT_EQ(state_of(b1).replication->seed_wait_until_us, 0);
  const std::string pg = create_active("pg");
  (void)create_replica(pg, "pg-replica");
  EXPECT_EQ(backups_of(pg).size(), 0u);
}

TEST_F(DatabaseBackupTest, PointInTimeRestoreNeedsArchivedLogsCoveringTheTime) {
  const std::string inst = create_active();
  const int64_t t0 = us_of(clock_.now());
  const std::string b = completed_backup(inst, "base", "base");
  advance(std::chrono::minutes(10));
  const int64_t t10 = us_of(clock_.now());
  auto at = [](int64_t us) {
    return format_keystone_time(SystemTime{std::chrono::microseconds(us)});
  };

  Json body = instance_body("pitr");
  // No logs yet: nothing after the backup can be restored.
  body["instance"]["restorePoint"] = {{"backupRef", b}, {"restore_time", at(t0 + 60'000'000)}};
  Reply r = trove(Method::kPost, "/instances", body);
  EXPECT_EQ(r.status, 400) << r;
  EXPECT_NE(r.body["badRequest"]["message"].get<std::string>().find("archived logs"),
            std::string::npos)
      << r;

  // The agent ships WAL covering up to t0 + 5 min.
  ASSERT_EQ(
      put_log(inst, "000000010000000000000001", "wal 1", t0 - 1'000'000, t0 + 120'000'000).status,
      204);
  ASSERT_EQ(
      put_log(inst, "000000010000000000000002", "wal 2", t0 + 120'000'000, t0 + 300'000'000).status,
      204);
  // Shipping the same file again is fine; other content under the name is refused.
  EXPECT_EQ(
      put_log(inst, "000000010000000000000002", "wal 2", t0 + 120'000'000, t0 + 300'000'000).status,
      204);
  EXPECT_EQ(put_log(inst, "000000010000000000000002", "other", 0, 0).status, 409);
  EXPECT_EQ(put_log(inst, "..", "x", 0, 0).status, 400);
  r = db_agent(Method::kGet, "/instances/" + inst + "/logs");
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["logs"].size(), 2u) << r;
  EXPECT_EQ(r.body["logs"][1]["last_time_us"], t0 + 300'000'000);
  r = db_agent(Method::kGet, "/instances/" + inst + "/logs/000000010000000000000001", {}, {},
               kOtherHost);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(read_whole(r.raw.body_file), "wal 1");

  // Before the backup is consistent, beyond the logs, in the future: 400.
  body["instance"]["restorePoint"] = {{"backupRef", b}, {"restore_time", at(t0 - 1'000'000)}};
  EXPECT_EQ(trove(Method::kPost, "/instances", body).status, 400);
  body["instance"]["restorePoint"] = {{"backupRef", b}, {"restore_time", at(t0 + 301'000'000)}};
  EXPECT_EQ(trove(Method::kPost, "/instances", body).status, 400);
  body["instance"]["restorePoint"] = {{"backupRef", b}, {"restore_time", at(t10 + 60'000'000)}};
  EXPECT_EQ(trove(Method::kPost, "/instances", body).status, 400);
  body["instance"]["restorePoint"] = {{"backupRef", b}, {"restore_time", "yesterday"}};
  EXPECT_EQ(trove(Method::kPost, "/instances", body).status, 400);

  // Within: the desired state names the log source and the target to the microsecond.
  const int64_t target = t0 + 200'000'123;
  body["instance"]["restorePoint"] = {{"backupRef", b}, {"restore_time", at(target)}};
  r = trove(Method::kPost, "/instances", body);
  ASSERT_EQ(r.status, 200) << r;
  engine::DesiredState st = state_of(r.body["instance"]["id"]);
  ASSERT_TRUE(st.restore.has_value());
  ASSERT_EQ(st.restore->chain.size(), 1u);
  EXPECT_EQ(st.restore->chain[0].backup_id, b);
  EXPECT_EQ(st.restore->log_source_instance, inst);
  EXPECT_EQ(st.restore->target_time_us, target);

  // By instance and time: the latest completed backup from before the time.
  advance(std::chrono::minutes(1));
  const std::string later = completed_backup(inst, "later", "later");
  ASSERT_EQ(put_log(inst, "000000010000000000000003", "wal 3", t0 + 300'000'000,
                    us_of(clock_.now()) + 1'000'000)
                .status,
            204);
  body["instance"]["restorePoint"] = {{"instanceRef", inst}, {"restore_time", at(target)}};
  r = trove(Method::kPost, "/instances", body);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(state_of(r.body["instance"]["id"]).restore->chain[0].backup_id, b);
  advance(std::chrono::seconds(5));
  body["instance"]["restorePoint"] = {{"instanceRef", inst},
                                      {"restore_time", at(us_of(clock_.now()) - 4'500'000)}};
  r = trove(Method::kPost, "/instances", body);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(state_of(r.body["instance"]["id"]).restore->chain[0].backup_id, later);
  // instanceRef without a time: 400.
  body["instance"]["restorePoint"] = {{"instanceRef", inst}};
  EXPECT_EQ(trove(Method::kPost, "/instances", body).status, 400);
}

TEST_F(DatabaseBackupTest, DeletedInstanceKeepsBackupsAndTheLogsTheyNeed) {
  const std::string inst = create_active();
  const std::string b = completed_backup(inst, "base");
  ASSERT_EQ(put_log(inst, "000000010000000000000001", "wal", 1, us_of(clock_.now())).status, 204);
  // A backup asked for just before the delete can never finish: it shows FAILED.
  Reply r = create_backup(inst, "doomed");
  ASSERT_EQ(r.status, 202) << r;
  const std::string doomed = r.body["backup"]["id"];
  ASSERT_EQ(trove(Method::kDelete, "/instances/" + inst).status, 202);
  // The compute delete finishes when the agent reports the server gone.
  Json gone = {{"id", inst}, {"generation", 99}, {"state", "absent"}};
  r = agent(Method::kPost, std::string("/v1/hosts/") + kHost + "/report",
            Json{{"instances", Json::array({gone})}});
  ASSERT_EQ(r.status, 200) << r;
  r = trove(Method::kGet, "/backups/" + b);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["backup"]["status"], "COMPLETED");
  r = trove(Method::kGet, "/backups/" + doomed);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["backup"]["status"], "FAILED") << r;
  // Its logs stay while a backup needs them, and go with the last one.
  r = db_agent(Method::kGet, "/instances/" + inst + "/logs");
  EXPECT_EQ(r.body["logs"].size(), 1u) << r;
  EXPECT_EQ(trove(Method::kDelete, "/backups/" + doomed).status, 202);
  r = db_agent(Method::kGet, "/instances/" + inst + "/logs");
  EXPECT_EQ(r.body["logs"].size(), 1u) << r;
  // A live instance without backups keeps its logs (a backup of it may come).
  const std::string live = create_active("live");
  ASSERT_EQ(put_log(live, "000000010000000000000001", "live wal", 1, 2).status, 204);
  EXPECT_EQ(trove(Method::kDelete, "/backups/" + b).status, 202);
  r = db_agent(Method::kGet, "/instances/" + inst + "/logs");
  EXPECT_EQ(r.body["logs"].size(), 0u) << r;
  r = db_agent(Method::kGet, "/instances/" + live + "/logs");
  EXPECT_EQ(r.body["logs"].size(), 1u) << r;
  r = db_agent(Method::kGet, "/instances/" + inst + "/logs/000000010000000000000001");
  EXPECT_EQ(r.status, 404) << r;
}

TEST_F(DatabaseBackupTest, UploadsAreSpooledToDiskAndAdopted) {
  http::StreamedBodyHook hook = db_->agent_streamed_body_hook("/agent/v1/database");
  ASSERT_TRUE(hook);
  auto spooled = hook(Method::kPut, "/agent/v1/database/backups/b-1/data");
  ASSERT_TRUE(spooled.has_value());
  EXPECT_EQ(spooled->dir, dir_.path() + "/database-backups/tmp");
  EXPECT_TRUE(hook(Method::kPut, "/agent/v1/database/instances/i-1/logs/000000010000000000000001")
                  .has_value());
  auto guest_log = hook(Method::kPut, "/agent/v1/database/instances/i-1/guest-logs/general");
  ASSERT_TRUE(guest_log.has_value());
  EXPECT_EQ(guest_log->max_bytes, 1u << 20);
  EXPECT_FALSE(hook(Method::kGet, "/agent/v1/database/backups/b-1/data").has_value());
  EXPECT_FALSE(hook(Method::kPut, "/agent/v1/database/backups/b-1/data/x").has_value());
  EXPECT_FALSE(hook(Method::kPut, "/agent/v1/database/backups/b-1").has_value());
  EXPECT_FALSE(hook(Method::kPut, "/image/v2/images/x/file").has_value());

  // A body the server spooled (as http::Server does for these routes) is taken over.
  const std::string inst = create_active();
  Reply r = create_backup(inst);
  const std::string id = r.body["backup"]["id"];
  const std::string data(1 << 20, 'z');
  const std::string spool = spooled->dir + "/upload-1";
  {
    std::ofstream out(spool, std::ios::binary);
    out << data;
  }
  http::Request req;
  req.method = Method::kPut;
  req.target = "/agent/v1/database/backups/" + id + "/data";
  req.body_file = spool;
  req.headers = {agent_header(kHost), {"x-concord-sha256", compute::driver::sha256_hex(data)}};
  std::string route;
  http::Response resp = router_.dispatch(req, route);
  ASSERT_EQ(resp.status, 200) << resp.body;
  EXPECT_FALSE(std::filesystem::exists(spool));
  r = trove(Method::kGet, "/backups/" + id);
  EXPECT_EQ(r.body["backup"]["status"], "COMPLETED") << r;
  r = db_agent(Method::kGet, "/backups/" + id + "/data");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(read_whole(r.raw.body_file), data);
}

// Trove's guest logs (api_logs.cc): the engine's list, a publish carried by the desired state
// and uploaded by the instance's agent, the published end (Concord's GET .../log/{name}),
// discard, and Trove-format errors.
TEST_F(DatabaseBackupTest, GuestLogsArePublishedThroughTheDesiredState) {
  const std::string id = create_active();  // PostgreSQL
  const std::string base = "/instances/" + id + "/log";
  Reply r = trove(Method::kGet, base);
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["logs"].size(), 1u) << r;
  EXPECT_EQ(r.body["logs"][0]["name"], "general");
  EXPECT_EQ(r.body["logs"][0]["type"], "USER");
  EXPECT_EQ(r.body["logs"][0]["status"], "Ready");
  EXPECT_EQ(r.body["logs"][0]["published"], 0);
  EXPECT_EQ(trove(Method::kGet, base + "/general").status, 404);
  EXPECT_TRUE(state_of(id).log_publish.empty());

  r = trove(Method::kPost, base, {{"name", "general"}, {"publish", 1}});
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["log"]["name"], "general");
  engine::DesiredState st = state_of(id);
  ASSERT_EQ(st.log_publish.size(), 1u);
  EXPECT_EQ(st.log_publish[0].name, "general");
  const std::string request = st.log_publish[0].id;

  auto put = [&](const std::string& req_id, const std::string& data, int64_t file_bytes,
                 const std::string& host = kHost, std::string sha = {}) {
    if (sha.empty()) sha = compute::driver::sha256_hex(data);
    return db_agent(Method::kPut, "/instances/" + id + "/guest-logs/general", data,
                    {{"x-concord-sha256", sha},
                     {"x-concord-log-request", req_id},
                     {"x-concord-log-file-bytes", std::to_string(file_bytes)}},
                    host);
  };
  const std::string text = "line one\nline two\nline three\n";
  EXPECT_EQ(put(request, text, 100, kOtherHost).status, 403);  // not the instance's host
  EXPECT_EQ(put(request, text, 100, kHost, compute::driver::sha256_hex("other")).status, 400);
  EXPECT_EQ(put("not-the-request", "old\n", 4).status, 204);  // a stale request: dropped
  EXPECT_EQ(trove(Method::kGet, base + "/general").status, 404);
  ASSERT_EQ(put(request, text, 100).status, 204);

  r = trove(Method::kPost, base, {{"name", "general"}});  // troveclient's `log show`
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["log"]["status"], "Partial");  // the file had 100 bytes, its end was sent
  EXPECT_EQ(r.body["log"]["published"], static_cast<int64_t>(text.size()));
  EXPECT_EQ(r.body["log"]["pending"], 100 - static_cast<int64_t>(text.size()));
  r = trove(Method::kGet, base + "/general");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.raw.body, text);
  EXPECT_EQ(r.raw.header("content-type"), "text/plain; charset=utf-8");
  EXPECT_EQ(trove(Method::kGet, base + "/general?lines=2").raw.body, "line two\nline three\n");
  EXPECT_EQ(trove(Method::kGet, base + "/general?lines=9").raw.body, text);
  for (const char* q : {"0", "x", "-1", "100001"}) {
    EXPECT_EQ(trove(Method::kGet, base + "/general?lines=" + q).status, 400) << q;
  }
  // Published: the next desired state no longer asks for it.
  ASSERT_EQ(trove(Method::kPost, "/instances/" + id + "/databases",
                  {{"databases", Json::array({{{"name", "more"}}})}})
                .status,
            202);
  EXPECT_TRUE(state_of(id).log_publish.empty());

  // Another project sees nothing; a reader reads but does not publish.
  EXPECT_EQ(trove(Method::kGet, base + "/general", nullptr, member2_, p2_).status, 404);
  EXPECT_EQ(trove(Method::kGet, base, nullptr, reader1_).status, 200);
  EXPECT_EQ(trove(Method::kPost, base, {{"name", "general"}, {"publish", 1}}, reader1_).status,
            403);

  // Bad requests: Trove-format errors, nothing asked.
  r = trove(Method::kPost, base, {{"name", "slow_query"}, {"publish", 1}});
  EXPECT_EQ(r.status, 404) << r;
  EXPECT_TRUE(r.body.contains("itemNotFound")) << r;
  EXPECT_EQ(trove(Method::kGet, base + "/slow_query").status, 404);
  for (const Json& bad :
       {Json{{"name", "general"}, {"enable", 1}}, Json{{"name", "general"}, {"disable", 1}},
        Json{{"publish", 1}}, Json{{"name", 7}}, Json{{"name", "general"}, {"publish", "yes"}},
        Json::array()}) {
    r = trove(Method::kPost, base, bad);
    EXPECT_EQ(r.status, 400) << bad << r;
    EXPECT_TRUE(r.body.contains("badRequest")) << r;
  }
  EXPECT_TRUE(state_of(id).log_publish.empty());

  r = trove(Method::kPost, base, {{"name", "general"}, {"discard", 1}});
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["log"]["status"], "Ready");
  EXPECT_EQ(r.body["log"]["published"], 0);
  EXPECT_EQ(trove(Method::kGet, base + "/general").status, 404);
  // Discard and publish at once (troveclient's `log set --discard --publish`): a new request.
  r = trove(Method::kPost, base, {{"name", "general"}, {"discard", 1}, {"publish", 1}});
  ASSERT_EQ(r.status, 200) << r;
  st = state_of(id);
  ASSERT_EQ(st.log_publish.size(), 1u);
  EXPECT_NE(st.log_publish[0].id, request);
  // The agent's upload for the discarded request is dropped.
  EXPECT_EQ(put(request, text, 100).status, 204);
  EXPECT_EQ(trove(Method::kGet, base + "/general").status, 404);
}

// An HA instance's logs are its primary member's: only that member's desired state asks for
// a publish, and an upload addressed to a member's server (as "<id>-m1" once it is the
// primary) from that member's host is the instance's log.
TEST_F(DatabaseBackupTestWithEndpoints, AnHaInstancesLogIsPublishedByItsPrimaryMember) {
  const std::string id = create_active_ha("ha-logs");
  const std::string member = id + "-m1";
  auto standby = server(member);
  ASSERT_TRUE(standby.has_value());

  Reply r = trove(Method::kPost, "/instances/" + id + "/log", {{"name", "error"}, {"publish", 1}});
  ASSERT_EQ(r.status, 200) << r;
  const engine::DesiredState on_primary = state_of(id);
  ASSERT_EQ(on_primary.log_publish.size(), 1u);
  EXPECT_EQ(on_primary.log_publish[0].name, "error");
  EXPECT_TRUE(state_of(member).log_publish.empty()) << "a standby's log is not the instance's";

  const std::string text = "[Note] mariadbd: ready for connections.\n";
  auto upload = [&](const std::string& server_id, const std::string& host) {
    return db_agent(Method::kPut, "/instances/" + server_id + "/guest-logs/error", text,
                    {{"x-concord-sha256", compute::driver::sha256_hex(text)},
                     {"x-concord-log-request", on_primary.log_publish[0].id},
                     {"x-concord-log-file-bytes", std::to_string(text.size())}},
                    host);
  };
  EXPECT_EQ(upload(member, kOtherHost).status, 403) << "not a host of the instance";
  ASSERT_EQ(upload(member, standby->host).status, 204);
  r = trove(Method::kGet, "/instances/" + id + "/log/error");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.raw.body, text);
  EXPECT_EQ(trove(Method::kGet, "/instances/" + member + "/log/error").status, 404)
      << "members are not instances of the API";
}

// MariaDB's general and slow-query logs follow their parameters: Disabled until a
// configuration group turns them on; enable/disable point there.
TEST_F(DatabaseBackupTest, MariadbGuestLogsFollowTheirParameters) {
  Reply r = trove(Method::kPost, "/instances", instance_body("m1", "mariadb"));
  ASSERT_EQ(r.status, 200) << r;
  const std::string id = r.body["instance"]["id"];
  report(id, 1);
  const std::string base = "/instances/" + id + "/log";
  auto statuses = [&] {
    std::map<std::string, std::string> out;
    Reply l = trove(Method::kGet, base);
    for (const Json& log : l.body["logs"]) out[log["name"]] = log["status"];
    return out;
  };
  EXPECT_EQ(statuses(),
            (std::map<std::string, std::string>{
                {"error", "Ready"}, {"general", "Disabled"}, {"slow_query", "Disabled"}}));
  r = trove(Method::kPost, base, {{"name", "general"}, {"enable", 1}});
  EXPECT_EQ(r.status, 400) << r;
  EXPECT_NE(r.body["badRequest"]["message"].get<std::string>().find("general_log"),
            std::string::npos)
      << r;
  r = trove(Method::kPost, "/configurations",
            {{"configuration",
              {{"name", "logs"},
               {"values", {{"general_log", 1}}},
               {"datastore", {{"type", "mariadb"}, {"version", "10.11"}}}}}});
  ASSERT_EQ(r.status, 200) << r;
  const std::string group = r.body["configuration"]["id"];
  ASSERT_EQ(
      trove(Method::kPut, "/instances/" + id, {{"instance", {{"configuration", group}}}}).status,
      202);
  EXPECT_EQ(statuses(), (std::map<std::string, std::string>{
                            {"error", "Ready"}, {"general", "Ready"}, {"slow_query", "Disabled"}}));
}

// A publish answers once its agent uploaded the log, with what was stored: also when the
// instance's server never reports the revision applied (a stopped engine's agent uploads all
// the same).
TEST_F(DatabaseBackupTest, APublishAnswersOnceTheLogIsUploaded) {
  const std::string id = create_active();
  DatabaseOptions o;
  o.backup_dir = dir_.path() + "/database-backups";
  o.apply_wait = std::chrono::milliseconds(60000);
  http::Router router;
  auto waiting = service_on(router, o);
  ASSERT_TRUE(waiting);
  auto answered = std::async(std::launch::async, [&] {
    http::Request req;
    req.method = Method::kPost;
    req.target = "/database/v1.0/" + p1_ + "/instances/" + id + "/log";
    req.base_url = "http://localhost:8080";
    req.body = dump_json(Json{{"name", "general"}, {"publish", 1}});
    req.headers = {{"content-type", "application/json"}, {"x-auth-token", member1_}};
    std::string route;
    return router.dispatch(req, route);
  });
  for (int i = 0; i < 200 && state_of(id).log_publish.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  engine::DesiredState st = state_of(id);
  ASSERT_EQ(st.log_publish.size(), 1u);
  EXPECT_EQ(answered.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  const std::string text = "ready\n";
  Reply up = db_agent(Method::kPut, "/instances/" + id + "/guest-logs/general", text,
                      {{"x-concord-sha256", compute::driver::sha256_hex(text)},
                       {"x-concord-log-request", st.log_publish[0].id},
                       {"x-concord-log-file-bytes", "6"}});
  ASSERT_EQ(up.status, 204) << up;
  ASSERT_EQ(answered.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  http::Response resp = answered.get();
  ASSERT_EQ(resp.status, 200) << resp.body;
  auto body = parse_json(resp.body);
  ASSERT_TRUE(body.has_value());
  EXPECT_EQ((*body)["log"]["status"], "Published") << resp.body;
  EXPECT_EQ((*body)["log"]["published"], 6) << resp.body;
}

TEST_F(DatabaseBackupTest, WithoutBackupStorageBackupsAre503) {
  DatabaseOptions o;
  o.apply_wait = std::chrono::milliseconds(0);
  auto db = DatabaseService::create(*store_, clock_, *identity_, *ctx_, o);
  ASSERT_TRUE(db.has_value()) << db.error().to_string();
  (*db)->attach_service_project(service_project_, "concord-database");
  EXPECT_FALSE((*db)->agent_streamed_body_hook("/agent/v1/database"));
  const std::string inst = create_active();
  http::Router router;
  router.mount("/database", (*db)->routes(), (*db)->errors());
  http::Request req;
  req.method = Method::kPost;
  req.target = "/database/v1.0/" + p1_ + "/backups";
  req.body = dump_json(Json{{"backup", {{"name", "b"}, {"instance", inst}}}});
  req.headers = {{"x-auth-token", member1_}, {"content-type", "application/json"}};
  std::string route;
  http::Response resp = router.dispatch(req, route);
  EXPECT_EQ(resp.status, 503) << resp.body;
  EXPECT_NE(resp.body.find("serviceUnavailable"), std::string::npos) << resp.body;
}

}  // namespace
}  // namespace concord::database::service
