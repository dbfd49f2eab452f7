#pragma once
// Internals of the Fernet implementation, shared by token_codec.cc and by the tests, the fuzzer
// and the benchmark (which need an injectable IV and the multi-key open). Not part of the
// module's interface: nothing outside src/identity/crypto and its tests includes this.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"
#include "identity/crypto/token.h"

namespace concord::identity::fernet_internal {

inline constexpr uint8_t kVersion = 0x80;
inline constexpr size_t kKeyHalfBytes = 16;
inline constexpr size_t kIvBytes = 16;
inline constexpr size_t kBlockBytes = 16;
inline constexpr size_t kHmacBytes = 32;
inline constexpr size_t kHeaderBytes = 1 + 8 + kIvBytes;  // version, timestamp, IV
// The shortest well-formed token: header, one block of ciphertext (an empty plaintext still
// pads to one block), HMAC.
inline constexpr size_t kMinTokenBytes = kHeaderBytes + kBlockBytes + kHmacBytes;

using Iv = std::array<uint8_t, kIvBytes>;

// Fernet encryption with a caller-chosen IV (the spec's test vectors fix it). Aborts if `key`
// does not hold 16-byte halves: only a programming error makes such a key.
std::string encrypt_with_iv(const FernetKey& key, std::string_view plaintext, uint64_t timestamp,
                            const Iv& iv);

// Strict RFC 4648 base64url with padding: length a multiple of 4, '=' only as the last one or
// two characters, and the unused bits of the last symbol zero. Anything else is nullopt, so
// every token has exactly one accepted spelling (a flipped character can never decode to the
// same bytes).
std::optional<std::string> decode_canonical_base64url(std::string_view text);

struct Opened {
  std::string plaintext;
  uint64_t timestamp = 0;
  size_t key_index = 0;  // which of `keys` verified the HMAC
};

// Verifies the token against each key in order and decrypts with the first whose HMAC
// matches. kUnauthenticated with a message that says which check failed; kInternal if a key
// is malformed.
[[nodiscard]] Result<Opened> open(std::span<const FernetKey> keys, std::string_view token);

}  // namespace concord::identity::fernet_internal
