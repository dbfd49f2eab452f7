#pragma once
// The set-up every service's unit tests start from: a state store (SQLite in the test's folder,
// or a fresh database on the shared private PostgreSQL server) migrated with the given
// components, and an identity service on it with cheap password hashing.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "identity/identity_service.h"
#include "postgres_server.h"
#include "store/store.h"

namespace concord::test_support {

struct TestStack {
  std::unique_ptr<store::Store> store;
  std::unique_ptr<identity::IdentityService> identity;
  std::string pg_database;  // set on PostgreSQL: drop it when the test ends
};

// `postgres`: use PostgreSQL instead of SQLite (the harnesses decide it from an environment
// variable such as CONCORD_CATALOG_TEST_STORE=postgres). The identity keys go to dir/keys.
inline Result<TestStack> open_test_stack(const std::string& dir, const Clock& clock, bool postgres,
                                         std::vector<std::vector<store::Migration>> migrations) {
  TestStack out;
  Result<std::unique_ptr<store::Store>> st = fail(Code::kInternal, "no store");
  if (postgres) {
    CONCORD_ASSIGN_OR_RETURN(PostgresServer * server, PostgresServer::shared());
    CONCORD_ASSIGN_OR_RETURN(PostgresServer::Database db, server->create_database());
    out.pg_database = db.name;
    st = store::open_postgres({.conninfo = db.conninfo});
  } else {
    st = store::open_sqlite({.path = dir + "/concord.db"});
  }
  CONCORD_ASSIGN_OR_RETURN(out.store, std::move(st));
  for (const auto& m : migrations) CONCORD_RETURN_IF_ERROR(out.store->migrate(m));
  identity::IdentityOptions io;
  io.key_dir = dir + "/keys";
  io.password_params = identity::PasswordParams{.time_cost = 1, .memory_kib = 8, .parallelism = 1};
  io.feed_wait = std::chrono::milliseconds(50);
  CONCORD_ASSIGN_OR_RETURN(out.identity, identity::IdentityService::create(*out.store, clock, io));
  return out;
}

}  // namespace concord::test_support
