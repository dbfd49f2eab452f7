#pragma once
// Helpers both engines' backup, restore and log-shipping code share (docs/design/database.md,
// "Backups and restore"): checksums, the staging folders a restore is made in, and the checks
// that keep paths we hand to a shell (the engines' archive commands) free of quoting surprises.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "database/engine/engine.h"

namespace concord::database::engine::detail {

// Hex SHA-256 of a file's bytes, streamed. kInternal when it cannot be read.
[[nodiscard]] Result<std::string> sha256_file(const std::string& path);

// kInternal ("checksum mismatch") unless `path` hashes to `sha256` (hex, any case). The file is
// removed on a mismatch, as the Transport contract asks of a get.
[[nodiscard]] Status verify_sha256(const std::string& path, const std::string& sha256);

// Regular files directly in `dir` (names only, sorted); empty when the folder is absent.
std::vector<std::string> list_files(const std::string& dir);

// Paths that go into an engine's shell command line (archive_command, restore_command):
// [A-Za-z0-9/._-] only, so single-quoting them is enough. kFailedPrecondition otherwise.
[[nodiscard]] Status check_shell_safe_path(std::string_view path);

// Microseconds since the epoch (UTC) as "YYYY-MM-DD HH:MM:SS.ffffff+00" (what both engines
// accept as a point in time), and the "YYYY-MM-DD HH:MM:SS[.ffffff]" form back (taken as UTC;
// 0 when malformed).
std::string format_utc_us(int64_t us);
int64_t parse_utc_us(std::string_view text);
int64_t now_us();

}  // namespace concord::database::engine::detail
