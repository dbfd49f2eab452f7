#pragma once
// Internal to src/http (includes Beast): the transport-independent half of a connection.
//
// A Session turns the bytes a client sent into the bytes the server writes back, one request at
// a time: Beast's parser (with our size limits) fills a reused Request, the built-in routes or
// the Router produce a Response, and the Session serialises it with the headers every response
// carries. The socket code in server.cc only moves bytes and runs timers; testing.cc drives the
// very same Session from a string, which is what the fuzzer exercises.
//
// Ownership: one Session per connection, used by one thread at a time (the connection's strand).
// The ServerContext is shared by all sessions of a server and outlives them.
#include <atomic>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.h"
#include "http/metrics.h"
#include "http/router.h"
#include "http/server.h"

namespace concord::http::internal {

// What all connections of one server share. Immutable while the server runs, except `stopping`.
struct ServerContext {
  ServerOptions options;
  const Router* router = nullptr;
  Registry* registry = nullptr;  // never null while sessions exist
  // Used for Request::base_url when the client sent no usable Host header.
  std::string fallback_origin = "http://127.0.0.1";
  // Set once stop() begins: responses then carry "Connection: close".
  std::atomic<bool> stopping{false};
  // Tests and the fuzzer read the last Response object; the server does not keep it.
  bool keep_last_response = false;
};

// Parses one request into a Request, reusing the Request's storage (header strings keep their
// capacity from one request to the next on a keep-alive connection). Enforces max_header_bytes
// over the whole head (request line and fields) and max_body_bytes over the declared
// Content-Length or the sum of chunk sizes.
class RequestParser final : public boost::beast::http::basic_parser<true> {
 public:
  // `streamed` (may be null or empty) decides which bodies are spooled to a file instead.
  RequestParser(Request& req, size_t max_header_bytes, size_t max_body_bytes,
                const StreamedBodyHook* streamed = nullptr);
  // Removes the spool file unless the request was complete and a handler moved it away.
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Feeds bytes; returns how many were consumed. After the call, error_status() != 0 means the
  // request is rejected; is_done() means it is complete; otherwise more bytes are needed when
  // nothing (or everything) was consumed.
  size_t feed(std::string_view data);

  int error_status() const { return error_status_; }  // 0, 400, 413 or 431
  const std::string& error_message() const { return error_message_; }
  bool target_seen() const { return target_seen_; }
  // Before the request line is parsed (a line longer than the head limit never is): the path
  // of the target as far as the first bytes show it ("/compute/v2.1/servers"), so errors
  // raised that early still use the owning mount's error format; "" when none is visible.
  std::string_view early_path() const;
  int version() const { return version_; }  // 10 or 11
  bool expects_continue() const { return expects_continue_; }
  // Whether this request's body goes to a file.
  bool spooling() const { return !spool_path_.empty(); }

 private:
  void on_request_impl(boost::beast::http::verb method, boost::beast::string_view method_str,
                       boost::beast::string_view target, int version,
                       boost::beast::error_code& ec) override;
  void on_response_impl(int code, boost::beast::string_view reason, int version,
                        boost::beast::error_code& ec) override;
  void on_field_impl(boost::beast::http::field name, boost::beast::string_view name_string,
                     boost::beast::string_view value, boost::beast::error_code& ec) override;
  void on_header_impl(boost::beast::error_code& ec) override;
  void on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                         boost::beast::error_code& ec) override;
  size_t on_body_impl(boost::beast::string_view body, boost::beast::error_code& ec) override;
  void on_chunk_header_impl(std::uint64_t size, boost::beast::string_view extensions,
                            boost::beast::error_code& ec) override;
  size_t on_chunk_body_impl(std::uint64_t remain, boost::beast::string_view body,
                            boost::beast::error_code& ec) override;
  void on_finish_impl(boost::beast::error_code& ec) override;

  void fail(int status, std::string message);
  void start_spool(std::string_view target);
  bool spool(boost::beast::string_view data);

  Request& req_;
  size_t max_header_bytes_;
  size_t max_body_bytes_;
  const StreamedBodyHook* streamed_ = nullptr;
  std::string spool_path_;
  int spool_fd_ = -1;
  size_t head_consumed_ = 0;
  std::string head_prefix_;  // the first bytes of the head until Beast consumes any
  size_t header_count_ = 0;
  int error_status_ = 0;
  std::string error_message_;
  int version_ = 11;
  bool target_seen_ = false;
  bool expects_continue_ = false;
};

class Session {
 public:
  enum class Phase {
    kIdle,        // waiting for the first byte of a request
    kHead,        // some of the head received
    kBody,        // head complete, body incomplete
    kResponding,  // a response is in output() (or being written)
    kWaiting,     // a deferred handler has the request; complete() brings its response
  };
  // kWait: a deferred route took the request; neither read nor write until complete().
  enum class Next { kRead, kWrite, kWait };

  explicit Session(ServerContext& ctx);

  // How a deferred route's answer gets back to this session's connection: called once per
  // deferred request (on the session's thread) for the sink the Responder will call from any
  // thread. The sink must bring the response to complete() on the session's own thread. Without
  // a factory (the socket-less driver in testing.cc), deferred routes are waited for in place.
  void set_deferral(std::function<DeferredSink()> factory) { deferral_ = std::move(factory); }
  // The deferred response for the request in kWaiting: serialises it into output(); the caller
  // then writes as after advance() returned kWrite. Ignored in any other phase.
  void complete(Response response);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Consumes what it can from `in`. kWrite: output() holds bytes to send (a response, or a
  // "100 Continue"); after sending them, close if close_after_write(), else call advance()
  // again (pipelined bytes may already be buffered). kRead: more input is needed.
  Next advance(boost::beast::flat_buffer& in);

  // The client did not deliver the head or body in time: output() gets a 408 in the mount's
  // error format and the connection is to be closed. Only meaningful in kHead/kBody.
  void timeout();

  // What to send: output() then output_body() (the in-memory body of a large response, kept
  // apart so it is written from the handler's own string instead of being copied after the
  // head; empty otherwise).
  const std::string& output() const { return out_; }
  const std::string& output_body() const { return body_; }
  // After output() and output_body() were sent. For a response whose body is a file
  // (Response::body_file): loads
  // the next piece of the file into output() and returns true, or returns false when the body
  // is complete. A file that ends early sets close_after_write() (the client sees a short body).
  bool continue_output();
  // Whether the current request's body or response's body is streamed (for the timers).
  bool streaming() const { return file_fd_ >= 0 || (parser_.has_value() && parser_->spooling()); }
  bool close_after_write() const { return close_; }
  Phase phase() const { return phase_; }
  // The last Response produced (only when ServerContext::keep_last_response).
  const Response& last_response() const { return last_; }
  // Whether output() answers a HEAD request (its Content-Length announces no body bytes).
  bool head_response() const { return head_response_; }

 private:
  void begin_request();
  void serve();
  void serve_error(int status, std::string_view message);
  void finish(Response& resp, bool keep_alive, bool head, double seconds, Method method);
  void serialize(Response& resp, bool keep_alive, bool head);
  void set_base_url();
  void record(Method method, int status, double seconds);
  Response builtin(std::string_view path, bool& handled);

  std::function<DeferredSink()> deferral_;
  // What finish() needs about the request a deferred handler holds.
  struct Waiting {
    std::chrono::steady_clock::time_point start;
    bool keep_alive = false;
    Method method = Method::kGet;
  };
  Waiting waiting_;

  ServerContext& ctx_;
  Request req_;
  std::optional<RequestParser> parser_;
  Phase phase_ = Phase::kIdle;
  bool continue_sent_ = false;
  bool close_ = false;
  bool head_response_ = false;
  std::string out_;
  std::string body_;  // see output_body()
  // The file body of the response being written, and how many of its bytes remain.
  int file_fd_ = -1;
  uint64_t file_left_ = 0;
  std::string route_name_;
  Response last_;

  // Series looked up once per connection and kept: the registry's map and mutex stay off the
  // per-request path.
  struct CounterSlot {
    std::string route;
    Method method;
    int status;
    Counter* counter;
  };
  struct HistogramSlot {
    std::string route;
    Histogram* histogram;
  };
  std::vector<CounterSlot> counters_;
  std::vector<HistogramSlot> histograms_;
};

// Bucket bounds of concord_http_request_duration_seconds: 100us to 10s.
const std::vector<double>& duration_buckets();

}  // namespace concord::http::internal
