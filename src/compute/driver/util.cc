#include "compute/driver/util.h"

#include <fcntl.h>
#include <grp.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "base/encoding.h"
#include "fmt/format.h"

namespace concord::compute::driver {

namespace fs = std::filesystem;

Status validate_id(std::string_view id) {
  if (id.empty() || id.size() > 64) {
    return fail(Code::kInvalidArgument,
                fmt::format("instance id must be 1..64 characters, got {}", id.size()));
  }
  for (char c : id) {
    bool okc = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_';
    if (!okc) {
      return fail(Code::kInvalidArgument,
                  fmt::format("instance id '{}' may only hold letters, digits, '-' and '_'",
                              std::string(id)));
    }
  }
  return ok();
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    Code code = errno == ENOENT ? Code::kNotFound : Code::kInternal;
    return fail(code, fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status write_file_atomic(const std::string& path, std::string_view content) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      return fail(Code::kInternal, fmt::format("cannot write {}: {}", tmp, std::strerror(errno)));
    }
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.flush();
    if (!out) return fail(Code::kInternal, fmt::format("short write to {}", tmp));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return fail(Code::kInternal, fmt::format("rename {} -> {}: {}", tmp, path, ec.message()));
  return ok();
}

Status make_dirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return fail(Code::kInternal, fmt::format("mkdir -p {}: {}", path, ec.message()));
  return ok();
}

Status remove_tree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return fail(Code::kInternal, fmt::format("rm -r {}: {}", path, ec.message()));
  return ok();
}

bool path_exists(const std::string& path) {
  std::error_code ec;
  return fs::symlink_status(path, ec).type() != fs::file_type::not_found && !ec;
}

std::vector<std::string> list_subdirs(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec)) names.push_back(it->path().filename().string());
  }
  return names;
}

std::vector<std::string> list_instance_ids(const std::string& dir) {
  std::vector<std::string> ids;
  for (auto& name : list_subdirs(dir)) {
    if (!name.empty() && name[0] != '.') ids.push_back(name);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

Result<std::string> read_log_tail(const std::string& path, size_t max_bytes) {
  auto tail = read_tail(path, max_bytes);
  if (!tail && tail.error().code() == Code::kNotFound) return std::string();
  return tail;
}

Result<std::string> read_tail(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    Code code = errno == ENOENT ? Code::kNotFound : Code::kInternal;
    return fail(code, fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  }
  auto size = static_cast<size_t>(in.tellg());
  size_t start = size > max_bytes ? size - max_bytes : 0;
  in.seekg(static_cast<std::streamoff>(start));
  std::string out(size - start, '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return hex_encode(std::string_view(reinterpret_cast<const char*>(md), len));
}

Result<std::string> sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    Code code = errno == ENOENT ? Code::kNotFound : Code::kInternal;
    return fail(code, fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return fail(Code::kInternal, "EVP_DigestInit_ex(sha256) failed");
  }
  std::string buf(1 << 16, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    auto n = static_cast<size_t>(in.gcount());
    if (n > 0) EVP_DigestUpdate(ctx.get(), buf.data(), n);
  }
  if (in.bad()) return fail(Code::kInternal, fmt::format("error reading {}", path));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  return hex_encode(std::string_view(reinterpret_cast<const char*>(md), len));
}

bool is_mount_point(const std::string& path) {
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(path, ec);
  if (ec) return false;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // Fields: id parent major:minor root mount-point ...; octal escapes for spaces.
    std::istringstream ls(line);
    std::string id, parent, dev, root, mount_point;
    ls >> id >> parent >> dev >> root >> mount_point;
    std::string unescaped;
    for (size_t i = 0; i < mount_point.size(); ++i) {
      if (mount_point[i] == '\\' && i + 3 < mount_point.size()) {
        int v = 0;
        for (size_t k = 1; k <= 3; ++k) v = v * 8 + (mount_point[i + k] - '0');
        unescaped.push_back(static_cast<char>(v));
        i += 3;
      } else {
        unescaped.push_back(mount_point[i]);
      }
    }
    if (unescaped == canonical.string()) return true;
  }
  return false;
}

std::optional<unsigned long long> process_start_time(pid_t pid) {
  auto stat = read_file(fmt::format("/proc/{}/stat", pid));
  if (!stat) return std::nullopt;
  // comm (field 2) may hold spaces and parentheses: parse after the last ')'.
  size_t close = stat->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream ls(stat->substr(close + 1));
  std::string field;
  // After ')' come fields 3.. ; start time is field 22.
  for (int i = 3; i <= 22; ++i) {
    if (!(ls >> field)) return std::nullopt;
    if (i == 3 && field == "Z") return std::nullopt;
  }
  try {
    return std::stoull(field);
  } catch (...) {
    return std::nullopt;
  }
}

bool process_alive(pid_t pid) {
  if (pid <= 0) return false;
  return process_start_time(pid).has_value();
}

bool process_matches(const ProcessId& id) {
  if (id.pid <= 0) return false;
  auto start = process_start_time(id.pid);
  return start && *start == id.start_time;
}

pid_t read_live_pid(const std::string& pidfile) {
  auto text = read_file(pidfile);
  if (!text) return 0;
  pid_t pid = std::atoi(text->c_str());
  if (pid <= 0 || !process_alive(pid)) return 0;
  return pid;
}

bool wait_gone(pid_t pid, std::chrono::milliseconds limit, std::chrono::milliseconds poll) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (process_alive(pid)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(poll);
  }
  return true;
}

bool kill_and_wait(pid_t pid, bool group, std::chrono::milliseconds limit,
                   std::chrono::milliseconds poll) {
  if (group) ::kill(-pid, SIGKILL);
  ::kill(pid, SIGKILL);
  return wait_gone(pid, limit, poll);
}

std::string process_cmdline(pid_t pid) {
  auto raw = read_file(fmt::format("/proc/{}/cmdline", pid));
  if (!raw) return {};
  std::string s = *raw;
  for (char& c : s) {
    if (c == '\0') c = ' ';
  }
  return s;
}

namespace {

std::vector<char*> c_strings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const auto& a : v) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

// Reads exactly sizeof(T) bytes (retrying EINTR); false on EOF or a short read.
template <typename T>
bool read_value(int fd, T& out) {
  ssize_t got;
  do {
    got = ::read(fd, &out, sizeof out);
  } while (got < 0 && errno == EINTR);
  return got == static_cast<ssize_t>(sizeof out);
}

}  // namespace

// By hand: posix_spawn cannot switch users (with supplementary groups) or join a cgroup
// before exec, and the double fork (reparenting to init) is what spares callers the reaping.
Result<pid_t> spawn_detached(const DetachedSpawn& s) {
  if (s.argv.empty()) return fail(Code::kInternal, "spawn_detached: empty argv");
  // Everything the child needs is made before the fork: it may only make async-signal-safe
  // calls (the caller has other threads).
  std::vector<char*> cargv = c_strings(s.argv);
  std::vector<char*> cenv = s.env ? c_strings(*s.env) : std::vector<char*>{};
  char** envp = s.env ? cenv.data() : environ;
  int log_fd = ::open(s.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (log_fd < 0) {
    return fail(Code::kInternal, fmt::format("open {}: {}", s.log_path, std::strerror(errno)));
  }
  if (s.as && ::fchown(log_fd, s.as->uid, s.as->gid) != 0) {
    int e = errno;
    ::close(log_fd);
    return fail(Code::kInternal, fmt::format("chown {}: {}", s.log_path, std::strerror(e)));
  }
  std::vector<int> proc_fds;
  for (const auto& f : s.cgroup_procs) {
    int fd = ::open(f.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd >= 0) proc_fds.push_back(fd);
  }
  auto close_all = [&] {
    ::close(log_fd);
    for (int fd : proc_fds) ::close(fd);
  };
  // The launcher reports [grandchild pid], then on failure [errno]; EOF means exec happened.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    int e = errno;
    close_all();
    return fail(Code::kInternal, fmt::format("pipe2: {}", std::strerror(e)));
  }
  pid_t child = ::fork();
  if (child < 0) {
    int e = errno;
    close_all();
    ::close(fds[0]);
    ::close(fds[1]);
    return fail(Code::kInternal, fmt::format("fork: {}", std::strerror(e)));
  }
  if (child == 0) {
    ::close(fds[0]);
    pid_t grandchild = ::fork();
    if (grandchild < 0) ::_exit(127);
    if (grandchild > 0) {
      (void)!::write(fds[1], &grandchild, sizeof grandchild);
      ::_exit(0);
    }
    ::setsid();
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
    }
    for (int fd : proc_fds) (void)!::write(fd, "0", 1);  // 0: the writing process
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    int e = 0;
    if (s.as) {
      if ((::getuid() == 0 && ::setgroups(s.as->groups.size(), s.as->groups.data()) != 0) ||
          ::setgid(s.as->gid) != 0 || ::setuid(s.as->uid) != 0 || ::getuid() != s.as->uid) {
        e = errno == 0 ? EPERM : errno;
      }
    }
    if (e == 0 && !s.cwd.empty() && ::chdir(s.cwd.c_str()) != 0) e = errno;
    if (e == 0) {
      ::execve(cargv[0], cargv.data(), envp);
      e = errno;
    }
    (void)!::write(fds[1], &e, sizeof e);
    ::_exit(127);
  }
  ::close(fds[1]);
  close_all();
  pid_t grandchild = 0;
  int exec_errno = 0;
  const bool got_pid = read_value(fds[0], grandchild);
  const bool exec_failed = got_pid && read_value(fds[0], exec_errno);
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!got_pid || grandchild <= 0) {
    return fail(Code::kInternal, fmt::format("the launcher of {} failed to fork", s.argv[0]));
  }
  if (exec_failed) {
    return fail(Code::kFailedPrecondition,
                fmt::format("cannot execute '{}'{}: {}", s.argv[0],
                            s.as ? fmt::format(" as uid {}", s.as->uid) : std::string(),
                            std::strerror(exec_errno)));
  }
  return grandchild;
}

}  // namespace concord::compute::driver
