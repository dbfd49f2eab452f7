#include "database/engine/backup_util.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>

#include "fmt/format.h"

namespace concord::database::engine::detail {

Result<std::string> sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Code::kInternal, fmt::format("sha256: cannot open {}", path));
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return fail(Code::kInternal, "sha256: OpenSSL digest initialisation failed");
  }
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    std::streamsize n = in.gcount();
    if (n > 0 && EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n)) != 1) {
      return fail(Code::kInternal, "sha256: OpenSSL digest update failed");
    }
  }
  if (in.bad()) return fail(Code::kInternal, fmt::format("sha256: read error on {}", path));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &len) != 1) {
    return fail(Code::kInternal, "sha256: OpenSSL digest finalisation failed");
  }
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) hex += fmt::format("{:02x}", md[i]);
  return hex;
}

Status verify_sha256(const std::string& path, const std::string& sha256) {
  CONCORD_ASSIGN_OR_RETURN(std::string have, sha256_file(path));
  std::string want = sha256;
  std::transform(want.begin(), want.end(), want.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (have != want) {
    ::unlink(path.c_str());
    return fail(Code::kInternal, fmt::format("checksum mismatch for {}: expected sha256 {}, got {}",
                                             path, want.empty() ? "(none)" : want, have));
  }
  return ok();
}

std::vector<std::string> list_files(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) out.push_back(it->path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status check_shell_safe_path(std::string_view path) {
  bool good = !path.empty() && std::all_of(path.begin(), path.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '/' ||
           c == '.' || c == '_' || c == '-';
  });
  if (!good) {
    return fail(Code::kFailedPrecondition,
                fmt::format("instance folder '{}' has characters outside [A-Za-z0-9/._-]; the "
                            "engine's archive and restore commands cannot quote it safely",
                            path));
  }
  return ok();
}

std::string format_utc_us(int64_t us) {
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  int64_t frac = us % 1000000;
  if (frac < 0) {
    frac += 1000000;
    --secs;
  }
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

int64_t parse_utc_us(std::string_view text) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  int consumed = 0;
  std::string t(text.substr(0, 64));
  if (std::sscanf(t.c_str(), "%4d-%2d-%2d %2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &consumed) !=
      6) {
    return 0;
  }
  int64_t frac = 0;
  if (static_cast<size_t>(consumed) < t.size() && t[consumed] == '.') {
    int digits = 0;
    for (size_t i = consumed + 1; i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]));
         ++i) {
      if (digits < 6) {
        frac = frac * 10 + (t[i] - '0');
        ++digits;
      }
    }
    for (; digits < 6; ++digits) frac *= 10;
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  std::time_t secs = ::timegm(&tm);
  if (secs == static_cast<std::time_t>(-1)) return 0;
  return static_cast<int64_t>(secs) * 1000000 + frac;
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace concord::database::engine::detail
