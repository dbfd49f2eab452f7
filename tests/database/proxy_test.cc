// The endpoint proxy against a real PostgreSQL 15 started privately (as concord-db, in a temp
// folder, TLS on, SCRAM logins), driven by libpq: what a real client sees through each mode.
#include "database/proxy/proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <fstream>
#include <set>
#include <thread>

#include "database/engine/credentials.h"
#include "database/proxy/protocol.h"
#include "database/proxy/read_watch.h"
#include "engine_test_util.h"

namespace concord::database::proxy {
namespace {

using engine::testing::EngineTempDir;
namespace detail = engine::detail;

constexpr char kPassword[] = "proxy-pw";

// One private postgres: initdb, TLS certificate, scram-sha-256 for TCP, trust on its socket.
class PrivatePostgres {
 public:
  Status start(const std::string& dir, int port, const std::string& user_verifier) {
    dir_ = dir;
    port_ = port;
    auto user = detail::lookup_os_user("concord-db");
    if (!user) return fail(user.error());
    user_ = *user;
    CONCORD_RETURN_IF_ERROR(detail::make_dir(dir, 0700, user_));
    detail::CommandOptions as;
    as.as = user_;
    auto r =
        detail::run_checked({"/usr/lib/postgresql/15/bin/initdb", "-D", dir + "/data", "-U",
                             "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-N"},
                            as);
    if (!r) return fail(r.error());
    r = detail::run_checked(
        {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", dir + "/data/server.key", "-out", dir + "/data/server.crt", "-days",
         "30", "-subj", "/CN=127.0.0.1"},
        as);
    if (!r) return fail(r.error());
    std::ofstream conf(dir + "/data/postgresql.conf", std::ios::app);
    conf << "listen_addresses = '127.0.0.1'\nport = " << port << "\nunix_socket_directories = '"
         << dir << "'\nssl = on\nfsync = off\nmax_connections = 120\n";
    conf.close();
    r = detail::run_checked({"/usr/lib/postgresql/15/bin/pg_ctl", "-D", dir + "/data", "-l",
                             dir + "/log", "-w", "-t", "60", "start"},
                            as);
    if (!r) return fail(r.error());
    started_ = true;
    // The same verifier on every server: the proxy logs in with the key recovered from it.
    auto a = admin("CREATE USER app PASSWORD '" + user_verifier + "'");
    if (!a) return fail(a.error());
    a = admin("CREATE DATABASE app OWNER app");  // not in a transaction block
    if (!a) return fail(a.error());
    return ok();
  }
  ~PrivatePostgres() {
    if (!started_) return;
    detail::CommandOptions as;
    as.as = user_;
    (void)detail::run_command(
        {"/usr/lib/postgresql/15/bin/pg_ctl", "-D", dir_ + "/data", "-m", "immediate", "stop"}, as);
  }
  // psql as the superuser over the private socket.
  Result<std::string> admin(const std::string& sql, const std::string& db = "postgres") {
    auto r = detail::run_command({"/usr/bin/psql", "-h", dir_, "-p", std::to_string(port_), "-U",
                                  "postgres", "-d", db, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tAc",
                                  sql});
    if (!r) return fail(r.error());
    if (!r->ok()) return fail(Code::kInternal, "psql: " + r->err);
    return r->out;
  }
  int port() const { return port_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  int port_ = 0;
  detail::OsUser user_;
  bool started_ = false;
};

struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using Conn = std::unique_ptr<PGconn, PgConnDeleter>;
struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Res = std::unique_ptr<PGresult, PgResultDeleter>;

Conn connect(int port, const std::string& extra = "sslmode=disable",
             const std::string& password = kPassword) {
  std::string ci = "host=127.0.0.1 port=" + std::to_string(port) +
                   " user=app dbname=app connect_timeout=10 password=" + password + " " + extra;
  return Conn(PQconnectdb(ci.c_str()));
}

// The single value of a one-row query, or "ERROR:<sqlstate>".
std::string one(PGconn* c, const std::string& sql) {
  Res r(PQexec(c, sql.c_str()));
  auto st = PQresultStatus(r.get());
  if (st == PGRES_FATAL_ERROR) {
    const char* code = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
    return std::string("ERROR:") + (code ? code : "?");
  }
  if (st != PGRES_TUPLES_OK || PQntuples(r.get()) < 1) return "";
  return PQgetvalue(r.get(), 0, 0);
}

class ProxyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string why = engine::testing::engine_skip_reason({"/usr/lib/postgresql/15/bin/postgres",
                                                           "/usr/lib/postgresql/15/bin/initdb",
                                                           "/usr/bin/psql", "/usr/bin/openssl"});
    if (!why.empty()) {
      skip_reason_ = new std::string(why);  // NOLINT: suite-lifetime string
      return;
    }
    tmp_ = std::make_unique<EngineTempDir>().release();
    verifier_ = new std::string(engine::postgres_scram_verifier(kPassword));
    pg_ = new PrivatePostgres();
    auto st =
        pg_->start(tmp_->path() + "/pg1", engine::testing::free_port("127.0.0.1"), *verifier_);
    if (!st) skip_reason_ = new std::string("postgres did not start: " + st.error().to_string());
  }
  static void TearDownTestSuite() {
    delete pg_;
    pg_ = nullptr;
    delete tmp_;
    tmp_ = nullptr;
  }
  void SetUp() override {
    if (skip_reason_) {
      if (skip_reason_->starts_with("postgres did not start")) FAIL() << *skip_reason_;
      GTEST_SKIP() << *skip_reason_;
    }
  }

  std::unique_ptr<Proxy> make(PoolMode mode, int pool_size = 4, int backend_port = 0,
                              bool tls = false,
                              std::chrono::milliseconds wait_timeout = std::chrono::seconds(20)) {
    ProxyOptions o;
    if (tls) {  // the server's own self-signed pair
      o.tls_cert_file = pg_->dir() + "/data/server.crt";
      o.tls_key_file = pg_->dir() + "/data/server.key";
    }
    o.backend = {"127.0.0.1", static_cast<uint16_t>(backend_port ? backend_port : pg_->port())};
    o.mode = mode;
    o.pool_size = pool_size;
    o.verifiers = {{"app", *verifier_}};
    o.query_wait_timeout = wait_timeout;
    auto p = Proxy::create(o);
    EXPECT_TRUE(p.has_value()) << p.error().to_string();
    if (!p) return nullptr;
    EXPECT_TRUE((*p)->start().has_value());
    return std::move(*p);
  }

  static inline std::string* skip_reason_ = nullptr;
  static inline EngineTempDir* tmp_ = nullptr;
  static inline std::string* verifier_ = nullptr;
  static inline PrivatePostgres* pg_ = nullptr;
};

TEST_F(ProxyTest, SessionModePassesQueriesAndTlsEndToEnd) {
  auto proxy = make(PoolMode::kSession);
  ASSERT_TRUE(proxy);
  auto c = connect(proxy->port(), "sslmode=require");
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
  EXPECT_NE(PQgetssl(c.get()), nullptr);
  // The server itself holds the TLS session: the proxy only spliced the bytes.
  EXPECT_EQ(one(c.get(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"), "t");
  EXPECT_EQ(one(c.get(), "SELECT 40 + 2"), "42");
  EXPECT_EQ(proxy->stats().server_connections, 1);
  EXPECT_EQ(proxy->stats().clients_active, 1);
  // The client leaves: both directions of the splice stop and the books close.
  c.reset();
  for (int i = 0; i < 100 && proxy->stats().clients_active > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(proxy->stats().clients_active, 0);
  EXPECT_EQ(proxy->stats().server_connections, 0);
}

// Transaction mode ends TLS at the proxy: a TLS client is read by the TLS stream, a plain one
// through its ReadWatch; both served in turns on one server connection.
TEST_F(ProxyTest, TransactionModeServesTlsAndPlainClientsInTurns) {
  auto proxy = make(PoolMode::kTransaction, 1, 0, true);
  ASSERT_TRUE(proxy);
  auto tls = connect(proxy->port(), "sslmode=require");
  ASSERT_EQ(PQstatus(tls.get()), CONNECTION_OK) << PQerrorMessage(tls.get());
  auto plain = connect(proxy->port());
  ASSERT_EQ(PQstatus(plain.get()), CONNECTION_OK) << PQerrorMessage(plain.get());
  EXPECT_NE(PQgetssl(tls.get()), nullptr);
  EXPECT_EQ(PQgetssl(plain.get()), nullptr);
  for (int i = 0; i < 20; ++i) {
    PGconn* c = i % 2 ? tls.get() : plain.get();
    ASSERT_EQ(one(c, "BEGIN"), "") << i;
    ASSERT_EQ(one(c, "SELECT " + std::to_string(i)), std::to_string(i)) << i;
    ASSERT_EQ(one(c, "COMMIT"), "") << i;
  }
  EXPECT_EQ(proxy->stats().server_connections, 1);
}

TEST_F(ProxyTest, TransactionModeServesFiftyClientsOnAPoolOfFour) {
  auto proxy = make(PoolMode::kTransaction, 4);
  ASSERT_TRUE(proxy);
  std::atomic<int> answered{0};
  std::atomic<int64_t> max_servers{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&, i] {
      auto c = connect(proxy->port());
      if (PQstatus(c.get()) != CONNECTION_OK) {
        ADD_FAILURE() << "client " << i << ": " << PQerrorMessage(c.get());
        return;
      }
      bool all = true;
      for (int t = 0; t < 5; ++t) {
        all &= one(c.get(), "BEGIN") == "" &&
               one(c.get(), "SELECT " + std::to_string(i * 10 + t)) == std::to_string(i * 10 + t);
        all &= one(c.get(), "COMMIT") == "";
        int64_t now = proxy->stats().server_connections;
        int64_t prev = max_servers.load();
        while (now > prev && !max_servers.compare_exchange_weak(prev, now)) {
        }
      }
      if (all) answered++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(answered.load(), 50);
  EXPECT_LE(max_servers.load(), 4);
  // The last releases happen just after the clients saw their replies.
  for (int i = 0; i < 100 && proxy->stats().transactions < 250; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GE(proxy->stats().transactions, 250);
  EXPECT_EQ(proxy->stats().protocol_errors, 0);
}

// A client that finds every pooled connection lent waits in line: it gets the first one given
// back, and when none comes back within query_wait_timeout it is told so (53300) and closed,
// while the others go on.
TEST_F(ProxyTest, WaitersGetReleasedConnectionsOrTheWaitTimeout) {
  auto proxy = make(PoolMode::kTransaction, 1, 0, false, std::chrono::milliseconds(400));
  ASSERT_TRUE(proxy);
  auto holder = connect(proxy->port());
  auto waiter = connect(proxy->port());
  ASSERT_EQ(PQstatus(holder.get()), CONNECTION_OK) << PQerrorMessage(holder.get());
  ASSERT_EQ(PQstatus(waiter.get()), CONNECTION_OK) << PQerrorMessage(waiter.get());

  // Handed over: the holder commits 150 ms into the wait.
  ASSERT_EQ(one(holder.get(), "BEGIN"), "");
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    EXPECT_EQ(one(holder.get(), "COMMIT"), "");
  });
  EXPECT_EQ(one(waiter.get(), "SELECT 7"), "7");
  release.join();
  EXPECT_EQ(proxy->stats().wait_timeouts, 0);
  EXPECT_GE(proxy->stats().pool_waits, 1);

  // Timed out: the holder keeps its transaction open past the wait timeout.
  ASSERT_EQ(one(holder.get(), "BEGIN"), "");
  const auto start = std::chrono::steady_clock::now();
  Res r(PQexec(waiter.get(), "SELECT 8"));
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_NE(PQresultStatus(r.get()), PGRES_TUPLES_OK);
  // libpq reports the FATAL (53300) and then the close that follows it.
  const std::string error = PQerrorMessage(waiter.get());
  EXPECT_NE(error.find("FATAL:  no server connection became free within 400 ms"), std::string::npos)
      << error;
  EXPECT_GE(waited, std::chrono::milliseconds(400));
  EXPECT_LT(waited, std::chrono::seconds(5));  // the sweep is 40 ms here; generous for CI
  EXPECT_EQ(proxy->stats().wait_timeouts, 1);
  // The holder was not disturbed, and a new client is served once it commits.
  EXPECT_EQ(one(holder.get(), "SELECT 9"), "9");
  EXPECT_EQ(one(holder.get(), "COMMIT"), "");
  auto next = connect(proxy->port());
  ASSERT_EQ(PQstatus(next.get()), CONNECTION_OK) << PQerrorMessage(next.get());
  EXPECT_EQ(one(next.get(), "SELECT 10"), "10");
}

// The pool size changes live (the endpoints follow a flavor resize or the tenant's
// pooling.pool_size): a waiter is served at once when the pool grows; when it shrinks, idle
// connections beyond it close now and lent ones when their transaction ends.
TEST_F(ProxyTest, SetPoolSizeServesWaitersAndShrinksAsConnectionsComeBack) {
  auto proxy = make(PoolMode::kTransaction, 1);
  ASSERT_TRUE(proxy);
  auto holder = connect(proxy->port());
  auto waiter = connect(proxy->port());
  ASSERT_EQ(PQstatus(holder.get()), CONNECTION_OK) << PQerrorMessage(holder.get());
  ASSERT_EQ(PQstatus(waiter.get()), CONNECTION_OK) << PQerrorMessage(waiter.get());
  auto wait_for = [&](auto done) {
    for (int i = 0; i < 250 && !done(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return done();
  };

  ASSERT_EQ(one(holder.get(), "BEGIN"), "");
  std::string answer;
  std::atomic<bool> answered{false};
  std::thread asks([&] {
    answer = one(waiter.get(), "SELECT 7");
    answered = true;
  });
  EXPECT_TRUE(wait_for([&] { return proxy->stats().pool_waits >= 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(answered);  // still waiting: the only connection is the holder's
  proxy->set_pool_size(2);
  asks.join();  // served on a second connection while the holder's transaction stays open
  EXPECT_EQ(answer, "7");
  EXPECT_EQ(proxy->stats().server_connections, 2);

  // Both lent, then the pool shrinks to 1: the first one back closes, the second stays.
  ASSERT_EQ(one(waiter.get(), "BEGIN"), "");
  proxy->set_pool_size(1);
  ASSERT_EQ(one(holder.get(), "COMMIT"), "");
  EXPECT_TRUE(wait_for([&] { return proxy->stats().server_connections == 1; }));
  ASSERT_EQ(one(waiter.get(), "COMMIT"), "");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(proxy->stats().server_connections, 1);
  EXPECT_EQ(one(holder.get(), "SELECT 8"), "8");

  // Grown again and both idle, then shrunk: the idle one beyond the size closes at once.
  proxy->set_pool_size(2);
  ASSERT_EQ(one(holder.get(), "BEGIN"), "");
  EXPECT_EQ(one(waiter.get(), "SELECT 9"), "9");
  ASSERT_EQ(one(holder.get(), "COMMIT"), "");
  EXPECT_TRUE(wait_for([&] { return proxy->stats().server_connections == 2; }));
  proxy->set_pool_size(1);
  EXPECT_TRUE(wait_for([&] { return proxy->stats().server_connections == 1; }));
  EXPECT_EQ(one(waiter.get(), "SELECT 10"), "10");
  EXPECT_EQ(proxy->stats().protocol_errors, 0);
}

TEST(DefaultPoolSizeTest, FourPerCpuFromEightToSixtyFour) {
  EXPECT_EQ(default_pool_size(0), 8);
  EXPECT_EQ(default_pool_size(1), 8);
  EXPECT_EQ(default_pool_size(2), 8);
  EXPECT_EQ(default_pool_size(4), 16);
  EXPECT_EQ(default_pool_size(16), 64);
  EXPECT_EQ(default_pool_size(64), 64);
}

TEST_F(ProxyTest, SetPinsTheClientAndDoesNotLeakToOthers) {
  auto proxy = make(PoolMode::kTransaction, 2);
  ASSERT_TRUE(proxy);
  auto a = connect(proxy->port());
  auto b = connect(proxy->port());
  ASSERT_EQ(PQstatus(a.get()), CONNECTION_OK) << PQerrorMessage(a.get());
  ASSERT_EQ(PQstatus(b.get()), CONNECTION_OK) << PQerrorMessage(b.get());
  std::string default_mem = one(b.get(), "SHOW work_mem");
  ASSERT_NE(default_mem, "7MB");
  EXPECT_EQ(one(a.get(), "SET work_mem = '7MB'"), "");
  std::string pid = one(a.get(), "SELECT pg_backend_pid()");
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(one(a.get(), "SHOW work_mem"), "7MB");
    EXPECT_EQ(one(a.get(), "SELECT pg_backend_pid()"), pid);
    EXPECT_EQ(one(b.get(), "SHOW work_mem"), default_mem);
    EXPECT_NE(one(b.get(), "SELECT pg_backend_pid()"), pid);
  }
  EXPECT_EQ(proxy->stats().pinned_clients, 1);
  // SET LOCAL stays in its transaction and does not pin.
  EXPECT_EQ(one(b.get(), "BEGIN"), "");
  EXPECT_EQ(one(b.get(), "SET LOCAL work_mem = '9MB'"), "");
  EXPECT_EQ(one(b.get(), "COMMIT"), "");
  EXPECT_EQ(proxy->stats().pinned_clients, 1);
}

TEST_F(ProxyTest, PreparedStatementsFollowTheClientAcrossServerConnections) {
  auto proxy = make(PoolMode::kTransaction, 2);
  ASSERT_TRUE(proxy);
  auto a = connect(proxy->port());
  auto b = connect(proxy->port());
  ASSERT_EQ(PQstatus(a.get()), CONNECTION_OK) << PQerrorMessage(a.get());
  ASSERT_EQ(PQstatus(b.get()), CONNECTION_OK) << PQerrorMessage(b.get());
  Res prep(PQprepare(a.get(), "s1", "SELECT pg_backend_pid(), $1::int * 2", 0, nullptr));
  ASSERT_EQ(PQresultStatus(prep.get()), PGRES_COMMAND_OK) << PQerrorMessage(a.get());
  // b names its own statement s1 differently: names are per client, as on a real server.
  Res prep_b(PQprepare(b.get(), "s1", "SELECT $1::int + 1", 0, nullptr));
  ASSERT_EQ(PQresultStatus(prep_b.get()), PGRES_COMMAND_OK) << PQerrorMessage(b.get());

  std::set<std::string> pids;
  for (int i = 0; i < 6; ++i) {
    // While b holds a server connection in a transaction, a must use the other one.
    bool hold = i % 2 == 0;
    if (hold) {
      ASSERT_EQ(one(b.get(), "BEGIN"), "");
      ASSERT_EQ(one(b.get(), "SELECT 1"), "1");
    }
    std::string v = std::to_string(i);
    const char* params[] = {v.c_str()};
    Res r(PQexecPrepared(a.get(), "s1", 1, params, nullptr, nullptr, 0));
    ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << PQerrorMessage(a.get());
    EXPECT_EQ(std::string(PQgetvalue(r.get(), 0, 1)), std::to_string(i * 2));
    pids.insert(PQgetvalue(r.get(), 0, 0));
    if (hold) {
      ASSERT_EQ(one(b.get(), "COMMIT"), "");
    }
    Res rb(PQexecPrepared(b.get(), "s1", 1, params, nullptr, nullptr, 0));
    ASSERT_EQ(PQresultStatus(rb.get()), PGRES_TUPLES_OK) << PQerrorMessage(b.get());
    EXPECT_EQ(std::string(PQgetvalue(rb.get(), 0, 0)), std::to_string(i + 1));
  }
  EXPECT_EQ(pids.size(), 2u) << "the statement ran on both server connections";
  EXPECT_GT(proxy->stats().reprepares, 0);
  EXPECT_EQ(proxy->stats().pinned_clients, 0);
  // A statement the client never prepared is still the server's own error.
  Res missing(PQexecPrepared(a.get(), "nope", 0, nullptr, nullptr, nullptr, 0));
  EXPECT_STREQ(PQresultErrorField(missing.get(), PG_DIAG_SQLSTATE), "26000");
}

TEST_F(ProxyTest, PrepareWhilePoolIsBusyIsAnsweredAndCheckedAtFirstUse) {
  auto proxy = make(PoolMode::kTransaction, 1);
  ASSERT_TRUE(proxy);
  auto a = connect(proxy->port());
  auto b = connect(proxy->port());
  ASSERT_EQ(PQstatus(a.get()), CONNECTION_OK) << PQerrorMessage(a.get());
  ASSERT_EQ(PQstatus(b.get()), CONNECTION_OK) << PQerrorMessage(b.get());
  // b holds the only server connection; a's PQprepare must not wait for it (pgbench blocks its
  // whole thread in PQprepare, which would stall b's transaction forever).
  ASSERT_EQ(one(b.get(), "BEGIN"), "");
  ASSERT_EQ(one(b.get(), "SELECT 1"), "1");
  Res good(PQprepare(a.get(), "good", "SELECT $1::int + 100", 0, nullptr));
  EXPECT_EQ(PQresultStatus(good.get()), PGRES_COMMAND_OK) << PQerrorMessage(a.get());
  Res bad(PQprepare(a.get(), "bad", "SELEC nonsense", 0, nullptr));
  EXPECT_EQ(PQresultStatus(bad.get()), PGRES_COMMAND_OK) << PQerrorMessage(a.get());
  ASSERT_EQ(one(b.get(), "COMMIT"), "");
  const char* params[] = {"5"};
  Res r(PQexecPrepared(a.get(), "good", 1, params, nullptr, nullptr, 0));
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << PQerrorMessage(a.get());
  EXPECT_STREQ(PQgetvalue(r.get(), 0, 0), "105");
  // The deferred invalid statement fails at its first use with the server's own error.
  Res e(PQexecPrepared(a.get(), "bad", 0, nullptr, nullptr, nullptr, 0));
  EXPECT_STREQ(PQresultErrorField(e.get(), PG_DIAG_SQLSTATE), "42601");
  // And the connection is usable afterwards.
  EXPECT_EQ(one(a.get(), "SELECT 3"), "3");
  Res again(PQexecPrepared(a.get(), "good", 1, params, nullptr, nullptr, 0));
  EXPECT_STREQ(PQgetvalue(again.get(), 0, 0), "105");
}

TEST_F(ProxyTest, ClientKilledMidTransactionLeavesNoOpenTransaction) {
  auto proxy = make(PoolMode::kTransaction, 1);
  ASSERT_TRUE(proxy);
  ASSERT_TRUE(
      pg_->admin("CREATE TABLE IF NOT EXISTS killed(v int); GRANT ALL ON killed TO app", "app")
          .has_value());
  {
    auto c = connect(proxy->port());
    ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
    EXPECT_EQ(one(c.get(), "BEGIN"), "");
    EXPECT_EQ(one(c.get(), "INSERT INTO killed VALUES (7) RETURNING v"), "7");
    // Gone without a Terminate message, as a killed process.
    ::shutdown(PQsocket(c.get()), SHUT_RDWR);
  }
  // The pool of one is usable again, not stuck behind the dead client's transaction.
  auto d = connect(proxy->port());
  ASSERT_EQ(PQstatus(d.get()), CONNECTION_OK) << PQerrorMessage(d.get());
  EXPECT_EQ(one(d.get(), "SELECT count(*) FROM killed WHERE v = 7"), "0");
  EXPECT_EQ(one(d.get(), "SELECT 1"), "1");
  auto in_tx = pg_->admin(
      "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND state LIKE 'idle in "
      "transaction%'");
  ASSERT_TRUE(in_tx.has_value());
  EXPECT_EQ(*in_tx, "0\n");
}

TEST_F(ProxyTest, LargeValuesPassBothWaysInBothModes) {
  // 16 MiB each way, more than a loopback socket buffers: in transaction mode the proxy's
  // first non-blocking send of the whole message takes only part of it (about 4 MB), so its
  // writes toward the server and toward the client both finish on the asynchronous path.
  std::string big(16 << 20, 'x');
  big[12345] = 'y';
  const char* values[] = {big.c_str()};
  for (PoolMode mode : {PoolMode::kSession, PoolMode::kTransaction}) {
    SCOPED_TRACE(mode == PoolMode::kSession ? "session" : "transaction");
    auto proxy = make(mode, 1);
    ASSERT_TRUE(proxy);
    auto c = connect(proxy->port());
    ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
    for (int round = 0; round < 2; ++round) {
      Res r(PQexecParams(c.get(),
                         "SELECT length($1::text), strpos($1::text, 'y'), repeat('ab', 8388608)", 1,
                         nullptr, values, nullptr, nullptr, 0));
      ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << PQerrorMessage(c.get());
      EXPECT_STREQ(PQgetvalue(r.get(), 0, 0), "16777216");
      EXPECT_STREQ(PQgetvalue(r.get(), 0, 1), "12346");
      std::string_view back(PQgetvalue(r.get(), 0, 2), PQgetlength(r.get(), 0, 2));
      ASSERT_EQ(back.size(), 16u << 20);
      bool pattern = true;
      for (size_t i = 0; i < back.size(); i += 2) pattern &= back[i] == 'a' && back[i + 1] == 'b';
      EXPECT_TRUE(pattern);
    }
    EXPECT_EQ(one(c.get(), "SELECT 6 * 7"), "42");
    if (mode == PoolMode::kTransaction) {
      EXPECT_GE(proxy->stats().transactions, 2);
      EXPECT_EQ(proxy->stats().server_connects, 1);  // the one connection went back each time
    }
  }
}

TEST_F(ProxyTest, ServerTerminatedUnderALentConnectionClosesThatClientOnly) {
  auto proxy = make(PoolMode::kTransaction, 2);
  ASSERT_TRUE(proxy);
  auto c = connect(proxy->port());
  auto other = connect(proxy->port());
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
  ASSERT_EQ(PQstatus(other.get()), CONNECTION_OK) << PQerrorMessage(other.get());
  EXPECT_EQ(one(c.get(), "BEGIN"), "");
  std::string pid = one(c.get(), "SELECT pg_backend_pid()");
  ASSERT_FALSE(pid.empty());
  auto killed = pg_->admin("SELECT pg_terminate_backend(" + pid + ")");
  ASSERT_TRUE(killed.has_value()) << killed.error().to_string();
  // The client's transaction is gone with its server: its next query fails and the proxy
  // closes it (FATAL), instead of lending the dead connection again.
  EXPECT_EQ(one(c.get(), "SELECT 1").rfind("ERROR:", 0), 0u);
  EXPECT_EQ(PQstatus(c.get()), CONNECTION_BAD);
  for (int i = 0; i < 100 && proxy->stats().clients_active > 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(proxy->stats().clients_active, 1);
  EXPECT_EQ(one(other.get(), "SELECT 8"), "8");
  auto again = connect(proxy->port());
  ASSERT_EQ(PQstatus(again.get()), CONNECTION_OK) << PQerrorMessage(again.get());
  EXPECT_EQ(one(again.get(), "SELECT 9"), "9");
  EXPECT_NE(one(again.get(), "SELECT pg_backend_pid()"), pid);
}

TEST_F(ProxyTest, SetBackendMovesNewTransactionsToTheNewServer) {
  PrivatePostgres second;
  int port2 = engine::testing::free_port("127.0.0.1");
  auto st = second.start(tmp_->path() + "/pg2", port2, *verifier_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  auto proxy = make(PoolMode::kTransaction, 2);
  ASSERT_TRUE(proxy);
  auto c = connect(proxy->port());
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
  EXPECT_EQ(one(c.get(), "SHOW port"), std::to_string(pg_->port()));
  // A transaction open across the switch finishes where it started.
  EXPECT_EQ(one(c.get(), "BEGIN"), "");
  proxy->set_backend({"127.0.0.1", static_cast<uint16_t>(port2)});
  EXPECT_EQ(one(c.get(), "SHOW port"), std::to_string(pg_->port()));
  EXPECT_EQ(one(c.get(), "COMMIT"), "");
  EXPECT_EQ(one(c.get(), "SHOW port"), std::to_string(port2));
  EXPECT_EQ(proxy->backend().port, port2);
  EXPECT_EQ(proxy->stats().backend_switches, 1);
  // No server connection to the old backend survives the transaction that was using it.
  auto old_conns = pg_->admin("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'");
  ASSERT_TRUE(old_conns.has_value());
  for (int i = 0; i < 50 && *old_conns != "0\n"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    old_conns = pg_->admin("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'");
  }
  EXPECT_EQ(*old_conns, "0\n");

  // Session mode: new connections go to the new server too.
  auto sp = make(PoolMode::kSession);
  ASSERT_TRUE(sp);
  sp->set_backend({"127.0.0.1", static_cast<uint16_t>(port2)});
  auto s = connect(sp->port());
  ASSERT_EQ(PQstatus(s.get()), CONNECTION_OK) << PQerrorMessage(s.get());
  EXPECT_EQ(one(s.get(), "SHOW port"), std::to_string(port2));
}

// PROXY protocol v1 in session mode (what MariaDB's proxy_protocol_networks reads), on a plain
// TCP backend: the line comes first and names the client's own source address and the address
// it connected to; without the option the backend sees the client's bytes only.
TEST(ProxyHeaderTest, SessionModeNamesTheClientToTheBackendFirst) {
  EXPECT_EQ(*proxy_v1_header({"10.0.0.7", 51000}, {"127.77.0.3", 3306}),
            "PROXY TCP4 10.0.0.7 127.77.0.3 51000 3306\r\n");
  EXPECT_EQ(*proxy_v1_header({"::ffff:10.0.0.7", 51000}, {"::ffff:127.0.0.1", 3306}),
            "PROXY TCP4 10.0.0.7 127.0.0.1 51000 3306\r\n");
  EXPECT_EQ(*proxy_v1_header({"2001:db8::7", 1}, {"127.0.0.1", 2}),
            "PROXY TCP6 2001:db8::7 ::ffff:127.0.0.1 1 2\r\n");
  EXPECT_FALSE(proxy_v1_header({"db.example", 1}, {"127.0.0.1", 2}));

  auto listen_on = [](const char* ip) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, ip, &a.sin_addr);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd, 4), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    return std::pair<int, uint16_t>(fd, ntohs(a.sin_port));
  };
  // Reads what the backend got until `want` bytes or 5 s.
  auto read_some = [](int fd, size_t want) {
    std::string got;
    char buf[256];
    for (int i = 0; i < 50 && got.size() < want; ++i) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  };
  // A MySQL-like backend: it speaks first.
  for (bool header : {true, false}) {
    SCOPED_TRACE(header ? "with the header" : "without");
    auto [backend_fd, backend_port] = listen_on("127.0.0.1");
    ProxyOptions o;
    o.listen_host = "127.0.0.1";
    o.backend = {"127.0.0.1", backend_port};
    o.mode = PoolMode::kSession;
    o.proxy_protocol = header;
    auto proxy = Proxy::create(o);
    ASSERT_TRUE(proxy) << proxy.error().to_string();
    ASSERT_TRUE((*proxy)->start());

    // The client connects from a source address of its own, as a remote one would.
    int client = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.5", &src.sin_addr);
    ASSERT_EQ(::bind(client, reinterpret_cast<sockaddr*>(&src), sizeof src), 0);
    socklen_t len = sizeof src;
    ::getsockname(client, reinterpret_cast<sockaddr*>(&src), &len);
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons((*proxy)->port());
    ::inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&dst), sizeof dst), 0);

    const std::string line = "PROXY TCP4 127.0.0.5 127.0.0.1 " +
                             std::to_string(ntohs(src.sin_port)) + " " +
                             std::to_string((*proxy)->port()) + "\r\n";
    int server = ::accept(backend_fd, nullptr, nullptr);
    ASSERT_GE(server, 0);
    if (header) {
      EXPECT_EQ(read_some(server, line.size()), line);
    }
    ASSERT_EQ(::send(server, "greeting", 8, 0), 8);
    EXPECT_EQ(read_some(client, 8), "greeting");
    ASSERT_EQ(::send(client, "hello", 5, 0), 5);
    EXPECT_EQ(read_some(server, 5), "hello") << "nothing but the client's bytes after it";
    ::close(server);
    ::close(client);
    ::close(backend_fd);
    (*proxy)->stop();
  }
}

// ReadWatch (read_watch.h) leans on Asio's reactor internals: what the proxy relies on, on a
// loopback pair with no PostgreSQL. Bytes that arrive before a wait starts, after the reactor
// already took their edge with nothing queued, must still wake it; the watch's two operations
// must stay queued across waits (nothing re-armed); the end of the stream and a close under a
// wait must wake it too.
TEST(ReadWatchTest, WakesForBytesBeforeOrAfterTheWaitTheEndAndAClose) {
  namespace asio = boost::asio;
  using tcp = asio::ip::tcp;
  asio::io_context io(1);
  tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket peer(io), s(io);
  peer.connect(acc.local_endpoint());
  acc.accept(s);
  ReadWatch watch;
  int woken = 0;
  auto run_until_woken = [&](int before) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (woken == before && std::chrono::steady_clock::now() < deadline) {
      io.run_one_for(std::chrono::milliseconds(50));
    }
    return woken > before;
  };
  auto wait = [&] {
    int before = woken;
    watch.wait(s, [&] { ++woken; });
    return run_until_woken(before);
  };
  auto read = [&] {
    char buf[64];
    boost::system::error_code ec;
    size_t n = watch.read(s, asio::buffer(buf), ec);
    if (ec) return "error: " + ec.message();
    return std::string(buf, n);
  };
  auto send = [&](std::string_view text) { ASSERT_EQ(peer.send(asio::buffer(text)), text.size()); };

  // Nothing there: the wait does not return.
  watch.wait(s, [&] { ++woken; });
  io.run_for(std::chrono::milliseconds(100));
  EXPECT_EQ(woken, 0);
  EXPECT_EQ(watch.queued(), 2);
  // Bytes after the wait started.
  send("one");
  ASSERT_TRUE(run_until_woken(0));
  EXPECT_EQ(read(), "one");
  EXPECT_EQ(read(), "");  // drained: the next read would block
  // Bytes that arrived while nobody waited, their event already taken by the reactor.
  send("two");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  io.poll();
  EXPECT_EQ(woken, 1);
  ASSERT_TRUE(wait());
  EXPECT_EQ(read(), "two");
  // Round trips: the same two operations stay queued, one replaced per event.
  for (int i = 0; i < 200; ++i) {
    int before = woken;
    watch.wait(s, [&] { ++woken; });
    send("x" + std::to_string(i));
    ASSERT_TRUE(run_until_woken(before)) << i;
    ASSERT_EQ(read(), "x" + std::to_string(i));
    ASSERT_EQ(watch.queued(), 2) << i;
  }
  // More than one buffer's worth: the watch says "read again" without another event.
  std::string big(200, 'b');
  send(big);
  ASSERT_TRUE(wait());
  std::string got;
  while (got.size() < big.size()) {
    std::string part = read();
    ASSERT_FALSE(part.empty()) << got.size();
    got += part;
    if (got.size() < big.size()) {
      ASSERT_TRUE(wait()) << got.size();
    }
  }
  EXPECT_EQ(got, big);
  // The end of the stream.
  peer.shutdown(tcp::socket::shutdown_send);
  ASSERT_TRUE(wait());
  EXPECT_EQ(read(), "error: End of file");
  // A close under a wait wakes it, and the read says the socket is gone.
  peer.close();
  int before = woken;
  watch.wait(s, [&] { ++woken; });
  s.close();
  ASSERT_TRUE(run_until_woken(before));
  EXPECT_EQ(read(), "error: Bad file descriptor");
  io.poll();
  EXPECT_EQ(watch.queued(), 0);
}

// Reads what the proxy sends until it closes; returns the SQLSTATE of the first ErrorResponse.
std::string read_error_until_close(int fd) {
  // libpq leaves its socket non-blocking.
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  std::string got;
  char buf[4096];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  size_t at = 0;
  while (true) {
    auto m = next_message(std::string_view(got).substr(at));
    if (!m || !*m) return "no ErrorResponse in " + std::to_string(got.size()) + " bytes";
    if ((*m)->type == 'E') {
      auto e = parse_error((*m)->body);
      return e ? e->sqlstate : "unparsable";
    }
    at += (*m)->total;
  }
}

TEST_F(ProxyTest, MalformedMessagesGetAnErrorAndACloseNotACrash) {
  auto proxy = make(PoolMode::kTransaction, 2);
  ASSERT_TRUE(proxy);
  // A startup packet with an impossible length.
  {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(proxy->port());
    ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    std::string bad;
    put_int32(bad, 1 << 30);
    put_int32(bad, static_cast<int32_t>(kProtocolV3));
    ASSERT_EQ(::send(fd, bad.data(), bad.size(), 0), static_cast<ssize_t>(bad.size()));
    EXPECT_EQ(read_error_until_close(fd), "08P01");
    ::close(fd);
  }
  // After login: a Query whose length is below the minimum, and a Bind cut short.
  for (std::string bad : {std::string("Q\0\0\0\2", 5), std::string("B\0\0\0\6ab", 7)}) {
    auto c = connect(proxy->port());
    ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
    int fd = PQsocket(c.get());
    ASSERT_EQ(::send(fd, bad.data(), bad.size(), 0), static_cast<ssize_t>(bad.size()));
    EXPECT_EQ(read_error_until_close(fd), "08P01");
  }
  // A wrong password is the server's own refusal code.
  auto wrong = connect(proxy->port(), "sslmode=disable", "not-the-password");
  EXPECT_EQ(PQstatus(wrong.get()), CONNECTION_BAD);
  EXPECT_NE(std::string(PQerrorMessage(wrong.get())).find("password authentication failed"),
            std::string::npos)
      << PQerrorMessage(wrong.get());
  EXPECT_GE(proxy->stats().protocol_errors, 3);
  // Still serving.
  auto ok_conn = connect(proxy->port());
  ASSERT_EQ(PQstatus(ok_conn.get()), CONNECTION_OK) << PQerrorMessage(ok_conn.get());
  EXPECT_EQ(one(ok_conn.get(), "SELECT 5"), "5");
}

}  // namespace
}  // namespace concord::database::proxy
