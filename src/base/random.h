#pragma once
// Identifiers and secrets from OpenSSL's CSPRNG.
#include <string>

namespace concord {

// 32 lowercase hex characters, as Keystone's ids (uuid4().hex).
std::string new_hex_id();
// Dashed UUID4 (8-4-4-4-12), as Nova's and Glance's ids.
std::string new_uuid();
// n random bytes.
std::string random_bytes(size_t n);
// URL-safe base64 without padding of n random bytes (secrets shown once to a user).
std::string random_token(size_t n_bytes);

}  // namespace concord
