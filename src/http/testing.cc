#include "http/testing.h"

#include <algorithm>
#include <boost/asio/buffer.hpp>

#include "http/session.h"

namespace concord::http::testing {
namespace {

// Drives a Session like server.cc's Connection does, with the input coming from `bytes` and
// "the client went quiet" standing for the timers.
void run(const Router& router, std::string_view bytes, const ServerOptions& options,
         size_t chunk_size, bool first_only, std::vector<WrittenResponse>* wire, Response* first) {
  Registry registry;
  internal::ServerContext ctx;
  ctx.options = options;
  ctx.router = &router;
  ctx.registry = &registry;
  ctx.fallback_origin = "http://127.0.0.1:0";
  ctx.keep_last_response = first != nullptr;
  internal::Session session(ctx);
  boost::beast::flat_buffer in;
  size_t pos = 0;
  if (chunk_size == 0) chunk_size = std::max<size_t>(bytes.size(), 1);

  for (;;) {
    if (session.advance(in) == internal::Session::Next::kWrite) {
      bool full_response = session.phase() == internal::Session::Phase::kResponding;
      if (wire != nullptr) {
        std::string bytes = session.output() + session.output_body();
        if (full_response) {
          while (session.continue_output()) bytes += session.output();
        }
        wire->push_back({std::move(bytes), session.head_response()});
      } else if (full_response) {
        while (session.continue_output()) {
        }
      }
      if (full_response) {
        if (first != nullptr) *first = session.last_response();
        if (first_only || session.close_after_write()) return;
      }
      continue;
    }
    if (pos < bytes.size()) {
      size_t n = std::min(chunk_size, bytes.size() - pos);
      auto dst = in.prepare(n);
      boost::asio::buffer_copy(dst, boost::asio::const_buffer(bytes.data() + pos, n));
      in.commit(n);
      pos += n;
      continue;
    }
    // Input exhausted: the client went quiet.
    auto phase = session.phase();
    if (phase == internal::Session::Phase::kHead || phase == internal::Session::Phase::kBody ||
        (first_only && phase == internal::Session::Phase::kIdle)) {
      session.timeout();
      if (wire != nullptr) wire->push_back({session.output(), session.head_response()});
      if (first != nullptr) *first = session.last_response();
    }
    return;
  }
}

}  // namespace

Response handle_raw_request(const Router& router, std::string_view bytes,
                            const ServerOptions& options, size_t chunk_size) {
  Response first;
  run(router, bytes, options, chunk_size, /*first_only=*/true, nullptr, &first);
  return first;
}

std::vector<WrittenResponse> serve_raw_connection_parts(const Router& router,
                                                        std::string_view bytes,
                                                        const ServerOptions& options,
                                                        size_t chunk_size) {
  std::vector<WrittenResponse> parts;
  run(router, bytes, options, chunk_size, /*first_only=*/false, &parts, nullptr);
  return parts;
}

std::string serve_raw_connection(const Router& router, std::string_view bytes,
                                 const ServerOptions& options, size_t chunk_size) {
  std::string wire;
  for (const WrittenResponse& part :
       serve_raw_connection_parts(router, bytes, options, chunk_size)) {
    wire += part.bytes;
  }
  return wire;
}

}  // namespace concord::http::testing
