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
#include <cstddef>
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

// Tokens longer than this are rejected before any crypto (Keystone's are 180-250 characters).
inline constexpr size_t kMaxTokenBytes = 1024;
// Longest id (user, scope, audit, application credential) or method name a payload carries.
inline constexpr size_t kMaxPayloadFieldBytes = 255;

enum class ScopeKind : uint8_t { kUnscoped = 0, kProject = 1, kDomain = 2, kSystem = 3 };

struct TokenPayload {
  std::string user_id;
  // Subset of "password", "token", "application_credential" in the order they were used.
  std::vector<std::string> methods;
  ScopeKind scope = ScopeKind::kUnscoped;
  std::string scope_id;  // project id, domain id, or "all" for system scope
  // Carried with microsecond precision: finer parts are truncated.
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
// Methods are a bitmask, so decode returns them in the order password, token,
// application_credential (as Keystone does) unless they were given in another order or
// contain other names, in which case they are stored as a list and kept as given.
// The layout is described in docs/design/tokens.md.
std::string encode_payload(const TokenPayload& payload);
[[nodiscard]] Result<TokenPayload> decode_payload(std::string_view bytes);
// kInvalidArgument (naming the field) if `payload` breaks a limit decode_payload enforces
// (field longer than kMaxPayloadFieldBytes, not 1 or 2 audit ids, unknown scope kind, time
// out of range...): issue() would then make a token that open() rejects. Call it before
// issuing payloads built from input that was not already validated.
[[nodiscard]] Status check_payload(const TokenPayload& payload);

// Raw Fernet primitives over one 32-byte key (16 signing + 16 encryption).
struct FernetKey {
  std::string signing;     // 16 bytes
  std::string encryption;  // 16 bytes
  // Accepts the 44-character padded form (as Keystone writes key files) or unpadded.
  [[nodiscard]] static Result<FernetKey> from_base64(std::string_view text);
  static FernetKey generate();
  std::string to_base64() const;
};
std::string fernet_encrypt(const FernetKey& key, std::string_view plaintext, uint64_t timestamp);
// Verifies the HMAC (constant time) and decrypts; kUnauthenticated on any mismatch. The token
// text must be canonical padded base64url, so that one token has exactly one spelling.
[[nodiscard]] Result<std::string> fernet_decrypt(const FernetKey& key, std::string_view token);

// The key folder. Thread-safe: reload() and rotate() may run while tokens are issued; they
// build a new immutable key list and swap it in, so readers never wait on file I/O.
// Processes sharing one folder serialize rotate() with flock() on the folder; a rotation is
// crash-safe at every step (a staged key 0 always exists, see docs/design/tokens.md).
// Errors: kInvalidArgument for bad arguments, kFailedPrecondition for a folder or key file
// that cannot be used as it is (the message names the file).
class KeyRepository {
  struct PassKey {};

 public:
  // Loads the keys in `dir`; creates the folder (mode 0700) and the first keys (0 and 1) if
  // it holds no key file. max_active_keys counts every key file, staged included; it must
  // be at least 2.
  [[nodiscard]] static Result<std::unique_ptr<KeyRepository>> open(std::string dir,
                                                                   int max_active_keys);

  // Primary key first, then staged, then secondaries newest first (the order decryption tries).
  std::vector<FernetKey> keys() const;
  FernetKey primary() const;
  // The same list as keys(), shared and immutable: what TokenCodec uses per call, without
  // copying keys.
  std::shared_ptr<const std::vector<FernetKey>> snapshot() const;
  // File indices present, ascending (0 = staged, highest = primary); for tests and tooling.
  std::vector<int> indices() const;
  const std::string& dir() const { return dir_; }

  // Promotes the staged key and writes a new staged key, pruning beyond max_active_keys.
  // Works from the folder's current content (re-read under the lock), not from memory.
  [[nodiscard]] Status rotate();
  // Re-reads the folder (another process may have rotated). On error the keys in use stay.
  [[nodiscard]] Status reload();

  KeyRepository(PassKey, std::string dir, int max_active_keys);

 private:
  using IndexedKeys = std::vector<std::pair<int, FernetKey>>;
  void publish(IndexedKeys keys);

  std::string dir_;
  int max_active_keys_;
  std::mutex io_mu_;  // serializes reload()/rotate() within the process
  mutable std::mutex mu_;
  std::vector<int> indices_;                            // guarded by mu_
  std::shared_ptr<const std::vector<FernetKey>> keys_;  // decryption order, guarded by mu_
};

// Issues and opens tokens with a KeyRepository.
class TokenCodec {
 public:
  TokenCodec(std::shared_ptr<KeyRepository> keys, const Clock& clock)
      : keys_(std::move(keys)), clock_(clock) {}

  // The token text handed to the client in X-Subject-Token, encrypted with the primary key
  // and stamped with clock.now(). See check_payload() for the payload's limits.
  std::string issue(const TokenPayload& payload) const;
  // Opens a token: kUnauthenticated if it was not made with one of our keys, was tampered
  // with, or has expired (message says which). Tokens longer than 1024 bytes are rejected
  // before any crypto. A token is expired when expires_at <= clock.now().
  [[nodiscard]] Result<TokenPayload> open(std::string_view token) const;

 private:
  std::shared_ptr<KeyRepository> keys_;
  const Clock& clock_;
};

}  // namespace concord::identity
