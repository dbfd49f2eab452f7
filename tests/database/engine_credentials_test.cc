// Password verifiers against values computed independently (Python's hashlib/hmac for SCRAM,
// MariaDB's documented PASSWORD('password')). That real engines accept them is proven by the
// engine tests, which log in with the passwords over TCP.
#include <gtest/gtest.h>

#include "database/engine/credentials.h"

namespace concord::database::engine {
namespace {

TEST(Credentials, ScramKnownAnswer) {
  EXPECT_EQ(postgres_scram_verifier_with_salt("pencil", "0123456789abcdef", 4096),
            "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$"
            "nQpbZ77WudtqufPwikHXGRt6g2QJ4zns8bZLw273DRM=:"
            "jn2amWP1q1h+jgjy0YTO14S6/F02SV7taipOeB7ef20=");
}

TEST(Credentials, ScramUsesAFreshSaltAndPostgresShape) {
  std::string a = postgres_scram_verifier("secret");
  std::string b = postgres_scram_verifier("secret");
  EXPECT_NE(a, b);  // random salt
  ASSERT_TRUE(a.starts_with("SCRAM-SHA-256$4096:")) << a;
  // 16-byte salt -> 24 base64 chars; 32-byte keys -> 44 chars each.
  std::string rest = a.substr(std::string("SCRAM-SHA-256$4096:").size());
  auto dollar = rest.find('$');
  ASSERT_NE(dollar, std::string::npos);
  EXPECT_EQ(dollar, 24u);
  auto colon = rest.find(':', dollar);
  ASSERT_NE(colon, std::string::npos);
  EXPECT_EQ(colon - dollar - 1, 44u);
  EXPECT_EQ(rest.size() - colon - 1, 44u);
}

TEST(Credentials, MariadbKnownAnswer) {
  EXPECT_EQ(mariadb_native_verifier("password"), "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19");
}

TEST(Credentials, PasswordVerifierByEngine) {
  auto m = password_verifier("mariadb", "password");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(*m, "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19");
  auto p = password_verifier("postgresql", "x");
  ASSERT_TRUE(p.has_value());
  EXPECT_TRUE(p->starts_with("SCRAM-SHA-256$4096:"));
  auto bad = password_verifier("oracle", "x");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.error().message().find("oracle"), std::string::npos);
}

}  // namespace
}  // namespace concord::database::engine
