#pragma once
// What both engines need from the host: running programs as the engine user, the detached
// engine launch, instance-folder files with the right owner, liveness of the engine process,
// cgroup v1 limits and the applied-revision record. Kept inside database/engine so the engines
// do not depend on the compute drivers (the dependency points the other way).
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "compute/driver/util.h"
#include "database/engine/engine.h"

namespace concord::database::engine::detail {

struct OsUser {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  // Supplementary groups, resolved before any fork: NSS lookups (initgroups) are not safe in
  // the child of a multi-threaded agent.
  std::vector<gid_t> groups;
};

// kFailedPrecondition when the user does not exist (scripts/install-deps.sh creates it).
[[nodiscard]] Result<OsUser> lookup_os_user(const std::string& name);

struct CommandOptions {
  std::optional<OsUser> as;  // setgid/initgroups/setuid in the child; else the caller's user
  std::chrono::milliseconds timeout{60000};
  std::string stdin_data;  // written to the child's stdin (then closed)
  std::string cwd = "/";
};

struct CommandResult {
  int exit_code = -1;
  int signal = 0;
  bool timed_out = false;
  std::string out;
  std::string err;
  bool ok() const { return !timed_out && signal == 0 && exit_code == 0; }
  std::string describe(std::string_view program) const;
};

// Runs argv (no shell), capturing output, bounded by options.timeout (the whole process group
// is killed on timeout). kFailedPrecondition when the program cannot be executed.
[[nodiscard]] Result<CommandResult> run_command(const std::vector<std::string>& argv,
                                                const CommandOptions& options = {});
// run_command, then any failure (exit, signal, timeout) as an error with the stderr tail.
[[nodiscard]] Result<CommandResult> run_checked(const std::vector<std::string>& argv,
                                                const CommandOptions& options = {},
                                                Code failure_code = Code::kInternal);

// Double fork + setsid (reparented to init: outlives the agent, nobody reaps it), joins the
// cgroups (cgroup.procs files), drops to `as`, stdout/stderr appended to log_path, exec.
// Returns the engine's pid once exec succeeded.
[[nodiscard]] Result<pid_t> spawn_detached(const std::vector<std::string>& argv, const OsUser& as,
                                           const std::string& log_path,
                                           const std::vector<std::string>& cgroup_procs);

// The drivers' host helpers (compute/driver/util.h), not copies of them.
using compute::driver::path_exists;
using compute::driver::process_alive;
using compute::driver::process_cmdline;
using compute::driver::read_file;
using compute::driver::remove_tree;

// temp + rename, with the mode (and owner when given) set before the rename.
[[nodiscard]] Status write_file_atomic(const std::string& path, std::string_view content,
                                       mode_t mode = 0644,
                                       const std::optional<OsUser>& owner = std::nullopt);
// mkdir -p, then the last component gets mode and owner.
[[nodiscard]] Status make_dir(const std::string& path, mode_t mode,
                              const std::optional<OsUser>& owner = std::nullopt);
[[nodiscard]] Status chown_tree(const std::string& path, const OsUser& owner);
// An engine's destroy: removes the instance folder, or only what it holds when the folder is a
// mount point (the instance's own volume, which the driver unmounts and removes after).
[[nodiscard]] Status remove_instance_folder(const std::string& dir);
// Bytes the regular files under `paths` take on disk, a file with several links once (a WAL
// segment archived by a hard link is in pg_wal/ and wal_archive/ at once).
int64_t disk_usage(const std::vector<std::string>& paths);
std::string file_tail(const std::string& path, size_t max_bytes);

// The first line of a pidfile as a pid when that process is alive and its command line
// contains `must_contain` (pids are reused), else 0.
pid_t live_pid_from(const std::string& pidfile, std::string_view must_contain);
// Polls every 20 ms (compute::driver::wait_gone).
bool wait_gone(pid_t pid, std::chrono::milliseconds limit);
// SIGKILL to the process group and the pid, then waits; false when it survived.
bool kill_hard(pid_t pid, std::chrono::milliseconds limit);

// An engine killed with -9 leaves its children behind for a moment, in its process group (the
// pid in `pidfile`, which the launch made lead it). Once that pid is gone nothing else can lead
// the group, so whatever is still in it is the engine's and is killed.
void reap_stale_group(const std::string& pidfile);

// The start-up wait of every engine's start(). `launch` spawns the engine (after
// reap_stale_group) and returns its pid; `probe` is ok once the engine answers its admin
// connection. Launches when `pid` is 0, then probes every `poll` until `timeout` passes.
//
// An engine that exits during start-up is launched again, since a killed predecessor's shared
// memory or lock may be held a moment longer; but only `max_exits` times, so an engine that
// keeps exiting for a cause of its own (its address taken, a full volume, a corrupt folder)
// fails the start in seconds instead of at the deadline, with its own last words (what its last
// launch wrote to `log_path`, up to 1500 bytes) in the error rather than the refused connection
// that followed them.
struct EngineStart {
  std::string what;      // "postgresql <id>", for messages
  std::string log_path;  // the engine's stdout/stderr
  std::function<Result<pid_t>()> launch;
  std::function<Status()> probe;
  std::chrono::milliseconds timeout{60000};
  std::chrono::milliseconds poll{15};
  int max_exits = 10;
};
[[nodiscard]] Status wait_started(pid_t pid, const EngineStart& start);

// cgroup v1 cpu + memory groups <root>/{cpu,memory}/<parent>/<id>. Returns the cgroup.procs
// files to join, and in `why_not` the reason when limits cannot be applied (best effort).
std::vector<std::string> apply_limits(const EngineOptions& options, const InstanceConfig& config,
                                      std::string* why_not);
void remove_cgroups(const EngineOptions& options, std::string_view id);
// Removes the empty groups under <root>/{cpu,memory}/<parent>/ that no instance in `keep`
// names and that were made at least `min_age` ago; returns how many went. Only destroy()
// removes an instance's groups, so an agent killed for good, or an instance folder deleted by
// hand, leaves them behind (found: 321 on a test machine). A group of another agent's
// instance on the same host goes too when it is empty and old: its next start makes it again.
// A group with processes in it cannot be removed (EBUSY) and stays.
int sweep_cgroups(const EngineOptions& options, const std::set<std::string>& keep,
                  std::chrono::seconds min_age);

// Instance ids name folders and cgroups: [A-Za-z0-9_-], 1..64.
[[nodiscard]] Status validate_config(const InstanceConfig& config);

// A self-signed certificate for the instance's address in <tls_dir>/server.{crt,key} (EC P-256,
// key 0600, both owned by `owner`), made once: present files are kept.
[[nodiscard]] Status ensure_tls(const std::string& tls_dir, const InstanceConfig& config,
                                const OsUser& owner);

// Makes `dest` (which must not exist) a copy of the per-host template data folder
// <template_root>/<key>, building the template first when absent.
//
// Why: bootstrapping an engine's system catalog (initdb, mariadb-install-db) costs seconds and
// gives the same bytes for every instance of one engine, version and engine user; a copy
// costs tens of milliseconds (a reflink where the file system has them). The per-instance
// parts (configuration, certificate, users) are written after the copy.
//
// `build(data, scratch)` must create the folder `data` complete (it does not exist yet);
// `scratch` is an empty folder owned by `owner` for temporary files. The template is built
// under an exclusive flock on <template_root>/<key>.lock (agents and threads on one host build
// it once), in <key>.build and renamed into place only when complete; the copy goes to
// dest + ".clone" and is renamed to `dest`. So an agent killed at any point leaves either
// nothing or a complete folder behind, and the leftovers are removed by the next call.
//
// With `spare`, a complete copy kept in <key>.spare/data (owned by `owner`) is claimed by
// renaming it to `dest` when there is one, and a detached `cp` (as `owner`, under a flock, so
// one at a time; made in <key>.spare/tmp and renamed when complete) makes the next one.
[[nodiscard]] Status clone_from_template(
    const std::string& template_root, const std::string& key, const OsUser& owner,
    const std::function<Status(const std::string& data, const std::string& scratch)>& build,
    const std::string& dest, bool spare = false);
// EngineOptions.template_dir, or "<parent of instance_dir>/.templates" when empty.
std::string template_root(const EngineOptions& options, const std::string& instance_dir);

int64_t read_applied_revision(const std::string& dir);
[[nodiscard]] Status write_applied_revision(const std::string& dir, int64_t revision);
// Health::fenced_revision, kept in <dir>/fenced_revision (0 when absent or unreadable).
int64_t read_fenced_revision(const std::string& dir);
[[nodiscard]] Status write_fenced_revision(const std::string& dir, int64_t revision);

// The databases and accounts Concord made in an instance's engine from the desired state
// ("name" for PostgreSQL roles, "name@host" for MariaDB accounts, "root" / "root@%" while root is
// enabled), recorded after each apply (<dir>/managed_names.json) so that the next apply drops
// only what the API removed: a database or account the tenant made itself (as root, over SQL)
// is never touched. Empty when nothing was recorded yet (nothing is dropped then).
struct ManagedNames {
  std::set<std::string> databases;
  std::set<std::string> accounts;
};
ManagedNames read_managed_names(const std::string& dir);
[[nodiscard]] Status write_managed_names(const std::string& dir, const ManagedNames& names);

// Whether a single name is usable as an engine identifier at all: non-empty, at most
// `max_bytes`, no NUL. The engines add their own reserved names.
[[nodiscard]] Status check_identifier(std::string_view what, std::string_view name,
                                      size_t max_bytes);

}  // namespace concord::database::engine::detail
