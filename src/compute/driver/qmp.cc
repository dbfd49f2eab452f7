#include "compute/driver/qmp.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace concord::compute::driver {

namespace {

int remaining_ms(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

}  // namespace

QmpClient::QmpClient(QmpClient&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      deadline_(other.deadline_),
      buffer_(std::move(other.buffer_)) {}

QmpClient& QmpClient::operator=(QmpClient&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    deadline_ = other.deadline_;
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

QmpClient::~QmpClient() {
  if (fd_ >= 0) ::close(fd_);
}

Result<QmpClient> QmpClient::connect(const std::string& socket_path,
                                     std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return fail(Code::kInvalidArgument, fmt::format("QMP socket path too long ({} bytes): {}",
                                                    socket_path.size(), socket_path));
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return fail(Code::kInternal, fmt::format("socket: {}", std::strerror(errno)));
  QmpClient client(fd, std::chrono::steady_clock::now() + timeout);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
    return fail(Code::kUnavailable,
                fmt::format("QMP connect {}: {}", socket_path, std::strerror(errno)));
  }
  CONCORD_ASSIGN_OR_RETURN(Json greeting, client.read_message());
  if (!greeting.contains("QMP")) {
    return fail(Code::kInternal, fmt::format("QMP {}: unexpected greeting", socket_path));
  }
  CONCORD_RETURN_IF_ERROR(client.execute("qmp_capabilities"));
  return client;
}

Status QmpClient::write_all(const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      int left = remaining_ms(deadline_);
      if (left == 0 || ::poll(&p, 1, left) == 0) {
        return fail(Code::kDeadlineExceeded, "QMP write timed out");
      }
      continue;
    }
    return fail(Code::kUnavailable, fmt::format("QMP write: {}", std::strerror(errno)));
  }
  return ok();
}

Result<Json> QmpClient::read_message() {
  while (true) {
    size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      auto j = parse_json(line);
      if (!j) return fail(Code::kInternal, fmt::format("QMP: bad JSON: {}", j.error().message()));
      return j;
    }
    pollfd p{fd_, POLLIN, 0};
    int left = remaining_ms(deadline_);
    if (left == 0) return fail(Code::kDeadlineExceeded, "QMP read timed out");
    int r = ::poll(&p, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return fail(Code::kDeadlineExceeded, "QMP read timed out");
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return fail(Code::kUnavailable, "QMP connection closed by QEMU");
    buffer_.append(buf, static_cast<size_t>(n));
    if (buffer_.size() > (1 << 20)) return fail(Code::kInternal, "QMP message over 1 MiB");
  }
}

Result<Json> QmpClient::execute(const std::string& command) {
  return execute(command, Json());
}

Result<Json> QmpClient::execute(const std::string& command, const Json& arguments) {
  if (fd_ < 0) return fail(Code::kFailedPrecondition, "QMP client not connected");
  Json request = {{"execute", command}};
  if (!arguments.is_null()) request["arguments"] = arguments;
  CONCORD_RETURN_IF_ERROR(write_all(dump_json(request) + "\n"));
  while (true) {
    CONCORD_ASSIGN_OR_RETURN(Json reply, read_message());
    if (reply.contains("return")) return reply["return"];
    if (reply.contains("error")) {
      std::string desc = reply["error"].value("desc", "unknown error");
      return fail(Code::kFailedPrecondition, fmt::format("QMP {}: {}", command, desc));
    }
    // An event ({"event": ...}): not ours.
  }
}

}  // namespace concord::compute::driver
