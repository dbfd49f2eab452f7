// Configuration groups through the Trove v1.0 API (src/database/service/api_configurations.cc)
// on a real store, real tokens and the real compute service, as service_api_test.cc does (the
// fixture is service_test_fixture.h; the agent's part is played by reports): the parameter catalog,
// group CRUD, attach and detach rewriting the desired state, the project and datastore-version
// fences, bad values refused naming the parameter, and RESTART_REQUIRED cleared by a restart.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <map>
#include <string>
#include <thread>

#include "base/json.h"
#include "database/service/database_service.h"
#include "http/router.h"
#include "service_test_fixture.h"

namespace concord::database::service {
namespace {

using compute::agent_testing::Reply;

// The shared stack unchanged; a class of its own keeps the suite (and ctest) name.
class ConfigurationApiTest : public DatabaseServiceTest {
 protected:
  ConfigurationApiTest() : DatabaseServiceTest("concord-database-cfg") {}
};

constexpr const char* kPgVersion = "6e1a7a4c-58a4-4a84-9d51-2f1f0c0c5b15";
constexpr const char* kMariadbVersion = "6e1a7a4c-58a4-4a84-9d51-2f1f0c0c5b11";

Json pg_group(const Json& values, const std::string& name = "tuned") {
  return {{"configuration",
           {{"name", name},
            {"description", "for tests"},
            {"values", values},
            {"datastore", {{"type", "postgresql"}, {"version", "15"}}}}}};
}

TEST_F(ConfigurationApiTest, ParameterCatalogByVersionIdAndByNames) {
  Reply r =
      trove(http::Method::kGet, std::string("/datastores/versions/") + kPgVersion + "/parameters",
            nullptr, reader1_);
  ASSERT_EQ(r.status, 200) << r;
  std::map<std::string, Json> by_name;
  for (const Json& p : r.body["configuration-parameters"]) by_name[p["name"]] = p;
  ASSERT_TRUE(by_name.contains("work_mem") && by_name.contains("max_connections")) << r;
  EXPECT_EQ(by_name["work_mem"]["type"], "integer");
  EXPECT_EQ(by_name["work_mem"]["restart_required"], false);
  EXPECT_EQ(by_name["work_mem"]["min"], 64);
  EXPECT_EQ(by_name["work_mem"]["datastore_version_id"], kPgVersion);
  EXPECT_EQ(by_name["max_connections"]["restart_required"], true);
  EXPECT_EQ(by_name["random_page_cost"]["type"], "float");
  EXPECT_EQ(by_name["jit"]["type"], "boolean");
  EXPECT_FALSE(by_name.contains("listen_addresses"));

  r = trove(http::Method::kGet, "/datastores/mariadb/versions/10.11/parameters");
  ASSERT_EQ(r.status, 200) << r;
  bool log_size = false;
  for (const Json& p : r.body["configuration-parameters"]) {
    if (p["name"] == "innodb_log_file_size") log_size = p["restart_required"] == true;
  }
  EXPECT_TRUE(log_size) << r;

  r = trove(http::Method::kGet,
            std::string("/datastores/versions/") + kPgVersion + "/parameters/shared_buffers");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["name"], "shared_buffers");
  EXPECT_EQ(r.body["restart_required"], true);
  r = trove(http::Method::kGet, "/datastores/postgresql/versions/15/parameters/work_mem");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["max"], 2097151);
  r = trove(http::Method::kGet, "/datastores/postgresql/versions/15/parameters/port");
  EXPECT_EQ(r.status, 404) << r;
  EXPECT_EQ(r.body["itemNotFound"]["code"], 404) << r;
  r = trove(http::Method::kGet, "/datastores/versions/nope/parameters");
  EXPECT_EQ(r.status, 404) << r;
}

TEST_F(ConfigurationApiTest, GroupsCreateListShowUpdateDelete) {
  Reply r = trove(http::Method::kPost, "/configurations",
                  pg_group({{"work_mem", 8192}, {"jit", false}, {"random_page_cost", 1.5}}));
  ASSERT_EQ(r.status, 200) << r;
  const Json g = r.body["configuration"];
  const std::string id = g["id"];
  EXPECT_EQ(g["name"], "tuned");
  EXPECT_EQ(g["description"], "for tests");
  EXPECT_EQ(g["datastore_name"], "postgresql");
  EXPECT_EQ(g["datastore_version_name"], "15");
  EXPECT_EQ(g["datastore_version_id"], kPgVersion);
  EXPECT_EQ(g["values"], Json({{"work_mem", 8192}, {"jit", false}, {"random_page_cost", 1.5}}));
  EXPECT_EQ(g["instance_count"], 0);

  r = trove(http::Method::kGet, "/configurations", nullptr, reader1_);
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["configurations"].size(), 1u);
  EXPECT_EQ(r.body["configurations"][0]["id"], id);
  EXPECT_EQ(r.body["configurations"][0]["datastore_version_number"], "15");

  // PATCH merges (200), PUT replaces (202), as Trove answers.
  r = trove(http::Method::kPatch, "/configurations/" + id,
            {{"configuration", {{"values", {{"statement_timeout", 30000}}}}}});
  ASSERT_EQ(r.status, 200) << r;
  r = trove(http::Method::kGet, "/configurations/" + id);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["configuration"]["values"].size(), 4u) << r;
  r = trove(http::Method::kPut, "/configurations/" + id,
            {{"configuration", {{"values", {{"work_mem", "4096"}}}, {"name", "renamed"}}}});
  ASSERT_EQ(r.status, 202) << r;
  r = trove(http::Method::kGet, "/configurations/" + id);
  EXPECT_EQ(r.body["configuration"]["values"], Json({{"work_mem", 4096}})) << r;
  EXPECT_EQ(r.body["configuration"]["name"], "renamed");

  // Readers read, members change.
  r = trove(http::Method::kPost, "/configurations", pg_group({}), reader1_);
  EXPECT_EQ(r.status, 403) << r;
  // Another project sees nothing of it.
  r = trove(http::Method::kGet, "/configurations/" + id, nullptr, member2_, p2_);
  EXPECT_EQ(r.status, 404) << r;
  r = trove(http::Method::kGet, "/configurations", nullptr, member2_, p2_);
  EXPECT_EQ(r.body["configurations"].size(), 0u) << r;
  r = trove(http::Method::kDelete, "/configurations/" + id, nullptr, member2_, p2_);
  EXPECT_EQ(r.status, 404) << r;

  r = trove(http::Method::kDelete, "/configurations/" + id);
  ASSERT_EQ(r.status, 202) << r;
  r = trove(http::Method::kGet, "/configurations/" + id);
  EXPECT_EQ(r.status, 404) << r;
}

TEST_F(ConfigurationApiTest, BadValuesAreRefusedNamingTheParameter) {
  struct Case {
    Json values;
    std::string named;
  };
  for (const Case& c : std::vector<Case>{{{{"work_mem", 1}}, "work_mem"},
                                         {{{"work_mem", "8MB"}}, "work_mem"},
                                         {{{"work_mem", true}}, "work_mem"},
                                         {{{"work_mem", 1.5}}, "work_mem"},
                                         {{{"max_connections", Json::array()}}, "max_connections"},
                                         {{{"jit", "maybe"}}, "jit"},
                                         {{{"random_page_cost", -1}}, "random_page_cost"},
                                         {{{"log_statement", "all'\nx"}}, "log_statement"},
                                         {{{"listen_addresses", "*"}}, "listen_addresses"},
                                         {{{"innodb_log_file_size", 1}}, "innodb_log_file_size"}}) {
    Reply r = trove(http::Method::kPost, "/configurations", pg_group(c.values));
    ASSERT_EQ(r.status, 400) << c.values << r;
    const std::string msg = r.body["badRequest"]["message"];
    EXPECT_NE(msg.find("'" + c.named + "'"), std::string::npos) << msg;
  }
  Reply r = trove(http::Method::kPost, "/configurations",
                  {{"configuration", {{"name", "x"}, {"values", {{"work_mem", 4096}}}}}});
  EXPECT_EQ(r.status, 400) << r;  // no datastore
  r = trove(http::Method::kPost, "/configurations", pg_group(Json::array()));
  EXPECT_EQ(r.status, 400) << r;
  r = trove(http::Method::kPost, "/configurations", pg_group({}, ""));
  EXPECT_EQ(r.status, 400) << r;
  r = trove(http::Method::kGet, "/configurations", nullptr, reader1_);
  EXPECT_EQ(r.body["configurations"].size(), 0u) << r;  // nothing was written
}

TEST_F(ConfigurationApiTest, AttachDetachRewriteTheDesiredStateAndRestartRule) {
  const std::string id = create(pg_instance());
  activate(id);
  const std::string base = "/instances/" + id;
  Reply r = trove(http::Method::kPost, "/configurations", pg_group({{"work_mem", 8192}}));
  ASSERT_EQ(r.status, 200) << r;
  const std::string g = r.body["configuration"]["id"];

  // Attach (troveclient: PUT {"instance": {"configuration": id}}): dynamic only, so ACTIVE.
  r = trove(http::Method::kPut, base, {{"instance", {{"configuration", g}}}});
  ASSERT_EQ(r.status, 202) << r;
  engine::DesiredState st = state_of(id);
  EXPECT_EQ(st.revision, 2);
  EXPECT_EQ(st.parameters, (std::map<std::string, std::string>{{"work_mem", "8192"}}));
  r = trove(http::Method::kGet, base);
  EXPECT_EQ(r.body["instance"]["status"], "ACTIVE") << r;
  EXPECT_EQ(r.body["instance"]["configuration"]["id"], g) << r;
  EXPECT_EQ(r.body["instance"]["configuration"]["name"], "tuned") << r;
  EXPECT_EQ(r.body["instance"]["configuration"]["links"][0]["rel"], "self") << r;
  r = trove(http::Method::kGet, "/configurations/" + g + "/instances");
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["instances"].size(), 1u);
  EXPECT_EQ(r.body["instances"][0]["id"], id);
  // The instance's default configuration (troveclient's `configuration default`): Concord's
  // values for its flavor (m1.small, 2 GB: a quarter as shared_buffers in 8kB pages) and its
  // 2 GB volume (an eighth as max_wal_size), not the group's.
  r = trove(http::Method::kGet, base + "/configuration");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["instance"]["configuration"], Json({{"max_connections", 100},
                                                       {"shared_buffers", 65536},
                                                       {"max_wal_size", 256},
                                                       {"min_wal_size", 80}}))
      << r;

  // Deleting an attached group is refused (Trove: 400).
  r = trove(http::Method::kDelete, "/configurations/" + g);
  EXPECT_EQ(r.status, 400) << r;

  // Changing the group's values rewrites the attached instance; a restart-required one flags it.
  r = trove(http::Method::kPatch, "/configurations/" + g,
            {{"configuration", {{"values", {{"max_connections", 200}}}}}});
  ASSERT_EQ(r.status, 200) << r;
  st = state_of(id);
  EXPECT_EQ(st.revision, 3);
  EXPECT_EQ(st.parameters,
            (std::map<std::string, std::string>{{"work_mem", "8192"}, {"max_connections", "200"}}));
  report(id, 3);
  r = trove(http::Method::kGet, base);
  EXPECT_EQ(r.body["instance"]["status"], "RESTART_REQUIRED") << r;
  EXPECT_EQ(r.body["instance"]["operating_status"], "HEALTHY") << r;

  // The restart action is allowed in RESTART_REQUIRED and clears it.
  r = trove(http::Method::kPost, base + "/action", {{"restart", Json::object()}});
  ASSERT_EQ(r.status, 202) << r;
  Json inst = {{"id", id},         {"generation", 4}, {"state", "present"},
               {"power_state", 1}, {"reboot_seq", 1}, {"addresses", Json::array()}};
  Reply a = agent(http::Method::kPost, std::string("/v1/hosts/") + kHost + "/report",
                  Json{{"instances", Json::array({inst})}});
  ASSERT_EQ(a.status, 200) << a;
  r = trove(http::Method::kGet, base);
  EXPECT_EQ(r.body["instance"]["status"], "ACTIVE") << r;

  // A dynamic-only change keeps it ACTIVE.
  r = trove(http::Method::kPatch, "/configurations/" + g,
            {{"configuration", {{"values", {{"work_mem", 16384}}}}}});
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(state_of(id).parameters.at("work_mem"), "16384");
  EXPECT_EQ(trove(http::Method::kGet, base).body["instance"]["status"], "ACTIVE");

  // Attaching a second group while one is attached is refused; detach (troveclient sends
  // {"configuration": null}) removes the values and, as max_connections changes, flags again.
  r = trove(http::Method::kPost, "/configurations", pg_group({{"work_mem", 2048}}, "other"));
  ASSERT_EQ(r.status, 200) << r;
  const std::string g2 = r.body["configuration"]["id"];
  r = trove(http::Method::kPut, base, {{"instance", {{"configuration", g2}}}});
  EXPECT_EQ(r.status, 400) << r;
  const int64_t before = state_of(id).revision;
  r = trove(http::Method::kPut, base, {{"instance", {{"configuration", nullptr}}}});
  ASSERT_EQ(r.status, 202) << r;
  st = state_of(id);
  EXPECT_EQ(st.revision, before + 1);
  EXPECT_TRUE(st.parameters.empty());
  r = trove(http::Method::kGet, base);
  EXPECT_FALSE(r.body["instance"].contains("configuration")) << r;
  EXPECT_EQ(r.body["instance"]["status"], "RESTART_REQUIRED") << r;
  r = trove(http::Method::kGet, "/configurations/" + g + "/instances");
  EXPECT_EQ(r.body["instances"].size(), 0u) << r;
  r = trove(http::Method::kDelete, "/configurations/" + g);
  EXPECT_EQ(r.status, 202) << r;
}

TEST_F(ConfigurationApiTest, OtherVersionOrProjectIsRefused) {
  const std::string id = create(pg_instance());
  activate(id);
  Reply r = trove(http::Method::kPost, "/configurations",
                  {{"configuration",
                    {{"name", "maria"},
                     {"values", {{"wait_timeout", 600}}},
                     {"datastore", {{"type", "mariadb"}}}}}});
  ASSERT_EQ(r.status, 200) << r;
  const std::string maria = r.body["configuration"]["id"];
  EXPECT_EQ(r.body["configuration"]["datastore_version_id"], kMariadbVersion);
  r = trove(http::Method::kPut, "/instances/" + id, {{"instance", {{"configuration", maria}}}});
  EXPECT_EQ(r.status, 400) << r;
  EXPECT_NE(r.body["badRequest"]["message"].get<std::string>().find("mariadb"), std::string::npos)
      << r;

  r = trove(http::Method::kPost, "/configurations", pg_group({{"work_mem", 8192}}), member2_, p2_);
  ASSERT_EQ(r.status, 200) << r;
  const std::string foreign = r.body["configuration"]["id"];
  r = trove(http::Method::kPut, "/instances/" + id, {{"instance", {{"configuration", foreign}}}});
  EXPECT_EQ(r.status, 404) << r;
  r = trove(http::Method::kPatch, "/instances/" + id, {{"instance", {{"configuration", 7}}}});
  EXPECT_EQ(r.status, 400) << r;
  r = trove(http::Method::kPatch, "/instances/" + id, {{"instance", {{"configuration", ""}}}});
  EXPECT_EQ(r.status, 400) << r;
  // A buffer cache larger than the instance's memory (flavor 2: 2048 MB) would keep it from
  // starting: refused at attach and when the values of an attached group change.
  r = trove(http::Method::kPost, "/configurations", pg_group({{"shared_buffers", 262144}}));
  ASSERT_EQ(r.status, 200) << r;  // 2 GB: fine for a group, too big for this instance
  const std::string big = r.body["configuration"]["id"];
  r = trove(http::Method::kPut, "/instances/" + id, {{"instance", {{"configuration", big}}}});
  EXPECT_EQ(r.status, 400) << r;
  EXPECT_NE(r.body["badRequest"]["message"].get<std::string>().find("'shared_buffers'"),
            std::string::npos)
      << r;
  r = trove(http::Method::kPatch, "/configurations/" + big,
            {{"configuration", {{"values", {{"shared_buffers", 16384}}}}}});
  ASSERT_EQ(r.status, 200) << r;
  r = trove(http::Method::kPut, "/instances/" + id, {{"instance", {{"configuration", big}}}});
  ASSERT_EQ(r.status, 202) << r;
  r = trove(http::Method::kPatch, "/configurations/" + big,
            {{"configuration", {{"values", {{"shared_buffers", 262144}}}}}});
  EXPECT_EQ(r.status, 400) << r;
  EXPECT_EQ(state_of(id).parameters.at("shared_buffers"), "16384");
  r = trove(http::Method::kPut, "/instances/" + id, {{"instance", {{"configuration", nullptr}}}});
  ASSERT_EQ(r.status, 202) << r;
  EXPECT_EQ(state_of(id).revision, 3);  // the attach and detach of `big` only
  EXPECT_TRUE(state_of(id).parameters.empty());

  // At create: the same fences, and a good group lands in the first desired state.
  Json body = pg_instance("db2");
  body["instance"]["configuration"] = foreign;
  r = trove(http::Method::kPost, "/instances", body);
  EXPECT_EQ(r.status, 404) << r;
  body["instance"]["configuration"] = maria;
  r = trove(http::Method::kPost, "/instances", body);
  EXPECT_EQ(r.status, 400) << r;
  r = trove(http::Method::kPost, "/configurations", pg_group({{"max_connections", 300}}));
  ASSERT_EQ(r.status, 200) << r;
  body["instance"]["configuration"] = r.body["configuration"]["id"];
  const std::string id2 = create(body);
  ASSERT_FALSE(id2.empty());
  EXPECT_EQ(state_of(id2).parameters,
            (std::map<std::string, std::string>{{"max_connections", "300"}}));
  activate(id2);  // a new instance starts with its values: no restart is pending
}

TEST_F(ConfigurationApiTest, ValueChangesAnswerOnceAnAttachedInstanceAppliedThem) {
  const std::string id = create(pg_instance());
  activate(id);
  Reply r = trove(http::Method::kPost, "/configurations", pg_group({{"work_mem", 8192}}));
  ASSERT_EQ(r.status, 200) << r;
  const std::string g = r.body["configuration"]["id"];
  ASSERT_EQ(
      trove(http::Method::kPut, "/instances/" + id, {{"instance", {{"configuration", g}}}}).status,
      202);
  report(id, 2);
  http::Router router;
  auto waiting = waiting_service_on(router);
  ASSERT_TRUE(waiting);
  auto patch = [&](const Json& values) {
    return trove_status_on(router, http::Method::kPatch, "/configurations/" + g,
                           {{"configuration", {{"values", values}}}});
  };
  auto answered = std::async(std::launch::async, [&] { return patch({{"work_mem", 16384}}); });
  for (int i = 0; i < 200 && state_of(id).revision < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(state_of(id).parameters.at("work_mem"), "16384");
  // Written to the spec, not applied yet: no answer.
  EXPECT_EQ(answered.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  report(id, 3);
  ASSERT_EQ(answered.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(answered.get(), 200);
  // A refused value answers at once.
  EXPECT_EQ(patch({{"work_mem", "lots"}}), 400);
}

}  // namespace
}  // namespace concord::database::service
