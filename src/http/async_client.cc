#include "http/async_client.h"

#include <sys/socket.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "base/log.h"

namespace concord::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

struct Origin {
  std::string host;
  std::string port;
  std::string prefix;
  std::string key;  // "host:port"
};

Result<Origin> parse_origin(std::string_view base_url) {
  constexpr std::string_view kScheme = "http://";
  if (!base_url.starts_with(kScheme)) {
    return fail(Code::kInvalidArgument,
                "server URL must start with http:// (got '" + std::string(base_url) + "')");
  }
  std::string_view rest = base_url.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  Origin o;
  o.prefix = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
  while (!o.prefix.empty() && o.prefix.back() == '/') o.prefix.pop_back();
  o.host = std::string(authority);
  o.port = "80";
  if (size_t colon = authority.rfind(':');
      colon != std::string_view::npos && authority.find(']', colon) == std::string_view::npos) {
    o.host = std::string(authority.substr(0, colon));
    o.port = std::string(authority.substr(colon + 1));
  }
  if (o.host.size() >= 2 && o.host.front() == '[' && o.host.back() == ']') {
    o.host = o.host.substr(1, o.host.size() - 2);
  }
  if (o.host.empty() || o.port.empty()) {
    return fail(Code::kInvalidArgument, "server URL has no host: '" + std::string(base_url) + "'");
  }
  o.key = o.host + ":" + o.port;
  return o;
}

// Whether an idle pooled connection is still usable: the peer has not closed it (a peek sees
// EOF) nor sent anything unasked (a late or stray reply would be taken for the next answer).
bool idle_connection_usable(beast::tcp_stream& stream) {
  if (!stream.socket().is_open()) return false;
  char c;
  ssize_t n = ::recv(stream.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

class AsyncHttpClient::Impl {
 public:
  explicit Impl(AsyncClientOptions options) : options_(options) {}

  void start() {
    work_.emplace(io_.get_executor());
    for (int i = 0; i < options_.threads; ++i) {
      threads_.emplace_back([this] {
        for (;;) {
          try {
            io_.run();
            return;
          } catch (const std::exception& e) {
            logger("http")->error("async client thread caught: {}", e.what());
          }
        }
      });
    }
  }

  ~Impl() {
    work_.reset();
    io_.stop();
    for (auto& t : threads_) t.join();
    // The idle connections go before the io_context they are bound to.
    std::lock_guard lock(mu_);
    idle_.clear();
  }

  // An idle connection to the origin that still looks alive, if any.
  std::optional<beast::tcp_stream> take(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = idle_.find(key);
    if (it == idle_.end()) return std::nullopt;
    while (!it->second.empty()) {
      beast::tcp_stream s = std::move(it->second.back());
      it->second.pop_back();
      if (idle_connection_usable(s)) return s;
      beast::error_code ec;
      s.socket().close(ec);
    }
    return std::nullopt;
  }

  void give_back(const std::string& key, beast::tcp_stream stream) {
    std::lock_guard lock(mu_);
    auto& list = idle_[key];
    if (list.size() < options_.max_idle_per_origin) {
      stream.expires_never();
      list.push_back(std::move(stream));
      return;
    }
    beast::error_code ec;
    stream.socket().close(ec);
  }

  size_t idle_count() const {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const auto& [key, list] : idle_) n += list.size();
    return n;
  }

  asio::io_context& io() { return io_; }
  const AsyncClientOptions& options() const { return options_; }
  std::atomic<uint64_t> opened{0};

 private:
  const AsyncClientOptions options_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  mutable std::mutex mu_;
  // Declared after io_, so destroyed before it (the destructor also clears it explicitly).
  std::unordered_map<std::string, std::vector<beast::tcp_stream>> idle_;  // guarded by mu_
};

namespace {

// One request, from connection to reply, on its connection's strand.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(AsyncHttpClient::Impl& client, Origin origin, bhttp::request<bhttp::string_body> req,
           std::chrono::milliseconds timeout, AsyncHttpClient::Callback done)
      : client_(client),
        origin_(std::move(origin)),
        req_(std::move(req)),
        timeout_(timeout),
        deadline_(std::chrono::steady_clock::now() + timeout),
        done_(std::move(done)) {}

  void start() {
    if (auto pooled = client_.take(origin_.key)) {
      stream_.emplace(std::move(*pooled));
      reused_ = true;
      asio::post(stream_->get_executor(), [self = shared_from_this()] { self->write(); });
    } else {
      connect();
    }
  }

 private:
  void connect() {
    reused_ = false;
    stream_.emplace(asio::make_strand(client_.io()));
    resolver_.emplace(stream_->get_executor());
    ++client_.opened;
    resolver_->async_resolve(
        origin_.host, origin_.port,
        [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type results) {
          if (ec) {
            self->failed(ec, "resolve");
            return;
          }
          self->stream_->expires_at(self->deadline_);
          self->stream_->async_connect(
              results, [self](beast::error_code ec2, const tcp::endpoint&) {
                if (ec2) {
                  self->failed(ec2, "connect");
                  return;
                }
                beast::error_code ignored;
                self->stream_->socket().set_option(tcp::no_delay(true), ignored);
                self->write();
              });
        });
  }

  void write() {
    stream_->expires_at(deadline_);
    bhttp::async_write(*stream_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) {
        self->failed(ec, "write");
        return;
      }
      self->read();
    });
  }

  void read() {
    parser_.emplace();
    parser_->body_limit(client_.options().max_body_bytes);
    buffer_.clear();
    bhttp::async_read(*stream_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) {
                          self->failed(ec, "read");
                          return;
                        }
                        self->succeeded();
                      });
  }

  void succeeded() {
    auto& res = parser_->get();
    HttpReply reply;
    reply.status = static_cast<int>(res.result_int());
    for (const auto& f : res.base()) {
      std::string name(f.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      reply.headers.emplace_back(std::move(name), std::string(f.value()));
    }
    reply.body = std::move(res.body());
    // Bytes beyond the reply would be mistaken for the next one: such a connection is not kept.
    if (res.keep_alive() && buffer_.size() == 0) {
      client_.give_back(origin_.key, std::move(*stream_));
    } else {
      beast::error_code ec;
      stream_->socket().shutdown(tcp::socket::shutdown_both, ec);
      stream_->socket().close(ec);
    }
    stream_.reset();
    finish(std::move(reply));
  }

  void failed(beast::error_code ec, std::string_view step) {
    beast::error_code ignored;
    if (stream_) stream_->socket().close(ignored);
    // A pooled connection the peer closed just as we took it fails before any reply byte:
    // that is not the peer's failure, so once more on a fresh connection.
    const bool nothing_received = !parser_ || !parser_->got_some();
    if (reused_ && !retried_ && nothing_received && ec != beast::error::timeout &&
        std::chrono::steady_clock::now() < deadline_) {
      retried_ = true;
      parser_.reset();
      connect();
      return;
    }
    if (ec == beast::error::timeout) {
      finish(fail(Code::kDeadlineExceeded, "HTTP request to " + origin_.key + " timed out after " +
                                               std::to_string(timeout_.count()) + " ms"));
      return;
    }
    finish(fail(Code::kUnavailable, "HTTP request to " + origin_.key + " failed (" +
                                        std::string(step) + "): " + ec.message()));
  }

  void finish(Result<HttpReply> result) {
    AsyncHttpClient::Callback done = std::move(done_);
    try {
      done(std::move(result));
    } catch (const std::exception& e) {
      logger("http")->error("async client callback threw: {}", e.what());
    }
  }

  AsyncHttpClient::Impl& client_;
  const Origin origin_;
  bhttp::request<bhttp::string_body> req_;
  const std::chrono::milliseconds timeout_;
  const std::chrono::steady_clock::time_point deadline_;
  AsyncHttpClient::Callback done_;
  std::optional<beast::tcp_stream> stream_;
  std::optional<tcp::resolver> resolver_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser_;
  bool reused_ = false;
  bool retried_ = false;
};

}  // namespace

Result<std::unique_ptr<AsyncHttpClient>> AsyncHttpClient::create(AsyncClientOptions options) {
  if (options.threads < 1) {
    return fail(Code::kInvalidArgument, "the async HTTP client needs at least one thread");
  }
  auto impl = std::make_unique<Impl>(options);
  impl->start();
  return std::unique_ptr<AsyncHttpClient>(new AsyncHttpClient(std::move(impl)));
}

AsyncHttpClient::AsyncHttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AsyncHttpClient::~AsyncHttpClient() = default;

void AsyncHttpClient::request(std::string_view base_url, std::string_view method,
                              std::string_view target, std::string body,
                              std::vector<std::pair<std::string, std::string>> headers,
                              std::chrono::milliseconds timeout, Callback done) {
  auto report = [this, &done](Error error) {
    asio::post(impl_->io(), [done = std::move(done), error = std::move(error)]() mutable {
      done(fail(std::move(error)));
    });
  };
  auto origin = parse_origin(base_url);
  if (!origin) {
    report(origin.error());
    return;
  }
  bhttp::verb verb = bhttp::string_to_verb(beast::string_view(method.data(), method.size()));
  if (verb == bhttp::verb::unknown) {
    report(Error(Code::kInvalidArgument, "unknown HTTP method " + std::string(method)));
    return;
  }
  bhttp::request<bhttp::string_body> req{verb, origin->prefix + std::string(target), 11};
  req.set(bhttp::field::host, origin->key);
  req.set(bhttp::field::user_agent, "concord-gateway");
  req.keep_alive(true);
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() || verb == bhttp::verb::post || verb == bhttp::verb::put) {
    if (req[bhttp::field::content_type].empty()) {
      req.set(bhttp::field::content_type, "application/json");
    }
    req.body() = std::move(body);
    req.prepare_payload();
  }
  auto exchange = std::make_shared<Exchange>(*impl_, std::move(*origin), std::move(req), timeout,
                                             std::move(done));
  exchange->start();
}

size_t AsyncHttpClient::idle_connections() const {
  return impl_->idle_count();
}

uint64_t AsyncHttpClient::connections_opened() const {
  return impl_->opened.load();
}

}  // namespace concord::http
