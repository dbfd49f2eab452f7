#pragma once
// A small blocking HTTP/1.1 client: one keep-alive connection per client, every call bounded by
// a timeout, bodies in memory or streamed to and from files (image downloads, database backup
// uploads). Used by the agents
// towards the server, by the inference gateway towards replicas and by the device SDK. Plain
// http only (loopback or a private network).
//
// Threading: one client per thread. cancel() is the exception: any thread may call it to make
// the running call (a long-poll) and every later call fail at once with kUnavailable.
// Beast stays inside client.cc.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace concord::http {

struct HttpReply {
  int status = 0;
  std::string body;  // empty when streamed to a file
  std::string header(std::string_view name) const;
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercase
};

class HttpClient {
 public:
  // `base_url`: "http://host:port[/prefix]". kInvalidArgument for anything else.
  [[nodiscard]] static Result<std::unique_ptr<HttpClient>> create(std::string_view base_url);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // `target` is appended to the base URL's prefix ("/agent/v1/hosts/h1"). Errors: kUnavailable
  // when the server cannot be reached or the connection broke (retry), kDeadlineExceeded when
  // `timeout` passed; HTTP error statuses are a successful HttpReply.
  [[nodiscard]] Result<HttpReply> request(
      std::string_view method, std::string_view target, std::string_view body,
      const std::vector<std::pair<std::string, std::string>>& headers,
      std::chrono::milliseconds timeout);

  // GET streaming a 200 body into `path` (created or truncated). Other statuses come back with
  // their body in memory and the file removed.
  [[nodiscard]] Result<HttpReply> download(
      std::string_view target, const std::vector<std::pair<std::string, std::string>>& headers,
      const std::string& path, std::chrono::milliseconds timeout);

  // `method` (PUT, POST) sending the file at `path` as the body, read from disk as it is sent
  // (the agent's memory does not bound its size). The reply's body comes back in memory.
  // kFailedPrecondition when the file cannot be read; otherwise as request().
  [[nodiscard]] Result<HttpReply> upload(
      std::string_view method, std::string_view target, const std::string& path,
      const std::vector<std::pair<std::string, std::string>>& headers,
      std::chrono::milliseconds timeout);

  void cancel();

 private:
  class Impl;
  explicit HttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace concord::http
