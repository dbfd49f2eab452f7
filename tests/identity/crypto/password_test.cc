#include "identity/crypto/password.h"

#include <argon2.h>
#include <gtest/gtest.h>

#include <string>

namespace concord::identity {
namespace {

// Small costs keep the suite fast; DefaultParameters covers the real ones.
const PasswordParams kFast{.time_cost = 1, .memory_kib = 64, .parallelism = 1};

std::string must_hash(std::string_view password, const PasswordParams& params = kFast) {
  Result<std::string> h = hash_password(password, params);
  EXPECT_TRUE(h.has_value()) << h.error().to_string();
  return h.value_or("");
}

TEST(PasswordTest, HashVerifiesAndIsSalted) {
  const std::string h = must_hash("correct horse battery staple");
  EXPECT_TRUE(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$")) << h;
  EXPECT_TRUE(verify_password("correct horse battery staple", h));
  EXPECT_FALSE(verify_password("correct horse battery stapl", h));
  EXPECT_FALSE(verify_password("Correct horse battery staple", h));
  EXPECT_FALSE(verify_password("", h));
  EXPECT_NE(must_hash("correct horse battery staple"), h);  // fresh salt each time
}

TEST(PasswordTest, DefaultParameters) {
  const std::string h = must_hash("s3cret", PasswordParams{});
  EXPECT_TRUE(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$")) << h;
  EXPECT_TRUE(verify_password("s3cret", h));
  EXPECT_FALSE(verify_password("s3cre", h));
}

TEST(PasswordTest, EmptyAndBinaryPasswords) {
  const std::string empty = must_hash("");
  EXPECT_TRUE(verify_password("", empty));
  EXPECT_FALSE(verify_password(" ", empty));
  const std::string binary("a\0b\xff", 4);
  const std::string h = must_hash(binary);
  EXPECT_TRUE(verify_password(binary, h));
  EXPECT_FALSE(verify_password("a", h));  // the NUL does not end the password
}

TEST(PasswordTest, OversizePasswordIsRejected) {
  const std::string max(kMaxPasswordBytes, 'p');
  const std::string h = must_hash(max);
  EXPECT_TRUE(verify_password(max, h));
  Result<std::string> over = hash_password(max + "p", kFast);
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error().code(), Code::kInvalidArgument);
  EXPECT_NE(over.error().message().find("4096"), std::string::npos);
  EXPECT_FALSE(verify_password(max + "p", h));
}

TEST(PasswordTest, ParametersOutOfBoundsAreRejected) {
  const PasswordParams bad[] = {
      {.time_cost = 0, .memory_kib = 64, .parallelism = 1},
      {.time_cost = kMaxTimeCost + 1, .memory_kib = 64, .parallelism = 1},
      {.time_cost = 1, .memory_kib = 64, .parallelism = 0},
      {.time_cost = 1, .memory_kib = 256, .parallelism = kMaxParallelism + 1},
      {.time_cost = 1, .memory_kib = 7, .parallelism = 1},
      {.time_cost = 1, .memory_kib = 15, .parallelism = 2},
      {.time_cost = 1, .memory_kib = kMaxMemoryKib + 1, .parallelism = 1},
  };
  for (const PasswordParams& p : bad) {
    Result<std::string> h = hash_password("x", p);
    ASSERT_FALSE(h.has_value()) << p.time_cost << " " << p.memory_kib << " " << p.parallelism;
    EXPECT_EQ(h.error().code(), Code::kInvalidArgument);
  }
  const std::string two_lanes =
      must_hash("x", {.time_cost = 1, .memory_kib = 16, .parallelism = 2});
  EXPECT_TRUE(verify_password("x", two_lanes));
}

TEST(PasswordTest, MalformedHashesAreFalse) {
  const std::string h = must_hash("pw");
  for (size_t n = 0; n < h.size(); ++n) {
    EXPECT_FALSE(verify_password("pw", h.substr(0, n))) << n;
  }
  for (size_t i = 0; i < h.size(); ++i) {
    std::string bad = h;
    bad[i] = bad[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(verify_password("pw", bad)) << bad;
  }
  EXPECT_FALSE(verify_password("pw", h + "A"));
  EXPECT_FALSE(verify_password("pw", h + std::string("\0", 1)));
  EXPECT_FALSE(verify_password("pw", std::string(h).insert(20, 1, '\0')));
  for (const char* s :
       {"", "$", "garbage", "$argon2id$", "$argon2id$v=19$", "$argon2id$v=19$m=64,t=1,p=1$",
        "$argon2id$v=19$m=64,t=1,p=1$$", "$argon2id$v=19$m=,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        "$argon2id$v=19$m=-1,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        "$2b$12$abcdefghijklmnopqrstuuNlVzGxFGjBQ2C4ydhZ1K4kYBv8P0Zs2"}) {
    EXPECT_FALSE(verify_password("pw", s)) << s;
  }
  EXPECT_FALSE(verify_password("pw", std::string(10'000, '$')));
}

// Parameters a planted hash could use to cost gigabytes, many threads or hours: refused
// before libargon2 runs (a test that hung or ran out of memory would show it was not).
TEST(PasswordTest, HashesWithAbsurdCostsAreFalseWithoutRunning) {
  const std::string h = must_hash("pw");
  const std::string tail = h.substr(h.find("p=1$") + 3);  // "$salt$hash"
  for (const std::string params :
       {"m=4294967295,t=1,p=1", "m=64,t=4294967295,p=1", "m=65536,t=1,p=16777215",
        "m=99999999999,t=1,p=1", "m=64,t=1,p=1,keyid=abc"}) {
    EXPECT_FALSE(verify_password("pw", "$argon2id$v=19$" + params + tail)) << params;
  }
  // The same string with the real parameters does verify (so the splice above is right).
  EXPECT_TRUE(verify_password("pw", "$argon2id$v=19$m=64,t=1,p=1" + tail));
}

TEST(PasswordTest, OtherArgon2VariantsAreNotAccepted) {
  char encoded[256];
  const char salt[] = "saltsaltsaltsalt";
  ASSERT_EQ(argon2i_hash_encoded(1, 64, 1, "pw", 2, salt, 16, 32, encoded, sizeof encoded),
            ARGON2_OK);
  EXPECT_FALSE(verify_password("pw", encoded));
  ASSERT_EQ(argon2id_hash_encoded(1, 64, 1, "pw", 2, salt, 16, 32, encoded, sizeof encoded),
            ARGON2_OK);
  EXPECT_TRUE(verify_password("pw", encoded));  // libargon2's own argon2id string verifies
}

}  // namespace
}  // namespace concord::identity
