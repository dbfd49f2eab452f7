#pragma once
// What the MariaDB engine's files (mariadb_engine.cc, mariadb_backup.cc,
// mariadb_replication.cc) share: where the programs are, SQL string literals, and the private
// server that works on a staged data folder before it becomes an instance's.
#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "database/engine/engine_common.h"

namespace concord::database::engine::detail {

// <bin_dir>/<name>, or the Debian location when bin_dir is empty (/usr/sbin for the server,
// /usr/bin for the tools).
std::string mdb_program(const std::string& bin_dir, const char* name, bool sbin = false);

// `value` as a string literal under the default sql_mode (backslash escapes on).
std::string mdb_literal(std::string_view value);

// A private mariadbd on <folder>/data, for work on a data folder that is not yet an
// instance's (replaying binlogs for a point-in-time restore, loading a replica's copy).
//
// Why a server of its own: the instance's server must not run on a half-made folder, and the
// work needs a server (binlog replay and dump loading are SQL). It reads no option file and
// listens on no network (--skip-networking), only on a socket inside the folder, where sql()
// connects as root; it runs as the engine user. Its files are <folder>/<name>.sock,
// <name>.log, <name>.server.pid (the server's own) and <name>.pid, written by us right after
// the spawn, so that reap() finds a server left by a killed agent even before the server wrote
// its own pidfile. stop() (and the destructor) shut it down cleanly: InnoDB flushed and the
// binlog state written, so the folder later starts without crash recovery.
class PrivateMariadb {
 public:
  struct Options {
    std::string folder;   // the staging folder; the server's data is <folder>/data
    std::string name;     // the file-name prefix in the folder ("replay", "load")
    std::string what;     // the server in messages ("the replay server")
    std::string bin_dir;  // empty: /usr/bin and /usr/sbin
    OsUser user;
    std::chrono::milliseconds start_timeout{60000};
    // mariadbd options after the common ones (memory, binary logging, ...).
    std::vector<std::string> server_args;
    // sql(): its timeout, whether batch output leaves out the header line, and the program
    // as its failures name it.
    std::chrono::milliseconds sql_timeout{10000};
    bool skip_column_names = false;
    std::string client_label = "mariadb";
  };

  explicit PrivateMariadb(Options options);
  ~PrivateMariadb() { (void)stop(); }
  PrivateMariadb(const PrivateMariadb&) = delete;
  PrivateMariadb& operator=(const PrivateMariadb&) = delete;

  // Spawns the server and waits until it answers SQL on its socket, up to start_timeout:
  // kDeadlineExceeded when it did not, kInternal (with its log's tail) when it exited.
  [[nodiscard]] Status start();
  // `text` through the mariadb client as root, in batch mode; kInternal when it fails.
  [[nodiscard]] Result<std::string> sql(const std::string& text);
  const std::string& sock() const { return sock_; }
  // SIGTERM, then SIGKILL when it has not exited within 120 s. Ok when not running.
  [[nodiscard]] Status stop();

  // Kills a server of this name left in `folder` by a killed agent.
  static void reap(const std::string& folder, std::string_view name);
  // Kills every server a killed agent left in `folder`, whatever its name (a staging folder
  // where a restore's replay server and a seed's load server both run).
  static void reap_all(const std::string& folder);

 private:
  Options options_;
  std::string sock_, pidfile_, log_;
  pid_t pid_ = 0;
};

}  // namespace concord::database::engine::detail
