// The Trove v1.0 API (src/database/service) on a real store (SQLite in a temp dir, or PostgreSQL
// with CONCORD_DATABASE_TEST_STORE=postgres), real tokens, and the real compute service: each
// instance is a service server placed on a registered host offering the "database" driver,
// whose agent's part is played by reports through compute's own agent routes.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <tuple>

#include "base/json.h"
#include "compute/driver/database_keys.h"
#include "database/service/database_service.h"
#include "http/router.h"
#include "service_test_fixture.h"

namespace concord::database::service {
namespace {

using compute::agent_testing::Reply;
namespace keys = compute::driver::database_keys;

// The shared stack unchanged; a class of its own keeps the suite (and ctest) name.
class DatabaseApiTest : public DatabaseServiceTest {
 protected:
  DatabaseApiTest() : DatabaseServiceTest("concord-database-api") {}
};

TEST_F(DatabaseApiTest, VersionsNeedNoToken) {
  Reply r = dispatch(http::Method::kGet, "/database", nullptr, {});
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["versions"][0]["id"], "v1.0");
  EXPECT_EQ(r.body["versions"][0]["links"][0]["href"], "http://localhost:8080/database/v1.0/");
}

TEST_F(DatabaseApiTest, DatastoresAndVersionsByNameOrId) {
  Reply r = trove(http::Method::kGet, "/datastores");
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["datastores"].size(), 2u) << r;
  std::map<std::string, Json> by_name;
  for (const Json& d : r.body["datastores"]) by_name[d["name"]] = d;
  ASSERT_TRUE(by_name.contains("postgresql") && by_name.contains("mariadb"));
  EXPECT_EQ(by_name["postgresql"]["versions"][0]["name"], "15");
  EXPECT_EQ(by_name["mariadb"]["versions"][0]["name"], "10.11");
  const std::string pg_id = by_name["postgresql"]["id"];
  const std::string v15 = by_name["postgresql"]["default_version"];

  r = trove(http::Method::kGet, "/datastores/postgresql");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["datastore"]["id"], pg_id);
  r = trove(http::Method::kGet, "/datastores/" + pg_id + "/versions");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["versions"][0]["id"], v15);
  r = trove(http::Method::kGet, "/datastores/postgresql/versions/15");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["version"]["datastore"], pg_id);
  r = trove(http::Method::kGet, "/datastores/versions/" + v15);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["version"]["name"], "15");

  r = trove(http::Method::kGet, "/datastores/mysql");
  EXPECT_EQ(r.status, 404) << r;
  EXPECT_EQ(r.body["itemNotFound"]["code"], 404) << r;
  r = trove(http::Method::kGet, "/datastores/postgresql/versions/9.6");
  EXPECT_EQ(r.status, 404) << r;
}

// Trove's management API: an admin offers MariaDB under a datastore named "mysql", as the
// Tempest profile does, deactivates and removes versions; tenants see only active ones.
TEST_F(DatabaseApiTest, AdminsManageDatastoreVersions) {
  using http::Method;
  http::Response ir = identity_call(Method::kGet, "/v3/projects?name=admin", nullptr, admin_);
  ASSERT_EQ(ir.status, 200) << ir.body;
  const std::string admin_project = (*parse_json(ir.body))["projects"][0]["id"];
  auto mgmt = [&](Method m, const std::string& path, const Json& body = nullptr) {
    return trove(m, "/mgmt/datastore-versions" + path, body, admin_, admin_project);
  };
  const Json mysql = {{"version",
                       {{"name", "10.11"},
                        {"datastore_name", "mysql"},
                        {"datastore_manager", "mariadb"},
                        {"image_tags", Json::array()},
                        {"packages", Json::array({"mariadb-server"})},
                        {"active", true},
                        {"default", true}}}};

  // Tenants may not; bad input is refused before anything is written.
  Reply r = trove(Method::kPost, "/mgmt/datastore-versions", mysql);
  EXPECT_EQ(r.status, 403) << r;
  struct Bad {
    const char* what;
    std::function<void(Json&)> edit;
  };
  for (const Bad& b : std::vector<Bad>{
           {"unknown engine", [](Json& j) { j["version"]["datastore_manager"] = "mysql"; }},
           {"no manager", [](Json& j) { j["version"].erase("datastore_manager"); }},
           {"slash in name", [](Json& j) { j["version"]["name"] = "10/11"; }},
           {"long datastore",
            [](Json& j) { j["version"]["datastore_name"] = std::string(65, 'm'); }},
           {"bad number", [](Json& j) { j["version"]["version"] = "10.11; DROP"; }},
           {"packages type", [](Json& j) { j["version"]["packages"] = 7; }},
           {"active type", [](Json& j) { j["version"]["active"] = "yes"; }},
           {"no wrapper", [](Json& j) { j = j["version"]; }}}) {
    Json body = mysql;
    b.edit(body);
    r = mgmt(Method::kPost, "", body);
    EXPECT_EQ(r.status, 400) << b.what << ": " << r;
    EXPECT_TRUE(r.body.contains("badRequest")) << b.what << ": " << r;
  }
  r = trove(Method::kGet, "/datastores/mysql");
  EXPECT_EQ(r.status, 404) << "a refused create left a datastore behind: " << r;

  r = mgmt(Method::kPost, "", mysql);
  ASSERT_EQ(r.status, 202) << r;
  r = mgmt(Method::kPost, "", mysql);
  EXPECT_EQ(r.status, 400) << "the same name twice: " << r;
  r = mgmt(Method::kGet, "");
  ASSERT_EQ(r.status, 200) << r;
  Json mine;
  for (const Json& v : r.body["versions"]) {
    if (v["datastore_name"] == "mysql") mine = v;
  }
  ASSERT_TRUE(mine.is_object()) << r;
  const std::string vid = mine["id"];
  EXPECT_EQ(mine["datastore_manager"], "mariadb");
  EXPECT_EQ(mine["version"], "10.11");
  EXPECT_EQ(mine["default"], true);
  EXPECT_EQ(mine["active"], true);
  EXPECT_EQ(mine["packages"], Json::array({"mariadb-server"}));
  r = mgmt(Method::kGet, "/" + vid);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["version"]["name"], "10.11");

  // A tenant creates a "mysql" instance without naming the version: MariaDB serves it.
  r = trove(Method::kGet, "/datastores/mysql/versions");
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["versions"].size(), 1u) << r;
  Json body = pg_instance("my1");
  body["instance"]["datastore"] = {{"type", "mysql"}};
  r = trove(Method::kPost, "/instances", body);
  ASSERT_EQ(r.status, 200) << r;
  const std::string id = r.body["instance"]["id"];
  EXPECT_EQ(r.body["instance"]["datastore"]["type"], "mysql");
  EXPECT_EQ(r.body["instance"]["port"], 3306);
  auto s = server(id);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->metadata[std::string(keys::kEngine)], "mariadb");
  EXPECT_EQ(s->metadata[std::string(keys::kVersion)], "10.11");
  EXPECT_TRUE(state_of(id).users.at(0).verifier.starts_with("*"));  // MariaDB's verifier

  // In use: it cannot go, but it can be deactivated; then tenants neither see nor use it.
  r = mgmt(Method::kDelete, "/" + vid);
  EXPECT_EQ(r.status, 400) << r;
  r = trove(Method::kDelete, "/datastores/mysql", nullptr, admin_, admin_project);
  EXPECT_EQ(r.status, 400) << "a datastore with versions: " << r;
  r = mgmt(Method::kPatch, "/" + vid, {{"active", false}, {"name", "10.11-old"}});
  ASSERT_EQ(r.status, 202) << r;
  r = trove(Method::kGet, "/datastores");
  ASSERT_EQ(r.status, 200) << r;
  for (const Json& d : r.body["datastores"]) EXPECT_NE(d["name"], "mysql") << r;
  body["instance"]["name"] = "my2";
  r = trove(Method::kPost, "/instances", body);
  EXPECT_EQ(r.status, 400) << "an inactive default: " << r;
  r = mgmt(Method::kPatch, "/" + vid, {{"active", true}, {"default", false}});
  ASSERT_EQ(r.status, 202) << r;
  r = trove(Method::kPost, "/instances", body);
  EXPECT_EQ(r.status, 400) << "no default version: " << r;
  EXPECT_NE(r.body.dump().find("Default version"), std::string::npos) << r;
  body["instance"]["datastore"]["version"] = "10.11-old";
  r = trove(Method::kPost, "/instances", body);
  EXPECT_EQ(r.status, 200) << "named explicitly: " << r;
  r = mgmt(Method::kPatch, "/" + vid, {{"datastore_manager", "oracle"}});
  EXPECT_EQ(r.status, 400) << r;
  r = mgmt(Method::kGet, "/" + vid);
  EXPECT_EQ(r.body["version"]["datastore_manager"], "mariadb") << r;

  // Unused versions and empty datastores go.
  Json spare = mysql;
  spare["version"]["name"] = "spare";
  spare["version"]["version"] = "10.11";
  spare["version"]["datastore_name"] = "scratch";
  ASSERT_EQ(mgmt(Method::kPost, "", spare).status, 202);
  r = mgmt(Method::kGet, "");
  std::string spare_id;
  for (const Json& v : r.body["versions"]) {
    if (v["datastore_name"] == "scratch") spare_id = v["id"];
  }
  ASSERT_FALSE(spare_id.empty()) << r;
  EXPECT_EQ(mgmt(Method::kDelete, "/" + spare_id).status, 202);
  EXPECT_EQ(mgmt(Method::kGet, "/" + spare_id).status, 404);
  r = trove(Method::kDelete, "/datastores/scratch", nullptr, admin_, admin_project);
  EXPECT_EQ(r.status, 202) << r;
  r = trove(Method::kGet, "/datastores/scratch");
  EXPECT_EQ(r.status, 404) << r;
}

TEST_F(DatabaseApiTest, FlavorsComeFromComputeInTrovesShape) {
  Reply r = trove(http::Method::kGet, "/flavors");
  ASSERT_EQ(r.status, 200) << r;
  bool small = false;
  for (const Json& f : r.body["flavors"]) {
    if (f["str_id"] == "2") {
      small = true;
      EXPECT_EQ(f["id"], 2);
      EXPECT_EQ(f["name"], "m1.small");
      EXPECT_EQ(f["ram"], 2048);
      EXPECT_EQ(f["vcpus"], 1);
    }
  }
  EXPECT_TRUE(small) << r;
  r = trove(http::Method::kGet, "/flavors/2");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["flavor"]["name"], "m1.small");
  r = trove(http::Method::kGet, "/flavors/999");
  EXPECT_EQ(r.status, 404) << r;
  EXPECT_TRUE(r.body.contains("itemNotFound")) << r;
}

TEST_F(DatabaseApiTest, CreateRecordsAServiceServerWithTheDesiredState) {
  Reply r = trove(http::Method::kPost, "/instances", pg_instance());
  ASSERT_EQ(r.status, 200) << r;
  const Json inst = r.body["instance"];
  const std::string id = inst["id"];
  EXPECT_EQ(inst["status"], "BUILD");
  EXPECT_EQ(inst["name"], "db1");
  EXPECT_EQ(inst["ip"][0], "127.77.0.1");
  EXPECT_EQ(inst["addresses"][0]["address"], "127.77.0.1");
  EXPECT_EQ(inst["addresses"][0]["type"], "private");
  EXPECT_EQ(inst["port"], 5432);
  EXPECT_EQ(inst["volume"]["size"], 2);
  EXPECT_EQ(inst["datastore"]["type"], "postgresql");
  EXPECT_EQ(inst["datastore"]["version"], "15");
  EXPECT_EQ(inst["flavor"]["id"], "2");

  auto s = server(id);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->host, kHost);
  EXPECT_EQ(s->vcpus, 1);
  EXPECT_EQ(s->ram_mb, 2048);
  EXPECT_EQ(s->disk_gb, 2);
  EXPECT_EQ(s->metadata[std::string(keys::kEngine)], "postgresql");
  EXPECT_EQ(s->metadata[std::string(keys::kVersion)], "15");
  EXPECT_EQ(s->metadata[std::string(keys::kAddress)], "127.77.0.1");
  EXPECT_EQ(s->metadata[std::string(keys::kPort)], "5432");
  EXPECT_EQ(s->metadata[std::string(keys::kVolumeGb)], "2");
  EXPECT_EQ(s->metadata[std::string(keys::kProject)], p1_);
  EXPECT_EQ(s->metadata[std::string(keys::kInstance)], id);
  engine::DesiredState st = state_of(id);
  EXPECT_EQ(st.revision, 1);
  ASSERT_EQ(st.databases.size(), 1u);
  EXPECT_EQ(st.databases[0].name, "shop");
  ASSERT_EQ(st.users.size(), 1u);
  EXPECT_EQ(st.users[0].name, "app");
  EXPECT_EQ(st.users[0].databases, std::vector<std::string>{"shop"});
  EXPECT_TRUE(st.users[0].verifier.starts_with("SCRAM-SHA-256$4096:")) << st.users[0].verifier;
  // The password is nowhere: not in the metadata, not in the store.
  for (const auto& [k, v] : s->metadata) EXPECT_EQ(v.find("s3cret-pw"), std::string::npos) << k;
  ASSERT_TRUE(store_->read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query("SELECT verifier FROM db_users"));
    EXPECT_EQ(rows.size(), 1u);
    for (const store::Row& row : rows) EXPECT_EQ(row.text(0).find("s3cret"), std::string::npos);
    return ok();
  }));

  // The agent's spec for the host carries it, without an image.
  Reply a = agent(http::Method::kGet, std::string("/v1/hosts/") + kHost + "/assignments", nullptr);
  ASSERT_EQ(a.status, 200) << a;
  ASSERT_EQ(a.body["instances"].size(), 1u) << a;
  const Json spec = a.body["instances"][0];
  EXPECT_EQ(spec["driver"], "database");
  EXPECT_EQ(spec["image"]["id"], "");
  auto meta = parse_json(spec["guest"]["meta_data_json"].get<std::string>());
  ASSERT_TRUE(meta);
  EXPECT_EQ((*meta)["meta"][std::string(keys::kAddress)], "127.77.0.1");

  // MariaDB gets its own port and the next address.
  Json maria = pg_instance("db2");
  maria["instance"]["datastore"] = {{"type", "mariadb"}};
  r = trove(http::Method::kPost, "/instances", maria);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["instance"]["ip"][0], "127.77.0.2");
  EXPECT_EQ(r.body["instance"]["port"], 3306);
  EXPECT_EQ(r.body["instance"]["datastore"]["version"], "10.11");
  const std::string id2 = r.body["instance"]["id"];
  EXPECT_TRUE(state_of(id2).users.at(0).verifier.starts_with("*"));

  r = trove(http::Method::kGet, "/instances");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["instances"].size(), 2u);
}

TEST_F(DatabaseApiTest, StatusFollowsTheServer) {
  const std::string id = create(pg_instance());
  report(id, 1);
  Reply r = trove(http::Method::kGet, "/instances/" + id);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["instance"]["status"], "ACTIVE");
  EXPECT_EQ(r.body["instance"]["operating_status"], "HEALTHY");

  // The engine stopped on its own: the server is stopped (power sync), Trove says SHUTDOWN.
  report(id, 1, "present", 4);
  r = trove(http::Method::kGet, "/instances/" + id);
  EXPECT_EQ(r.body["instance"]["status"], "SHUTDOWN") << r;

  // A failed create: ERROR with the fault.
  const std::string id2 = create(pg_instance("db2"));
  Json inst = {{"id", id2}, {"generation", 1}, {"state", "absent"}, {"error", "initdb failed"}};
  Reply a = agent(http::Method::kPost, std::string("/v1/hosts/") + kHost + "/report",
                  Json{{"instances", Json::array({inst})}});
  ASSERT_EQ(a.status, 200) << a;
  r = trove(http::Method::kGet, "/instances/" + id2);
  EXPECT_EQ(r.body["instance"]["status"], "ERROR") << r;
  EXPECT_NE(r.body["instance"]["fault"]["message"].get<std::string>().find("initdb failed"),
            std::string::npos)
      << r;
}

TEST_F(DatabaseApiTest, DeleteThenGoneAndTheAddressIsReused) {
  const std::string id = create(pg_instance());
  const std::string id2 = create(pg_instance("db2"));
  clock_.advance(std::chrono::seconds(90));
  register_host();  // a heartbeat: the host is up, so its agent finishes the delete
  Reply r = trove(http::Method::kDelete, "/instances/" + id);
  ASSERT_EQ(r.status, 202) << r;
  r = trove(http::Method::kGet, "/instances/" + id);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["instance"]["status"], "SHUTDOWN");
  EXPECT_EQ(server(id)->task_state.value_or(""), "deleting");
  // Its engine may still listen: the address is not handed out yet.
  Reply third = trove(http::Method::kPost, "/instances", pg_instance("db3"));
  ASSERT_EQ(third.status, 200) << third;
  EXPECT_EQ(third.body["instance"]["ip"][0], "127.77.0.3");
  // Repeated delete: still 202.
  EXPECT_EQ(trove(http::Method::kDelete, "/instances/" + id).status, 202);

  report(id, 2, "absent");
  r = trove(http::Method::kGet, "/instances/" + id);
  EXPECT_EQ(r.status, 404) << r;
  EXPECT_EQ(r.body["itemNotFound"]["code"], 404) << r;
  r = trove(http::Method::kGet, "/instances");
  EXPECT_EQ(r.body["instances"].size(), 2u) << r;
  Reply fourth = trove(http::Method::kPost, "/instances", pg_instance("db4"));
  ASSERT_EQ(fourth.status, 200) << fourth;
  EXPECT_EQ(fourth.body["instance"]["ip"][0], "127.77.0.1");
  (void)id2;

  // Usage: the deleted instance's interval was closed into the ledger, under the tenant.
  ASSERT_TRUE(store_->read([&](store::Tx& tx) -> Status {
    usage::UsageFilter f;
    f.project_id = p1_;
    CONCORD_ASSIGN_OR_RETURN(auto events, usage::list(tx, f));
    int seconds = 0, storage = 0;
    for (const auto& e : events) {
      if (e.event.resource_id != id) continue;
      if (e.event.kind == "database.instance-seconds:2") {
        ++seconds;
        EXPECT_EQ(e.event.quantity, "90");
        EXPECT_EQ(e.event.unit, "s");
      }
      if (e.event.kind == "database.storage-gb-seconds") {
        ++storage;
        EXPECT_EQ(e.event.quantity, "180");  // 2 GB for 90 s
      }
    }
    EXPECT_EQ(seconds, 1);
    EXPECT_EQ(storage, 1);
    return ok();
  }));
}

TEST_F(DatabaseApiTest, BadInputIsRefusedInTrovesFormatBeforeAnythingIsWritten) {
  struct Case {
    std::string what;
    std::function<void(Json&)> change;
    int status;
  };
  const std::vector<Case> cases = {
      {"unknown datastore", [](Json& j) { j["instance"]["datastore"]["type"] = "mysql"; }, 404},
      {"unknown version", [](Json& j) { j["instance"]["datastore"]["version"] = "9.6"; }, 404},
      {"no datastore", [](Json& j) { j["instance"].erase("datastore"); }, 400},
      {"unknown flavor", [](Json& j) { j["instance"]["flavorRef"] = "999"; }, 404},
      {"no flavor", [](Json& j) { j["instance"].erase("flavorRef"); }, 400},
      {"volume 0", [](Json& j) { j["instance"]["volume"]["size"] = 0; }, 400},
      {"volume too big", [](Json& j) { j["instance"]["volume"]["size"] = 21; }, 400},
      {"volume not a number", [](Json& j) { j["instance"]["volume"]["size"] = "2"; }, 400},
      {"no volume", [](Json& j) { j["instance"].erase("volume"); }, 400},
      {"injection in a database name",
       [](Json& j) { j["instance"]["databases"][0]["name"] = "x\"; DROP TABLE t; --"; }, 400},
      {"reserved database", [](Json& j) { j["instance"]["databases"][0]["name"] = "postgres"; },
       400},
      {"reserved user", [](Json& j) { j["instance"]["users"][0]["name"] = "root"; }, 400},
      {"admin role", [](Json& j) { j["instance"]["users"][0]["name"] = "concord-db"; }, 400},
      {"quote in a user name", [](Json& j) { j["instance"]["users"][0]["name"] = "a'b"; }, 400},
      {"user name too long for postgres",
       [](Json& j) { j["instance"]["users"][0]["name"] = std::string(64, 'u'); }, 400},
      {"empty password", [](Json& j) { j["instance"]["users"][0]["password"] = ""; }, 400},
      {"user on a database not created",
       [](Json& j) { j["instance"]["users"][0]["databases"][0]["name"] = "other"; }, 400},
      {"duplicate database",
       [](Json& j) {
         j["instance"]["databases"].push_back({{"name", "shop"}});
       },
       400},
      {"replica", [](Json& j) { j["instance"]["replica_of"] = "x"; }, 400},
      {"no name", [](Json& j) { j["instance"].erase("name"); }, 400},
  };
  for (const Case& c : cases) {
    Json body = pg_instance();
    c.change(body);
    Reply r = trove(http::Method::kPost, "/instances", body);
    EXPECT_EQ(r.status, c.status) << c.what << ": " << r;
    const std::string key = c.status == 404 ? "itemNotFound" : "badRequest";
    EXPECT_EQ(r.body[key]["code"], c.status) << c.what << ": " << r;
  }
  Reply r = dispatch(http::Method::kPost, "/database/v1.0/" + p1_ + "/instances", nullptr,
                     {{"x-auth-token", member1_}});
  EXPECT_EQ(r.status, 400) << r;
  EXPECT_EQ(instance_rows(), 0);
  EXPECT_FALSE(compute::list_service_servers(*ctx_, service_project_)->size());

  // MariaDB's own limits: 80 characters for users, 64 for databases.
  Json maria = pg_instance();
  maria["instance"]["datastore"] = {{"type", "mariadb"}};
  maria["instance"]["users"][0]["name"] = std::string(80, 'u');
  maria["instance"]["databases"][0]["name"] = std::string(64, 'd');
  maria["instance"]["users"][0]["databases"][0]["name"] = std::string(64, 'd');
  EXPECT_EQ(trove(http::Method::kPost, "/instances", maria).status, 200);
  maria["instance"]["users"][0]["name"] = std::string(81, 'u');
  EXPECT_EQ(trove(http::Method::kPost, "/instances", maria).status, 400);
}

TEST_F(DatabaseApiTest, TenantsAreIsolated) {
  const std::string id = create(pg_instance());
  // Another project's member: the instance does not exist for it.
  Reply r = trove(http::Method::kGet, "/instances/" + id, nullptr, member2_, p2_);
  EXPECT_EQ(r.status, 404) << r;
  r = trove(http::Method::kDelete, "/instances/" + id, nullptr, member2_, p2_);
  EXPECT_EQ(r.status, 404) << r;
  r = trove(http::Method::kPost, "/instances/" + id + "/users",
            {{"users", Json::array({{{"name", "evil"}, {"password", "pw"}}})}}, member2_, p2_);
  EXPECT_EQ(r.status, 404) << r;
  r = trove(http::Method::kGet, "/instances", nullptr, member2_, p2_);
  EXPECT_EQ(r.body["instances"].size(), 0u) << r;
  // Its token on the first project's path: Trove's tenant check.
  r = trove(http::Method::kGet, "/instances/" + id, nullptr, member2_, p1_);
  EXPECT_EQ(r.status, 403) << r;
  EXPECT_EQ(r.body["forbidden"]["code"], 403) << r;
  // A reader reads but does not change.
  EXPECT_EQ(trove(http::Method::kGet, "/instances/" + id, nullptr, reader1_).status, 200);
  EXPECT_EQ(trove(http::Method::kDelete, "/instances/" + id, nullptr, reader1_).status, 403);
  // No token.
  r = dispatch(http::Method::kGet, "/database/v1.0/" + p1_ + "/instances", nullptr, {});
  EXPECT_EQ(r.status, 401) << r;
  EXPECT_EQ(r.body["unauthorized"]["code"], 401) << r;
  EXPECT_EQ(state_of(id).users.size(), 1u);
}

// Lists page with limit and marker as Trove's do; an admin lists every project's instances
// through /mgmt/instances (what `openstack database instance list --all-projects` calls) with
// the owning project and the serving server and host, which tenants never see.
TEST_F(DatabaseApiTest, ListsPageAndAdminsListEveryProject) {
  using http::Method;
  const std::string a = create(pg_instance("a"));
  const std::string b = create(pg_instance("b"));
  Reply r = trove(Method::kPost, "/instances", pg_instance("c"), member2_, p2_);
  ASSERT_EQ(r.status, 200) << r;
  const std::string c = r.body["instance"].value("id", std::string());

  // The tenant's own list, one page at a time, in the order of the whole list (creation, then
  // id: the test clock gives both the same time).
  Reply r_all = trove(Method::kGet, "/instances");
  ASSERT_EQ(r_all.body["instances"].size(), 2u) << r_all;
  const std::string first = r_all.body["instances"][0].value("id", std::string());
  const std::string second = r_all.body["instances"][1].value("id", std::string());
  EXPECT_EQ(std::set<std::string>({first, second}), std::set<std::string>({a, b}));
  r = trove(Method::kGet, "/instances?limit=1");
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["instances"].size(), 1u) << r;
  EXPECT_EQ(r.body["instances"][0]["id"], first) << r;
  EXPECT_FALSE(r.body["instances"][0].contains("tenant_id")) << r;
  const std::string next = r.body["links"][0].value("href", std::string());
  EXPECT_NE(next.find("/instances?limit=1&marker=" + first), std::string::npos) << r;
  r = trove(Method::kGet, "/instances?limit=1&marker=" + first);
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["instances"].size(), 1u) << r;
  EXPECT_EQ(r.body["instances"][0]["id"], second) << r;
  EXPECT_FALSE(r.body.contains("links")) << "the last page: " << r;
  for (const std::string& q : {std::string("?limit=0"), std::string("?limit=x"), "?marker=" + c}) {
    r = trove(Method::kGet, "/instances" + q);
    EXPECT_EQ(r.status, 400) << q << ": " << r;
    EXPECT_EQ(r.body["badRequest"]["code"], 400) << q << ": " << r;
  }

  // Management: only admins; every project, or one.
  r = trove(Method::kGet, "/mgmt/instances");
  EXPECT_EQ(r.status, 403) << r;
  EXPECT_EQ(trove(Method::kGet, "/mgmt/instances/" + a).status, 403);
  http::Response ir = identity_call(Method::kGet, "/v3/projects?name=admin", nullptr, admin_);
  ASSERT_EQ(ir.status, 200) << ir.body;
  const std::string admin_project = (*parse_json(ir.body))["projects"][0]["id"];
  auto mgmt = [&](const std::string& path) {
    return trove(Method::kGet, "/mgmt/instances" + path, nullptr, admin_, admin_project);
  };
  r = mgmt("?deleted=False");  // as troveclient sends it
  ASSERT_EQ(r.status, 200) << r;
  std::map<std::string, Json> seen;
  for (const Json& inst : r.body["instances"]) seen[inst.value("id", std::string())] = inst;
  ASSERT_EQ(seen.size(), 3u) << r;
  EXPECT_EQ(seen[a]["tenant_id"], p1_);
  EXPECT_EQ(seen[c]["tenant_id"], p2_);
  EXPECT_EQ(seen[a]["server_id"], a) << seen[a];
  EXPECT_EQ(seen[a]["server"]["host"], kHost) << seen[a];
  EXPECT_EQ(seen[a]["status"], "BUILD") << seen[a];
  EXPECT_EQ(seen[a]["deleted"], false) << seen[a];
  r = mgmt("?project_id=" + p2_);
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["instances"].size(), 1u) << r;
  EXPECT_EQ(r.body["instances"][0]["id"], c) << r;
  r = mgmt("?limit=2");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["instances"].size(), 2u) << r;
  EXPECT_NE(r.body["links"][0].value("href", std::string()).find("/mgmt/instances?limit=2"),
            std::string::npos)
      << r;
  r = mgmt("?deleted=true");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["instances"].size(), 0u) << "deleted instances keep no record: " << r;
  r = mgmt("?deleted=maybe");
  EXPECT_EQ(r.status, 400) << r;
  r = mgmt("/" + c);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["instance"]["tenant_id"], p2_) << r;
  EXPECT_EQ(r.body["instance"]["server"]["host"], kHost) << r;
  EXPECT_EQ(mgmt("/no-such-instance").status, 404);
}

TEST_F(DatabaseApiTest, DatabasesUsersAccessAndRootRewriteTheDesiredState) {
  const std::string id = create(pg_instance());
  activate(id);
  const std::string base = "/instances/" + id;
  Reply r = trove(http::Method::kPost, base + "/databases",
                  {{"databases", Json::array({{{"name", "orders"}}})}});
  ASSERT_EQ(r.status, 202) << r;
  engine::DesiredState st = state_of(id);
  EXPECT_EQ(st.revision, 2);
  ASSERT_EQ(st.databases.size(), 2u);
  r = trove(http::Method::kPost, base + "/databases",
            {{"databases", Json::array({{{"name", "orders"}}})}});
  EXPECT_EQ(r.status, 400) << r;
  r = trove(http::Method::kGet, base + "/databases");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["databases"].size(), 2u);

  r = trove(http::Method::kPost, base + "/users",
            {{"users", Json::array({{{"name", "bob"}, {"password", "bob-pw-1"}}})}});
  ASSERT_EQ(r.status, 202) << r;
  r = trove(http::Method::kPost, base + "/users",
            {{"users", Json::array({{{"name", "bob"}, {"password", "x"}}})}});
  EXPECT_EQ(r.status, 400) << r;
  r = trove(http::Method::kPut, base + "/users/bob/databases",
            {{"databases", Json::array({{{"name", "orders"}}})}});
  ASSERT_EQ(r.status, 202) << r;
  r = trove(http::Method::kPut, base + "/users/bob/databases",
            {{"databases", Json::array({{{"name", "nope"}}})}});
  EXPECT_EQ(r.status, 404) << r;
  r = trove(http::Method::kGet, base + "/users/bob/databases");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["databases"], Json::array({{{"name", "orders"}}}));
  r = trove(http::Method::kGet, base + "/users/bob@%25");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["user"]["host"], "%");
  // Hosts and character sets given explicitly (troveclient's --host, a database's
  // character_set/collate) are read whole: each was once compared between two copies.
  // PostgreSQL takes "%" only (its engine never sees the client's address); MariaDB any host.
  r = trove(
      http::Method::kPost, base + "/users",
      {{"users", Json::array({{{"name", "carol"}, {"password", "carol-pw-1"}, {"host", "%"}}})}});
  ASSERT_EQ(r.status, 202) << r;
  r = trove(http::Method::kPost, base + "/users",
            {{"users",
              Json::array({{{"name", "dave"}, {"password", "dave-pw-1"}, {"host", "10.0.0.%"}}})}});
  EXPECT_EQ(r.status, 400) << r;
  EXPECT_NE(r.body.dump().find("allowed_cidrs"), std::string::npos) << r;
  r = trove(http::Method::kPut, base + "/users/carol", {{"user", {{"host", "10.0.0.1"}}}});
  EXPECT_EQ(r.status, 400) << r;
  {
    Json maria = pg_instance("hosts");
    maria["instance"]["datastore"] = {{"type", "mariadb"}};
    const std::string mid = create(maria);
    activate(mid);
    r = trove(
        http::Method::kPost, "/instances/" + mid + "/users",
        {{"users",
          Json::array({{{"name", "dave"}, {"password", "dave-pw-1"}, {"host", "10.0.0.%"}}})}});
    ASSERT_EQ(r.status, 202) << r;
    r = trove(http::Method::kGet, "/instances/" + mid + "/users/dave@10.0.0.%25");
    ASSERT_EQ(r.status, 200) << r;
    EXPECT_EQ(r.body["user"]["host"], "10.0.0.%");
    bool found = false;
    for (const auto& u : state_of(mid).users) found |= u.name == "dave" && u.host == "10.0.0.%";
    EXPECT_TRUE(found) << "the desired state carries the host";
  }
  r = trove(
      http::Method::kPost, base + "/users",
      {{"users",
        Json::array({{{"name", "erin"}, {"password", "erin-pw-1"}, {"host", "10.0.0.1; DROP"}}})}});
  EXPECT_EQ(r.status, 400) << r;
  r = trove(http::Method::kPost, base + "/databases",
            {{"databases",
              Json::array({{{"name", "latin"}, {"character_set", "UTF8"}, {"collate", "C"}}})}});
  ASSERT_EQ(r.status, 202) << r;
  r = trove(http::Method::kPost, base + "/databases",
            {{"databases", Json::array({{{"name", "odd"}, {"character_set", "UTF8'; --"}}})}});
  EXPECT_EQ(r.status, 400) << r;
  ASSERT_EQ(trove(http::Method::kDelete, base + "/users/carol").status, 202);
  ASSERT_EQ(trove(http::Method::kDelete, base + "/databases/latin").status, 202);
  st = state_of(id);
  ASSERT_EQ(st.users.size(), 2u);
  const std::string old_verifier = st.users[1].verifier;
  EXPECT_EQ(st.users[1].name, "bob");
  EXPECT_EQ(st.users[1].databases, std::vector<std::string>{"orders"});

  r = trove(http::Method::kPut, base + "/users/bob", {{"user", {{"password", "bob-pw-2"}}}});
  ASSERT_EQ(r.status, 202) << r;
  EXPECT_NE(state_of(id).users[1].verifier, old_verifier);
  r = trove(http::Method::kDelete, base + "/users/bob/databases/orders");
  ASSERT_EQ(r.status, 202) << r;
  EXPECT_TRUE(state_of(id).users[1].databases.empty());

  // Dropping a database drops the grants on it.
  r = trove(http::Method::kDelete, base + "/databases/shop");
  ASSERT_EQ(r.status, 202) << r;
  st = state_of(id);
  EXPECT_EQ(st.databases.size(), 1u);
  EXPECT_TRUE(st.users[0].databases.empty());
  EXPECT_EQ(trove(http::Method::kDelete, base + "/databases/shop").status, 404);

  r = trove(http::Method::kDelete, base + "/users/app");
  ASSERT_EQ(r.status, 202) << r;
  EXPECT_EQ(state_of(id).users.size(), 1u);
  EXPECT_EQ(trove(http::Method::kGet, base + "/users/app").status, 404);

  r = trove(http::Method::kGet, base + "/root");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["rootEnabled"], false);
  r = trove(http::Method::kPost, base + "/root");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["user"]["name"], "root");
  const std::string root_pw = r.body["user"]["password"];
  EXPECT_GE(root_pw.size(), 16u);
  st = state_of(id);
  ASSERT_TRUE(st.root.has_value());
  EXPECT_TRUE(st.root->verifier.starts_with("SCRAM-SHA-256$"));
  EXPECT_EQ(trove(http::Method::kGet, base + "/root").body["rootEnabled"], true);

  // Every change raised the revision and made the agent's spec new.
  EXPECT_GT(st.revision, 8);
  EXPECT_FALSE(server(id)->converged);
}

// With apply_wait, a change of users (or databases, root) is answered only once the instance's
// agent has reported its new desired state applied, or when the wait runs out.
TEST_F(DatabaseApiTest, AccessChangesAnswerOnceTheAgentAppliedThem) {
  const std::string id = create(pg_instance());
  activate(id);
  DatabaseOptions o;
  o.max_volume_gb = 20;
  o.apply_wait = std::chrono::milliseconds(60000);
  http::Router router;
  auto waiting = service_on(router, o);
  ASSERT_TRUE(waiting);
  auto call = [&](const Json& body) {
    return trove_status_on(router, http::Method::kPost, "/instances/" + id + "/users", body);
  };
  auto answered = std::async(std::launch::async, [&] {
    return call({{"users", Json::array({{{"name", "bob"}, {"password", "bob-pw-1"}}})}});
  });
  // The change is written (the agent's spec carries it) but not applied: no answer yet.
  for (int i = 0; i < 200 && state_of(id).users.size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(state_of(id).users.size(), 2u);
  EXPECT_EQ(answered.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  report(id, 2);  // the agent applied spec generation 2
  ASSERT_EQ(answered.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(answered.get(), 202);
  // A refused change answers at once, without waiting.
  EXPECT_EQ(call({{"users", Json::array({{{"name", "bob"}, {"password", "x"}}})}}), 400);

  // When the agent never applies it, the wait runs out with the same answer.
  o.apply_wait = std::chrono::milliseconds(200);
  http::Router router2;
  auto short_wait = service_on(router2, o);
  ASSERT_TRUE(short_wait);
  EXPECT_EQ(trove_status_on(router2, http::Method::kPost, "/instances/" + id + "/databases",
                            {{"databases", Json::array({{{"name", "orders"}}})}}),
            202);
  EXPECT_FALSE(server(id)->converged);
}

// A promotion reaches the replica only once its old primary's agent says that engine stopped
// taking writes: the fencing acknowledgement in its status detail (fenced_revision, reported
// before it copies from the new primary, which it cannot do before the promotion), or its new
// state applied. Never two writable primaries, and no wait for the old primary's copy.
TEST_F(DatabaseApiTest, APromotionWaitsForTheOldPrimarysFencingAcknowledgement) {
  const std::string primary = create(pg_instance("pr"));
  activate(primary);
  Reply r = trove(http::Method::kPost, "/instances",
                  {{"instance", {{"name", "pr-r"}, {"replica_of", primary}}}});
  ASSERT_EQ(r.status, 200) << r;
  const std::string replica = r.body["instance"]["id"];
  activate(replica);
  ASSERT_EQ(state_of(replica).replication->role, engine::ReplicationSpec::Role::kReplica);

  http::Router router;
  auto waiting = waiting_service_on(router);
  ASSERT_TRUE(waiting);
  auto answered = std::async(std::launch::async, [&] {
    return trove_status_on(router, http::Method::kPost, "/instances/" + replica + "/action",
                           {{"promote_to_replica_source", Json::object()}});
  });
  auto told = [&](const std::string& id) {
    engine::DesiredState st = state_of(id);
    return st.replication && st.replication->role == engine::ReplicationSpec::Role::kReplica &&
           st.replication->upstream_instance == replica;
  };
  for (int i = 0; i < 500 && !told(primary); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(told(primary)) << "the old primary is told first";
  const int64_t demoted_at = state_of(primary).revision;
  EXPECT_EQ(answered.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  EXPECT_EQ(state_of(replica).replication->role, engine::ReplicationSpec::Role::kReplica)
      << "not promoted before the old primary stopped taking writes";

  // An acknowledgement of an earlier demotion is not this one's.
  report_detail(primary, "state_revision=1; postgresql 15; fenced_revision=" +
                             std::to_string(demoted_at - 1));
  EXPECT_EQ(answered.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  EXPECT_EQ(state_of(replica).replication->role, engine::ReplicationSpec::Role::kReplica);

  // Stopped and set aside for this revision, its copy not made yet (it is not converged).
  report_detail(primary,
                "state_revision=1; postgresql 15; fenced_revision=" + std::to_string(demoted_at));
  ASSERT_EQ(answered.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(answered.get(), 202);
  EXPECT_FALSE(server(primary)->converged);
  engine::DesiredState promoted = state_of(replica);
  ASSERT_TRUE(promoted.replication.has_value());
  EXPECT_EQ(promoted.replication->role, engine::ReplicationSpec::Role::kPrimary);
  EXPECT_EQ(promoted.replication->replicas, std::vector<std::string>{primary});
}

TEST_F(DatabaseApiTest, RestartAndResize) {
  const std::string id = create(pg_instance());
  const std::string base = "/instances/" + id;
  // Not ACTIVE yet.
  Reply r = trove(http::Method::kPost, base + "/action", {{"restart", Json::object()}});
  EXPECT_EQ(r.status, 422) << r;
  EXPECT_EQ(r.body["unprocessableEntity"]["code"], 422) << r;
  activate(id);

  r = trove(http::Method::kPost, base + "/action", {{"restart", Json::object()}});
  ASSERT_EQ(r.status, 202) << r;
  EXPECT_EQ(trove(http::Method::kGet, base).body["instance"]["status"], "REBOOT");
  auto s = server(id);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->task_state.value_or(""), "rebooting");
  ASSERT_NO_FATAL_FAILURE(report(id, 2, "present", 1, /*reboot_seq=*/1));
  EXPECT_EQ(trove(http::Method::kGet, base).body["instance"]["status"], "ACTIVE");

  r = trove(http::Method::kPost, base + "/action", {{"resize", {{"flavorRef", "2"}}}});
  EXPECT_EQ(r.status, 400) << r;
  r = trove(http::Method::kPost, base + "/action", {{"resize", {{"flavorRef", "999"}}}});
  EXPECT_EQ(r.status, 404) << r;
  r = trove(http::Method::kPost, base + "/action", {{"resize", {{"flavorRef", "3"}}}});
  ASSERT_EQ(r.status, 202) << r;
  r = trove(http::Method::kGet, base);
  EXPECT_EQ(r.body["instance"]["status"], "RESIZE") << r;
  EXPECT_EQ(r.body["instance"]["flavor"]["id"], "3");
  s = server(id);
  EXPECT_EQ(s->vcpus, 2);
  EXPECT_EQ(s->ram_mb, 4096);
  report(id, 3);
  EXPECT_EQ(trove(http::Method::kGet, base).body["instance"]["status"], "ACTIVE");

  r = trove(http::Method::kPost, base + "/action", {{"resize", {{"volume", {{"size", 2}}}}}});
  EXPECT_EQ(r.status, 400) << r;
  r = trove(http::Method::kPost, base + "/action", {{"resize", {{"volume", {{"size", 21}}}}}});
  EXPECT_EQ(r.status, 400) << r;
  r = trove(http::Method::kPost, base + "/action", {{"resize", {{"volume", {{"size", 5}}}}}});
  ASSERT_EQ(r.status, 202) << r;
  s = server(id);
  EXPECT_EQ(s->disk_gb, 5);
  EXPECT_EQ(s->metadata[std::string(keys::kVolumeGb)], "5");
  EXPECT_EQ(trove(http::Method::kGet, base).body["instance"]["volume"]["size"], 5);
  // Admins only (Trove's policy): a tenant gets 403 in Trove's format.
  r = trove(http::Method::kPost, base + "/action", {{"reset_status", Json::object()}});
  EXPECT_EQ(r.status, 403) << r;
  EXPECT_TRUE(r.body.contains("forbidden")) << r;
}

// An engine that died (its agent reports it shut down) makes the instance SHUTDOWN, and a
// restart brings it back, as Trove allows; a bigger volume may come first (room for an engine
// that stopped on a full volume); other actions, a flavor resize among them, wait for it to run.
TEST_F(DatabaseApiTest, ARestartBringsBackAnEngineThatDied) {
  const std::string id = create(pg_instance());
  const std::string base = "/instances/" + id;
  activate(id);  // spec generation 1; the engine's death makes 2 (desired power off), the
                 // volume resize 3 and 4 (the size, then the desired state), the restart 5
  ASSERT_NO_FATAL_FAILURE(report(id, 1, "present", 4, /*reboot_seq=*/0));
  ASSERT_EQ(trove(http::Method::kGet, base).body["instance"]["status"], "SHUTDOWN");
  Reply r = trove(http::Method::kPost, base + "/action", {{"resize", {{"flavorRef", "3"}}}});
  EXPECT_EQ(r.status, 422) << r;
  // A bigger volume is allowed: an engine that stopped on a full volume gets room before its
  // restart. The agent grows it and the engine stays down.
  r = trove(http::Method::kPost, base + "/action", {{"resize", {{"volume", {{"size", 3}}}}}});
  ASSERT_EQ(r.status, 202) << r;
  EXPECT_EQ(trove(http::Method::kGet, base).body["instance"]["status"], "RESIZE");
  ASSERT_NO_FATAL_FAILURE(report(id, 4, "present", 4, /*reboot_seq=*/0));
  Json shown = trove(http::Method::kGet, base).body["instance"];
  EXPECT_EQ(shown["status"], "SHUTDOWN") << shown;
  EXPECT_EQ(shown["volume"]["size"], 3) << shown;
  r = trove(http::Method::kPost, base + "/action", {{"restart", Json::object()}});
  ASSERT_EQ(r.status, 202) << r;
  EXPECT_EQ(trove(http::Method::kGet, base).body["instance"]["status"], "REBOOT");
  auto s = server(id);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->task_state.value_or(""), "rebooting_hard");
  ASSERT_NO_FATAL_FAILURE(report(id, 5, "present", 1, /*reboot_seq=*/1));
  EXPECT_EQ(trove(http::Method::kGet, base).body["instance"]["status"], "ACTIVE");
}

// An engine whose restart failed (a crash recovery that found no room on a full volume, say)
// leaves the instance in ERROR with the fault. A bigger volume and a restart are still offered
// from there, as Nova's hard reboot takes back an ERROR server: the volume's growth reaches the
// agent with the failed restart still pending, so it starts the engine once the room is there.
// A flavor resize is not, and neither action is while the host is down.
TEST_F(DatabaseApiTest, AFailedRestartLeavesARestartAndABiggerVolumeOffered) {
  const std::string id = create(pg_instance());
  const std::string base = "/instances/" + id;
  activate(id);  // generation 1; the death makes 2, the restart 3, the volume resize 4 and 5
  ASSERT_NO_FATAL_FAILURE(report(id, 1, "present", 4, /*reboot_seq=*/0));
  ASSERT_EQ(trove(http::Method::kGet, base).body["instance"]["status"], "SHUTDOWN");
  Reply r = trove(http::Method::kPost, base + "/action", {{"restart", Json::object()}});
  ASSERT_EQ(r.status, 202) << r;
  auto failed = [&](int64_t generation, int64_t reboot_seq) {
    Json inst = {{"id", id},
                 {"generation", generation},
                 {"state", "present"},
                 {"power_state", 4},
                 {"addresses", Json::array()},
                 {"reboot_seq", reboot_seq},
                 {"error",
                  "reboot failed: PANIC: could not write to file \"pg_wal/xlogtemp\": "
                  "No space left on device"}};
    Reply a = agent(http::Method::kPost, std::string("/v1/hosts/") + kHost + "/report",
                    Json{{"instances", Json::array({inst})}});
    ASSERT_EQ(a.status, 200) << a;
  };
  ASSERT_NO_FATAL_FAILURE(failed(3, 0));
  Json shown = trove(http::Method::kGet, base).body["instance"];
  ASSERT_EQ(shown["status"], "ERROR") << shown;
  EXPECT_NE(shown["fault"]["message"].get<std::string>().find("No space left"), std::string::npos)
      << shown;

  r = trove(http::Method::kPost, base + "/action", {{"resize", {{"flavorRef", "3"}}}});
  EXPECT_EQ(r.status, 422) << r;
  r = trove(http::Method::kPost, base + "/action", {{"resize", {{"volume", {{"size", 3}}}}}});
  ASSERT_EQ(r.status, 202) << r;
  auto s = server(id);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->disk_gb, 3);
  EXPECT_EQ(s->metadata[std::string(keys::kVolumeGb)], "3");
  // The agent grew the volume and then did the pending restart: the engine runs.
  ASSERT_NO_FATAL_FAILURE(report(id, 5, "present", 1, /*reboot_seq=*/1));
  shown = trove(http::Method::kGet, base).body["instance"];
  EXPECT_EQ(shown["status"], "ACTIVE") << shown;
  EXPECT_EQ(shown["volume"]["size"], 3) << shown;
  EXPECT_FALSE(shown.contains("fault")) << shown;

  // Failed again (generation 5's start), and restarted from ERROR this time.
  ASSERT_NO_FATAL_FAILURE(failed(5, 1));
  ASSERT_EQ(trove(http::Method::kGet, base).body["instance"]["status"], "ERROR");
  r = trove(http::Method::kPost, base + "/action", {{"restart", Json::object()}});
  ASSERT_EQ(r.status, 202) << r;
  EXPECT_EQ(trove(http::Method::kGet, base).body["instance"]["status"], "REBOOT");
  s = server(id);
  EXPECT_EQ(s->task_state.value_or(""), "rebooting_hard");
  ASSERT_NO_FATAL_FAILURE(report(id, 6, "present", 1, /*reboot_seq=*/2));
  EXPECT_EQ(trove(http::Method::kGet, base).body["instance"]["status"], "ACTIVE");

  // ERROR because its host stopped reporting: no action could run there.
  ASSERT_NO_FATAL_FAILURE(failed(6, 2));
  clock_.advance(std::chrono::seconds(90));
  ASSERT_EQ(trove(http::Method::kGet, base).body["instance"]["status"], "ERROR");
  r = trove(http::Method::kPost, base + "/action", {{"restart", Json::object()}});
  EXPECT_EQ(r.status, 422) << r;
  r = trove(http::Method::kPost, base + "/action", {{"resize", {{"volume", {{"size", 4}}}}}});
  EXPECT_EQ(r.status, 422) << r;
  EXPECT_EQ(server(id)->disk_gb, 3) << "nothing changed";
}

// Trove's quotas: the project's limits (GET /limits, GET /mgmt/quotas/{project}), an admin's
// override (PUT), and a create or resize that would pass one refused with 413 overLimit,
// nothing made; a quota path naming no project is 404.
TEST_F(DatabaseApiTest, QuotasBoundWhatAProjectHolds) {
  using http::Method;
  Reply r = trove(Method::kGet, "/limits");
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["limits"].size(), 1u) << r;
  EXPECT_EQ(r.body["limits"][0], Json({{"verb", "ABSOLUTE"},
                                       {"max_instances", 10},
                                       {"max_ram", -1},
                                       {"max_volumes", 40},
                                       {"max_backups", 50}}));

  http::Response ir = identity_call(Method::kGet, "/v3/projects?name=admin", nullptr, admin_);
  ASSERT_EQ(ir.status, 200) << ir.body;
  const std::string admin_project = (*parse_json(ir.body))["projects"][0]["id"];
  const Json quotas = {{"quotas", {{"instances", 2}, {"volumes", 3}}}};
  r = trove(Method::kPut, "/mgmt/quotas/" + p1_, quotas);
  EXPECT_EQ(r.status, 403) << "only admins set quotas: " << r;
  for (const Json& bad : {Json{{"quotas", {{"instances", -2}}}}, Json{{"quotas", {{"cores", 1}}}},
                          Json{{"quotas", {{"instances", "2"}}}}, Json{{"quota", 1}}}) {
    r = trove(Method::kPut, "/mgmt/quotas/" + p1_, bad, admin_, admin_project);
    EXPECT_EQ(r.status, 400) << bad << ": " << r;
  }
  r = trove(Method::kPut, "/mgmt/quotas/" + p1_, quotas, admin_, admin_project);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, Json({{"quotas", {{"instances", 2}, {"volumes", 3}}}}));

  const std::string first = create(pg_instance("q1"));  // 2 GB
  r = trove(Method::kPost, "/instances", pg_instance("q2"));
  EXPECT_EQ(r.status, 413) << r;
  EXPECT_EQ(r.body["overLimit"]["message"], "Quota exceeded for resources: ['volumes'].") << r;
  Json small = pg_instance("q3");
  small["instance"]["volume"] = {{"size", 1}};
  const std::string second = create(small);  // 3 of 3 GB
  r = trove(Method::kPost, "/instances", small);
  EXPECT_EQ(r.status, 413) << r;
  EXPECT_EQ(r.body["overLimit"]["message"],
            "Quota exceeded for resources: ['instances', 'volumes'].")
      << r;
  EXPECT_EQ(trove(Method::kGet, "/instances").body["instances"].size(), 2u) << "nothing made";

  r = trove(Method::kGet, "/mgmt/quotas/" + p1_);
  ASSERT_EQ(r.status, 200) << r;
  Json expected = Json::array();
  for (auto [res, used, limit] : {std::tuple{"instances", 2, 2}, std::tuple{"ram", 4096, -1},
                                  std::tuple{"volumes", 3, 3}, std::tuple{"backups", 0, 50}}) {
    expected.push_back({{"resource", res}, {"in_use", used}, {"reserved", 0}, {"limit", limit}});
  }
  EXPECT_EQ(r.body["quotas"], expected) << r;
  r = trove(Method::kGet, "/mgmt/quotas/" + p2_);
  EXPECT_EQ(r.status, 403) << "another project's quotas: " << r;
  r = trove(Method::kGet, "/mgmt/quotas/no-such-project");
  EXPECT_EQ(r.status, 403) << "a tenant learns nothing about other ids: " << r;

  // The path's project must be one identity holds (a domain is not one): Trove's 404
  // itemNotFound, and nothing written for a mistyped id.
  r = trove(Method::kGet, "/mgmt/quotas/" + p2_, nullptr, admin_, admin_project);
  EXPECT_EQ(r.status, 200) << r;
  for (const std::string unknown : {"no-such-project", "default"}) {
    for (const Method m : {Method::kGet, Method::kPut}) {
      r = trove(m, "/mgmt/quotas/" + unknown, m == Method::kPut ? quotas : Json(nullptr), admin_,
                admin_project);
      EXPECT_EQ(r.status, 404) << unknown << ": " << r;
      EXPECT_EQ(
          r.body,
          Json({{"itemNotFound",
                 {{"message", "Project '" + unknown + "' cannot be found."}, {"code", 404}}}}))
          << r;
    }
  }
  int64_t stray = -1;
  ASSERT_TRUE(store_->read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query("SELECT COUNT(*) FROM db_quotas WHERE project_id IN (?, ?)",
                                      {std::string("no-such-project"), std::string("default")}));
    stray = rows[0].integer(0);
    return ok();
  }));
  EXPECT_EQ(stray, 0);

  // A resize that grows past the volumes quota; a deleted instance frees its share. A
  // replica's volume grows with its primary's, so its growth counts too.
  activate(first);
  r = trove(Method::kPost, "/instances/" + first + "/action",
            {{"resize", {{"volume", {{"size", 3}}}}}});
  EXPECT_EQ(r.status, 413) << r;
  ASSERT_EQ(trove(Method::kDelete, "/instances/" + second).status, 202);
  r = trove(Method::kPut, "/mgmt/quotas/" + p1_, {{"quotas", {{"volumes", 5}}}}, admin_,
            admin_project);
  ASSERT_EQ(r.status, 200) << r;
  r = trove(Method::kPost, "/instances", {{"instance", {{"name", "q1-r"}, {"replica_of", first}}}});
  ASSERT_EQ(r.status, 200) << r;  // 2 + 2 of 5 GB
  activate(r.body["instance"]["id"]);
  r = trove(Method::kPost, "/instances/" + first + "/action",
            {{"resize", {{"volume", {{"size", 3}}}}}});
  EXPECT_EQ(r.status, 413) << "3 + 3 > 5: " << r;
  r = trove(Method::kPut, "/mgmt/quotas/" + p1_, {{"quotas", {{"volumes", 6}}}}, admin_,
            admin_project);
  ASSERT_EQ(r.status, 200) << r;
  r = trove(Method::kPost, "/instances/" + first + "/action",
            {{"resize", {{"volume", {{"size", 3}}}}}});
  EXPECT_EQ(r.status, 202) << r;
}

TEST_F(DatabaseApiTest, RenameAndUnknownRoutes) {
  const std::string id = create(pg_instance());
  Reply r = trove(http::Method::kPatch, "/instances/" + id, {{"instance", {{"name", "renamed"}}}});
  ASSERT_EQ(r.status, 202) << r;
  EXPECT_EQ(trove(http::Method::kGet, "/instances/" + id).body["instance"]["name"], "renamed");
  // Detaching an instance that is no replica: Trove's 400, and the rest of the body not applied.
  for (const Json& detach : {Json(nullptr), Json("")}) {
    r = trove(http::Method::kPut, "/instances/" + id,
              {{"instance", {{"replica_of", detach}, {"name", "detached"}}}});
    EXPECT_EQ(r.status, 400) << r;
    EXPECT_NE(r.body.dump().find("is not a replica"), std::string::npos) << r;
  }
  EXPECT_EQ(trove(http::Method::kGet, "/instances/" + id).body["instance"]["name"], "renamed");
  r = trove(http::Method::kGet, "/instances/no-such-id");
  EXPECT_EQ(r.status, 404) << r;
  r = trove(http::Method::kGet, "/clusters");  // Trove clusters: not offered
  EXPECT_EQ(r.status, 404) << r;
  EXPECT_TRUE(r.body.contains("itemNotFound")) << r;
}

// The service-server calls the API relies on (compute/service/service_servers.h) keep compute's
// rules: capacity on the host, one task at a time, nothing for servers being deleted.
TEST_F(DatabaseApiTest, ServiceServerChangesKeepComputesRules) {
  const std::string id = create(pg_instance());
  Status st = compute::resize_service_server(*ctx_, id, 1, 30000, 2);  // 16384 MB x 1.5 < 30000
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition) << st.error().to_string();
  EXPECT_EQ(server(id)->ram_mb, 2048);  // nothing changed
  st = compute::resize_service_server(*ctx_, id, 0, 512, 1);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);

  st = compute::reboot_service_server(*ctx_, id);  // still spawning
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition) << st.error().to_string();
  report(id, 1);
  ASSERT_TRUE(compute::reboot_service_server(*ctx_, id));
  st = compute::reboot_service_server(*ctx_, id);  // rebooting
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition) << st.error().to_string();

  st = compute::set_service_server_metadata(*ctx_, "no-such-server", {{"k", "v"}});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Code::kNotFound);
  ASSERT_TRUE(compute::delete_service_server(*ctx_, id));
  st = compute::set_service_server_metadata(*ctx_, id, {{"k", "v"}});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Code::kNotFound);

  // Without an image, and no host offering the driver: nothing recorded when asked so.
  compute::ServiceServerRequest req;
  req.id = "imageless-1";
  req.project_id = service_project_;
  req.user_id = "u";
  req.name = "imageless";
  req.driver = "nonesuch";
  req.record_unplaced = false;
  st = compute::create_service_server(*ctx_, req);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Code::kResourceExhausted);
  EXPECT_FALSE(server("imageless-1").has_value());
}

}  // namespace
}  // namespace concord::database::service
