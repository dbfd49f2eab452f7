#pragma once
// A real PostgreSQL server for tests.
//
// start() uses the server named by CONCORD_TEST_POSTGRES_URL when that is set (a libpq URL or
// key=value string for a role that may CREATE DATABASE). Otherwise it runs PostgreSQL 15
// from /usr/lib/postgresql/15/bin: initdb into a fresh temp dir, then pg_ctl start listening
// only on a Unix socket inside that dir (listen_addresses=''), so nothing else on the machine
// can reach it or collide with it. PostgreSQL refuses to run as root: when the test runs as
// root, initdb and pg_ctl run through `runuser -u postgres --` and the dir is chowned to
// that user. The server is tuned for tests (fsync off): it is thrown away afterwards.
//
// Each test gets its own database from create_database(), so tests never see each other's
// tables. shared() is the process-wide server, started on first use; register
// PostgresEnvironment so it is stopped when the test program ends.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace concord::test_support {

class PostgresServer {
  struct Key {
    explicit Key() = default;
  };

 public:
  // Starts a server (or adopts CONCORD_TEST_POSTGRES_URL); a clear error if that fails.
  [[nodiscard]] static Result<std::unique_ptr<PostgresServer>> start();
  // The process-wide server, started on the first call; a failure is remembered and
  // returned again rather than retried.
  [[nodiscard]] static Result<PostgresServer*> shared();
  // Stops the shared server if it was started.
  static void stop_shared();

  explicit PostgresServer(Key);  // only start() can make a Key: use start() or shared()
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  struct Database {
    std::string name;
    std::string conninfo;  // libpq key=value connection string
  };
  // Creates an empty database with a fresh name.
  [[nodiscard]] Result<Database> create_database();
  // Drops a database made by create_database(), closing any connections still open to it.
  [[nodiscard]] Status drop_database(const std::string& name);

  // Connection string of the maintenance database ("postgres").
  const std::string& admin_conninfo() const { return admin_conninfo_; }
  // True when this object started (and will stop) the server itself.
  bool owns_server() const { return !data_root_.empty(); }

 private:
  [[nodiscard]] Status launch();
  [[nodiscard]] Status start_watchdog();
  [[nodiscard]] Status run(const std::vector<std::string>& argv, const std::string& log) const;
  [[nodiscard]] Status admin_exec(const std::string& sql);
  std::string conninfo_for(const std::string& dbname) const;

  std::string base_conninfo_;   // without dbname
  std::string admin_conninfo_;  // base + dbname=postgres
  std::string data_root_;       // temp dir holding data/, the socket and logs (own server only)
  int databases_made_ = 0;
  int watchdog_pid_ = -1;  // stops the server when watchdog_fd_ closes (own server only)
  int watchdog_fd_ = -1;
};

// Stops the shared server at the end of the test program.
class PostgresEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { PostgresServer::stop_shared(); }
};

}  // namespace concord::test_support
