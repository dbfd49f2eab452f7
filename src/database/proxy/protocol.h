#pragma once
// The parts of the PostgreSQL v3 frontend/backend protocol the endpoint proxy reads and writes:
// message framing with a length check on every message, the startup packet, the SASL messages
// of SCRAM-SHA-256, the extended-protocol messages whose statement names the proxy rewrites, and
// a classifier telling which SQL leaves session state behind on a server connection.
//
// Everything here is pure (bytes in, values out) so the fuzz target and the unit tests drive it
// without sockets. Parsers never trust a length: a value that does not fit is kInvalidArgument.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace concord::database::proxy {

// Startup-phase request codes (the int32 after the length of an untyped first packet).
inline constexpr uint32_t kProtocolV3 = 196608;  // 3.0
inline constexpr uint32_t kSslRequestCode = 80877103;
inline constexpr uint32_t kGssEncRequestCode = 80877104;
inline constexpr uint32_t kCancelRequestCode = 80877102;
// PostgreSQL's own bound on a startup packet (MAX_STARTUP_PACKET_LENGTH).
inline constexpr uint32_t kMaxStartupPacket = 10000;
// Bound on a typed message. PostgreSQL allows 1 GB; a proxy buffering that per client would be a
// memory amplifier, and no pooled workload sends single messages near this size.
inline constexpr uint32_t kMaxMessage = 64u << 20;

// One typed message as it sits in a buffer: type byte, and the body after the int32 length.
struct MessageView {
  char type = 0;
  std::string_view body;
  size_t total = 0;  // bytes the whole message occupies (1 + length)
};

// The first complete message at the start of `buf`, nullopt when more bytes are needed, or
// kInvalidArgument when the length field is impossible (< 4 or > kMaxMessage).
[[nodiscard]] Result<std::optional<MessageView>> next_message(std::string_view buf);

// An untyped startup-phase packet: the code and the body after it.
struct StartupPacket {
  uint32_t code = 0;
  std::string_view body;
  size_t total = 0;
};
[[nodiscard]] Result<std::optional<StartupPacket>> next_startup_packet(std::string_view buf);

struct StartupParams {
  std::string user;
  std::string database;
  // Every other parameter in the order sent (application_name, client_encoding, options...).
  std::vector<std::pair<std::string, std::string>> other;
};
// The body of a v3 StartupMessage: NUL-terminated name/value pairs ending in an empty name.
[[nodiscard]] Result<StartupParams> parse_startup(std::string_view body);

struct CancelKey {
  int32_t pid = 0;
  int32_t secret = 0;
};
[[nodiscard]] Result<CancelKey> parse_cancel(std::string_view body);

// Writers append to `out` so a batch of messages goes out in one write.
void put_int32(std::string& out, int32_t v);
void put_int16(std::string& out, int16_t v);
int32_t get_int32(const char* p);
void append_message(std::string& out, char type, std::string_view body);
void append_startup(std::string& out, const StartupParams& params);
void append_cancel(std::string& out, CancelKey key);
// ErrorResponse with severity, SQLSTATE and message (fields S, V, C, M).
void append_error(std::string& out, std::string_view severity, std::string_view sqlstate,
                  std::string_view message);
void append_auth(std::string& out, int32_t kind, std::string_view data = {});
void append_parameter_status(std::string& out, std::string_view name, std::string_view value);
void append_backend_key(std::string& out, CancelKey key);
void append_ready(std::string& out, char status);

// Field 'C' (SQLSTATE) and 'M' (message) of an ErrorResponse body, for logs and tests.
struct ErrorFields {
  std::string severity;
  std::string sqlstate;
  std::string message;
};
[[nodiscard]] Result<ErrorFields> parse_error(std::string_view body);

// SASLInitialResponse ('p' in reply to AuthenticationSASL): mechanism and initial data.
struct SaslInitial {
  std::string mechanism;
  std::string data;
};
[[nodiscard]] Result<SaslInitial> parse_sasl_initial(std::string_view body);

// Extended-protocol messages whose prepared-statement name the proxy rewrites. Each keeps the
// untouched remainder of the body so rewriting never re-encodes what it does not understand.
struct ParseMsg {
  std::string_view name;
  std::string_view query;
  std::string_view rest;  // int16 count + parameter type oids
};
[[nodiscard]] Result<ParseMsg> parse_parse(std::string_view body);
void append_parse(std::string& out, std::string_view name, std::string_view query,
                  std::string_view rest);

struct BindMsg {
  std::string_view portal;
  std::string_view statement;
  std::string_view rest;  // formats, parameters, result formats
};
[[nodiscard]] Result<BindMsg> parse_bind(std::string_view body);
void append_bind(std::string& out, std::string_view portal, std::string_view statement,
                 std::string_view rest);

// Describe ('D') and Close ('C') share a layout: 'S' (statement) or 'P' (portal), then a name.
struct TargetMsg {
  char kind = 0;
  std::string_view name;
};
[[nodiscard]] Result<TargetMsg> parse_target(std::string_view body);
void append_target(std::string& out, char type, char kind, std::string_view name);

// What a piece of SQL does to the session beyond its transaction, as bits.
enum SessionEffect : uint32_t {
  kEffectNone = 0,
  kEffectSet = 1u << 0,           // SET / SET SESSION (not SET LOCAL, not SET TRANSACTION)
  kEffectListen = 1u << 1,        // LISTEN
  kEffectTempObject = 1u << 2,    // CREATE TEMP[ORARY] ...
  kEffectAdvisoryLock = 1u << 3,  // session-level pg_advisory_lock / pg_try_advisory_lock
  kEffectHoldCursor = 1u << 4,    // DECLARE ... WITH HOLD
  kEffectSqlPrepare = 1u << 5,    // PREPARE name AS ...
  kEffectOther = 1u << 6,         // LOAD, SET SESSION AUTHORIZATION ... (kept conservative)
  // Effects that clear pins: the statement undoes session state.
  kClearSet = 1u << 16,       // RESET ALL
  kClearListen = 1u << 17,    // UNLISTEN *
  kClearAll = 1u << 18,       // DISCARD ALL
  kClearPrepared = 1u << 19,  // DEALLOCATE ALL / DISCARD ALL: server statements are gone
};
inline constexpr uint32_t kPinMask = 0xFFFF;

// The union of the effects of every statement in `sql` (split on ';' outside quotes and
// comments). Errs on the side of pinning: a false pin costs pooling, a missed one correctness.
uint32_t classify_sql(std::string_view sql);

}  // namespace concord::database::proxy
