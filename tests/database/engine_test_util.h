#pragma once
// Shared by the engine and database-driver tests: skip reasons, a per-test folder the engine
// user can reach, unique loopback addresses and free ports, and the real client CLIs.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "database/engine/engine_common.h"
#include "temp_dir.h"

namespace concord::database::engine::testing {

// Why the engine tests cannot run here, or "" when they can.
inline std::string engine_skip_reason(const std::vector<std::string>& binaries) {
  if (::geteuid() != 0) return "needs root (engines run as the concord-db user)";
  if (!detail::lookup_os_user("concord-db")) {
    return "user concord-db missing (scripts/install-deps.sh creates it)";
  }
  for (const auto& b : binaries) {
    if (::access(b.c_str(), X_OK) != 0) return b + " missing (scripts/install-deps.sh --test)";
  }
  return "";
}

// A folder under /tmp the engine user can traverse into (mkdtemp makes it 0700 root).
class EngineTempDir {
 public:
  EngineTempDir() : dir_("concord-dbengine") { ::chmod(dir_.path().c_str(), 0755); }
  const std::string& path() const { return dir_.path(); }

 private:
  concord::testing::TempDir dir_;
};

// A loopback address in 127.77.200.0-127.77.249.255 no other test process holds: parallel
// test processes (ctest -j) never share one, so their engines never collide even on the
// standard ports. Each address is claimed with an flock on a file in /tmp that this process
// keeps open until it exits (the kernel drops the lock with the process, so a crashed test
// leaves nothing held); the search starts at a pid-derived address only to spread processes.
inline std::string unique_address() {
  static std::atomic<int> counter{0};
  constexpr int kSpan = 50 * 250;
  const int start = (::getpid() % 50) * 250;
  for (int tries = 0; tries < kSpan; ++tries) {
    const int n = (start + counter++) % kSpan;
    const std::string address =
        "127.77." + std::to_string(200 + n / 250) + "." + std::to_string(n % 250 + 2);
    const std::string lock = "/tmp/concord-test-address-" + address;
    int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return address;  // fd stays open: held
    ::close(fd);
  }
  return "127.77.200." + std::to_string(::getpid() % 250 + 2);  // all taken: as before
}

inline int free_port(const std::string& address) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, address.c_str(), &a.sin_addr);
  a.sin_port = 0;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

// A libpq conninfo value, quoted.
inline std::string conninfo_quote(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

// The real psql over TCP (TLS required) as `user` with `password`.
inline detail::CommandResult psql(const std::string& address, int port, const std::string& user,
                                  const std::string& password, const std::string& db,
                                  const std::string& sql) {
  std::string conninfo = "host=" + address + " port=" + std::to_string(port) +
                         " user=" + conninfo_quote(user) + " password=" + conninfo_quote(password) +
                         " dbname=" + conninfo_quote(db) + " sslmode=require connect_timeout=10";
  auto r = detail::run_command(
      {"/usr/bin/psql", conninfo, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tAc", sql});
  if (!r) {
    detail::CommandResult bad;
    bad.err = r.error().message();
    return bad;
  }
  return *r;
}

// The real mariadb client over TCP (TLS) as `user` with `password`.
inline detail::CommandResult mariadb_cli(const std::string& address, int port,
                                         const std::string& user, const std::string& password,
                                         const std::string& db, const std::string& sql) {
  std::vector<std::string> argv = {"/usr/bin/mariadb",
                                   "--no-defaults",
                                   "--protocol=TCP",
                                   "-h",
                                   address,
                                   "-P",
                                   std::to_string(port),
                                   "-u",
                                   user,
                                   "--password=" + password,
                                   "--ssl",
                                   "--batch",
                                   "--skip-column-names",
                                   "--connect-timeout=10"};
  if (!db.empty()) argv.push_back("--database=" + db);
  argv.push_back("-e");
  argv.push_back(sql);
  auto r = detail::run_command(argv);
  if (!r) {
    detail::CommandResult bad;
    bad.err = r.error().message();
    return bad;
  }
  return *r;
}

inline bool pid_gone_for(const std::string& needle) {
  auto r = detail::run_command({"pgrep", "-f", needle});
  return r && r->out.empty();
}

// What a killed agent leaves of a private MariaDB server (a restore's replay server, a copy's
// load server) in a staging `folder`: a process whose command line names <folder>/data, as
// the server's does, and its pid file <folder>/<name>.pid. A stand-in (a shell loop), started
// from a shell that exits at once, so it is nobody's child here. Its pid, 0 when it failed.
inline pid_t leave_private_server(const std::string& folder, const std::string& name) {
  if (::mkdir(folder.c_str(), 0700) != 0 && errno != EEXIST) return 0;
  const std::string pidfile = folder + "/" + name + ".pid";
  const std::string cmd = "bash -c '(exec bash -c \"while sleep 1; do :; done\" stand-in " +
                          folder + "/data </dev/null >/dev/null 2>&1 & echo $! > " + pidfile + ")'";
  if (std::system(cmd.c_str()) != 0) return 0;
  auto text = detail::read_file(pidfile);
  return text ? static_cast<pid_t>(std::atoi(text->c_str())) : 0;
}

}  // namespace concord::database::engine::testing
