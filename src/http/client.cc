#include "http/client.h"

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

namespace concord::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

std::string HttpReply::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < k.size() && same; ++i) {
      same = k[i] == static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
    }
    if (same) return v;
  }
  return {};
}

class HttpClient::Impl {
 public:
  Impl(std::string h, std::string p, std::string pre)
      : host(std::move(h)), port(std::move(p)), prefix(std::move(pre)) {}

  // One request/response exchange on the kept-alive connection (connecting when needed).
  template <typename Request, typename Parser>
  Status exchange(Request& req, Parser& parser, std::chrono::milliseconds timeout, bool& reused) {
    if (cancelled.load()) return fail(Code::kUnavailable, "HTTP client cancelled");
    reused = connected;
    beast::error_code result;
    bool wrote = false;
    ioc.restart();
    stream.expires_after(timeout);
    auto write_read = [&] {
      bhttp::async_write(stream, req, [&](beast::error_code ec, size_t) {
        if (ec) {
          result = ec;
          return;
        }
        wrote = true;
        bhttp::async_read(stream, buffer, parser,
                          [&](beast::error_code ec2, size_t) { result = ec2; });
      });
    };
    if (!connected) {
      buffer.clear();
      resolver.async_resolve(host, port, [&](beast::error_code ec, tcp::resolver::results_type r) {
        if (ec) {
          result = ec;
          return;
        }
        stream.async_connect(r, [&](beast::error_code ec2, const tcp::endpoint&) {
          if (ec2) {
            result = ec2;
            return;
          }
          connected = true;
          write_read();
        });
      });
    } else {
      write_read();
    }
    ioc.run();
    (void)wrote;
    if (result) {
      close();
      if (result == beast::error::timeout) {
        return fail(Code::kDeadlineExceeded, "HTTP request to " + host + ":" + port +
                                                 " timed out after " +
                                                 std::to_string(timeout.count()) + " ms");
      }
      if (cancelled.load()) return fail(Code::kUnavailable, "HTTP client cancelled");
      return fail(Code::kUnavailable,
                  "HTTP request to " + host + ":" + port + " failed: " + result.message());
    }
    if (!parser.get().keep_alive()) close();
    return ok();
  }

  void close() {
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream.socket().close(ec);
    connected = false;
    buffer.clear();
  }

  // The request line and headers every call sends, for any body type.
  template <class Body>
  bhttp::request<Body> make_head(bhttp::verb verb, std::string_view target,
                                 const std::vector<std::pair<std::string, std::string>>& headers) {
    bhttp::request<Body> req{verb, prefix + std::string(target), 11};
    req.set(bhttp::field::host, host + ":" + port);
    req.set(bhttp::field::user_agent, "concord-agent");
    req.keep_alive(true);
    for (const auto& [k, v] : headers) req.set(k, v);
    return req;
  }

  // A kept-alive connection the server closed while idle fails on first use: worth one retry
  // on a fresh one (the agent's requests are idempotent: level-triggered state).
  bool retry_fresh(const Status& st, bool reused, int attempt) const {
    return !st && reused && attempt == 0 && st.error().code() == Code::kUnavailable &&
           !cancelled.load();
  }

  bhttp::request<bhttp::string_body> make_request(
      bhttp::verb verb, std::string_view target, std::string_view body,
      const std::vector<std::pair<std::string, std::string>>& headers) {
    auto req = make_head<bhttp::string_body>(verb, target, headers);
    if (!body.empty() || verb == bhttp::verb::post || verb == bhttp::verb::put) {
      if (req[bhttp::field::content_type].empty())
        req.set(bhttp::field::content_type, "application/json");
      req.body() = std::string(body);
      req.prepare_payload();
    }
    return req;
  }

  static void fill(HttpReply& out, const bhttp::fields& fields, unsigned status) {
    out.status = static_cast<int>(status);
    for (const auto& f : fields) {
      std::string name(f.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers.emplace_back(std::move(name), std::string(f.value()));
    }
  }

  asio::io_context ioc;
  tcp::resolver resolver{ioc};
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buffer;
  std::string host, port, prefix;
  bool connected = false;
  std::atomic<bool> cancelled{false};
};

Result<std::unique_ptr<HttpClient>> HttpClient::create(std::string_view base_url) {
  constexpr std::string_view kScheme = "http://";
  if (!base_url.starts_with(kScheme)) {
    return fail(Code::kInvalidArgument,
                "server URL must start with http:// (got '" + std::string(base_url) + "')");
  }
  std::string_view rest = base_url.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string prefix = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  std::string host(authority), port = "80";
  if (size_t colon = authority.rfind(':');
      colon != std::string_view::npos && authority.find(']', colon) == std::string_view::npos) {
    host = std::string(authority.substr(0, colon));
    port = std::string(authority.substr(colon + 1));
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || port.empty()) {
    return fail(Code::kInvalidArgument, "server URL has no host: '" + std::string(base_url) + "'");
  }
  return std::unique_ptr<HttpClient>(
      new HttpClient(std::make_unique<Impl>(std::move(host), std::move(port), std::move(prefix))));
}

namespace {

Result<bhttp::verb> parse_verb(std::string_view method) {
  bhttp::verb verb = bhttp::string_to_verb(beast::string_view(method.data(), method.size()));
  if (verb == bhttp::verb::unknown) {
    return fail(Code::kInvalidArgument, "unknown HTTP method " + std::string(method));
  }
  return verb;
}

}  // namespace

HttpClient::HttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpClient::~HttpClient() = default;

Result<HttpReply> HttpClient::request(
    std::string_view method, std::string_view target, std::string_view body,
    const std::vector<std::pair<std::string, std::string>>& headers,
    std::chrono::milliseconds timeout) {
  CONCORD_ASSIGN_OR_RETURN(bhttp::verb verb, parse_verb(method));
  for (int attempt = 0;; ++attempt) {
    auto req = impl_->make_request(verb, target, body, headers);
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(64ull * 1024 * 1024);
    bool reused = false;
    Status st = impl_->exchange(req, parser, timeout, reused);
    if (impl_->retry_fresh(st, reused, attempt)) continue;
    if (!st) return fail(st.error());
    HttpReply out;
    auto& res = parser.get();
    Impl::fill(out, res.base(), res.result_int());
    out.body = std::move(res.body());
    return out;
  }
}

Result<HttpReply> HttpClient::download(
    std::string_view target, const std::vector<std::pair<std::string, std::string>>& headers,
    const std::string& path, std::chrono::milliseconds timeout) {
  for (int attempt = 0;; ++attempt) {
    auto req = impl_->make_request(bhttp::verb::get, target, "", headers);
    bhttp::response_parser<bhttp::file_body> parser;
    // No limit, spelled as the largest one: with body_limit(boost::none), Boost 1.74's parser
    // refused backup downloads to the agents with "body limit exceeded" (every try, while
    // smaller downloads and the 9 MB one in client_test passed; not pinned down further). The
    // optional's "none" compares as smaller than any length in the parser's length check.
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    beast::error_code ec;
    parser.get().body().open(path.c_str(), beast::file_mode::write, ec);
    if (ec) {
      return fail(Code::kFailedPrecondition, "cannot write " + path + ": " + ec.message());
    }
    bool reused = false;
    Status st = impl_->exchange(req, parser, timeout, reused);
    parser.get().body().close();
    if (!st) {
      std::error_code rm;
      std::filesystem::remove(path, rm);
      if (impl_->retry_fresh(st, reused, attempt)) continue;
      return fail(st.error());
    }
    HttpReply out;
    Impl::fill(out, parser.get().base(), parser.get().result_int());
    if (out.status != 200) {
      std::ifstream in(path, std::ios::binary);
      std::ostringstream text;
      text << in.rdbuf();
      out.body = text.str();
      std::error_code rm;
      std::filesystem::remove(path, rm);
    }
    return out;
  }
}

Result<HttpReply> HttpClient::upload(
    std::string_view method, std::string_view target, const std::string& path,
    const std::vector<std::pair<std::string, std::string>>& headers,
    std::chrono::milliseconds timeout) {
  CONCORD_ASSIGN_OR_RETURN(bhttp::verb verb, parse_verb(method));
  for (int attempt = 0;; ++attempt) {
    auto req = impl_->make_head<bhttp::file_body>(verb, target, headers);
    if (req[bhttp::field::content_type].empty()) {
      req.set(bhttp::field::content_type, "application/octet-stream");
    }
    beast::error_code ec;
    req.body().open(path.c_str(), beast::file_mode::scan, ec);
    if (ec) return fail(Code::kFailedPrecondition, "cannot read " + path + ": " + ec.message());
    req.prepare_payload();
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(64ull * 1024 * 1024);
    bool reused = false;
    Status st = impl_->exchange(req, parser, timeout, reused);
    if (impl_->retry_fresh(st, reused, attempt)) continue;
    if (!st) return fail(st.error());
    HttpReply out;
    auto& res = parser.get();
    Impl::fill(out, res.base(), res.result_int());
    out.body = std::move(res.body());
    return out;
  }
}

void HttpClient::cancel() {
  impl_->cancelled.store(true);
  asio::post(impl_->ioc, [impl = impl_.get()] {
    beast::error_code ec;
    impl->stream.socket().cancel(ec);
    impl->stream.socket().close(ec);
  });
}

}  // namespace concord::http
