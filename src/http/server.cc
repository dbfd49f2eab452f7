#include "http/server.h"

#include <unistd.h>

#include <array>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>
#include <vector>

#include "base/log.h"
#include "http/session.h"

namespace concord::http {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using SteadyTime = std::chrono::steady_clock::time_point;

namespace {

// Bytes asked of the socket per read. Large enough for a whole typical request (and a few
// pipelined ones); the parser consumes the buffer as it goes, so it does not accumulate.
constexpr size_t kReadChunk = 16 * 1024;
// After the last response on a connection we half-close and read (and discard) what the client
// still sends, so that unread request bytes do not make the kernel answer with a RST that
// destroys the response in flight (the "lingering close" of RFC 9112 9.6). Bounded both ways.
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr size_t kLingerBytes = 256 * 1024;
// After accept() fails (EMFILE, ENOBUFS) wait before retrying instead of spinning.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);
// After the grace period, how long stop() waits for forcibly closed connections to unwind.
constexpr auto kForceCloseWait = std::chrono::seconds(2);

double resident_memory_bytes() {
  // /proc/self/statm: size resident shared text lib data dt, in pages.
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0;
  unsigned long resident = 0;
  int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

std::string origin_for(const tcp::endpoint& ep) {
  std::string host = ep.address().to_string();
  if (ep.address().is_v6()) host = "[" + host + "]";
  return "http://" + host + ":" + std::to_string(ep.port());
}

}  // namespace

class Server::Impl {
 public:
  class Connection;

  Impl(ServerOptions options, std::shared_ptr<const Router> router,
       std::shared_ptr<Registry> metrics);
  ~Impl();

  Status start();
  void stop();
  uint16_t port() const { return port_.load(); }

  // Connection bookkeeping, called from connection strands. add() refuses once stopping.
  bool add(Connection* c);
  void remove(Connection* c);

  internal::ServerContext& context() { return ctx_; }
  const ServerOptions& options() const { return ctx_.options; }

 private:
  void do_accept();
  void on_accept(const boost::system::error_code& ec, tcp::socket socket);
  void run_thread();
  std::vector<std::shared_ptr<Connection>> live_connections();

  std::shared_ptr<const Router> router_;
  std::shared_ptr<Registry> registry_;
  internal::ServerContext ctx_;
  std::shared_ptr<std::atomic<int64_t>> open_connections_ =
      std::make_shared<std::atomic<int64_t>>(0);

  std::mutex mu_;  // guards conns_ and the stopping handshake with add()
  std::condition_variable conns_changed_;
  std::unordered_set<Connection*> conns_;

  std::mutex lifecycle_mu_;  // serialises start() and stop()
  enum class State { kNew, kRunning, kStopped };
  State state_ = State::kNew;

  std::atomic<uint16_t> port_{0};
  std::vector<std::thread> threads_;

  // Declared after everything the pending handlers reference, so the io_context (which
  // destroys pending handlers, and with them connections) goes first.
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  asio::strand<asio::io_context::executor_type> accept_strand_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_;
};

// One accepted socket. Every member is touched only on the connection's strand (the socket's
// executor), so there are no locks here; the Impl reaches a connection only by posting to it.
//
// The loop is: read -> Session::advance -> write -> (keep-alive) advance again -> read...; one
// operation is outstanding at a time besides the timer. The timer enforces one deadline at a
// time (header, body, idle, write, linger) and is re-armed lazily: moving the deadline later
// costs nothing per request, the timer notices when it fires early and waits again.
class Server::Impl::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Impl& server, tcp::socket socket)
      : server_(server),
        socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        session_(server.context()) {}

  ~Connection() { server_.remove(this); }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  auto executor() { return socket_.get_executor(); }

  void start() {
    // The sink holds the connection weakly: a Responder kept past the server's life (or past a
    // forced close) must not keep the connection, and through it the server, referenced.
    std::weak_ptr<Connection> weak = weak_from_this();
    session_.set_deferral([weak]() -> DeferredSink {
      return [weak](Response response) {
        auto self = weak.lock();
        if (!self) return;  // closed meanwhile: the answer has nowhere to go
        auto exec = self->executor();
        asio::post(exec, [self = std::move(self), response = std::move(response)]() mutable {
          self->on_deferred(std::move(response));
        });
      };
    });
    boost::system::error_code ec;
    socket_.set_option(tcp::no_delay(true), ec);
    // The first request's head must arrive within header_timeout of the connect.
    set_deadline(now() + options().header_timeout);
    step();
  }

  // Server stop: an idle keep-alive connection closes now; a busy one finishes its request
  // (the response says "Connection: close") and closes then.
  void on_server_stop() {
    if (closed_ || lingering_ || writing_) return;
    if (session_.phase() == internal::Session::Phase::kIdle && in_.size() == 0) close();
  }

  void force_close() { close(); }

 private:
  using Phase = internal::Session::Phase;

  static SteadyTime now() { return std::chrono::steady_clock::now(); }
  const ServerOptions& options() const { return server_.options(); }

  void step() {
    auto next = session_.advance(in_);
    Phase phase = session_.phase();
    if (phase != last_phase_) {
      if (phase == Phase::kHead && !fresh_) {
        set_deadline(now() + options().header_timeout);
      } else if (phase == Phase::kBody || phase == Phase::kResponding) {
        // body_timeout bounds both receiving the body and sending the response.
        set_deadline(now() + options().body_timeout);
      }
      last_phase_ = phase;
    }
    if (next == internal::Session::Next::kWrite) {
      do_write();
      return;
    }
    if (next == internal::Session::Next::kWait) {
      // Nothing is outstanding on the socket while a deferred handler works, so the connection
      // keeps itself alive until on_deferred() or close(). No deadline runs meanwhile: the
      // handler bounds its own work, and a dropped Responder answers 500.
      waiting_self_ = shared_from_this();
      return;
    }
    if (phase == Phase::kIdle && in_.size() == 0 &&
        server_.context().stopping.load(std::memory_order_relaxed)) {
      close();
      return;
    }
    do_read();
  }

  // On the strand, with the answer of the deferred handler.
  void on_deferred(Response response) {
    waiting_self_.reset();  // the posted handler holds a reference while this runs
    if (closed_ || session_.phase() != Phase::kWaiting) return;
    session_.complete(std::move(response));
    set_deadline(now() + options().body_timeout);
    last_phase_ = Phase::kResponding;
    do_write();
  }

  void do_read() {
    reading_ = true;
    socket_.async_read_some(in_.prepare(kReadChunk),
                            [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                              self->on_read(ec, n);
                            });
  }

  void on_read(boost::system::error_code ec, size_t n) {
    reading_ = false;
    if (closed_) return;
    if (timed_out_) {
      // The deadline passed while the head or body was incomplete (slowloris, or a client
      // that stalled): answer 408 if the socket still takes it, then close.
      session_.timeout();
      set_deadline(now() + options().header_timeout);
      do_write();
      return;
    }
    if (ec) {
      close();  // EOF, reset, or cancelled by close()
      return;
    }
    in_.commit(n);
    // A spooled body may be large: its deadline bounds each pause, not the whole transfer.
    if (session_.phase() == Phase::kBody && session_.streaming()) {
      set_deadline(now() + options().body_timeout);
    }
    step();
  }

  void do_write() {
    writing_ = true;
    const std::array<asio::const_buffer, 2> buffers = {asio::buffer(session_.output()),
                                                       asio::buffer(session_.output_body())};
    asio::async_write(
        socket_, buffers,
        [self = shared_from_this()](boost::system::error_code ec, size_t) { self->on_write(ec); });
  }

  void on_write(boost::system::error_code ec) {
    writing_ = false;
    if (closed_) return;
    if (ec) {
      close();
      return;
    }
    if (session_.phase() != Phase::kResponding) {
      step();  // that was a "100 Continue": go on reading the body
      return;
    }
    if (session_.continue_output()) {
      // A file body goes out piece by piece; the deadline bounds each piece, not the whole.
      set_deadline(now() + options().body_timeout);
      do_write();
      return;
    }
    if (session_.close_after_write()) {
      begin_linger();
      return;
    }
    fresh_ = false;
    last_phase_ = Phase::kIdle;
    set_deadline(now() + options().idle_timeout);
    step();
  }

  void begin_linger() {
    lingering_ = true;
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    if (ec) {
      close();
      return;
    }
    set_deadline(now() + kLingerTime);
    in_.clear();
    linger_read();
  }

  void linger_read() {
    socket_.async_read_some(in_.prepare(kReadChunk),
                            [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                              if (self->closed_) return;
                              self->linger_bytes_ += n;
                              if (ec || self->linger_bytes_ > kLingerBytes) {
                                self->close();
                                return;
                              }
                              self->linger_read();
                            });
  }

  void close() {
    // Every caller runs in a handler that holds its own reference, so dropping this one here
    // never destroys the connection under our feet.
    waiting_self_.reset();
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ec;
    socket_.close(ec);
    timer_.cancel();
  }

  void set_deadline(SteadyTime when) {
    deadline_ = when;
    if (!timer_armed_ || when < timer_expiry_) arm(when);
  }

  void arm(SteadyTime when) {
    timer_armed_ = true;
    timer_expiry_ = when;
    ++timer_generation_;
    timer_.expires_at(when);
    timer_.async_wait([self = shared_from_this(), gen = timer_generation_](
                          boost::system::error_code) { self->on_timer(gen); });
  }

  void on_timer(uint64_t generation) {
    if (generation != timer_generation_ || closed_) return;  // superseded by a re-arm
    timer_armed_ = false;
    // A deferred handler has the request: no deadline applies until its answer arrives
    // (on_deferred() arms the write deadline).
    if (session_.phase() == Phase::kWaiting) return;
    if (now() < deadline_) {
      arm(deadline_);  // the deadline moved later since this wait began
      return;
    }
    if (lingering_ || writing_) {
      close();  // the client does not read what we send, or lingers too long
      return;
    }
    Phase phase = session_.phase();
    if ((phase == Phase::kHead || phase == Phase::kBody) && reading_ && !timed_out_) {
      timed_out_ = true;
      boost::system::error_code ec;
      socket_.cancel(ec);  // on_read() then writes the 408
      return;
    }
    close();  // idle past idle_timeout (or past header_timeout without a byte): just close
  }

  Impl& server_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  boost::beast::flat_buffer in_;
  internal::Session session_;

  SteadyTime deadline_{};
  SteadyTime timer_expiry_{};
  uint64_t timer_generation_ = 0;
  bool timer_armed_ = false;

  Phase last_phase_ = Phase::kIdle;
  bool fresh_ = true;  // no response sent yet: the header deadline runs from the connect
  bool reading_ = false;
  bool writing_ = false;
  bool lingering_ = false;
  bool timed_out_ = false;
  bool closed_ = false;
  size_t linger_bytes_ = 0;
  // Set while a deferred handler holds the request (see step()).
  std::shared_ptr<Connection> waiting_self_;
};

Server::Impl::Impl(ServerOptions options, std::shared_ptr<const Router> router,
                   std::shared_ptr<Registry> metrics)
    : router_(std::move(router)),
      registry_(metrics ? std::move(metrics) : std::make_shared<Registry>()),
      io_(std::max(1, options.threads)),
      accept_strand_(asio::make_strand(io_)),
      acceptor_(accept_strand_),
      accept_retry_(accept_strand_) {
  if (!router_) router_ = std::make_shared<Router>();
  ctx_.options = std::move(options);
  ctx_.router = router_.get();
  ctx_.registry = registry_.get();
}

Server::Impl::~Impl() {
  stop();
}

Status Server::Impl::start() {
  std::lock_guard lifecycle(lifecycle_mu_);
  if (state_ != State::kNew) {
    return fail(Code::kFailedPrecondition, "the HTTP server was already started");
  }
  const ServerOptions& opts = ctx_.options;
  boost::system::error_code ec;
  tcp::endpoint endpoint;
  auto address = asio::ip::make_address(opts.bind_address, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, opts.port);
  } else {
    tcp::resolver resolver(io_);
    auto results =
        resolver.resolve(opts.bind_address, std::to_string(opts.port), tcp::resolver::passive, ec);
    if (ec || results.empty()) {
      return fail(Code::kInvalidArgument, "cannot resolve HTTP bind address \"" +
                                              opts.bind_address + "\": " + ec.message());
    }
    endpoint = results.begin()->endpoint();
  }
  std::string where = endpoint.address().to_string() + ":" + std::to_string(opts.port);
  if (acceptor_.open(endpoint.protocol(), ec); ec) {
    return fail(Code::kUnavailable, "cannot open a socket for " + where + ": " + ec.message());
  }
  acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (acceptor_.bind(endpoint, ec); ec) {
    acceptor_.close(ec);
    return fail(Code::kUnavailable, "cannot bind " + where + ": " + ec.message());
  }
  if (acceptor_.listen(asio::socket_base::max_listen_connections, ec); ec) {
    acceptor_.close(ec);
    return fail(Code::kUnavailable, "cannot listen on " + where + ": " + ec.message());
  }
  tcp::endpoint bound = acceptor_.local_endpoint(ec);
  port_ = bound.port();
  ctx_.fallback_origin = origin_for(bound);

  auto open = open_connections_;
  registry_->gauge_fn("concord_http_open_connections", "Open HTTP client connections.",
                      [open] { return static_cast<double>(open->load()); });
  registry_->gauge_fn("process_resident_memory_bytes", "Resident memory size in bytes.",
                      resident_memory_bytes);

  work_.emplace(io_.get_executor());
  asio::post(accept_strand_, [this] { do_accept(); });
  int n = std::max(1, opts.threads);
  threads_.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { run_thread(); });
  state_ = State::kRunning;
  logger("http")->info("listening on {} with {} threads", ctx_.fallback_origin, n);
  return ok();
}

void Server::Impl::run_thread() {
  for (;;) {
    try {
      io_.run();
      return;
    } catch (const std::exception& e) {
      // Handlers catch their own errors; this is for the unexpected (allocation failure in
      // the I/O machinery). Keep the thread serving.
      logger("http")->error("I/O thread caught: {}", e.what());
    } catch (...) {
      logger("http")->error("I/O thread caught a non-exception");
    }
  }
}

void Server::Impl::do_accept() {
  acceptor_.async_accept(
      asio::make_strand(io_),
      asio::bind_executor(accept_strand_,
                          [this](const boost::system::error_code& ec, tcp::socket socket) {
                            on_accept(ec, std::move(socket));
                          }));
}

void Server::Impl::on_accept(const boost::system::error_code& ec, tcp::socket socket) {
  if (!acceptor_.is_open() || ec == asio::error::operation_aborted) return;
  if (ec) {
    logger("http")->warn("accept failed: {}; retrying in {} ms", ec.message(),
                         kAcceptRetryDelay.count());
    accept_retry_.expires_after(kAcceptRetryDelay);
    accept_retry_.async_wait([this](const boost::system::error_code& wait_ec) {
      if (!wait_ec && acceptor_.is_open()) do_accept();
    });
    return;
  }
  auto conn = std::make_shared<Connection>(*this, std::move(socket));
  if (add(conn.get())) {
    asio::post(conn->executor(), [conn] { conn->start(); });
  }
  // else: stopping; dropping the last reference closes the socket.
  do_accept();
}

bool Server::Impl::add(Connection* c) {
  std::lock_guard lock(mu_);
  if (ctx_.stopping.load()) return false;
  conns_.insert(c);
  open_connections_->fetch_add(1);
  return true;
}

void Server::Impl::remove(Connection* c) {
  std::lock_guard lock(mu_);
  if (conns_.erase(c) != 0) {
    open_connections_->fetch_sub(1);
    conns_changed_.notify_all();
  }
}

auto Server::Impl::live_connections() -> std::vector<std::shared_ptr<Connection>> {
  std::vector<std::shared_ptr<Connection>> live;
  std::lock_guard lock(mu_);
  live.reserve(conns_.size());
  for (Connection* c : conns_) {
    // A connection whose last reference is gone is blocked in its destructor on mu_; its
    // weak_ptr is already expired, so it is skipped.
    if (auto sp = c->weak_from_this().lock()) live.push_back(std::move(sp));
  }
  return live;
}

void Server::Impl::stop() {
  std::lock_guard lifecycle(lifecycle_mu_);
  if (state_ != State::kRunning) {
    state_ = State::kStopped;
    return;
  }
  for (const std::thread& t : threads_) {
    if (t.get_id() == std::this_thread::get_id()) {
      // Joining ourselves would deadlock; this is a wiring bug, not a runtime condition.
      logger("http")->critical("Server::stop() called from an I/O thread (a handler)");
      std::abort();
    }
  }
  state_ = State::kStopped;

  // 1. Stop accepting.
  asio::post(accept_strand_, [this] {
    boost::system::error_code ec;
    acceptor_.close(ec);
    accept_retry_.cancel();
  });

  // 2. Idle connections close now; busy ones answer with "Connection: close" and then close.
  {
    std::lock_guard lock(mu_);
    ctx_.stopping.store(true);
  }
  for (auto& c : live_connections()) {
    asio::post(c->executor(), [c] { c->on_server_stop(); });
  }

  // 3. In-flight requests get up to shutdown_grace.
  {
    std::unique_lock lock(mu_);
    conns_changed_.wait_for(lock, ctx_.options.shutdown_grace, [&] { return conns_.empty(); });
  }

  // 4. Whatever is left is closed.
  auto rest = live_connections();
  if (!rest.empty()) {
    logger("http")->warn("closing {} connections still busy after the shutdown grace period",
                         rest.size());
  }
  for (auto& c : rest) asio::post(c->executor(), [c] { c->force_close(); });
  rest.clear();
  {
    std::unique_lock lock(mu_);
    conns_changed_.wait_for(lock, kForceCloseWait, [&] { return conns_.empty(); });
  }

  // 5. Stop the threads. A handler still blocked keeps its thread (and join) waiting: handlers
  // must not block indefinitely.
  work_.reset();
  io_.stop();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  logger("http")->info("stopped {}", ctx_.fallback_origin);
}

Server::Server(ServerOptions options, std::shared_ptr<const Router> router,
               std::shared_ptr<Registry> metrics)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(router), std::move(metrics))) {}

Server::~Server() {
  impl_->stop();
}

Status Server::start() {
  return impl_->start();
}

uint16_t Server::port() const {
  return impl_->port();
}

void Server::stop() {
  impl_->stop();
}

}  // namespace concord::http
