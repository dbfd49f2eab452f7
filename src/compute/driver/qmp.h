#pragma once
// A small QMP (QEMU Machine Protocol) client over a unix socket: connect, read the greeting,
// negotiate capabilities, run one command at a time. Asynchronous events QEMU interleaves with
// replies are skipped. Every read and write is bounded by the deadline given to connect().
#include <chrono>
#include <string>

#include "base/json.h"
#include "base/result.h"

namespace concord::compute::driver {

class QmpClient {
 public:
  QmpClient() = default;
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;
  QmpClient(QmpClient&& other) noexcept;
  QmpClient& operator=(QmpClient&& other) noexcept;
  ~QmpClient();

  // Connects and sends qmp_capabilities. kUnavailable when nothing listens on the socket.
  [[nodiscard]] static Result<QmpClient> connect(const std::string& socket_path,
                                                 std::chrono::milliseconds timeout);
  // Returns the "return" member. A QMP error reply is kFailedPrecondition with QEMU's desc;
  // a closed socket is kUnavailable (QEMU exited, e.g. after "quit").
  [[nodiscard]] Result<Json> execute(const std::string& command);
  [[nodiscard]] Result<Json> execute(const std::string& command, const Json& arguments);

 private:
  explicit QmpClient(int fd, std::chrono::steady_clock::time_point deadline)
      : fd_(fd), deadline_(deadline) {}
  Result<Json> read_message();
  Status write_all(const std::string& data);

  int fd_ = -1;
  std::chrono::steady_clock::time_point deadline_;
  std::string buffer_;
};

}  // namespace concord::compute::driver
