#include "http/session.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <cstring>
#include <ctime>
#include <exception>

#include "base/encoding.h"
#include "base/json.h"
#include "base/log.h"
#include "base/random.h"

namespace concord::http::internal {
namespace bhttp = boost::beast::http;

namespace {

constexpr std::string_view kUnmatched = "unmatched";
constexpr size_t kMaxCachedSeries = 16;

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

Method to_method(std::string_view m) {
  switch (m.size()) {
    case 3:
      if (m == "GET") return Method::kGet;
      if (m == "PUT") return Method::kPut;
      break;
    case 4:
      if (m == "HEAD") return Method::kHead;
      if (m == "POST") return Method::kPost;
      break;
    case 5:
      if (m == "PATCH") return Method::kPatch;
      break;
    case 6:
      if (m == "DELETE") return Method::kDelete;
      break;
    case 7:
      if (m == "OPTIONS") return Method::kOptions;
      break;
    default: break;
  }
  return Method::kOther;
}

// xoshiro256**: request ids only need to be unique, not secret, and this runs per request.
// Each thread seeds its own from the CSPRNG.
class IdGenerator {
 public:
  IdGenerator() {
    std::string seed = random_bytes(sizeof(s_));
    std::memcpy(s_, seed.data(), sizeof(s_));
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// "req-" + a version 4 UUID, written into `out` without allocating once it has capacity.
void new_request_id(std::string& out) {
  thread_local IdGenerator gen;
  static constexpr char kHex[] = "0123456789abcdef";
  uint8_t b[16];
  uint64_t hi = gen.next();
  uint64_t lo = gen.next();
  for (int i = 0; i < 8; ++i) {
    b[i] = static_cast<uint8_t>(hi >> (8 * i));
    b[8 + i] = static_cast<uint8_t>(lo >> (8 * i));
  }
  b[6] = static_cast<uint8_t>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<uint8_t>((b[8] & 0x3F) | 0x80);
  char buf[40] = {'r', 'e', 'q', '-'};
  size_t pos = 4;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) buf[pos++] = '-';
    buf[pos++] = kHex[b[i] >> 4];
    buf[pos++] = kHex[b[i] & 0x0F];
  }
  out.assign(buf, pos);
}

// RFC 9110 IMF-fixdate, formatted at most once a second per thread. Written by hand because
// strftime's day and month names follow the C locale.
std::string_view http_date() {
  thread_local time_t cached_second = -1;
  thread_local char buf[32];
  thread_local size_t len = 0;
  time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  if (now != cached_second) {
    static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&now, &tm);
    int n = std::snprintf(buf, sizeof(buf), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                          kDays[tm.tm_wday % 7], tm.tm_mday, kMonths[tm.tm_mon % 12],
                          tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    len = n > 0 ? std::min(static_cast<size_t>(n), sizeof(buf) - 1) : 0;
    cached_second = now;
  }
  return {buf, len};
}

bool is_token_char(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_token_char);
}

// Headers the server writes itself; a handler's copy is dropped (content-length is honoured
// only for HEAD, where it carries the length of the GET body).
bool server_owned(std::string_view name) {
  return iequals(name, "content-length") || iequals(name, "date") || iequals(name, "connection") ||
         iequals(name, "transfer-encoding") || iequals(name, "keep-alive") ||
         iequals(name, "x-openstack-request-id");
}

// Host header characters we are willing to reflect into links: reg-name, IPv4, IPv6 literal
// and port. Anything else (spaces, quotes, slashes) falls back to the bound address.
bool plausible_host(std::string_view host) {
  if (host.empty() || host.size() > 255) return false;
  return std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_' || c == ':' || c == '[' || c == ']';
  });
}

void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  char* end = buf + sizeof(buf);
  char* p = end;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  out.append(p, static_cast<size_t>(end - p));
}

std::optional<uint64_t> parse_uint(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

}  // namespace

const std::vector<double>& duration_buckets() {
  static const std::vector<double> kBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                               0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                               1.0,    2.5,     5.0,    10.0};
  return kBuckets;
}

// ---------------------------------------------------------------------------------------------
// RequestParser

RequestParser::RequestParser(Request& req, size_t max_header_bytes, size_t max_body_bytes,
                             const StreamedBodyHook* streamed)
    : req_(req),
      max_header_bytes_(std::max<size_t>(max_header_bytes, 16)),
      max_body_bytes_(max_body_bytes),
      streamed_(streamed != nullptr && *streamed ? streamed : nullptr) {
  // feed() enforces the head limit itself over all bytes of the head (Beast's own check
  // restarts after the request line); Beast's limit is set just above ours so it never
  // disagrees.
  header_limit(static_cast<std::uint32_t>(std::min<size_t>(max_header_bytes_ + 1, UINT32_MAX)));
  body_limit(static_cast<std::uint64_t>(max_body_bytes));
  eager(true);
}

size_t RequestParser::feed(std::string_view data) {
  boost::beast::error_code ec;
  size_t n = 0;
  if (!is_header_done()) {
    size_t cap = max_header_bytes_ > head_consumed_ ? max_header_bytes_ - head_consumed_ : 0;
    size_t slice = std::min(data.size(), cap);
    if (slice == 0) {
      fail(431, "The request header fields are too large.");
      return 0;
    }
    n = put(boost::asio::const_buffer(data.data(), slice), ec);
    if (!target_seen_) {
      // Beast consumes nothing until it has the whole request line, so `data` still starts at
      // the request's first byte: keep a bounded copy for early_path(). Only requests whose
      // line is incomplete or bad get here, never the common path.
      constexpr size_t kPrefix = 512;
      head_prefix_.assign(data.substr(0, kPrefix));
    }
    if (!is_header_done()) head_consumed_ += n;
    if (ec == bhttp::error::need_more) {
      // Everything the limit allows was presented and the head is still incomplete.
      if (!is_header_done() && slice == cap) {
        fail(431, "The request header fields are too large.");
      }
      return n;
    }
  } else {
    n = put(boost::asio::const_buffer(data.data(), data.size()), ec);
    if (ec == bhttp::error::need_more) return n;
  }
  if (!ec) return n;
  if (error_status_ != 0) return n;  // set by one of the callbacks
  if (ec == bhttp::error::header_limit) {
    fail(431, "The request header fields are too large.");
  } else if (ec == bhttp::error::body_limit) {
    fail(413, "The request body is larger than the limit of " + std::to_string(max_body_bytes_) +
                  " bytes.");
  } else {
    fail(400, "Malformed HTTP request: " + ec.message() + ".");
  }
  return n;
}

RequestParser::~RequestParser() {
  if (spool_fd_ >= 0) ::close(spool_fd_);
  // The handler may have renamed or deleted the file; whatever is left is the server's.
  if (!spool_path_.empty()) ::unlink(spool_path_.c_str());
}

void RequestParser::start_spool(std::string_view target) {
  std::string_view raw_path = target.substr(0, target.find('?'));
  std::optional<StreamedBody> streamed;
  try {
    streamed = (*streamed_)(req_.method, raw_path);
  } catch (const std::exception& e) {
    logger("http")->error("streamed_body hook threw: {}", e.what());
    fail(500, "An unexpected error prevented the server from fulfilling your request.");
    return;
  }
  if (!streamed) return;
  std::string path = streamed->dir + "/body-" + hex_encode(random_bytes(12));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    logger("http")->error("cannot create request body file {}: {}", path, std::strerror(errno));
    fail(500, "The server could not store the request body.");
    return;
  }
  spool_fd_ = fd;
  spool_path_ = std::move(path);
  max_body_bytes_ = streamed->max_bytes;
  body_limit(static_cast<std::uint64_t>(streamed->max_bytes));
}

bool RequestParser::spool(boost::beast::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(spool_fd_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      logger("http")->error("cannot write request body file {}: {}", spool_path_,
                            std::strerror(errno));
      fail(500, "The server could not store the request body.");
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

std::string_view RequestParser::early_path() const {
  std::string_view line = head_prefix_;
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos) return {};
  std::string_view target = line.substr(sp + 1);
  size_t end = target.find_first_of(" ?\r\n");
  if (end != std::string_view::npos) target = target.substr(0, end);
  if (target.empty() || target.front() != '/') return {};
  return target;
}

void RequestParser::fail(int status, std::string message) {
  if (error_status_ != 0) return;
  error_status_ = status;
  error_message_ = std::move(message);
}

void RequestParser::on_request_impl(bhttp::verb, boost::beast::string_view method_str,
                                    boost::beast::string_view target, int version,
                                    boost::beast::error_code&) {
  req_.method = to_method(std::string_view(method_str.data(), method_str.size()));
  req_.target.assign(target.data(), target.size());
  req_.path.clear();
  req_.query.clear();
  req_.body.clear();
  req_.body_file.clear();
  req_.base_url.clear();
  req_.params.clear();
  version_ = version;
  target_seen_ = true;
  header_count_ = 0;
  // Decided now: Beast checks Content-Length against the body limit before on_header_impl.
  if (streamed_ != nullptr) start_spool(std::string_view(target.data(), target.size()));
}

void RequestParser::on_response_impl(int, boost::beast::string_view, int,
                                     boost::beast::error_code& ec) {
  ec = bhttp::error::bad_method;  // unreachable for a request parser
}

void RequestParser::on_field_impl(bhttp::field name, boost::beast::string_view name_string,
                                  boost::beast::string_view value, boost::beast::error_code&) {
  // Overwrite the previous request's entries in place so their strings keep their capacity;
  // on_header_impl trims the vector to this request's count.
  if (header_count_ == req_.headers.size()) req_.headers.emplace_back();
  Header& h = req_.headers[header_count_++];
  h.name.resize(name_string.size());
  std::transform(name_string.begin(), name_string.end(), h.name.begin(), ascii_lower);
  h.value.assign(value.data(), value.size());
  if (name == bhttp::field::expect && iequals(h.value, "100-continue")) {
    expects_continue_ = true;
  }
}

void RequestParser::on_header_impl(boost::beast::error_code&) {
  req_.headers.resize(header_count_);
}

void RequestParser::on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                                      boost::beast::error_code&) {
  // Beast has already checked content_length against the body limit.
  if (content_length && spool_fd_ < 0) req_.body.reserve(static_cast<size_t>(*content_length));
}

size_t RequestParser::on_body_impl(boost::beast::string_view body, boost::beast::error_code& ec) {
  if (spool_fd_ >= 0) {
    if (!spool(body)) ec = bhttp::error::body_limit;
    return body.size();
  }
  req_.body.append(body.data(), body.size());
  return body.size();
}

void RequestParser::on_chunk_header_impl(std::uint64_t, boost::beast::string_view,
                                         boost::beast::error_code&) {}

size_t RequestParser::on_chunk_body_impl(std::uint64_t, boost::beast::string_view body,
                                         boost::beast::error_code& ec) {
  if (spool_fd_ >= 0) {
    if (!spool(body)) ec = bhttp::error::body_limit;
    return body.size();
  }
  req_.body.append(body.data(), body.size());
  return body.size();
}

void RequestParser::on_finish_impl(boost::beast::error_code&) {
  if (spool_fd_ >= 0) {
    ::close(spool_fd_);
    spool_fd_ = -1;
    req_.body_file = spool_path_;
  }
}

// ---------------------------------------------------------------------------------------------
// Session

Session::Session(ServerContext& ctx) : ctx_(ctx) {
  out_.reserve(1024);
}

Session::~Session() {
  if (file_fd_ >= 0) ::close(file_fd_);
}

bool Session::continue_output() {
  // Sent: release the body now rather than keeping a large buffer per idle connection.
  if (!body_.empty()) std::string().swap(body_);
  if (file_fd_ < 0) return false;
  if (file_left_ == 0) {
    ::close(file_fd_);
    file_fd_ = -1;
    return false;
  }
  constexpr size_t kPiece = 256 * 1024;
  out_.resize(static_cast<size_t>(std::min<uint64_t>(kPiece, file_left_)));
  ssize_t n;
  do {
    n = ::read(file_fd_, out_.data(), out_.size());
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    // The file shrank or failed under us: the Content-Length already sent cannot be met, so
    // the connection is closed and the client sees a truncated body.
    logger("http")->error("response body file ended early request_id={}", req_.request_id);
    ::close(file_fd_);
    file_fd_ = -1;
    out_.clear();
    close_ = true;
    return false;
  }
  out_.resize(static_cast<size_t>(n));
  file_left_ -= static_cast<uint64_t>(n);
  return true;
}

void Session::begin_request() {
  parser_.emplace(req_, ctx_.options.max_header_bytes, ctx_.options.max_body_bytes,
                  &ctx_.options.streamed_body);
  phase_ = Phase::kIdle;
  continue_sent_ = false;
  close_ = false;
}

Session::Next Session::advance(boost::beast::flat_buffer& in) {
  if (phase_ == Phase::kWaiting) return Next::kWait;
  if (!parser_) begin_request();
  while (in.size() > 0) {
    std::string_view data(static_cast<const char*>(in.data().data()), in.size());
    if (phase_ == Phase::kIdle) {
      // RFC 9112 2.2: a server should ignore empty lines received before a request-line
      // (some clients send a CRLF after a POST body).
      size_t skip = 0;
      while (skip < data.size() &&
             (data[skip] == '\n' ||
              (data[skip] == '\r' && skip + 1 < data.size() && data[skip + 1] == '\n'))) {
        skip += data[skip] == '\r' ? 2 : 1;
      }
      if (skip > 0) {
        in.consume(skip);
        continue;
      }
      if (data == "\r") break;  // maybe the start of another empty line
      phase_ = Phase::kHead;
    }
    size_t n = parser_->feed(data);
    in.consume(n);
    if (parser_->error_status() != 0) {
      serve_error(parser_->error_status(), parser_->error_message());
      return Next::kWrite;
    }
    if (parser_->is_done()) {
      serve();
      return phase_ == Phase::kWaiting ? Next::kWait : Next::kWrite;
    }
    if (parser_->is_header_done()) {
      phase_ = Phase::kBody;
      if (parser_->expects_continue() && parser_->version() >= 11 && !continue_sent_) {
        continue_sent_ = true;
        head_response_ = false;
        out_.assign("HTTP/1.1 100 Continue\r\n\r\n");
        return Next::kWrite;
      }
    }
    if (n == 0) break;
  }
  return Next::kRead;
}

void Session::timeout() {
  serve_error(408, "The client did not send a complete request in time.");
}

void Session::set_base_url() {
  std::string_view host = req_.header("host");
  if (plausible_host(host)) {
    req_.base_url.assign("http://");
    req_.base_url.append(host);
  } else {
    req_.base_url.assign(ctx_.fallback_origin);
  }
}

Response Session::builtin(std::string_view path, bool& handled) {
  handled = false;
  if (req_.method != Method::kGet) return {};
  if (path == "/healthz") {
    handled = true;
    route_name_.assign("healthz");
    bool healthy = true;
    if (ctx_.options.health) {
      try {
        healthy = ctx_.options.health();
      } catch (const std::exception& e) {
        logger("http")->error("health check threw: {}", e.what());
        healthy = false;
      } catch (...) {
        healthy = false;
      }
    }
    return healthy ? Response::json(200, R"({"status":"ok"})")
                   : Response::json(503, R"({"status":"unavailable"})");
  }
  if (path == "/metrics") {
    handled = true;
    route_name_.assign("metrics");
    Response r;
    r.status = 200;
    r.headers.push_back(Header{"content-type", "text/plain; version=0.0.4"});
    r.body = ctx_.registry->render();
    return r;
  }
  return {};
}

void Session::serve() {
  auto start = std::chrono::steady_clock::now();
  new_request_id(req_.request_id);
  Method method = req_.method;
  bool keep_alive = parser_->keep_alive();

  // Absolute-form targets (RFC 9112 3.2.2) are reduced to origin-form; anything else that does
  // not start with '/' ("*", garbage) is refused.
  std::string_view target = req_.target;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() > scheme.size() && iequals(target.substr(0, scheme.size()), scheme)) {
      size_t slash = target.find_first_of("/?", scheme.size());
      std::string origin_form =
          slash == std::string_view::npos ? "/" : std::string(target.substr(slash));
      if (!origin_form.empty() && origin_form.front() == '?') origin_form.insert(0, "/");
      req_.target = std::move(origin_form);
      break;
    }
  }
  if (req_.target.empty() || req_.target.front() != '/') {
    serve_error(400, "The request target must be an absolute path.");
    return;
  }

  set_base_url();
  Response resp;
  try {
    std::string_view raw_path = std::string_view(req_.target).substr(0, req_.target.find('?'));
    bool handled = false;
    resp = builtin(raw_path, handled);
    if (!handled && deferral_) {
      std::optional<Response> now = ctx_.router->dispatch(req_, route_name_, deferral_);
      if (!now) {
        // The handler answers later through the sink; the connection neither reads (the next
        // pipelined request waits its turn) nor writes until complete().
        waiting_ = Waiting{start, keep_alive, method};
        phase_ = Phase::kWaiting;
        return;
      }
      resp = std::move(*now);
    } else if (!handled) {
      resp = ctx_.router->dispatch(req_, route_name_);
    }
  } catch (const std::exception& e) {
    // Router::dispatch already catches handler exceptions; this is the last line for anything
    // else (allocation failure, a throwing formatter fallback), so the connection survives.
    logger("http")->error("request failed request_id={}: {}", req_.request_id,
                          sanitize_utf8(e.what()));
    route_name_.assign(kUnmatched);
    resp = ctx_.router->error_for(
        req_.target, 500, "An unexpected error prevented the server from fulfilling your request.");
  } catch (...) {
    logger("http")->error("request failed request_id={} with a non-exception", req_.request_id);
    route_name_.assign(kUnmatched);
    resp = keystone_style_error(
        500, "An unexpected error prevented the server from fulfilling your request.");
  }
  if (ctx_.stopping.load(std::memory_order_relaxed)) keep_alive = false;
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  finish(resp, keep_alive, method == Method::kHead, seconds, method);
}

void Session::complete(Response response) {
  if (phase_ != Phase::kWaiting) return;
  bool keep_alive = waiting_.keep_alive && !ctx_.stopping.load(std::memory_order_relaxed);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - waiting_.start).count();
  finish(response, keep_alive, waiting_.method == Method::kHead, seconds, waiting_.method);
}

void Session::serve_error(int status, std::string_view message) {
  // Before the request line is parsed, req_ still holds the previous request: use none of it.
  bool seen = parser_ && parser_->target_seen();
  new_request_id(req_.request_id);
  Method method = seen ? req_.method : Method::kOther;
  std::string_view raw_path = seen ? std::string_view(req_.target) : std::string_view("/");
  if (!seen && parser_ && !parser_->early_path().empty()) raw_path = parser_->early_path();
  route_name_.assign(kUnmatched);
  Response resp;
  try {
    resp = ctx_.router->error_for(raw_path, status, message);
  } catch (...) {
    resp = keystone_style_error(status, message);
  }
  logger("http")->debug("rejected request_id={} status={} reason=\"{}\"", req_.request_id, status,
                        sanitize_utf8(message));
  finish(resp, /*keep_alive=*/false, seen && method == Method::kHead, 0.0, method);
}

void Session::finish(Response& resp, bool keep_alive, bool head, double seconds, Method method) {
  if (resp.status < 100 || resp.status > 999) {
    logger("http")->error("handler returned invalid status {} request_id={} route=\"{}\"",
                          resp.status, req_.request_id, route_name_);
    resp = keystone_style_error(
        500, "An unexpected error prevented the server from fulfilling your request.");
  }
  if (file_fd_ >= 0) {
    ::close(file_fd_);
    file_fd_ = -1;
  }
  bool bodyless = resp.status < 200 || resp.status == 204 || resp.status == 304;
  if (!resp.body_file.empty() && resp.body.empty() && !bodyless) {
    int fd = ::open(resp.body_file.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && ::fstat(fd, &st) == 0) {
      file_fd_ = fd;
      file_left_ = static_cast<uint64_t>(st.st_size);
    } else {
      logger("http")->error("cannot open response body file {} request_id={}: {}",
                            sanitize_utf8(resp.body_file), req_.request_id, std::strerror(errno));
      if (fd >= 0) ::close(fd);
      resp = ctx_.router->error_for(
          req_.target, 500,
          "An unexpected error prevented the server from fulfilling your request.");
    }
  }
  record(method, resp.status, seconds);
  serialize(resp, keep_alive, head);
  if (head && file_fd_ >= 0) {
    ::close(file_fd_);
    file_fd_ = -1;
  }
  head_response_ = head;
  close_ = !keep_alive;
  phase_ = Phase::kResponding;
  parser_.reset();
  if (ctx_.keep_last_response) last_ = std::move(resp);
}

void Session::serialize(Response& resp, bool keep_alive, bool head) {
  out_.clear();
  body_.clear();
  out_.append("HTTP/1.1 ");
  append_uint(out_, static_cast<uint64_t>(resp.status));
  out_.push_back(' ');
  out_.append(status_title(resp.status));
  out_.append("\r\n");
  for (const Header& h : resp.headers) {
    if (!is_token(h.name) || server_owned(h.name)) continue;
    out_.append(h.name);
    out_.append(": ");
    // A value with CR or LF would let a handler (or data it echoes) split the response.
    for (char c : h.value) out_.push_back(c == '\r' || c == '\n' || c == '\0' ? ' ' : c);
    out_.append("\r\n");
  }
  // RFC 9110 8.6: no Content-Length (and no body) on 1xx and 204; 304 has no body either.
  bool bodyless = resp.status < 200 || resp.status == 204 || resp.status == 304;
  if (!bodyless) {
    uint64_t length = file_fd_ >= 0 ? file_left_ : resp.body.size();
    if (head) {
      if (auto declared = parse_uint(resp.header("content-length"))) length = *declared;
    }
    out_.append("Content-Length: ");
    append_uint(out_, length);
    out_.append("\r\n");
  }
  out_.append("Date: ");
  out_.append(http_date());
  out_.append("\r\nx-openstack-request-id: ");
  out_.append(req_.request_id);
  out_.append("\r\n");
  if (!keep_alive) {
    out_.append("Connection: close\r\n");
  } else if (parser_ && parser_->version() == 10) {
    out_.append("Connection: keep-alive\r\n");
  }
  out_.append("\r\n");
  if (head || bodyless) return;
  // Large bodies (a page of 1,000 servers is 1.75 MB) go out from their own string: copying
  // them after the head cost a full pass over the bytes per response. Small ones join the head
  // so they leave in one segment.
  constexpr size_t kSeparateBody = 64 * 1024;
  if (resp.body.size() < kSeparateBody) {
    out_.append(resp.body);
  } else if (ctx_.keep_last_response) {
    body_ = resp.body;  // tests read the body from last_response()
  } else {
    body_ = std::move(resp.body);
  }
}

void Session::record(Method method, int status, double seconds) {
  Counter* counter = nullptr;
  for (const CounterSlot& s : counters_) {
    if (s.status == status && s.method == method && s.route == route_name_) {
      counter = s.counter;
      break;
    }
  }
  if (counter == nullptr) {
    counter = &ctx_.registry->counter("concord_http_requests_total",
                                      "HTTP requests answered, by route, method and status.",
                                      {{"route", route_name_},
                                       {"method", std::string(method_name(method))},
                                       {"status", std::to_string(status)}});
    if (counters_.size() == kMaxCachedSeries) counters_.erase(counters_.begin());
    counters_.push_back(CounterSlot{route_name_, method, status, counter});
  }
  counter->inc();

  Histogram* histogram = nullptr;
  for (const HistogramSlot& s : histograms_) {
    if (s.route == route_name_) {
      histogram = s.histogram;
      break;
    }
  }
  if (histogram == nullptr) {
    histogram = &ctx_.registry->histogram(
        "concord_http_request_duration_seconds",
        "Time from a complete request to its response being ready, by route.",
        {{"route", route_name_}}, duration_buckets());
    if (histograms_.size() == kMaxCachedSeries) histograms_.erase(histograms_.begin());
    histograms_.push_back(HistogramSlot{route_name_, histogram});
  }
  histogram->observe(seconds);
}

}  // namespace concord::http::internal
