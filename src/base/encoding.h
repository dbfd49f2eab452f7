#pragma once
// Byte encodings used by tokens and ids.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace concord {

std::string hex_encode(std::string_view bytes);
std::optional<std::string> hex_decode(std::string_view hex);
// RFC 4648 base64url; `pad` adds '=' padding (Fernet tokens are padded).
std::string base64url_encode(std::string_view bytes, bool pad = true);
// Accepts padded or unpadded input; rejects any other character.
std::optional<std::string> base64url_decode(std::string_view text);
// Percent-encodes a URL query component (RFC 3986): unreserved characters and those in
// `also_keep` stay as they are, every other byte becomes %XX (upper-case hex).
std::string url_encode(std::string_view s, std::string_view also_keep = {});

// 64-bit FNV-1a: a fast, stable, NON-cryptographic digest for telling whether two honest
// parties hold the same data (the agent protocol's assignment-set digest). Never for secrets.
uint64_t fnv1a64(std::string_view data, uint64_t state = 14695981039346656037ull);

// The digest of a set of (id, revision) pairs, fed in id order: FNV-1a 64 over
// "<id>:<revision>\n" lines, as 16 lower-case hex digits. The agent protocol's assignment-set
// digest (docs/design/compute.md): the agent and the server must compute it identically.
class RevisionSetDigest {
 public:
  void add(std::string_view id, int64_t revision);
  std::string hex() const;

 private:
  uint64_t state_ = fnv1a64("");
};

}  // namespace concord
