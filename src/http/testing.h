#pragma once
// For tests and fuzzers only: run raw request bytes through exactly what a server connection
// does with them (Beast parsing with the size limits, conversion to Request, the built-in
// routes, Router::dispatch, the error responses, serialisation) without any socket.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.h"
#include "http/router.h"
#include "http/server.h"

namespace concord::http::testing {

// The first response the server would give a connection that sent `bytes` and then went quiet:
// the handler's response, or the error response (400 malformed, 413 body too large, 431 head
// too large, 405 unknown method, ...). If `bytes` do not hold a complete request, the result is
// the 408 the header/body timeout would produce. `chunk_size` > 0 feeds the bytes to the parser
// in pieces of that size, as a slow network would.
Response handle_raw_request(const Router& router, std::string_view bytes,
                            const ServerOptions& options = {}, size_t chunk_size = 0);

// Everything the server would write on such a connection: one response per pipelined request,
// stopping after a response that closes the connection, plus the 408 for a trailing incomplete
// request. The bytes are what would go on the wire (status line, headers, body).
std::string serve_raw_connection(const Router& router, std::string_view bytes,
                                 const ServerOptions& options = {}, size_t chunk_size = 0);

// The same, one entry per write, marking the answers to HEAD requests (whose Content-Length
// announces a body that is not sent), so that a checker can frame each response.
struct WrittenResponse {
  std::string bytes;
  bool head = false;
};
std::vector<WrittenResponse> serve_raw_connection_parts(const Router& router,
                                                        std::string_view bytes,
                                                        const ServerOptions& options = {},
                                                        size_t chunk_size = 0);

}  // namespace concord::http::testing
