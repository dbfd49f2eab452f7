#pragma once
// SCRAM-SHA-256 (RFC 5802/7677) on both sides of the transaction-pooling proxy.
//
// Server side: the proxy checks a client's proof against the user's stored verifier
// ("SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>", the string the desired state carries)
// without ever knowing the password. A valid proof also yields the ClientKey
// (ClientProof XOR HMAC(StoredKey, AuthMessage)), and because the engine holds the same
// verifier (same salt and iterations), that ClientKey is exactly what the proxy needs to prove
// itself to the engine as that user: pass-through authentication, as PgBouncer does it.
// The proxy keeps recovered ClientKeys in memory only.
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace concord::database::proxy {

struct ScramVerifier {
  int iterations = 0;
  std::string salt;        // raw bytes
  std::string stored_key;  // 32 bytes
  std::string server_key;  // 32 bytes
};
[[nodiscard]] Result<ScramVerifier> parse_scram_verifier(std::string_view text);

std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);

// One server-side exchange; a fresh object per client login.
class ScramServer {
 public:
  explicit ScramServer(ScramVerifier verifier) : v_(std::move(verifier)) {}
  // Takes the client-first-message; returns the server-first-message.
  [[nodiscard]] Result<std::string> first(std::string_view client_first);
  // Takes the client-final-message; returns the server-final-message ("v=...") when the proof
  // is right, kUnauthenticated when it is not.
  [[nodiscard]] Result<std::string> final(std::string_view client_final);
  // Valid after final() succeeded.
  const std::string& client_key() const { return client_key_; }

 private:
  ScramVerifier v_;
  std::string client_first_bare_;
  std::string server_first_;
  std::string nonce_;
  std::string gs2_header_;
  std::string client_key_;
};

// The client side toward the engine, proving with a ClientKey instead of a password.
class ScramClient {
 public:
  ScramClient(std::string client_key, std::string server_key)
      : client_key_(std::move(client_key)), server_key_(std::move(server_key)) {}
  std::string first();  // client-first-message ("n,,n=,r=<nonce>")
  // Takes the server-first-message; returns the client-final-message.
  [[nodiscard]] Result<std::string> final(std::string_view server_first);
  // Checks the server's signature ("v=..."): kUnauthenticated when it is wrong (the engine
  // is not who holds the verifier).
  [[nodiscard]] Status verify(std::string_view server_final);

 private:
  std::string client_key_;
  std::string server_key_;
  std::string nonce_;
  std::string client_first_bare_;
  std::string auth_message_;
};

}  // namespace concord::database::proxy
