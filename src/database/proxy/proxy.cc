// Implementation notes (the rules themselves are in proxy.h and docs/design/database.md):
//
// Every connection is served on one io_context thread, by C++20 coroutines where it waits for
// something (login, a pooled connection, the client's next bytes) and by chains of completion
// handlers on the per-message paths that need no more (the session splice, a lent server
// connection's replies), so connection and pool state need no locks: a piece of state can only
// change across a co_await or between handlers. The public methods post to that thread; stats
// are atomics.
//
// Transaction mode, per client: the client reader coroutine reads the client's bytes, rewrites
// what must be rewritten (prepared-statement names), tracks sync points and session state, and
// writes to the lent server connection; a server reader (completion handlers) runs while a
// server connection is lent, forwards its replies to the client, drops the ParseComplete of
// statements the proxy re-prepared on its own, and gives the connection back to the pool at
// ReadyForQuery 'I' once nothing is outstanding. Only the server reader writes to the client while
// a server connection is lent; only the client reader writes to it otherwise.
#include "database/proxy/proxy.h"

// clang-format off
#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including it
// clang-format on
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/encoding.h"
#include "base/log.h"
#include "base/random.h"
#include "database/proxy/protocol.h"
#include "database/proxy/read_watch.h"
#include "database/proxy/scram.h"

namespace concord::database::proxy {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
template <typename T>
using awaitable = asio::awaitable<T>;

constexpr size_t kReadChunk = 64 * 1024;
// A server connection holding more distinct prepared statements than this is closed at
// release rather than grown forever (clients that generate unique statement texts).
constexpr size_t kMaxServerStatements = 2000;
constexpr auto kIdleCheckAfter = std::chrono::seconds(1);

// The module's logger, looked up once: logger() takes a mutex and searches spdlog's registry,
// and the transaction pool logs (at trace level, usually filtered out) on every ReadyForQuery.
spdlog::logger& log() {
  static const std::shared_ptr<spdlog::logger> l = logger("database.proxy");
  return *l;
}

auto ec_token(error_code& ec) {
  return asio::redirect_error(asio::use_awaitable, ec);
}

// A growable receive buffer: bytes [begin, end) are unconsumed.
class InBuffer {
 public:
  std::string_view view() const { return {data_.data() + begin_, end_ - begin_}; }
  void consume(size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  asio::mutable_buffer space() {
    if (data_.size() - end_ < kReadChunk / 4) {
      if (begin_ > 0) {
        std::memmove(data_.data(), data_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      if (data_.size() - end_ < kReadChunk / 4) data_.resize(data_.size() * 2);
    }
    return asio::buffer(data_.data() + end_, data_.size() - end_);
  }
  void commit(size_t n) { end_ += n; }

 private:
  std::vector<char> data_ = std::vector<char>(kReadChunk);
  size_t begin_ = 0;
  size_t end_ = 0;
};

void set_nodelay(tcp::socket& s) {
  error_code ec;
  s.set_option(tcp::no_delay(true), ec);
}

// One non-blocking send of as much of `data` as the socket takes now; how many bytes went, or
// 0 with `ec` set on a real error. Replies and batches are small and socket buffers large, so
// this is nearly always all of it: the proxy's CPU is mostly kernel wake-ups and scheduler
// turns, and an async_write that completes at once still costs a turn of the io_context (its
// completion is queued behind the reactor, which then polls epoll once more) per hop.
size_t send_now(tcp::socket& s, std::string_view data, error_code& ec) {
  while (true) {
    ssize_t n = ::send(s.native_handle(), data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      ec = error_code(errno, asio::error::get_system_category());
    return 0;
  }
}

// Writes all of `data`: send_now, then an async_write for whatever the socket did not take.
// Off the per-message paths only: a co_await of a nested coroutine costs a frame, and Asio
// keeps one spare frame per thread, so a second level of nesting is a malloc and a free per
// call. The per-message paths (serve, pump) write with send_now and async_write inline.
awaitable<void> write_all(tcp::socket& s, std::string_view data, error_code& ec) {
  size_t n = send_now(s, data, ec);
  if (ec || n == data.size()) co_return;
  co_await asio::async_write(s, asio::buffer(data.substr(n)), ec_token(ec));
}

// Client-side stream: plain TCP, or TLS once the client asked for it and the proxy has a cert.
class ClientStream {
 public:
  explicit ClientStream(tcp::socket s) : sock_(std::move(s)) {}
  tcp::socket& socket() { return sock_; }
  bool tls() const { return tls_ != nullptr; }

  awaitable<error_code> handshake(ssl::context& ctx) {
    tls_ = std::make_unique<ssl::stream<tcp::socket&>>(sock_, ctx);
    error_code ec;
    co_await tls_->async_handshake(ssl::stream_base::server, ec_token(ec));
    co_return ec;
  }
  awaitable<size_t> read_some(asio::mutable_buffer b, error_code& ec) {
    if (tls_) co_return co_await tls_->async_read_some(b, ec_token(ec));
    co_return co_await sock_.async_read_some(b, ec_token(ec));
  }
  // Plain TCP after login is read through this (ClientSession::serve), never with Asio's
  // reads: they would queue behind the watch's operations and never run.
  ReadWatch& watch() { return watch_; }
  awaitable<void> write(std::string_view data, error_code& ec) {
    if (tls_) {
      co_await asio::async_write(*tls_, asio::buffer(data), ec_token(ec));
    } else {
      co_await write_all(sock_, data, ec);
    }
  }
  // All of `data` (which must outlive the call), then handler(error_code, size_t).
  template <typename Handler>
  void async_write(std::string_view data, Handler&& handler) {
    if (tls_) {
      asio::async_write(*tls_, asio::buffer(data), std::forward<Handler>(handler));
    } else {
      asio::async_write(sock_, asio::buffer(data), std::forward<Handler>(handler));
    }
  }
  void close() {
    error_code ec;
    sock_.shutdown(tcp::socket::shutdown_both, ec);
    sock_.close(ec);
  }

 private:
  tcp::socket sock_;
  std::unique_ptr<ssl::stream<tcp::socket&>> tls_;
  ReadWatch watch_;  // armed by serve only (plain TCP after login)
};

struct ServerConn {
  explicit ServerConn(tcp::socket s) : sock(std::move(s)) {}
  tcp::socket sock;
  // Replies are read through this while the connection is lent (read_server): no recv that
  // only says EAGAIN per transaction. Armed once per connection, kept in the pool.
  ReadWatch watch;
  InBuffer in;
  uint64_t generation = 0;
  Endpoint backend;
  CancelKey key;
  std::unordered_set<std::string> prepared;  // server-side statement names that exist
  std::chrono::steady_clock::time_point idle_since;
  bool broken = false;
};

// A response the server owes for a message the proxy sent on the client's behalf.
struct Expect {
  enum Kind { kParse, kSync } kind = kParse;
  bool swallow = false;       // a Parse the proxy injected: the client must not see it
  std::string inserted_name;  // statement added to ServerConn::prepared when sent
};

class ProxyImpl;

struct Pool;

// One statement a client prepared by name, as the proxy re-creates it on any server.
struct ClientStatement {
  std::string server_name;
  std::string query;
  std::string rest;
};

// Content-addressed server-side names: identical statements of different clients share one
// server statement, so N clients of a pgbench -M prepared prepare each text once per server
// connection, and a reused client name can never collide with another client's on the server.
std::string server_statement_name(std::string_view query, std::string_view rest) {
  std::string data;
  data.reserve(query.size() + 1 + rest.size());
  data.append(query);
  data.push_back('\0');
  data.append(rest);
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), d);
  return "cc_" + hex_encode(std::string_view(reinterpret_cast<char*>(d), 16));
}

// A client queued for a server connection. No timer of its own: at 256 clients on a pool of 20
// nearly every transaction waits, and a timer per wait (armed, then cancelled by the release
// that ends it) was a timer-queue insert and removal, a service lookup and a coroutine frame
// each time. Deadlines are checked by one sweep per proxy (ProxyImpl::sweep_waiters).
struct Waiter {
  std::unique_ptr<ServerConn> conn;  // handed over by release
  bool retry = false;                // a slot freed or the backend moved: try again
  std::chrono::steady_clock::time_point deadline;
  std::move_only_function<void()> resume;  // the waiting coroutine; posted once
};

struct Pool {
  std::string key;
  StartupParams params;  // sent to the backend (application_name dropped)
  std::vector<std::unique_ptr<ServerConn>> idle;
  int total = 0;  // idle + lent + opening
  std::deque<Waiter*> waiters;
  std::vector<std::pair<std::string, std::string>> server_params;  // ParameterStatus seen
};

class ClientSession;
class SpliceSession;

class ProxyImpl final : public Proxy {
 public:
  explicit ProxyImpl(ProxyOptions o)
      : options_(std::move(o)),
        // One thread runs the loop and is the only one to touch a socket or timer (other
        // threads only post), so the reactor's per-descriptor locks are skipped: a lock and
        // an unlock per operation started and per readiness event. Posting stays locked.
        io_(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO),
        acceptor_(io_),
        tls_ctx_(ssl::context::tls_server),
        backend_(options_.backend),
        verifiers_(options_.verifiers) {}
  ~ProxyImpl() override { stop(); }

  Status init();
  uint16_t port() const override { return port_; }
  Status start() override;
  void stop() override;
  void set_backend(Endpoint backend) override;
  Endpoint backend() const override {
    std::lock_guard<std::mutex> l(shared_mu_);
    return backend_shared_;
  }
  void set_verifiers(std::map<std::string, std::string> v) override {
    std::lock_guard<std::mutex> l(shared_mu_);
    verifiers_ = std::move(v);
  }
  void set_pool_size(int n) override {
    asio::post(io_, [this, n] { resize_pools(std::max(n, 1)); });
  }
  ProxyStats stats() const override;

  // --- used by sessions, on the I/O thread ---
  const ProxyOptions& options() const { return options_; }
  asio::io_context& io() { return io_; }
  bool tls_enabled() const { return tls_enabled_; }
  ssl::context& tls_ctx() { return tls_ctx_; }
  Endpoint current_backend() const { return backend_; }
  uint64_t generation() const { return generation_; }
  std::optional<std::string> verifier(const std::string& user) {
    std::lock_guard<std::mutex> l(shared_mu_);
    auto it = verifiers_.find(user);
    if (it == verifiers_.end()) return std::nullopt;
    return it->second;
  }
  void remember_client_key(const std::string& user, std::string key) {
    client_keys_[user] = std::move(key);
  }
  Pool& pool_for(const StartupParams& p);
  bool can_lend_now(const Pool& pool) const {
    return !pool.idle.empty() || pool.total < options_.pool_size;
  }
  // An idle connection fit to lend now, or null: no suspension (the per-transaction path; a
  // nested coroutine costs frames and executor copies each time).
  std::unique_ptr<ServerConn> take_idle(Pool& pool);
  awaitable<Result<std::unique_ptr<ServerConn>>> acquire(Pool& pool);
  // Takes the first waiter off `pool`'s queue and resumes it with `conn`, or (null) to try
  // again; false when nobody waits.
  bool hand_to_waiter(Pool& pool, std::unique_ptr<ServerConn> conn);
  void release(Pool& pool, std::unique_ptr<ServerConn> conn, bool reusable);
  awaitable<Result<std::unique_ptr<ServerConn>>> open_server(Pool& pool);
  awaitable<void> cancel(CancelKey key);
  void register_cancel(CancelKey key, std::weak_ptr<ClientSession> s) {
    cancel_map_[uint64_t(uint32_t(key.pid)) << 32 | uint32_t(key.secret)] = std::move(s);
  }
  void unregister_cancel(CancelKey key) {
    cancel_map_.erase(uint64_t(uint32_t(key.pid)) << 32 | uint32_t(key.secret));
  }
  void track_splice(uint64_t id, std::weak_ptr<SpliceSession> s) { splices_[id] = std::move(s); }
  void untrack_splice(uint64_t id) { splices_.erase(id); }
  void track_client(uint64_t id, std::weak_ptr<ClientSession> s) { clients_[id] = std::move(s); }
  void untrack_client(uint64_t id) { clients_.erase(id); }
  uint64_t next_id() { return ++next_id_; }

  // Counters.
  std::vector<std::pair<uint32_t, uint32_t>> allowed_;  // parsed options_.allowed_cidrs
  std::atomic<int64_t> clients_refused{0};
  std::atomic<int64_t> pool_size_now{0};  // options_.pool_size, for stats()
  std::atomic<int64_t> clients_accepted{0}, clients_active{0}, server_connections{0},
      server_connects{0}, transactions{0}, pinned_clients{0}, reprepares{0}, pool_waits{0},
      wait_timeouts{0}, protocol_errors{0}, backend_switches{0};

 private:
  awaitable<void> accept_loop();
  awaitable<void> sweep_waiters();
  void resume(Waiter* w) { asio::post(io_, std::move(w->resume)); }
  void switch_backend(Endpoint b);
  void resize_pools(int pool_size);
  void close_all();

  ProxyOptions options_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  ssl::context tls_ctx_;
  bool tls_enabled_ = false;
  uint16_t port_ = 0;
  std::thread thread_;
  bool started_ = false;
  bool stopped_ = false;

  // I/O-thread state.
  Endpoint backend_;
  uint64_t generation_ = 1;
  std::unordered_map<std::string, std::unique_ptr<Pool>> pools_;
  std::unordered_map<std::string, std::string> client_keys_;
  std::unordered_map<uint64_t, std::weak_ptr<ClientSession>> cancel_map_;
  std::unordered_map<uint64_t, std::weak_ptr<SpliceSession>> splices_;
  std::unordered_map<uint64_t, std::weak_ptr<ClientSession>> clients_;
  uint64_t next_id_ = 0;

  // Shared with other threads.
  mutable std::mutex shared_mu_;
  Endpoint backend_shared_;
  std::map<std::string, std::string> verifiers_;
};

// ---------------------------------------------------------------------------------------------
// Session mode: a byte splice.

class SpliceSession : public std::enable_shared_from_this<SpliceSession> {
 public:
  SpliceSession(ProxyImpl& proxy, tcp::socket client)
      : proxy_(proxy), client_(std::move(client)), server_(proxy.io()) {}

  static awaitable<void> run(std::shared_ptr<SpliceSession> self) {
    ProxyImpl& p = self->proxy_;
    self->id_ = p.next_id();
    p.track_splice(self->id_, self);
    p.clients_active++;
    Endpoint b = p.current_backend();
    error_code ec = co_await self->connect(b, p.options().proxy_protocol);
    if (ec || !self->server_.is_open()) {
      // No protocol-level reply is possible here: the client may be mid-TLS negotiation.
      log().warn("session mode: backend {}:{} unreachable: {}", b.host, b.port, ec.message());
      self->close();
      p.clients_active--;
      p.untrack_splice(self->id_);
      co_return;
    }
    set_nodelay(self->client_);
    set_nodelay(self->server_);
    p.server_connects++;
    p.server_connections++;
    // Both directions run as completion handlers from here; the second to stop closes the books
    // (stopped).
    self->pump(self->up_);
    self->pump(self->down_);
  }

  void close() {
    error_code ec;
    client_.close(ec);
    server_.close(ec);
  }

 private:
  // Connects server_ to `b` within the connect timeout, then (with `header`) writes the PROXY
  // line naming the client.
  awaitable<error_code> connect(const Endpoint& b, bool header) {
    ProxyImpl& p = proxy_;
    error_code ec;
    auto addr = asio::ip::make_address(b.host, ec);
    if (ec) co_return ec;
    asio::steady_timer timer(p.io());
    timer.expires_after(p.options().connect_timeout);
    auto self = shared_from_this();
    timer.async_wait([self](error_code e) {
      if (!e) self->close();
    });
    co_await server_.async_connect(tcp::endpoint(addr, b.port), ec_token(ec));
    timer.cancel();
    if (ec || !header) co_return ec;
    const tcp::endpoint from = client_.remote_endpoint(ec);
    if (ec) co_return ec;  // the client is gone already
    const tcp::endpoint to = client_.local_endpoint(ec);
    if (ec) co_return ec;
    Result<std::string> line = proxy_v1_header({from.address().to_string(), from.port()},
                                               {to.address().to_string(), to.port()});
    if (!line) co_return asio::error::invalid_argument;
    co_await write_all(server_, *line, ec);
    co_return ec;
  }

  // One direction of the splice: bytes read from `from` go to `to`.
  struct Direction {
    Direction(tcp::socket& f, tcp::socket& t) : from(f), to(t) {}
    tcp::socket& from;
    tcp::socket& to;
    // Waits through a ReadWatch, then reads once: each side mostly waits for the other's
    // answer, so the read Asio's async_read_some tries before it waits nearly always said
    // EAGAIN (one system call per hop, two per transaction).
    ReadWatch watch;
    std::vector<char> buf = std::vector<char>(kReadChunk);
  };

  // A chain of completion handlers, not a coroutine (as the transaction mode's server reader):
  // each hop costs a wait and a read, with no coroutine frame or handler allocated (the
  // callback, a shared_ptr and a pointer, fits in the ReadWatch's std::move_only_function).
  void pump(Direction& d) {
    d.watch.wait(d.from, [self = shared_from_this(), &d] { self->on_readable(d); });
  }

  void on_readable(Direction& d) {
    error_code ec;
    const size_t n = d.watch.read(d.from, asio::buffer(d.buf), ec);
    if (ec) return stopped(d);
    if (n == 0) return pump(d);  // an event for bytes an earlier read already took
    const size_t sent = send_now(d.to, std::string_view(d.buf.data(), n), ec);
    if (ec) return stopped(d);
    if (sent == n) return pump(d);
    // The peer's socket is full: the rest goes asynchronously before the next read.
    asio::async_write(d.to, asio::buffer(d.buf.data() + sent, n - sent),
                      [self = shared_from_this(), &d](error_code e, size_t) {
                        if (e) {
                          self->stopped(d);
                        } else {
                          self->pump(d);
                        }
                      });
  }

  // One direction ended (end of stream, an error, or a close): both sockets close, which ends
  // the other direction too; the second to stop closes the books.
  void stopped(Direction&) {
    close();
    if (++stopped_ < 2) return;
    proxy_.server_connections--;
    proxy_.clients_active--;
    proxy_.untrack_splice(id_);
  }

  ProxyImpl& proxy_;
  tcp::socket client_;
  tcp::socket server_;
  Direction up_{client_, server_};
  Direction down_{server_, client_};
  int stopped_ = 0;  // directions that ended
  uint64_t id_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Transaction mode.

class ClientSession : public std::enable_shared_from_this<ClientSession> {
 public:
  ClientSession(ProxyImpl& proxy, tcp::socket s) : proxy_(proxy), client_(std::move(s)) {}

  static awaitable<void> run(std::shared_ptr<ClientSession> self) {
    ProxyImpl& p = self->proxy_;
    self->id_ = p.next_id();
    p.track_client(self->id_, self);
    p.clients_active++;
    set_nodelay(self->client_.socket());
    bool ready = co_await self->login();
    if (ready) co_await self->serve();
    self->teardown();
    p.clients_active--;
    p.untrack_client(self->id_);
  }

  // Closes the client and any lent server connection (proxy stop / backend switch).
  void close() {
    closed_ = true;
    client_.close();
    if (server_) {
      error_code ec;
      server_->sock.close(ec);
    }
  }

  // The backend switched: an idle pinned session on the old backend is told and closed.
  void on_backend_switch(uint64_t generation) {
    if (server_ && server_->generation != generation && pinned_ && pending_ == 0 &&
        unsynced_ == 0 && !client_writing_) {
      asio::co_spawn(proxy_.io(),
                     fatal_and_close(shared_from_this(), "57P01",
                                     "terminating connection: the database endpoint moved to "
                                     "another server"),
                     asio::detached);
    }
  }

  const ServerConn* server() const { return server_.get(); }

 private:
  static awaitable<void> fatal_and_close(std::shared_ptr<ClientSession> self, std::string sqlstate,
                                         std::string message) {
    std::string out;
    append_error(out, "FATAL", sqlstate, message);
    error_code ec;
    self->client_writing_ = true;
    co_await self->client_.write(out, ec);
    self->client_writing_ = false;
    self->close();
  }

  awaitable<void> send_fatal(std::string_view sqlstate, std::string_view message) {
    std::string out;
    append_error(out, "FATAL", sqlstate, message);
    error_code ec;
    if (!client_writing_) co_await client_.write(out, ec);
  }

  // During login (Asio's reads; serve reads otherwise).
  awaitable<bool> read_more(error_code& ec) {
    size_t n = co_await client_.read_some(in_.space(), ec);
    if (!ec) in_.commit(n);
    co_return !ec;
  }

  // Reads one typed message during login.
  awaitable<std::optional<std::string>> read_login_message(char want) {
    while (true) {
      auto m = next_message(in_.view());
      if (!m) {
        proxy_.protocol_errors++;
        co_await send_fatal("08P01",
                            "invalid message during authentication: " + m.error().message());
        co_return std::nullopt;
      }
      if (*m) {
        std::string body((*m)->body);
        char type = (*m)->type;
        in_.consume((*m)->total);
        if (type != want) {
          proxy_.protocol_errors++;
          co_await send_fatal("08P01", std::string("expected a password message ('p'), got '") +
                                           (std::isprint(uint8_t(type)) ? type : '?') + "'");
          co_return std::nullopt;
        }
        co_return body;
      }
      error_code ec;
      if (!co_await read_more(ec)) co_return std::nullopt;
    }
  }

  awaitable<bool> login() {
    asio::steady_timer timer(proxy_.io());
    timer.expires_after(proxy_.options().login_timeout);
    timer.async_wait([self = shared_from_this()](error_code e) {
      if (!e && !self->logged_in_) self->close();
    });
    bool ok = co_await login_steps();
    logged_in_ = ok;
    timer.cancel();
    co_return ok && !closed_;
  }

  awaitable<bool> login_steps() {
    StartupParams params;
    while (true) {
      auto pkt = next_startup_packet(in_.view());
      if (!pkt) {
        proxy_.protocol_errors++;
        co_await send_fatal("08P01", pkt.error().message());
        co_return false;
      }
      if (!*pkt) {
        error_code ec;
        if (!co_await read_more(ec)) co_return false;
        continue;
      }
      StartupPacket sp = **pkt;
      std::string body(sp.body);
      in_.consume(sp.total);
      error_code ec;
      if (sp.code == kSslRequestCode) {
        if (client_.tls() || !in_.view().empty()) {
          proxy_.protocol_errors++;
          co_await send_fatal("08P01", "unexpected SSLRequest");
          co_return false;
        }
        bool tls = proxy_.tls_enabled();
        co_await client_.write(tls ? "S" : "N", ec);
        if (ec) co_return false;
        if (tls) {
          ec = co_await client_.handshake(proxy_.tls_ctx());
          if (ec) co_return false;
        }
        continue;
      }
      if (sp.code == kGssEncRequestCode) {
        co_await client_.write("N", ec);
        if (ec) co_return false;
        continue;
      }
      if (sp.code == kCancelRequestCode) {
        auto key = parse_cancel(body);
        if (key) co_await proxy_.cancel(*key);
        co_return false;
      }
      if (sp.code != kProtocolV3) {
        proxy_.protocol_errors++;
        co_await send_fatal("0A000",
                            "unsupported frontend protocol " + std::to_string(sp.code >> 16) + "." +
                                std::to_string(sp.code & 0xFFFF) + ": server supports 3.0");
        co_return false;
      }
      auto parsed = parse_startup(body);
      if (!parsed) {
        proxy_.protocol_errors++;
        co_await send_fatal("08P01", parsed.error().message());
        co_return false;
      }
      params = std::move(*parsed);
      break;
    }

    std::string denied = "password authentication failed for user \"" + params.user + "\"";
    auto verifier_text = proxy_.verifier(params.user);
    if (!verifier_text) {
      co_await send_fatal("28P01", denied);
      co_return false;
    }
    auto verifier = parse_scram_verifier(*verifier_text);
    if (!verifier) {
      log().error("user={} has an unusable verifier: {}", params.user, verifier.error().message());
      co_await send_fatal("28P01", denied);
      co_return false;
    }
    ScramServer scram(std::move(*verifier));
    std::string out;
    append_auth(out, 10, std::string_view("SCRAM-SHA-256\0\0", 15));
    error_code ec;
    co_await client_.write(out, ec);
    if (ec) co_return false;
    auto initial_body = co_await read_login_message('p');
    if (!initial_body) co_return false;
    auto initial = parse_sasl_initial(*initial_body);
    if (!initial || initial->mechanism != "SCRAM-SHA-256") {
      proxy_.protocol_errors++;
      co_await send_fatal("08P01", initial ? "unsupported SASL mechanism " + initial->mechanism
                                           : initial.error().message());
      co_return false;
    }
    auto server_first = scram.first(initial->data);
    if (!server_first) {
      co_await send_fatal("08P01", server_first.error().message());
      co_return false;
    }
    out.clear();
    append_auth(out, 11, *server_first);
    co_await client_.write(out, ec);
    if (ec) co_return false;
    auto final_body = co_await read_login_message('p');
    if (!final_body) co_return false;
    auto server_final = scram.final(*final_body);
    if (!server_final) {
      co_await send_fatal(server_final.error().code() == Code::kUnauthenticated ? "28P01" : "08P01",
                          server_final.error().code() == Code::kUnauthenticated
                              ? denied
                              : server_final.error().message());
      co_return false;
    }
    proxy_.remember_client_key(params.user, scram.client_key());

    pool_ = &proxy_.pool_for(params);
    if (pool_->server_params.empty()) {
      // The client must see the server's ParameterStatus values; the first login of a pool
      // opens a server connection to learn them.
      auto conn = co_await proxy_.acquire(*pool_);
      if (!conn) {
        co_await send_fatal(conn.error().code() == Code::kResourceExhausted ? "53300" : "08006",
                            conn.error().message());
        co_return false;
      }
      proxy_.release(*pool_, std::move(*conn), true);
    }
    std::string r = random_bytes(8);
    key_ = CancelKey{get_int32(r.data()) & 0x7fffffff, get_int32(r.data() + 4)};
    proxy_.register_cancel(key_, weak_from_this());
    out.clear();
    append_auth(out, 12, *server_final);
    append_auth(out, 0);
    for (const auto& [k, v] : pool_->server_params) append_parameter_status(out, k, v);
    append_backend_key(out, key_);
    append_ready(out, 'I');
    co_await client_.write(out, ec);
    co_return !ec;
  }

  void pin(uint32_t effects) {
    uint32_t pins = effects & kPinMask;
    if (effects & kClearAll) pin_bits_ = 0;
    if (effects & kClearSet) pin_bits_ &= ~uint32_t(kEffectSet);
    if (effects & kClearListen) pin_bits_ &= ~uint32_t(kEffectListen);
    if ((effects & kClearPrepared) && server_) server_->prepared.clear();
    if (pins && !pin_bits_) proxy_.pinned_clients++;
    pin_bits_ |= pins;
    pinned_ = pin_bits_ != 0;
  }

  // Ensures a server connection is lent to this client; false when the client was told why
  // not and must be closed.
  awaitable<bool> ensure_server() {
    if (server_) co_return true;
    auto conn = co_await proxy_.acquire(*pool_);
    if (closed_) {
      if (conn) proxy_.release(*pool_, std::move(*conn), true);
      co_return false;
    }
    if (!conn) {
      co_await send_fatal(conn.error().code() == Code::kResourceExhausted ? "53300" : "08006",
                          conn.error().message());
      co_return false;
    }
    lend(std::move(*conn));
    co_return true;
  }

  // An idle pooled connection when one is there and nobody queues before this client.
  bool lend_idle() {
    if (!pool_->waiters.empty()) return false;
    auto conn = proxy_.take_idle(*pool_);
    if (!conn) return false;
    lend(std::move(conn));
    return true;
  }

  void lend(std::unique_ptr<ServerConn> conn) {
    server_ = std::move(conn);
    log().trace("client={} lent server pid={}", id_, server_->key.pid);
    expects_.clear();
    pending_ = 0;
    unsynced_ = 0;
    // The reader starts once the first batch is written (serve), and waits for the reply
    // through the connection's ReadWatch (read_server).
    server_reading_ = false;
  }

  // Statement `cs` must exist on the lent server connection before `out` refers to it.
  void ensure_prepared(const ClientStatement& cs, std::string& out) {
    if (server_->prepared.contains(cs.server_name)) return;
    append_parse(out, cs.server_name, cs.query, cs.rest);
    server_->prepared.insert(cs.server_name);
    expects_.push_back(Expect{Expect::kParse, true, cs.server_name});
    proxy_.reprepares++;
  }

  // Handles one client message, appending what goes to the server to `out`; the error text
  // of a protocol violation otherwise.
  std::optional<std::string> handle(const MessageView& m, std::string& out) {
    std::string_view raw(m.body.data() - 5, m.total);
    switch (m.type) {
      case 'Q': {
        std::string_view q = m.body.substr(0, m.body.find('\0'));
        pin(classify_sql(q));
        out.append(raw);
        expects_.push_back(Expect{Expect::kSync});
        ++pending_;
        unsynced_ = 0;
        return std::nullopt;
      }
      case 'S':
        out.append(raw);
        expects_.push_back(Expect{Expect::kSync});
        ++pending_;
        unsynced_ = 0;
        return std::nullopt;
      case 'P': {
        auto pm = parse_parse(m.body);
        if (!pm) return pm.error().message();
        pin(classify_sql(pm->query));
        ++unsynced_;
        if (pm->name.empty()) {
          out.append(raw);
          expects_.push_back(Expect{Expect::kParse, false, ""});
          return std::nullopt;
        }
        std::string sname = server_statement_name(pm->query, pm->rest);
        auto [it, inserted] = statements_.try_emplace(
            std::string(pm->name),
            ClientStatement{sname, std::string(pm->query), std::string(pm->rest)});
        if (!inserted) {
          // The client reuses a live name: send its old server name so the server reports
          // 42P05 exactly as it would without the proxy (when this connection holds it).
          append_parse(out, it->second.server_name, pm->query, pm->rest);
          expects_.push_back(Expect{Expect::kParse, false, ""});
          return std::nullopt;
        }
        if (server_->prepared.contains(sname)) {
          // Already on this server connection (another client, or an earlier transaction):
          // the unnamed statement yields the ParseComplete (or the error) the client expects.
          append_parse(out, "", pm->query, pm->rest);
          expects_.push_back(Expect{Expect::kParse, false, ""});
        } else {
          append_parse(out, sname, pm->query, pm->rest);
          server_->prepared.insert(sname);
          expects_.push_back(Expect{Expect::kParse, false, sname});
        }
        return std::nullopt;
      }
      case 'B': {
        auto bm = parse_bind(m.body);
        if (!bm) return bm.error().message();
        ++unsynced_;
        auto it = bm->statement.empty() ? statements_.end()
                                        : statements_.find(std::string(bm->statement));
        if (it == statements_.end()) {
          out.append(raw);
          return std::nullopt;
        }
        ensure_prepared(it->second, out);
        append_bind(out, bm->portal, it->second.server_name, bm->rest);
        return std::nullopt;
      }
      case 'D':
      case 'C': {
        auto tm = parse_target(m.body);
        if (!tm) return tm.error().message();
        ++unsynced_;
        auto it = tm->kind != 'S' || tm->name.empty() ? statements_.end()
                                                      : statements_.find(std::string(tm->name));
        if (it == statements_.end()) {
          out.append(raw);
          return std::nullopt;
        }
        if (m.type == 'D') {
          ensure_prepared(it->second, out);
          append_target(out, 'D', 'S', it->second.server_name);
        } else {
          // Other clients may share the server statement: it stays; closing a name that does
          // not exist is not an error and yields the CloseComplete the client waits for.
          statements_.erase(it);
          append_target(out, 'C', 'S', "cc_closed");
        }
        return std::nullopt;
      }
      case 'd':
      case 'c':
      case 'f':
        // COPY data belongs to the Query or Sync already counted.
        out.append(raw);
        return std::nullopt;
      default:
        // Execute, Flush, FunctionCall...: the server judges them.
        ++unsynced_;
        out.append(raw);
        return std::nullopt;
    }
  }

  // A client that prepares statements outside a transaction while every pooled connection is
  // busy (pgbench -M prepared blocks its whole thread in PQprepare) is answered by the proxy:
  // the statements are recorded and prepared on a server when first bound or described. The
  // cost: an invalid statement is reported at its first Bind instead of at Parse. Only a run of
  // named Parse messages closed by a Sync is deferred; returns the bytes answered, 0 if none.
  size_t defer_prepares() {
    std::string_view buf = in_.view();
    size_t used = 0;
    std::vector<ParseMsg> parses;
    while (true) {
      auto m = next_message(buf.substr(used));
      if (!m || !*m) return 0;
      const MessageView& mv = **m;
      used += mv.total;
      if (mv.type == 'S') break;
      if (mv.type != 'P') return 0;
      auto pm = parse_parse(mv.body);
      if (!pm || pm->name.empty() || statements_.contains(std::string(pm->name)) ||
          classify_sql(pm->query) != kEffectNone) {
        return 0;
      }
      parses.push_back(*pm);
    }
    for (const auto& pm : parses) {
      statements_.emplace(std::string(pm.name),
                          ClientStatement{server_statement_name(pm.query, pm.rest),
                                          std::string(pm.query), std::string(pm.rest)});
      append_message(out_local_, '1', "");
    }
    append_ready(out_local_, 'I');
    return used;
  }

  awaitable<bool> violation(std::string message) {
    proxy_.protocol_errors++;
    co_await send_fatal("08P01", "invalid message from client: " + message);
    co_return false;
  }

  awaitable<void> serve() {
    std::string out;
    while (!closed_) {
      // The next bytes, read here rather than in a nested coroutine (see write_all). Plain TCP
      // waits through the ReadWatch and then reads once: a client sends its next query only
      // after the reply to the last one, so the read right after forwarding a batch (Asio's
      // async_read_some tries a recv before it waits) nearly always said EAGAIN, one system
      // call per transaction. TLS keeps Asio's read (the stream reads the socket itself).
      error_code ec;
      size_t n = 0;
      if (client_.tls()) {
        n = co_await client_.read_some(in_.space(), ec);
      } else {
        co_await async_wait_readable(client_.watch(), client_.socket(), asio::use_awaitable);
        n = client_.watch().read(client_.socket(), in_.space(), ec);
      }
      if (ec) co_return;
      if (n == 0) continue;  // an event for bytes an earlier read already took
      in_.commit(n);
      if (server_ && server_->generation != proxy_.generation() && pinned_ && pending_ == 0 &&
          unsynced_ == 0) {
        co_await send_fatal("57P01",
                            "terminating connection: the database endpoint moved to another "
                            "server");
        co_return;
      }
      while (true) {
        auto m = next_message(in_.view());
        if (!m) {
          co_await violation(m.error().message());
          co_return;
        }
        if (!*m) break;
        MessageView mv = **m;
        if (mv.type == 'X') co_return;
        if (!server_ && mv.type == 'P' && !proxy_.can_lend_now(*pool_)) {
          if (size_t n = defer_prepares(); n > 0) {
            error_code wec;
            co_await client_.write(out_local_, wec);
            out_local_.clear();
            if (wec) co_return;
            in_.consume(n);
            continue;
          }
        }
        if (!server_ && !lend_idle()) {
          // `out` is empty here: a server connection is lent before anything is appended.
          if (!co_await ensure_server()) co_return;
        }
        if (auto bad = handle(mv, out)) {
          co_await violation(*bad);
          co_return;
        }
        in_.consume(mv.total);
      }
      if (!out.empty() && server_) {
        ServerConn* conn = server_.get();
        const size_t sent = send_now(conn->sock, out, ec);
        if (!ec && sent < out.size()) {
          co_await asio::async_write(conn->sock, asio::buffer(out.data() + sent, out.size() - sent),
                                     ec_token(ec));
        }
        out.clear();
        if (ec) co_return;
        if (!server_reading_ && server_.get() == conn) {
          server_reading_ = true;
          read_server(conn);
        }
      }
    }
  }

  // Forwards a lent server connection's replies to the client until it goes back to the pool.
  // A chain of completion handlers rather than a coroutine: a connection is lent per
  // transaction, and co_spawn costs two more turns of the io_context per start (it posts its
  // first step and its completion), which showed as syscalls and wake-ups per transaction.
  // It waits through the connection's ReadWatch and then reads once, instead of
  // async_read_some: right after a batch is written the reply is nearly never there yet, and
  // Asio's read would try a recv first (EAGAIN), one system call per transaction.
  void read_server(ServerConn* conn) {
    if (server_.get() != conn || closed_) return;
    conn->watch.wait(conn->sock,
                     [self = shared_from_this(), conn] { self->on_server_readable(conn); });
  }

  void on_server_readable(ServerConn* conn) {
    if (server_.get() != conn || closed_) return;
    error_code ec;
    size_t n = conn->watch.read(conn->sock, conn->in.space(), ec);
    if (!ec && n == 0) {
      read_server(conn);  // an event for bytes an earlier read already took
      return;
    }
    on_server_data(conn, ec, n);
  }

  void on_server_data(ServerConn* conn, error_code ec, size_t n) {
    if (ec || server_.get() != conn) {
      server_lost(conn);
      return;
    }
    conn->in.commit(n);
    bool idle = false;
    while (true) {
      auto m = next_message(conn->in.view());
      if (!m) {
        server_lost(conn);
        return;
      }
      if (!*m) break;
      const MessageView& mv = **m;
      bool forward = true;
      switch (mv.type) {
        case '1': {
          while (!expects_.empty() && expects_.front().kind != Expect::kParse) {
            expects_.pop_front();
          }
          if (!expects_.empty()) {
            forward = !expects_.front().swallow;
            expects_.pop_front();
          }
          break;
        }
        case 'E': {
          // The server skips to the next Sync: Parses it skipped never created statements.
          while (!expects_.empty() && expects_.front().kind == Expect::kParse) {
            if (!expects_.front().inserted_name.empty()) {
              conn->prepared.erase(expects_.front().inserted_name);
            }
            expects_.pop_front();
          }
          break;
        }
        case 'Z': {
          while (!expects_.empty()) {
            bool sync = expects_.front().kind == Expect::kSync;
            if (!sync && !expects_.front().inserted_name.empty()) {
              conn->prepared.erase(expects_.front().inserted_name);
            }
            expects_.pop_front();
            if (sync) break;
          }
          if (pending_ > 0) --pending_;
          status_ = mv.body.empty() ? 'I' : mv.body[0];
          if (log().should_log(spdlog::level::trace)) {
            log().trace("client={} ReadyForQuery {} pending={} unsynced={} pinned={}", id_, status_,
                        pending_, unsynced_, pinned_);
          }
          idle = pending_ == 0 && status_ == 'I';
          break;
        }
        default: break;
      }
      if (forward) to_client_.append(mv.body.data() - 5, mv.total);
      conn->in.consume(mv.total);
    }
    if (to_client_.empty()) {
      after_client_write(conn, idle, {});
      return;
    }
    size_t sent = 0;
    if (!client_.tls()) {
      sent = send_now(client_.socket(), to_client_, ec);
      if (ec || sent == to_client_.size()) {
        after_client_write(conn, idle, ec);
        return;
      }
    }
    // The client's socket is full (or TLS): the rest goes asynchronously, and nobody else
    // writes to the client meanwhile.
    to_client_.erase(0, sent);
    client_writing_ = true;
    client_.async_write(to_client_, [self = shared_from_this(), conn, idle](error_code e, size_t) {
      self->client_writing_ = false;
      self->after_client_write(conn, idle, e);
    });
  }

  void after_client_write(ServerConn* conn, bool idle, error_code ec) {
    to_client_.clear();
    if (ec) {
      server_lost(conn);
      return;
    }
    // Re-checked after the write: the client may have sent more meanwhile.
    if (idle && server_.get() == conn && pending_ == 0 && unsynced_ == 0 && status_ == 'I' &&
        !pinned_ && conn->in.view().empty()) {
      proxy_.transactions++;
      proxy_.release(*pool_, std::move(server_), true);
      return;
    }
    read_server(conn);
  }

  // The server reader stopped on an error. Under a still-lent connection that means the server
  // went away: the client's transaction is lost.
  void server_lost(ServerConn* conn) {
    to_client_.clear();
    if (server_.get() != conn || closed_) return;
    conn->broken = true;
    proxy_.release(*pool_, std::move(server_), false);
    if (client_writing_) {
      close();
      return;
    }
    asio::co_spawn(proxy_.io(),
                   fatal_and_close(shared_from_this(), "08006",
                                   "server connection lost: the database server closed the "
                                   "connection"),
                   asio::detached);
  }

  void teardown() {
    if (server_) {
      // Mid-transaction, pinned, or with replies outstanding: the connection's state is
      // unknown to the next client, so it is closed (PostgreSQL rolls back on disconnect).
      bool clean = pending_ == 0 && unsynced_ == 0 && status_ == 'I' && !pinned_;
      error_code ec;
      // The server reader may still wait on this socket: it lets go (its watch consumes
      // nothing) before the connection is lent to someone else.
      server_->watch.clear();
      if (!clean) server_->sock.close(ec);
      proxy_.release(*pool_, std::move(server_), clean);
    }
    if (key_.pid != 0 || key_.secret != 0) proxy_.unregister_cancel(key_);
    client_.close();
    closed_ = true;
  }

  ProxyImpl& proxy_;
  ClientStream client_;
  InBuffer in_;
  uint64_t id_ = 0;
  Pool* pool_ = nullptr;
  CancelKey key_;
  std::unique_ptr<ServerConn> server_;
  std::deque<Expect> expects_;
  std::unordered_map<std::string, ClientStatement> statements_;
  std::string out_local_;  // replies the proxy makes itself
  std::string to_client_;  // server replies on their way to the client
  int pending_ = 0;        // sync points sent whose ReadyForQuery has not come back
  int unsynced_ = 0;       // messages sent since the last sync point
  char status_ = 'I';
  uint32_t pin_bits_ = 0;
  bool pinned_ = false;
  bool closed_ = false;
  bool logged_in_ = false;
  bool client_writing_ = false;
  bool server_reading_ = false;  // read_server runs for the lent connection
};

// ---------------------------------------------------------------------------------------------

Status ProxyImpl::init() {
  for (const std::string& cidr : options_.allowed_cidrs) {
    CONCORD_ASSIGN_OR_RETURN(auto net, parse_cidr(cidr));
    allowed_.push_back(net);
  }
  error_code ec;
  auto addr = asio::ip::make_address(options_.listen_host, ec);
  if (ec) {
    return fail(Code::kInvalidArgument,
                "listen address '" + options_.listen_host + "' is not a numeric IP address");
  }
  if (asio::ip::make_address(options_.backend.host, ec); ec) {
    return fail(Code::kInvalidArgument,
                "backend address '" + options_.backend.host + "' is not a numeric IP address");
  }
  if (options_.pool_size < 1) {
    return fail(Code::kInvalidArgument, "pool size must be at least 1");
  }
  pool_size_now = options_.pool_size;
  if (options_.tls_cert_file.empty() != options_.tls_key_file.empty()) {
    return fail(Code::kInvalidArgument, "TLS needs both a certificate and a key file");
  }
  if (!options_.tls_cert_file.empty()) {
    tls_ctx_.use_certificate_chain_file(options_.tls_cert_file, ec);
    if (!ec) tls_ctx_.use_private_key_file(options_.tls_key_file, ssl::context::pem, ec);
    if (ec) {
      return fail(Code::kInvalidArgument, "cannot load TLS certificate/key (" +
                                              options_.tls_cert_file + ", " +
                                              options_.tls_key_file + "): " + ec.message());
    }
    tls_ctx_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                         ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                         ssl::context::no_tlsv1_1);
    tls_enabled_ = true;
  }
  tcp::endpoint ep(addr, options_.listen_port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(1024, ec);
  if (ec) {
    return fail(Code::kUnavailable, "cannot listen on " + options_.listen_host + ":" +
                                        std::to_string(options_.listen_port) + ": " + ec.message());
  }
  port_ = acceptor_.local_endpoint().port();
  backend_shared_ = options_.backend;
  return ok();
}

Status ProxyImpl::start() {
  if (started_) return fail(Code::kFailedPrecondition, "the proxy is already started");
  started_ = true;
  asio::co_spawn(io_, accept_loop(), asio::detached);
  asio::co_spawn(io_, sweep_waiters(), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
  log().info("listening on {}:{} mode={} backend={}:{}", options_.listen_host, port_,
             options_.mode == PoolMode::kSession ? "session" : "transaction", backend_.host,
             backend_.port);
  return ok();
}

void ProxyImpl::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (started_) {
    asio::post(io_, [this] {
      error_code ec;
      acceptor_.close(ec);
      close_all();
    });
    // Coroutines still suspended when the loop stops are destroyed with the io_context.
    asio::post(io_, [this] { io_.stop(); });
    if (thread_.joinable()) thread_.join();
  }
}

void ProxyImpl::close_all() {
  for (auto& [id, w] : splices_) {
    if (auto s = w.lock()) s->close();
  }
  for (auto& [id, w] : clients_) {
    if (auto s = w.lock()) s->close();
  }
  for (auto& [k, pool] : pools_) {
    for (auto& c : pool->idle) {
      error_code ec;
      c->sock.close(ec);
      server_connections--;
    }
    pool->total -= static_cast<int>(pool->idle.size());
    pool->idle.clear();
    // Each waiting coroutine is owned by its resume handler, which its Waiter holds: posted,
    // it is destroyed with the io_context's queue instead of being kept alive by itself.
    while (hand_to_waiter(*pool, nullptr)) {
    }
  }
}

void ProxyImpl::set_backend(Endpoint b) {
  {
    std::lock_guard<std::mutex> l(shared_mu_);
    backend_shared_ = b;
  }
  asio::post(io_, [this, b] { switch_backend(b); });
}

void ProxyImpl::switch_backend(Endpoint b) {
  if (b == backend_) return;
  backend_ = b;
  ++generation_;
  backend_switches++;
  log().info("backend switched to {}:{} generation={}", b.host, b.port, generation_);
  for (auto& [id, w] : splices_) {
    if (auto s = w.lock()) s->close();
  }
  for (auto& [k, pool] : pools_) {
    for (auto& c : pool->idle) {
      error_code ec;
      c->sock.close(ec);
      server_connections--;
    }
    pool->total -= static_cast<int>(pool->idle.size());
    pool->idle.clear();
    pool->server_params.clear();
    // Waiters may now open connections to the new backend.
    while (hand_to_waiter(*pool, nullptr)) {
    }
  }
  for (auto& [id, w] : clients_) {
    if (auto s = w.lock()) s->on_backend_switch(generation_);
  }
}

void ProxyImpl::resize_pools(int n) {
  if (n == options_.pool_size) return;
  log().info("pool size {} -> {}", options_.pool_size, n);
  options_.pool_size = n;
  pool_size_now = n;
  for (auto& [k, pool] : pools_) {
    while (pool->total > n && !pool->idle.empty()) {
      error_code ec;
      pool->idle.back()->sock.close(ec);
      pool->idle.pop_back();
      pool->total--;
      server_connections--;
    }
    // A waiter told to retry opens a connection when it runs, so count the room given away.
    for (int room = n - pool->total; room > 0 && hand_to_waiter(*pool, nullptr); --room) {
    }
  }
}

ProxyStats ProxyImpl::stats() const {
  ProxyStats s;
  s.clients_accepted = clients_accepted;
  s.clients_active = clients_active;
  s.server_connections = server_connections;
  s.server_connects = server_connects;
  s.transactions = transactions;
  s.pinned_clients = pinned_clients;
  s.reprepares = reprepares;
  s.pool_waits = pool_waits;
  s.wait_timeouts = wait_timeouts;
  s.protocol_errors = protocol_errors;
  s.backend_switches = backend_switches;
  s.clients_refused = clients_refused;
  s.pool_size = pool_size_now;
  return s;
}

awaitable<void> ProxyImpl::accept_loop() {
  while (true) {
    error_code ec;
    tcp::socket s = co_await acceptor_.async_accept(ec_token(ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
      // EMFILE and friends: keep serving the connections already open.
      log().warn("accept failed: {}", ec.message());
      asio::steady_timer t(io_);
      t.expires_after(std::chrono::milliseconds(50));
      co_await t.async_wait(ec_token(ec));
      continue;
    }
    if (!allowed_.empty()) {
      error_code peer_ec;
      auto peer = s.remote_endpoint(peer_ec);
      bool allowed = false;
      if (!peer_ec && peer.address().is_v4()) {
        const uint32_t ip = peer.address().to_v4().to_uint();
        for (const auto& [net, mask] : allowed_) allowed = allowed || (ip & mask) == net;
      }
      if (!allowed) {
        clients_refused++;
        s.close(peer_ec);
        continue;
      }
    }
    clients_accepted++;
    if (options_.mode == PoolMode::kSession) {
      auto session = std::make_shared<SpliceSession>(*this, std::move(s));
      asio::co_spawn(io_, SpliceSession::run(session), asio::detached);
    } else {
      auto session = std::make_shared<ClientSession>(*this, std::move(s));
      asio::co_spawn(io_, ClientSession::run(session), asio::detached);
    }
  }
}

Pool& ProxyImpl::pool_for(const StartupParams& p) {
  StartupParams server_params;
  server_params.user = p.user;
  server_params.database = p.database;
  for (const auto& kv : p.other) {
    if (kv.first != "application_name") server_params.other.push_back(kv);
  }
  std::sort(server_params.other.begin(), server_params.other.end());
  std::string key = p.database + '\0' + p.user;
  for (const auto& [k, v] : server_params.other) key += '\0' + k + '=' + v;
  auto& slot = pools_[key];
  if (!slot) {
    slot = std::make_unique<Pool>();
    slot->key = key;
    slot->params = std::move(server_params);
  }
  return *slot;
}

namespace {
// True when an idle server connection's socket is closed or has unexpected bytes pending
// (a FATAL from a terminated backend): it must not be lent.
bool looks_dead(tcp::socket& s) {
  char b;
  ssize_t n = ::recv(s.native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  if (n > 0) return true;
  return errno != EAGAIN && errno != EWOULDBLOCK;
}
}  // namespace

std::unique_ptr<ServerConn> ProxyImpl::take_idle(Pool& pool) {
  while (!pool.idle.empty()) {
    auto c = std::move(pool.idle.back());
    pool.idle.pop_back();
    // A connection idle for a moment is lent unchecked (a recv per transaction is a measurable
    // share of the proxy's cost); one idle longer is peeked at first, as PgBouncer's
    // server_check_delay does.
    bool fresh = std::chrono::steady_clock::now() - c->idle_since < kIdleCheckAfter;
    if (c->generation == generation_ && (fresh || !looks_dead(c->sock))) return c;
    error_code ec;
    c->sock.close(ec);
    pool.total--;
    server_connections--;
  }
  return nullptr;
}

awaitable<Result<std::unique_ptr<ServerConn>>> ProxyImpl::acquire(Pool& pool) {
  bool waited = false;
  while (true) {
    if (auto c = take_idle(pool)) co_return std::move(c);
    if (pool.total < options_.pool_size) {
      pool.total++;
      auto r = co_await open_server(pool);
      if (!r) {
        pool.total--;
        hand_to_waiter(pool, nullptr);  // the slot is free again
      }
      co_return r;
    }
    if (!waited) pool_waits++;
    waited = true;
    Waiter w;
    w.deadline = std::chrono::steady_clock::now() + options_.query_wait_timeout;
    pool.waiters.push_back(&w);
    co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
        [&w](auto handler) { w.resume = std::move(handler); }, asio::use_awaitable);
    // Off the queue now: handed a connection, told to retry, or (neither) timed out.
    if (w.conn) co_return std::move(w.conn);
    if (w.retry) continue;
    wait_timeouts++;
    co_return fail(Code::kResourceExhausted,
                   "no server connection became free within " +
                       std::to_string(options_.query_wait_timeout.count()) + " ms (pool size " +
                       std::to_string(options_.pool_size) + ")");
  }
}

void ProxyImpl::release(Pool& pool, std::unique_ptr<ServerConn> conn, bool reusable) {
  conn->watch.clear();  // no reader waits on a connection in the pool
  if (!reusable || conn->broken || conn->generation != generation_ || !conn->sock.is_open() ||
      conn->prepared.size() > kMaxServerStatements || pool.total > options_.pool_size) {
    error_code ec;
    conn->sock.close(ec);
    pool.total--;
    server_connections--;
    hand_to_waiter(pool, nullptr);  // the slot is free again
    return;
  }
  if (pool.waiters.empty()) {
    conn->idle_since = std::chrono::steady_clock::now();
    pool.idle.push_back(std::move(conn));
    return;
  }
  hand_to_waiter(pool, std::move(conn));
}

bool ProxyImpl::hand_to_waiter(Pool& pool, std::unique_ptr<ServerConn> conn) {
  if (pool.waiters.empty()) return false;
  Waiter* w = pool.waiters.front();
  pool.waiters.pop_front();
  w->retry = conn == nullptr;
  w->conn = std::move(conn);
  resume(w);
  return true;
}

// Every waiter past its deadline is resumed empty-handed (and fails with the wait timeout). The
// sweep runs every tenth of the timeout (10 ms to 1 s), so a wait may last that much longer
// than query_wait_timeout; PgBouncer checks its query_wait_timeout the same way, periodically.
awaitable<void> ProxyImpl::sweep_waiters() {
  const auto period = std::clamp<std::chrono::milliseconds>(
      options_.query_wait_timeout / 10, std::chrono::milliseconds(10), std::chrono::seconds(1));
  asio::steady_timer timer(io_);
  while (true) {
    timer.expires_after(period);
    error_code ec;
    co_await timer.async_wait(ec_token(ec));
    if (ec) co_return;
    const auto now = std::chrono::steady_clock::now();
    for (auto& [key, pool] : pools_) {
      // Deadlines grow along the queue: each waiter was queued at its own "now" with the same
      // timeout, at the back.
      while (!pool->waiters.empty() && pool->waiters.front()->deadline <= now) {
        Waiter* w = pool->waiters.front();
        pool->waiters.pop_front();
        resume(w);
      }
    }
  }
}

awaitable<Result<std::unique_ptr<ServerConn>>> ProxyImpl::open_server(Pool& pool) {
  Endpoint b = backend_;
  uint64_t gen = generation_;
  auto conn = std::make_unique<ServerConn>(tcp::socket(io_));
  conn->generation = gen;
  conn->backend = b;
  const std::string where = b.host + ":" + std::to_string(b.port);
  error_code ec;
  auto addr = asio::ip::make_address(b.host, ec);
  if (ec) co_return fail(Code::kInvalidArgument, "backend address " + b.host + " is invalid");
  // The deadline closes the socket; `done` keeps a late timer callback off a finished attempt.
  struct Deadline {
    bool done = false;
    bool timed_out = false;
    ServerConn* conn = nullptr;
  };
  auto deadline = std::make_shared<Deadline>();
  deadline->conn = conn.get();
  asio::steady_timer timer(io_);
  timer.expires_after(options_.connect_timeout);
  timer.async_wait([deadline](error_code e) {
    if (!e && !deadline->done) {
      deadline->timed_out = true;
      error_code ignored;
      deadline->conn->sock.close(ignored);
    }
  });
  struct CancelOnExit {
    asio::steady_timer& t;
    Deadline& d;
    ~CancelOnExit() {
      d.done = true;
      t.cancel();
    }
  } cancel_on_exit{timer, *deadline};

  auto unavailable = [&](std::string why) {
    return fail(Code::kUnavailable, "could not connect to the database server at " + where + ": " +
                                        (deadline->timed_out ? "timed out" : why));
  };
  co_await conn->sock.async_connect(tcp::endpoint(addr, b.port), ec_token(ec));
  if (ec) co_return unavailable(ec.message());
  set_nodelay(conn->sock);
  std::string out;
  append_startup(out, pool.params);
  co_await asio::async_write(conn->sock, asio::buffer(out), ec_token(ec));
  if (ec) co_return unavailable(ec.message());

  std::optional<ScramClient> scram;
  std::vector<std::pair<std::string, std::string>> params;
  while (true) {
    auto m = next_message(conn->in.view());
    if (!m) co_return unavailable("malformed reply: " + m.error().message());
    if (!*m) {
      size_t n = co_await conn->sock.async_read_some(conn->in.space(), ec_token(ec));
      if (ec) co_return unavailable(ec.message());
      conn->in.commit(n);
      continue;
    }
    MessageView mv = **m;
    std::string body(mv.body);
    conn->in.consume(mv.total);
    if (mv.type == 'E') {
      auto e = parse_error(body);
      std::string msg = e ? e->sqlstate + " " + e->message : "unreadable error";
      co_return fail(Code::kUnavailable, "the database server at " + where +
                                             " refused the login of user \"" + pool.params.user +
                                             "\": " + msg);
    }
    if (mv.type == 'R') {
      if (body.size() < 4) co_return unavailable("short authentication message");
      int32_t kind = get_int32(body.data());
      out.clear();
      if (kind == 0) continue;
      if (kind == 10) {
        if (body.find("SCRAM-SHA-256") == std::string::npos) {
          co_return unavailable("server offers no SCRAM-SHA-256");
        }
        auto key_it = client_keys_.find(pool.params.user);
        auto vtext = verifier(pool.params.user);
        auto v = vtext ? parse_scram_verifier(*vtext)
                       : Result<ScramVerifier>(fail(Code::kNotFound, "no verifier"));
        if (key_it == client_keys_.end() || !v) {
          co_return fail(Code::kUnavailable,
                         "no key to log in to the database server as \"" + pool.params.user + "\"");
        }
        scram.emplace(key_it->second, v->server_key);
        std::string first = scram->first();
        std::string sasl("SCRAM-SHA-256");
        sasl.push_back('\0');
        put_int32(sasl, static_cast<int32_t>(first.size()));
        sasl += first;
        append_message(out, 'p', sasl);
      } else if (kind == 11 && scram) {
        auto fin = scram->final(std::string_view(body).substr(4));
        if (!fin) co_return fail(fin.error());
        append_message(out, 'p', *fin);
      } else if (kind == 12 && scram) {
        auto st = scram->verify(std::string_view(body).substr(4));
        if (!st) co_return fail(st.error());
        continue;
      } else {
        co_return unavailable("authentication method " + std::to_string(kind) +
                              " is not supported toward the server (use scram-sha-256 or "
                              "trust)");
      }
      co_await asio::async_write(conn->sock, asio::buffer(out), ec_token(ec));
      if (ec) co_return unavailable(ec.message());
      continue;
    }
    if (mv.type == 'S') {
      size_t z = body.find('\0');
      if (z != std::string::npos) {
        std::string name = body.substr(0, z);
        std::string value = body.substr(z + 1);
        if (!value.empty() && value.back() == '\0') value.pop_back();
        params.emplace_back(std::move(name), std::move(value));
      }
      continue;
    }
    if (mv.type == 'K' && body.size() == 8) {
      conn->key = CancelKey{get_int32(body.data()), get_int32(body.data() + 4)};
      continue;
    }
    if (mv.type == 'Z') break;
  }
  if (gen == generation_ || pool.server_params.empty()) pool.server_params = std::move(params);
  server_connects++;
  server_connections++;
  co_return conn;
}

awaitable<void> ProxyImpl::cancel(CancelKey key) {
  auto it = cancel_map_.find(uint64_t(uint32_t(key.pid)) << 32 | uint32_t(key.secret));
  if (it == cancel_map_.end()) co_return;
  auto session = it->second.lock();
  if (!session || !session->server()) co_return;
  Endpoint b = session->server()->backend;
  CancelKey server_key = session->server()->key;
  error_code ec;
  tcp::socket s(io_);
  auto addr = asio::ip::make_address(b.host, ec);
  if (ec) co_return;
  co_await s.async_connect(tcp::endpoint(addr, b.port), ec_token(ec));
  if (ec) co_return;
  std::string out;
  append_cancel(out, server_key);
  co_await asio::async_write(s, asio::buffer(out), ec_token(ec));
}

}  // namespace

Result<Endpoint> parse_endpoint(std::string_view text) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return fail(Code::kInvalidArgument,
                "endpoint '" + std::string(text) + "' is not <address>:<port>");
  }
  std::string host(text.substr(0, colon));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::string port(text.substr(colon + 1));
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) > 65535) {
    return fail(Code::kInvalidArgument, "endpoint '" + std::string(text) + "' has a bad port");
  }
  error_code ec;
  asio::ip::make_address(host, ec);
  if (ec) {
    return fail(Code::kInvalidArgument,
                "endpoint '" + std::string(text) + "' needs a numeric IP address");
  }
  return Endpoint{host, static_cast<uint16_t>(std::stoi(port))};
}

Result<std::string> proxy_v1_header(const Endpoint& client, const Endpoint& local) {
  error_code ec1, ec2;
  asio::ip::address a = asio::ip::make_address(client.host, ec1);
  asio::ip::address b = asio::ip::make_address(local.host, ec2);
  if (ec1 || ec2) {
    return fail(Code::kInvalidArgument,
                "PROXY header: not numeric addresses: " + client.host + ", " + local.host);
  }
  // A v4-mapped IPv6 address is the IPv4 client of a dual-stack listener.
  auto plain = [](asio::ip::address x) {
    if (x.is_v6() && x.to_v6().is_v4_mapped()) {
      return asio::ip::address(asio::ip::make_address_v4(asio::ip::v4_mapped, x.to_v6()));
    }
    return x;
  };
  a = plain(a);
  b = plain(b);
  if (a.is_v4() && b.is_v4()) {
    return "PROXY TCP4 " + a.to_string() + " " + b.to_string() + " " + std::to_string(client.port) +
           " " + std::to_string(local.port) + "\r\n";
  }
  auto v6 = [](const asio::ip::address& x) {
    return x.is_v6() ? x.to_v6() : asio::ip::make_address_v6(asio::ip::v4_mapped, x.to_v4());
  };
  return "PROXY TCP6 " + v6(a).to_string() + " " + v6(b).to_string() + " " +
         std::to_string(client.port) + " " + std::to_string(local.port) + "\r\n";
}

int default_pool_size(int64_t vcpus) {
  return static_cast<int>(std::clamp<int64_t>(4 * vcpus, 8, 64));
}

Result<PoolMode> parse_pool_mode(std::string_view text) {
  if (text == "session") return PoolMode::kSession;
  if (text == "transaction") return PoolMode::kTransaction;
  return fail(Code::kInvalidArgument,
              "pool mode '" + std::string(text) + "' is unknown (session, transaction)");
}

Result<std::pair<uint32_t, uint32_t>> parse_cidr(std::string_view text) {
  const size_t slash = text.find('/');
  const std::string address(text.substr(0, slash));
  int bits = 32;
  if (slash != std::string_view::npos) {
    std::string_view b = text.substr(slash + 1);
    if (b.empty() || b.size() > 2 ||
        !std::all_of(b.begin(), b.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      bits = -1;
    } else {
      bits = std::stoi(std::string(b));
    }
  }
  error_code ec;
  auto ip = asio::ip::make_address_v4(address, ec);
  if (ec || bits < 0 || bits > 32) {
    return fail(Code::kInvalidArgument,
                "'" + std::string(text) + "' is not an IPv4 CIDR such as 192.0.2.0/24");
  }
  const uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
  return std::pair<uint32_t, uint32_t>{ip.to_uint() & mask, mask};
}

Result<std::unique_ptr<Proxy>> Proxy::create(ProxyOptions options) {
  auto impl = std::make_unique<ProxyImpl>(std::move(options));
  CONCORD_RETURN_IF_ERROR(impl->init());
  return std::unique_ptr<Proxy>(std::move(impl));
}

}  // namespace concord::database::proxy
