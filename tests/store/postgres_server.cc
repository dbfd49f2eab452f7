#include "postgres_server.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

namespace concord::test_support {
namespace {

constexpr char kBinDir[] = "/usr/lib/postgresql/15/bin";

std::string quote_conninfo_value(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

std::string tail_of(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.size() > 2000) text = "..." + text.substr(text.size() - 2000);
  return text;
}

Result<int> free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(Code::kInternal, std::string("socket: ") + strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (rc == 0) rc = getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  if (rc != 0) return fail(Code::kInternal, std::string("bind/getsockname: ") + strerror(errno));
  return static_cast<int>(ntohs(addr.sin_port));
}

std::mutex g_shared_mu;
std::unique_ptr<PostgresServer> g_shared;  // guarded by g_shared_mu
std::optional<Error> g_shared_error;       // guarded by g_shared_mu

}  // namespace

Result<std::unique_ptr<PostgresServer>> PostgresServer::start() {
  auto server = std::make_unique<PostgresServer>(Key{});
  if (const char* url = std::getenv("CONCORD_TEST_POSTGRES_URL"); url != nullptr && *url != 0) {
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(url, &err);
    if (opts == nullptr) {
      std::string why = err != nullptr ? err : "out of memory";
      PQfreemem(err);
      return fail(Code::kInvalidArgument,
                  "CONCORD_TEST_POSTGRES_URL is not a valid libpq "
                  "connection string: " +
                      why);
    }
    std::string admin_db = "postgres";
    for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
      if (o->val == nullptr || *o->val == 0) continue;
      if (std::string_view(o->keyword) == "dbname") {
        admin_db = o->val;
        continue;
      }
      server->base_conninfo_ += std::string(o->keyword) + "=" + quote_conninfo_value(o->val) + " ";
    }
    PQconninfoFree(opts);
    server->admin_conninfo_ = server->conninfo_for(admin_db);
  } else {
    CONCORD_RETURN_IF_ERROR(server->launch());
  }
  if (Status st = server->admin_exec("SELECT 1"); !st) {
    return fail(Code::kUnavailable,
                "PostgreSQL test server does not answer: " + st.error().message());
  }
  return server;
}

Result<PostgresServer*> PostgresServer::shared() {
  std::lock_guard lock(g_shared_mu);
  if (g_shared) return g_shared.get();
  if (g_shared_error) return fail(*g_shared_error);
  auto started = start();
  if (!started) {
    g_shared_error = started.error();
    return fail(started.error());
  }
  g_shared = std::move(*started);
  return g_shared.get();
}

void PostgresServer::stop_shared() {
  std::lock_guard lock(g_shared_mu);
  g_shared.reset();
}

Status PostgresServer::run(const std::vector<std::string>& args, const std::string& log) const {
  std::vector<std::string> argv;
  if (geteuid() == 0) argv = {"/usr/sbin/runuser", "-u", "postgres", "--"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) return fail(Code::kInternal, std::string("fork: ") + strerror(errno));
  if (pid == 0) {
    // Only async-signal-safe calls until exec. The server must not inherit the test's
    // files and sockets.
    if (chdir(data_root_.c_str()) != 0) _exit(126);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int devnull = open("/dev/null", O_RDONLY);
    if (fd < 0 || devnull < 0) _exit(126);
    dup2(devnull, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    close_range(3, ~0U, 0);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return fail(Code::kInternal, std::string("waitpid: ") + strerror(errno));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return ok();
  return fail(Code::kUnavailable, "'" + args[0] + "' failed (status " + std::to_string(status) +
                                      "); its output:\n" + tail_of(log));
}

// A server that outlived its test program would hold a port and a temp dir until someone
// noticed. So the stop is done by a small watchdog process that waits for EOF on a pipe whose
// only writer is this process: the destructor closes it, and so does the kernel if the test
// program crashes or is killed. The watchdog runs in its own session so a Ctrl-C aimed at
// the test does not kill it before it has cleaned up.
Status PostgresServer::start_watchdog() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    return fail(Code::kInternal, std::string("pipe2: ") + strerror(errno));
  std::string stop = std::string(kBinDir) + "/pg_ctl -D \"$1/data\" -m immediate -w stop";
  if (geteuid() == 0) stop = "/usr/sbin/runuser -u postgres -- " + stop;
  // Keeps the directory (and its logs) only if the stop failed.
  std::string script = "cat >/dev/null; if [ -f \"$1/data/postmaster.pid\" ]; then " + stop +
                       " >>\"$1/commands.log\" 2>&1 || exit 1; fi; rm -rf -- \"$1\"";
  std::vector<std::string> argv = {"/bin/sh", "-c", script, "concord-pg-watchdog", data_root_};
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return fail(Code::kInternal, std::string("fork: ") + strerror(errno));
  }
  if (pid == 0) {
    setsid();
    dup2(fds[0], 0);  // dup2 clears O_CLOEXEC on the copy
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
      dup2(devnull, 1);
      dup2(devnull, 2);
    }
    close_range(3, ~0U, 0);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  close(fds[0]);
  watchdog_pid_ = pid;
  watchdog_fd_ = fds[1];
  return ok();
}

Status PostgresServer::launch() {
  const std::string initdb = std::string(kBinDir) + "/initdb";
  const std::string pg_ctl = std::string(kBinDir) + "/pg_ctl";
  if (access(initdb.c_str(), X_OK) != 0 || access(pg_ctl.c_str(), X_OK) != 0) {
    return fail(Code::kFailedPrecondition,
                "PostgreSQL 15 is not installed (no " + initdb +
                    "); apt-get install postgresql-15, or set CONCORD_TEST_POSTGRES_URL");
  }
  char tmpl[] = "/tmp/concord-pg-XXXXXX";
  if (mkdtemp(tmpl) == nullptr)
    return fail(Code::kInternal, std::string("mkdtemp: ") + strerror(errno));
  data_root_ = tmpl;
  if (geteuid() == 0) {
    passwd* pw = getpwnam("postgres");
    if (pw == nullptr) {
      return fail(Code::kFailedPrecondition,
                  "running as root, PostgreSQL must run as the 'postgres' system user, which "
                  "does not exist (it comes with the postgresql-15 package)");
    }
    if (chown(data_root_.c_str(), pw->pw_uid, pw->pw_gid) != 0)
      return fail(Code::kInternal, "chown " + data_root_ + ": " + strerror(errno));
  }
  // From here on the watchdog removes the directory (and stops the server) whatever happens.
  CONCORD_RETURN_IF_ERROR(start_watchdog());
  const std::string data = data_root_ + "/data";
  const std::string log = data_root_ + "/commands.log";
  CONCORD_RETURN_IF_ERROR(run({initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                               "--locale=C", "--no-sync", "--no-instructions"},
                              log));
  CONCORD_ASSIGN_OR_RETURN(int port, free_port());
  {
    std::ofstream conf(data + "/postgresql.conf", std::ios::app);
    conf << "\n# concord tests: private socket only, speed over durability (thrown away)\n"
         << "listen_addresses = ''\n"
         << "port = " << port << "\n"
         << "unix_socket_directories = '" << data_root_ << "'\n"
         << "fsync = off\n"
         << "synchronous_commit = off\n"
         << "full_page_writes = off\n"
         << "deadlock_timeout = '100ms'\n"
         << "max_connections = 200\n"
         << "shared_buffers = '32MB'\n";
    if (!conf) return fail(Code::kInternal, "cannot append to " + data + "/postgresql.conf");
  }
  CONCORD_RETURN_IF_ERROR(
      run({pg_ctl, "-D", data, "-l", data_root_ + "/server.log", "-w", "-t", "60", "start"}, log));
  base_conninfo_ = "host=" + quote_conninfo_value(data_root_) + " port=" + std::to_string(port) +
                   " user=postgres ";
  admin_conninfo_ = conninfo_for("postgres");
  return ok();
}

PostgresServer::PostgresServer(Key) {}

PostgresServer::~PostgresServer() {
  if (watchdog_pid_ <= 0) return;
  close(watchdog_fd_);  // the watchdog stops the server and removes the directory
  int status = 0;
  while (waitpid(watchdog_pid_, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ADD_FAILURE() << "stopping the PostgreSQL test server failed (status " << status << "); see "
                  << data_root_ << "/commands.log";
  }
}

std::string PostgresServer::conninfo_for(const std::string& dbname) const {
  return base_conninfo_ + "dbname=" + quote_conninfo_value(dbname);
}

Status PostgresServer::admin_exec(const std::string& sql) {
  PGconn* conn = PQconnectdb(admin_conninfo_.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string why = PQerrorMessage(conn);
    PQfinish(conn);
    return fail(Code::kUnavailable, "cannot connect to the test server: " + why);
  }
  PGresult* r = PQexec(conn, sql.c_str());
  ExecStatusType status = PQresultStatus(r);
  std::string why = PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(conn);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
    return fail(Code::kInternal, "'" + sql + "' failed: " + why);
  return ok();
}

Result<PostgresServer::Database> PostgresServer::create_database() {
  std::string name =
      "concord_test_" + std::to_string(getpid()) + "_" + std::to_string(++databases_made_);
  CONCORD_RETURN_IF_ERROR(admin_exec("CREATE DATABASE " + name));
  return Database{name, conninfo_for(name)};
}

Status PostgresServer::drop_database(const std::string& name) {
  return admin_exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
}

}  // namespace concord::test_support
