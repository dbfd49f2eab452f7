#pragma once
// Fernet-format tokens, as Keystone issues them: the token text is a Fernet token
// (https://github.com/fernet/spec: version 0x80, 64-bit big-endian timestamp, 128-bit IV,
// AES-128-CBC ciphertext with PKCS#7 padding, HMAC-SHA256 over all of that; base64url with
// padding) whose plaintext is a compact binary TokenPayload. Validation therefore needs no
// store lookup; only revocation is checked elsewhere (identity service).
//
// Keys live in a folder as Keystone's key repository does: files named 0, 1, 2, ... each
// holding a base64url 32-byte key (16 bytes signing key, 16 bytes encryption key). The
// highest number is the primary key (encrypts new tokens), 0 is the staged key (the next
// primary, already accepted for decryption so that rotation on one replica does not break
// tokens issued by another), the rest are secondary keys (decrypt only). Rotation promotes 0
// to max+1, writes a new 0 and deletes the oldest secondaries beyond max_active_keys. Files
// are written atomically (temp file + rename) with mode 0600.
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/result.h"

namespace concord::identity {

enum class ScopeKind : uint8_t { kUnscoped = 0, kProject = 1, kDomain = 2, kSystem = 3 };

struct TokenPayload {
  std::string user_id;
  // Subset of "password", "token", "application_credential" in the order they were used.
  std::vector<std::string> methods;
  ScopeKind scope = ScopeKind::kUnscoped;
  std::string scope_id;  // project id, domain id, or "all" for system scope
  SystemTime issued_at;
  SystemTime expires_at;
  // One or two audit ids (22 chars base64url of 16 random bytes, as Keystone's): the
  // token's own, then the one of the token it was rescoped from.
  std::vector<std::string> audit_ids;
  std::string app_cred_id;  // set when methods contains application_credential

  friend bool operator==(const TokenPayload&, const TokenPayload&) = default;
};

// A new audit id: 16 random bytes as unpadded base64url (22 characters).
std::string new_audit_id();

// Payload <-> bytes. The encoding is versioned (first byte) and bounded: decode rejects
// truncated, oversize or trailing data with kInvalidArgument and never reads out of bounds.
std::string encode_payload(const TokenPayload& payload);
Result<TokenPayload> decode_payload(std::string_view bytes);

// Raw Fernet primitives over one 32-byte key (16 signing + 16 encryption).
struct FernetKey {
  std::string signing;     // 16 bytes
  std::string encryption;  // 16 bytes
  static Result<FernetKey> from_base64(std::string_view text);
  static FernetKey generate();
  std::string to_base64() const;
};
std::string fernet_encrypt(const FernetKey& key, std::string_view plaintext, uint64_t timestamp);
// Verifies the HMAC (constant time) and decrypts; kUnauthenticated on any mismatch.
Result<std::string> fernet_decrypt(const FernetKey& key, std::string_view token);

// The key folder. Thread-safe: reload() and rotate() may run while tokens are issued.
class KeyRepository {
 public:
  // Loads the keys in `dir`; creates the folder and the first keys (0 and 1) if it is empty.
  static Result<std::unique_ptr<KeyRepository>> open(std::string dir, int max_active_keys);

  // Primary key first, then staged, then secondaries newest first (the order decryption tries).
  std::vector<FernetKey> keys() const;
  FernetKey primary() const;

  // Promotes the staged key and writes a new staged key, pruning beyond max_active_keys.
  [[nodiscard]] Status rotate();
  // Re-reads the folder (another process may have rotated).
  [[nodiscard]] Status reload();

 private:
  KeyRepository(std::string dir, int max_active_keys);
  std::string dir_;
  int max_active_keys_;
  mutable std::mutex mu_;
  std::vector<std::pair<int, FernetKey>> keys_;  // sorted by index, guarded by mu_
};

// Issues and opens tokens with a KeyRepository.
class TokenCodec {
 public:
  TokenCodec(std::shared_ptr<KeyRepository> keys, const Clock& clock)
      : keys_(std::move(keys)), clock_(clock) {}

  // The token text handed to the client in X-Subject-Token.
  std::string issue(const TokenPayload& payload) const;
  // Opens a token: kUnauthenticated if it was not made with one of our keys, was tampered
  // with, or has expired (message says which). Tokens longer than 1024 bytes are rejected
  // before any crypto.
  Result<TokenPayload> open(std::string_view token) const;

 private:
  std::shared_ptr<KeyRepository> keys_;
  const Clock& clock_;
};

}  // namespace concord::identity
