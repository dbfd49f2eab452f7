// argon2id password hashing. Hashes are PHC strings, so each carries its own parameters and
// salt; verification reads them back, which is why their bounds are checked before libargon2
// sees them: the parameters come from the store, and a damaged row must cost a failed login,
// not gigabytes of memory, hundreds of threads or minutes of CPU.
#include "identity/crypto/password.h"

#include <argon2.h>

#include <charconv>
#include <cstring>
#include <optional>

#include "base/random.h"

namespace concord::identity {
namespace {

constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;
// Far longer than any hash we make (about 100 characters) and short enough to bound the work
// libargon2 does decoding a planted one.
constexpr size_t kMaxEncodedBytes = 512;

Status check_params(const PasswordParams& p) {
  if (p.time_cost < 1 || p.time_cost > kMaxTimeCost) {
    return fail(Code::kInvalidArgument, "argon2 time_cost must be within 1.." +
                                            std::to_string(kMaxTimeCost) + ", got " +
                                            std::to_string(p.time_cost));
  }
  if (p.parallelism < 1 || p.parallelism > kMaxParallelism) {
    return fail(Code::kInvalidArgument, "argon2 parallelism must be within 1.." +
                                            std::to_string(kMaxParallelism) + ", got " +
                                            std::to_string(p.parallelism));
  }
  if (p.memory_kib < 8 * p.parallelism || p.memory_kib > kMaxMemoryKib) {
    return fail(Code::kInvalidArgument, "argon2 memory_kib must be within 8*parallelism.." +
                                            std::to_string(kMaxMemoryKib) + ", got " +
                                            std::to_string(p.memory_kib));
  }
  return ok();
}

// Reads "<name>=<decimal>" at the front of `s` and drops it.
std::optional<uint32_t> take_param(std::string_view& s, std::string_view name) {
  if (!s.starts_with(name) || s.size() <= name.size() || s[name.size()] != '=') {
    return std::nullopt;
  }
  s.remove_prefix(name.size() + 1);
  uint32_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end == s.data()) return std::nullopt;
  s.remove_prefix(static_cast<size_t>(end - s.data()));
  return v;
}

// The parameters of an argon2id PHC string ("$argon2id$v=19$m=..,t=..,p=..$salt$hash"),
// or nullopt if the prefix is not that shape.
std::optional<PasswordParams> phc_params(std::string_view s) {
  constexpr std::string_view kPrefix = "$argon2id$";
  if (!s.starts_with(kPrefix)) return std::nullopt;
  s.remove_prefix(kPrefix.size());
  if (s.starts_with("v=")) {
    if (!take_param(s, "v") || !s.starts_with('$')) return std::nullopt;
    s.remove_prefix(1);
  }
  PasswordParams p;
  std::optional<uint32_t> m = take_param(s, "m");
  if (!m || !s.starts_with(',')) return std::nullopt;
  s.remove_prefix(1);
  std::optional<uint32_t> t = take_param(s, "t");
  if (!t || !s.starts_with(',')) return std::nullopt;
  s.remove_prefix(1);
  std::optional<uint32_t> par = take_param(s, "p");
  if (!par || !s.starts_with('$')) return std::nullopt;
  p.memory_kib = *m;
  p.time_cost = *t;
  p.parallelism = *par;
  return p;
}

}  // namespace

Result<std::string> hash_password(std::string_view password, const PasswordParams& params) {
  if (password.size() > kMaxPasswordBytes) {
    return fail(Code::kInvalidArgument,
                "password is longer than " + std::to_string(kMaxPasswordBytes) + " bytes");
  }
  CONCORD_RETURN_IF_ERROR(check_params(params));
  const std::string salt = random_bytes(kSaltBytes);
  std::string encoded(argon2_encodedlen(params.time_cost, params.memory_kib, params.parallelism,
                                        kSaltBytes, kHashBytes, Argon2_id),
                      '\0');
  const int rc = argon2id_hash_encoded(params.time_cost, params.memory_kib, params.parallelism,
                                       password.data(), password.size(), salt.data(), salt.size(),
                                       kHashBytes, encoded.data(), encoded.size());
  if (rc == ARGON2_MEMORY_ALLOCATION_ERROR) {
    return fail(Code::kResourceExhausted,
                "argon2id could not allocate " + std::to_string(params.memory_kib) + " KiB");
  }
  if (rc != ARGON2_OK) {
    return fail(Code::kInternal,
                std::string("argon2id hashing failed: ") + argon2_error_message(rc));
  }
  encoded.resize(std::strlen(encoded.c_str()));
  return encoded;
}

bool verify_password(std::string_view password, std::string_view encoded) {
  if (password.size() > kMaxPasswordBytes || encoded.size() > kMaxEncodedBytes) return false;
  // libargon2 reads a C string: an embedded NUL would make it verify a prefix.
  if (encoded.find('\0') != std::string_view::npos) return false;
  std::optional<PasswordParams> params = phc_params(encoded);
  if (!params || !check_params(*params)) return false;
  const std::string text(encoded);
  return argon2id_verify(text.c_str(), password.data(), password.size()) == ARGON2_OK;
}

}  // namespace concord::identity
