// Fuzzes what the endpoint proxy reads from an untrusted client before and after login: the
// startup packet, framing, the SASL and extended-protocol messages it parses and rewrites, and
// the SQL classifier. Any input must give an error or values that stay inside the input; a
// rewrite of a parsed message must parse back to the same fields.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "database/proxy/protocol.h"
#include "database/proxy/scram.h"

namespace {

using namespace concord::database::proxy;

void check(bool condition) {
  if (!condition) std::abort();
}

void one_message(char type, std::string_view body) {
  switch (type) {
    case 'P': {
      auto p = parse_parse(body);
      if (!p) return;
      std::string out;
      append_parse(out, p->name, p->query, p->rest);
      auto m = next_message(out);
      check(m && *m && (*m)->total == out.size());
      auto again = parse_parse((*m)->body);
      check(again && again->name == p->name && again->query == p->query && again->rest == p->rest);
      (void)classify_sql(p->query);
      return;
    }
    case 'B': {
      auto b = parse_bind(body);
      if (!b) return;
      std::string out;
      append_bind(out, b->portal, b->statement, b->rest);
      auto m = next_message(out);
      check(m && *m);
      auto again = parse_bind((*m)->body);
      check(again && again->statement == b->statement && again->rest == b->rest);
      return;
    }
    case 'D':
    case 'C': (void)parse_target(body); return;
    case 'p': (void)parse_sasl_initial(body); return;
    case 'Q': (void)classify_sql(body); return;
    case 'E': (void)parse_error(body); return;
    default: return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto sp = next_startup_packet(in); sp && *sp) {
    check((*sp)->total <= in.size() && (*sp)->total <= kMaxStartupPacket);
    (void)parse_startup((*sp)->body);
    (void)parse_cancel((*sp)->body);
  }
  size_t at = 0;
  while (at < in.size()) {
    auto m = next_message(in.substr(at));
    if (!m || !*m) break;
    check((*m)->total >= 5 && (*m)->total <= in.size() - at);
    one_message((*m)->type, (*m)->body);
    at += (*m)->total;
  }
  (void)parse_scram_verifier(in);
  ScramServer server(ScramVerifier{4096, "salt", std::string(32, 'k'), std::string(32, 's')});
  if (server.first(in)) (void)server.final(in);
  return 0;
}
