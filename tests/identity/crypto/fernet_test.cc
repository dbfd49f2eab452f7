// Fernet primitives against the spec's vector and against tokens made by an independent
// implementation (python3-cryptography 38: Fernet._encrypt_from_parts, and for the invalid
// ones AES-CBC + HMAC from its hazmat layer with the spec's key and IV).
#include <gtest/gtest.h>

#include <array>
#include <set>

#include "base/encoding.h"
#include "identity/crypto/fernet_internal.h"
#include "identity/crypto/token.h"

namespace concord::identity {
namespace {

constexpr std::string_view kSpecSecret = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";
constexpr uint64_t kSpecTime = 499162800;
constexpr std::string_view kSpecToken =
    "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU"
    "4IwqDA==";

fernet_internal::Iv iv_from(uint8_t first) {
  fernet_internal::Iv iv{};
  for (size_t i = 0; i < iv.size(); ++i) iv[i] = static_cast<uint8_t>(first + i);
  return iv;
}

FernetKey spec_key() {
  Result<FernetKey> key = FernetKey::from_base64(kSpecSecret);
  EXPECT_TRUE(key.has_value());
  return *key;
}

TEST(FernetTest, SpecGenerateVector) {
  EXPECT_EQ(fernet_internal::encrypt_with_iv(spec_key(), "hello", kSpecTime, iv_from(0)),
            kSpecToken);
}

TEST(FernetTest, SpecVerifyVector) {
  Result<std::string> plain = fernet_decrypt(spec_key(), kSpecToken);
  ASSERT_TRUE(plain.has_value()) << plain.error().to_string();
  EXPECT_EQ(*plain, "hello");
  Result<fernet_internal::Opened> opened =
      fernet_internal::open(std::array{spec_key()}, kSpecToken);
  ASSERT_TRUE(opened.has_value());
  EXPECT_EQ(opened->timestamp, kSpecTime);
}

// Empty plaintext (one full padding block), exactly one block (two blocks out) and a
// multi-block plaintext, made with python3-cryptography at t=1800000000, IV bytes 100..115.
TEST(FernetTest, IndependentImplementationVectors) {
  struct Case {
    std::string_view plaintext, token;
  };
  const Case cases[] = {
      {"",
       "gAAAAABrSdIAZGVmZ2hpamtsbW5vcHFyc5zvjvBqCANxIs5fd8hKpUycglGzL9n1GI12ayw-"
       "v4RLKzcukUZm52gbfsR4"
       "6W7P3Q=="},
      {"0123456789abcdef",
       "gAAAAABrSdIAZGVmZ2hpamtsbW5vcHFyc-"
       "wEsZLExSdCrNhimMbSmYvHbVAMuIEpSWF0h1FmksyFQuZydQlL238a55J-"
       "_Lkm3TszDMEh_HgkImlCTCveNck="},
      {"The quick brown fox jumps over the lazy dog",
       "gAAAAABrSdIAZGVmZ2hpamtsbW5vcHFycwAQWL1usHmwOcPe8TlNgyLAx6iUy3ZhGquEtPKXk4A-"
       "1h22cfRFIdTFFk0m"
       "QXikL1aWMnuLu09OSFo3Z-sQBQPkLyZhqTRmJ52XP4K1AFY6"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(fernet_internal::encrypt_with_iv(spec_key(), c.plaintext, 1800000000, iv_from(100)),
              c.token);
    Result<std::string> plain = fernet_decrypt(spec_key(), c.token);
    ASSERT_TRUE(plain.has_value()) << plain.error().to_string();
    EXPECT_EQ(*plain, c.plaintext);
  }
}

// Correctly signed tokens whose content is wrong: each must fail at its own check.
TEST(FernetTest, SignedButMalformedTokensFailAtTheirCheck) {
  struct Case {
    std::string_view token, message_part;
  };
  const Case cases[] = {
      // PKCS#7 pad byte 0x00.
      {"gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0OD2F9vXhtlSApygZSE6tCiEr9O1HNXyJ6R2JN-YOFda154vQK8EU_"
       "SjbCdv3d"
       "SKrwzw==",
       "padding"},
      // 31 bytes of ciphertext.
      {"gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0OD59ZoOxitGDf6M3uaGhzb9niS1jtJybGl7ZNXWtnlgLkKE1reyFxE9f18dz"
       "U"
       "qd6VLL1rEnT_nQ-SoH2pqKZGVQ==",
       "whole number of AES blocks"},
      // Version byte 0x81.
      {"gQAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLKY7covSkDHw9ma-418Z5yfJ0bAi-R_"
       "TUVpW6VS"
       "XlO8JA==",
       "version byte 0x81"},
  };
  for (const Case& c : cases) {
    Result<std::string> plain = fernet_decrypt(spec_key(), c.token);
    ASSERT_FALSE(plain.has_value()) << c.token;
    EXPECT_EQ(plain.error().code(), Code::kUnauthenticated);
    EXPECT_NE(plain.error().message().find(c.message_part), std::string::npos)
        << plain.error().message();
  }
}

TEST(FernetTest, WrongKeyIsRejected) {
  Result<std::string> plain = fernet_decrypt(FernetKey::generate(), kSpecToken);
  ASSERT_FALSE(plain.has_value());
  EXPECT_EQ(plain.error().code(), Code::kUnauthenticated);
  EXPECT_NE(plain.error().message().find("signature"), std::string::npos);
}

TEST(FernetTest, RandomIvMakesDistinctTokensThatDecrypt) {
  FernetKey key = FernetKey::generate();
  std::set<std::string> tokens;
  for (int i = 0; i < 50; ++i) {
    std::string token = fernet_encrypt(key, "payload", 42);
    Result<std::string> plain = fernet_decrypt(key, token);
    ASSERT_TRUE(plain.has_value());
    EXPECT_EQ(*plain, "payload");
    tokens.insert(token);
  }
  EXPECT_EQ(tokens.size(), 50u);
}

TEST(FernetTest, KeyBase64RoundTripAndErrors) {
  FernetKey key = FernetKey::generate();
  EXPECT_EQ(key.signing.size(), 16u);
  EXPECT_EQ(key.encryption.size(), 16u);
  std::string text = key.to_base64();
  EXPECT_EQ(text.size(), 44u);
  Result<FernetKey> back = FernetKey::from_base64(text);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->signing, key.signing);
  EXPECT_EQ(back->encryption, key.encryption);
  EXPECT_EQ(spec_key().to_base64(), kSpecSecret);
  EXPECT_NE(FernetKey::generate().to_base64(), text);

  Result<FernetKey> bad = FernetKey::from_base64("not base64 at all!");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  Result<FernetKey> short_key = FernetKey::from_base64(base64url_encode(std::string(31, 'x')));
  ASSERT_FALSE(short_key.has_value());
  EXPECT_EQ(short_key.error().code(), Code::kInvalidArgument);
  EXPECT_NE(short_key.error().message().find("31 bytes"), std::string::npos);
}

TEST(FernetTest, CanonicalBase64urlDecoder) {
  using fernet_internal::decode_canonical_base64url;
  EXPECT_EQ(decode_canonical_base64url(""), std::string());
  EXPECT_EQ(decode_canonical_base64url("aGVsbG8="), std::string("hello"));
  EXPECT_EQ(decode_canonical_base64url("aGk="), std::string("hi"));
  EXPECT_EQ(decode_canonical_base64url("aA=="), std::string("h"));
  EXPECT_EQ(decode_canonical_base64url("-_-_"), std::string("\xfb\xff\xbf", 3));
  EXPECT_FALSE(decode_canonical_base64url("aGVsbG8"));   // padding missing
  EXPECT_FALSE(decode_canonical_base64url("aGVsbG9="));  // unused bits set (alias of "hello")
  EXPECT_FALSE(decode_canonical_base64url("aB=="));      // unused bits set
  EXPECT_FALSE(decode_canonical_base64url("a==="));      // three pad characters
  EXPECT_FALSE(decode_canonical_base64url("aG=k"));      // '=' inside
  EXPECT_FALSE(decode_canonical_base64url("aGk+"));      // standard, not url, alphabet
  EXPECT_FALSE(decode_canonical_base64url("aGk/"));
  EXPECT_FALSE(decode_canonical_base64url(std::string_view("aG\0k", 4)));
  EXPECT_FALSE(decode_canonical_base64url("===="));
}

}  // namespace
}  // namespace concord::identity
