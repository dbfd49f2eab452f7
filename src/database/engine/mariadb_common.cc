#include "database/engine/mariadb_common.h"

#include <signal.h>

#include <filesystem>
#include <thread>
#include <utility>

namespace concord::database::engine::detail {

using std::chrono::milliseconds;

std::string mdb_program(const std::string& bin_dir, const char* name, bool sbin) {
  if (!bin_dir.empty()) return bin_dir + "/" + name;
  return std::string(sbin ? "/usr/sbin/" : "/usr/bin/") + name;
}

std::string mdb_literal(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    switch (c) {
      case '\'': out += "''"; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\x1a': out += "\\Z"; break;
      default: out += c;
    }
  }
  return out + "'";
}

PrivateMariadb::PrivateMariadb(Options options)
    : options_(std::move(options)),
      sock_(options_.folder + "/" + options_.name + ".sock"),
      pidfile_(options_.folder + "/" + options_.name + ".pid"),
      log_(options_.folder + "/" + options_.name + ".log") {}

Status PrivateMariadb::start() {
  const std::string& folder = options_.folder;
  CONCORD_RETURN_IF_ERROR(make_dir(folder + "/tmp", 0700, options_.user));
  std::vector<std::string> argv = {mdb_program(options_.bin_dir, "mariadbd", true),
                                   "--no-defaults",
                                   "--datadir=" + folder + "/data",
                                   "--socket=" + sock_,
                                   "--pid-file=" + folder + "/" + options_.name + ".server.pid",
                                   "--skip-networking",
                                   "--tmpdir=" + folder + "/tmp"};
  argv.insert(argv.end(), options_.server_args.begin(), options_.server_args.end());
  argv.push_back("--log-error=" + log_);
  CONCORD_ASSIGN_OR_RETURN(pid_, spawn_detached(argv, options_.user, log_, {}));
  CONCORD_RETURN_IF_ERROR(write_file_atomic(pidfile_, std::to_string(pid_) + "\n"));
  const auto deadline = std::chrono::steady_clock::now() + options_.start_timeout;
  std::string last = "no socket yet";
  while (std::chrono::steady_clock::now() < deadline) {
    if (!process_alive(pid_)) {
      return fail(Code::kInternal, options_.what + " exited: " + file_tail(log_, 1500));
    }
    if (path_exists(sock_)) {
      auto r = sql("SELECT 1");
      if (r) return ok();
      last = r.error().message();
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  return fail(Code::kDeadlineExceeded, options_.what + " did not come up: " + last);
}

Result<std::string> PrivateMariadb::sql(const std::string& text) {
  CommandOptions o;
  o.timeout = options_.sql_timeout;
  o.stdin_data = text;
  std::vector<std::string> argv = {mdb_program(options_.bin_dir, "mariadb"),
                                   "--no-defaults",
                                   "--protocol=SOCKET",
                                   "--socket=" + sock_,
                                   "--user=root",
                                   "--batch"};
  if (options_.skip_column_names) argv.push_back("--skip-column-names");
  CONCORD_ASSIGN_OR_RETURN(CommandResult r, run_command(argv, o));
  // Nobody else uses a private server, so nothing transient stands behind a failure.
  if (!r.ok()) return fail(Code::kInternal, r.describe(options_.client_label));
  return r.out;
}

Status PrivateMariadb::stop() {
  if (pid_ <= 0) return ok();
  ::kill(pid_, SIGTERM);
  bool gone = wait_gone(pid_, milliseconds(120000)) || kill_hard(pid_, milliseconds(10000));
  pid_ = 0;
  if (!gone) return fail(Code::kInternal, options_.what + " survived SIGKILL");
  return ok();
}

void PrivateMariadb::reap(const std::string& folder, std::string_view name) {
  const std::string pidfile = folder + "/" + std::string(name) + ".pid";
  pid_t pid = live_pid_from(pidfile, folder + "/data");
  if (pid != 0) (void)kill_hard(pid, milliseconds(10000));
}

void PrivateMariadb::reap_all(const std::string& folder) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(folder, ec)) {
    const std::string file = entry.path().filename().string();
    // "<name>.pid" is ours; "<name>.server.pid" the server's own, found through ours.
    if (!file.ends_with(".pid") || file.ends_with(".server.pid")) continue;
    reap(folder, file.substr(0, file.size() - 4));
  }
}

}  // namespace concord::database::engine::detail
