// EndpointSet (database/proxy/endpoint_set.h): the declared list of endpoints becomes running
// listeners, a moved backend is followed by new connections, a removed endpoint stops, and a
// listener that cannot bind is reported while the others still converge. Session mode against
// two tiny backends that greet each connection with their own letter (no engine needed).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "database/proxy/endpoint_set.h"

namespace concord::database::proxy {
namespace {

int listen_on(uint16_t port, uint16_t* bound) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 16) != 0) {
    ::close(fd);
    return -1;
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  if (bound) *bound = ntohs(a.sin_port);
  return fd;
}

// Accepts connections and writes `letter` to each, until stopped.
class Greeter {
 public:
  explicit Greeter(char letter) : letter_(letter) {
    fd_ = listen_on(0, &port_);
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) != 1) continue;
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) continue;
        (void)::send(c, &letter_, 1, MSG_NOSIGNAL);
        ::close(c);
      }
    });
  }
  ~Greeter() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }

 private:
  char letter_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The first byte a client connecting to 127.0.0.1:port receives; 0 when refused or closed.
char first_byte(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  char b = 0;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) == 1 && ::recv(fd, &b, 1, 0) != 1) b = 0;
  }
  ::close(fd);
  return b;
}

uint16_t free_port() {
  uint16_t port = 0;
  int fd = listen_on(0, &port);
  ::close(fd);
  return port;
}

EndpointSpec spec(const std::string& id, uint16_t listen, uint16_t backend) {
  EndpointSpec s;
  s.id = id;
  s.listen_host = "127.0.0.1";
  s.listen_port = listen;
  s.backend = {"127.0.0.1", backend};
  return s;
}

TEST(EndpointSet, FollowsTheDeclaredList) {
  Greeter a('A'), b('B');
  EndpointSet set;
  const uint16_t p1 = free_port(), p2 = free_port();
  EXPECT_TRUE(set.reconcile({spec("one", p1, a.port()), spec("two", p2, b.port())}).empty());
  EXPECT_EQ(set.size(), 2u);
  EXPECT_EQ(first_byte(p1), 'A');
  EXPECT_EQ(first_byte(p2), 'B');

  // "one" moves to the other backend: the same address now reaches B.
  EXPECT_TRUE(set.reconcile({spec("one", p1, b.port()), spec("two", p2, b.port())}).empty());
  EXPECT_EQ(first_byte(p1), 'B');
  EXPECT_EQ(set.backend("one")->port, b.port());
  EXPECT_EQ(set.stats("one")->backend_switches, 1);

  // "two" is no longer declared: its listener is gone.
  EXPECT_TRUE(set.reconcile({spec("one", p1, b.port())}).empty());
  EXPECT_EQ(set.size(), 1u);
  EXPECT_FALSE(set.stats("two").has_value());
  EXPECT_EQ(first_byte(p2), 0);
  EXPECT_EQ(first_byte(p1), 'B');
}

TEST(EndpointSet, ReportsAListenerThatCannotBindAndRetriesIt) {
  Greeter a('A');
  uint16_t taken = 0;
  int holder = listen_on(0, &taken);
  ASSERT_GE(holder, 0);
  EndpointSet set;
  const uint16_t free = free_port();
  auto failed = set.reconcile({spec("busy", taken, a.port()), spec("fine", free, a.port())});
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].first, "busy");
  EXPECT_EQ(first_byte(free), 'A');
  EXPECT_EQ(set.size(), 1u);

  // Once the address is free, the next reconcile starts it.
  ::close(holder);
  failed = set.reconcile({spec("busy", taken, a.port()), spec("fine", free, a.port())});
  EXPECT_TRUE(failed.empty());
  EXPECT_EQ(first_byte(taken), 'A');
}

}  // namespace
}  // namespace concord::database::proxy
