// The agent's configure hook: a change of the server's metadata (the database desired state)
// reaches Driver::configure once per change, also across an agent restart, and an image-less
// spec (the database driver's) converges without any image download.
#include "agent_test_util.h"

namespace concord::agent::testing {
namespace {

constexpr const char* kId = "aaaaaaaa-0000-4000-8000-0000000000c1";

class AgentConfigureTest : public AgentServerTest {
 protected:
  // What the database service does: new metadata, a new generation, in one transaction.
  void set_meta(const std::string& id, const std::string& key, const std::string& value) {
    auto st = store_->write([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(ServerRow s, compute::load_server(tx, id, true));
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n, tx.exec("DELETE FROM compute_server_metadata WHERE server_id = ? AND key = ?",
                             {id, key}));
      CONCORD_ASSIGN_OR_RETURN(
          int64_t m, tx.exec("INSERT INTO compute_server_metadata (server_id, key, value) VALUES "
                             "(?, ?, ?)",
                             {id, key, value}));
      (void)n;
      (void)m;
      s.spec_generation += 1;
      return compute::update_server(tx, s);
    });
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
  }
};

TEST_F(AgentConfigureTest, MetadataChangeCallsConfigureOnceAndSurvivesRestart) {
  auto fake = std::make_shared<FakeDriver>();
  start_agent(fake);
  insert_building(kId);
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ACTIVE"; })) << status_of(kId);
  // create carried the metadata: nothing to configure.
  EXPECT_EQ(fake->calls("configure"), 0);

  set_meta(kId, "concord.database.state", R"({"revision":2})");
  ASSERT_TRUE(eventually([&] { return fake->calls("configure") == 1; }));
  auto got = fake->configured();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_NE(got[0].find(R"(\"revision\":2)"), std::string::npos) << got[0];
  ASSERT_TRUE(eventually([&] { return load(kId).observed_generation == 2; }));

  // A restarted agent remembers what it configured (the digest is persisted).
  agent_.reset();
  start_agent(fake);
  ASSERT_TRUE(eventually([&] { return agent_->stats().steps >= 1; }));
  ASSERT_TRUE(eventually([&] { return agent_->stats().reports >= 2; }));
  EXPECT_EQ(fake->calls("configure"), 1);

  // A refused configuration fails that generation only; the next change is tried again.
  fake->fail_next("configure", Error(Code::kInvalidArgument, "database name is reserved"));
  set_meta(kId, "concord.database.state", R"({"revision":3})");
  ASSERT_TRUE(eventually([&] { return fake->calls("configure") == 2; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_EQ(fake->calls("configure"), 2);
  set_meta(kId, "concord.database.state", R"({"revision":4})");
  ASSERT_TRUE(eventually([&] { return fake->calls("configure") == 3; }));
  got = fake->configured();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_NE(got[1].find(R"(\"revision\":4)"), std::string::npos) << got[1];
  EXPECT_EQ(fake->calls("create"), 1);
}

// A configure that fails transiently (it waits for something) may have changed what the
// instance reports, and the server may be waiting for exactly that (a demoted database primary's
// fencing acknowledgement): the agent reads the status again and reports it at once, not at
// the next heartbeat (a minute away here, and with it the retry).
class AgentSlowHeartbeatTest : public AgentConfigureTest {
 protected:
  std::chrono::milliseconds server_heartbeat() const override { return std::chrono::seconds(60); }
};

TEST_F(AgentSlowHeartbeatTest, ATransientConfigureReportsTheStatusItChangedAtOnce) {
  auto fake = std::make_shared<FakeDriver>();
  start_agent(fake, "h1", std::chrono::seconds(60));
  insert_building(kId);
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ACTIVE"; })) << status_of(kId);
  auto detail_of = [&] { return AgentServerTest::detail_of(kId); };

  fake->configure_sets_detail("fenced_revision=2");
  fake->fail_next("configure", Error(Code::kUnavailable, "waiting for the new primary"));
  set_meta(kId, "concord.database.state", R"({"revision":2})");
  ASSERT_TRUE(eventually([&] { return fake->calls("configure") == 1; }));
  EXPECT_TRUE(eventually([&] { return detail_of() == "fenced_revision=2"; })) << detail_of();
  EXPECT_EQ(fake->calls("configure"), 1) << "seen before any retry";
}

TEST_F(AgentConfigureTest, ImagelessDatabaseSpecConvergesWithoutImage) {
  auto fake = std::make_shared<FakeDriver>("database");
  start_agent(fake);
  auto st = store_->write([&](store::Tx& tx) -> Status {
    ServerRow s;
    s.id = kId;
    s.project_id = "p1";
    s.user_id = "u1";
    s.name = "db-1";
    s.image_id = "";
    s.flavor_id = "1";
    s.flavor_json = R"({"id":"1","name":"db.small","vcpus":1,"ram_mb":512,"disk_gb":1})";
    s.vcpus = 1;
    s.ram_mb = 512;
    s.disk_gb = 1;
    s.hostname = s.name;
    s.reservation_id = "r-db";
    s.vm_state = std::string(compute::vm::kBuilding);
    s.task_state = std::string(compute::task::kSpawning);
    s.host = "h1";
    s.driver = "database";
    s.spec_generation = 1;
    s.op_deadline_ms = now_ms() + 600000;
    s.created_at = s.updated_at = compute::stored_time(now_ms());
    s.created_ms = now_ms();
    CONCORD_RETURN_IF_ERROR(compute::insert_server(tx, s));
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("INSERT INTO compute_server_metadata (server_id, key, value) VALUES "
                           "(?, 'concord.database.engine', 'postgresql')",
                           {std::string(kId)}));
    (void)n;
    return add_action(tx, kId, "create", "compute__do_build_and_run_instance");
  });
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ACTIVE"; })) << status_of(kId);
  auto inst = fake->get(kId);
  ASSERT_TRUE(inst.has_value());
  EXPECT_TRUE(inst->spec.image_path.empty());
  EXPECT_NE(inst->spec.guest.meta_data_json.find("concord.database.engine"), std::string::npos);
  EXPECT_EQ(fake->calls("configure"), 0);
}

}  // namespace
}  // namespace concord::agent::testing
