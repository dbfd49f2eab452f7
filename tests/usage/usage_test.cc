#include <gtest/gtest.h>

#include <filesystem>

#include "postgres_server.h"
#include "store/store.h"
#include "usage/usage_ledger.h"

namespace concord::usage {
namespace {

// The ledger's SQL must run on both store implementations: every test runs on each.
class UsageLedgerTest : public testing::TestWithParam<store::Dialect> {
 protected:
  void SetUp() override {
    if (GetParam() == store::Dialect::kSqlite) {
      dir_ = testing::TempDir() + "/usage_" + std::to_string(::getpid()) + "_" +
             testing::UnitTest::GetInstance()->current_test_info()->name();
      std::filesystem::remove_all(dir_);
      std::filesystem::create_directories(dir_);
      auto st = store::open_sqlite({.path = dir_ + "/s.db"});
      ASSERT_TRUE(st.has_value()) << st.error().to_string();
      store_ = std::move(*st);
    } else {
      auto server = test_support::PostgresServer::shared();
      ASSERT_TRUE(server.has_value()) << server.error().to_string();
      auto db = (*server)->create_database();
      ASSERT_TRUE(db.has_value()) << db.error().to_string();
      pg_database_ = db->name;
      auto st = store::open_postgres({.conninfo = db->conninfo});
      ASSERT_TRUE(st.has_value()) << st.error().to_string();
      store_ = std::move(*st);
    }
    auto m = migrations();
    ASSERT_TRUE(store_->migrate(m).has_value());
  }
  void TearDown() override {
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
    if (!pg_database_.empty()) {
      EXPECT_TRUE((*test_support::PostgresServer::shared())->drop_database(pg_database_));
    }
  }

  static UsageEvent event(std::string id, std::string project = "p1") {
    UsageEvent e;
    e.event_id = std::move(id);
    e.project_id = std::move(project);
    e.resource_id = "srv-1";
    e.resource_type = "compute.server";
    e.kind = "instance-seconds:m1.small";
    e.quantity = "3600";
    e.unit = "s";
    e.start = SystemTime(std::chrono::seconds(1'800'000'000));
    e.end = e.start + std::chrono::hours(1);
    e.region = "RegionOne";
    return e;
  }

  Result<bool> append_one(const UsageEvent& e) {
    bool fresh = false;
    auto s = store_->write([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(fresh, append(tx, e));
      return ok();
    });
    if (!s) return fail(s.error());
    return fresh;
  }

  std::vector<StoredUsageEvent> list_all(UsageFilter f = {}) {
    std::vector<StoredUsageEvent> out;
    auto s = store_->read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(out, list(tx, f));
      return ok();
    });
    EXPECT_TRUE(s.has_value());
    return out;
  }

  std::string dir_;
  std::string pg_database_;
  std::unique_ptr<store::Store> store_;
};

INSTANTIATE_TEST_SUITE_P(Backends, UsageLedgerTest,
                         testing::Values(store::Dialect::kSqlite, store::Dialect::kPostgres),
                         [](const auto& info) {
                           return info.param == store::Dialect::kSqlite ? "sqlite" : "postgres";
                         });

TEST_P(UsageLedgerTest, AppendIsIdempotentByEventId) {
  EXPECT_EQ(append_one(event("e1")), true);
  EXPECT_EQ(append_one(event("e1")), false);
  EXPECT_EQ(append_one(event("e2")), true);
  auto all = list_all();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].event.event_id, "e1");
  EXPECT_EQ(all[0].event.quantity, "3600");
  EXPECT_EQ(all[0].event.start, event("x").start);
  EXPECT_LT(all[0].seq, all[1].seq);
}

TEST_P(UsageLedgerTest, RejectsMalformedEvents) {
  auto e = event("bad");
  e.quantity = "-1";
  auto r = append_one(e);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  e = event("bad");
  e.quantity = "1e3";
  EXPECT_EQ(append_one(e).error().code(), Code::kInvalidArgument);
  e = event("bad");
  e.end = e.start - std::chrono::seconds(1);
  EXPECT_EQ(append_one(e).error().code(), Code::kInvalidArgument);
  e = event("");
  EXPECT_EQ(append_one(e).error().code(), Code::kInvalidArgument);
  EXPECT_TRUE(list_all().empty());
}

TEST_P(UsageLedgerTest, RolledBackTransactionLeavesNoEvent) {
  auto s = store_->write([&](store::Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(append(tx, event("e1")));
    return fail(Code::kAborted, "caller failed after appending");
  });
  EXPECT_EQ(s.error().code(), Code::kAborted);
  EXPECT_TRUE(list_all().empty());
}

TEST_P(UsageLedgerTest, FiltersByProjectTimeAndPages) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(append_one(event("a" + std::to_string(i), "pa")));
  auto late = event("b0", "pb");
  late.start += std::chrono::hours(10);
  late.end += std::chrono::hours(10);
  ASSERT_TRUE(append_one(late));
  EXPECT_EQ(list_all({.project_id = "pa"}).size(), 5u);
  EXPECT_EQ(list_all({.project_id = "pb"}).size(), 1u);
  EXPECT_EQ(list_all({.from = late.start}).size(), 1u);
  EXPECT_EQ(list_all({.to = late.start}).size(), 5u);
  auto page1 = list_all({.limit = 4});
  ASSERT_EQ(page1.size(), 4u);
  auto page2 = list_all({.after_seq = page1.back().seq, .limit = 4});
  ASSERT_EQ(page2.size(), 2u);
  EXPECT_EQ(page2.back().event.event_id, "b0");
}

TEST(Decimal, Grammar) {
  EXPECT_TRUE(is_decimal("0"));
  EXPECT_TRUE(is_decimal("12.50"));
  EXPECT_FALSE(is_decimal(""));
  EXPECT_FALSE(is_decimal(".5"));
  EXPECT_FALSE(is_decimal("5."));
  EXPECT_FALSE(is_decimal("1,5"));
  EXPECT_FALSE(is_decimal("NaN"));
}

}  // namespace
}  // namespace concord::usage

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  testing::AddGlobalTestEnvironment(new concord::test_support::PostgresEnvironment);
  return RUN_ALL_TESTS();
}
