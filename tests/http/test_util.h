#pragma once
// Helpers shared by the HTTP tests: a blocking loopback client with timeouts (so a server bug
// fails a test instead of hanging it) and a second error format to tell mounts apart.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/beast/http.hpp>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/json.h"
#include "http/message.h"
#include "http/router.h"

namespace concord::http::test {

// Nova's error shape ({"itemNotFound": {...}} for 404, {"computeFault": {...}} otherwise), to
// check that each mount answers in its own format.
inline Response nova_style_error(int status, std::string_view message) {
  std::string key = status == 404 ? "itemNotFound" : status == 413 ? "overLimit" : "computeFault";
  Json body = {{key, {{"code", status}, {"message", sanitize_utf8(message)}}}};
  return Response::json(status, dump_json(body));
}

struct ParsedResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;
  bool keep_alive = true;

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
  bool has(const std::string& name) const { return headers.contains(name); }
};

// Parses one response from the front of `wire`; returns the bytes it used, 0 if incomplete.
inline size_t parse_response(std::string_view wire, ParsedResponse& out, bool head_request,
                             bool* error = nullptr) {
  namespace bhttp = boost::beast::http;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.eager(true);
  parser.body_limit(64 * 1024 * 1024);
  if (head_request) parser.skip(true);
  boost::beast::error_code ec;
  size_t used = parser.put(boost::asio::buffer(wire.data(), wire.size()), ec);
  if (ec == bhttp::error::need_more || (!ec && !parser.is_done())) return 0;
  if (ec) {
    if (error != nullptr) *error = true;
    return 0;
  }
  auto& msg = parser.get();
  out.status = static_cast<int>(msg.result_int());
  out.headers.clear();
  for (const auto& field : msg) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(field.value());
  }
  out.body = msg.body();
  out.keep_alive = msg.keep_alive();
  return used;
}

class TestClient {
 public:
  explicit TestClient(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
    int one = 1;
    if (fd_ >= 0) ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  ~TestClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  bool connected() const { return fd_ >= 0; }

  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

  // One response, or nullopt when none arrives within `timeout` (or the bytes do not parse).
  std::optional<ParsedResponse> read_response(
      std::chrono::milliseconds timeout = std::chrono::seconds(10), bool head_request = false) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      ParsedResponse r;
      bool error = false;
      size_t used = parse_response(buf_, r, head_request, &error);
      if (error) return std::nullopt;
      if (used > 0) {
        buf_.erase(0, used);
        return r;
      }
      if (!fill(deadline)) return std::nullopt;
    }
  }

  // Whether the server closes the connection within `timeout`; received bytes are kept.
  bool wait_closed(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (fill(deadline)) {
    }
    return eof_;
  }

  // Raw bytes received and not yet parsed.
  const std::string& pending() const { return buf_; }

 private:
  // Receives more bytes; false on EOF, error or timeout.
  bool fill(std::chrono::steady_clock::time_point deadline) {
    if (eof_) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[16384];
    ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n <= 0) {
      eof_ = true;  // orderly close or reset: either way the server is gone
      return false;
    }
    buf_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool eof_ = false;
  std::string buf_;
};

}  // namespace concord::http::test
