// The proxy's pure parts: message framing limits, the session-state classifier that decides
// pinning, and SCRAM both ways against a verifier in PostgreSQL's own format.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "database/engine/credentials.h"
#include "database/proxy/protocol.h"
#include "database/proxy/proxy.h"
#include "database/proxy/scram.h"

namespace concord::database::proxy {
namespace {

std::string message(char type, std::string_view body) {
  std::string out;
  append_message(out, type, body);
  return out;
}

TEST(ProxyProtocolTest, FramingWaitsForWholeMessagesAndRejectsImpossibleLengths) {
  std::string q = message('Q', std::string("SELECT 1") + '\0');
  auto none = next_message(std::string_view(q).substr(0, q.size() - 1));
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->has_value());
  auto one = next_message(q + "trailing");
  ASSERT_TRUE(one.has_value() && one->has_value());
  EXPECT_EQ((*one)->type, 'Q');
  EXPECT_EQ((*one)->total, q.size());

  std::string short_len = "Q";
  put_int32(short_len, 3);
  EXPECT_EQ(next_message(short_len).error().code(), Code::kInvalidArgument);
  std::string huge = "Q";
  put_int32(huge, static_cast<int32_t>(kMaxMessage + 1));
  EXPECT_EQ(next_message(huge).error().code(), Code::kInvalidArgument);

  std::string startup;
  put_int32(startup, static_cast<int32_t>(kMaxStartupPacket + 1));
  put_int32(startup, static_cast<int32_t>(kProtocolV3));
  EXPECT_EQ(next_startup_packet(startup).error().code(), Code::kInvalidArgument);
}

TEST(ProxyProtocolTest, StartupParametersNeedAUserAndDefaultTheDatabase) {
  const char kBody[] = "user\0app\0application_name\0x\0";
  std::string body(kBody, sizeof kBody);  // the literal's own NUL ends the list
  auto p = parse_startup(body);
  ASSERT_TRUE(p.has_value()) << p.error().to_string();
  EXPECT_EQ(p->user, "app");
  EXPECT_EQ(p->database, "app");
  ASSERT_EQ(p->other.size(), 1u);
  EXPECT_EQ(p->other[0].first, "application_name");

  EXPECT_EQ(parse_startup(std::string("database\0d\0\0", 12)).error().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(parse_startup(std::string("user\0app", 8)).error().code(), Code::kInvalidArgument);
}

TEST(ProxyProtocolTest, ExtendedMessagesRoundTripAndRejectTruncation) {
  std::string out;
  append_parse(out, "P_1", "SELECT $1", std::string("\0\0", 2));
  auto m = next_message(out);
  ASSERT_TRUE(m.has_value() && m->has_value());
  auto p = parse_parse((*m)->body);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->name, "P_1");
  EXPECT_EQ(p->query, "SELECT $1");
  EXPECT_EQ(parse_parse(std::string("P_1\0SELECT", 10)).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse_target(std::string("X\0", 2)).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse_bind(std::string("portal", 6)).error().code(), Code::kInvalidArgument);
  std::string sasl = std::string("SCRAM-SHA-256\0", 14);
  put_int32(sasl, 100);
  sasl += "short";
  EXPECT_EQ(parse_sasl_initial(sasl).error().code(), Code::kInvalidArgument);
}

TEST(ProxyProtocolTest, ClassifierPinsSessionStateOnly) {
  EXPECT_EQ(classify_sql("SELECT 1"), kEffectNone);
  EXPECT_EQ(classify_sql("UPDATE t SET a = 1"), kEffectNone);
  EXPECT_EQ(classify_sql("set work_mem = '8MB'"), kEffectSet);
  EXPECT_EQ(classify_sql("SET LOCAL work_mem = '8MB'"), kEffectNone);
  EXPECT_EQ(classify_sql("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"), kEffectNone);
  EXPECT_EQ(classify_sql("BEGIN; SET search_path = x; COMMIT"), kEffectSet);
  EXPECT_EQ(classify_sql("/* SET x */ SELECT 'SET y'; -- SET z\n"), kEffectNone);
  EXPECT_EQ(classify_sql("SELECT $$; SET a=1; $$"), kEffectNone);
  EXPECT_EQ(classify_sql("LISTEN chan"), kEffectListen);
  EXPECT_EQ(classify_sql("CREATE TEMP TABLE t(a int)"), kEffectTempObject);
  EXPECT_EQ(classify_sql("create global temporary table t(a int)"), kEffectTempObject);
  EXPECT_EQ(classify_sql("CREATE TABLE temp(a int)"), kEffectNone);
  EXPECT_EQ(classify_sql("SELECT pg_advisory_lock(1)"), kEffectAdvisoryLock);
  EXPECT_EQ(classify_sql("SELECT pg_advisory_xact_lock(1)"), kEffectNone);
  EXPECT_EQ(classify_sql("DECLARE c CURSOR WITH HOLD FOR SELECT 1"), kEffectHoldCursor);
  EXPECT_EQ(classify_sql("DECLARE c CURSOR FOR SELECT 1"), kEffectNone);
  EXPECT_EQ(classify_sql("PREPARE s AS SELECT 1"), kEffectSqlPrepare);
  EXPECT_EQ(classify_sql("PREPARE TRANSACTION 'x'"), kEffectNone);
  EXPECT_EQ(classify_sql("RESET ALL"), kClearSet);
  EXPECT_EQ(classify_sql("DISCARD ALL"), kClearAll | kClearPrepared);
  EXPECT_EQ(classify_sql("UNLISTEN *"), kClearListen);
  EXPECT_EQ(classify_sql("SELECT E'\\'; SET x=1'"), kEffectNone);
}

TEST(ProxyProtocolTest, ScramServerAndClientAgreeAndRecoverTheClientKey) {
  std::string verifier_text =
      engine::postgres_scram_verifier_with_salt("s3cret", "0123456789abcdef", 4096);
  auto v = parse_scram_verifier(verifier_text);
  ASSERT_TRUE(v.has_value()) << v.error().to_string();

  // A client proving with the wrong key is refused.
  ScramServer server(*v);
  ScramClient wrong(std::string(32, 'x'), v->server_key);
  auto sf = server.first(wrong.first());
  ASSERT_TRUE(sf.has_value()) << sf.error().to_string();
  auto cf = wrong.final(*sf);
  ASSERT_TRUE(cf.has_value());
  EXPECT_EQ(server.final(*cf).error().code(), Code::kUnauthenticated);

  // The right ClientKey is HMAC(SaltedPassword, "Client Key"): the server accepts it and
  // recovers exactly that key from the proof (what the proxy then logs in to the engine with).
  ScramServer first_login(*v);
  std::string salted(32, '\0');
  ASSERT_EQ(PKCS5_PBKDF2_HMAC("s3cret", 6, reinterpret_cast<const unsigned char*>(v->salt.data()),
                              static_cast<int>(v->salt.size()), 4096, EVP_sha256(), 32,
                              reinterpret_cast<unsigned char*>(salted.data())),
            1);
  unsigned char ck[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), salted.data(), 32, reinterpret_cast<const unsigned char*>("Client Key"), 10,
       ck, &len);
  std::string client_key(reinterpret_cast<char*>(ck), 32);
  ScramClient right(client_key, v->server_key);
  auto sf2 = first_login.first(right.first());
  ASSERT_TRUE(sf2.has_value());
  auto cf2 = right.final(*sf2);
  ASSERT_TRUE(cf2.has_value());
  auto fin = first_login.final(*cf2);
  ASSERT_TRUE(fin.has_value()) << fin.error().to_string();
  EXPECT_EQ(first_login.client_key(), client_key);
  EXPECT_TRUE(right.verify(*fin).has_value());
  EXPECT_EQ(right.verify("v=AAAA").error().code(), Code::kUnauthenticated);

  EXPECT_EQ(parse_scram_verifier("md5abc").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse_scram_verifier("SCRAM-SHA-256$x:c2FsdA==$a:b").error().code(),
            Code::kInvalidArgument);
}

TEST(ProxyProtocolTest, EndpointsAndModesParseStrictly) {
  auto e = parse_endpoint("127.0.0.1:5432");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->port, 5432);
  EXPECT_EQ(parse_endpoint("[::1]:6432")->host, "::1");
  EXPECT_EQ(parse_endpoint("localhost:5432").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse_endpoint("127.0.0.1:99999").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse_pool_mode("statement").error().code(), Code::kInvalidArgument);
  ProxyOptions bad;
  bad.backend = {"127.0.0.1", 1};
  bad.pool_size = 0;
  EXPECT_EQ(Proxy::create(bad).error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace concord::database::proxy
