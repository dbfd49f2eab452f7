// Fuzzes what an attacker controls in token validation. Every input is used four ways:
//   1. decode_payload(input): a payload or kInvalidArgument; an accepted payload must survive
//      re-encoding unchanged;
//   2. TokenCodec::open(input) as token text (base64, length, version and HMAC checks);
//   3. input sealed as the plaintext of a token under the codec's own key, then opened: the
//      whole open path down to the payload decoder and the expiry check;
//   4. input as ciphertext with a valid HMAC under that key: the decryption and padding checks.
// Keys are fixed (written to a temp folder once) so that runs are reproducible.
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/encoding.h"
#include "base/log.h"
#include "identity/crypto/fernet_internal.h"
#include "identity/crypto/token.h"

namespace {

using namespace concord;
using namespace concord::identity;

struct Harness {
  Harness() {
    set_log_level("off");
    std::string pattern = "/tmp/concord-token-fuzz-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    dir = pattern;
    // The Fernet spec's example key as primary, a second fixed key as staged.
    std::ofstream(dir + "/1") << "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";
    std::ofstream(dir + "/0") << "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    Result<std::unique_ptr<KeyRepository>> repo = KeyRepository::open(dir, 3);
    if (!repo) std::abort();
    keys = std::move(*repo);
    codec = std::make_unique<TokenCodec>(keys, clock);
    primary = keys->primary();
  }
  ~Harness() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  std::string dir;
  FakeClock clock;
  std::shared_ptr<KeyRepository> keys;
  std::unique_ptr<TokenCodec> codec;
  FernetKey primary;
};

Harness& harness() {
  static Harness h;
  return h;
}

// Correctly signed token over `ciphertext` (cut to whole blocks, at least one).
std::string sign_ciphertext(const FernetKey& key, std::string_view ciphertext) {
  std::string raw(1, '\x80');
  raw.append(8, '\0');
  raw.append(16, '\x42');
  const size_t blocks = ciphertext.size() / 16 == 0 ? 1 : ciphertext.size() / 16;
  std::string ct(ciphertext.substr(0, blocks * 16));
  ct.resize(blocks * 16, '\0');
  raw.append(ct);
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.signing.data(), static_cast<int>(key.signing.size()),
       reinterpret_cast<const unsigned char*>(raw.data()), raw.size(), mac, &len);
  raw.append(reinterpret_cast<const char*>(mac), len);
  return base64url_encode(raw, true);
}

void check_open(Result<TokenPayload> r) {
  if (!r && r.error().code() != Code::kUnauthenticated) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Harness& h = harness();
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  Result<TokenPayload> payload = decode_payload(input);
  if (payload) {
    Result<TokenPayload> again = decode_payload(encode_payload(*payload));
    if (!again || !(*again == *payload)) std::abort();
    if (!check_payload(*payload)) std::abort();
  } else if (payload.error().code() != Code::kInvalidArgument) {
    std::abort();
  }

  check_open(h.codec->open(input));

  fernet_internal::Iv iv{};
  const std::string sealed = fernet_internal::encrypt_with_iv(h.primary, input, 1, iv);
  Result<TokenPayload> opened = h.codec->open(sealed);
  check_open(opened);
  // Whatever decodes as a payload and has not expired must come back out of a token.
  if (payload && payload->expires_at > h.clock.now() && sealed.size() <= kMaxTokenBytes) {
    if (!opened || !(*opened == *payload)) std::abort();
  }

  check_open(h.codec->open(sign_ciphertext(h.primary, input)));
  return 0;
}
