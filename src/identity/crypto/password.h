#pragma once
// Password hashing with argon2id (libargon2), stored in the PHC string format
// ("$argon2id$v=19$m=...,t=...,p=...$salt$hash") so parameters can change later without
// invalidating stored hashes: verify() reads them from the string.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace concord::identity {

struct PasswordParams {
  uint32_t time_cost = 2;
  uint32_t memory_kib = 19 * 1024;  // OWASP's argon2id minimum (19 MiB, t=2, p=1)
  uint32_t parallelism = 1;
};

// Passwords longer than this are rejected (kInvalidArgument) to bound hashing cost.
inline constexpr size_t kMaxPasswordBytes = 4096;
// Upper bounds on the cost parameters, for hashing and for hashes read back: a corrupted or
// planted hash must not make one verification allocate gigabytes or spawn many threads.
inline constexpr uint32_t kMaxTimeCost = 64;
inline constexpr uint32_t kMaxMemoryKib = 1024 * 1024;  // 1 GiB
inline constexpr uint32_t kMaxParallelism = 16;

// kInvalidArgument for an oversize password or parameters out of bounds; kResourceExhausted
// if the memory could not be allocated.
[[nodiscard]] Result<std::string> hash_password(std::string_view password,
                                                const PasswordParams& params = {});
// True iff `password` matches `encoded`. A malformed `encoded` (including parameters beyond
// the bounds above, or another argon2 variant) is false, never an error.
bool verify_password(std::string_view password, std::string_view encoded);

}  // namespace concord::identity
