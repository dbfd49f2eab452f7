// The agent protocol endpoints (/agent/v1) against a real SQLite store.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "agent_test_util.h"
#include "base/encoding.h"

namespace concord::compute::agent_testing {
namespace {

using http::Method;

TEST_F(AgentApiTest, MissingCredentialIs401) {
  Reply r = call(Method::kPut, "/v1/hosts/h1", Json::object(), "");
  EXPECT_EQ(r.status, 401) << r;
  EXPECT_NE(r.message().find("X-Concord-Agent"), std::string::npos) << r;
}

TEST_F(AgentApiTest, WrongCredentialIs401) {
  Reply r = call(Method::kGet, "/v1/hosts/h1/assignments", nullptr, "h1", "forged");
  EXPECT_EQ(r.status, 401) << r;
  Reply other_key = call(Method::kGet, "/v1/hosts/h1/assignments", nullptr, "h1",
                         agent_credential("another key", "h1"));
  EXPECT_EQ(other_key.status, 401) << other_key;
}

TEST_F(AgentApiTest, CredentialOnlyActsAsItsOwnHost) {
  // h2's valid credential used on h1's URL.
  Reply r = call(Method::kGet, "/v1/hosts/h1/assignments", nullptr, "h2");
  EXPECT_EQ(r.status, 403) << r;
  Reply rep = call(Method::kPost, "/v1/hosts/h1/report", Json{{"instances", Json::array()}}, "h2");
  EXPECT_EQ(rep.status, 403) << rep;
}

TEST_F(AgentApiTest, RegisterCreatesAndUpdatesTheHost) {
  Reply r = register_host("h1", 8);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["heartbeat_interval_ms"], 2000);
  EXPECT_EQ(r.body["down_after_ms"], 10000);
  store::Rows rows = query(
      "SELECT vcpus, state, last_heartbeat_ms, drivers, availability_zone FROM compute_hosts "
      "WHERE name = ?",
      {std::string("h1")});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].integer(0), 8);
  EXPECT_EQ(rows[0].text(1), "up");
  EXPECT_EQ(rows[0].integer(2), now_ms());
  EXPECT_EQ(rows[0].text(3), R"(["container"])");
  EXPECT_EQ(rows[0].text(4), "nova");

  ASSERT_EQ(register_host("h1", 16).status, 200);
  rows = query("SELECT vcpus, revision FROM compute_hosts WHERE name = ?", {std::string("h1")});
  EXPECT_EQ(rows[0].integer(0), 16);
  EXPECT_EQ(rows[0].integer(1), 2);
}

TEST_F(AgentApiTest, RegisterRejectsBadBodies) {
  Reply missing = call(Method::kPut, "/v1/hosts/h1", Json{{"drivers", {"container"}}}, "h1");
  EXPECT_EQ(missing.status, 400) << missing;
  Reply negative = call(Method::kPut, "/v1/hosts/h1",
                        Json{{"capacity", {{"vcpus", -1}, {"ram_mb", 1}, {"disk_gb", 1}}}}, "h1");
  EXPECT_EQ(negative.status, 400) << negative;
}

TEST_F(AgentApiTest, ReportFromUnregisteredHostIs404) {
  Reply r = report("h9", Json::array());
  EXPECT_EQ(r.status, 404) << r;
}

TEST_F(AgentApiTest, ReportIsTheHeartbeat) {
  ASSERT_EQ(register_host("h1").status, 200);
  clock_.advance(std::chrono::seconds(3));
  ASSERT_EQ(report("h1", Json::array()).status, 200);
  store::Rows rows =
      query("SELECT last_heartbeat_ms FROM compute_hosts WHERE name = ?", {std::string("h1")});
  EXPECT_EQ(rows[0].integer(0), now_ms());
}

TEST_F(AgentApiTest, ReportAsksForEverythingOnlyWhenTheHostWasDown) {
  ASSERT_EQ(register_host("h1").status, 200);
  Reply up = report("h1", Json::array());
  ASSERT_EQ(up.status, 200) << up;
  EXPECT_FALSE(up.body.contains("full_report")) << up;
  // Agents report only changes; after the host was marked down the server may have moved its
  // servers on, so it asks for every instance once.
  ASSERT_TRUE(store_->write([](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(int64_t n, tx.exec("UPDATE compute_hosts SET state = 'down'", {}));
    return n == 1 ? ok() : fail(Code::kInternal, "no host row");
  }));
  Reply back = report("h1", Json::array());
  ASSERT_EQ(back.status, 200) << back;
  EXPECT_EQ(back.body.value("full_report", false), true) << back;
  Reply again = report("h1", Json::array());
  EXPECT_FALSE(again.body.contains("full_report")) << again;
}

TEST_F(AgentApiTest, ReportMovesBuildingToActiveAndFinishesTheAction) {
  ASSERT_EQ(register_host("h1").status, 200);
  insert_building("aaaa0001-0000-4000-8000-000000000001", "h1");
  clock_.advance(std::chrono::milliseconds(150));
  Reply r = report("h1", Json::array({{{"id", "aaaa0001-0000-4000-8000-000000000001"},
                                       {"generation", 1},
                                       {"state", "present"},
                                       {"power_state", 1},
                                       {"addresses",
                                        {{{"network", "private"},
                                          {"addr", "10.99.0.2"},
                                          {"version", 4},
                                          {"mac", "02:00:00:00:00:02"},
                                          {"type", "fixed"}}}}}}));
  ASSERT_EQ(r.status, 200) << r;
  ServerRow s = load("aaaa0001-0000-4000-8000-000000000001");
  EXPECT_EQ(s.vm_state, vm::kActive);
  EXPECT_FALSE(s.task_state.has_value());
  EXPECT_EQ(s.power_state, power::kRunning);
  EXPECT_EQ(s.status(), "ACTIVE");
  EXPECT_EQ(s.launched_at, stored_time(now_ms()));
  auto addresses = parse_json(s.addresses_json);
  ASSERT_TRUE(addresses.has_value());
  EXPECT_EQ((*addresses)["private"][0]["addr"], "10.99.0.2");
  EXPECT_EQ((*addresses)["private"][0]["OS-EXT-IPS-MAC:mac_addr"], "02:00:00:00:00:02");

  store::Rows action = query(
      "SELECT finish_time, message FROM compute_instance_actions WHERE server_id = ? AND "
      "request_id = 'req-create'",
      {std::string("aaaa0001-0000-4000-8000-000000000001")});
  ASSERT_EQ(action.size(), 1u);
  EXPECT_EQ(action[0].text(0), stored_time(now_ms()));
  EXPECT_TRUE(action[0].is_null(1));
  store::Rows event = query(
      "SELECT finish_time, result, host FROM compute_instance_action_events WHERE server_id = ?",
      {std::string("aaaa0001-0000-4000-8000-000000000001")});
  ASSERT_EQ(event.size(), 1u);
  EXPECT_EQ(event[0].text(1), "Success");
  EXPECT_EQ(event[0].text(2), "h1");

  // The same report again (next heartbeat) writes nothing.
  const int64_t revision = s.revision;
  ASSERT_EQ(report("h1", Json::array({{{"id", "aaaa0001-0000-4000-8000-000000000001"},
                                       {"generation", 1},
                                       {"state", "present"},
                                       {"power_state", 1},
                                       {"addresses",
                                        {{{"network", "private"},
                                          {"addr", "10.99.0.2"},
                                          {"version", 4},
                                          {"mac", "02:00:00:00:00:02"},
                                          {"type", "fixed"}}}}}}))
                .status,
            200);
  EXPECT_EQ(load("aaaa0001-0000-4000-8000-000000000001").revision, revision);
}

TEST_F(AgentApiTest, ReportedErrorSetsErrorWithFault) {
  ASSERT_EQ(register_host("h1").status, 200);
  const std::string id = "aaaa0002-0000-4000-8000-000000000002";
  insert_building(id, "h1");
  Reply r = report("h1", Json::array({{{"id", id},
                                       {"generation", 1},
                                       {"state", "absent"},
                                       {"error", "create failed: no such image"}}}));
  ASSERT_EQ(r.status, 200) << r;
  ServerRow s = load(id);
  EXPECT_EQ(s.status(), "ERROR");
  ASSERT_TRUE(s.fault_json.has_value());
  EXPECT_NE(s.fault_json->find("create failed: no such image"), std::string::npos);
  store::Rows action =
      query("SELECT message FROM compute_instance_actions WHERE server_id = ?", {id});
  EXPECT_EQ(action[0].text(0), "Error");
  store::Rows event =
      query("SELECT result FROM compute_instance_action_events WHERE server_id = ?", {id});
  EXPECT_EQ(event[0].text(0), "Error");
}

TEST_F(AgentApiTest, ReportAboutAnotherHostsServerIsIgnored) {
  ASSERT_EQ(register_host("h1").status, 200);
  ASSERT_EQ(register_host("h2").status, 200);
  const std::string id = "aaaa0003-0000-4000-8000-000000000003";
  insert_building(id, "h2");
  ASSERT_EQ(
      report("h1", Json::array(
                       {{{"id", id}, {"generation", 1}, {"state", "present"}, {"power_state", 1}}}))
          .status,
      200);
  EXPECT_EQ(load(id).vm_state, vm::kBuilding);
  // Unknown ids are ignored too (the agent's orphan rule handles them).
  EXPECT_EQ(report("h1", Json::array({{{"id", "nope"}, {"state", "present"}}})).status, 200);
}

TEST_F(AgentApiTest, ReportRejectsMalformedInstances) {
  ASSERT_EQ(register_host("h1").status, 200);
  Reply bad_state = report("h1", Json::array({{{"id", "x"}, {"state", "exploded"}}}));
  EXPECT_EQ(bad_state.status, 400) << bad_state;
  Reply no_id = report("h1", Json::array({{{"state", "present"}}}));
  EXPECT_EQ(no_id.status, 400) << no_id;
}

TEST_F(AgentApiTest, DeleteFinishesWhenReportedAbsentAndReleasesClaims) {
  ASSERT_EQ(register_host("h1").status, 200);
  const std::string id = "aaaa0004-0000-4000-8000-000000000004";
  insert_building(id, "h1");
  api_change(
      id,
      [](ServerRow& s) {
        s.task_state = std::string(task::kDeleting);
        s.spec_generation += 1;
      },
      "delete", "compute_terminate_instance");
  Reply a = call(Method::kGet, "/v1/hosts/h1/assignments", nullptr, "h1");
  ASSERT_EQ(a.status, 200) << a;
  ASSERT_EQ(a.body["instances"].size(), 1u);
  EXPECT_EQ(a.body["instances"][0]["deleted"], true);

  ASSERT_EQ(
      report("h1", Json::array({{{"id", id}, {"generation", 2}, {"state", "absent"}}})).status,
      200);
  ServerRow s = load(id);
  EXPECT_TRUE(s.deleted);
  EXPECT_EQ(s.vm_state, vm::kDeleted);
  EXPECT_TRUE(s.terminated_at.has_value());
  EXPECT_TRUE(query("SELECT 1 FROM compute_allocations WHERE server_id = ?", {id}).empty());
  store::Rows action = query(
      "SELECT finish_time FROM compute_instance_actions WHERE server_id = ? AND action = 'delete'",
      {id});
  ASSERT_EQ(action.size(), 1u);
  EXPECT_FALSE(action[0].is_null(0));
  // Gone from the assignments.
  Reply after = call(Method::kGet, "/v1/hosts/h1/assignments", nullptr, "h1");
  EXPECT_TRUE(after.body["instances"].empty()) << after;
}

TEST_F(AgentApiTest, ConsoleTailIsStored) {
  ASSERT_EQ(register_host("h1").status, 200);
  const std::string id = "aaaa0005-0000-4000-8000-000000000005";
  insert_building(id, "h1");
  std::string console = std::string(70 * 1024, 'x') + "concord-guest: hello";
  ASSERT_EQ(report("h1", Json::array({{{"id", id},
                                       {"generation", 1},
                                       {"state", "present"},
                                       {"power_state", 1},
                                       {"console", console}}}))
                .status,
            200);
  store::Rows rows = query("SELECT text FROM compute_console_logs WHERE server_id = ?", {id});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].text(0).size(), 64u * 1024);
  EXPECT_TRUE(rows[0].text(0).ends_with("concord-guest: hello"));
}

TEST_F(AgentApiTest, AssignmentsCarryTheFullSpec) {
  ASSERT_EQ(register_host("h1").status, 200);
  const std::string id = "aaaa0006-0000-4000-8000-000000000006";
  insert_building(id, "h1");
  insert_building("bbbb0006-0000-4000-8000-000000000006", "h2");  // another host's
  Reply r = call(Method::kGet, "/v1/hosts/h1/assignments?after=0&wait_ms=0", nullptr, "h1");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_GT(r.body["seq"].get<int64_t>(), 0);
  ASSERT_EQ(r.body["instances"].size(), 1u);
  const Json& spec = r.body["instances"][0];
  EXPECT_EQ(spec["id"], id);
  EXPECT_EQ(spec["generation"], 1);
  EXPECT_EQ(spec["driver"], "container");
  EXPECT_EQ(spec["desired_power"], "running");
  EXPECT_EQ(spec["deleted"], false);
  EXPECT_EQ(spec["flavor"]["vcpus"], 1);
  EXPECT_EQ(spec["flavor"]["ram_mb"], 512);
  EXPECT_EQ(spec["image"]["id"], kImage);
  EXPECT_EQ(spec["image"]["sha256"],
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
  EXPECT_EQ(spec["image"]["container_format"], "docker");
  EXPECT_EQ(spec["guest"]["user_data"], "aGVsbG8=");
  auto meta = parse_json(spec["guest"]["meta_data_json"].get<std::string>());
  ASSERT_TRUE(meta.has_value());
  EXPECT_EQ((*meta)["uuid"], id);
  EXPECT_EQ((*meta)["public_keys"]["k1"], "ssh-ed25519 AAAA test");
  EXPECT_EQ((*meta)["meta"]["role"], "web");
  EXPECT_EQ((*meta)["availability_zone"], "nova");
  EXPECT_EQ((*meta)["project_id"], "p1");
}

TEST_F(AgentApiTest, LongPollTimesOutWithoutAChange) {
  ASSERT_EQ(register_host("h1").status, 200);
  Reply first = call(Method::kGet, "/v1/hosts/h1/assignments", nullptr, "h1");
  const int64_t seq = first.body["seq"].get<int64_t>();
  const auto start = std::chrono::steady_clock::now();
  Reply r =
      call(Method::kGet, "/v1/hosts/h1/assignments?after=" + std::to_string(seq) + "&wait_ms=300",
           nullptr, "h1");
  const auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["seq"], seq);
  EXPECT_GE(waited, std::chrono::milliseconds(250));  // it did wait (a lower bound only)
  // Nothing changed: the agent keeps its set, which is not sent again.
  EXPECT_EQ(r.body.value("unchanged", false), true) << r;
  EXPECT_FALSE(r.body.contains("instances")) << r;
  // A poll from scratch still gets the whole set.
  Reply full = call(Method::kGet, "/v1/hosts/h1/assignments?after=0&wait_ms=300", nullptr, "h1");
  ASSERT_EQ(full.status, 200) << full;
  EXPECT_TRUE(full.body.contains("instances")) << full;
  EXPECT_FALSE(full.body.contains("unchanged")) << full;
}

// The agent's digest of its set (FNV-1a 64 over "<id>:<revision>\n" in id order), as
// src/agent computes it.
std::string set_digest(const Json& instances) {
  std::vector<std::pair<std::string, int64_t>> items;
  for (const Json& i : instances) items.emplace_back(i["id"], i["revision"].get<int64_t>());
  std::sort(items.begin(), items.end());
  uint64_t h = fnv1a64("");
  for (const auto& [id, revision] : items) {
    h = fnv1a64(id, h);
    h = fnv1a64(":" + std::to_string(revision) + "\n", h);
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

TEST_F(AgentApiTest, FullPollWithTheCurrentDigestAnswersUnchanged) {
  ASSERT_EQ(register_host("h1").status, 200);
  ASSERT_EQ(register_host("h2").status, 200);
  insert_building("aaaa0101-0000-4000-8000-000000000001", "h1");
  insert_building("aaaa0102-0000-4000-8000-000000000002", "h1");
  Reply full = call(Method::kGet, "/v1/hosts/h1/assignments?after=0", nullptr, "h1");
  ASSERT_EQ(full.status, 200) << full;
  ASSERT_EQ(full.body["instances"].size(), 2u);
  EXPECT_EQ(full.body["instances"][0]["revision"], 1);
  const std::string digest = set_digest(full.body["instances"]);

  // The safety-net poll (after=0) with the digest of the set the agent holds: unchanged.
  Reply same =
      call(Method::kGet, "/v1/hosts/h1/assignments?after=0&digest=" + digest, nullptr, "h1");
  ASSERT_EQ(same.status, 200) << same;
  EXPECT_EQ(same.body.value("unchanged", false), true) << same;
  EXPECT_FALSE(same.body.contains("instances")) << same;

  // A server created on ANOTHER host wakes the poll, but h1's set is the same: unchanged.
  const int64_t seq = same.body["seq"].get<int64_t>();
  insert_building("aaaa0103-0000-4000-8000-000000000003", "h2");
  Reply other = call(
      Method::kGet,
      "/v1/hosts/h1/assignments?after=" + std::to_string(seq) + "&wait_ms=2000&digest=" + digest,
      nullptr, "h1");
  ASSERT_EQ(other.status, 200) << other;
  EXPECT_EQ(other.body.value("unchanged", false), true) << other;
  EXPECT_GT(other.body["seq"].get<int64_t>(), seq);

  // A third server on h1: the digest is stale, the whole set comes back.
  insert_building("aaaa0104-0000-4000-8000-000000000004", "h1");
  Reply changed =
      call(Method::kGet, "/v1/hosts/h1/assignments?after=0&digest=" + digest, nullptr, "h1");
  ASSERT_EQ(changed.status, 200) << changed;
  EXPECT_FALSE(changed.body.contains("unchanged")) << changed;
  EXPECT_EQ(changed.body["instances"].size(), 3u);
  EXPECT_NE(set_digest(changed.body["instances"]), digest);

  // A malformed digest is just a different set.
  Reply junk = call(Method::kGet, "/v1/hosts/h1/assignments?after=0&digest=zz", nullptr, "h1");
  ASSERT_EQ(junk.status, 200) << junk;
  EXPECT_EQ(junk.body["instances"].size(), 3u);
}

TEST_F(AgentApiTest, LongPollIgnoresHeartbeatsAndHostChanges) {
  ASSERT_EQ(register_host("h1").status, 200);
  const int64_t seq =
      call(Method::kGet, "/v1/hosts/h1/assignments", nullptr, "h1").body["seq"].get<int64_t>();
  ASSERT_EQ(register_host("h1").status, 200);  // a compute.host change
  Reply r =
      call(Method::kGet, "/v1/hosts/h1/assignments?after=" + std::to_string(seq) + "&wait_ms=200",
           nullptr, "h1");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body.value("unchanged", false), true) << r;
  EXPECT_GT(r.body["seq"].get<int64_t>(), seq);  // skipped past the irrelevant change
}

TEST_F(AgentApiTest, LongPollAnswersAtOnceForAPastChangeAndWakesOnANewOne) {
  ASSERT_EQ(register_host("h1").status, 200);
  const int64_t seq =
      call(Method::kGet, "/v1/hosts/h1/assignments", nullptr, "h1").body["seq"].get<int64_t>();
  insert_building("aaaa0007-0000-4000-8000-000000000007", "h1");
  // Already past `after`: answers at once even with a long wait.
  Reply now =
      call(Method::kGet, "/v1/hosts/h1/assignments?after=" + std::to_string(seq) + "&wait_ms=60000",
           nullptr, "h1");
  ASSERT_EQ(now.status, 200);
  EXPECT_EQ(now.body["instances"].size(), 1u);
  const int64_t seq2 = now.body["seq"].get<int64_t>();
  EXPECT_GT(seq2, seq);

  // A change committed while the poll waits wakes it (the wait bound is 5 s here; the change
  // comes after 100 ms, so the answer must carry it).
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    insert_building("aaaa0008-0000-4000-8000-000000000008", "h1");
  });
  Reply woke = call(Method::kGet,
                    "/v1/hosts/h1/assignments?after=" + std::to_string(seq2) + "&wait_ms=60000",
                    nullptr, "h1");
  writer.join();
  ASSERT_EQ(woke.status, 200);
  EXPECT_EQ(woke.body["instances"].size(), 2u) << woke;
  EXPECT_GT(woke.body["seq"].get<int64_t>(), seq2);
}

TEST_F(AgentApiTest, RepeatedIdInOneReportIsApplied) {
  ASSERT_EQ(register_host("h1").status, 200);
  const std::string id = "aaaa0009-0000-4000-8000-000000000009";
  insert_building(id, "h1");
  Json o = {{"id", id}, {"generation", 1}, {"state", "present"}, {"power_state", 1}};
  Reply r = report("h1", Json::array({o, o}));
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(load(id).status(), "ACTIVE");
}

TEST_F(AgentApiTest, OnlyTwoLongPollsWaitAtOnce) {
  for (const char* h : {"h1", "h2", "h3"}) ASSERT_EQ(register_host(h).status, 200);
  const int64_t seq =
      call(Method::kGet, "/v1/hosts/h1/assignments", nullptr, "h1").body["seq"].get<int64_t>();
  std::vector<Reply> replies(3);
  std::vector<std::thread> polls;
  const char* hosts[] = {"h1", "h2", "h3"};
  for (int i = 0; i < 3; ++i) {
    polls.emplace_back([&, i] {
      replies[i] = call(Method::kGet,
                        std::string("/v1/hosts/") + hosts[i] +
                            "/assignments?after=" + std::to_string(seq) + "&wait_ms=3000",
                        nullptr, hosts[i]);
    });
    if (i == 1) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  for (auto& t : polls) t.join();
  int told_to_come_back = 0;
  for (const Reply& r : replies) {
    ASSERT_EQ(r.status, 200) << r;
    if (r.body.contains("retry_after_ms")) {
      ++told_to_come_back;
      EXPECT_EQ(r.body["retry_after_ms"], 1000);
    }
  }
  EXPECT_EQ(told_to_come_back, 1);
  // Capacity is given back: a new poll waits again (no retry hint).
  Reply later =
      call(Method::kGet, "/v1/hosts/h1/assignments?after=" + std::to_string(seq) + "&wait_ms=50",
           nullptr, "h1");
  EXPECT_FALSE(later.body.contains("retry_after_ms")) << later;
}

TEST_F(AgentApiTest, ImageDownload) {
  Reply ok_reply = call(Method::kGet, std::string("/v1/images/") + kImage + "/file", nullptr, "h1");
  ASSERT_EQ(ok_reply.status, 200);
  EXPECT_EQ(ok_reply.raw.body, "hello");
  Reply missing = call(Method::kGet, "/v1/images/nope/file", nullptr, "h1");
  EXPECT_EQ(missing.status, 404) << missing;
  Reply anonymous = call(Method::kGet, std::string("/v1/images/") + kImage + "/file", nullptr, "");
  EXPECT_EQ(anonymous.status, 401) << anonymous;
}

}  // namespace
}  // namespace concord::compute::agent_testing
