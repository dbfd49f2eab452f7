#include "database/proxy/protocol.h"

#include <array>
#include <cctype>
#include <cstring>

namespace concord::database::proxy {
namespace {

// A reader over a message body that fails instead of running past the end.
class BodyReader {
 public:
  explicit BodyReader(std::string_view body) : body_(body) {}

  Result<std::string_view> cstring(std::string_view what) {
    size_t end = body_.find('\0', pos_);
    if (end == std::string_view::npos) {
      return fail(Code::kInvalidArgument, std::string(what) + " is not NUL-terminated");
    }
    std::string_view s = body_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }
  Result<int32_t> int32(std::string_view what) {
    if (body_.size() - pos_ < 4) {
      return fail(Code::kInvalidArgument, std::string(what) + " is cut short");
    }
    int32_t v = get_int32(body_.data() + pos_);
    pos_ += 4;
    return v;
  }
  Result<char> byte(std::string_view what) {
    if (pos_ >= body_.size()) {
      return fail(Code::kInvalidArgument, std::string(what) + " is missing");
    }
    return body_[pos_++];
  }
  Result<std::string_view> bytes(size_t n, std::string_view what) {
    if (body_.size() - pos_ < n) {
      return fail(Code::kInvalidArgument, std::string(what) + " is cut short");
    }
    std::string_view s = body_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::string_view rest() const { return body_.substr(pos_); }
  bool done() const { return pos_ == body_.size(); }

 private:
  std::string_view body_;
  size_t pos_ = 0;
};

}  // namespace

int32_t get_int32(const char* p) {
  uint32_t v = (uint32_t(uint8_t(p[0])) << 24) | (uint32_t(uint8_t(p[1])) << 16) |
               (uint32_t(uint8_t(p[2])) << 8) | uint32_t(uint8_t(p[3]));
  return static_cast<int32_t>(v);
}

void put_int32(std::string& out, int32_t v) {
  uint32_t u = static_cast<uint32_t>(v);
  char b[4] = {char(u >> 24), char(u >> 16), char(u >> 8), char(u)};
  out.append(b, 4);
}

void put_int16(std::string& out, int16_t v) {
  uint16_t u = static_cast<uint16_t>(v);
  char b[2] = {char(u >> 8), char(u)};
  out.append(b, 2);
}

Result<std::optional<MessageView>> next_message(std::string_view buf) {
  if (buf.size() < 5) return std::optional<MessageView>();
  uint32_t len = static_cast<uint32_t>(get_int32(buf.data() + 1));
  if (len < 4 || len > kMaxMessage) {
    return fail(Code::kInvalidArgument,
                "message '" + std::string(1, std::isprint(uint8_t(buf[0])) ? buf[0] : '?') +
                    "' has an invalid length " + std::to_string(len));
  }
  if (buf.size() < size_t(len) + 1) return std::optional<MessageView>();
  return MessageView{buf[0], buf.substr(5, len - 4), size_t(len) + 1};
}

Result<std::optional<StartupPacket>> next_startup_packet(std::string_view buf) {
  if (buf.size() < 8) return std::optional<StartupPacket>();
  uint32_t len = static_cast<uint32_t>(get_int32(buf.data()));
  if (len < 8 || len > kMaxStartupPacket) {
    return fail(Code::kInvalidArgument, "invalid startup packet length " + std::to_string(len));
  }
  if (buf.size() < len) return std::optional<StartupPacket>();
  return StartupPacket{static_cast<uint32_t>(get_int32(buf.data() + 4)), buf.substr(8, len - 8),
                       len};
}

Result<StartupParams> parse_startup(std::string_view body) {
  BodyReader r(body);
  StartupParams p;
  bool have_user = false;
  while (true) {
    CONCORD_ASSIGN_OR_RETURN(auto name, r.cstring("startup parameter name"));
    if (name.empty()) break;
    CONCORD_ASSIGN_OR_RETURN(auto value, r.cstring("startup parameter value"));
    if (name == "user") {
      p.user = value;
      have_user = true;
    } else if (name == "database") {
      p.database = value;
    } else {
      p.other.emplace_back(name, value);
    }
  }
  if (!r.done()) return fail(Code::kInvalidArgument, "bytes after the startup parameters");
  if (!have_user || p.user.empty()) {
    return fail(Code::kInvalidArgument, "no PostgreSQL user name specified in startup packet");
  }
  if (p.database.empty()) p.database = p.user;
  return p;
}

Result<CancelKey> parse_cancel(std::string_view body) {
  if (body.size() != 8) return fail(Code::kInvalidArgument, "cancel request has a bad length");
  return CancelKey{get_int32(body.data()), get_int32(body.data() + 4)};
}

void append_message(std::string& out, char type, std::string_view body) {
  out.push_back(type);
  put_int32(out, static_cast<int32_t>(body.size() + 4));
  out.append(body);
}

void append_startup(std::string& out, const StartupParams& params) {
  std::string body;
  put_int32(body, static_cast<int32_t>(kProtocolV3));
  auto add = [&body](std::string_view k, std::string_view v) {
    body.append(k);
    body.push_back('\0');
    body.append(v);
    body.push_back('\0');
  };
  add("user", params.user);
  add("database", params.database);
  for (const auto& [k, v] : params.other) add(k, v);
  body.push_back('\0');
  put_int32(out, static_cast<int32_t>(body.size() + 4));
  out.append(body);
}

void append_cancel(std::string& out, CancelKey key) {
  put_int32(out, 16);
  put_int32(out, static_cast<int32_t>(kCancelRequestCode));
  put_int32(out, key.pid);
  put_int32(out, key.secret);
}

void append_error(std::string& out, std::string_view severity, std::string_view sqlstate,
                  std::string_view message) {
  std::string body;
  auto field = [&body](char f, std::string_view v) {
    body.push_back(f);
    body.append(v);
    body.push_back('\0');
  };
  field('S', severity);
  field('V', severity);
  field('C', sqlstate);
  field('M', message);
  body.push_back('\0');
  append_message(out, 'E', body);
}

void append_auth(std::string& out, int32_t kind, std::string_view data) {
  std::string body;
  put_int32(body, kind);
  body.append(data);
  append_message(out, 'R', body);
}

void append_parameter_status(std::string& out, std::string_view name, std::string_view value) {
  std::string body(name);
  body.push_back('\0');
  body.append(value);
  body.push_back('\0');
  append_message(out, 'S', body);
}

void append_backend_key(std::string& out, CancelKey key) {
  std::string body;
  put_int32(body, key.pid);
  put_int32(body, key.secret);
  append_message(out, 'K', body);
}

void append_ready(std::string& out, char status) {
  append_message(out, 'Z', std::string_view(&status, 1));
}

Result<ErrorFields> parse_error(std::string_view body) {
  BodyReader r(body);
  ErrorFields e;
  while (true) {
    CONCORD_ASSIGN_OR_RETURN(char f, r.byte("error field type"));
    if (f == '\0') break;
    CONCORD_ASSIGN_OR_RETURN(auto v, r.cstring("error field"));
    if (f == 'S') e.severity = v;
    if (f == 'C') e.sqlstate = v;
    if (f == 'M') e.message = v;
  }
  return e;
}

Result<SaslInitial> parse_sasl_initial(std::string_view body) {
  BodyReader r(body);
  CONCORD_ASSIGN_OR_RETURN(auto mech, r.cstring("SASL mechanism"));
  CONCORD_ASSIGN_OR_RETURN(int32_t len, r.int32("SASL data length"));
  SaslInitial s;
  s.mechanism = mech;
  if (len == -1) return s;
  if (len < 0) return fail(Code::kInvalidArgument, "negative SASL data length");
  CONCORD_ASSIGN_OR_RETURN(auto data, r.bytes(size_t(len), "SASL data"));
  if (!r.done()) return fail(Code::kInvalidArgument, "bytes after the SASL data");
  s.data = data;
  return s;
}

Result<ParseMsg> parse_parse(std::string_view body) {
  BodyReader r(body);
  ParseMsg m;
  CONCORD_ASSIGN_OR_RETURN(m.name, r.cstring("statement name"));
  CONCORD_ASSIGN_OR_RETURN(m.query, r.cstring("query"));
  m.rest = r.rest();
  if (m.rest.size() < 2) return fail(Code::kInvalidArgument, "Parse has no parameter count");
  return m;
}

void append_parse(std::string& out, std::string_view name, std::string_view query,
                  std::string_view rest) {
  out.push_back('P');
  put_int32(out, static_cast<int32_t>(4 + name.size() + 1 + query.size() + 1 + rest.size()));
  out.append(name);
  out.push_back('\0');
  out.append(query);
  out.push_back('\0');
  out.append(rest);
}

Result<BindMsg> parse_bind(std::string_view body) {
  BodyReader r(body);
  BindMsg m;
  CONCORD_ASSIGN_OR_RETURN(m.portal, r.cstring("portal name"));
  CONCORD_ASSIGN_OR_RETURN(m.statement, r.cstring("statement name"));
  m.rest = r.rest();
  return m;
}

void append_bind(std::string& out, std::string_view portal, std::string_view statement,
                 std::string_view rest) {
  out.push_back('B');
  put_int32(out, static_cast<int32_t>(4 + portal.size() + 1 + statement.size() + 1 + rest.size()));
  out.append(portal);
  out.push_back('\0');
  out.append(statement);
  out.push_back('\0');
  out.append(rest);
}

Result<TargetMsg> parse_target(std::string_view body) {
  BodyReader r(body);
  TargetMsg m;
  CONCORD_ASSIGN_OR_RETURN(m.kind, r.byte("Describe/Close kind"));
  if (m.kind != 'S' && m.kind != 'P') {
    return fail(Code::kInvalidArgument, "Describe/Close kind is neither 'S' nor 'P'");
  }
  CONCORD_ASSIGN_OR_RETURN(m.name, r.cstring("Describe/Close name"));
  if (!r.done()) return fail(Code::kInvalidArgument, "bytes after the Describe/Close name");
  return m;
}

void append_target(std::string& out, char type, char kind, std::string_view name) {
  out.push_back(type);
  put_int32(out, static_cast<int32_t>(4 + 1 + name.size() + 1));
  out.push_back(kind);
  out.append(name);
  out.push_back('\0');
}

namespace {

// ASCII case-insensitive equality against an upper-case keyword. SQL keywords are ASCII, and
// the C library's toupper/isalnum are locale calls: classify_sql runs on every query the
// transaction pool forwards, so it neither calls them nor copies a word.
bool keyword_is(std::string_view word, std::string_view upper) {
  if (word.size() != upper.size()) return false;
  for (size_t i = 0; i < word.size(); ++i) {
    char c = word[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != upper[i]) return false;
  }
  return true;
}

// The words of one statement (identifiers and keywords as written; quoted text and comments
// skipped), at most kWordLimit of them, plus whether a session-level advisory lock call appears.
// Views into the SQL text, in a fixed array: no allocation per word.
struct StatementWords {
  static constexpr size_t kWordLimit = 64;
  std::array<std::string_view, kWordLimit> words;
  size_t count = 0;
  bool advisory_lock = false;
  bool with_hold = false;

  void add(std::string_view w) {
    if (count < kWordLimit) words[count++] = w;
  }
  std::string_view at(size_t i) const { return i < count ? words[i] : std::string_view(); }
  std::string_view last() const { return count > 0 ? words[count - 1] : std::string_view(); }
};

bool ascii_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool ident_char(char c) {
  return ascii_alpha(c) || (c >= '0' && c <= '9') || c == '_' || c == '$' ||
         static_cast<unsigned char>(c) >= 0x80;
}

uint32_t classify_statement(const StatementWords& s) {
  uint32_t e = kEffectNone;
  if (s.advisory_lock) e |= kEffectAdvisoryLock;
  if (s.count == 0) return e;
  auto is = [&s](size_t i, std::string_view upper) { return keyword_is(s.at(i), upper); };
  if (is(0, "SET")) {
    if (is(1, "LOCAL") || is(1, "TRANSACTION") || is(1, "CONSTRAINTS")) return e;
    if (is(1, "SESSION") && is(2, "AUTHORIZATION")) return e | kEffectOther;
    return e | kEffectSet;
  }
  if (is(0, "RESET")) return e | (is(1, "ALL") ? kClearSet : kEffectSet);
  if (is(0, "LISTEN")) return e | kEffectListen;
  if (is(0, "UNLISTEN")) return e | (is(1, "*") ? kClearListen : kEffectNone);
  if (is(0, "DISCARD")) {
    if (is(1, "ALL")) return e | kClearAll | kClearPrepared;
    return e;  // DISCARD TEMP / PLANS / SEQUENCES leave nothing behind
  }
  if (is(0, "DEALLOCATE")) {
    if (is(1, "ALL") || (is(1, "PREPARE") && is(2, "ALL"))) return e | kClearPrepared;
    return e;
  }
  if (is(0, "PREPARE")) {
    // PREPARE TRANSACTION is two-phase commit, not a statement.
    return e | (is(1, "TRANSACTION") ? kEffectNone : kEffectSqlPrepare);
  }
  if (is(0, "CREATE")) {
    // CREATE [OR REPLACE] [GLOBAL | LOCAL] TEMP[ORARY] <kind>: the keyword precedes the kind,
    // so a table named "temp" does not pin.
    size_t i = 1;
    if (is(i, "OR") && is(i + 1, "REPLACE")) i += 2;
    if (is(i, "GLOBAL") || is(i, "LOCAL")) ++i;
    if (is(i, "TEMP") || is(i, "TEMPORARY")) return e | kEffectTempObject;
    return e;
  }
  if (is(0, "DECLARE") && s.with_hold) return e | kEffectHoldCursor;
  if (is(0, "LOAD")) return e | kEffectOther;
  // SELECT ... INTO TEMP t
  if (is(0, "SELECT")) {
    for (size_t i = 1; i + 1 < s.count; ++i) {
      if (is(i, "INTO") && (is(i + 1, "TEMP") || is(i + 1, "TEMPORARY"))) {
        return e | kEffectTempObject;
      }
    }
  }
  return e;
}

}  // namespace

uint32_t classify_sql(std::string_view sql) {
  uint32_t effects = kEffectNone;
  StatementWords cur;
  size_t i = 0;
  const size_t n = sql.size();
  while (i < n) {
    char c = sql[i];
    if (c == ';') {
      effects |= classify_statement(cur);
      cur = StatementWords{};
      ++i;
    } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
      while (i < n && sql[i] != '\n') ++i;
    } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      int depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] == '/' && i + 1 < n && sql[i + 1] == '*') {
          ++depth;
          i += 2;
        } else if (sql[i] == '*' && i + 1 < n && sql[i + 1] == '/') {
          --depth;
          i += 2;
        } else {
          ++i;
        }
      }
    } else if (c == '\'' || c == '"') {
      // E'...' strings honour backslash escapes; the E was already taken as a word.
      bool backslash = c == '\'' && keyword_is(cur.last(), "E") && i > 0 &&
                       (sql[i - 1] == 'E' || sql[i - 1] == 'e');
      if (backslash) --cur.count;
      ++i;
      while (i < n) {
        if (backslash && sql[i] == '\\') {
          i += 2;
          continue;
        }
        if (sql[i] == c) {
          if (i + 1 < n && sql[i + 1] == c) {
            i += 2;
            continue;
          }
          break;
        }
        ++i;
      }
      ++i;
      if (c == '"') cur.add("\"");
    } else if (c == '$' && i + 1 < n &&
               (sql[i + 1] == '$' || ascii_alpha(sql[i + 1]) || sql[i + 1] == '_')) {
      // Dollar quote $tag$ ... $tag$ (a $1 parameter is not one: digits cannot start a tag).
      size_t j = i + 1;
      while (j < n && sql[j] != '$' && ident_char(sql[j])) ++j;
      if (j < n && sql[j] == '$') {
        std::string_view tag = sql.substr(i, j - i + 1);
        size_t end = sql.find(tag, j + 1);
        i = end == std::string_view::npos ? n : end + tag.size();
      } else {
        i = j;
      }
    } else if (ident_char(c)) {
      size_t j = i;
      while (j < n && ident_char(sql[j])) ++j;
      const std::string_view word = sql.substr(i, j - i);
      if (keyword_is(word, "PG_ADVISORY_LOCK") || keyword_is(word, "PG_ADVISORY_LOCK_SHARED") ||
          keyword_is(word, "PG_TRY_ADVISORY_LOCK") ||
          keyword_is(word, "PG_TRY_ADVISORY_LOCK_SHARED")) {
        cur.advisory_lock = true;
      }
      if (keyword_is(word, "HOLD") && keyword_is(cur.last(), "WITH")) cur.with_hold = true;
      cur.add(word);
      i = j;
    } else if (c == '*') {
      cur.add("*");
      ++i;
    } else {
      ++i;
    }
  }
  effects |= classify_statement(cur);
  return effects;
}

}  // namespace concord::database::proxy
