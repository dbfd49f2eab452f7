// OpenSSL's one-shot HMAC/SHA-256 cannot fail for in-memory inputs and a fixed digest; a failure
// would be a broken invariant, so it aborts rather than authenticate on garbage.
#include "database/proxy/scram.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <cstdlib>
#include <vector>

#include "base/random.h"

namespace concord::database::proxy {
namespace {

std::string hmac(std::string_view key, std::string_view msg) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out, &len) == nullptr ||
      len != sizeof out) {
    std::abort();
  }
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string sha256(std::string_view data) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out);
  return std::string(reinterpret_cast<char*>(out), sizeof out);
}

std::string xor_bytes(std::string_view a, std::string_view b) {
  std::string out(a.size(), '\0');
  for (size_t i = 0; i < a.size(); ++i) out[i] = static_cast<char>(a[i] ^ b[i]);
  return out;
}

// The value of attribute `name` ("r", "s", ...) in a comma-separated SCRAM message.
std::optional<std::string_view> attribute(std::string_view msg, char name) {
  size_t pos = 0;
  while (pos <= msg.size()) {
    size_t end = msg.find(',', pos);
    if (end == std::string_view::npos) end = msg.size();
    std::string_view part = msg.substr(pos, end - pos);
    if (part.size() >= 2 && part[0] == name && part[1] == '=') return part.substr(2);
    pos = end + 1;
  }
  return std::nullopt;
}

// Printable nonce characters (RFC 5802: any printable except ',').
std::string new_nonce() {
  return base64_encode(random_bytes(18));
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out(3 * (text.size() / 4) + 1, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts padding as zero bytes.
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (text.size() >= 2 && text[text.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

Result<ScramVerifier> parse_scram_verifier(std::string_view text) {
  constexpr std::string_view kPrefix = "SCRAM-SHA-256$";
  auto bad = [](std::string_view why) {
    return fail(Code::kInvalidArgument, "not a SCRAM-SHA-256 verifier: " + std::string(why));
  };
  if (!text.starts_with(kPrefix)) return bad("missing the SCRAM-SHA-256$ prefix");
  text.remove_prefix(kPrefix.size());
  size_t colon = text.find(':');
  size_t dollar = text.find('$');
  if (colon == std::string_view::npos || dollar == std::string_view::npos || colon > dollar) {
    return bad("expected <iterations>:<salt>$<StoredKey>:<ServerKey>");
  }
  ScramVerifier v;
  std::string iters(text.substr(0, colon));
  if (iters.empty() || iters.size() > 7 ||
      iters.find_first_not_of("0123456789") != std::string::npos) {
    return bad("iteration count is not a number");
  }
  v.iterations = std::stoi(iters);
  if (v.iterations < 1) return bad("iteration count below 1");
  auto salt = base64_decode(text.substr(colon + 1, dollar - colon - 1));
  std::string_view keys = text.substr(dollar + 1);
  size_t kc = keys.find(':');
  if (!salt || salt->empty() || kc == std::string_view::npos) return bad("salt or keys malformed");
  auto stored = base64_decode(keys.substr(0, kc));
  auto server = base64_decode(keys.substr(kc + 1));
  if (!stored || !server || stored->size() != 32 || server->size() != 32) {
    return bad("StoredKey/ServerKey are not 32-byte base64 values");
  }
  v.salt = std::move(*salt);
  v.stored_key = std::move(*stored);
  v.server_key = std::move(*server);
  return v;
}

Result<std::string> ScramServer::first(std::string_view client_first) {
  // gs2-header: "n,," (no channel binding) or "y,," (client could, server did not offer it).
  // "p=" asks for channel binding the proxy does not advertise.
  if (client_first.size() < 3 || (client_first[0] != 'n' && client_first[0] != 'y') ||
      client_first[1] != ',') {
    return fail(Code::kInvalidArgument, "SCRAM client-first-message has an unsupported header");
  }
  size_t second_comma = client_first.find(',', 2);
  if (second_comma == std::string_view::npos) {
    return fail(Code::kInvalidArgument, "SCRAM client-first-message has no bare part");
  }
  client_first_bare_ = client_first.substr(second_comma + 1);
  gs2_header_ = client_first.substr(0, second_comma + 1);
  auto cnonce = attribute(client_first_bare_, 'r');
  if (!cnonce || cnonce->empty()) {
    return fail(Code::kInvalidArgument, "SCRAM client-first-message has no nonce");
  }
  nonce_ = std::string(*cnonce) + new_nonce();
  server_first_ =
      "r=" + nonce_ + ",s=" + base64_encode(v_.salt) + ",i=" + std::to_string(v_.iterations);
  return server_first_;
}

Result<std::string> ScramServer::final(std::string_view client_final) {
  size_t p = client_final.rfind(",p=");
  if (p == std::string_view::npos) {
    return fail(Code::kInvalidArgument, "SCRAM client-final-message has no proof");
  }
  std::string_view without_proof = client_final.substr(0, p);
  auto cbind = attribute(without_proof, 'c');
  auto nonce = attribute(without_proof, 'r');
  auto proof = base64_decode(client_final.substr(p + 3));
  if (!cbind || base64_decode(*cbind) != gs2_header_) {
    return fail(Code::kInvalidArgument, "SCRAM channel binding does not match the header");
  }
  if (!nonce || *nonce != nonce_) {
    return fail(Code::kInvalidArgument, "SCRAM nonce does not match");
  }
  if (!proof || proof->size() != 32) {
    return fail(Code::kInvalidArgument, "SCRAM proof is not 32 bytes of base64");
  }
  std::string auth_message =
      client_first_bare_ + "," + server_first_ + "," + std::string(without_proof);
  std::string client_key = xor_bytes(*proof, hmac(v_.stored_key, auth_message));
  std::string check = sha256(client_key);
  if (CRYPTO_memcmp(check.data(), v_.stored_key.data(), 32) != 0) {
    return fail(Code::kUnauthenticated, "password authentication failed");
  }
  client_key_ = std::move(client_key);
  return "v=" + base64_encode(hmac(v_.server_key, auth_message));
}

std::string ScramClient::first() {
  nonce_ = new_nonce();
  client_first_bare_ = "n=,r=" + nonce_;
  return "n,," + client_first_bare_;
}

Result<std::string> ScramClient::final(std::string_view server_first) {
  auto nonce = attribute(server_first, 'r');
  auto salt = attribute(server_first, 's');
  auto iters = attribute(server_first, 'i');
  if (!nonce || !salt || !iters || !nonce->starts_with(nonce_)) {
    return fail(Code::kUnavailable, "the database server sent a malformed SCRAM challenge");
  }
  std::string without_proof = "c=biws,r=" + std::string(*nonce);  // biws = base64("n,,")
  auth_message_ = client_first_bare_ + "," + std::string(server_first) + "," + without_proof;
  std::string stored_key = sha256(client_key_);
  std::string proof = xor_bytes(client_key_, hmac(stored_key, auth_message_));
  return without_proof + ",p=" + base64_encode(proof);
}

Status ScramClient::verify(std::string_view server_final) {
  std::string expected = "v=" + base64_encode(hmac(server_key_, auth_message_));
  if (server_final != expected) {
    return fail(Code::kUnauthenticated,
                "the database server's SCRAM signature is wrong: it does not hold this verifier");
  }
  return ok();
}

}  // namespace concord::database::proxy
