// The desired state's JSON form (database/engine/desired_state.h): what the server writes is
// what the driver reads, and malformed documents are refused with kInvalidArgument.
#include <gtest/gtest.h>

#include "database/engine/desired_state.h"

namespace concord::database::engine {
namespace {

DesiredState full_state() {
  DesiredState st;
  st.revision = 7;
  st.databases = {{"shop", "utf8", "utf8_general_ci"}};
  st.users = {{"app", "%", "SCRAM-SHA-256$4096:c2FsdA==$a:b", {"shop"}}};
  st.root = RootSpec{"*ABC"};
  st.parameters = {{"work_mem", "4096"}};
  st.backup = BackupRequest{"b1", "b0", "{\"to_lsn\":5}"};
  st.log_publish = {{"l1", "general"}, {"l2", "slow_query"}};
  st.archive_logs = false;
  st.restore = RestoreSpec{{{"b0", "ab12", 42, "{\"to_lsn\":4}"}, {"b1", "cd34", 7, "{}"}},
                           "src-1",
                           1'796'000'000'000'000};
  ReplicationSpec r;
  r.role = ReplicationSpec::Role::kPrimary;
  r.secret = "s3cret";
  r.replicas = {"r1", "r2"};
  r.synchronous_standbys = {"r1"};
  st.replication = r;
  return st;
}

TEST(DesiredStateJson, RoundTripsEveryField) {
  const DesiredState st = full_state();
  auto back = desired_state_from_json(to_json(st));
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, st);

  DesiredState replica = st;
  replica.replication =
      ReplicationSpec{ReplicationSpec::Role::kReplica, "s3cret", "p1", "127.77.0.9", 5432, {}, {}};
  auto back2 = desired_state_from_json(to_json(replica));
  ASSERT_TRUE(back2) << back2.error().to_string();
  EXPECT_EQ(*back2, replica);
  replica.replication->seed = RestoreSpec{{{"b2", "ef56", 9, "{\"gtid\":\"0-1-5\"}"}}, "p1", 0};
  auto seeded = desired_state_from_json(to_json(replica));
  ASSERT_TRUE(seeded) << seeded.error().to_string();
  EXPECT_EQ(*seeded, replica);
  replica.replication->seed.reset();
  replica.replication->seed_wait_until_us = 1'780'000'000'000'000;
  auto waiting = desired_state_from_json(to_json(replica));
  ASSERT_TRUE(waiting) << waiting.error().to_string();
  EXPECT_EQ(*waiting, replica);

  DesiredState standalone;
  standalone.revision = 1;
  auto back3 = desired_state_from_json(to_json(standalone));
  ASSERT_TRUE(back3);
  EXPECT_FALSE(back3->replication.has_value());
}

TEST(DesiredStateJson, RefusesMalformedLogPublishRequests) {
  for (const char* text : {
           R"({"revision":1,"log_publish":{"id":"l1","name":"general"}})",
           R"({"revision":1,"log_publish":["general"]})",
           R"({"revision":1,"log_publish":[{"name":"general"}]})",
           R"({"revision":1,"log_publish":[{"id":"l1","name":7}]})",
       }) {
    auto st = desired_state_from_json(text);
    ASSERT_FALSE(st) << text;
    EXPECT_EQ(st.error().code(), Code::kInvalidArgument) << text;
  }
}

TEST(DesiredStateJson, RefusesMalformedReplication) {
  for (const char* text : {
           R"({"revision":1,"replication":"primary"})",
           R"({"revision":1,"replication":{"role":"leader","secret":"x"}})",
           R"({"revision":1,"replication":{"role":"primary"}})",
           R"({"revision":1,"replication":{"role":"primary","secret":""}})",
           R"({"revision":1,"replication":{"role":"replica","secret":"x"}})",
           R"({"revision":1,"replication":{"role":"replica","secret":"x","upstream_instance":"p",
               "upstream_address":"127.0.0.1","upstream_port":70000}})",
           R"({"revision":1,"replication":{"role":"primary","secret":"x","replicas":"r1"}})",
           R"({"revision":1,"replication":{"role":"primary","secret":"x",
               "synchronous_standbys":[1]}})",
           R"({"revision":1,"replication":{"role":"replica","secret":"x","upstream_instance":"p",
               "upstream_address":"127.0.0.1","upstream_port":3306,"seed":{"chain":[]}}})",
           R"({"revision":1,"replication":{"role":"replica","secret":"x","upstream_instance":"p",
               "upstream_address":"127.0.0.1","upstream_port":3306,"seed":"b1"}})",
           R"({"revision":1,"replication":{"role":"replica","secret":"x","upstream_instance":"p",
               "upstream_address":"127.0.0.1","upstream_port":3306,"seed_wait_until_us":-1}})",
           R"({"revision":1,"replication":{"role":"replica","secret":"x","upstream_instance":"p",
               "upstream_address":"127.0.0.1","upstream_port":3306,"seed_wait_until_us":"soon"}})",
       }) {
    auto st = desired_state_from_json(text);
    ASSERT_FALSE(st) << text;
    EXPECT_EQ(st.error().code(), Code::kInvalidArgument) << text;
  }
}

}  // namespace
}  // namespace concord::database::engine
