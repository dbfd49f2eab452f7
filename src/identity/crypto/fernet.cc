// Fernet (https://github.com/fernet/spec) on OpenSSL 3 EVP.
//
// Token validation sits on the hot path of every authenticated API call, so the OpenSSL
// objects that are expensive to make are made once: the HMAC and AES-128-CBC algorithms are
// fetched once per process (an implicit fetch inside each EVP call takes a lock and a lookup),
// and each thread keeps one MAC context and two cipher contexts that it re-keys per call.
// Re-keying HMAC costs two SHA-256 compressions, cheaper than duplicating a keyed template.
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "base/encoding.h"
#include "base/random.h"
#include "identity/crypto/fernet_internal.h"
#include "identity/crypto/token.h"

namespace concord::identity {
namespace {

using fernet_internal::kBlockBytes;
using fernet_internal::kHeaderBytes;
using fernet_internal::kHmacBytes;
using fernet_internal::kIvBytes;
using fernet_internal::kKeyHalfBytes;
using fernet_internal::kMinTokenBytes;
using fernet_internal::kVersion;

// OpenSSL failing to allocate a context or to run a fixed, valid algorithm means the process
// cannot make or check any token: stop loudly rather than hand out something unverified.
[[noreturn]] void openssl_failure(const char* what) {
  std::fprintf(stderr, "concord: OpenSSL failure in %s\n", what);
  std::abort();
}

// Fetched once and never freed: freeing at exit could race OpenSSL's own atexit cleanup.
const EVP_MAC* hmac_algorithm() {
  static EVP_MAC* const mac = [] {
    EVP_MAC* m = EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_HMAC, nullptr);
    if (m == nullptr) openssl_failure("EVP_MAC_fetch(HMAC)");
    return m;
  }();
  return mac;
}

const EVP_CIPHER* aes_algorithm() {
  static EVP_CIPHER* const cipher = [] {
    EVP_CIPHER* c = EVP_CIPHER_fetch(nullptr, "AES-128-CBC", nullptr);
    if (c == nullptr) openssl_failure("EVP_CIPHER_fetch(AES-128-CBC)");
    return c;
  }();
  return cipher;
}

struct MacCtxFree {
  void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
};
struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};

// One per thread; never shared, so no locking.
class ThreadContexts {
 public:
  ThreadContexts()
      : mac_(EVP_MAC_CTX_new(const_cast<EVP_MAC*>(hmac_algorithm()))),
        enc_(EVP_CIPHER_CTX_new()),
        dec_(EVP_CIPHER_CTX_new()) {
    if (!mac_ || !enc_ || !dec_) openssl_failure("context allocation");
    // The digest is set once; EVP_MAC_init then only re-keys.
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    if (EVP_MAC_CTX_set_params(mac_.get(), params) != 1) openssl_failure("HMAC digest");
    // Bind the cipher now so per-call inits pass no cipher and keep the provider context.
    if (EVP_EncryptInit_ex2(enc_.get(), aes_algorithm(), nullptr, nullptr, nullptr) != 1 ||
        EVP_DecryptInit_ex2(dec_.get(), aes_algorithm(), nullptr, nullptr, nullptr) != 1) {
      openssl_failure("AES-128-CBC init");
    }
  }

  // HMAC-SHA256 of `data` under `key` into `out`.
  void hmac(std::string_view key, const uint8_t* data, size_t size,
            std::array<uint8_t, kHmacBytes>& out) {
    size_t len = 0;
    if (EVP_MAC_init(mac_.get(), reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                     nullptr) != 1 ||
        EVP_MAC_update(mac_.get(), data, size) != 1 ||
        EVP_MAC_final(mac_.get(), out.data(), &len, out.size()) != 1 || len != kHmacBytes) {
      openssl_failure("HMAC-SHA256");
    }
  }

  // AES-128-CBC with PKCS#7 of `in` into `out` (room for in_size + one block); returns the
  // ciphertext length.
  size_t encrypt(std::string_view key, const uint8_t* iv, std::string_view in, uint8_t* out) {
    int n1 = 0, n2 = 0;
    if (EVP_EncryptInit_ex2(enc_.get(), nullptr, reinterpret_cast<const unsigned char*>(key.data()),
                            iv, nullptr) != 1 ||
        EVP_EncryptUpdate(enc_.get(), out, &n1, reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size())) != 1 ||
        EVP_EncryptFinal_ex(enc_.get(), out + n1, &n2) != 1) {
      openssl_failure("AES-128-CBC encrypt");
    }
    return static_cast<size_t>(n1) + static_cast<size_t>(n2);
  }

  // Decrypts whole blocks; false if the PKCS#7 padding is wrong.
  bool decrypt(std::string_view key, const uint8_t* iv, const uint8_t* in, size_t size,
               std::string& out) {
    // EVP's documented room for an update: the input plus one block.
    out.resize(size + kBlockBytes);
    auto* o = reinterpret_cast<unsigned char*>(out.data());
    int n1 = 0, n2 = 0;
    if (EVP_DecryptInit_ex2(dec_.get(), nullptr, reinterpret_cast<const unsigned char*>(key.data()),
                            iv, nullptr) != 1 ||
        EVP_DecryptUpdate(dec_.get(), o, &n1, in, static_cast<int>(size)) != 1) {
      openssl_failure("AES-128-CBC decrypt");
    }
    if (EVP_DecryptFinal_ex(dec_.get(), o + n1, &n2) != 1) return false;
    out.resize(static_cast<size_t>(n1) + static_cast<size_t>(n2));
    return true;
  }

 private:
  std::unique_ptr<EVP_MAC_CTX, MacCtxFree> mac_;
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> enc_;
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> dec_;
};

ThreadContexts& contexts() {
  thread_local ThreadContexts ctx;
  return ctx;
}

bool well_formed(const FernetKey& key) {
  return key.signing.size() == kKeyHalfBytes && key.encryption.size() == kKeyHalfBytes;
}

constexpr std::array<int8_t, 256> make_b64url_table() {
  constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
  return t;
}
constexpr auto kB64Url = make_b64url_table();

}  // namespace

namespace fernet_internal {

std::optional<std::string> decode_canonical_base64url(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') pad = text[text.size() - 2] == '=' ? 2 : 1;
  const size_t quads = text.size() / 4;
  std::string out(quads * 3 - pad, '\0');
  auto sym = [&](size_t i) { return kB64Url[static_cast<unsigned char>(text[i])]; };
  // Four symbols at a time into three bytes; a negative table entry (not in the alphabet,
  // including '=' before the end) poisons `bad`, checked once at the end.
  int bad = 0;
  const size_t full = pad == 0 ? quads : quads - 1;
  for (size_t q = 0; q < full; ++q) {
    const int a = sym(4 * q), b = sym(4 * q + 1), c = sym(4 * q + 2), d = sym(4 * q + 3);
    bad |= a | b | c | d;
    const uint32_t v = (static_cast<uint32_t>(a) << 18) | (static_cast<uint32_t>(b) << 12) |
                       (static_cast<uint32_t>(c) << 6) | static_cast<uint32_t>(d);
    out[3 * q] = static_cast<char>(v >> 16);
    out[3 * q + 1] = static_cast<char>(v >> 8);
    out[3 * q + 2] = static_cast<char>(v);
  }
  if (pad != 0) {
    const size_t i = 4 * full;
    const int a = sym(i), b = sym(i + 1), c = pad == 1 ? sym(i + 2) : 0;
    bad |= a | b | c;
    if (bad < 0) return std::nullopt;
    const uint32_t v = (static_cast<uint32_t>(a) << 18) | (static_cast<uint32_t>(b) << 12) |
                       (static_cast<uint32_t>(c) << 6);
    // The bits past the last whole byte must be zero, or two spellings would decode to the
    // same bytes.
    if ((pad == 2 ? (v & 0xFFFF) : (v & 0xFF)) != 0) return std::nullopt;
    out[3 * full] = static_cast<char>(v >> 16);
    if (pad == 1) out[3 * full + 1] = static_cast<char>(v >> 8);
  }
  if (bad < 0) return std::nullopt;
  return out;
}

std::string encrypt_with_iv(const FernetKey& key, std::string_view plaintext, uint64_t timestamp,
                            const Iv& iv) {
  if (!well_formed(key)) {
    std::fprintf(stderr, "concord: fernet encrypt with a malformed key\n");
    std::abort();
  }
  const size_t ct_max = (plaintext.size() / kBlockBytes + 1) * kBlockBytes;
  std::string raw(kHeaderBytes + ct_max + kHmacBytes, '\0');
  auto* p = reinterpret_cast<uint8_t*>(raw.data());
  p[0] = kVersion;
  for (int i = 0; i < 8; ++i) p[1 + i] = static_cast<uint8_t>(timestamp >> (56 - 8 * i));
  std::memcpy(p + 9, iv.data(), kIvBytes);
  ThreadContexts& ctx = contexts();
  const size_t ct = ctx.encrypt(key.encryption, iv.data(), plaintext, p + kHeaderBytes);
  std::array<uint8_t, kHmacBytes> mac{};
  ctx.hmac(key.signing, p, kHeaderBytes + ct, mac);
  std::memcpy(p + kHeaderBytes + ct, mac.data(), kHmacBytes);
  raw.resize(kHeaderBytes + ct + kHmacBytes);
  return base64url_encode(raw, /*pad=*/true);
}

Result<Opened> open(std::span<const FernetKey> keys, std::string_view token) {
  std::optional<std::string> raw = decode_canonical_base64url(token);
  if (!raw) return fail(Code::kUnauthenticated, "token is not canonical padded base64url");
  const size_t n = raw->size();
  if (n < kMinTokenBytes) return fail(Code::kUnauthenticated, "token is too short");
  if ((n - kHeaderBytes - kHmacBytes) % kBlockBytes != 0) {
    return fail(Code::kUnauthenticated,
                "token ciphertext is not a whole number of AES blocks, cannot decrypt");
  }
  const auto* p = reinterpret_cast<const uint8_t*>(raw->data());
  if (p[0] != kVersion) {
    char msg[64];
    std::snprintf(msg, sizeof msg, "token has unsupported version byte 0x%02x", p[0]);
    return fail(Code::kUnauthenticated, msg);
  }
  const size_t signed_bytes = n - kHmacBytes;
  ThreadContexts& ctx = contexts();
  std::array<uint8_t, kHmacBytes> mac{};
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!well_formed(keys[i])) return fail(Code::kInternal, "malformed Fernet key in key list");
    ctx.hmac(keys[i].signing, p, signed_bytes, mac);
    if (CRYPTO_memcmp(mac.data(), p + signed_bytes, kHmacBytes) != 0) continue;
    Opened opened;
    opened.key_index = i;
    for (int b = 0; b < 8; ++b) opened.timestamp = (opened.timestamp << 8) | p[1 + b];
    if (!ctx.decrypt(keys[i].encryption, p + 9, p + kHeaderBytes, signed_bytes - kHeaderBytes,
                     opened.plaintext)) {
      return fail(Code::kUnauthenticated, "token padding is invalid after decryption");
    }
    return opened;
  }
  return fail(Code::kUnauthenticated,
              "token signature matches none of the " + std::to_string(keys.size()) + " keys");
}

}  // namespace fernet_internal

Result<FernetKey> FernetKey::from_base64(std::string_view text) {
  std::optional<std::string> raw = base64url_decode(text);
  if (!raw) return fail(Code::kInvalidArgument, "Fernet key is not base64url");
  if (raw->size() != 2 * kKeyHalfBytes) {
    return fail(Code::kInvalidArgument,
                "Fernet key decodes to " + std::to_string(raw->size()) + " bytes, expected 32");
  }
  return FernetKey{raw->substr(0, kKeyHalfBytes), raw->substr(kKeyHalfBytes)};
}

FernetKey FernetKey::generate() {
  std::string raw = random_bytes(2 * kKeyHalfBytes);
  return FernetKey{raw.substr(0, kKeyHalfBytes), raw.substr(kKeyHalfBytes)};
}

std::string FernetKey::to_base64() const {
  return base64url_encode(signing + encryption, /*pad=*/true);
}

std::string fernet_encrypt(const FernetKey& key, std::string_view plaintext, uint64_t timestamp) {
  fernet_internal::Iv iv{};
  if (RAND_bytes(iv.data(), static_cast<int>(iv.size())) != 1) openssl_failure("RAND_bytes");
  return fernet_internal::encrypt_with_iv(key, plaintext, timestamp, iv);
}

Result<std::string> fernet_decrypt(const FernetKey& key, std::string_view token) {
  CONCORD_ASSIGN_OR_RETURN(auto opened, fernet_internal::open(std::span(&key, 1), token));
  return std::move(opened.plaintext);
}

}  // namespace concord::identity
