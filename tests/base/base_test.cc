#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/encoding.h"
#include "base/json.h"
#include "base/random.h"
#include "base/time_format.h"

namespace concord {
namespace {

TEST(Json, ParsesValidObject) {
  auto j = parse_json(R"({"a": [1, 2, {"b": "c"}]})");
  ASSERT_TRUE(j.has_value());
  EXPECT_EQ((*j)["a"][2]["b"], "c");
}

TEST(Json, RejectsMalformed) {
  auto j = parse_json("{\"a\": ");
  ASSERT_FALSE(j.has_value());
  EXPECT_EQ(j.error().code(), Code::kInvalidArgument);
}

TEST(Json, RejectsDeepNesting) {
  std::string deep(100000, '[');
  auto j = parse_json(deep);
  ASSERT_FALSE(j.has_value());
  EXPECT_EQ(j.error().code(), Code::kInvalidArgument);
  EXPECT_NE(j.error().message().find("nesting"), std::string::npos);
  EXPECT_TRUE(parse_json(std::string(63, '[') + std::string(63, ']')).has_value());
}

TEST(Json, RejectsLoneSurrogateAndInvalidUtf8) {
  EXPECT_FALSE(parse_json(R"({"a": "\ud800"})").has_value());
  EXPECT_FALSE(parse_json("{\"a\": \"\xff\xfe\"}").has_value());
  EXPECT_TRUE(parse_json(R"({"a": "\ud83d\ude00"})").has_value());
}

TEST(Json, DumpReplacesInvalidUtf8) {
  Json j = {{"a", std::string("x\xffy")}};
  EXPECT_EQ(dump_json(j), "{\"a\":\"x\xEF\xBF\xBDy\"}");
}

TEST(Utf8, SanitizeKeepsValidAndReplacesInvalid) {
  EXPECT_EQ(sanitize_utf8("h\xc3\xa9llo"), "h\xc3\xa9llo");
  EXPECT_EQ(sanitize_utf8("\xed\xa0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(sanitize_utf8("\xc0\xaf"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong
}

TEST(Encoding, Base64UrlRoundTrip) {
  for (size_t n = 0; n < 40; ++n) {
    std::string bytes = random_bytes(n);
    for (bool pad : {true, false}) {
      auto decoded = base64url_decode(base64url_encode(bytes, pad));
      ASSERT_TRUE(decoded.has_value());
      EXPECT_EQ(*decoded, bytes);
    }
  }
  EXPECT_FALSE(base64url_decode("ab+c").has_value());
  EXPECT_FALSE(base64url_decode("a").has_value());
}

TEST(Encoding, UrlEncodeKeepsOnlyUnreservedAndWhatIsAsked) {
  EXPECT_EQ(url_encode("aZ09-_.~"), "aZ09-_.~");
  EXPECT_EQ(url_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
  EXPECT_EQ(url_encode(std::string("\0:,", 3)), "%00%3A%2C");
  EXPECT_EQ(url_encode("gt:2026,x", ":,"), "gt:2026,x");
  EXPECT_EQ(url_encode(std::string("\0", 1), std::string("\0", 1)), "%00");  // NUL always escaped
}

TEST(Encoding, Fnv1a64MatchesTheReferenceVectors) {
  // From the FNV reference (isthe.com/chongo/tech/comp/fnv): "" and "a" and "foobar".
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ull);
  // Chaining through `state` equals hashing the concatenation.
  EXPECT_EQ(fnv1a64("bar", fnv1a64("foo")), fnv1a64("foobar"));
}

TEST(Encoding, RevisionSetDigestIsFnvOverIdRevisionLines) {
  EXPECT_EQ(RevisionSetDigest().hex(), "cbf29ce484222325");  // FNV-1a 64 of ""
  RevisionSetDigest d;
  d.add("a", 1);
  d.add("b", 22);
  char want[17];
  std::snprintf(want, sizeof want, "%016llx",
                static_cast<unsigned long long>(fnv1a64("a:1\nb:22\n")));
  EXPECT_EQ(d.hex(), want);
}

TEST(Encoding, Hex) {
  EXPECT_EQ(hex_encode("\x01\xab"), "01ab");
  EXPECT_EQ(*hex_decode("01AB"), "\x01\xab");
  EXPECT_FALSE(hex_decode("0g").has_value());
  EXPECT_FALSE(hex_decode("abc").has_value());
}

TEST(Random, IdsHaveExpectedShape) {
  EXPECT_EQ(new_hex_id().size(), 32u);
  std::string u = new_uuid();
  ASSERT_EQ(u.size(), 36u);
  EXPECT_EQ(u[14], '4');
  EXPECT_NE(new_hex_id(), new_hex_id());
}

TEST(TimeFormat, KeystoneFormatRoundTrips) {
  auto t = SystemTime(std::chrono::seconds(1'767'268'800)) + std::chrono::microseconds(123456);
  EXPECT_EQ(format_keystone_time(t), "2026-01-01T12:00:00.123456Z");
  EXPECT_EQ(format_iso_naive(t), "2026-01-01T12:00:00.123456");
  EXPECT_EQ(format_iso_naive(SystemTime(std::chrono::seconds(1'767'268'800))),
            "2026-01-01T12:00:00");
  EXPECT_EQ(parse_iso_time("2026-01-01T12:00:00.123456Z"), t);
  EXPECT_EQ(parse_iso_time("2026-01-01T12:00:00.123456"), t);
  EXPECT_EQ(parse_iso_time("2026-01-01T12:00:00+00:00"),
            SystemTime(std::chrono::seconds(1'767'268'800)));
  EXPECT_FALSE(parse_iso_time("2026-13-01T12:00:00").has_value());
  EXPECT_FALSE(parse_iso_time("yesterday").has_value());
  EXPECT_FALSE(parse_iso_time("2026-01-01T12:00:00+05:00").has_value());
  // Beyond what system_clock holds (1678..2262) the answer saturates instead of wrapping.
  EXPECT_EQ(parse_iso_time("2999-01-01T00:00:00Z"), SystemTime::max());
  EXPECT_EQ(parse_iso_time("1000-01-01T00:00:00Z"), SystemTime::min());
  EXPECT_LT(*parse_iso_time("2026-01-01T00:00:00Z"), *parse_iso_time("2261-12-31T23:59:59Z"));
}

}  // namespace
}  // namespace concord
