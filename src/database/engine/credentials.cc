// Verifiers are computed with OpenSSL's one-shot primitives; none of them can fail for the
// inputs used here (fixed digests, in-memory buffers), so a failure is a broken invariant and
// aborts rather than handing an engine an empty verifier that would lock a user out silently.
#include "database/engine/credentials.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <array>
#include <cstdlib>

#include "base/encoding.h"
#include "base/random.h"
#include "fmt/format.h"

namespace concord::database::engine {
namespace {

constexpr int kScramIterations = 4096;  // PostgreSQL's scram_iterations default
constexpr size_t kScramSaltBytes = 16;

using Sha256 = std::array<unsigned char, SHA256_DIGEST_LENGTH>;

std::string bytes_of(const unsigned char* data, size_t n) {
  return std::string(reinterpret_cast<const char*>(data), n);
}

// Standard base64 with padding (RFC 4648 section 4), as PostgreSQL stores SCRAM secrets; the
// base library only has the URL alphabet.
std::string base64_std(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Sha256 hmac_sha256(const Sha256& key, std::string_view message) {
  Sha256 out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), out.data(),
           &len) == nullptr ||
      len != out.size()) {
    std::abort();
  }
  return out;
}

}  // namespace

std::string postgres_scram_verifier_with_salt(std::string_view password, std::string_view salt,
                                              int iterations) {
  // PostgreSQL runs SASLprep on the password first; for ASCII passwords it is the identity, and
  // PostgreSQL itself falls back to the raw bytes when the password is not valid UTF-8 or
  // prohibited by SASLprep, so raw bytes are what a client that sends raw bytes must match.
  Sha256 salted{};
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()),
                        static_cast<int>(salt.size()), iterations, EVP_sha256(),
                        static_cast<int>(salted.size()), salted.data()) != 1) {
    std::abort();
  }
  Sha256 client_key = hmac_sha256(salted, "Client Key");
  Sha256 stored_key{};
  SHA256(client_key.data(), client_key.size(), stored_key.data());
  Sha256 server_key = hmac_sha256(salted, "Server Key");
  return fmt::format("SCRAM-SHA-256${}:{}${}:{}", iterations, base64_std(salt),
                     base64_std(bytes_of(stored_key.data(), stored_key.size())),
                     base64_std(bytes_of(server_key.data(), server_key.size())));
}

std::string postgres_scram_verifier(std::string_view password) {
  return postgres_scram_verifier_with_salt(password, random_bytes(kScramSaltBytes),
                                           kScramIterations);
}

std::string mariadb_native_verifier(std::string_view password) {
  std::array<unsigned char, SHA_DIGEST_LENGTH> first{};
  std::array<unsigned char, SHA_DIGEST_LENGTH> second{};
  SHA1(reinterpret_cast<const unsigned char*>(password.data()), password.size(), first.data());
  SHA1(first.data(), first.size(), second.data());
  std::string hex = hex_encode(bytes_of(second.data(), second.size()));
  for (char& c : hex) {
    if (c >= 'a' && c <= 'f') c = static_cast<char>(c - 'a' + 'A');
  }
  return "*" + hex;
}

Result<std::string> password_verifier(std::string_view engine, std::string_view password) {
  if (engine == "postgresql") return postgres_scram_verifier(password);
  if (engine == "mariadb") return mariadb_native_verifier(password);
  return fail(Code::kInvalidArgument,
              fmt::format("no password verifier for database engine '{}' (known: postgresql, "
                          "mariadb)",
                          engine));
}

}  // namespace concord::database::engine
