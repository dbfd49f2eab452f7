#include <openssl/rand.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "identity/crypto/fernet_internal.h"
#include "identity/crypto/token.h"

namespace concord::identity {

std::string TokenCodec::issue(const TokenPayload& payload) const {
  const std::shared_ptr<const std::vector<FernetKey>> keys = keys_->snapshot();
  fernet_internal::Iv iv{};
  if (RAND_bytes(iv.data(), static_cast<int>(iv.size())) != 1) {
    // No IV means no token that could be trusted; see base/random.cc.
    std::fprintf(stderr, "concord: RAND_bytes failed while issuing a token\n");
    std::abort();
  }
  const auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(clock_.now().time_since_epoch()).count();
  return fernet_internal::encrypt_with_iv(keys->front(), encode_payload(payload),
                                          static_cast<uint64_t>(seconds < 0 ? 0 : seconds), iv);
}

Result<TokenPayload> TokenCodec::open(std::string_view token) const {
  if (token.size() > kMaxTokenBytes) {
    return fail(Code::kUnauthenticated,
                "token is longer than " + std::to_string(kMaxTokenBytes) + " bytes");
  }
  const std::shared_ptr<const std::vector<FernetKey>> keys = keys_->snapshot();
  CONCORD_ASSIGN_OR_RETURN(fernet_internal::Opened opened, fernet_internal::open(*keys, token));
  Result<TokenPayload> payload = decode_payload(opened.plaintext);
  if (!payload) {
    // Signed by one of our keys yet undecodable: a payload format this build does not know
    // (a newer replica) or a bug; either way the token cannot be honoured.
    return fail(Code::kUnauthenticated, "token payload is invalid: " + payload.error().message());
  }
  if (payload->expires_at <= clock_.now()) return fail(Code::kUnauthenticated, "token expired");
  return payload;
}

}  // namespace concord::identity
