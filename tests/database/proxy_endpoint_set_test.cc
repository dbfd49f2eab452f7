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

// A transaction-mode endpoint's pool size follows its spec (0: the set's default) on the
// running proxy: no new listener, so connected clients stay.
TEST(EndpointSet, ResizesPoolsInPlace) {
  Greeter a('A');
  ProxyOptions defaults;
  defaults.pool_size = 6;
  EndpointSet set(defaults);
  EndpointSpec s = spec("one", free_port(), a.port());
  s.mode = PoolMode::kTransaction;
  EXPECT_TRUE(set.reconcile({s}).empty());
  EXPECT_EQ(set.stats("one")->pool_size, 6);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(s.listen_port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);

  s.pool_size = 3;
  EXPECT_TRUE(set.reconcile({s}).empty());
  auto now = [&] {
    for (int i = 0; i < 100 && set.stats("one")->pool_size != s.pool_size; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return set.stats("one")->pool_size;
  };
  EXPECT_EQ(now(), 3);
  s.pool_size = 0;
  EXPECT_TRUE(set.reconcile({s}).empty());
  s.pool_size = 6;  // what now() waits for: the default
  EXPECT_EQ(now(), 6);
  // The same proxy all along: its client was accepted once and is still connected.
  EXPECT_EQ(set.stats("one")->clients_accepted, 1);
  EXPECT_EQ(set.stats("one")->clients_active, 1);
  ::close(fd);
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

TEST(EndpointSet, AcceptsOnlyTheAllowedClientNetworks) {
  Greeter a('A');
  EndpointSet set;
  const uint16_t p = free_port();
  EndpointSpec closed = spec("one", p, a.port());
  closed.allowed_cidrs = {"10.0.0.0/8", "192.0.2.7"};
  EXPECT_TRUE(set.reconcile({closed}).empty());
  EXPECT_EQ(first_byte(p), 0);  // 127.0.0.1 is in neither: closed before anything is read
  EXPECT_EQ(set.stats("one")->clients_refused, 1);
  EndpointSpec open = closed;
  open.allowed_cidrs = {"10.0.0.0/8", "127.0.0.0/8"};
  EXPECT_TRUE(set.reconcile({open}).empty());
  EXPECT_EQ(first_byte(p), 'A');
}

TEST(ParseCidr, NetworksAndBadInput) {
  auto net = parse_cidr("192.0.2.77/24");
  ASSERT_TRUE(net);
  EXPECT_EQ(net->first, 0xC0000200u);
  EXPECT_EQ(net->second, 0xFFFFFF00u);
  EXPECT_EQ(parse_cidr("0.0.0.0/0")->second, 0u);
  EXPECT_EQ(parse_cidr("10.1.2.3")->second, 0xFFFFFFFFu);
  for (const char* bad : {"", "10.0.0.0/33", "10.0.0.0/", "10.0.0/8", "::1/128", "10.0.0.0/8x",
                          "host/8", "10.0.0.0/-1"}) {
    auto r = parse_cidr(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace concord::database::proxy
