#include "database/engine/engine_common.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/json.h"
#include "base/log.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace concord::database::engine::detail {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxCapture = 1 << 20;

std::string errno_text(int e) {
  return std::strerror(e);
}

// In the forked child only: async-signal-safe steps to become `as`.
bool drop_to(const OsUser& as) {
  if (::getuid() == 0 && ::setgroups(as.groups.size(), as.groups.data()) != 0) return false;
  if (::setgid(as.gid) != 0) return false;
  if (::setuid(as.uid) != 0) return false;
  return ::getuid() == as.uid;
}

void reset_signals() {
  sigset_t all;
  sigemptyset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
  }
}

std::vector<std::string> child_env(const std::optional<OsUser>& as) {
  // A clean, predictable environment: engines read PG*/MYSQL* variables, which must not leak
  // in from the agent's environment.
  std::vector<std::string> env = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
      "LC_ALL=C.UTF-8"};
  if (as) {
    env.push_back("USER=" + as->name);
    env.push_back("LOGNAME=" + as->name);
    env.push_back("HOME=/nonexistent");
  } else if (const char* home = ::getenv("HOME")) {
    env.push_back(std::string("HOME=") + home);
  }
  if (const char* tz = ::getenv("TZ")) env.push_back(std::string("TZ=") + tz);
  return env;
}

std::vector<char*> c_array(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

std::string CommandResult::describe(std::string_view program) const {
  std::string tail = err.empty() ? out : err;
  if (tail.size() > 2000) tail = tail.substr(tail.size() - 2000);
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
  if (timed_out) return fmt::format("{} timed out: {}", program, tail);
  if (signal != 0) return fmt::format("{} killed by signal {}: {}", program, signal, tail);
  return fmt::format("{} exited with status {}: {}", program, exit_code, tail);
}

Result<OsUser> lookup_os_user(const std::string& name) {
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::vector<char> buf(16384);
  int rc = ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
  if (rc != 0 || found == nullptr) {
    return fail(Code::kFailedPrecondition,
                fmt::format("database engine user '{}' does not exist on this host (created by "
                            "scripts/install-deps.sh)",
                            name));
  }
  OsUser user{name, pw.pw_uid, pw.pw_gid, {}};
  int n = 32;
  user.groups.resize(static_cast<size_t>(n));
  if (::getgrouplist(name.c_str(), pw.pw_gid, user.groups.data(), &n) < 0) {
    user.groups.resize(static_cast<size_t>(n));
    if (::getgrouplist(name.c_str(), pw.pw_gid, user.groups.data(), &n) < 0) n = 0;
  }
  user.groups.resize(static_cast<size_t>(std::max(n, 0)));
  if (user.groups.empty()) user.groups.push_back(pw.pw_gid);
  return user;
}

namespace {

// A child that exits before reading all of its stdin (a client that could not connect) makes
// the write fail with EPIPE and raise SIGPIPE, whose default action ends the whole process:
// the agent died that way, silently, while an engine it was talking to restarted. The signal
// is blocked in this thread for the write and one it raised is consumed before unblocking.
ssize_t write_without_sigpipe(int fd, const char* data, size_t size) {
  sigset_t pipe_only, old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  const ssize_t w = ::write(fd, data, size);
  const int saved = errno;
  if (w < 0 && saved == EPIPE) {
    const timespec none{0, 0};
    while (::sigtimedwait(&pipe_only, nullptr, &none) < 0 && errno == EINTR) {
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = saved;
  return w;
}

}  // namespace

Result<CommandResult> run_command(const std::vector<std::string>& argv_in,
                                  const CommandOptions& options) {
  if (argv_in.empty()) return fail(Code::kInternal, "run_command: empty argv");
  std::vector<std::string> argv = argv_in;
  std::vector<char*> cargv = c_array(argv);
  std::vector<std::string> env = child_env(options.as);
  std::vector<char*> cenv = c_array(env);
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, report[2] = {-1, -1};
  auto close_pipes = [&] {
    for (int* p : {in, out, err, report}) {
      for (int i = 0; i < 2; ++i) {
        if (p[i] >= 0) ::close(p[i]);
      }
    }
  };
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0 ||
      ::pipe2(report, O_CLOEXEC) != 0) {
    int e = errno;
    close_pipes();
    return fail(Code::kInternal, "pipe2: " + errno_text(e));
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    close_pipes();
    return fail(Code::kInternal, "fork: " + errno_text(e));
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    reset_signals();
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    int e = 0;
    if (options.as && !drop_to(*options.as)) e = errno == 0 ? EPERM : errno;
    if (e == 0 && ::chdir(options.cwd.c_str()) != 0) e = errno;
    if (e == 0) {
      ::execvpe(cargv[0], cargv.data(), cenv.data());
      e = errno;
    }
    (void)!::write(report[1], &e, sizeof e);
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  ::close(report[1]);
  int exec_errno = 0;
  ssize_t got;
  do {
    got = ::read(report[0], &exec_errno, sizeof exec_errno);
  } while (got < 0 && errno == EINTR);
  ::close(report[0]);
  if (got == static_cast<ssize_t>(sizeof exec_errno)) {
    ::close(in[1]);
    ::close(out[0]);
    ::close(err[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return fail(Code::kFailedPrecondition,
                fmt::format("cannot execute '{}': {}", argv[0], errno_text(exec_errno)));
  }
  CommandResult result;
  // stdin is fed from the poll loop so a child that writes a lot before reading cannot
  // deadlock against us.
  size_t in_off = 0;
  int in_fd = in[1];
  if (options.stdin_data.empty()) {
    ::close(in_fd);
    in_fd = -1;
  } else {
    ::fcntl(in_fd, F_SETFL, O_NONBLOCK);
  }
  const auto deadline = Clock::now() + options.timeout;
  int open_fds = 2;
  bool out_open = true, err_open = true;
  char buf[65536];
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      result.timed_out = true;
      break;
    }
    pollfd fds[3];
    int n = 0;
    if (out_open) fds[n++] = {out[0], POLLIN, 0};
    if (err_open) fds[n++] = {err[0], POLLIN, 0};
    if (in_fd >= 0) fds[n++] = {in_fd, POLLOUT, 0};
    int rc = ::poll(fds, static_cast<nfds_t>(n), static_cast<int>(std::min<long>(left, 1000)));
    if (rc < 0 && errno != EINTR) break;
    for (int i = 0; i < n && rc > 0; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in_fd) {
        ssize_t w = write_without_sigpipe(in_fd, options.stdin_data.data() + in_off,
                                          options.stdin_data.size() - in_off);
        if (w > 0) in_off += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN && errno != EINTR) in_off = options.stdin_data.size();
        if (in_off >= options.stdin_data.size()) {
          ::close(in_fd);
          in_fd = -1;
        }
        continue;
      }
      ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
      if (r > 0) {
        std::string& dst = fds[i].fd == out[0] ? result.out : result.err;
        dst.append(buf, static_cast<size_t>(r));
        if (dst.size() > kMaxCapture) dst.erase(0, dst.size() - kMaxCapture);
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        if (fds[i].fd == out[0]) out_open = false;
        if (fds[i].fd == err[0]) err_open = false;
        --open_fds;
      }
    }
  }
  if (in_fd >= 0) ::close(in_fd);
  ::close(out[0]);
  ::close(err[0]);
  if (result.timed_out) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  while (true) {
    pid_t w = ::waitpid(pid, &status, result.timed_out ? 0 : WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) break;
    if (w == 0) {
      // Output closed but the child is still running (it closed its stdio): bounded wait.
      if (Clock::now() > deadline) {
        result.timed_out = true;
        ::kill(-pid, SIGKILL);
        ::kill(pid, SIGKILL);
      } else {
        std::this_thread::sleep_for(milliseconds(5));
      }
    }
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

Result<CommandResult> run_checked(const std::vector<std::string>& argv,
                                  const CommandOptions& options, Code failure_code) {
  CONCORD_ASSIGN_OR_RETURN(CommandResult r, run_command(argv, options));
  if (r.timed_out) return fail(Code::kDeadlineExceeded, r.describe(argv[0]));
  if (!r.ok()) return fail(failure_code, r.describe(argv[0]));
  return r;
}

Result<pid_t> spawn_detached(const std::vector<std::string>& argv, const OsUser& as,
                             const std::string& log_path,
                             const std::vector<std::string>& cgroup_procs) {
  compute::driver::DetachedSpawn spawn;
  spawn.argv = argv;
  spawn.env = child_env(as);
  spawn.log_path = log_path;
  spawn.as = compute::driver::DetachedSpawn::User{as.uid, as.gid, as.groups};
  spawn.cwd = "/";
  spawn.cgroup_procs = cgroup_procs;
  auto pid = compute::driver::spawn_detached(spawn);
  if (!pid && pid.error().code() == Code::kFailedPrecondition) {
    return fail(Code::kFailedPrecondition, as.name + ": " + pid.error().message());
  }
  return pid;
}

Status write_file_atomic(const std::string& path, std::string_view content, mode_t mode,
                         const std::optional<OsUser>& owner) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail(Code::kInternal, fmt::format("open {}: {}", tmp, errno_text(errno)));
  bool good = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  good = good && ::fchmod(fd, mode) == 0;
  if (good && owner) good = ::fchown(fd, owner->uid, owner->gid) == 0;
  good = good && ::fsync(fd) == 0;
  int e = errno;
  ::close(fd);
  if (!good || ::rename(tmp.c_str(), path.c_str()) != 0) {
    if (good) e = errno;
    ::unlink(tmp.c_str());
    return fail(Code::kInternal, fmt::format("writing {}: {}", path, errno_text(e)));
  }
  return ok();
}

Status make_dir(const std::string& path, mode_t mode, const std::optional<OsUser>& owner) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return fail(Code::kInternal, fmt::format("mkdir {}: {}", path, ec.message()));
  if (::chmod(path.c_str(), mode) != 0) {
    return fail(Code::kInternal, fmt::format("chmod {}: {}", path, errno_text(errno)));
  }
  if (owner && ::chown(path.c_str(), owner->uid, owner->gid) != 0) {
    return fail(Code::kInternal, fmt::format("chown {}: {}", path, errno_text(errno)));
  }
  return ok();
}

Status chown_tree(const std::string& path, const OsUser& owner) {
  std::error_code ec;
  if (::lchown(path.c_str(), owner.uid, owner.gid) != 0) {
    return fail(Code::kInternal, fmt::format("chown {}: {}", path, errno_text(errno)));
  }
  if (!std::filesystem::is_directory(path, ec)) return ok();
  for (auto it = std::filesystem::recursive_directory_iterator(path, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (::lchown(it->path().c_str(), owner.uid, owner.gid) != 0) {
      return fail(Code::kInternal,
                  fmt::format("chown {}: {}", it->path().string(), errno_text(errno)));
    }
  }
  if (ec) return fail(Code::kInternal, fmt::format("walking {}: {}", path, ec.message()));
  return ok();
}

int64_t disk_usage(const std::vector<std::string>& paths) {
  int64_t total = 0;
  std::set<std::pair<dev_t, ino_t>> linked;  // files with more than one name, seen so far
  for (const std::string& path : paths) {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(
             path, std::filesystem::directory_options::skip_permission_denied, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      struct stat st {};
      if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      if (st.st_nlink > 1 && !linked.emplace(st.st_dev, st.st_ino).second) continue;
      total += static_cast<int64_t>(st.st_blocks) * 512;
    }
  }
  return total;
}

std::string file_tail(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  auto size = static_cast<size_t>(in.tellg());
  size_t start = size > max_bytes ? size - max_bytes : 0;
  in.seekg(static_cast<std::streamoff>(start));
  std::string out(size - start, '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

pid_t live_pid_from(const std::string& pidfile, std::string_view must_contain) {
  auto text = read_file(pidfile);
  if (!text) return 0;
  std::string first = text->substr(0, text->find('\n'));
  while (!first.empty() && (first.back() == ' ' || first.back() == '\r')) first.pop_back();
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(first.data(), first.data() + first.size(), pid);
  if (ec != std::errc() || end != first.data() + first.size() || pid <= 1) return 0;
  if (!process_alive(pid)) return 0;
  if (process_cmdline(pid).find(must_contain) == std::string::npos) return 0;
  return pid;
}

bool wait_gone(pid_t pid, milliseconds limit) {
  return compute::driver::wait_gone(pid, limit, milliseconds(20));
}

bool kill_hard(pid_t pid, milliseconds limit) {
  return compute::driver::kill_and_wait(pid, ::getpgid(pid) == pid, limit, milliseconds(20));
}

void reap_stale_group(const std::string& pidfile) {
  auto text = read_file(pidfile);
  if (!text) return;
  const pid_t old = std::atoi(text->c_str());
  if (old > 1 && !process_alive(old)) ::kill(-old, SIGKILL);
}

namespace {
uintmax_t size_or_zero(const std::string& path) {
  std::error_code ec;
  const uintmax_t n = std::filesystem::file_size(path, ec);
  return ec ? 0 : n;
}

// What the engine wrote to its log since `from` (its launch), at most the last `max_bytes` and
// then from the first whole line.
std::string written_since(const std::string& path, uintmax_t from, size_t max_bytes) {
  const uintmax_t size = size_or_zero(path);
  if (size <= from) return "(nothing in its log)";
  const uintmax_t wrote = size - from;
  std::string text = file_tail(path, static_cast<size_t>(std::min<uintmax_t>(wrote, max_bytes)));
  if (wrote > max_bytes) {
    if (size_t nl = text.find('\n'); nl != std::string::npos) text.erase(0, nl + 1);
  }
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}
}  // namespace

Status wait_started(pid_t pid, const EngineStart& start) {
  const auto deadline = Clock::now() + start.timeout;
  std::string last_error = "not started";
  int exits = 0;
  uintmax_t log_at_launch = 0;  // an engine running already: its words are anywhere in the log
  while (Clock::now() < deadline) {
    if (pid == 0) {
      log_at_launch = size_or_zero(start.log_path);
      CONCORD_ASSIGN_OR_RETURN(pid, start.launch());
    }
    if (!process_alive(pid)) {
      ++exits;
      last_error =
          fmt::format("it exited during start-up ({} time{}): {}", exits, exits == 1 ? "" : "s",
                      written_since(start.log_path, log_at_launch, 1500));
      if (exits >= start.max_exits) {
        return fail(Code::kFailedPrecondition,
                    fmt::format("{} did not start: {}", start.what, last_error));
      }
      pid = 0;
      std::this_thread::sleep_for(milliseconds(200));
      continue;
    }
    Status answered = start.probe();
    if (answered) return ok();
    // A refusal after an exit says less than the exit did: the exit stays the reason given.
    if (exits == 0) last_error = answered.error().message();
    // Short: this wait is on every create's critical path, and an attempt costs little (a
    // refused connect; for MariaDB a client run only once the socket exists).
    std::this_thread::sleep_for(start.poll);
  }
  return fail(Code::kDeadlineExceeded,
              fmt::format("{} did not accept admin connections within {} ms: {}", start.what,
                          start.timeout.count(), last_error));
}

namespace {
// <root>/<controller>/<parent>: where every engine's group of that controller lives.
std::string cgroup_parent_dir(const EngineOptions& options, std::string_view controller) {
  return fmt::format("{}/{}/{}", options.cgroup_root, controller, options.cgroup_parent);
}
std::string cgroup_dir(const EngineOptions& options, std::string_view controller,
                       std::string_view id) {
  return fmt::format("{}/{}", cgroup_parent_dir(options, controller), id);
}
}  // namespace

std::vector<std::string> apply_limits(const EngineOptions& options, const InstanceConfig& config,
                                      std::string* why_not) {
  const int64_t period_us = 100000;
  const std::string cpu = cgroup_dir(options, "cpu", config.id);
  const std::string mem = cgroup_dir(options, "memory", config.id);
  auto put = [](const std::string& file, const std::string& value) -> std::string {
    int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return fmt::format("{}: {}", file, errno_text(errno));
    bool good = ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
    int e = errno;
    ::close(fd);
    return good ? std::string() : fmt::format("{}: {}", file, errno_text(e));
  };
  std::string why;
  std::error_code ec;
  for (const std::string& d : {cpu, mem}) {
    std::filesystem::create_directories(d, ec);
    if (ec && why.empty()) why = fmt::format("cgroup {}: {}", d, ec.message());
  }
  if (why.empty()) why = put(cpu + "/cpu.cfs_period_us", std::to_string(period_us));
  if (why.empty()) why = put(cpu + "/cpu.cfs_quota_us", std::to_string(period_us * config.vcpus));
  if (why.empty()) {
    why = put(mem + "/memory.limit_in_bytes", std::to_string(config.ram_mb * (int64_t{1} << 20)));
  }
  if (why_not) *why_not = why;
  if (!why.empty()) return {};
  return {cpu + "/cgroup.procs", mem + "/cgroup.procs"};
}

void remove_cgroups(const EngineOptions& options, std::string_view id) {
  for (const char* controller : {"cpu", "memory"}) {
    std::string d = cgroup_dir(options, controller, id);
    // A killed engine leaves its group only once init has reaped all its processes, which
    // init here does every couple of seconds.
    auto deadline = Clock::now() + milliseconds(15000);
    while (path_exists(d) && ::rmdir(d.c_str()) != 0 && errno == EBUSY && Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(50));
    }
    if (path_exists(d) && ::rmdir(d.c_str()) != 0) {
      logger("database.engine")
          ->warn("database instance {}: cannot remove cgroup {}: {}", id, d, errno_text(errno));
    }
  }
}

int sweep_cgroups(const EngineOptions& options, const std::set<std::string>& keep,
                  std::chrono::seconds min_age) {
  int removed = 0;
  const auto now = std::filesystem::file_time_type::clock::now();
  for (const char* controller : {"cpu", "memory"}) {
    std::error_code ec;
    for (const auto& entry :
         std::filesystem::directory_iterator(cgroup_parent_dir(options, controller), ec)) {
      std::error_code e;
      if (!entry.is_directory(e) || keep.contains(entry.path().filename().string())) continue;
      const auto made = std::filesystem::last_write_time(entry.path(), e);
      if (e || now - made < min_age) continue;  // maybe an instance starting right now
      if (::rmdir(entry.path().c_str()) == 0) ++removed;
    }
  }
  return removed;
}

Status validate_config(const InstanceConfig& config) {
  if (config.id.empty() || config.id.size() > 64) {
    return fail(Code::kInvalidArgument,
                fmt::format("database instance id must be 1..64 characters, got '{}'", config.id));
  }
  for (char c : config.id) {
    bool good = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_';
    if (!good) {
      return fail(Code::kInvalidArgument,
                  fmt::format("database instance id '{}' may hold only [A-Za-z0-9_-]", config.id));
    }
  }
  if (config.dir.empty() || config.dir[0] != '/') {
    return fail(
        Code::kInvalidArgument,
        fmt::format("database instance folder must be an absolute path, got '{}'", config.dir));
  }
  if (config.port < 1 || config.port > 65535) {
    return fail(Code::kInvalidArgument,
                fmt::format("database instance port must be in 1..65535, got {}", config.port));
  }
  if (config.address.empty() ||
      config.address.find_first_not_of("0123456789.") != std::string::npos) {
    return fail(
        Code::kInvalidArgument,
        fmt::format("database instance address must be an IPv4 address, got '{}'", config.address));
  }
  if (config.vcpus < 1 || config.ram_mb < 64) {
    return fail(Code::kInvalidArgument,
                fmt::format("database instance flavor too small: vcpus={} ram_mb={} (at least 1 "
                            "and 64)",
                            config.vcpus, config.ram_mb));
  }
  return ok();
}

Status ensure_tls(const std::string& tls_dir, const InstanceConfig& config, const OsUser& owner) {
  const std::string crt = tls_dir + "/server.crt", key = tls_dir + "/server.key";
  if (path_exists(crt) && path_exists(key)) return ok();
  CONCORD_RETURN_IF_ERROR(make_dir(tls_dir, 0700, owner));
  const std::string key_tmp = key + ".new", crt_tmp = crt + ".new";
  auto r = run_checked({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key_tmp, "-out",
                        crt_tmp, "-days", "3650", "-subj", fmt::format("/CN={}", config.address),
                        "-addext", fmt::format("subjectAltName=IP:{}", config.address)},
                       {}, Code::kFailedPrecondition);
  if (!r) {
    return fail(r.error().code(), fmt::format("TLS certificate for database instance {}: {}",
                                              config.id, r.error().message()));
  }
  for (const auto& f : {key_tmp, crt_tmp}) {
    if (::chown(f.c_str(), owner.uid, owner.gid) != 0 || ::chmod(f.c_str(), 0600) != 0) {
      return fail(Code::kInternal, fmt::format("chown/chmod {}: {}", f, errno_text(errno)));
    }
  }
  // The key first: a certificate present means both are.
  if (::rename(key_tmp.c_str(), key.c_str()) != 0 || ::rename(crt_tmp.c_str(), crt.c_str()) != 0) {
    return fail(Code::kInternal,
                fmt::format("installing TLS files in {}: {}", tls_dir, errno_text(errno)));
  }
  return ok();
}

namespace {

// Starts the detached copy that makes the next spare; best effort (a create without a spare
// only copies on its own critical path). flock -n: while one refill runs, others are not
// needed. The copy runs as the engine user (the spare folder and the template are its own), is
// made in tmp and renamed, so a refill killed half-way leaves only tmp, which the next one
// removes while holding the lock.
void refill_spare(const std::string& tpl, const std::string& spares, const OsUser& owner) {
  auto log = logger("database.engine");
  if (auto st = make_dir(spares, 0700, owner); !st) {
    log->warn("no spare copy of {}: {}", tpl, st.error().message());
    return;
  }
  const std::string script =
      "[ -e \"$3\" ] && exit 0; rm -rf -- \"$2\" && cp -a --reflink=auto -- \"$1\" \"$2\" && "
      "mv -T -- \"$2\" \"$3\"";
  auto pid = spawn_detached({"/usr/bin/flock", "-n", spares + "/lock", "/bin/sh", "-c", script,
                             "sh", tpl, spares + "/tmp", spares + "/data"},
                            owner, spares + "/refill.log", {});
  if (!pid) log->warn("no spare copy of {}: {}", tpl, pid.error().message());
}

}  // namespace

Status remove_instance_folder(const std::string& dir) {
  if (!compute::driver::is_mount_point(dir)) return remove_tree(dir);
  std::error_code ec;
  std::vector<std::string> entries;  // listed first: not removed under the iterator
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    entries.push_back(entry.path().string());
  }
  if (ec) return fail(Code::kInternal, fmt::format("listing {}: {}", dir, ec.message()));
  for (const std::string& entry : entries) CONCORD_RETURN_IF_ERROR(remove_tree(entry));
  return ok();
}

std::string template_root(const EngineOptions& options, const std::string& instance_dir) {
  if (!options.template_dir.empty()) return options.template_dir;
  return std::filesystem::path(instance_dir).lexically_normal().parent_path().string() +
         "/.templates";
}

Status clone_from_template(
    const std::string& root, const std::string& key, const OsUser& owner,
    const std::function<Status(const std::string& data, const std::string& scratch)>& build,
    const std::string& dest, bool spare) {
  const std::string tpl = root + "/" + key;
  // Root's: the engine user never writes here; it only reads its templates through cp.
  CONCORD_RETURN_IF_ERROR(make_dir(root, 0711));
  if (!path_exists(tpl)) {
    const std::string lock_path = tpl + ".lock";
    int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      return fail(Code::kInternal, fmt::format("open {}: {}", lock_path, errno_text(errno)));
    }
    // Held until close, also across the build: a second creator waits for the first template
    // instead of building its own. The kernel drops it when the agent dies.
    while (::flock(fd, LOCK_EX) != 0) {
      if (errno != EINTR) {
        int e = errno;
        ::close(fd);
        return fail(Code::kInternal, fmt::format("flock {}: {}", lock_path, errno_text(e)));
      }
    }
    Status built = ok();
    if (!path_exists(tpl)) {  // someone else may have built it while we waited
      const std::string work = tpl + ".build";
      built = [&]() -> Status {
        // Whatever a killed builder left is redone from scratch.
        CONCORD_RETURN_IF_ERROR(remove_tree(work));
        CONCORD_RETURN_IF_ERROR(make_dir(work, 0700, owner));
        CONCORD_RETURN_IF_ERROR(make_dir(work + "/scratch", 0700, owner));
        CONCORD_RETURN_IF_ERROR(build(work + "/data", work + "/scratch"));
        if (::rename((work + "/data").c_str(), tpl.c_str()) != 0) {
          return fail(Code::kInternal,
                      fmt::format("rename {}/data to {}: {}", work, tpl, errno_text(errno)));
        }
        return remove_tree(work);
      }();
    }
    ::close(fd);
    if (!built) return built;
  }
  const std::string spares = tpl + ".spare";
  if (spare) {
    if (::rename((spares + "/data").c_str(), dest.c_str()) == 0) {
      refill_spare(tpl, spares, owner);
      return ok();
    }
    // ENOENT: none ready (the first create, or creates faster than the refill); EXDEV: the
    // instance folder is on another file system, where a spare can never be claimed.
    if (errno == EXDEV) spare = false;
  }
  const std::string clone = dest + ".clone";
  CONCORD_RETURN_IF_ERROR(remove_tree(clone));
  // cp -a keeps owner, modes and sparse files; --reflink=auto shares the blocks where the file
  // system can (btrfs, XFS) and copies them elsewhere.
  CommandOptions copy_options;
  copy_options.timeout = milliseconds(120000);
  auto r =
      run_checked({"cp", "-a", "--reflink=auto", "--", tpl, clone}, copy_options, Code::kInternal);
  if (!r) {
    (void)remove_tree(clone);
    return fail(r.error().code(),
                fmt::format("copying the template {} to {}: {}", tpl, clone, r.error().message()));
  }
  if (::rename(clone.c_str(), dest.c_str()) != 0) {
    return fail(Code::kInternal,
                fmt::format("rename {} to {}: {}", clone, dest, errno_text(errno)));
  }
  if (spare) refill_spare(tpl, spares, owner);
  return ok();
}

namespace {

// A revision file's number (written by write_file_atomic: whole or absent); 0 when absent or
// not a number.
int64_t read_revision_file(const std::string& path) {
  auto text = read_file(path);
  if (!text) return 0;
  std::string t = *text;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  int64_t v = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || end != t.data() + t.size()) return 0;
  return v;
}

}  // namespace

int64_t read_applied_revision(const std::string& dir) {
  return read_revision_file(dir + "/applied_revision");
}

Status write_applied_revision(const std::string& dir, int64_t revision) {
  return write_file_atomic(dir + "/applied_revision", std::to_string(revision) + "\n", 0644);
}

int64_t read_fenced_revision(const std::string& dir) {
  return read_revision_file(dir + "/fenced_revision");
}

Status write_fenced_revision(const std::string& dir, int64_t revision) {
  return write_file_atomic(dir + "/fenced_revision", std::to_string(revision) + "\n", 0644);
}

ManagedNames read_managed_names(const std::string& dir) {
  ManagedNames out;
  auto text = read_file(dir + "/managed_names.json");
  if (!text) return out;
  auto j = parse_json(*text);
  if (!j || !j->is_object()) return out;
  for (auto [key, into] :
       {std::pair{"databases", &out.databases}, std::pair{"accounts", &out.accounts}}) {
    auto it = j->find(key);
    if (it == j->end() || !it->is_array()) continue;
    for (const Json& v : *it) {
      if (v.is_string()) into->insert(v.get<std::string>());
    }
  }
  return out;
}

Status write_managed_names(const std::string& dir, const ManagedNames& names) {
  Json j = {{"databases", names.databases}, {"accounts", names.accounts}};
  return write_file_atomic(dir + "/managed_names.json", dump_json(j), 0600);
}

Status check_identifier(std::string_view what, std::string_view name, size_t max_bytes) {
  if (name.empty()) return fail(Code::kInvalidArgument, fmt::format("{} name is empty", what));
  if (name.size() > max_bytes) {
    return fail(Code::kInvalidArgument,
                fmt::format("{} name '{}' is longer than {} bytes", what, name, max_bytes));
  }
  if (name.find('\0') != std::string_view::npos) {
    return fail(Code::kInvalidArgument, fmt::format("{} name contains a NUL byte", what));
  }
  return ok();
}

}  // namespace concord::database::engine::detail

namespace concord::database::engine {

// The contract's defaults for an engine without backups (engine.h).
Result<BackupInfo> Engine::backup(const InstanceConfig&, const BackupRequest&, const std::string&) {
  return fail(Code::kFailedPrecondition,
              "the " + std::string(name()) + " engine does not support backups");
}

Status Engine::restore(const InstanceConfig&, const RestoreSpec&, Transport&) {
  return fail(Code::kFailedPrecondition,
              "the " + std::string(name()) + " engine does not support restoring a backup");
}

Status Engine::ship_logs(const InstanceConfig&, Transport&) {
  return ok();
}

bool Engine::logs_waiting(const InstanceConfig&) const {
  return false;
}

Result<bool> Engine::set_read_only(const InstanceConfig&, bool) {
  return false;
}

Status Engine::clone_from(const InstanceConfig&, const ReplicationSpec&, Transport*) {
  return fail(Code::kFailedPrecondition,
              "the " + std::string(name()) + " engine does not support replicas");
}

}  // namespace concord::database::engine
