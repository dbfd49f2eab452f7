// The token payload codec (format 1). Layout, all integers big-endian:
//
//   u8   format version (1)
//   u8   flags: bit 0 methods stored as a list, bit 1 application credential present
//   u8   methods bitmask (bit 0 password, 1 token, 2 application_credential)
//        -- or, with flag bit 0: u8 count (1..8) then count strings
//   id   user_id
//   u8   scope kind (0 unscoped, 1 project, 2 domain, 3 system)
//   id   scope_id
//   i64  issued_at, microseconds since the epoch
//   i64  expires_at, microseconds since the epoch
//   u8   audit id count (1 or 2), then that many ids
//   id   app_cred_id (only with flag bit 1)
//
//   id     = u8 tag, then: tag 0 a string; tag 1 16 bytes that were 32 lowercase hex
//            characters; tag 2 16 bytes that were 22 canonical unpadded base64url characters
//   string = varint length (LEB128, at most kMaxPayloadFieldBytes) then the bytes
//
// Decoding goes through a bounds-checked reader so that any input yields a payload or
// kInvalidArgument; the only allocations are the fields themselves, each bounded.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>

#include "base/encoding.h"
#include "base/random.h"
#include "identity/crypto/token.h"

namespace concord::identity {
namespace {

constexpr uint8_t kFormatVersion = 1;
constexpr uint8_t kFlagMethodList = 1;
constexpr uint8_t kFlagAppCred = 2;
constexpr uint8_t kKnownFlags = kFlagMethodList | kFlagAppCred;
constexpr uint8_t kTagString = 0;
constexpr uint8_t kTagHex = 1;
constexpr uint8_t kTagBase64Url = 2;
constexpr size_t kRawIdBytes = 16;
constexpr size_t kMaxMethods = 8;
constexpr size_t kMaxAuditIds = 2;
constexpr std::array<std::string_view, 3> kMethodBits = {"password", "token",
                                                         "application_credential"};
constexpr uint8_t kKnownMethodBits = (1u << kMethodBits.size()) - 1;
// The widest microsecond count that SystemTime can hold without overflow.
constexpr int64_t kMaxMicros =
    std::chrono::duration_cast<std::chrono::microseconds>(SystemTime::duration::max()).count();

bool is_hex_id(std::string_view s) {
  if (s.size() != 2 * kRawIdBytes) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// 22 base64url characters that are exactly the unpadded encoding of 16 bytes.
std::optional<std::string> audit_style_bytes(std::string_view s) {
  if (s.size() != 22) return std::nullopt;
  std::optional<std::string> raw = base64url_decode(s);
  if (!raw || raw->size() != kRawIdBytes || base64url_encode(*raw, false) != s) {
    return std::nullopt;
  }
  return raw;
}

// Bitmask of `methods` if they are distinct known names in canonical order, which is what
// decode returns for a bitmask; otherwise they must be stored as a list to round-trip.
std::optional<uint8_t> method_bits(const std::vector<std::string>& methods) {
  uint8_t bits = 0;
  size_t last = 0;
  for (size_t i = 0; i < methods.size(); ++i) {
    size_t bit = 0;
    while (bit < kMethodBits.size() && kMethodBits[bit] != methods[i]) ++bit;
    if (bit == kMethodBits.size() || (i > 0 && bit <= last)) return std::nullopt;
    bits = static_cast<uint8_t>(bits | (1u << bit));
    last = bit;
  }
  return bits;
}

int64_t to_micros(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

class Writer {
 public:
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void i64(int64_t v) {
    const auto u = static_cast<uint64_t>(v);
    for (int i = 0; i < 8; ++i) u8(static_cast<uint8_t>(u >> (56 - 8 * i)));
  }
  void str(std::string_view s) {
    uint64_t n = s.size();
    do {
      const auto low = static_cast<uint8_t>(n & 0x7F);
      n >>= 7;
      u8(n != 0 ? (low | 0x80) : low);
    } while (n != 0);
    out_.append(s);
  }
  void id(std::string_view s) {
    if (is_hex_id(s)) {
      u8(kTagHex);
      out_.append(*hex_decode(s));
    } else if (auto raw = audit_style_bytes(s)) {
      u8(kTagBase64Url);
      out_.append(*raw);
    } else {
      u8(kTagString);
      str(s);
    }
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Every read checks the remaining length first; errors name the field being read.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  Result<uint8_t> u8(const char* field) {
    if (pos_ >= in_.size()) return truncated(field);
    return static_cast<uint8_t>(in_[pos_++]);
  }
  Result<int64_t> micros(const char* field) {
    if (in_.size() - pos_ < 8) return truncated(field);
    uint64_t u = 0;
    for (int i = 0; i < 8; ++i) u = (u << 8) | static_cast<uint8_t>(in_[pos_++]);
    const auto v = static_cast<int64_t>(u);
    if (v > kMaxMicros || v < -kMaxMicros) {
      return fail(Code::kInvalidArgument, std::string("token payload: ") + field +
                                              " is out of the representable time range");
    }
    return v;
  }
  Result<std::string> str(const char* field) {
    uint64_t n = 0;
    // Two varint bytes cover every length up to kMaxPayloadFieldBytes; a third means the
    // length is absurd, so stop before it can overflow.
    for (int shift = 0;; shift += 7) {
      if (shift > 7) return too_long(field);
      CONCORD_ASSIGN_OR_RETURN(uint8_t b, u8(field));
      n |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) break;
    }
    if (n > kMaxPayloadFieldBytes) return too_long(field);
    if (in_.size() - pos_ < n) return truncated(field);
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  Result<std::string> id(const char* field) {
    CONCORD_ASSIGN_OR_RETURN(uint8_t tag, u8(field));
    switch (tag) {
      case kTagString: return str(field);
      case kTagHex: {
        CONCORD_ASSIGN_OR_RETURN(std::string_view raw, raw16(field));
        return hex_encode(raw);
      }
      case kTagBase64Url: {
        CONCORD_ASSIGN_OR_RETURN(std::string_view raw, raw16(field));
        return base64url_encode(raw, /*pad=*/false);
      }
      default:
        return fail(Code::kInvalidArgument, std::string("token payload: ") + field +
                                                " has unknown id tag " + std::to_string(tag));
    }
  }
  size_t remaining() const { return in_.size() - pos_; }

 private:
  Result<std::string_view> raw16(const char* field) {
    if (in_.size() - pos_ < kRawIdBytes) return truncated(field);
    std::string_view raw = in_.substr(pos_, kRawIdBytes);
    pos_ += kRawIdBytes;
    return raw;
  }
  static std::unexpected<Error> truncated(const char* field) {
    return fail(Code::kInvalidArgument, std::string("token payload is truncated in ") + field);
  }
  static std::unexpected<Error> too_long(const char* field) {
    return fail(Code::kInvalidArgument, std::string("token payload: ") + field +
                                            " is longer than " +
                                            std::to_string(kMaxPayloadFieldBytes) + " bytes");
  }

  std::string_view in_;
  size_t pos_ = 0;
};

}  // namespace

std::string new_audit_id() {
  return base64url_encode(random_bytes(kRawIdBytes), /*pad=*/false);
}

std::string encode_payload(const TokenPayload& payload) {
  Writer w;
  w.u8(kFormatVersion);
  const std::optional<uint8_t> bits = method_bits(payload.methods);
  uint8_t flags = 0;
  if (!bits) flags |= kFlagMethodList;
  if (!payload.app_cred_id.empty()) flags |= kFlagAppCred;
  w.u8(flags);
  if (bits) {
    w.u8(*bits);
  } else {
    // A count beyond one byte is clamped; decode rejects anything over kMaxMethods anyway.
    w.u8(static_cast<uint8_t>(std::min<size_t>(payload.methods.size(), 255)));
    for (size_t i = 0; i < payload.methods.size() && i < 255; ++i) w.str(payload.methods[i]);
  }
  w.id(payload.user_id);
  w.u8(static_cast<uint8_t>(payload.scope));
  w.id(payload.scope_id);
  w.i64(to_micros(payload.issued_at));
  w.i64(to_micros(payload.expires_at));
  w.u8(static_cast<uint8_t>(std::min<size_t>(payload.audit_ids.size(), 255)));
  for (size_t i = 0; i < payload.audit_ids.size() && i < 255; ++i) w.id(payload.audit_ids[i]);
  if (!payload.app_cred_id.empty()) w.id(payload.app_cred_id);
  return w.take();
}

Result<TokenPayload> decode_payload(std::string_view bytes) {
  Reader r(bytes);
  TokenPayload p;
  CONCORD_ASSIGN_OR_RETURN(uint8_t version, r.u8("format version"));
  if (version != kFormatVersion) {
    return fail(Code::kInvalidArgument,
                "token payload has unknown format version " + std::to_string(version));
  }
  CONCORD_ASSIGN_OR_RETURN(uint8_t flags, r.u8("flags"));
  if ((flags & ~kKnownFlags) != 0) {
    return fail(Code::kInvalidArgument, "token payload has unknown flags");
  }
  if ((flags & kFlagMethodList) == 0) {
    CONCORD_ASSIGN_OR_RETURN(uint8_t bits, r.u8("methods"));
    if ((bits & ~kKnownMethodBits) != 0) {
      return fail(Code::kInvalidArgument, "token payload has unknown method bits");
    }
    for (size_t b = 0; b < kMethodBits.size(); ++b) {
      if ((bits & (1u << b)) != 0) p.methods.emplace_back(kMethodBits[b]);
    }
  } else {
    CONCORD_ASSIGN_OR_RETURN(uint8_t count, r.u8("methods"));
    if (count == 0 || count > kMaxMethods) {
      return fail(Code::kInvalidArgument,
                  "token payload has " + std::to_string(count) + " methods in its list");
    }
    for (uint8_t i = 0; i < count; ++i) {
      CONCORD_ASSIGN_OR_RETURN(std::string m, r.str("methods"));
      p.methods.push_back(std::move(m));
    }
  }
  CONCORD_ASSIGN_OR_RETURN(p.user_id, r.id("user_id"));
  CONCORD_ASSIGN_OR_RETURN(uint8_t scope, r.u8("scope kind"));
  if (scope > static_cast<uint8_t>(ScopeKind::kSystem)) {
    return fail(Code::kInvalidArgument,
                "token payload has unknown scope kind " + std::to_string(scope));
  }
  p.scope = static_cast<ScopeKind>(scope);
  CONCORD_ASSIGN_OR_RETURN(p.scope_id, r.id("scope_id"));
  CONCORD_ASSIGN_OR_RETURN(int64_t issued, r.micros("issued_at"));
  CONCORD_ASSIGN_OR_RETURN(int64_t expires, r.micros("expires_at"));
  p.issued_at = SystemTime(
      std::chrono::duration_cast<SystemTime::duration>(std::chrono::microseconds(issued)));
  p.expires_at = SystemTime(
      std::chrono::duration_cast<SystemTime::duration>(std::chrono::microseconds(expires)));
  CONCORD_ASSIGN_OR_RETURN(uint8_t audit_count, r.u8("audit ids"));
  if (audit_count == 0 || audit_count > kMaxAuditIds) {
    return fail(Code::kInvalidArgument,
                "token payload has " + std::to_string(audit_count) + " audit ids, expected 1 or 2");
  }
  for (uint8_t i = 0; i < audit_count; ++i) {
    CONCORD_ASSIGN_OR_RETURN(std::string a, r.id("audit ids"));
    p.audit_ids.push_back(std::move(a));
  }
  if ((flags & kFlagAppCred) != 0) {
    CONCORD_ASSIGN_OR_RETURN(p.app_cred_id, r.id("app_cred_id"));
    if (p.app_cred_id.empty()) {
      return fail(Code::kInvalidArgument, "token payload has an empty app_cred_id");
    }
  }
  if (r.remaining() != 0) {
    return fail(Code::kInvalidArgument,
                "token payload has " + std::to_string(r.remaining()) + " trailing bytes");
  }
  return p;
}

Status check_payload(const TokenPayload& payload) {
  // Exactly the limits decode enforces, by construction; the payload is small, so the
  // round trip costs about as much as listing the rules again would.
  Result<TokenPayload> decoded = decode_payload(encode_payload(payload));
  if (!decoded) return fail(decoded.error());
  if (*decoded != payload) {
    // Only sub-microsecond times get here (they are truncated).
    return fail(Code::kInvalidArgument, "token payload times must be whole microseconds");
  }
  return ok();
}

}  // namespace concord::identity
