#pragma once
// Password verifiers in each engine's own stored format, so the server hands engines a verifier
// and never a password (docs/design/database.md). Both engines accept these forms directly:
// PostgreSQL `CREATE/ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...'` (stored as is) and MariaDB
// `IDENTIFIED BY PASSWORD '*...'` (mysql_native_password).
#include <string>
#include <string_view>

#include "base/result.h"

namespace concord::database::engine {

// RFC 5802 / RFC 7677 as PostgreSQL stores it:
// "SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>", with a
// random 16-byte salt and 4096 iterations (PostgreSQL's default).
std::string postgres_scram_verifier(std::string_view password);

// The same with a given salt (raw bytes) and iteration count: deterministic, for known-answer
// tests and for checking a password against a stored verifier.
std::string postgres_scram_verifier_with_salt(std::string_view password, std::string_view salt,
                                              int iterations);

// "*" + uppercase hex of SHA1(SHA1(password)): MariaDB's mysql_native_password hash.
std::string mariadb_native_verifier(std::string_view password);

// The verifier for `engine` ("postgresql" | "mariadb"); kInvalidArgument for another engine.
[[nodiscard]] Result<std::string> password_verifier(std::string_view engine,
                                                    std::string_view password);

}  // namespace concord::database::engine
