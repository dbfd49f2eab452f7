#pragma once
// HTTP messages as the capabilities see them: plain values, no Beast types, so handlers and
// their tests need no networking headers.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace concord::http {

enum class Method { kGet, kHead, kPost, kPut, kPatch, kDelete, kOptions, kOther };

std::string_view method_name(Method m);

struct Header {
  std::string name;  // lowercase
  std::string value;
};

struct Request {
  Method method = Method::kGet;
  std::string target;  // as received: path plus query
  std::string path;    // percent-decoded path without the mount prefix (e.g. "/v3/projects")
  std::string query;   // raw query string without '?'
  std::vector<Header> headers;
  std::string body;
  // When the server spooled the body to disk (ServerOptions::streamed_body), the file holding
  // it; `body` is then empty. The handler may read, rename or delete the file; the server
  // deletes whatever is left there once the response is produced.
  std::string body_file;
  std::string request_id;  // "req-<uuid>", also sent back as x-openstack-request-id
  std::string base_url;  // scheme://host[:port]/prefix the client used (for links), no slash at end
  // Path parameters captured by the route pattern, in order ("{id}" segments).
  std::vector<std::string> params;

  // First header with this (lowercase) name, or "" when absent.
  std::string_view header(std::string_view lowercase_name) const;
  bool has_header(std::string_view lowercase_name) const;
  // Decoded query parameters in order; repeated names are kept.
  std::vector<std::pair<std::string, std::string>> query_params() const;
  // First decoded query value for name, if present.
  std::optional<std::string> query_param(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::vector<Header> headers;  // content-type goes here too
  std::string body;
  // When set (and `body` is empty), the server sends this file's content as the body without
  // loading it into memory. The file must stay in place until the response is written.
  std::string body_file;

  void set_header(std::string name, std::string value);
  std::string_view header(std::string_view lowercase_name) const;

  static Response json(int status, std::string body);
  static Response empty(int status);
};

// Percent-decodes a URL component; '+' is decoded to space only when `plus_is_space`.
std::string percent_decode(std::string_view in, bool plus_is_space = false);

}  // namespace concord::http
