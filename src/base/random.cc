#include "base/random.h"

#include <openssl/rand.h>

#include <cstdlib>

#include "base/encoding.h"

namespace concord {

std::string random_bytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    // The CSPRNG failing means no secret or id we make can be trusted: stop loudly.
    std::abort();
  }
  return out;
}

std::string new_hex_id() {
  return hex_encode(random_bytes(16));
}

std::string new_uuid() {
  std::string b = random_bytes(16);
  b[6] = static_cast<char>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<char>((b[8] & 0x3F) | 0x80);
  std::string h = hex_encode(b);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

std::string random_token(size_t n_bytes) {
  return base64url_encode(random_bytes(n_bytes), false);
}

}  // namespace concord
