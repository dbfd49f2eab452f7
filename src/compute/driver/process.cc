#include "compute/driver/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "fmt/format.h"

extern char** environ;

namespace concord::compute::driver {
namespace {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    reset();
    fd_ = std::exchange(other.fd_, -1);
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

bool make_pipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  read_end = Fd(fds[0]);
  write_end = Fd(fds[1]);
  return true;
}

void append_bounded(std::string& buffer, const char* data, size_t n, size_t max) {
  buffer.append(data, n);
  if (buffer.size() > max) buffer.erase(0, buffer.size() - max);
}

std::string tail_lines(const std::string& text, size_t max_chars) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  if (t.size() > max_chars) t = "..." + t.substr(t.size() - max_chars);
  return t;
}

}  // namespace

std::string ProcessResult::describe(const std::string& program) const {
  std::string what;
  if (timed_out) {
    what = fmt::format("{} timed out", program);
  } else if (signal != 0) {
    what = fmt::format("{} killed by signal {}", program, signal);
  } else {
    what = fmt::format("{} exited with status {}", program, exit_code);
  }
  std::string detail = tail_lines(err.empty() ? out : err, 600);
  if (!detail.empty()) what += ": " + detail;
  return what;
}

std::string find_program(const std::string& name) {
  if (name.empty()) return {};
  if (name.find('/') != std::string::npos) {
    return ::access(name.c_str(), X_OK) == 0 ? name : std::string();
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr && *path != '\0'
                         ? path
                         : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  return {};
}

Result<ProcessResult> run_process(const std::vector<std::string>& argv, const RunOptions& options) {
  if (argv.empty()) return fail(Code::kInvalidArgument, "run_process: empty argv");
  std::string path = find_program(argv[0]);
  if (path.empty()) {
    return fail(Code::kFailedPrecondition,
                fmt::format("program '{}' not found (PATH or explicit path)", argv[0]));
  }
  // Everything the child touches is prepared before fork: only async-signal-safe calls after.
  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  const char* output_file = options.output_file.empty() ? nullptr : options.output_file.c_str();

  Fd out_r, out_w, err_r, err_w, exec_r, exec_w;
  if (!make_pipe(exec_r, exec_w) ||
      (output_file == nullptr && (!make_pipe(out_r, out_w) || !make_pipe(err_r, err_w)))) {
    return fail(Code::kInternal, fmt::format("pipe2: {}", std::strerror(errno)));
  }

  pid_t pid = ::fork();
  if (pid < 0) return fail(Code::kInternal, fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    if (options.detach) {
      ::setsid();
    } else {
      ::setpgid(0, 0);
    }
    sigset_t all;
    sigemptyset(&all);
    ::sigprocmask(SIG_SETMASK, &all, nullptr);
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    if (output_file != nullptr) {
      int fd = ::open(output_file, O_WRONLY | O_CREAT | O_APPEND, 0640);
      if (fd < 0) {
        int e = errno;
        (void)!::write(exec_w.get(), &e, sizeof e);
        ::_exit(127);
      }
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    } else {
      ::dup2(out_w.get(), 1);
      ::dup2(err_w.get(), 2);
    }
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    ::execve(path.c_str(), cargv.data(), environ);
    int e = errno;
    (void)!::write(exec_w.get(), &e, sizeof e);
    ::_exit(127);
  }

  exec_w.reset();
  out_w.reset();
  err_w.reset();
  int exec_errno = 0;
  ssize_t got;
  do {
    got = ::read(exec_r.get(), &exec_errno, sizeof exec_errno);
  } while (got < 0 && errno == EINTR);
  if (got == static_cast<ssize_t>(sizeof exec_errno)) {
    int status;
    ::waitpid(pid, &status, 0);
    return fail(Code::kFailedPrecondition,
                fmt::format("cannot execute '{}': {}", path, std::strerror(exec_errno)));
  }

  ProcessResult result;
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  auto remaining_ms = [&] {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    return left.count() < 0 ? 0 : static_cast<int>(left.count());
  };

  char buf[8192];
  while (out_r.get() >= 0 || err_r.get() >= 0) {
    pollfd fds[2];
    int n = 0;
    if (out_r.get() >= 0) fds[n++] = {out_r.get(), POLLIN, 0};
    if (err_r.get() >= 0) fds[n++] = {err_r.get(), POLLIN, 0};
    int left = remaining_ms();
    if (left == 0) {
      result.timed_out = true;
      break;
    }
    int r = ::poll(fds, n, left);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    for (int i = 0; i < n; ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      ssize_t k = ::read(fds[i].fd, buf, sizeof buf);
      if (k < 0 && errno == EINTR) continue;
      bool is_out = fds[i].fd == out_r.get();
      if (k <= 0) {
        (is_out ? out_r : err_r).reset();
        continue;
      }
      append_bounded(is_out ? result.out : result.err, buf, static_cast<size_t>(k),
                     options.max_output);
    }
  }

  int status = 0;
  bool reaped = false;
  while (!result.timed_out) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) {
      reaped = true;
      break;
    }
    if (w < 0 && errno != EINTR) break;
    if (remaining_ms() == 0) {
      result.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!reaped) {
    // The child leads its own group (setpgid or setsid): take its helpers down with it.
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  if (result.timed_out) result.signal = result.signal == 0 ? SIGKILL : result.signal;
  return result;
}

Result<ProcessResult> run_checked(const std::vector<std::string>& argv, const RunOptions& options,
                                  Code failure_code) {
  CONCORD_ASSIGN_OR_RETURN(ProcessResult r, run_process(argv, options));
  // Name the program with its first arguments ("runc --root X kill"): which step failed matters.
  std::string name;
  for (size_t i = 0; i < argv.size() && i < 4; ++i) name += (i == 0 ? "" : " ") + argv[i];
  if (r.timed_out) {
    return fail(Code::kDeadlineExceeded,
                fmt::format("{} (after {} ms)", r.describe(name), options.timeout.count()));
  }
  if (!r.ok()) return fail(failure_code, r.describe(name));
  return r;
}

}  // namespace concord::compute::driver
