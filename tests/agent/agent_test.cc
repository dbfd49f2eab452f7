// The host agent end to end against a real compute server (real HTTP, real store), with the
// in-memory FakeDriver standing for the host: convergence, the instance lifecycle, adoption after
// an agent restart, orphan cleanup, driver failures, image verification and power sync.
#include <fstream>

#include "agent/protocol.h"
#include "agent_test_util.h"

namespace concord::agent::testing {
namespace {

constexpr const char* kId = "aaaaaaaa-0000-4000-8000-000000000001";

TEST_F(AgentServerTest, RegistersWithCapabilities) {
  auto fake = std::make_shared<FakeDriver>();
  start_agent(fake);
  ASSERT_TRUE(eventually([&] { return agent_->stats().registered; }));
  store::Rows rows;
  ASSERT_TRUE(store_
                  ->read([&](store::Tx& tx) -> Status {
                    CONCORD_ASSIGN_OR_RETURN(
                        rows, tx.query("SELECT vcpus, ram_mb, disk_gb, drivers, accel, state FROM "
                                       "compute_hosts WHERE name = 'h1'",
                                       {}));
                    return ok();
                  })
                  .has_value());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].integer(0), 8);
  EXPECT_EQ(rows[0].integer(1), 8192);
  EXPECT_EQ(rows[0].integer(2), 100);
  EXPECT_EQ(rows[0].text(3), R"(["container"])");
  EXPECT_EQ(rows[0].text(4), "fake");
  EXPECT_EQ(rows[0].text(5), "up");
}

TEST_F(AgentServerTest, CreateRunsTheInstanceAndReportsActive) {
  auto fake = std::make_shared<FakeDriver>();
  start_agent(fake);
  insert_building(kId);
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ACTIVE"; })) << status_of(kId);
  ServerRow s = load(kId);
  EXPECT_EQ(s.power_state, compute::power::kRunning);
  EXPECT_EQ(s.observed_generation, 1);
  EXPECT_TRUE(s.launched_at.has_value());
  EXPECT_NE(s.addresses_json.find("10.99.0.2"), std::string::npos) << s.addresses_json;
  EXPECT_EQ(action_result(kId, "create"), "Success");
  EXPECT_EQ(fake->calls("create"), 1);

  // The driver got the spec: the image fetched and verified into the cache, the guest data.
  auto inst = fake->get(kId);
  ASSERT_TRUE(inst.has_value());
  EXPECT_EQ(inst->spec.image_kind, "rootfs-tar");
  EXPECT_EQ(inst->spec.image_path,
            agent_options().state_dir + "/blobs/" + sha256_hex(image_bytes()));
  std::ifstream cached(inst->spec.image_path, std::ios::binary);
  std::string cached_bytes((std::istreambuf_iterator<char>(cached)), {});
  EXPECT_EQ(cached_bytes, image_bytes());
  EXPECT_EQ(inst->spec.guest.user_data, "echo hi");
  EXPECT_NE(inst->spec.guest.meta_data_json.find(kId), std::string::npos);
  EXPECT_EQ(inst->spec.hostname, s.hostname);

  // The console tail reached the server.
  ASSERT_TRUE(eventually([&] {
    std::string text;
    auto st = store_->read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                               tx.query("SELECT text FROM compute_console_logs WHERE server_id = ?",
                                        {std::string(kId)}));
      if (!rows.empty()) text = rows[0].text(0);
      return ok();
    });
    return st.has_value() && text.find("concord-guest: hello") != std::string::npos;
  }));
}

TEST_F(AgentServerTest, ReportsCarryOnlyChangesOnceConverged) {
  auto fake = std::make_shared<FakeDriver>();
  start_agent(fake);
  insert_building(kId);
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ACTIVE"; })) << status_of(kId);
  // Let the instance's observation be acknowledged, then watch several heartbeats (200 ms
  // here): they carry nothing while nothing changes.
  const int64_t before_reports = agent_->stats().reports;
  ASSERT_TRUE(eventually([&] { return agent_->stats().reports >= before_reports + 2; }));
  const Agent::Stats settled = agent_->stats();
  ASSERT_TRUE(eventually([&] { return agent_->stats().reports >= settled.reports + 3; }));
  EXPECT_EQ(agent_->stats().observations, settled.observations);
  // A change is reported: stop the server and the next report carries the instance again.
  api_action(kId, "stop", [](ServerRow& s) {
    s.task_state = std::string(compute::task::kPoweringOff);
    s.desired_power = "stopped";
  });
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "SHUTOFF"; })) << status_of(kId);
  // The agent counts a report once the server's answer is back, which may be just after the
  // server has already applied it.
  EXPECT_TRUE(eventually([&] { return agent_->stats().observations > settled.observations; }))
      << agent_->stats().observations << " vs " << settled.observations;
  // Idle long-polls (2 s wait here) come back "unchanged" without the set.
  ASSERT_TRUE(eventually([&] { return agent_->stats().unchanged_polls >= 1; }));
}

// An instance whose status says `watch` (a database replica) is checked every heartbeat, so a
// change of its detail reaches the server within one; others wait for the resync (60 s here).
TEST_F(AgentServerTest, AWatchedInstanceIsCheckedEveryHeartbeat) {
  auto fake = std::make_shared<FakeDriver>();
  start_agent(fake, "h1", std::chrono::seconds(60));
  insert_building(kId);
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ACTIVE"; })) << status_of(kId);
  ASSERT_TRUE(eventually([&] { return fake->calls("status") >= 1; }));

  // Not watched: a changed detail is not looked at (a second is five heartbeats here).
  const int unwatched = fake->calls("status");
  fake->set_status(kId, "streaming=1", false);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(fake->calls("status"), unwatched);
  EXPECT_EQ(detail_of(kId), "");

  // Watched (seen at the next look, which a stop here makes happen): checked every heartbeat.
  fake->set_status(kId, "streaming=1", true);
  api_action(kId, "stop", [](ServerRow& s) {
    s.task_state = std::string(compute::task::kPoweringOff);
    s.desired_power = "stopped";
  });
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "SHUTOFF"; })) << status_of(kId);
  EXPECT_TRUE(eventually([&] { return detail_of(kId) == "streaming=1"; })) << detail_of(kId);
  const int watched = fake->calls("status");
  fake->set_status(kId, "streaming=0", true);
  EXPECT_TRUE(eventually([&] { return detail_of(kId) == "streaming=0"; })) << detail_of(kId);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_GE(fake->calls("status"), watched + 3);

  // No longer watched: the checks stop once one has seen it (a heartbeat may queue one more).
  fake->set_status(kId, "streaming=0", false);
  const int flipped = fake->calls("status");
  ASSERT_TRUE(eventually([&] { return fake->calls("status") > flipped; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int stopped = fake->calls("status");
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_LE(fake->calls("status"), stopped + 1);
}

TEST_F(AgentServerTest, StopStartRebootRebuildResizeDelete) {
  auto fake = std::make_shared<FakeDriver>();
  start_agent(fake);
  insert_building(kId);
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ACTIVE"; }));

  api_action(kId, "stop", [](ServerRow& s) {
    s.task_state = std::string(compute::task::kPoweringOff);
    s.desired_power = "stopped";
  });
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "SHUTOFF"; })) << status_of(kId);
  EXPECT_EQ(load(kId).power_state, compute::power::kShutdown);
  EXPECT_EQ(action_result(kId, "stop"), "Success");

  api_action(kId, "start", [](ServerRow& s) {
    s.task_state = std::string(compute::task::kPoweringOn);
    s.desired_power = "running";
  });
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ACTIVE"; })) << status_of(kId);
  EXPECT_EQ(fake->calls("start"), 1);

  api_action(kId, "reboot", [](ServerRow& s) {
    s.task_state = std::string(compute::task::kRebootingHard);
    s.reboot_seq += 1;
    s.reboot_hard = true;
  });
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ACTIVE" && !load(kId).task_state; }));
  EXPECT_EQ(fake->calls("reboot"), 1);
  EXPECT_EQ(load(kId).observed_reboot_seq, 1);

  api_action(kId, "rebuild", [](ServerRow& s) {
    s.task_state = std::string(compute::task::kRebuilding);
    s.rebuild_seq += 1;
  });
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ACTIVE" && !load(kId).task_state; }));
  EXPECT_EQ(fake->calls("rebuild"), 1);

  api_action(kId, "resize", [](ServerRow& s) {
    s.task_state = std::string(compute::task::kResizePrep);
    s.vcpus = 2;
    s.ram_mb = 256;
  });
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "VERIFY_RESIZE"; })) << status_of(kId);
  EXPECT_EQ(fake->calls("resize"), 1);
  EXPECT_EQ(fake->get(kId)->spec.ram_mb, 256);

  api_action(kId, "delete",
             [](ServerRow& s) { s.task_state = std::string(compute::task::kDeleting); });
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "DELETED"; })) << status_of(kId);
  EXPECT_FALSE(fake->has(kId));
  EXPECT_FALSE(std::filesystem::exists(agent_options().state_dir + "/instances/" + kId + ".json"));
  // No surprise repeats of earlier steps along the way.
  EXPECT_EQ(fake->calls("create"), 1);
  EXPECT_EQ(fake->calls("reboot"), 1);
}

TEST_F(AgentServerTest, RestartedAgentAdoptsWithoutRepeatingSteps) {
  auto fake = std::make_shared<FakeDriver>();
  start_agent(fake);
  insert_building(kId);
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ACTIVE"; }));
  api_action(kId, "reboot", [](ServerRow& s) {
    s.task_state = std::string(compute::task::kRebooting);
    s.reboot_seq += 1;
  });
  ASSERT_TRUE(eventually([&] { return !load(kId).task_state; }));
  ASSERT_EQ(fake->calls("reboot"), 1);

  // The agent process dies (the instance keeps running on the host).
  agent_.reset();
  EXPECT_TRUE(fake->has(kId));

  start_agent(fake);
  ASSERT_TRUE(
      eventually([&] { return agent_->stats().fetches >= 1 && agent_->stats().steps >= 1; }));
  ASSERT_TRUE(eventually([&] { return agent_->stats().reports >= 2; }));
  EXPECT_EQ(fake->calls("create"), 1);
  EXPECT_EQ(fake->calls("reboot"), 1);
  EXPECT_EQ(fake->calls("destroy"), 0);
  EXPECT_TRUE(fake->has(kId));
  EXPECT_EQ(status_of(kId), "ACTIVE");

  // And it keeps converging: a stop after the restart works.
  api_action(kId, "stop", [](ServerRow& s) {
    s.task_state = std::string(compute::task::kPoweringOff);
    s.desired_power = "stopped";
  });
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "SHUTOFF"; }));
}

TEST_F(AgentServerTest, OrphanIsDestroyed) {
  auto fake = std::make_shared<FakeDriver>();
  fake->plant("bbbbbbbb-0000-4000-8000-00000000dead");
  insert_building(kId);
  start_agent(fake);
  ASSERT_TRUE(eventually([&] { return !fake->has("bbbbbbbb-0000-4000-8000-00000000dead"); }));
  EXPECT_EQ(agent_->stats().orphans_destroyed, 1);
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ACTIVE"; }));
  EXPECT_TRUE(fake->has(kId));
}

TEST_F(AgentServerTest, InstanceOfAServerDeletedWhileTheAgentWasAwayIsDestroyed) {
  auto fake = std::make_shared<FakeDriver>();
  start_agent(fake);
  insert_building(kId);
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ACTIVE"; }));
  agent_.reset();
  // The host is "down" and the delete finished locally on the server.
  auto st = store_->write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ServerRow s, compute::load_server(tx, kId, true));
    s.deleted = true;
    s.vm_state = std::string(compute::vm::kDeleted);
    s.task_state.reset();
    return compute::update_server(tx, s);
  });
  ASSERT_TRUE(st.has_value());
  start_agent(fake);
  ASSERT_TRUE(eventually([&] { return !fake->has(kId); }));
}

TEST_F(AgentServerTest, DriverFailureBecomesErrorWithFault) {
  auto fake = std::make_shared<FakeDriver>();
  fake->fail_next("create", Error(Code::kFailedPrecondition, "runc: rootfs is broken"));
  start_agent(fake);
  insert_building(kId);
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ERROR"; })) << status_of(kId);
  ServerRow s = load(kId);
  ASSERT_TRUE(s.fault_json.has_value());
  EXPECT_NE(s.fault_json->find("runc: rootfs is broken"), std::string::npos) << *s.fault_json;
  EXPECT_EQ(action_result(kId, "create"), "Error");
  // The failed generation is not retried behind the user's back...
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_EQ(fake->calls("create"), 1);
  // ...but a new request (hard reboot from ERROR) converges again.
  api_action(kId, "reboot", [](ServerRow& s) {
    s.task_state = std::string(compute::task::kRebootingHard);
    s.reboot_seq += 1;
    s.reboot_hard = true;
    s.desired_power = "running";
  });
  ASSERT_TRUE(eventually([&] { return fake->has(kId) && !load(kId).task_state; }));
  EXPECT_EQ(fake->calls("create"), 2);
}

TEST_F(AgentServerTest, TransientDriverFailureIsRetried) {
  auto fake = std::make_shared<FakeDriver>();
  fake->fail_next("create", Error(Code::kUnavailable, "runc busy"));
  start_agent(fake);
  insert_building(kId);
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ACTIVE"; })) << status_of(kId);
  EXPECT_EQ(fake->calls("create"), 2);
}

TEST_F(AgentServerTest, ImageWithWrongChecksumIsRefused) {
  set_image("tampered bytes", sha256_hex("the real bytes"));
  auto fake = std::make_shared<FakeDriver>();
  start_agent(fake);
  insert_building(kId);
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ERROR"; })) << status_of(kId);
  ServerRow s = load(kId);
  EXPECT_NE(s.fault_json.value_or("").find("failed verification"), std::string::npos)
      << s.fault_json.value_or("");
  EXPECT_EQ(fake->calls("create"), 0);
  EXPECT_FALSE(std::filesystem::exists(agent_options().state_dir + "/blobs/" +
                                       sha256_hex("the real bytes")));
}

TEST_F(AgentServerTest, GuestThatPoweredOffIsReportedNotRestarted) {
  auto fake = std::make_shared<FakeDriver>();
  start_agent(fake);
  insert_building(kId);
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ACTIVE"; }));
  fake->plant(kId, driver::PowerState::kShutdown);  // the guest ran `poweroff`
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "SHUTOFF"; })) << status_of(kId);
  EXPECT_EQ(load(kId).desired_power, "stopped");
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_EQ(fake->calls("start"), 0);
  EXPECT_EQ(fake->get(kId)->power, driver::PowerState::kShutdown);
}

TEST_F(AgentServerTest, InstanceThatNeverSettlesFailsInsteadOfSpinning) {
  auto fake = std::make_shared<FakeDriver>();
  start_agent(fake);
  insert_building(kId);
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ACTIVE"; }));
  api_action(kId, "stop", [](ServerRow& s) {
    s.task_state = std::string(compute::task::kPoweringOff);
    s.desired_power = "stopped";
  });
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "SHUTOFF"; }));
  fake->ignore_power_changes(true);
  api_action(kId, "start", [](ServerRow& s) {
    s.task_state = std::string(compute::task::kPoweringOn);
    s.desired_power = "running";
  });
  ASSERT_TRUE(eventually([&] { return status_of(kId) == "ERROR"; })) << status_of(kId);
  EXPECT_NE(load(kId).fault_json.value_or("").find("does not stay in the desired state"),
            std::string::npos);
  const int starts = fake->calls("start");
  EXPECT_EQ(starts, 21);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_EQ(fake->calls("start"), starts);  // stopped trying
}

TEST_F(AgentServerTest, ManyConcurrentCreatesConverge) {
  auto fake = std::make_shared<FakeDriver>();
  start_agent(fake);
  std::vector<std::string> ids;
  for (int i = 0; i < 30; ++i) {
    char id[64];
    std::snprintf(id, sizeof(id), "cccccccc-0000-4000-8000-%012d", i);
    ids.push_back(id);
    insert_building(id);
  }
  for (const std::string& id : ids) {
    ASSERT_TRUE(eventually([&] { return status_of(id) == "ACTIVE"; })) << id << status_of(id);
  }
  EXPECT_EQ(fake->calls("create"), 30);
}

TEST_F(AgentServerTest, WrongCredentialNeverRegisters) {
  AgentOptions o = agent_options();
  o.credential = "forged";
  o.injected_drivers = {std::make_shared<FakeDriver>()};
  auto a = Agent::create(o);
  ASSERT_TRUE(a.has_value());
  agent_ = std::move(*a);
  ASSERT_TRUE(agent_->start().has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_FALSE(agent_->stats().registered);
  EXPECT_EQ(agent_->stats().fetches, 0);
}

TEST(AgentOptionsTest, RejectsBadOptions) {
  AgentOptions o;
  o.server_url = "http://127.0.0.1:1";
  o.host = "h1";
  o.credential = "c";
  o.state_dir = "";
  o.injected_drivers = {std::make_shared<FakeDriver>()};
  auto no_dir = Agent::create(o);
  ASSERT_FALSE(no_dir.has_value());
  EXPECT_EQ(no_dir.error().code(), Code::kInvalidArgument);
  o.state_dir = "/tmp";
  o.host = "bad/host";
  auto bad_host = Agent::create(o);
  ASSERT_FALSE(bad_host.has_value());
  EXPECT_EQ(bad_host.error().code(), Code::kInvalidArgument);
  o.host = "h1";
  o.server_url = "https://example.com";
  auto tls = Agent::create(o);
  ASSERT_FALSE(tls.has_value());
  EXPECT_EQ(tls.error().code(), Code::kInvalidArgument);
}

TEST(AgentProtocolTest, Base64AndAppliedRoundTrip) {
  auto decoded = base64_decode_standard("aGk+Pz8/\nYQ==");
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(*decoded, "hi>???a");
  auto bad = base64_decode_standard("aGk_");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);

  Applied a;
  a.driver = "vm";
  a.generation = 7;
  a.reboot_seq = 3;
  a.rebuild_seq = 2;
  a.vcpus = 2;
  a.ram_mb = 512;
  a.disk_gb = 1;
  a.image_sha256 = "ab";
  auto back = applied_from_json(to_json(a));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->generation, 7);
  EXPECT_EQ(back->reboot_seq, 3);
  EXPECT_EQ(back->rebuild_seq, 2);
  EXPECT_EQ(back->driver, "vm");
  EXPECT_EQ(back->image_sha256, "ab");
}

}  // namespace
}  // namespace concord::agent::testing
