#pragma once
// File, mount and process helpers shared by the drivers. All return Result; none throw.
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace concord::compute::driver {

// Ids become directory names, runc container ids and QEMU names: only [A-Za-z0-9_-], 1..64.
[[nodiscard]] Status validate_id(std::string_view id);

[[nodiscard]] Result<std::string> read_file(const std::string& path);
// Writes to path.tmp then renames: readers see the old or the new content, never a mix.
[[nodiscard]] Status write_file_atomic(const std::string& path, std::string_view content);
[[nodiscard]] Status make_dirs(const std::string& path);
[[nodiscard]] Status remove_tree(const std::string& path);
bool path_exists(const std::string& path);
// Names of the subdirectories of `dir` (not recursive); empty when dir does not exist.
std::vector<std::string> list_subdirs(const std::string& dir);
// The last max_bytes of a file.
[[nodiscard]] Result<std::string> read_tail(const std::string& path, size_t max_bytes);
// The instance ids a driver keeps under `dir`: its subdirectories, sorted, without the
// dot-named scratch ones (probe guests, half-written state).
std::vector<std::string> list_instance_ids(const std::string& dir);
// A console or process log for Driver::console_log: the tail, or "" while nothing was written.
[[nodiscard]] Result<std::string> read_log_tail(const std::string& path, size_t max_bytes);

// Hex SHA-256 of a file's content.
[[nodiscard]] Result<std::string> sha256_file(const std::string& path);
std::string sha256_hex(std::string_view data);

// Whether `path` is a mount point in this process's mount namespace (/proc/self/mountinfo).
bool is_mount_point(const std::string& path);

// A process identity that survives pid reuse: pid + start time (field 22 of /proc/pid/stat).
struct ProcessId {
  pid_t pid = 0;
  unsigned long long start_time = 0;
};
std::optional<unsigned long long> process_start_time(pid_t pid);
// Alive and not a zombie.
bool process_alive(pid_t pid);
bool process_matches(const ProcessId& id);
// /proc/pid/cmdline with NULs replaced by spaces; empty when the process is gone.
std::string process_cmdline(pid_t pid);
// The pid a pidfile names if that process is alive, else 0. Callers still check that the pid
// was not reused (process_cmdline), since only they know what their process looks like.
pid_t read_live_pid(const std::string& pidfile);
// Polls until `pid` is gone (true) or `limit` passed (false). The drivers wait for processes
// they did not fork themselves (daemonized), so waitpid() is not available to them.
bool wait_gone(pid_t pid, std::chrono::milliseconds limit, std::chrono::milliseconds poll);
// SIGKILL to `pid` (and first to its process group when `group`), then wait_gone(); false when it
// survived `limit`.
bool kill_and_wait(pid_t pid, bool group, std::chrono::milliseconds limit,
                   std::chrono::milliseconds poll);

// A long-running process started apart from the caller (a database engine, an inference
// replica): see spawn_detached.
struct DetachedSpawn {
  std::vector<std::string> argv;  // argv[0]: the program's absolute path
  // The whole environment; nullopt: the caller's.
  std::optional<std::vector<std::string>> env;
  std::string log_path;  // stdout and stderr, appended (created 0640)
  // Run as this user (uid, gid and supplementary groups resolved before the fork: NSS lookups
  // are not safe in the child of a multi-threaded process), who also owns the log file (an
  // engine may reopen it). nullopt: the caller's user.
  struct User {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;
  };
  std::optional<User> as;
  std::string cwd;                        // "": the caller's
  std::vector<std::string> cgroup_procs;  // cgroup.procs files joined before exec
};
// fork, fork again and setsid: the grandchild leads its own session and process group (a kill
// of the group reaches everything it starts) and is reparented to init, so nobody has to reap
// it and it outlives the caller. It joins the cgroups before exec (limits from its first
// instruction), with default signal dispositions and an empty mask, stdin from /dev/null and
// no inherited descriptors. Returns its pid once it has exec'd. Errors: kFailedPrecondition
// when exec, the user switch or the chdir failed (with errno's text); kInternal when the log
// cannot be opened or fork/pipe failed.
[[nodiscard]] Result<pid_t> spawn_detached(const DetachedSpawn& spawn);

}  // namespace concord::compute::driver
