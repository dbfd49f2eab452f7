#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <functional>
#include <random>
#include <set>

#include "base/encoding.h"
#include "base/random.h"
#include "identity/crypto/token.h"

namespace concord::identity {
namespace {

using std::chrono::microseconds;
using std::chrono::seconds;

const SystemTime kIssued = SystemTime(microseconds(1'800'000'000'123'456));

TokenPayload project_payload() {
  TokenPayload p;
  p.user_id = "0123456789abcdef0123456789abcdef";
  p.methods = {"password"};
  p.scope = ScopeKind::kProject;
  p.scope_id = "fedcba9876543210fedcba9876543210";
  p.issued_at = kIssued;
  p.expires_at = kIssued + std::chrono::hours(1);
  p.audit_ids = {"AAECAwQFBgcICQoLDA0ODw"};
  return p;
}

void expect_round_trip(const TokenPayload& p) {
  Result<TokenPayload> back = decode_payload(encode_payload(p));
  ASSERT_TRUE(back.has_value()) << back.error().to_string();
  EXPECT_EQ(*back, p);
  EXPECT_TRUE(check_payload(p).has_value());
}

void expect_invalid(std::string_view bytes, std::string_view message_part) {
  Result<TokenPayload> p = decode_payload(bytes);
  ASSERT_FALSE(p.has_value()) << "decoded: " << hex_encode(bytes);
  EXPECT_EQ(p.error().code(), Code::kInvalidArgument);
  EXPECT_NE(p.error().message().find(message_part), std::string::npos) << p.error().message();
}

// Every ordered selection of the known methods, plus lists that need the explicit form.
std::vector<std::vector<std::string>> method_lists() {
  std::vector<std::string> known = {"password", "token", "application_credential"};
  std::vector<std::vector<std::string>> out = {{}};
  for (int mask = 1; mask < 8; ++mask) {
    std::vector<std::string> subset;
    for (int b = 0; b < 3; ++b) {
      if (mask & (1 << b)) subset.push_back(known[b]);
    }
    std::sort(subset.begin(), subset.end());
    do out.push_back(subset);
    while (std::next_permutation(subset.begin(), subset.end()));
  }
  out.push_back({"mapped"});
  out.push_back({"password", "totp"});
  out.push_back({"password", "password"});
  return out;
}

TEST(PayloadTest, RoundTripsEveryScopeMethodAndIdShape) {
  const std::vector<std::string> ids = {
      new_hex_id(),                          // Keystone-style: stored as 16 bytes
      "0123456789ABCDEF0123456789ABCDEF",    // uppercase hex: kept as a string
      new_uuid(),                            // dashed
      "ldap-user-" + std::string(200, 'x'),  // long
      "ünïcode-ïd",
      "",
  };
  int cases = 0;
  for (ScopeKind scope :
       {ScopeKind::kUnscoped, ScopeKind::kProject, ScopeKind::kDomain, ScopeKind::kSystem}) {
    for (const auto& methods : method_lists()) {
      for (const std::string& id : ids) {
        TokenPayload p = project_payload();
        p.user_id = id;
        p.methods = methods;
        p.scope = scope;
        p.scope_id = scope == ScopeKind::kSystem ? "all" : scope == ScopeKind::kUnscoped ? "" : id;
        expect_round_trip(p);
        p.audit_ids = {new_audit_id(), "not-a-base64-audit-id"};
        p.app_cred_id = id.empty() ? "x" : id;
        expect_round_trip(p);
        cases += 2;
      }
    }
  }
  EXPECT_EQ(cases, 4 * 19 * 6 * 2);
}

TEST(PayloadTest, KnownMethodsInCanonicalOrderUseTheBitmask) {
  TokenPayload canonical = project_payload();
  canonical.methods = {"password", "token"};
  TokenPayload reordered = canonical;
  reordered.methods = {"token", "password"};
  // Bitmask: one byte for the methods; list: count + two length-prefixed names.
  EXPECT_EQ(encode_payload(reordered).size(),
            encode_payload(canonical).size() + 1 + (1 + 5) + (1 + 8) - 1);
  expect_round_trip(reordered);
}

TEST(PayloadTest, ProjectScopedPayloadIsCompact) {
  // version, flags, methods, user (tag + 16), scope kind, scope id (tag + 16), two times,
  // audit count, audit id (tag + 16).
  EXPECT_EQ(encode_payload(project_payload()).size(), 3u + 17 + 1 + 17 + 16 + 1 + 17);
  TokenPayload rescoped = project_payload();
  rescoped.audit_ids.push_back(new_audit_id());
  EXPECT_EQ(encode_payload(rescoped).size(), encode_payload(project_payload()).size() + 17);
  // The hex id's raw bytes are in the encoding, its text is not.
  const std::string bytes = encode_payload(project_payload());
  EXPECT_NE(bytes.find(*hex_decode(project_payload().user_id)), std::string::npos);
  EXPECT_EQ(bytes.find(project_payload().user_id), std::string::npos);
}

TEST(PayloadTest, TimesKeepMicrosecondsAndExtremes) {
  TokenPayload p = project_payload();
  p.issued_at = SystemTime(microseconds(0));
  p.expires_at = SystemTime(microseconds(-1));
  expect_round_trip(p);
  p.issued_at = SystemTime(std::chrono::duration_cast<SystemTime::duration>(
      std::chrono::duration_cast<microseconds>(SystemTime::duration::max())));
  expect_round_trip(p);
}

TEST(PayloadTest, SubMicrosecondTimesAreTruncatedAndFlaggedByCheck) {
  TokenPayload p = project_payload();
  p.expires_at += std::chrono::nanoseconds(999);
  Result<TokenPayload> back = decode_payload(encode_payload(p));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->expires_at, project_payload().expires_at);
  Status st = check_payload(p);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
}

TEST(PayloadTest, CheckPayloadNamesTheBrokenLimit) {
  struct Case {
    std::function<void(TokenPayload&)> change;
    std::string_view message_part;
  };
  const Case cases[] = {
      {[](TokenPayload& p) { p.user_id = std::string(kMaxPayloadFieldBytes + 1, 'u'); },
       "user_id is longer than 255"},
      {[](TokenPayload& p) { p.scope_id = std::string(1000, 's'); }, "scope_id is longer"},
      {[](TokenPayload& p) { p.app_cred_id = std::string(256, 'a'); }, "app_cred_id is longer"},
      {[](TokenPayload& p) { p.audit_ids.clear(); }, "0 audit ids"},
      {[](TokenPayload& p) { p.audit_ids.assign(3, new_audit_id()); }, "3 audit ids"},
      {[](TokenPayload& p) { p.scope = static_cast<ScopeKind>(9); }, "unknown scope kind 9"},
      {[](TokenPayload& p) { p.methods = {"x", "y", "z", "a", "b", "c", "d", "e", "f"}; },
       "9 methods"},
      {[](TokenPayload& p) { p.methods = {std::string(300, 'm')}; }, "methods is longer"},
  };
  for (const Case& c : cases) {
    TokenPayload p = project_payload();
    c.change(p);
    Status st = check_payload(p);
    ASSERT_FALSE(st.has_value()) << c.message_part;
    EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
    EXPECT_NE(st.error().message().find(c.message_part), std::string::npos) << st.error().message();
  }
  EXPECT_TRUE(check_payload(project_payload()).has_value());
  TokenPayload longest = project_payload();
  longest.user_id = std::string(kMaxPayloadFieldBytes, 'u');
  expect_round_trip(longest);
}

TEST(PayloadTest, DecodeRejectsEachMalformation) {
  const std::string good = encode_payload(project_payload());
  auto with = [&](size_t pos, uint8_t value) {
    std::string s = good;
    s[pos] = static_cast<char>(value);
    return s;
  };
  expect_invalid("", "truncated in format version");
  expect_invalid(with(0, 2), "unknown format version 2");
  expect_invalid(with(0, 0), "unknown format version 0");
  expect_invalid(with(1, 0x04), "unknown flags");
  expect_invalid(with(2, 0x08), "unknown method bits");
  expect_invalid(with(3, 7), "user_id has unknown id tag 7");
  expect_invalid(with(20, 4), "unknown scope kind 4");
  const size_t audit_count = 3 + 17 + 1 + 17 + 16;
  expect_invalid(with(audit_count, 0), "0 audit ids");
  expect_invalid(with(audit_count, 3), "3 audit ids");
  expect_invalid(good + "x", "1 trailing bytes");
  // issued_at = INT64_MAX microseconds does not fit a SystemTime.
  std::string far = good;
  far[38] = '\x7f';
  for (size_t i = 39; i < 46; ++i) far[i] = '\xff';
  expect_invalid(far, "issued_at is out of the representable time range");
  // Method list: zero and nine entries.
  expect_invalid(std::string("\x01\x01\x00", 3), "0 methods");
  expect_invalid(std::string("\x01\x01\x09", 3), "9 methods");
  // String lengths: 256 (two varint bytes), and a three-byte varint.
  expect_invalid(std::string("\x01\x00\x01\x00\x80\x02", 6) + std::string(256, 'x'),
                 "user_id is longer than 255");
  expect_invalid(std::string("\x01\x00\x01\x00\xff\xff\x7f", 7), "user_id is longer than 255");
  expect_invalid(std::string("\x01\x00\x01\x00\x05"
                             "abc",
                             8),
                 "truncated in user_id");
  // App credential flag with an empty id.
  std::string empty_app = with(1, 0x02) + std::string("\x00\x00", 2);
  expect_invalid(empty_app, "empty app_cred_id");
}

TEST(PayloadTest, EveryTruncationIsRejected) {
  TokenPayload p = project_payload();
  p.methods = {"token", "password"};
  p.audit_ids.push_back("x");
  p.app_cred_id = new_hex_id();
  const std::string good = encode_payload(p);
  for (size_t n = 0; n < good.size(); ++n) {
    Result<TokenPayload> r = decode_payload(std::string_view(good).substr(0, n));
    ASSERT_FALSE(r.has_value()) << "prefix " << n;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  }
}

// Random bytes and mutated encodings: decode must never crash (the ASan build and the
// fuzzer check memory safety), and whatever it accepts must be stable under re-encoding.
TEST(PayloadTest, RandomInputNeverBreaksDecode) {
  std::mt19937_64 rng(12345);
  const std::string good = encode_payload(project_payload());
  int accepted = 0;
  for (int i = 0; i < 200'000; ++i) {
    std::string bytes;
    if (i % 2 == 0) {
      bytes.resize(rng() % 120);
      for (char& c : bytes) c = static_cast<char>(rng());
      if (!bytes.empty() && (i % 4 == 0)) bytes[0] = 1;  // get past the version byte
    } else {
      bytes = good;
      for (int flips = 1 + static_cast<int>(rng() % 3); flips > 0; --flips) {
        bytes[rng() % bytes.size()] = static_cast<char>(rng());
      }
    }
    Result<TokenPayload> p = decode_payload(bytes);
    if (!p) {
      ASSERT_EQ(p.error().code(), Code::kInvalidArgument);
      continue;
    }
    ++accepted;
    Result<TokenPayload> again = decode_payload(encode_payload(*p));
    ASSERT_TRUE(again.has_value()) << hex_encode(bytes);
    ASSERT_EQ(*again, *p);
  }
  EXPECT_GT(accepted, 0);  // the mutations do reach the accepting paths
}

TEST(PayloadTest, AuditIdsAreUniqueCompactBase64url) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id = new_audit_id();
    ASSERT_EQ(id.size(), 22u);
    ASSERT_TRUE(std::all_of(id.begin(), id.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
    }));
    seen.insert(id);
    TokenPayload p = project_payload();
    p.audit_ids = {id};
    ASSERT_EQ(encode_payload(p).size(), encode_payload(project_payload()).size());
  }
  EXPECT_EQ(seen.size(), 1000u);
}

}  // namespace
}  // namespace concord::identity
