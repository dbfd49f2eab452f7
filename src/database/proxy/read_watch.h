// ReadWatch: when a TCP socket may have bytes to read, without a system call per wait.
#pragma once

// clang-format off
#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including it
// clang-format on
#include <sys/socket.h>

#include <boost/asio.hpp>
#include <cerrno>
#include <functional>
#include <memory>
#include <new>
#include <vector>

namespace concord::database::proxy {

// Boost 1.74's epoll reactor registers a socket once, edge-triggered, but charges a system call
// for every wait on it: async_read_some first tries a recv (EAGAIN when the peer has not
// answered yet, which is the usual case for a server's reply right after a query was sent), and
// async_wait re-arms with epoll_ctl(MOD) instead (its start_op does that whenever the socket's
// read queue is empty). PgBouncer's level-triggered epoll pays neither: it reads only a socket
// that epoll reported.
//
// A ReadWatch keeps two operations of its own in the socket's read queue while it is armed. On
// each readiness event the reactor performs them in order: the first completes (at once, in the
// same turn, as the reactor's first completed operation always does), the second sees that one
// already completed in this pass and stays queued; the completion then queues a new operation
// behind it, which costs nothing because the queue is not empty. So arming costs one epoll_ctl
// (which also reports bytes that arrived before it) and every wait after that none; the reader
// then reads with one non-blocking recv. A socket under a ReadWatch must be read only through
// it: an async_read_some queued behind its operations would never run.
//
// This uses Asio's reactor internals (detail::reactor_op, epoll_reactor::start_op) and is tied to
// the Boost version the build uses: check it again (tests/database/proxy_test.cc) on an upgrade.
class ReadWatch {
 public:
  using tcp = boost::asio::ip::tcp;
  using error_code = boost::system::error_code;

  ReadWatch() : st_(std::make_shared<State>()) {}
  ReadWatch(const ReadWatch&) = delete;
  ReadWatch& operator=(const ReadWatch&) = delete;
  // The operations still queued hold the state, not the watch: a socket closed or destroyed
  // completes them with operation_aborted, and they let go then.
  ~ReadWatch() { drop(*st_); }

  // Calls `fn` once, on `s`'s io_context thread, when `s` may have bytes, an end of stream or an
  // error: posted at once when an earlier event or a full read left that open, else at the next
  // readiness event. A new wait replaces a pending one.
  // A move-only callback: libstdc++ keeps a callable of up to 24 bytes (a shared_ptr and a
  // pointer, as the proxy's handler chains pass) inside it, where std::function allocates for
  // any callable that is not trivially copyable. Asio's coroutine handler (64 bytes) is still
  // allocated: one per wait of async_wait_readable.
  using Callback = std::move_only_function<void()>;

  void wait(tcp::socket& s, Callback fn) {
    State& st = *st_;
    if (st.queued == 0) arm(s);
    if (st.ready || st.queued == 0) {
      boost::asio::post(s.get_executor(), std::move(fn));
      return;
    }
    st.fn = std::move(fn);
  }

  // Drops a pending `fn` without calling it (its owner lets the socket go).
  void clear() { drop(*st_); }

  // One non-blocking recv into `b`: the bytes read; 0 with `ec` clear when nothing was there
  // (wait again); 0 with `ec` set at the end of the stream or on an error.
  size_t read(tcp::socket& s, boost::asio::mutable_buffer b, error_code& ec) {
    State& st = *st_;
    if (!s.is_open()) {
      ec = boost::asio::error::bad_descriptor;
      return 0;
    }
    while (true) {
      ssize_t n = ::recv(s.native_handle(), b.data(), b.size(), MSG_DONTWAIT);
      if (n > 0) {
        // A full buffer may have left bytes behind, and no new event comes for those.
        st.ready = static_cast<size_t>(n) == b.size();
        return static_cast<size_t>(n);
      }
      if (n == 0) {
        ec = boost::asio::error::eof;
        return 0;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        st.ready = false;
        return 0;
      }
      ec = error_code(errno, boost::asio::error::get_system_category());
      return 0;
    }
  }

  // Operations of this watch in the socket's read queue (tests).
  int queued() const { return st_->queued; }

 private:
  struct State {
    tcp::socket* sock = nullptr;
    int queued = 0;      // our operations in the socket's read queue (or completing)
    bool fired = false;  // one of them completed in the reactor's current pass
    bool ready = false;  // an event came that nobody has read after yet
    Callback fn;
    boost::asio::detail::reactor* reactor = nullptr;  // the socket's, found once per arm
    // Memory of completed operations, reused by start(): one operation completes per readiness
    // event, so allocating each anew was a malloc and a free per message read.
    std::vector<void*> spare;
    ~State() {
      for (void* p : spare) ::operator delete(p);
    }
  };

  // Empties `st.fn` before the callable dies: it may hold the last reference to the object that
  // owns this watch, whose destructor drops `fn` again (assigning nullptr to a function object
  // from inside its own target's destructor would destroy that target twice).
  static void drop(State& st) {
    Callback gone = std::move(st.fn);
    st.fn = nullptr;
  }

  struct Op : boost::asio::detail::reactor_op {
    explicit Op(std::shared_ptr<State> s)
        : reactor_op(error_code(), &Op::perform, &Op::complete), st(std::move(s)) {}

    static status perform(reactor_op* base) {
      State& st = *static_cast<Op*>(base)->st;
      if (st.fired) return not_done;
      st.fired = true;
      return done;
    }

    static void complete(void* owner, boost::asio::detail::scheduler_operation* base,
                         const error_code&, std::size_t) {
      auto* op = static_cast<Op*>(base);
      std::shared_ptr<State> st = std::move(op->st);
      error_code ec = op->ec_;
      op->~Op();
      st->queued--;
      if (owner == nullptr) {
        ::operator delete(op);
        // Destroyed with the io_context: what waits goes too (it may own the watch).
        drop(*st);
        return;
      }
      st->spare.push_back(op);
      if (!ec) {
        // The pass is over (this completion runs right after it): the operation left queued
        // completes on the next event, and a new one goes behind it.
        st->fired = false;
        while (st->queued < 2) start(st);
      } else {
        // Cancelled or the socket closed: every operation of ours goes; the next wait re-arms.
        st->fired = false;
        if (st->queued == 0) st->sock = nullptr;
      }
      st->ready = true;
      if (auto fn = std::move(st->fn)) {
        st->fn = nullptr;
        fn();
      }
    }

    std::shared_ptr<State> st;
  };

  // The socket's reactor-side data: protected in basic_socket, reached through a derived class.
  struct SocketAccess : tcp::socket {
    static auto& impl(tcp::socket& s) { return (s.*(&SocketAccess::impl_)).get_implementation(); }
  };

  static void start(const std::shared_ptr<State>& st) {
    auto& impl = SocketAccess::impl(*st->sock);
    void* mem;
    if (st->spare.empty()) {
      mem = ::operator new(sizeof(Op));
    } else {
      mem = st->spare.back();
      st->spare.pop_back();
    }
    st->queued++;
    st->reactor->start_op(boost::asio::detail::reactor::read_op, impl.socket_, impl.reactor_data_,
                          new (mem) Op(st), false, false);
  }

  void arm(tcp::socket& s) {
    if (!s.is_open()) return;
    st_->reactor = &boost::asio::use_service<boost::asio::detail::reactor>(
        boost::asio::query(s.get_executor(), boost::asio::execution::context));
    st_->sock = &s;
    st_->fired = false;
    start(st_);  // the queue is empty: one epoll_ctl, which also reports bytes already there
    start(st_);
  }

  std::shared_ptr<State> st_;
};

// ReadWatch::wait as an asynchronous operation with signature void() (use_awaitable: `co_await
// async_wait_readable(watch, sock, asio::use_awaitable)`).
template <typename Token>
auto async_wait_readable(ReadWatch& watch, boost::asio::ip::tcp::socket& s, Token&& token) {
  return boost::asio::async_initiate<Token, void()>(
      [&watch, &s](auto handler) { watch.wait(s, std::move(handler)); }, token);
}

}  // namespace concord::database::proxy
