#include "compute/driver/qmp.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include "nlohmann/json.hpp"

namespace concord::compute::driver {
namespace {

using namespace std::chrono_literals;

// A scripted QMP peer: sends the greeting, then answers each request line with the next reply
// (several lines allowed, e.g. an event before the return).
class FakeQmp {
 public:
  explicit FakeQmp(std::vector<std::string> replies) : replies_(std::move(replies)) {
    path_ = ::testing::TempDir() + "/fake-qmp-" + std::to_string(::getpid()) + ".sock";
    std::filesystem::remove(path_);
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listen_fd_, 1), 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeQmp() {
    thread_.join();
    ::close(listen_fd_);
    std::filesystem::remove(path_);
  }
  const std::string& path() const { return path_; }
  const std::vector<std::string>& requests() const { return requests_; }

 private:
  void serve() {
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) return;
    std::string greeting = R"({"QMP": {"version": {}, "capabilities": []}})"
                           "\r\n";
    (void)!::write(fd, greeting.data(), greeting.size());
    std::string buffer;
    char buf[512];
    for (const auto& reply : replies_) {
      while (buffer.find('\n') == std::string::npos) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) {
          ::close(fd);
          return;
        }
        buffer.append(buf, static_cast<size_t>(n));
      }
      requests_.push_back(buffer.substr(0, buffer.find('\n')));
      buffer.erase(0, buffer.find('\n') + 1);
      (void)!::write(fd, reply.data(), reply.size());
    }
    ::close(fd);
  }

  std::string path_;
  int listen_fd_ = -1;
  std::vector<std::string> replies_;
  std::vector<std::string> requests_;
  std::thread thread_;
};

TEST(QmpClientTest, NegotiatesSkipsEventsAndReturnsTheResult) {
  Result<Json> status = fail(Code::kInternal, "not run");
  {
    FakeQmp peer({"{\"return\": {}}\r\n",
                  "{\"event\": \"RESET\", \"timestamp\": {}}\r\n"
                  "{\"return\": {\"status\": \"running\", \"running\": true}}\r\n"});
    auto client = QmpClient::connect(peer.path(), 5s);
    ASSERT_TRUE(client.has_value()) << client.error().to_string();
    status = client->execute("query-status");
    client = fail(Code::kInternal, "closed");  // close before the peer joins
  }
  ASSERT_TRUE(status.has_value()) << status.error().to_string();
  EXPECT_EQ(status->value("status", ""), "running");
}

TEST(QmpClientTest, ErrorReplyIsFailedPreconditionWithQemusText) {
  FakeQmp peer({"{\"return\": {}}\n",
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such thing\"}}\n"});
  auto client = QmpClient::connect(peer.path(), 5s);
  ASSERT_TRUE(client.has_value());
  auto r = client->execute("frobnicate");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.error().message().find("no such thing"), std::string::npos);
}

TEST(QmpClientTest, ClosedConnectionIsUnavailable) {
  FakeQmp peer({"{\"return\": {}}\n"});  // then hangs up, as QEMU does after "quit"
  auto client = QmpClient::connect(peer.path(), 5s);
  ASSERT_TRUE(client.has_value());
  auto r = client->execute("quit");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
}

TEST(QmpClientTest, NothingListeningIsUnavailable) {
  auto client = QmpClient::connect(::testing::TempDir() + "/no-qmp-here.sock", 1s);
  ASSERT_FALSE(client.has_value());
  EXPECT_EQ(client.error().code(), Code::kUnavailable);
}

TEST(QmpClientTest, OverlongSocketPathIsInvalidArgument) {
  auto client = QmpClient::connect("/tmp/" + std::string(200, 'x'), 1s);
  ASSERT_FALSE(client.has_value());
  EXPECT_EQ(client.error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace concord::compute::driver
